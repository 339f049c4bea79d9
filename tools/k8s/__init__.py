"""Kubernetes manifests (deploy/k8s/): the KafkaTopic generator, a small kustomize renderer, and the
CRD-to-JSON-schema extractor the manifest test validates custom resources with."""
