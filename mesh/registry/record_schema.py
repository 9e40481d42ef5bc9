"""The schemas of a project's private records, read back from the registry: the usage record, the
stored state manifest, and the freshness and fingerprint records (their current shape; extend
here). Each refusal is one line naming the record, the field and what to run."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from mesh.core import surface
from mesh.core.errors import SchemaError
from mesh.registry.schema import (
    _IDENTIFIER_RE,
    _NO_CONTROL,
    MANIFEST_SCHEMA_URLS,
    MAX_COLUMNS,
    MAX_IDENTIFIER,
    PUBLIC_RESOURCE_TYPES,
    AdapterType,
    EnvName,
    FreeObject,
    InvocationId,
    Json,
    ProjectName,
    Sha256,
    Timestamp,
    VersionId,
    _hinted,
    _Lazy,
    _short,
    _Strict,
    check_json,
    describe,
    document_depth,
    refusal,
    relation_name,
)

# --- the usage record ----------------------------------------------------------------------------

ColumnRef = Annotated[str, StringConstraints(strict=True, pattern=_NO_CONTROL, min_length=1, max_length=MAX_IDENTIFIER)]
NodeId = Annotated[str, StringConstraints(strict=True, pattern=r"^[a-z_]+\.[a-z][a-z0-9_]*\.[^\x00-\x1f\x7f]+$", max_length=600)]


class UsageEntry(_Strict):
    """One use (`uses`) of an upstream public node by a node of the consumer."""

    consumer: ProjectName
    node: NodeId
    upstream: ProjectName
    upstream_node: NodeId
    via: Literal["ref", "source"]
    pinned: bool
    columns: Annotated[list[ColumnRef], Field(max_length=MAX_COLUMNS)]


class LineageEntry(_Strict):
    """One column of a consumer's public model and the upstream columns that feed it."""

    project: ProjectName
    node: NodeId
    column: ColumnRef
    upstream: ProjectName
    upstream_node: NodeId
    pinned: bool
    columns: Annotated[list[ColumnRef], Field(max_length=MAX_COLUMNS)]


class UsageMetadata(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", frozen=True, defer_build=True)

    format: Literal[1, 2]
    project_name: ProjectName | None = None
    env: EnvName | None = None
    recorded_at: Timestamp | None = None
    manifest_generated_at: Timestamp | None = None
    invocation_id: InvocationId | None = None
    adapter_type: AdapterType | None = None
    pruned_at: Timestamp | None = None

    @model_validator(mode="after")
    def _bounded_extras(self) -> UsageMetadata:
        check_json(self.model_extra or {})
        return self


class UsageRecord(_Strict):
    """A consumer's private `usage` object."""

    metadata: UsageMetadata
    uses: Annotated[list[UsageEntry], Field(max_length=10_000_000)]
    lineage: Annotated[list[LineageEntry], Field(max_length=10_000_000)] = []


_USAGE = _Lazy(lambda: UsageRecord)
# Kinds of consumer node a use can come from (mesh.interface.usage._USED_BY) and public kinds a feed names.
_USING_KINDS = ("model", "snapshot", "test", "analysis", "seed")


def _upstream_node(value: str, upstream: str) -> bool:
    kind, _, rest = value.partition(".")
    return kind in PUBLIC_RESOURCE_TYPES and rest.split(".")[0] == upstream


def check_usage(
    doc: Any, project: str, env: str | None = None, what: str | None = None, hint: str | None = None
) -> UsageRecord:
    """Check a usage record written by consumer `project`: every use and every lineage entry is
    about one of `project`'s own nodes and names a public node of another project."""
    try:
        return _check_usage(doc, project, env, what)
    except SchemaError as exc:
        raise _hinted(exc, f"refusing it; {project} must record it again ({surface.hint('validate', '--project', project, '--record-usage')})" if hint is None else hint) from None


def _check_usage(doc: Any, project: str, env: str | None, what: str | None) -> UsageRecord:
    where = describe(project, env, None, what or (f"{project}/{env} usage" if env else f"{project} usage"))
    try:
        record = _USAGE.validate_python(doc)
    except ValidationError as exc:
        raise refusal(where, exc) from None
    if record.metadata.project_name not in (None, project):
        raise SchemaError(
            f"{where}: field metadata.project_name: {record.metadata.project_name!r} is not "
            f"{project}, the consumer that stores it"
        )
    for index, use in enumerate(record.uses):
        kind, _, rest = use.node.partition(".")
        problem = None
        if use.consumer != project:
            problem = f"field consumer: {use.consumer!r} is not {project}, the consumer that wrote it"
        elif kind not in _USING_KINDS or rest.split(".")[0] != project:
            problem = f"field node: {_short(use.node)} is not a node of {project}"
        elif use.upstream == project:
            problem = f"field upstream: {use.upstream!r} is the consumer itself"
        elif not _upstream_node(use.upstream_node, use.upstream):
            problem = f"field upstream_node: {_short(use.upstream_node)} is not a public node of {use.upstream}"
        if problem:
            raise SchemaError(f"{where}: uses[{index}] ({use.node}), {problem}")
    for index, feed in enumerate(record.lineage):
        problem = None
        if feed.project != project:
            problem = f"field project: {feed.project!r} is not {project}, the consumer that wrote it"
        elif not _upstream_node(feed.node, project):
            problem = f"field node: {_short(feed.node)} is not a public node of {project}"
        elif feed.upstream == project or not _upstream_node(feed.upstream_node, feed.upstream):
            problem = f"field upstream_node: {_short(feed.upstream_node)} is not a public node of {feed.upstream}"
        if problem:
            raise SchemaError(f"{where}: lineage[{index}] ({feed.node}), {problem}")
    return record


# --- the private state ---------------------------------------------------------------------------

_DEFERRABLE = frozenset(PUBLIC_RESOURCE_TYPES)


def check_state(
    doc: Any, project: str, env: str | None = None, what: str | None = None, hint: str | None = None
) -> Json:
    """Check a project's own full manifest (its private `state`) as far as `--defer` and sync use
    it: a dbt manifest of `project`, no deeper than MAX_DEPTH, whose models, seeds and snapshots
    name their relations with identifiers (the relation `--defer` substitutes for a ref)."""
    try:
        return _check_state(doc, project, env, what)
    except SchemaError as exc:
        raise _hinted(exc, f"refusing it; {project} must store it again ({surface.hint('build', '--project', project, '--save-state')})" if hint is None else hint) from None


def _check_state(doc: Any, project: str, env: str | None, what: str | None) -> Json:
    where = describe(project, env, None, what or (f"{project}/{env} state" if env else f"{project} state"))

    def refuse(field: str, problem: str, node: str | None = None) -> SchemaError:
        subject = f"node {node}, field {field}" if node else f"field {field}"
        return SchemaError(f"{where}: {subject}: {problem}")

    if not isinstance(doc, dict):
        raise refuse("(the object itself)", "is not a JSON object")
    try:
        document_depth(doc)
    except ValueError as exc:
        raise refuse("(the object itself)", str(exc)) from None
    metadata = doc.get("metadata")
    if not isinstance(metadata, dict):
        raise refuse("metadata", "is missing")
    if metadata.get("dbt_schema_version") not in MANIFEST_SCHEMA_URLS:
        raise refuse("metadata.dbt_schema_version", f"{_short(metadata.get('dbt_schema_version'))} is not a manifest schema the mesh reads")
    if metadata.get("project_name") != project:
        raise refuse("metadata.project_name", f"{_short(metadata.get('project_name'))} is not {project}")
    nodes = doc.get("nodes")
    if not isinstance(nodes, dict):
        raise refuse("nodes", "is not an object")
    for uid, node in nodes.items():
        if not isinstance(node, dict) or node.get("unique_id") != uid:
            raise refuse("unique_id", "the node is malformed or its unique_id differs from its key", _short(uid))
        if node.get("resource_type") not in _DEFERRABLE:
            continue
        shown = _short(uid).strip("'")
        identifiers = {}
        for key in ("database", "schema", "alias"):
            value = node.get(key)
            if value is not None and (not isinstance(value, str) or len(value) > MAX_IDENTIFIER or not _IDENTIFIER_RE.fullmatch(value)):
                raise refuse(key, f"{_short(value)} is not an identifier", shown)
            identifiers[key] = value
        if node.get("relation_name") is not None:
            try:
                rebuilt = relation_name(node["relation_name"], identifiers["database"], identifiers["schema"], identifiers["alias"])
            except ValueError as exc:
                raise refuse("relation_name", f"{_short(node['relation_name'])} {exc}", shown) from None
            if rebuilt != node["relation_name"]:  # pragma: no cover - relation_name rebuilds exactly
                raise refuse("relation_name", "does not rebuild from its identifiers", shown)
    return doc


# --- freshness and fingerprint records (their current shape; extend here) ------------------------


_HexVersion = Annotated[str, StringConstraints(strict=True, pattern=r"^[0-9a-f]{8,64}$")]
_Key = Annotated[str, StringConstraints(strict=True, pattern=_NO_CONTROL, max_length=600)]


class FreshnessNode(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", frozen=True, defer_build=True)

    built_at: Timestamp
    data_version: _HexVersion | None = None
    data_basis: Literal["content", "build"] | None = None

    @model_validator(mode="after")
    def _bounded_extras(self) -> FreshnessNode:
        check_json(self.model_extra or {})
        return self


class FreshnessRecord(_Strict):
    """A producer's `freshness` object (mesh.consumer.freshness), as recorded today."""

    format: Literal[1]
    project: ProjectName
    env: EnvName
    recorded_at: Timestamp
    build: FreeObject = {}
    nodes: Annotated[dict[Annotated[str, StringConstraints(max_length=600)], FreshnessNode], Field(max_length=10_000_000)]
    sources: FreeObject = {}


class FingerprintRecord(_Strict):
    """A project's `fingerprint` object (mesh.run.fingerprint): the parts of its build's inputs, the
    relations it wrote, the upstreams it read, and the data versions it was built from."""

    format: Literal[2]
    project: ProjectName
    env: EnvName
    target: Annotated[str, StringConstraints(strict=True, pattern=_NO_CONTROL, max_length=MAX_IDENTIFIER)]
    fingerprint: Sha256
    components: Annotated[dict[Literal["files", "generated", "context"], Sha256], Field(max_length=3)]
    plan_context: Sha256 | None = None
    files: Annotated[int, Field(ge=0)]
    recorded_at: Timestamp
    relations: Annotated[list[Annotated[str, StringConstraints(strict=True, max_length=3 * (MAX_IDENTIFIER + 3))]], Field(max_length=10_000_000)]
    upstreams: Annotated[list[ProjectName], Field(max_length=10_000)] = []
    upstream_data: Annotated[dict[_Key, _HexVersion | None], Field(max_length=10_000_000)] = {}
    upstream_versions: Annotated[dict[ProjectName, VersionId], Field(max_length=10_000)] = {}
    source_data: Annotated[
        dict[_Key, Annotated[str, StringConstraints(strict=True, pattern=_NO_CONTROL, max_length=200)] | None],
        Field(max_length=1_000_000),
    ] = {}


def check_record(
    model: type[BaseModel],
    doc: Any,
    project: str,
    env: str | None = None,
    what: str | None = None,
    hint: str | None = None,
) -> Any:
    """Check a private record against `model` (FreshnessRecord, FingerprintRecord, or the lead's
    extension of them); it must name `project` (and `env`, when given) itself."""
    where = describe(project, env, None, what)
    hint = f"refusing it; {project} must record it again (its next passing build does)" if hint is None else hint
    try:
        record = TypeAdapter(model).validate_python(doc)
    except ValidationError as exc:
        raise _hinted(refusal(where, exc), hint) from None
    if getattr(record, "project", project) != project or (env is not None and getattr(record, "env", env) != env):
        raise _hinted(SchemaError(f"{where}: field project: the record describes another project or env"), hint)
    return record
