"""Which upstream models and columns each consumer uses, read from its own built manifest.

For every node of a consumer whose parents cross a project boundary, usage records the upstream
public model it reads and the columns it selects from it:
- dbt-loom parents `model.<upstream>.<name>[.v<N>]` (or `seed.…`, `snapshot.…`) are the upstream
  unique_id itself;
- generated-source parents `source.<consumer>.<upstream>.<table>` map back to the upstream
  unique_id through the `meta.mesh.unique_id` that sync wrote.
Columns come from the node's `compiled_code` (present after a build), parsed with sqlglot in the
dialect of `metadata.adapter_type`, with the upstream relations' published columns as schema: stars
in CTEs and subqueries are expanded, projections nobody reads are pushed out, and what remains
qualified by an upstream relation (in SELECT, WHERE, JOIN, GROUP BY, ...) is used. Where that is not
possible the record is conservative: `"*"` (every column, present and future) is recorded when a
`select *` over the upstream relation reaches the node's output, when the SQL cannot be parsed or
qualified, when a column cannot be attributed to one relation, and for non-SQL nodes. A `"*"` makes
every column change of that model count as hitting the consumer.

A consumer that also publishes records, for each output column of each of its public models, which
upstream public columns feed it (`lineage`): column lineage from the compiled SQL of the public model
and of its own parents (mesh.interface.column_lineage), walked through the project's models down to the
upstream refs and sources; `"*"` where it cannot tell (a python model, SQL it cannot read: every
upstream column the model reaches may feed every output column). This is what lets the gate of any
upstream follow a change through the consumer to the consumers of its public columns.

The result is stored per consumer as its private registry object `usage` (see registry/base.py),
written after each validation, replacing the consumer's previous record, and read by the contract
gate (mesh.interface.contracts) and `invoke registry.consumers`. `prune_usage` drops what a consumer's newer
build no longer has (call it after each passing build). Format 2 adds `lineage`; records of format 1
are still read (without lineage). Column names are compared lower-cased.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mesh.core.errors import ManifestError, RegistryError
from mesh.core.surface import hint
from mesh.interface.sql_columns import ALL_COLUMNS, RelationKey, columns_used, dialect_of
from mesh.interface.sql_columns import relation_key as _key
from mesh.project.artifacts import PUBLIC_RESOURCE_TYPES, Json, load_manifest, public_node_ids
from mesh.project.config import Mesh
from mesh.registry.document import dump_json, load_interface, parse_json
from mesh.registry.record_schema import check_usage
from mesh.registry.schema import MAX_RECORD_BYTES

USAGE_FORMAT = 2  # 2: adds `lineage`; records of format 1 are still read
READABLE_FORMATS = (1, 2)
_USED_BY = ("model", "snapshot", "test", "analysis", "seed")



@dataclass(frozen=True)
class Use:
    """One consumer node reading one upstream public model."""

    consumer: str  # the consumer project
    node: str  # the consumer node's unique_id
    upstream: str
    upstream_node: str  # the upstream model's unique_id (the version the reference resolved to)
    via: str  # "ref" (dbt-loom) or "source" (generated sources)
    pinned: bool  # the reference names a version (ref(..., v=N), source table `<name>_v<N>`)
    columns: tuple[str, ...]  # sorted; ("*",) when every column counts

    @property
    def all_columns(self) -> bool:
        return ALL_COLUMNS in self.columns

    def uses_column(self, column: str) -> bool:
        return self.all_columns or column.lower() in self.columns

    def to_json(self) -> Json:
        doc = asdict(self)
        doc["columns"] = list(self.columns)
        return doc


@dataclass(frozen=True)
class Feed:
    """Column lineage across a boundary: upstream public columns that feed one output column of a
    public model of a consumer that publishes too."""

    project: str  # the consumer that publishes
    node: str  # its public model's unique_id
    column: str  # the output column, lower-cased; "*" for every output column (cannot tell)
    upstream: str
    upstream_node: str  # the upstream public model's unique_id (the version the reference resolved to)
    pinned: bool  # reached through a reference that names a version
    columns: tuple[str, ...]  # upstream columns feeding it, sorted; ("*",) every column may

    @property
    def all_columns(self) -> bool:
        return ALL_COLUMNS in self.columns

    def uses_column(self, column: str) -> bool:
        return self.all_columns or column.lower() in self.columns

    def to_json(self) -> Json:
        doc = asdict(self)
        doc["columns"] = list(self.columns)
        return doc


# --- usage of one consumer manifest ---------------------------------------------------------------


def _upstream_target(
    parent: str, manifest: Json, project: str, upstreams: Iterable[str]
) -> tuple[str, str, str, Json] | None:
    """(upstream, upstream unique_id, via, node-or-source) for a parent crossing into an upstream."""
    parts = parent.split(".")
    names = set(upstreams)
    if parts[0] in PUBLIC_RESOURCE_TYPES and len(parts) >= 3 and parts[1] != project and parts[1] in names:
        return parts[1], parent, "ref", (manifest.get("nodes") or {}).get(parent) or {}
    if parts[0] == "source" and len(parts) >= 4 and parts[1] == project:
        source = (manifest.get("sources") or {}).get(parent) or {}
        mesh_meta = source_mesh_meta(source)
        uid = mesh_meta.get("unique_id")
        # A generated source is named after its upstream; an adopted one (the team's own source,
        # mesh/consumer/adopt.py) names its upstream in meta.mesh.
        upstream = parts[2] if parts[2] in names else mesh_meta.get("upstream")
        if upstream not in names:
            return None
        if not isinstance(uid, str) or not uid:
            return None  # not generated by sync: lineage validation reports it
        return str(upstream), uid, "source", source
    return None


def source_mesh_meta(source: Json) -> Json:
    """`meta.mesh` of a source table (dbt merges config.meta into meta; either may hold it)."""
    for meta in ((source.get("config") or {}).get("meta"), source.get("meta")):
        found = meta.get("mesh") if isinstance(meta, dict) else None
        if isinstance(found, dict) and found:
            return found
    return {}


def _pinned(node: Json, via: str, target: Json, upstream_node: str) -> bool:
    if via == "source":
        version = ((target.get("meta") or {}).get("mesh") or {}).get("version")
        return version is not None and str(target.get("name", "")).endswith(f"_v{version}")
    parts = upstream_node.split(".")
    if len(parts) < 4:
        return False  # an unversioned model: every ref is unpinned
    for ref in node.get("refs") or []:
        if (
            isinstance(ref, dict)
            and ref.get("package") == parts[1]
            and ref.get("name") == parts[2]
            and ref.get("version") is not None
        ):
            return True
    return False


def _upstream_relation(
    node: Json, parent: str, manifest: Json, project: str, upstreams: list[str], published: Json
) -> tuple[str, str, str, bool, RelationKey, list[str] | None] | None:
    """(upstream, upstream unique_id, via, pinned, relation, known columns) of a parent of `node`
    that crosses into an upstream project; None for any other parent."""
    found = _upstream_target(parent, manifest, project, upstreams)
    if found is None:
        return None
    upstream, uid, via, target = found
    if via == "source":
        key = _key(target.get("database"), target.get("schema"), target.get("identifier") or target.get("name"))
        cols = list(target.get("columns") or {}) or None
    else:
        key = _key(target.get("database"), target.get("schema"), target.get("alias") or target.get("name"))
        cols = None
    known = published.get(uid)
    if known is not None:
        cols = list(known.get("columns") or {}) or cols
        if via == "ref" and not any(key):
            key = _key(known.get("database"), known.get("schema"), known.get("alias"))
    return upstream, uid, via, _pinned(node, via, target, uid), key, cols


def _is_sql(node: Json) -> bool:
    code = node.get("compiled_code")
    return isinstance(code, str) and bool(code.strip()) and node.get("language", "sql") == "sql"


def compute_usage(manifest: Json, upstreams: Iterable[str], interfaces: dict[str, Json]) -> list[Use]:
    """Every use of an upstream public model by the nodes of a consumer manifest.

    `interfaces` maps upstream project -> its published interface nodes (the columns to resolve).
    """
    project = manifest["metadata"]["project_name"]
    dialect = dialect_of(manifest["metadata"].get("adapter_type"))
    upstream_names = list(upstreams)
    published: dict[str, Json] = {}
    for nodes in interfaces.values():
        published.update(nodes)
    uses: list[Use] = []
    for node_id, node in sorted((manifest.get("nodes") or {}).items()):
        kind, _, rest = node_id.partition(".")
        if kind not in _USED_BY or rest.split(".")[0] != project:
            continue  # dbt-loom injects the upstream's own nodes: their edges are not ours
        parents = (node.get("depends_on") or {}).get("nodes") or []
        targets = [
            found
            for parent in parents
            if (found := _upstream_relation(node, parent, manifest, project, upstream_names, published)) is not None
        ]
        if not targets:
            continue
        relations = {key: cols for *_, key, cols in targets}
        found_cols = columns_used(str(node["compiled_code"]), dialect, relations) if _is_sql(node) else {}
        for upstream, uid, via, pinned, key, _cols in targets:
            # A parent the SQL never names (e.g. only in a macro's side query) uses nothing.
            columns = found_cols.get(key, set()) if _is_sql(node) else {ALL_COLUMNS}
            uses.append(Use(project, node_id, upstream, uid, via, pinned, tuple(sorted(columns))))
    return uses


# --- column lineage of a consumer's own public models ---------------------------------------------

Leaf = tuple[str, str, bool]  # (upstream, upstream unique_id, pinned)
NodeLineage = dict[str, dict[Leaf, set[str]]]  # output column -> upstream columns feeding it
_WALKED = ("model", "snapshot")


class _LineageWalk:
    """Column lineage of a consumer's nodes down to upstream public columns, memoised per node."""

    def __init__(self, manifest: Json, upstreams: list[str], published: Json) -> None:
        self.manifest = manifest
        self.nodes: Json = manifest.get("nodes") or {}
        self.project = str(manifest["metadata"]["project_name"])
        self.dialect = dialect_of(manifest["metadata"].get("adapter_type"))
        self.upstreams = upstreams
        self.published = published
        self.memo: dict[str, NodeLineage] = {}
        self.crosses: dict[str, bool] = {}

    def _own(self, uid: str) -> Json | None:
        node = self.nodes.get(uid)
        kind, _, rest = uid.partition(".")
        if not isinstance(node, dict) or kind not in _WALKED or rest.split(".")[0] != self.project:
            return None
        return node

    def _parents(self, node: Json) -> list[tuple[str, Json]]:
        """(parent, the node that references it): ephemeral parents are replaced by theirs (their
        SQL is inlined into the child as a CTE)."""
        out: list[tuple[str, Json]] = []
        pending = [(parent, node) for parent in (node.get("depends_on") or {}).get("nodes") or []]
        seen: set[str] = set()
        while pending:
            parent, child = pending.pop(0)
            if parent in seen:
                continue
            seen.add(parent)
            own = self._own(parent)
            if own is not None and (own.get("config") or {}).get("materialized") == "ephemeral":
                pending += [(grand, own) for grand in (own.get("depends_on") or {}).get("nodes") or []]
            else:
                out.append((parent, child))
        return out

    def crosses_boundary(self, uid: str) -> bool:
        """Whether an upstream public model is among the node's ancestors."""
        if uid in self.crosses:
            return self.crosses[uid]
        self.crosses[uid] = False
        node = self._own(uid)
        result = False
        if node is not None:
            result = any(
                _upstream_target(parent, self.manifest, self.project, self.upstreams) is not None
                or self.crosses_boundary(parent)
                for parent, _child in self._parents(node)
            )
        self.crosses[uid] = result
        return result

    def lineage(self, uid: str) -> NodeLineage:
        if uid in self.memo:
            return self.memo[uid]
        self.memo[uid] = {}
        node = self._own(uid)
        result: NodeLineage = {}
        if node is not None and self.crosses_boundary(uid):
            result = self._compute(node)
        self.memo[uid] = result
        return result

    def _compute(self, node: Json) -> NodeLineage:
        from mesh.interface.column_lineage import statement_lineage

        relations: dict[RelationKey, list[str] | None] = {}
        leaves: dict[RelationKey, Leaf] = {}
        inner: dict[RelationKey, NodeLineage] = {}
        for parent, child in self._parents(node):
            crossing = _upstream_relation(child, parent, self.manifest, self.project, self.upstreams, self.published)
            if crossing is not None:
                upstream, uid, _via, pinned, key, cols = crossing
                leaves[key] = (upstream, uid, pinned)
                relations[key] = cols
                continue
            own = self._own(parent)
            target = own if own is not None else self.nodes.get(parent) or (self.manifest.get("sources") or {}).get(parent)
            if not isinstance(target, dict):
                continue
            key = _key(target.get("database"), target.get("schema"), target.get("alias") or target.get("identifier") or target.get("name"))
            if own is not None and self.crosses_boundary(parent):
                sub = self.lineage(parent)
                inner[key] = sub
                relations[key] = None if ALL_COLUMNS in sub or not sub else sorted(sub)
            else:
                relations[key] = None  # a seed, a source of the project's own, a model fed by neither
        statement = statement_lineage(str(node["compiled_code"]), self.dialect, relations) if _is_sql(node) else None
        if statement is None:
            # Cannot tell: every output column may come from every upstream column it can reach.
            everything: dict[Leaf, set[str]] = {leaf: {ALL_COLUMNS} for leaf in leaves.values()}
            for sub in inner.values():
                for part in sub.values():
                    _add(everything, part)
            return {ALL_COLUMNS: everything}
        result: NodeLineage = {}
        for output, deps in statement.items():
            feeding: dict[Leaf, set[str]] = {}
            for key, columns in deps.items():
                if key in leaves:
                    _add(feeding, {leaves[key]: columns})
                elif key in inner:
                    sub = inner[key]
                    for column in columns:
                        if column != ALL_COLUMNS and column in sub:
                            _add(feeding, sub[column])
                        elif column != ALL_COLUMNS and ALL_COLUMNS in sub:
                            _add(feeding, sub[ALL_COLUMNS])
                        else:  # every column, or one the parent's SQL does not show: all of it
                            for part in sub.values():
                                _add(feeding, part)
            result[output] = feeding
        return result


def _add(into: dict[Leaf, set[str]], more: dict[Leaf, set[str]]) -> None:
    for leaf, columns in more.items():
        into.setdefault(leaf, set()).update(columns)


def compute_lineage(manifest: Json, upstreams: Iterable[str], interfaces: dict[str, Json]) -> list[Feed]:
    """For each public model of a consumer that publishes: which upstream public columns feed each
    of its output columns, walking its own models down to the upstream refs and sources."""

    published: dict[str, Json] = {}
    for nodes in interfaces.values():
        published.update(nodes)
    walk = _LineageWalk(manifest, list(upstreams), published)
    feeds: list[Feed] = []
    for uid in public_node_ids(manifest):
        for output, feeding in sorted(walk.lineage(uid).items()):
            for (upstream, upstream_node, pinned), columns in sorted(feeding.items()):
                if not columns:
                    continue
                cols = (ALL_COLUMNS,) if ALL_COLUMNS in columns else tuple(sorted(c.lower() for c in columns))
                feeds.append(Feed(walk.project, uid, output, upstream, upstream_node, pinned, cols))
    return feeds


# --- the usage record ----------------------------------------------------------------------------


@dataclass
class UsageRecord:
    """A consumer's private `usage` object: what it reads upstream and what its public columns
    derive from (`lineage`, empty in records of format 1, which predate it)."""

    project: str
    format: int
    uses: list[Use] = field(default_factory=list)
    lineage: list[Feed] = field(default_factory=list)
    metadata: Json = field(default_factory=dict)


REPOSITORY_RE = re.compile(r"[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}")


def usage_document(
    manifest: Json,
    uses: list[Use],
    env: str,
    lineage: Iterable[Feed] = (),
    upstreams: Iterable[str] = (),
    deprecations: str = "warn",
) -> Json:
    """The private `usage` object of a consumer (`upstreams`: every upstream it was computed for,
    so a record that holds no use of one says "reads none of it" rather than "unknown")."""
    meta = manifest["metadata"]
    return {
        "metadata": {
            "format": USAGE_FORMAT,
            "project_name": meta.get("project_name"),
            "env": env,
            "upstreams": sorted(upstreams),
            "deprecations": deprecations,  # its policy: producers' gates honour `fail`
            "recorded_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "manifest_generated_at": meta.get("generated_at"),
            "invocation_id": meta.get("invocation_id"),
            "adapter_type": meta.get("adapter_type"),
        },
        "uses": [use.to_json() for use in uses],
        "lineage": [feed.to_json() for feed in lineage],
    }


def _record_document(record: UsageRecord) -> Json:
    return {
        "metadata": {**record.metadata, "format": USAGE_FORMAT},
        "uses": [use.to_json() for use in record.uses],
        "lineage": [feed.to_json() for feed in record.lineage],
    }


def parse_usage_record(body: bytes, what: str, project: str | None = None, env: str | None = None) -> UsageRecord:
    """Read a usage object back (format 1 or 2); raises ManifestError when it is not one.

    With `project` (the consumer whose registry prefix holds it), the record is checked against
    the usage schema (mesh.registry.schema): it may only name `project`'s own nodes."""
    if len(body) > MAX_RECORD_BYTES:
        raise ManifestError(f"{what} is {len(body) >> 20} MiB, more than a usage record may be")
    doc = parse_json(body, what)
    if project is not None:
        check_usage(doc, project, env, what)
    meta = doc.get("metadata")
    if (
        not isinstance(meta, dict)
        or meta.get("format") not in READABLE_FORMATS
        or not isinstance(doc.get("uses"), list)
        or not isinstance(doc.get("lineage", []), list)
    ):
        raise ManifestError(
            f"{what} is not a usage record of format {' or '.join(map(str, READABLE_FORMATS))}: re-run {hint('validate')}"
        )
    uses = [_entry(Use, item, f"{what} has a malformed use entry") for item in doc["uses"]]
    feeds = [_entry(Feed, item, f"{what} has a malformed lineage entry") for item in doc.get("lineage", [])]
    project = str(meta.get("project_name") or (uses[0].consumer if uses else ""))
    return UsageRecord(project, int(meta["format"]), uses, feeds, meta)


def _entry(kind: Any, item: Any, malformed: str) -> Any:
    """A Use or Feed from its JSON form: strings, `pinned` a bool, `columns` a tuple of strings."""
    from dataclasses import fields

    try:
        values = {}
        for f in fields(kind):
            raw = item[f.name]
            values[f.name] = bool(raw) if f.name == "pinned" else (
                tuple(str(c) for c in raw) if f.name == "columns" else str(raw)
            )
        return kind(**values)
    except (KeyError, TypeError) as exc:
        raise ManifestError(f"{malformed} {item!r}") from exc


def parse_usage(body: bytes, what: str) -> list[Use]:
    """The uses of a usage object; raises ManifestError when it is not one."""
    return parse_usage_record(body, what).uses


# --- the mesh -------------------------------------------------------------------------------------


def _latest_nodes(mesh: Mesh, upstream: str) -> Json:
    env = mesh.upstream_env(upstream)
    entry = mesh.registry.read_latest(upstream, env)
    if entry is None:
        return {}
    nodes: Json = load_interface(entry.body, f"{upstream}/{env} latest", upstream, env, entry.version)["nodes"]
    return nodes


def record_usage(mesh: Mesh, consumer: str, manifest_path: Path | None = None) -> list[Use]:
    """Compute a consumer's usage (and its public columns' lineage) from its built manifest and
    store it in the registry, replacing the consumer's whole previous record."""
    project = mesh.project(consumer)
    path = manifest_path or project.target_dir / "manifest.json"
    manifest = load_manifest(path, project=consumer)
    interfaces = {up: _latest_nodes(mesh, up) for up in project.upstreams}
    uses = compute_usage(manifest, project.upstreams, interfaces)
    feeds = compute_lineage(manifest, project.upstreams, interfaces)
    doc = usage_document(manifest, uses, mesh.env, feeds, project.upstreams, mesh.deprecation_policy(consumer))
    repository = mesh.config.projects[consumer].repository or os.environ.get("GITHUB_REPOSITORY", "")
    if REPOSITORY_RE.fullmatch(repository):
        doc["metadata"]["repository"] = repository  # who `invoke downstream` dispatches
    # Checked as every reader will check it, before it is written.
    check_usage(doc, consumer, mesh.env, hint=f"fix {consumer} and rebuild; nothing was recorded")
    mesh.registry.write_private(consumer, mesh.env, "usage", dump_json(doc))
    return uses


def prune_usage(mesh: Mesh, consumer: str, manifest: Json | Path | None = None) -> int:
    """Drop from a consumer's usage record what its current build no longer has.

    Call it after every passing build of `consumer` (`manifest`: its built manifest, a loaded one or
    a path; default `target/manifest.json`): uses by nodes that were removed or disabled, uses of
    upstreams it no longer depends on, and lineage of public models it no longer publishes. Writes
    only when something was dropped; returns how many entries were dropped.
    """

    project = mesh.project(consumer)
    if not isinstance(manifest, dict):
        manifest = load_manifest(manifest or project.target_dir / "manifest.json", project=consumer)
    body = mesh.registry.read_private(consumer, mesh.env, "usage")
    if body is None:
        return 0
    record = parse_usage_record(body, f"{consumer}/{mesh.env} usage", consumer, mesh.env)
    nodes = manifest.get("nodes") or {}
    upstreams = set(project.upstreams)
    public = set(public_node_ids(manifest))
    uses = [u for u in record.uses if u.node in nodes and u.upstream in upstreams]
    feeds = [f for f in record.lineage if f.node in public and f.upstream in upstreams]
    dropped = len(record.uses) - len(uses) + len(record.lineage) - len(feeds)
    if dropped:
        record.uses, record.lineage = uses, feeds
        record.metadata["pruned_at"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        mesh.registry.write_private(consumer, mesh.env, "usage", dump_json(_record_document(record)))
    return dropped


@dataclass
class MeshUsage:
    """Every usage record of the target's env: uses, public-column lineage, and which consumers'
    records predate lineage (format 1)."""

    uses: list[Use] = field(default_factory=list)
    lineage: list[Feed] = field(default_factory=list)
    without_lineage: list[str] = field(default_factory=list)
    records: dict[str, UsageRecord] = field(default_factory=dict)  # readable records, by consumer
    unreadable: dict[str, str] = field(default_factory=dict)  # consumer -> why its record is unusable
    assumed: dict[str, str] = field(default_factory=dict)  # consumer -> why it counts as reading all
    strict: set[str] = field(default_factory=set)  # consumers that fail on past-due deprecations

    def covers(self, consumer: str, upstream: str) -> bool:
        """Whether `consumer`'s record says what it reads of `upstream` (nothing is an answer too,
        when the record names `upstream` among the upstreams it was computed for)."""
        record = self.records.get(consumer)
        if record is None:
            return False
        declared = record.metadata.get("upstreams")
        if isinstance(declared, list) and upstream in declared:
            return True
        return any(use.upstream == upstream for use in record.uses)


def read_usage(mesh: Mesh) -> MeshUsage:
    """Every consumer's usage record in the target's env, across the mesh. A record that cannot be
    read is set aside (`unreadable`), never trusted: the gate then assumes that consumer reads
    everything it could."""
    found = MeshUsage()
    # Consumers in other repositories are not in this mesh.yml: the registry knows them all.
    names = sorted(set(mesh.config.projects) | set(mesh.registry.list_private(mesh.env, "usage")))
    for name in names:
        what = f"{name}/{mesh.env} usage"
        try:
            body = mesh.registry.read_private(name, mesh.env, "usage")
            if body is None:
                continue
            record = parse_usage_record(body, what, name, mesh.env)
        except (ManifestError, RegistryError) as exc:
            found.unreadable[name] = str(exc)
            continue
        if record.project != name:
            found.unreadable[name] = f"{what} describes {record.project!r}"
            continue
        foreign = [u for u in record.uses if u.consumer != name] + [f for f in record.lineage if f.project != name]
        if foreign:
            found.unreadable[name] = f"{what} names nodes of another project"
            continue
        found.records[name] = record
        if record.metadata.get("deprecations") == "fail":
            found.strict.add(name)
        found.uses += record.uses
        found.lineage += record.lineage
        if record.format < 2:
            found.without_lineage.append(name)
    found.uses.sort(key=lambda u: (u.upstream_node, u.consumer, u.node))
    found.lineage.sort(key=lambda f: (f.upstream_node, f.project, f.node, f.column))
    return found


def read_uses(mesh: Mesh, upstream: str | None = None) -> list[Use]:
    """Every recorded use in the target's env (of `upstream` only, if given), across the mesh."""
    return [u for u in read_usage(mesh).uses if upstream is None or u.upstream == upstream]
