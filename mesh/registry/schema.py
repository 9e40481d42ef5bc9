"""The trust boundary: one strict schema per registry object, checked before anything uses it.

Everything read from the registry was written by another team's CI, or by anyone who can write that
prefix: it is hostile input. Each object is checked here, at publish before the first write and at
every read, before any of it reaches generated YAML, dbt-loom's input, SQL or the lineage page:

- the interface (`latest` and `history/<version>`): metadata, groups, and every node with its
  columns, versions, relation parts, constraints, meta and depends_on (`check_interface`, or
  `check_interface_head` and `check_interface_node` one node at a time);
- the usage record (`check_usage`): it names only nodes of the consumer that wrote it;
- the private `state` (`check_state`): the relation of every node `--defer` may pick;
- the freshness and fingerprint records: the field types below, and `FreshnessRecord` /
  `FingerprintRecord` for their current shape.

Every value that can reach generated code has a type that cannot carry code: identifiers (what
Snowflake and DuckDB accept unquoted), node names, versions (`[A-Za-z0-9_.]+`), data types (a
grammar of adapter types, `parse_data_type`), and relation names parsed into identifiers and rebuilt
from them (`relation_name`). Free text (descriptions, meta, tags) stays text, with a length limit;
its Jinja delimiters are broken where it is written (mesh.consumer.sync). Free-form JSON is walked without
recursion and refused past `MAX_DEPTH` levels, before anything recursive touches it.

A refusal is one line naming the object (project, env, version), the node and the field:
`dbt_up/prod 20261123T101502.123456Z-3f2a9c1e: node model.dbt_up.orders, field
columns.id.data_type: 'int; drop table x' is not a SQL type`.
"""

from __future__ import annotations

import functools
import math
import re
from datetime import datetime
from typing import Annotated, Any, Literal, NotRequired

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
    with_config,
)
from typing_extensions import TypedDict

from mesh.core.errors import SchemaError
from mesh.core.names import NAME_RE, RESERVED, VERSION_RE
from mesh.core.surface import hint

Json = dict[str, Any]

# --- limits: generous for real projects, never unbounded ------------------------------------------

MAX_DEPTH = 64  # nesting of any free-form JSON value (meta, owners, constraints' extras)
MAX_JSON_ITEMS = 100_000  # values in one free-form JSON field
MAX_IDENTIFIER = 255  # Snowflake's identifier limit
MAX_TEXT = 1 << 20  # one description, one meta string: 1 MiB (128 KiB ones are tested)
MAX_SHORT_TEXT = 4096  # a tag, a reason, a constraint expression
MAX_COLUMNS = 20_000  # columns of one node
MAX_LIST = 10_000  # tags, constraints, depends_on of one node
MAX_TYPE = 4096  # one data type
MAX_TYPE_DEPTH = 32  # nesting of struct/array/map arguments in one data type
MAX_INTERFACE_BYTES = 256 << 20  # a 50,000-model interface is about 30 MB
MAX_RECORD_BYTES = 256 << 20  # a usage, freshness or fingerprint record
MAX_STATE_BYTES = 1 << 30  # a project's full manifest

PUBLIC_RESOURCE_TYPES = ("model", "seed", "snapshot")
# dbt's manifest schemas the mesh reads (mesh.project.artifacts.MANIFEST_SCHEMAS).
MANIFEST_SCHEMA_URLS = tuple(f"https://schemas.getdbt.com/dbt/manifest/v{n}.json" for n in (10, 11, 12))


class FieldProblem(ValueError):
    """A problem a model's own check finds in one of its fields (`field`, dotted)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


# --- field types ---------------------------------------------------------------------------------

IDENTIFIER_PATTERN = r"[A-Za-z_][A-Za-z0-9_$]*"
_IDENTIFIER_RE = re.compile(IDENTIFIER_PATTERN, re.ASCII)
_VERSION_LABEL_RE = re.compile(r"[A-Za-z0-9_.]{1,64}", re.ASCII)
_NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"


def _strict_str(pattern: str, max_length: int) -> Any:
    return StringConstraints(strict=True, pattern=f"^(?:{pattern})$", max_length=max_length)


Identifier = Annotated[str, _strict_str(IDENTIFIER_PATTERN, MAX_IDENTIFIER)]
"""A database, schema, alias, column or event-time name: what needs no quoting."""
NodeName = Annotated[str, _strict_str(r"[A-Za-z_][A-Za-z0-9_]*", MAX_IDENTIFIER)]
"""A model, seed or snapshot name as dbt derives it from a file name."""
GroupName = Annotated[str, _strict_str(r"[A-Za-z0-9_][A-Za-z0-9_ .-]*", MAX_IDENTIFIER)]
Materialization = Annotated[str, _strict_str(r"[a-z_][a-z0-9_]*", 64)]
AdapterType = Annotated[str, _strict_str(r"[a-z_][a-z0-9_]*", 64)]
DbtVersion = Annotated[str, _strict_str(r"[0-9A-Za-z.+-]+", 64)]
InvocationId = Annotated[str, _strict_str(r"[A-Za-z0-9_.:+-]+", 64)]
Sha256 = Annotated[str, _strict_str(r"[0-9a-f]{64}", 64)]
GitSha = Annotated[str, _strict_str(r"[0-9a-f]{40}|[0-9a-f]{64}", 64)]
Text = Annotated[str, StringConstraints(strict=True, max_length=MAX_TEXT)]
"""Free text (descriptions): any characters, bounded. Written with Jinja delimiters broken."""
ShortText = Annotated[str, StringConstraints(strict=True, max_length=MAX_SHORT_TEXT)]
Line = Annotated[str, StringConstraints(strict=True, pattern=_NO_CONTROL, max_length=512)]
"""One printable line (a publisher, a column named in a usage record)."""


def _project_name(value: Any) -> str:
    if not isinstance(value, str) or not NAME_RE.fullmatch(value) or value in RESERVED:
        raise ValueError("is not a project or env name (a-z, 0-9 and _, starting with a letter)")
    return value


ProjectName = Annotated[str, BeforeValidator(_project_name)]
EnvName = ProjectName


def _version_id(value: Any) -> str:
    if not isinstance(value, str) or not VERSION_RE.fullmatch(value):
        raise ValueError("is not a version id like 20261123T101502.123456Z-3f2a9c1e")
    return value


VersionId = Annotated[str, BeforeValidator(_version_id)]


def _timestamp(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 64:
        raise ValueError("is not an ISO 8601 timestamp")
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("is not an ISO 8601 timestamp") from None
    return value


Timestamp = Annotated[str, BeforeValidator(_timestamp)]


def version_label(value: Any) -> int | float | str:
    """A model version as dbt writes it (`1`, `2.5`, `"3"`, `"v2_beta"`): a label that prints as
    `[A-Za-z0-9_.]+`, the only form that can become part of a unique_id or a source name."""
    if isinstance(value, bool):
        raise ValueError("is a boolean, not a model version")
    if isinstance(value, int):
        if not 0 <= value < 10**18:
            raise ValueError("is not a model version (a non-negative number or [A-Za-z0-9_.]+)")
        return value
    if isinstance(value, float):
        if not math.isfinite(value) or value < 0:
            raise ValueError("is not a model version (a non-negative number or [A-Za-z0-9_.]+)")
        return value
    if isinstance(value, str) and _VERSION_LABEL_RE.fullmatch(value):
        return value
    raise ValueError("is not a model version: use a number or [A-Za-z0-9_.]+ (64 characters at most)")


VersionLabel = Annotated[Any, BeforeValidator(version_label)]


def _short(value: Any) -> str:
    """A value for a message: never more than 80 characters, never a deep repr."""
    if isinstance(value, str):
        shown = repr(value[:60]) + ("…" if len(value) > 60 else "")
        return shown if len(value) <= 60 else f"{shown} ({len(value)} characters)"
    if isinstance(value, dict | list):
        return f"a JSON {'object' if isinstance(value, dict) else 'array'}"
    return repr(value)[:80]


# --- data types ----------------------------------------------------------------------------------

# The usual types in one regex (`integer`, `varchar(256)`, `decimal(18, 2)`, `timestamp with time
# zone`, `integer[]`); anything else goes through the grammar below.
_SIMPLE_TYPE_RE = re.compile(
    r" *[A-Za-z_][A-Za-z0-9_]*(?: [A-Za-z_][A-Za-z0-9_]*)*"
    r"(?: ?\( ?\d{1,10}(?: ?, ?\d{1,10})? ?\))?(?: [A-Za-z_][A-Za-z0-9_]*)*(?:\[\d{0,10}\])* *",
    re.ASCII,
)
_TYPE_TOKEN_RE = re.compile(
    r" *(?:(?P<word>[A-Za-z_][A-Za-z0-9_]*)|(?P<number>\d{1,10})"
    r"|(?P<quoted>\"[A-Za-z0-9_ $]{1,255}\")|(?P<literal>'[A-Za-z0-9_ .$]{0,255}')"
    r"|(?P<punct>[(),<>\[\]]))",
    re.ASCII,
)
_CLOSING = {"(": ")", "<": ">"}


class _TypeParser:
    """A recursive-descent parser of adapter types, bounded in length and nesting.

        type   := head (word | quoted | args)* array*      head := word | quoted
        args   := '(' arg (',' arg)* ')' | '<' arg (',' arg)* '>'
        arg    := number | 'literal' | type                 array := '[' number? ']'

    It admits DuckDB's `struct(x integer, "y z" varchar)[]`, `map(varchar, integer)`,
    `enum('a', 'b')`, `union(n integer, s varchar)`, Snowflake's `number(38,0)`,
    `timestamp_ntz(9)`, `vector(float, 256)`, `object(a varchar)`, BigQuery's
    `struct<a int64>` and `array<string>`, Postgres' `character varying(256)` and
    `timestamp without time zone`, Trino's `timestamp(3) with time zone`. Quotes admit only
    letters, digits, `_`, `$` and spaces: nothing in a type can end a string or an identifier.
    """

    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        position = 0
        for match in _TYPE_TOKEN_RE.finditer(text):
            if match.start() != position:
                break
            assert match.lastgroup is not None
            self.tokens.append((match.lastgroup, match.group(match.lastgroup)))
            position = match.end()
        if text[position:].strip(" "):
            raise ValueError(f"unexpected {text[position:position + 1]!r} at character {position + 1}")
        self.at = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.at] if self.at < len(self.tokens) else ("end", "")

    def take(self) -> tuple[str, str]:
        token = self.peek()
        self.at += 1
        return token

    def parse(self) -> None:
        self.type(0)
        if self.at != len(self.tokens):
            raise ValueError(f"unexpected {self.peek()[1]!r}")

    def type(self, depth: int) -> None:
        if depth > MAX_TYPE_DEPTH:
            raise ValueError(f"nested deeper than {MAX_TYPE_DEPTH} levels")
        kind, text = self.take()
        if kind not in ("word", "quoted"):
            raise ValueError(f"expected a type name, found {text or 'the end'!r}")
        while True:
            kind, text = self.peek()
            if kind in ("word", "quoted"):
                self.take()
            elif text in _CLOSING:
                self.take()
                self.args(_CLOSING[text], depth)
            else:
                break
        while self.peek()[1] == "[":
            self.take()
            if self.peek()[0] == "number":
                self.take()
            if self.take()[1] != "]":
                raise ValueError("unclosed '['")

    def args(self, closing: str, depth: int) -> None:
        while True:
            kind, _text = self.peek()
            if kind in ("number", "literal"):
                self.take()
            else:
                self.type(depth + 1)
            kind, text = self.take()
            if text == closing:
                return
            if text != ",":
                raise ValueError(f"expected ',' or {closing!r}, found {text or 'the end'!r}")


@functools.lru_cache(maxsize=8192)
def _type_problem(text: str) -> str | None:
    if _SIMPLE_TYPE_RE.fullmatch(text):
        return None
    try:
        _TypeParser(text).parse()
    except ValueError as exc:
        return str(exc)
    return None


def parse_data_type(value: Any) -> str:
    """`value` if it is an adapter data type (see `_TypeParser`), else ValueError."""
    if not isinstance(value, str):
        raise ValueError("is not a SQL type (not a string)")
    if len(value) > MAX_TYPE:
        raise ValueError(f"is not a SQL type (longer than {MAX_TYPE} characters)")
    if not value.strip(" "):
        raise ValueError("is not a SQL type (empty)")
    problem = _type_problem(value)
    if problem is not None:
        raise ValueError(f"is not a SQL type ({problem})")
    return value


DataType = Annotated[str, BeforeValidator(parse_data_type)]


# --- relation names ------------------------------------------------------------------------------

_PART = rf'(?:"({IDENTIFIER_PATTERN})"|({IDENTIFIER_PATTERN}))'
_RELATION_RE = re.compile(rf"{_PART}\.{_PART}(?:\.{_PART})?", re.ASCII)


def relation_parts(value: str) -> list[tuple[str, bool]]:
    """The identifiers of a relation name as dbt renders it (`"db"."schema"."alias"` on DuckDB,
    `DB.SCHEMA.alias` on Snowflake), each with whether it was quoted; ValueError otherwise."""
    if not isinstance(value, str) or len(value) > 3 * (MAX_IDENTIFIER + 3):
        raise ValueError("is not a relation name")
    match = _RELATION_RE.fullmatch(value)
    if match is None:
        raise ValueError(
            "is not a relation name of two or three identifiers (quoted or not) joined by dots"
        )
    groups = match.groups()
    parts = []
    for quoted, plain in zip(groups[0::2], groups[1::2], strict=True):
        if quoted is not None:
            parts.append((quoted, True))
        elif plain is not None:
            parts.append((plain, False))
    return parts


def build_relation_name(parts: list[tuple[str, bool]]) -> str:
    """A relation name rebuilt from checked identifiers: what is written is never what was read."""
    for name, _quoted in parts:
        if len(name) > MAX_IDENTIFIER or not _IDENTIFIER_RE.fullmatch(name):
            raise ValueError(f"{name!r} is not an identifier")
    return ".".join(f'"{name}"' if quoted else name for name, quoted in parts)


def relation_name(value: Any, database: str | None, schema: str | None, alias: str | None) -> str:
    """`value` parsed and rebuilt; its identifiers must be the node's own database, schema and
    alias (compared case-insensitively, as both warehouses resolve them)."""
    if database is not None and schema is not None and alias is not None and all(
        len(p) <= MAX_IDENTIFIER and _IDENTIFIER_RE.fullmatch(p) for p in (database, schema, alias)
    ):
        # How dbt renders it on DuckDB and on Snowflake: built here from the checked identifiers.
        for built in (f'"{database}"."{schema}"."{alias}"', f"{database}.{schema}.{alias}"):
            if value == built:
                return built
    parts = relation_parts(value)
    expected = [p for p in (database, schema, alias) if p is not None][-len(parts) :]
    names = [name for name, _quoted in parts]
    if len(expected) != len(parts) or ".".join(names).lower() != ".".join(expected).lower():
        raise ValueError(
            f"names {'.'.join(names)}, not the node's own {'.'.join(str(p) for p in (database, schema, alias))}"
        )
    return build_relation_name(parts)


# --- free-form JSON ------------------------------------------------------------------------------


def check_json(value: Any, limit_depth: int = MAX_DEPTH, limit_items: int = MAX_JSON_ITEMS) -> Any:
    """`value` if it is JSON no deeper than `limit_depth`, with at most `limit_items` values and
    strings of at most MAX_TEXT characters; walked with a stack, never by recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    items = 0
    while stack:
        item, depth = stack.pop()
        items += 1
        if items > limit_items:
            raise ValueError(f"holds more than {limit_items} values")
        kind = type(item)
        if kind is dict:
            if depth > limit_depth:
                raise ValueError(f"is nested deeper than {limit_depth} levels")
            for key, inner in item.items():
                if type(key) is not str or len(key) > MAX_SHORT_TEXT:
                    raise ValueError("has a key that is not a short string")
                if type(inner) in (dict, list):
                    stack.append((inner, depth + 1))
                elif type(inner) is str:
                    if len(inner) > MAX_TEXT:
                        raise ValueError(f"holds a string longer than {MAX_TEXT} characters")
                    items += 1
                else:
                    stack.append((inner, depth + 1))
        elif kind is list:
            if depth > limit_depth:
                raise ValueError(f"is nested deeper than {limit_depth} levels")
            stack.extend((inner, depth + 1) for inner in item)
        elif kind is str:
            if len(item) > MAX_TEXT:
                raise ValueError(f"holds a string longer than {MAX_TEXT} characters")
        elif kind is float:
            if not math.isfinite(item):
                raise ValueError("holds a number that is not finite")
        elif item is not None and kind not in (int, bool):
            raise ValueError(f"holds a {kind.__name__}, which is not JSON")
    return value


def document_depth(value: Any, limit: int = MAX_DEPTH) -> None:
    """Raise ValueError when `value` nests deeper than `limit` (a whole document: no other limit)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise ValueError(f"is nested deeper than {limit} levels")
        if type(item) is dict:
            stack.extend((inner, depth + 1) for inner in item.values() if type(inner) in (dict, list))
        elif type(item) is list:
            stack.extend((inner, depth + 1) for inner in item if type(inner) in (dict, list))


FreeJson = Annotated[Any, AfterValidator(check_json)]
FreeObject = Annotated[dict[str, Any], AfterValidator(check_json)]


# --- the interface -------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, populate_by_name=True, defer_build=True)


_TYPED = ConfigDict(strict=True, extra="forbid", defer_build=True)


# The node is checked as TypedDicts (no model object per column: a 50,000-model interface holds
# about a million columns), then by `_node_problem` for what spans its fields.


@with_config(_TYPED)
class Contract(TypedDict):
    enforced: bool


@with_config(ConfigDict(strict=True, extra="allow", defer_build=True))
class ColumnConstraint(TypedDict):
    """A dbt constraint; fields a newer dbt adds are kept, as bounded JSON."""

    type: Annotated[str, _strict_str(r"[a-z_]+", 64)]
    name: NotRequired[ShortText | None]
    expression: NotRequired[ShortText | None]
    warn_unenforced: NotRequired[bool]
    warn_unsupported: NotRequired[bool]
    to: NotRequired[ShortText | None]
    to_columns: NotRequired[Annotated[list[Identifier], Field(max_length=MAX_LIST)]]
    columns: NotRequired[Annotated[list[Identifier], Field(max_length=MAX_LIST)]]


@with_config(_TYPED)
class Column(TypedDict):
    name: Identifier
    data_type: Annotated[str, StringConstraints(strict=True, max_length=MAX_TYPE)] | None  # a DataType
    description: Text
    constraints: Annotated[list[ColumnConstraint], Field(max_length=MAX_LIST)]
    contract: NotRequired[Literal[False]]  # observed columns (not guaranteed) say `false`


@with_config(_TYPED)
class NodeConfig(TypedDict):
    materialized: Materialization | None
    contract: Contract
    access: Literal["public"]
    event_time: NotRequired[Identifier | None]


@with_config(_TYPED)
class DependsOn(TypedDict):
    nodes: Annotated[list[Annotated[str, StringConstraints(strict=True, max_length=600)]], Field(max_length=MAX_LIST)]
    macros: Annotated[list[str], Field(max_length=0)]


@with_config(_TYPED)
class InterfaceNode(TypedDict):
    """One public node of an interface: what consumers (sync, dbt-loom, validate) read."""

    unique_id: Annotated[str, StringConstraints(strict=True, max_length=600)]
    name: NodeName
    package_name: ProjectName
    resource_type: Literal["model", "seed", "snapshot"]
    database: Identifier | None
    schema: Identifier | None
    alias: Identifier | None
    relation_name: Annotated[str, StringConstraints(strict=True, max_length=3 * (MAX_IDENTIFIER + 3))] | None
    access: Literal["public"]
    group: GroupName | None
    version: VersionLabel | None
    latest_version: VersionLabel | None
    deprecation_date: Timestamp | None
    description: Text
    columns: Annotated[dict[str, Column], Field(max_length=MAX_COLUMNS)]
    constraints: Annotated[list[ColumnConstraint], Field(max_length=MAX_LIST)]
    contract: Contract
    config: NodeConfig
    meta: dict[str, Any]
    tags: Annotated[list[ShortText], Field(max_length=MAX_LIST)]
    depends_on: DependsOn


class _Lazy:
    """A TypeAdapter built on first use: importing the schema costs nothing until a check runs
    (every CLI call and every reader process imports it)."""

    def __init__(self, factory: Any) -> None:
        self._factory = factory
        self._adapter: TypeAdapter[Any] | None = None

    def __getattr__(self, name: str) -> Any:
        if self._adapter is None:
            self._adapter = TypeAdapter(self._factory())
        return getattr(self._adapter, name)


_NODE = _Lazy(lambda: InterfaceNode)
_CHECKED_TYPES: dict[str, str | None] = {}  # data type -> its problem (None: a type)


def _type_problem_of(value: str) -> str | None:
    if value not in _CHECKED_TYPES:
        if len(_CHECKED_TYPES) > 100_000:
            _CHECKED_TYPES.clear()
        try:
            parse_data_type(value)
            _CHECKED_TYPES[value] = None
        except ValueError as exc:
            _CHECKED_TYPES[value] = str(exc)
    return _CHECKED_TYPES[value]


def _node_problem(node: Json) -> FieldProblem | None:
    """What the field types cannot say of a validated node: free-form JSON bounded, data types
    parsed, the unique_id its own, columns named by their keys, depends_on within the project, the
    relation name its own identifiers. Sets the rebuilt relation name on `node`."""
    try:
        if node["meta"]:
            check_json(node["meta"])
    except ValueError as exc:
        return FieldProblem("meta", str(exc))
    checked_types = _CHECKED_TYPES
    for name, column in node["columns"].items():
        if name != column["name"]:
            return FieldProblem(f"columns.{name}.name", f"{_short(column['name'])} differs from its key")
        data_type = column["data_type"]
        if data_type is not None and (data_type not in checked_types or checked_types[data_type] is not None):
            problem = _type_problem_of(data_type)
            if problem is not None:
                return FieldProblem(f"columns.{name}.data_type", f"{_short(data_type)} {problem}")
        if column["constraints"]:
            try:
                check_json(column["constraints"])
            except ValueError as exc:
                return FieldProblem(f"columns.{name}.constraints", str(exc))
    if node["constraints"]:
        try:
            check_json(node["constraints"])
        except ValueError as exc:
            return FieldProblem("constraints", str(exc))
    version = node["version"]
    kind, package = node["resource_type"], node["package_name"]
    expected = f"{kind}.{package}.{node['name']}"
    if version is not None:
        if kind != "model":
            return FieldProblem("version", f"{_short(version)}: a {kind} has no versions")
        expected += f".v{version}"
    if node["unique_id"] != expected:
        return FieldProblem(
            "unique_id",
            f"{_short(node['unique_id'])} does not match its resource type, package, name and version ({expected})",
        )
    parents = node["depends_on"]["nodes"]
    if parents:
        own = (f"model.{package}.", f"seed.{package}.", f"snapshot.{package}.")
        for parent in parents:
            if not parent.startswith(own):
                return FieldProblem("depends_on.nodes", f"{_short(parent)} is not a public node of {package}")
    if node["relation_name"] is not None:
        try:
            node["relation_name"] = relation_name(node["relation_name"], node["database"], node["schema"], node["alias"])
        except ValueError as exc:
            return FieldProblem("relation_name", f"{_short(node['relation_name'])} {exc}")
    return None


_NODE_LINE = _Lazy(
    lambda: Annotated[
        dict[Annotated[str, StringConstraints(max_length=600)], InterfaceNode], Field(min_length=1, max_length=1)
    ]
)


class MeshMetadata(BaseModel):
    """`metadata.mesh`: who published what, when. Keys the contract gate records (the reason, the
    breaking changes) are kept as bounded JSON."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True, defer_build=True)

    format: Literal[1] = 1
    version: VersionId
    content_sha256: Sha256
    published_at: Timestamp | None = None
    built_at: Timestamp | Literal[""] | None = None
    env: EnvName | None = None
    dbt_version: DbtVersion | None = None
    git_sha: GitSha | None = None
    publisher: Line | None = None
    previous: VersionId | None = None
    public_models: Annotated[int, Field(ge=0)] | None = None
    rollback_of: VersionId | None = None
    recovered_from: VersionId | None = None
    reason: Text | None = None
    breaking_changes: FreeJson = None

    @model_validator(mode="after")
    def _bounded_extras(self) -> MeshMetadata:
        check_json(self.model_extra or {})
        return self


def _manifest_schema(value: Any) -> str:
    if value not in MANIFEST_SCHEMA_URLS:
        raise ValueError(f"is not a manifest schema the mesh reads ({', '.join(MANIFEST_SCHEMA_URLS)})")
    return str(value)


class InterfaceMetadata(_Strict):
    dbt_schema_version: Annotated[str, BeforeValidator(_manifest_schema)]
    dbt_version: DbtVersion | None = None
    generated_at: Timestamp | None = None
    invocation_id: InvocationId | None = None
    project_name: ProjectName
    adapter_type: AdapterType | None = None
    mesh: MeshMetadata


class Group(_Strict):
    name: GroupName
    owner: FreeObject
    description: Text | None = None


_Empty = Annotated[dict[str, Any], Field(max_length=0)]


class InterfaceHead(_Strict):
    """An interface without its nodes (checked one at a time: `check_interface_node`)."""

    metadata: InterfaceMetadata
    nodes: dict[str, Any]
    groups: Annotated[dict[str, Group], Field(max_length=MAX_LIST)] = {}
    sources: _Empty = {}
    macros: _Empty = {}
    exposures: _Empty = {}
    metrics: _Empty = {}


_HEAD = _Lazy(lambda: InterfaceHead)


# --- refusals ------------------------------------------------------------------------------------


def _field(loc: tuple[int | str, ...]) -> str:
    parts = [str(part) for part in loc if not (isinstance(part, str) and part.startswith(("function-", "union[", "literal[")))]
    # pydantic names union members (`str`, `int`) in a location: keep the data's path only.
    return ".".join(p for p in parts if p not in ("str", "int", "float", "bool", "dict", "list", "none"))


_PATTERN_WORDS = {
    IDENTIFIER_PATTERN: "is not an identifier (letters, digits, _ and $; not starting with a digit)",
    r"[A-Za-z_][A-Za-z0-9_]*": "is not a node name (letters, digits and _; not starting with a digit)",
    r"[A-Za-z0-9_][A-Za-z0-9_ .-]*": "is not a group name (letters, digits, _, spaces, . and -)",
    _NO_CONTROL: "holds control characters",
}


def _problem(error: Any) -> str:
    ctx = error.get("ctx") or {}
    if error.get("type") == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        inner = pattern.removeprefix("^(?:").removesuffix(")$")
        words = _PATTERN_WORDS.get(inner) or _PATTERN_WORDS.get(pattern) or f"does not match {inner}"
        return f"{_short(error.get('input'))} {words}"
    message = str(error.get("msg", "is invalid"))
    message = message.removeprefix("Value error, ")
    value = error.get("input")
    if error.get("type") == "extra_forbidden":
        return "is not part of the schema"
    if error.get("type") == "missing":
        return "is missing"
    if error.get("type") == "field_problem":
        return message
    if message.startswith(("is ", "names ", "holds ", "has ")):
        return f"{_short(value)} {message}" if not isinstance(value, dict | list) else message
    return f"{_short(value)}: {message}" if not isinstance(value, dict | list) else message


def refusal(where: str, exc: ValidationError, node: str | None = None, skip: int = 0) -> SchemaError:
    """The one-line SchemaError for the first problem pydantic found (`skip`: leading parts of its
    location that name the node, not a field)."""
    errors = exc.errors(include_url=False)
    error = errors[0]
    loc = tuple(error.get("loc", ()))[skip:]
    found = (error.get("ctx") or {}).get("error")
    if isinstance(found, FieldProblem):
        loc = (*loc, *found.field.split("."))
        error = {**error, "msg": str(found), "input": None, "type": "field_problem"}
    field = _field(tuple(loc)) or "(the object itself)"
    if field.startswith("schema_"):
        field = "schema" + field[len("schema_") :]
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    subject = f"node {node}, field {field}" if node else f"field {field}"
    return SchemaError(f"{where}: {subject}: {_problem(error)}{more}")


def read_hint(project: str | None) -> str:
    """What a reader says after refusing a registry object."""
    fix = hint("registry.fsck", "--project", project, "--repair") if project else hint("registry.fsck", "--repair")
    return f"refusing it: it was not written by a mesh publish; {fix} (its owners) replaces it with the newest intact version"


def _hinted(exc: SchemaError, hint: str | None) -> SchemaError:
    return SchemaError(f"{exc}; {hint}") if hint else exc


def describe(project: str | None, env: str | None = None, version: str | None = None, what: str | None = None) -> str:
    """How a refusal names the object: `dbt_up/prod 20261123T101502.123456Z-3f2a9c1e`."""
    head = what or (f"{project or '?'}/{env}" if env else str(project or "?"))
    return f"{head} {version}" if version and version not in head else head


# --- interface checks ----------------------------------------------------------------------------


class InterfaceCheck:
    """Checks one interface, its head first, then its nodes one at a time (so a lazy reader holds
    one parsed node at a time), then what spans nodes. Every refusal is a one-line SchemaError
    naming the object, node and field, followed by `hint` (default: `read_hint`).

    `env` and `version`, when given, must be what the document says of itself: an entry stored as
    `history/V` that claims another version, or another env, is forged or damaged."""

    def __init__(
        self,
        project: str,
        env: str | None = None,
        version: str | None = None,
        what: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.project, self.env, self.version, self.what = project, env, version, what
        self.hint = read_hint(project) if hint is None else hint
        self.where = describe(project, env, version, what)
        self.parents: dict[str, list[str]] = {}

    def refuse(self, subject: str, problem: str) -> SchemaError:
        return _hinted(SchemaError(f"{self.where}: {subject}: {problem}"), self.hint)

    def head(self, doc: Any) -> Json:
        """Check the metadata, groups and the empty manifest parts; `nodes` must be an object."""
        if not isinstance(doc, dict):
            raise self.refuse("field (the object itself)", "is not a JSON object")
        metadata = doc.get("metadata")
        claimed = metadata.get("mesh") if isinstance(metadata, dict) else None
        shown = claimed.get("version") if isinstance(claimed, dict) else None
        if self.version is None and isinstance(shown, str) and VERSION_RE.fullmatch(shown):
            self.where = describe(self.project, self.env, shown, self.what)
        try:
            head = _HEAD.validate_python(doc)
        except ValidationError as exc:
            raise _hinted(refusal(self.where, exc), self.hint) from None
        meta = head.metadata
        if meta.project_name != self.project:
            raise self.refuse("field metadata.project_name", f"{meta.project_name!r} is not {self.project}")
        if self.env is not None and meta.mesh.env is not None and meta.mesh.env != self.env:
            raise self.refuse("field metadata.mesh.env", f"{meta.mesh.env!r} is not {self.env}")
        if self.version is not None and meta.mesh.version != self.version:
            raise self.refuse(
                "field metadata.mesh.version",
                f"{meta.mesh.version!r} is not the version it is stored as ({self.version})",
            )
        for uid, group in head.groups.items():
            if uid != f"group.{meta.project_name}.{group.name}":
                raise self.refuse(
                    f"field groups.{_short(uid)}", f"it does not name group {group.name!r} of {meta.project_name}"
                )
        return doc

    def node(self, uid: Any, node: Any) -> Json:
        """Check one node; return it with its relation name rebuilt from its checked identifiers."""
        if not isinstance(uid, str) or len(uid) > 600:
            raise self.refuse("field nodes", f"a key is not a unique_id ({_short(uid)})")
        try:
            checked: Json = _NODE.validate_python(node)  # a copy: the caller's node is left as is
        except ValidationError as exc:
            raise _hinted(refusal(self.where, exc, node=_short(uid).strip("'")), self.hint) from None
        return self._checked(uid, checked, node)

    def _checked(self, uid: str, checked: Json, node: Json) -> Json:
        problem = _node_problem(checked)
        if problem is not None:
            raise self.refuse(f"node {uid}, field {problem.field}", str(problem))
        if checked["unique_id"] != uid:
            raise self.refuse(f"node {uid}, field unique_id", f"{_short(checked['unique_id'])} differs from its key")
        if checked["package_name"] != self.project:
            raise self.refuse(f"node {uid}, field package_name", f"{checked['package_name']!r} is not {self.project}")
        self.parents[uid] = list(checked["depends_on"]["nodes"])
        if checked["relation_name"] != node.get("relation_name"):
            node = {**node, "relation_name": checked["relation_name"]}
        return node

    def node_json(self, line: bytes) -> tuple[str, Json]:
        """Check one node from its bytes (`{"<uid>": {...}}`), parsed by the validator itself (no
        second parse); return (uid, node) with the relation name rebuilt."""
        try:
            ((uid, checked),) = _NODE_LINE.validate_json(line).items()
        except ValidationError as exc:
            loc = exc.errors(include_url=False)[0].get("loc", ())
            node = str(loc[0]) if loc else None
            raise _hinted(refusal(self.where, exc, node=node, skip=1 if loc else 0), self.hint) from None
        return uid, self._checked(uid, checked, checked)

    def finish(self) -> None:
        """What spans nodes: every depends_on names a node of this interface."""
        for uid, parents in self.parents.items():
            for parent in parents:
                if parent not in self.parents:
                    raise self.refuse(
                        f"node {uid}, field depends_on.nodes", f"{_short(parent)} is not a node of this interface"
                    )


def check_interface(
    doc: Any,
    project: str,
    env: str | None = None,
    version: str | None = None,
    what: str | None = None,
    hint: str | None = None,
) -> Json:
    """Check a whole interface document (see InterfaceCheck); return it with every relation name
    rebuilt from its identifiers."""
    check = InterfaceCheck(project, env, version, what, hint)
    check.head(doc)
    nodes = {uid: check.node(uid, node) for uid, node in doc["nodes"].items()}
    check.finish()
    return {**doc, "nodes": nodes}


