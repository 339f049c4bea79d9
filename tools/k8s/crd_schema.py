"""JSON Schemas of custom resources, extracted from their CustomResourceDefinitions.

The manifest test validates each custom resource (Strimzi's Kafka, KafkaNodePool, KafkaTopic,
KafkaUser; cass-operator's CassandraDatacenter) offline against the openAPIV3Schema of the served
version of its CRD, checked in under deploy/k8s/schemas/ (the CRDs themselves are megabytes).

The openAPIV3Schema is OpenAPI's dialect, read here the way the API server reads it:

- An object with ``properties`` keeps only those fields: the API server prunes the others, and
  `kubectl apply` (strict field validation, the default since Kubernetes 1.27) refuses them. So it
  becomes ``additionalProperties: false`` unless it says ``x-kubernetes-preserve-unknown-fields``
  or has an ``additionalProperties`` of its own (a map). This is what catches a misspelt field.
- ``x-kubernetes-preserve-unknown-fields`` on a field typed ``string``/``format: byte`` is how
  controller-gen writes a Go ``json.RawMessage`` (cass-operator's ``spec.config``); the API server
  takes any JSON value there (cass-operator's own end-to-end manifests set it to an object), so the
  type is dropped.
- ``nullable: true`` admits null.
- ``x-kubernetes-validations`` (CEL rules) cannot be evaluated here and are dropped; so are
  descriptions and the other ``x-kubernetes-*`` list and map markers, which do not validate values.
- The root allows ``apiVersion``, ``kind`` and ``metadata`` (the API server validates metadata as
  ObjectMeta); ``status`` is dropped (never written by a manifest).

    python -m tools.k8s.crd_schema --out deploy/k8s/schemas \
        --source "github.com/strimzi/strimzi-kafka-operator 1.2.0 packaging/install/cluster-operator" CRD.yaml...
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

DRAFT = "https://json-schema.org/draft/2020-12/schema"
DROPPED = {"description", "x-kubernetes-validations", "x-kubernetes-list-type", "x-kubernetes-list-map-keys",
           "x-kubernetes-map-type", "x-kubernetes-int-or-string", "x-kubernetes-embedded-resource", "example",
           "externalDocs"}
# Combinators and the like whose subschemas are value checks, not structure: no pruning inside them.
VALUE_CHECKS = ("oneOf", "anyOf", "allOf", "not")
METADATA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "additionalProperties": False,
}


def served_versions(crd: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in crd["spec"]["versions"] if v.get("served")]


def schema_file_name(crd: dict[str, Any], version: str) -> str:
    return f"{crd['spec']['group']}_{crd['spec']['names']['kind'].lower()}_{version}.json"


def convert(crd: dict[str, Any], version: dict[str, Any], source: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one served version of a CRD."""
    root = _convert(version["schema"]["openAPIV3Schema"], structural=True)
    properties = root.setdefault("properties", {})
    properties.pop("status", None)
    properties["apiVersion"] = {"const": f"{crd['spec']['group']}/{version['name']}"}
    properties["kind"] = {"const": crd["spec"]["names"]["kind"]}
    properties["metadata"] = METADATA
    root["required"] = sorted(set(root.get("required", [])) | {"apiVersion", "kind", "metadata"})
    return {"$schema": DRAFT, "$comment": f"extracted by tools/k8s/crd_schema.py from {source}", **root}


def _convert(node: Any, *, structural: bool) -> Any:
    if isinstance(node, list):
        return [_convert(item, structural=structural) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in DROPPED or key == "nullable":
            continue
        if key == "properties":
            out[key] = {name: _convert(sub, structural=structural) for name, sub in value.items()}
        elif key in VALUE_CHECKS:
            out[key] = _convert(value, structural=False)
        elif key in ("items", "additionalProperties"):
            out[key] = _convert(value, structural=structural)
        elif key == "x-kubernetes-preserve-unknown-fields":
            continue
        else:
            out[key] = _convert(value, structural=structural)
    preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
    if preserve and node.get("type") not in (None, "object"):
        out.pop("type", None)  # a raw JSON field (json.RawMessage): any value
        out.pop("format", None)
    if structural and node.get("type") == "object" and not preserve and "additionalProperties" not in node:
        out["additionalProperties"] = False
    if node.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.k8s.crd_schema", description=__doc__.splitlines()[0])
    parser.add_argument("crds", nargs="+", type=Path, help="CRD YAML files")
    parser.add_argument("--source", required=True, help="where the CRDs come from (repository, tag, folder); the file name is appended")
    parser.add_argument("--out", type=Path, required=True, help="folder for the JSON schemas")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for path in args.crds:
        crd = yaml.safe_load(path.read_text())
        if crd.get("kind") != "CustomResourceDefinition":
            print(f"{path}: not a CustomResourceDefinition", file=sys.stderr)
            return 1
        for version in served_versions(crd):
            schema = convert(crd, version, f"{args.source}/{path.name}")
            target = args.out / schema_file_name(crd, version["name"])
            target.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
            print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
