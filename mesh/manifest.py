"""Read dbt artifacts and extract a project's public interface.

The interface is a manifest-shaped JSON document (dbt-loom reads it unchanged) holding only the
project's own public nodes a consumer can ref: `access: public` models (every version), and seeds
and snapshots marked public (below), trimmed to what a consumer needs: no SQL, no private or
protected nodes, no sources, macros or tests. It is the unit of contract comparison and the only
thing consumers ever see of a producer.

dbt-core 1.11 gives `access` to models only (and to functions, which no ref reaches): its node
classes and its YAML schema have no `access` on seeds or snapshots. dbt still keeps a seed's or
snapshot's `config: {access: public}` as a custom config key, and dbt-loom reads exactly that to
inject a seed or snapshot into a consumer, so the mesh honours it too. On adapters where dbt checks
YAML against its schema (Snowflake, BigQuery, Databricks, Redshift), dbt 1.11 warns about that key
(CustomKeyInConfigDeprecation); `config: {meta: {mesh: {access: public}}}` says the same without a
warning. dbt enforces contracts on models only: a seed or snapshot is never contracted here, whatever
its config says (dbt accepts `contract: {enforced: true}` on a seed and ignores it).

Columns: a public model with an enforced contract publishes its contract's columns as they are. Any
other public node publishes the columns the producer's catalog (`dbt docs generate`) observed in the
warehouse, types lower-cased, with the YAML descriptions and constraints, each entry marked
`"contract": false` (observed, not guaranteed); contracted entries carry no `contract` key.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import re
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from mesh.errors import ChecksumError, ManifestError, PublishRefusedError
from mesh.names import sha256_hex
from mesh.surface import hint

if TYPE_CHECKING:
    from mesh.registry.schema import InterfaceCheck

MANIFEST_SCHEMAS = {
    f"https://schemas.getdbt.com/dbt/manifest/v{n}.json": n for n in (10, 11, 12)
}
RUN_RESULTS_SCHEMAS = {
    f"https://schemas.getdbt.com/dbt/run-results/v{n}.json": n for n in (4, 5, 6)
}
INTERFACE_FORMAT = 1
# Statuses of a node in run_results.json that mean it built or passed.
# "no-op": an exposure or saved query, which dbt build lists without running anything.
PASSING_STATUSES = frozenset({"success", "pass", "warn", "no-op"})
# The resource types a consumer can ref across projects (dbt's refable nodes).
PUBLIC_RESOURCE_TYPES = ("model", "seed", "snapshot")
_UNIQUE_ID_RE = re.compile(
    r"(?:model\.([a-z_][a-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)(\.v[A-Za-z0-9_.]+)?"
    r"|(?:seed|snapshot)\.([a-z_][a-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*))"
)

Json = dict[str, Any]


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


# dbt writes `metadata` first, `dbt_schema_version` first in it: readable from the file's head.
_SCHEMA_AT_HEAD = re.compile(rb'\A\s*\{\s*"metadata"\s*:\s*\{\s*"dbt_schema_version"\s*:\s*"([^"\\]{0,300})"')
_HEAD_BYTES = 1 << 16


def check_schema_early(path: Path, allowed: dict[str, int], what: str) -> None:
    """Refuse a large artifact of an unknown schema from its first bytes, before parsing it all
    (a 200 MB manifest of the wrong dbt version costs seconds and gigabytes to parse)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(_HEAD_BYTES)
    except OSError:
        return  # load_json says what is wrong
    match = _SCHEMA_AT_HEAD.match(head) if len(head) == _HEAD_BYTES else None
    if match is not None:
        found = match.group(1).decode("utf-8", "replace")
        check_schema({"metadata": {"dbt_schema_version": found}}, allowed, what)


_REUSED: ContextVar[dict[tuple[str, int, int], Json] | None] = ContextVar(
    "mesh_reused_manifests", default=None
)


@contextlib.contextmanager
def reused_manifests() -> Iterator[None]:
    """Within the block, `load_manifest` parses an unchanged file once and gives every caller the
    same document, which they only read: `invoke mesh` reads a project's manifest to see whether it
    has public models, to publish it, in the contract gate and to store it as state."""
    token = _REUSED.set({})
    try:
        yield
    finally:
        _REUSED.reset(token)


def load_manifest(path: Path, project: str | None = None) -> Json:
    """Read a dbt manifest.json, checking its schema version and, if given, its project name."""
    reused, key = _REUSED.get(), None
    if reused is not None:
        with contextlib.suppress(OSError):
            stat = path.stat()
            key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if reused is not None and key in reused:
        doc = reused[key]
    else:
        check_schema_early(path, MANIFEST_SCHEMAS, f"manifest {path}")
        doc = load_json(path, "manifest")
        check_schema(doc, MANIFEST_SCHEMAS, f"manifest {path}")
        if reused is not None and key is not None:
            reused[key] = doc
    return check_manifest(doc, f"manifest {path}", project)


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


def check_run_results(path: Path, manifest: Json, public_ids: list[str]) -> None:
    """Refuse unless the build that wrote `manifest` ran every public node and nothing failed."""
    doc = load_json(path, "run_results.json")
    check_schema(doc, RUN_RESULTS_SCHEMAS, f"run_results {path}")
    invocation = manifest["metadata"].get("invocation_id")
    if doc["metadata"].get("invocation_id") != invocation:
        raise PublishRefusedError(
            f"{path} is not from the build that wrote manifest.json (invocation ids differ): "
            f"run {hint('build', '--project', 'P')} again, then publish"
        )
    results = doc.get("results")
    if not isinstance(results, list):
        raise ManifestError(f"run_results {path} has no `results` list")
    failed = [
        f"{r.get('unique_id')} ({r.get('status')})"
        for r in results
        if isinstance(r, dict) and r.get("status") not in PASSING_STATUSES
    ]
    if failed:
        more = f" and {len(failed) - 3} more" if len(failed) > 3 else ""
        raise PublishRefusedError(
            f"the last build did not pass: {', '.join(failed[:3])}{more}; fix it and rebuild"
        )
    built = {r.get("unique_id") for r in results if isinstance(r, dict)}
    missing = [uid for uid in public_ids if uid not in built]
    if missing:
        raise PublishRefusedError(
            f"the last build did not run public {resource_label(missing[0])} {missing[0]}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            + f": run a full {hint('build', '--project', 'P')} before publishing"
        )


def _column(column: Json) -> Json:
    return {
        "name": column.get("name"),
        "data_type": column.get("data_type"),
        "description": column.get("description") or "",
        "constraints": column.get("constraints") or [],
    }


def resource_label(unique_id: str) -> str:
    """`model`, `seed` or `snapshot`: what a unique_id names, for messages."""
    return unique_id.partition(".")[0] or "node"


def _access(node: Json) -> Any:
    config = node.get("config") or {}
    access = node.get("access") or config.get("access")
    if access is None and node.get("resource_type") in ("seed", "snapshot"):
        meta = config.get("meta") or node.get("meta") or {}
        mesh_meta = meta.get("mesh") if isinstance(meta, dict) else None
        access = mesh_meta.get("access") if isinstance(mesh_meta, dict) else None
    return access


def has_enforced_contract(node: Json) -> bool:
    """Whether dbt enforces the node's contract: models only (dbt ignores it on seeds, snapshots)."""
    if node.get("resource_type") != "model":
        return False
    contract = node.get("contract") or (node.get("config") or {}).get("contract") or {}
    return bool(contract.get("enforced"))


def _data_type(value: Any) -> str | None:
    """A catalog type as the interface writes it: lower-case, single spaces (`decimal(18,2)`)."""
    if not isinstance(value, str) or not value.strip():
        return None
    return " ".join(value.lower().split())


def observed_columns(node: Json, catalog_table: Json | None) -> Json:
    """Columns of an uncontracted public node: the catalog's (in the relation's order, types
    lower-cased) with the YAML's descriptions and constraints, each marked `"contract": false`.
    Without a catalog entry (the relation is not built), the YAML's columns, marked the same way."""
    declared: Json = node.get("columns") or {}
    by_lower = {str(name).lower(): col for name, col in declared.items()}
    observed = (catalog_table or {}).get("columns") if isinstance(catalog_table, dict) else None
    columns: Json = {}
    if isinstance(observed, dict) and observed:
        def position(col: Json) -> int:
            index = col.get("index")
            return index if isinstance(index, int) else 1 << 30

        ordered = sorted(
            (col for col in observed.values() if isinstance(col, dict) and col.get("name")),
            key=position,
        )
        for col in ordered:
            raw = str(col["name"])
            yaml_col = by_lower.get(raw.lower())
            # Snowflake reports unquoted identifiers upper-cased; YAML spells them as declared.
            name = str(yaml_col.get("name")) if yaml_col else (raw.lower() if raw.isupper() else raw)
            entry = _column(yaml_col or {"name": name})
            entry["name"] = name
            entry["data_type"] = _data_type(col.get("type"))
            entry["contract"] = False
            columns[name] = entry
        return columns
    for name, col in declared.items():
        entry = _column(col)
        entry["data_type"] = _data_type(entry["data_type"])
        entry["contract"] = False
        columns[name] = entry
    return columns


def interface_node(node: Json, public_ids: set[str], catalog_table: Json | None = None) -> Json:
    """The interface view of one public node (`catalog_table`: its entry in the producer's
    catalog, for the columns of a node without an enforced contract)."""
    config = node.get("config") or {}
    enforced = has_enforced_contract(node)
    depends = (node.get("depends_on") or {}).get("nodes") or []
    columns = (
        {name: _column(col) for name, col in (node.get("columns") or {}).items()}
        if enforced
        else observed_columns(node, catalog_table)
    )
    return {
        "unique_id": node["unique_id"],
        "name": node["name"],
        "package_name": node["package_name"],
        "resource_type": node["resource_type"],
        "database": node.get("database"),
        "schema": node.get("schema"),
        "alias": node.get("alias"),
        "relation_name": node.get("relation_name"),
        "access": "public",
        "group": node.get("group") or config.get("group"),
        "version": node.get("version"),
        "latest_version": node.get("latest_version"),
        "deprecation_date": node.get("deprecation_date"),
        "description": node.get("description") or "",
        "columns": columns,
        "constraints": node.get("constraints") or [],
        "contract": {"enforced": enforced},
        "config": {
            "materialized": config.get("materialized"),
            "contract": {"enforced": enforced},
            "access": "public",
            "event_time": config.get("event_time"),
        },
        "meta": node.get("meta") or config.get("meta") or {},
        "tags": node.get("tags") or [],
        "depends_on": {"nodes": [d for d in depends if d in public_ids], "macros": []},
    }


def public_node_ids(manifest: Json) -> list[str]:
    """Unique ids of the project's own public models, seeds and snapshots, sorted."""
    project = manifest["metadata"].get("project_name")
    found = []
    for unique_id, node in manifest["nodes"].items():
        if node.get("resource_type") not in PUBLIC_RESOURCE_TYPES or node.get("package_name") != project:
            continue
        if _access(node) == "public":
            if not _UNIQUE_ID_RE.fullmatch(unique_id):
                kind = node.get("resource_type")
                raise ManifestError(f"public {kind} has a malformed unique_id {unique_id!r}")
            found.append(unique_id)
    return sorted(found)


def uncontracted_ids(manifest: Json, ids: list[str]) -> list[str]:
    """The public nodes among `ids` without an enforced contract (their columns need a catalog)."""
    return [uid for uid in ids if not has_enforced_contract(manifest["nodes"][uid])]


def extract_interface(
    manifest: Json, ids: list[str] | None = None, catalog: Json | None = None
) -> tuple[Json, Json]:
    """Return (nodes, groups) of the interface: the project's public nodes and their groups
    (`ids`: `public_node_ids(manifest)`, when the caller has it already; `catalog`: the
    producer's catalog.json, for the columns of public nodes without an enforced contract)."""
    ids = public_node_ids(manifest) if ids is None else ids
    id_set = set(ids)
    tables: Json = (catalog or {}).get("nodes") or {}
    nodes = {uid: interface_node(manifest["nodes"][uid], id_set, tables.get(uid)) for uid in ids}
    group_names = {n["group"] for n in nodes.values() if n["group"]}
    groups = {
        uid: {"name": g.get("name"), "owner": g.get("owner") or {}, "description": g.get("description")}
        for uid, g in (manifest.get("groups") or {}).items()
        if isinstance(g, dict) and g.get("name") in group_names
    }
    return nodes, groups


def content_sha256(nodes: Json, groups: Json) -> str:
    """Hash of the interface content, independent of when or by whom it was published."""
    return sha256_hex(orjson.dumps({"nodes": nodes, "groups": groups}, option=orjson.OPT_SORT_KEYS))


def build_interface(manifest: Json, nodes: Json, groups: Json, mesh_meta: Json) -> Json:
    """Assemble the interface document (manifest-shaped) from its parts."""
    meta = manifest["metadata"]
    return {
        "metadata": {
            "dbt_schema_version": meta.get("dbt_schema_version"),
            "dbt_version": meta.get("dbt_version"),
            "generated_at": meta.get("generated_at"),
            "invocation_id": meta.get("invocation_id"),
            "project_name": meta.get("project_name"),
            "adapter_type": meta.get("adapter_type"),
            "mesh": mesh_meta,
        },
        "nodes": nodes,
        "groups": groups,
        "sources": {},
        "macros": {},
        "exposures": {},
        "metrics": {},
    }


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
    from mesh.registry.schema import InterfaceCheck

    metadata = doc.get("metadata")
    named = metadata.get("project_name") if isinstance(metadata, dict) else None
    return InterfaceCheck(project or str(named), env, version, what)


def _refuse_oversized(body: bytes, what: str) -> None:
    from mesh.registry.schema import MAX_INTERFACE_BYTES, SchemaError

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


# --- the registry form of an interface, and reading it a node at a time ---------------------------

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
            from mesh.registry.schema import relation_name

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
