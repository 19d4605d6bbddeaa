"""Parsing a template repository's files into catalog entries. Pure: bytes in, entries out.

Every ``*.yaml``/``*.yml`` may hold several documents; those of ``kind: Template`` with apiVersion
``stream.space/v1alpha1`` (or the legacy ``stream.streamspace.io/v1alpha1``) are templates, other
kinds (``TemplateCatalog``, ...) are skipped. Files are hostile input: size, count and YAML
complexity are capped before anything is built, and a malformed file is reported, never fatal.
Names seen twice keep the first by path order; the others are listed.

YAML is read in three steps, each bounded by the one before: the event stream is walked (events,
aliases, depth), the node graph is composed (aliases are shared nodes there, nothing is
expanded), and the size the document would have with every alias expanded is counted on that
graph (each node once, so a bomb costs no more to count than to compose) before any Python
object is built. A manifest is stored only when its JSON fits ``max_manifest_bytes``; all the
bytes parsed in one repository are capped too (one blob under many names is parsed once per
name, and counted so).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from streamspace.config import SyncSettings
from streamspace.naming import is_object_name
from streamspace.plugins.manifest import manifest_problems
from streamspace.templates import infer_app_type, normalize_resources

# libyaml's C parser when PyYAML has it (the wheels do): same safe semantics, ~10x faster.
SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

API_VERSIONS = frozenset({"stream.space/v1alpha1", "stream.streamspace.io/v1alpha1"})


@dataclass(frozen=True)
class Limits:
    max_files: int = 5000
    max_blob_bytes: int = 1024 * 1024
    max_yaml_events: int = 50_000
    max_yaml_aliases: int = 100
    max_yaml_depth: int = 64
    max_yaml_nodes: int = 50_000  # nodes of a document with its aliases expanded
    max_manifest_bytes: int = 256 * 1024  # JSON of one stored manifest (and expanded YAML)
    max_parse_bytes: int = 64 * 1024 * 1024  # bytes parsed per repository, all files together
    max_read_bytes: int = 64 * 1024 * 1024  # distinct blobs read from the store, together
    max_repository_bytes: int = 256 * 1024 * 1024  # packed size, counted while downloading
    max_object_bytes: int = 16 * 1024 * 1024  # any object of the pack, from its header
    max_pack_objects: int = 100_000  # objects a pack may declare
    max_tree_entries: int = 100_000  # tree entries walked to find the files
    max_inflated_bytes: int = 64 * 1024 * 1024  # all objects of the pack, from their headers


@dataclass(frozen=True)
class CatalogTemplate:
    name: str
    display_name: str
    description: str
    category: str
    app_type: str
    icon: str | None
    base_image: str
    tags: tuple[str, ...]
    manifest: dict[str, Any]  # the Template as it should be applied (kasmvnc → vnc, resources)
    source_path: str


@dataclass(frozen=True)
class CatalogPlugin:
    name: str
    version: str
    display_name: str
    description: str
    category: str
    plugin_type: str
    icon_url: str | None
    tags: tuple[str, ...]
    manifest: dict[str, Any]
    source_path: str


@dataclass
class ParseResult:
    templates: list[CatalogTemplate] = field(default_factory=list)
    plugins: list[CatalogPlugin] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # "path: what is wrong"
    duplicates: list[str] = field(default_factory=list)  # "name: kept a, ignored b"
    skipped_documents: int = 0  # other kinds, e.g. TemplateCatalog

    def summary(self, kind: str = "template") -> str:
        count = len(self.templates) if kind == "template" else len(self.plugins)
        parts = [f"{count} {kind}(s)"]
        if self.problems:
            parts.append(f"{len(self.problems)} file problem(s): " + "; ".join(self.problems[:20]))
        if self.duplicates:
            parts.append("duplicates: " + "; ".join(self.duplicates[:20]))
        return ". ".join(parts)


DEFAULT_LIMITS = Limits()


def sync_limits(sync: SyncSettings) -> Limits:
    """The limits of a sync, as configured."""
    return Limits(
        max_manifest_bytes=sync.max_manifest_bytes,
        max_parse_bytes=sync.max_bytes,
        max_read_bytes=sync.max_bytes,
        max_repository_bytes=sync.max_pack_bytes,
        max_object_bytes=sync.max_object_bytes,
        max_inflated_bytes=sync.max_bytes,
    )


class UnsafeYaml(ValueError):
    """A document too large or too complex to build."""


def check_yaml_complexity(text: str, limits: Limits) -> None:
    """Walk the YAML event stream (nothing is constructed) and refuse what is too much."""
    aliases = depth = 0
    for events, event in enumerate(yaml.parse(text, Loader=SafeLoader), start=1):
        if isinstance(event, yaml.AliasEvent):
            aliases += 1
        elif isinstance(event, yaml.CollectionStartEvent):
            depth += 1
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        if events > limits.max_yaml_events:
            raise UnsafeYaml(f"more than {limits.max_yaml_events} YAML events")
        if aliases > limits.max_yaml_aliases:
            raise UnsafeYaml(f"more than {limits.max_yaml_aliases} YAML aliases")
        if depth > limits.max_yaml_depth:
            raise UnsafeYaml(f"nested deeper than {limits.max_yaml_depth}")


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def check_expanded_size(root: yaml.Node, limits: Limits) -> None:
    """Refuse a composed document whose alias-expanded form is too large, or recursive.

    Counts nodes and scalar bytes (plus a few bytes of punctuation per node, as JSON would
    have) bottom-up, each distinct node once, without expanding anything: iterative, so deep
    alias chains cannot exhaust the stack either.
    """
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (nodes, bytes) when expanded
    active: set[int] = set()  # on the current path: meeting one again is a cycle
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            active.discard(key)
            children = [sizes[id(child)] for child in _children(node)]
            own = len(node.value) if isinstance(node, yaml.ScalarNode) else 0
            nodes = 1 + sum(n for n, _ in children)
            size = own + 4 + sum(b for _, b in children)
            if nodes > limits.max_yaml_nodes:
                raise UnsafeYaml(f"more than {limits.max_yaml_nodes} nodes once aliases expand")
            if size > limits.max_manifest_bytes:
                raise UnsafeYaml(
                    f"larger than {limits.max_manifest_bytes} bytes once aliases expand"
                )
            sizes[key] = (nodes, size)
            continue
        if key in sizes:
            continue
        if key in active:
            raise UnsafeYaml("a recursive alias")
        active.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


def load_documents(text: str, limits: Limits) -> list[Any]:
    """The documents of ``text``, built only after every check passed (UnsafeYaml if not)."""
    check_yaml_complexity(text, limits)
    nodes = [node for node in yaml.compose_all(text, Loader=SafeLoader) if node is not None]
    for node in nodes:
        check_expanded_size(node, limits)
    loader = SafeLoader("")
    try:
        return [loader.construct_document(node) for node in nodes]
    finally:
        loader.dispose()


def _fits(manifest: Mapping[str, Any], limits: Limits) -> str | None:
    """Why ``manifest`` cannot be stored, or None; only plain data is JSON (dates, sets and the
    like fail here)."""
    size = len(json.dumps(manifest, separators=(",", ":")))
    if size > limits.max_manifest_bytes:
        return f"manifest of {size} bytes is larger than {limits.max_manifest_bytes}"
    return None


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(str(v) for v in value if isinstance(v, str | int | float))


def normalized_template(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The Template to apply: current apiVersion, ``vnc`` for ``kasmvnc``, structured resources."""
    spec = dict(doc.get("spec") or {})
    if "kasmvnc" in spec:
        legacy = spec.pop("kasmvnc")
        spec.setdefault("vnc", legacy)
    if spec.get("defaultResources"):
        spec["defaultResources"] = normalize_resources(spec["defaultResources"])
    spec.setdefault("appType", infer_app_type(spec))
    return {
        "apiVersion": "stream.space/v1alpha1",
        "kind": "Template",
        "metadata": {"name": doc["metadata"]["name"]},
        "spec": spec,
    }


def _template(doc: Mapping[str, Any], path: str, limits: Limits) -> CatalogTemplate | str:
    meta = doc.get("metadata")
    spec = doc.get("spec")
    if not isinstance(meta, Mapping) or not isinstance(spec, Mapping):
        return "metadata and spec must be mappings"
    name = meta.get("name")
    if not isinstance(name, str) or not is_object_name(name):
        return f"metadata.name {name!r} is not a valid Kubernetes object name"
    missing = [f for f in ("displayName", "baseImage") if not str(spec.get(f) or "").strip()]
    if missing:
        return f"{name}: spec.{', spec.'.join(missing)} required"
    manifest = normalized_template(doc)
    if (too_large := _fits(manifest, limits)) is not None:
        return f"{name}: {too_large}"
    icon = spec.get("icon")
    return CatalogTemplate(
        name=name,
        display_name=str(spec["displayName"]),
        description=str(spec.get("description") or ""),
        category=str(spec.get("category") or ""),
        app_type=manifest["spec"]["appType"],
        icon=str(icon) if icon else None,
        base_image=str(spec["baseImage"]),
        tags=_strings(spec.get("tags")),
        manifest=manifest,
        source_path=path,
    )


def _plugin(data: Any, path: str, limits: Limits) -> CatalogPlugin | str:
    if problems := manifest_problems(data):
        name = data.get("name") if isinstance(data, Mapping) else None
        prefix = f"{name}: " if isinstance(name, str) and name else ""
        return prefix + "; ".join(problems)
    name, version, plugin_type = str(data["name"]), str(data["version"]), str(data["type"])
    if (too_large := _fits(data, limits)) is not None:
        return f"{name}: {too_large}"
    icon = data.get("icon") or data.get("iconUrl")
    return CatalogPlugin(
        name=name,
        version=version,
        display_name=str(data.get("displayName") or name),
        description=str(data.get("description") or ""),
        category=str(data.get("category") or ""),
        plugin_type=str(plugin_type),
        icon_url=str(icon) if icon else None,
        tags=_strings(data.get("tags")),
        manifest=dict(data),
        source_path=path,
    )


def parse_repository(
    files: Iterable[tuple[str, bytes]], kind: str = "template", limits: Limits = DEFAULT_LIMITS
) -> ParseResult:
    """Parse ``(path, content)`` pairs (any order) of a repository of templates or plugins."""
    result = ParseResult()
    ordered = sorted(files, key=lambda f: f[0])
    if len(ordered) > limits.max_files:
        result.problems.append(
            f"repository: {len(ordered)} files, only the first {limits.max_files} are read"
        )
        ordered = ordered[: limits.max_files]
    first_seen: dict[str, str] = {}
    budget = limits.max_parse_bytes
    for path, content in ordered:
        cost = min(len(content), limits.max_blob_bytes + 1) if _wanted(path, kind) else 0
        if cost > budget:
            result.problems.append(
                f"{path}: over the {limits.max_parse_bytes} bytes parsed per repository; "
                "it and the files after it are skipped"
            )
            break
        budget -= cost
        entries = _parse_file(path, content, kind, limits, result)
        for entry in entries:
            if entry.name in first_seen:
                result.duplicates.append(
                    f"{entry.name}: kept {first_seen[entry.name]}, ignored {path}"
                )
                continue
            first_seen[entry.name] = path
            if isinstance(entry, CatalogTemplate):
                result.templates.append(entry)
            else:
                result.plugins.append(entry)
    return result


def _wanted(path: str, kind: str) -> bool:
    basename = path.rsplit("/", 1)[-1]
    if kind == "plugin":
        return basename == "manifest.json"
    return basename.endswith((".yaml", ".yml"))


def _parse_file(
    path: str, content: bytes, kind: str, limits: Limits, result: ParseResult
) -> list[CatalogTemplate | CatalogPlugin]:
    if not _wanted(path, kind):
        return []
    if len(content) > limits.max_blob_bytes:
        result.problems.append(f"{path}: larger than {limits.max_blob_bytes} bytes, skipped")
        return []
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        result.problems.append(f"{path}: not UTF-8 text")
        return []
    parsed = (
        _plugin_file(text, path, limits) if kind == "plugin" else _template_file(text, path, limits)
    )
    problems = [p for p in parsed if isinstance(p, str)]
    result.problems.extend(f"{path}: {p}" for p in problems if p != SKIPPED)
    result.skipped_documents += sum(1 for p in problems if p == SKIPPED)
    return [p for p in parsed if not isinstance(p, str)]


SKIPPED = "\x00skipped"  # marks a document of another kind: counted, not a problem


def _plugin_file(text: str, path: str, limits: Limits) -> list[CatalogPlugin | str]:
    try:
        return [_plugin(json.loads(text), path, limits)]
    except ValueError as exc:
        return [f"invalid JSON: {exc}"]


def _template_file(text: str, path: str, limits: Limits) -> list[CatalogTemplate | str]:
    try:
        documents = load_documents(text, limits)
    except (yaml.YAMLError, UnsafeYaml) as exc:
        return [str(exc).splitlines()[0] if str(exc) else type(exc).__name__]
    entries: list[CatalogTemplate | str] = []
    for doc in documents:
        if not isinstance(doc, Mapping):
            continue
        if doc.get("kind") != "Template" or doc.get("apiVersion") not in API_VERSIONS:
            entries.append(SKIPPED)
            continue
        try:
            entries.append(_template(doc, path, limits))
        except (TypeError, ValueError) as exc:
            entries.append(f"not plain data: {exc}")
    return entries
