"""Render a kustomization without kubectl: the subset of kustomize that deploy/k8s/ uses.

Debian (bookworm) packages no current kubectl: `kubernetes-client` is 1.20, whose kustomize v2 does
not know `patches`. So the manifest test renders with this module, and compares it with `kubectl
kustomize` wherever a kubectl is installed (tests/unit/test_k8s_manifests.py). Anything outside the
subset is refused, never ignored, so the two cannot silently disagree:

- ``resources``: files (one or more YAML documents) and directories holding a kustomization.yaml;
- ``namespace``: set on every namespaced object (``metadata.namespace``);
- ``images``: ``name`` -> ``newName`` / ``newTag`` / ``digest`` in every ``containers`` and
  ``initContainers`` list, wherever it is in the object (as kustomize does for custom resources);
- ``patches``: RFC 6902 JSON patches (``op`` add, remove, replace, test), from ``path`` or inline
  ``patch``, applied to the objects matched by ``target`` (kind, name, and optionally group,
  version, namespace).

    python -m tools.k8s.kustomize deploy/k8s/overlays/production    # prints the YAML stream
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_FIELDS = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}
# Kinds that have no namespace (the ones a deployment like ours could contain).
CLUSTER_SCOPED = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PersistentVolume",
    "StorageClass", "PriorityClass", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
}


class KustomizeError(ValueError):
    pass


def render(directory: Path) -> list[dict[str, Any]]:
    """The objects of the kustomization in ``directory``, transformed as kustomize would."""
    directory = Path(directory)
    kustomization = _load_kustomization(directory)
    objects: list[dict[str, Any]] = []
    for entry in kustomization.get("resources") or []:
        path = directory / entry
        if path.is_dir():
            objects.extend(render(path))
        elif path.is_file():
            objects.extend(_load_documents(path))
        else:
            raise KustomizeError(f"{directory}: resource {entry!r} does not exist")
    _check_unique(objects, directory)
    for patch in kustomization.get("patches") or []:
        _apply_patch(objects, patch, directory)
    for image in kustomization.get("images") or []:
        _set_image(objects, image)
    if kustomization.get("namespace"):
        for obj in objects:
            if obj.get("kind") not in CLUSTER_SCOPED:
                obj.setdefault("metadata", {})["namespace"] = kustomization["namespace"]
    return objects


def identity(obj: dict[str, Any]) -> tuple[str, str, str, str]:
    """(apiVersion, kind, namespace, name): what kustomize calls a resource id."""
    meta = obj.get("metadata") or {}
    return obj.get("apiVersion", ""), obj.get("kind", ""), meta.get("namespace", ""), meta.get("name", "")


def to_yaml(objects: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False)


def _load_kustomization(directory: Path) -> dict[str, Any]:
    for name in KUSTOMIZATION_FILES:
        if (directory / name).is_file():
            data = yaml.safe_load((directory / name).read_text()) or {}
            unknown = set(data) - SUPPORTED_FIELDS
            if unknown:
                raise KustomizeError(f"{directory / name}: fields not supported by this renderer: {sorted(unknown)}")
            return data
    raise KustomizeError(f"{directory}: no kustomization.yaml")


def _load_documents(path: Path) -> list[dict[str, Any]]:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    for d in documents:
        if not isinstance(d, dict) or "kind" not in d or "apiVersion" not in d:
            raise KustomizeError(f"{path}: every document must be a Kubernetes object with apiVersion and kind")
    return documents


def _check_unique(objects: list[dict[str, Any]], directory: Path) -> None:
    seen = set()
    for obj in objects:
        key = identity(obj)
        if key in seen:
            raise KustomizeError(f"{directory}: {key[1]} {key[3]!r} is defined twice")
        seen.add(key)


# --- patches ----------------------------------------------------------------------------------

def _apply_patch(objects: list[dict[str, Any]], patch: dict[str, Any], directory: Path) -> None:
    unknown = set(patch) - {"path", "patch", "target"}
    if unknown:
        raise KustomizeError(f"{directory}: patch fields not supported: {sorted(unknown)}")
    if "path" in patch:
        operations = yaml.safe_load((directory / patch["path"]).read_text())
    else:
        operations = yaml.safe_load(patch.get("patch") or "")
    if not isinstance(operations, list):
        raise KustomizeError(f"{directory}: only JSON 6902 patches (a list of operations) are supported: {patch}")
    target = patch.get("target") or {}
    if not target.get("kind") or not target.get("name"):
        raise KustomizeError(f"{directory}: a patch needs a target with kind and name: {patch}")
    matched = [o for o in objects if _matches(o, target)]
    if not matched:
        raise KustomizeError(f"{directory}: patch target {target} matches no object")
    for obj in matched:
        for operation in operations:
            _apply_operation(obj, operation)


def _matches(obj: dict[str, Any], target: dict[str, Any]) -> bool:
    unknown = set(target) - {"kind", "name", "group", "version", "namespace"}
    if unknown:
        raise KustomizeError(f"patch target fields not supported: {sorted(unknown)}")
    group, _, version = obj.get("apiVersion", "").rpartition("/")
    meta = obj.get("metadata") or {}
    return (obj.get("kind") == target["kind"] and meta.get("name") == target["name"]
            and target.get("group", group) == group and target.get("version", version) == version
            and target.get("namespace", meta.get("namespace")) == meta.get("namespace"))


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise KustomizeError(f"JSON pointer must start with '/': {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _apply_operation(obj: dict[str, Any], operation: dict[str, Any]) -> None:
    op, tokens = operation.get("op"), _pointer(operation.get("path", ""))
    if op not in ("add", "remove", "replace", "test") or not tokens:
        raise KustomizeError(f"unsupported JSON patch operation: {operation}")
    parent: Any = obj
    for token in tokens[:-1]:
        parent = _child(parent, token, operation)
    last = tokens[-1]
    value = copy.deepcopy(operation.get("value"))
    if isinstance(parent, list):
        if op == "add" and last == "-":
            parent.append(value)
            return
        index = _index(parent, last, operation, allow_end=(op == "add"))
        if op == "add":
            parent.insert(index, value)
        elif op == "remove":
            del parent[index]
        elif op == "replace":
            parent[index] = value
        elif parent[index] != value:
            raise KustomizeError(f"JSON patch test failed: {operation}")
        return
    if not isinstance(parent, dict):
        raise KustomizeError(f"JSON patch path goes through a scalar: {operation}")
    if op in ("remove", "replace", "test") and last not in parent:
        raise KustomizeError(f"JSON patch path does not exist: {operation}")
    if op in ("add", "replace"):
        parent[last] = value
    elif op == "remove":
        del parent[last]
    elif parent[last] != value:
        raise KustomizeError(f"JSON patch test failed: {operation}")


def _child(node: Any, token: str, operation: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return node[_index(node, token, operation, allow_end=False)]
    if isinstance(node, dict) and token in node:
        return node[token]
    raise KustomizeError(f"JSON patch path does not exist: {operation}")


def _index(items: list[Any], token: str, operation: dict[str, Any], *, allow_end: bool) -> int:
    if not token.isdigit() or int(token) > len(items) or (int(token) == len(items) and not allow_end):
        raise KustomizeError(f"JSON patch index out of range: {operation}")
    return int(token)


# --- images -----------------------------------------------------------------------------------

def _set_image(objects: list[dict[str, Any]], image: dict[str, Any]) -> None:
    unknown = set(image) - {"name", "newName", "newTag", "digest"}
    if unknown or "name" not in image:
        raise KustomizeError(f"images entry not supported: {image}")
    for obj in objects:
        for container in _containers(obj):
            if isinstance(container.get("image"), str) and _image_name(container["image"]) == image["name"]:
                container["image"] = _new_image(container["image"], image)


def _containers(node: Any):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from (c for c in value if isinstance(c, dict))
            else:
                yield from _containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from _containers(item)


def _split_image(reference: str) -> tuple[str, str, str]:
    """name, tag, digest of an image reference (a ':' after the last '/' starts the tag)."""
    name, _, digest = reference.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1:], digest
    return name, "", digest


def _image_name(reference: str) -> str:
    return _split_image(reference)[0]


def _new_image(reference: str, image: dict[str, Any]) -> str:
    name, tag, digest = _split_image(reference)
    name = image.get("newName", name)
    if image.get("digest"):
        return f"{name}@{image['digest']}"
    if image.get("newTag"):
        return f"{name}:{image['newTag']}"
    return name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.k8s.kustomize", description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="a folder with a kustomization.yaml")
    args = parser.parse_args(argv)
    try:
        sys.stdout.write(to_yaml(render(args.directory)))
    except KustomizeError as exc:
        print(f"kustomize: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
