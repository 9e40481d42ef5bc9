"""Registry documents as bytes and back: JSON read and written the same way everywhere (orjson),
and the interface document, parsed and checked whole (the schema of mesh/registry/schema.py, its
content hash) before anything reads a node of it. A reader never sees a document the mesh would
not have published."""

from __future__ import annotations

import contextlib
import gc
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from mesh.core.errors import ChecksumError, ManifestError
from mesh.core.names import sha256_hex
from mesh.registry.schema import MAX_INTERFACE_BYTES, InterfaceCheck, SchemaError, relation_name

if TYPE_CHECKING:
    from mesh.registry.schema import InterfaceCheck

Json = dict[str, Any]


MANIFEST_SCHEMAS = {
    f"https://schemas.getdbt.com/dbt/manifest/v{n}.json": n for n in (10, 11, 12)
}


INTERFACE_FORMAT = 1


def load_json(path: Path, what: str) -> Json:
    """Read a JSON object from `path` with orjson; any failure is a one-line ManifestError."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ManifestError(f"{what} not found: {path}; run the dbt build first") from exc
    except IsADirectoryError as exc:
        raise ManifestError(f"{what} {path} is a directory, not a file") from exc
    except OSError as exc:
        raise ManifestError(f"cannot read {what} {path}: {exc.strerror}") from exc
    return parse_json(data, f"{what} {path}")


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for a block (also a function decorator).

    Parsing a large manifest allocates millions of containers, and every collection those
    allocations trigger walks all of them again: with the collector on, `orjson.loads` of a 100 MB
    manifest costs 4x the parse itself, and extracting the interface from it 8x. Parsed JSON holds
    no reference cycles, so reference counting alone frees it; the collector resumes on exit.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def parse_json(data: bytes, what: str) -> Json:
    """Parse bytes as a JSON object."""
    if not data.strip():
        raise ManifestError(f"{what} is empty")
    try:
        with paused_gc():
            doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ManifestError(f"{what} is not valid JSON ({exc.msg} at byte {exc.pos})") from exc
    if not isinstance(doc, dict):
        raise ManifestError(f"{what} is not a JSON object")
    return doc


def check_schema(doc: Json, allowed: dict[str, int], what: str) -> int:
    """Check `metadata.dbt_schema_version` against an allow-list; return the schema number."""
    metadata = doc.get("metadata")
    found = metadata.get("dbt_schema_version") if isinstance(metadata, dict) else None
    if found is None:
        raise ManifestError(f"{what} has no metadata.dbt_schema_version: not a dbt artifact")
    if not isinstance(found, str) or found not in allowed:
        expected = ", ".join(sorted(allowed))
        raise ManifestError(f"{what} has incompatible schema {found!r}; expected one of {expected}")
    return allowed[found]


def check_manifest(doc: Json, what: str, project: str | None = None) -> Json:
    """Check the parts of a manifest the mesh relies on."""
    name = doc["metadata"].get("project_name")
    if project is not None and name != project:
        raise ManifestError(
            f"{what} belongs to project {name!r}, not {project!r}: build the right project"
        )
    nodes = doc.get("nodes")
    if not isinstance(nodes, dict):
        raise ManifestError(f"{what} has no `nodes` object")
    for unique_id, node in nodes.items():
        if not isinstance(node, dict) or node.get("unique_id") != unique_id:
            raise ManifestError(f"{what}: node {unique_id!r} is malformed or its unique_id differs")
    return doc


def content_sha256(nodes: Json, groups: Json) -> str:
    """Hash of the interface content, independent of when or by whom it was published."""
    return sha256_hex(orjson.dumps({"nodes": nodes, "groups": groups}, option=orjson.OPT_SORT_KEYS))


def dump_json(doc: Json) -> bytes:
    """Stable serialization: 2-space indent, trailing newline (diffs cleanly). Keys keep their
    order, so columns stay in the order the producer declared them."""
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"


def _interface_check(
    doc: Json, what: str, project: str | None, env: str | None, version: str | None
) -> InterfaceCheck:
    """The schema check of an interface read from the registry (mesh.registry.schema), once the
    parse and the dbt schema check passed: its project is the caller's, else the one it names."""
    # Imported here: pydantic and the schema cost a reader nothing until it reads an interface.

    metadata = doc.get("metadata")
    named = metadata.get("project_name") if isinstance(metadata, dict) else None
    return InterfaceCheck(project or str(named), env, version, what)


def _refuse_oversized(body: bytes, what: str) -> None:

    if len(body) > MAX_INTERFACE_BYTES:
        raise SchemaError(
            f"{what} is {len(body) >> 20} MiB, more than the {MAX_INTERFACE_BYTES >> 20} MiB an "
            "interface may be: refusing it"
        )


@paused_gc()
def load_interface(
    body: bytes, what: str, project: str | None = None, env: str | None = None, version: str | None = None
) -> Json:
    """Parse and check an interface read from the registry: dbt's manifest schema, the mesh's
    interface schema (mesh.registry.schema: every field that can reach generated code is typed,
    every relation name rebuilt from its identifiers), then the content hash. `env` and `version`,
    when given, must be what it says of itself."""
    _refuse_oversized(body, what)
    streamed = _stream_nodes(body, what, project, env, version, keep=True)
    if streamed is not None:
        return streamed[0]
    doc = parse_json(body, what)
    check = _checked_head(doc, what, project, env, version)
    doc["nodes"] = {uid: check.node(uid, node) for uid, node in doc["nodes"].items()}
    check.finish()
    expected = doc["metadata"]["mesh"].get("content_sha256")
    if expected != content_sha256(doc["nodes"], doc.get("groups") or {}):
        raise ChecksumError(f"{what}: its nodes do not match metadata.mesh.content_sha256")
    return doc


def _checked_head(doc: Json, what: str, project: str | None, env: str | None, version: str | None) -> InterfaceCheck:
    """Check all of an interface but its nodes; return the check that goes on with them."""
    check_schema(doc, MANIFEST_SCHEMAS, what)
    check_manifest(doc, what, project)
    mesh_meta = doc["metadata"].get("mesh")
    if not isinstance(mesh_meta, dict) or "version" not in mesh_meta:
        raise ManifestError(f"{what} has no metadata.mesh block: it was not published by the mesh")
    check = _interface_check(doc, what, project, env, version)
    check.head(doc)
    return check


_NODES_OPEN = b'"nodes":{\n'


# What `read_interface(lazy=True)` keeps of every node: enough to resolve a reference (sync) and
# to check an edge's relation and deprecation (validate).
NODE_SUMMARY_KEYS = (
    "unique_id", "name", "package_name", "resource_type", "version", "latest_version",
    "database", "schema", "alias", "deprecation_date",
)


def dump_interface(doc: Json) -> bytes:
    """The registry form of an interface: compact JSON with `nodes` last, one node per line.

    A third smaller than indented JSON (every consumer fetches it), still one node per line in a
    diff, and `read_interface` can verify it holding one node at a time. Any JSON reader (dbt-loom)
    reads it as usual."""
    head = orjson.dumps({key: value for key, value in doc.items() if key != "nodes"})
    lines = b",\n".join(
        orjson.dumps(uid) + b":" + orjson.dumps(node) for uid, node in doc["nodes"].items()
    )
    return head[:-1] + (b"," if len(head) > 2 else b"") + _NODES_OPEN + lines + b"\n}}\n"


@dataclass
class Interface:
    """A verified interface. With `read_interface(lazy=True)`, `doc["nodes"]` holds each node's
    summary only (NODE_SUMMARY_KEYS); `node(uid)` always returns the whole node."""

    doc: Json
    body: bytes = b""
    spans: dict[str, tuple[int, int]] | None = None

    def node(self, uid: str) -> Json:
        if self.spans is None:
            return dict(self.doc["nodes"][uid])
        start, end = self.spans[uid]
        node: Json = orjson.loads(b"{" + self.body[start:end] + b"}")[uid]
        # The bytes were checked when read; the relation name is rebuilt from its parts all the same.
        if isinstance(node.get("relation_name"), str):

            node["relation_name"] = relation_name(
                node["relation_name"], node.get("database"), node.get("schema"), node.get("alias")
            )
        return node


def _node_lines(body: bytes) -> tuple[bytes, list[tuple[int, int]]] | None:
    """(document without its nodes, span of each node line) in `dump_interface`'s layout, else None.

    The layout is recognised only when the document ends with the nodes object, one compact node
    per line, then the closing brace: `nodes` is then a member of the top-level object, since the
    one brace after it ends the document."""
    start = body.rfind(_NODES_OPEN)
    close = body.rfind(b"\n}")
    if start < 0 or close < start or body[close + 2 :].strip() != b"}":
        return None
    spans: list[tuple[int, int]] = []
    position = start + len(_NODES_OPEN)
    while position < close:
        end = body.find(b"\n", position, close + 1)
        stop = end - 1 if end < close else end
        if end < close and body[stop : stop + 1] != b",":
            return None
        spans.append((position, stop))
        position = end + 1
    return body[:start] + b'"nodes":{}}', spans


def _stream_nodes(
    body: bytes, what: str, project: str | None, env: str | None, version: str | None, keep: bool
) -> tuple[Json, dict[str, tuple[int, int]]] | None:
    """Read an interface in `dump_interface`'s layout a node at a time: each node is parsed by the
    schema's validator (one parse), checked, hashed into the content hash and kept whole (`keep`)
    or as its summary. None when the body is not in that layout or its nodes are not sorted."""
    split = _node_lines(body)
    if split is None:
        return None
    head, spans = split
    doc = parse_json(head, what)
    check = _checked_head(doc, what, project, env, version)
    # content_sha256, streamed: {"groups":…,"nodes":{…}} with sorted keys, one node at a time.
    digest = hashlib.sha256(b'{"groups":')
    digest.update(orjson.dumps(doc.get("groups") or {}, option=orjson.OPT_SORT_KEYS))
    digest.update(b',"nodes":{')
    nodes: Json = {}
    node_spans: dict[str, tuple[int, int]] = {}
    previous = ""
    for start, end in spans:
        uid, node = check.node_json(b"{" + body[start:end] + b"}")
        if uid <= previous:
            return None  # not sorted: read the usual way
        digest.update((b"," if previous else b"") + orjson.dumps(uid) + b":")
        digest.update(orjson.dumps(node, option=orjson.OPT_SORT_KEYS))
        nodes[uid] = node if keep else {key: node.get(key) for key in NODE_SUMMARY_KEYS}
        node_spans[uid] = (start, end)
        previous = uid
    digest.update(b"}}")
    check.finish()
    if doc["metadata"]["mesh"].get("content_sha256") != digest.hexdigest():
        raise ChecksumError(f"{what}: its nodes do not match metadata.mesh.content_sha256")
    doc["nodes"] = nodes
    return doc, node_spans


@paused_gc()
def read_interface(
    body: bytes,
    what: str,
    project: str | None = None,
    lazy: bool = False,
    env: str | None = None,
    version: str | None = None,
) -> Interface:
    """Parse and check an interface as `load_interface` does. With `lazy`, memory stays that of the
    body, not of its parsed nodes: each node is parsed, checked, hashed and dropped in turn (the
    schema and the content hash are checked all the same), and `Interface.node` parses a node
    again when asked for it (its relation name rebuilt from its parts)."""
    _refuse_oversized(body, what)
    streamed = _stream_nodes(body, what, project, env, version, keep=False) if lazy else None
    if streamed is None:
        return Interface(load_interface(body, what, project, env, version))
    doc, spans = streamed
    return Interface(doc, body, spans)
