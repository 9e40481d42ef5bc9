"""Snowflake set-up without Terraform, and read grants derived from a published interface.

Two jobs:

- `render_setup` fills the numbered scripts in `snowflake_sql/` from mesh.yml, and `execute` runs
  them through snowflake-connector-python with key-pair authentication. Each script says in its
  first line what it is rendered for (`-- mesh:render-per warehouse|project|edge`).
- `grants_for_interface` turns a producer's published interface into `GRANT USAGE`/`GRANT SELECT`
  statements for its consumers' roles, on exactly the relations of its public nodes (models, seeds,
  snapshots); `grant_changes` compares it with the previously published interface(s) and adds a
  `REVOKE` for every relation no longer published; `sync_grants` runs that after a publish.

Every value substituted into SQL is an identifier checked against `^[A-Z_][A-Z0-9_$]*$` first:
a hostile mesh.yml or interface can make a statement fail, never change what it does.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mesh.core.errors import CheckFailedError, ConfigError, CredentialsError, ManifestError
from mesh.core.names import check_name
from mesh.core.surface import install_hint
from mesh.project.artifacts import public_node_ids
from mesh.project.config import read_upstreams, read_yaml

__all__ = [
    "IDENTIFIER_RE",
    "ConnectionSettings",
    "GrantChanges",
    "InterfaceGrantError",
    "MeshLayout",
    "ProjectSpec",
    "Relation",
    "RenderedScript",
    "Session",
    "SnowflakeExecutionError",
    "SnowflakeSettingsError",
    "SqlTemplateError",
    "UnsafeIdentifierError",
    "connection_settings_from_env",
    "execute",
    "grant_changes",
    "grant_statement_parts",
    "grants_for_interface",
    "grants_for_relations",
    "load_layout",
    "project_connection_settings",
    "public_relations",
    "render_setup",
    "render_template",
    "run_grant_statements",
    "script_unit",
    "sync_grants",
]

IDENTIFIER_RE = re.compile(r"[A-Z_][A-Z0-9_$]*")
PLACEHOLDER_RE = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
RENDER_PER_RE = re.compile(r"^--\s*mesh:render-per\s+(warehouse|project|edge)\s*$", re.MULTILINE)
SCRIPT_GLOB = "[0-9][0-9]_*.sql"
# dbt's private layers; no consumer grant may ever reach them.
PRIVATE_SCHEMAS = frozenset({"RAW", "STAGING"})
DEFAULT_SETUP_ROLE = "SYSADMIN"
RESOURCE_MONITOR_SCRIPT = "06_resource_monitors.sql"
CONSUMER_GRANTS_SCRIPT = "05_consumer_grants.sql"
WAP_SCRIPT = "07_write_audit_publish.sql"


# --- errors --------------------------------------------------------------------------------------


class UnsafeIdentifierError(ConfigError):
    """A value meant for SQL is not a plain upper-case Snowflake identifier."""


class SqlTemplateError(ConfigError):
    """A script in snowflake_sql/ is malformed: unknown placeholder or missing render-per line."""


class SnowflakeSettingsError(CredentialsError):
    """A connection setting (SNOWFLAKE_* environment variable) is missing or invalid."""


class InterfaceGrantError(ManifestError):
    """The interface cannot be turned into grants: malformed, or it names a private schema."""


class SnowflakeExecutionError(CheckFailedError):
    """Snowflake rejected a statement."""


# --- identifiers ---------------------------------------------------------------------------------


def check_identifier(kind: str, value: object) -> str:
    """Return `value` upper-cased if it is an unquoted Snowflake identifier, else raise.

    Unquoted identifiers resolve to upper case in Snowflake, so `public_orders` (as dbt writes an
    alias) names the same object as `PUBLIC_ORDERS`; anything that would need quoting is refused.
    """
    if not isinstance(value, str) or not value.isascii():
        raise UnsafeIdentifierError(
            f"invalid {kind} {value!r}: use an unquoted Snowflake identifier (A-Z, 0-9, _ and $)"
        )
    upper = value.upper()
    if not IDENTIFIER_RE.fullmatch(upper):
        raise UnsafeIdentifierError(
            f"invalid {kind} {value!r}: use an unquoted Snowflake identifier matching "
            f"{IDENTIFIER_RE.pattern}"
        )
    return upper


# --- mesh layout ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProjectSpec:
    """One dbt project as mesh.yml and its dependencies.yml describe it."""

    name: str
    database: str
    warehouse: str
    role: str
    public_schema: str | None = None
    upstreams: tuple[str, ...] = ()
    service_user: str = ""
    path: str = ""
    public_schemas: tuple[str, ...] = ()  # every public schema; `public_schema` is the first

    @property
    def grant_schemas(self) -> tuple[str, ...]:
        """The schemas consumers may be granted relations in (empty: any of the database's)."""
        return self.public_schemas or ((self.public_schema,) if self.public_schema else ())

    @property
    def project_dir(self) -> str:
        """The dbt project's folder relative to mesh.yml (mesh.yml's `path`, default its name)."""
        return self.path or self.name

    @property
    def user(self) -> str:
        """The CI service user: `service_user` or <PROJECT>_CI_USER."""
        return self.service_user or f"{self.name.upper()}_CI_USER"


@dataclass(frozen=True)
class MeshLayout:
    """What the infrastructure needs from mesh.yml: projects, their edges and the targets."""

    projects: Mapping[str, ProjectSpec]
    targets: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def warehouses(self) -> list[str]:
        """Distinct warehouses, sorted."""
        return sorted({p.warehouse for p in self.projects.values()})

    def edges(self) -> list[tuple[ProjectSpec, ProjectSpec]]:
        """(consumer, producer) pairs, sorted by consumer then producer."""
        pairs = []
        for consumer in sorted(self.projects):
            for producer in sorted(self.projects[consumer].upstreams):
                pairs.append((self.projects[consumer], self.projects[producer]))
        return pairs

    def consumers_of(self, producer: str) -> list[ProjectSpec]:
        """Projects whose dependencies.yml lists `producer`, sorted by name."""
        return [p for name, p in sorted(self.projects.items()) if producer in p.upstreams]


# The template's own mesh, used when a repository has no mesh.yml yet (and by the SQL lint).
DEFAULT_LAYOUT = MeshLayout(
    projects={
        "dbt_up": ProjectSpec(
            "dbt_up", "DBT_UP_PROD", "DBT_UP_WH", "DBT_UP_ROLE", "MARTS",
            public_schemas=("MARTS", "FINANCE"),
        ),
        "dbt_down": ProjectSpec(
            "dbt_down", "DBT_DOWN_PROD", "DBT_DOWN_WH", "DBT_DOWN_ROLE", upstreams=("dbt_up",)
        ),
        "dbt_down_loom": ProjectSpec(
            "dbt_down_loom",
            "DBT_DOWN_LOOM_PROD",
            "DBT_DOWN_WH",
            "DBT_DOWN_LOOM_ROLE",
            upstreams=("dbt_up",),
        ),
    },
    targets={
        "local": {"registry": "file://registry", "env": "local"},
        "prod": {"registry": "${MESH_REGISTRY:-s3://acme-dbt-mesh-registry/mesh}", "env": "prod"},
    },
)


def load_layout(root: Path, mesh_file: str = "mesh.yml") -> MeshLayout:
    """Read mesh.yml (and each project's dependencies.yml) under `root`.

    Raises ConfigError when mesh.yml is missing or a value is not allowed.
    """
    path = root / mesh_file
    if not path.is_file():
        raise ConfigError(f"{mesh_file} not found in the repository root: create it (see README)")
    data = read_yaml(path, mesh_file)
    if not isinstance(data, dict):
        raise ConfigError(f"{mesh_file} must be a mapping")
    raw_projects = data.get("projects")
    snowflake = (data.get("snowflake") or {}).get("projects") or {}
    if not isinstance(raw_projects, dict) or not raw_projects:
        raise ConfigError(f"{mesh_file}: `projects` must map project names to settings")
    if not isinstance(snowflake, dict):
        raise ConfigError(f"{mesh_file}: `snowflake.projects` must be a mapping")

    projects: dict[str, ProjectSpec] = {}
    for name, settings in raw_projects.items():
        check_name("project", name)
        settings = settings or {}
        sf = snowflake.get(name)
        if not isinstance(sf, dict):
            raise ConfigError(f"{mesh_file}: snowflake.projects.{name} is missing")
        missing = [key for key in ("database", "warehouse", "role") if not sf.get(key)]
        if missing:
            raise ConfigError(f"{mesh_file}: snowflake.projects.{name} lacks {', '.join(missing)}")
        project_dir = root / str(settings.get("path", name))
        schemas = public_schemas(sf.get("public_schema"), name)
        projects[name] = ProjectSpec(
            name=name,
            database=check_identifier(f"{name} database", sf["database"]),
            warehouse=check_identifier(f"{name} warehouse", sf["warehouse"]),
            role=check_identifier(f"{name} role", sf["role"]),
            public_schema=schemas[0] if schemas else None,
            public_schemas=schemas,
            upstreams=tuple(sorted(read_upstreams(project_dir))),
            service_user=(
                check_identifier(f"{name} service_user", sf["service_user"])
                if sf.get("service_user")
                else ""
            ),
            path=str(settings.get("path", name)),
        )
    layout = MeshLayout(projects=projects, targets=_targets(data.get("targets"), mesh_file))
    validate_layout(layout)
    return layout


def public_schemas(value: object, project: str) -> tuple[str, ...]:
    """`public_schema` of a project's Snowflake settings: one schema or a list, each checked."""
    if value is None or value == "" or value == []:
        return ()
    items = value if isinstance(value, list) else [value]
    schemas = tuple(check_identifier(f"{project} public_schema", item) for item in items)
    if len(set(schemas)) != len(schemas):
        raise ConfigError(f"snowflake.projects.{project}.public_schema lists a schema twice")
    return schemas


def snowflake_settings(snowflake: Mapping[str, Any] | None, project: str) -> tuple[str, tuple[str, ...]] | None:
    """(database, public schemas) a producer's relations must live in to be granted, from the
    `snowflake:` block of mesh.yml (the database the profile builds into: <PROJECT>_SNOWFLAKE_DATABASE
    when set); None when mesh.yml has no Snowflake settings for it."""
    projects = (snowflake or {}).get("projects") if isinstance(snowflake, Mapping) else None
    settings = projects.get(project) if isinstance(projects, Mapping) else None
    if not isinstance(settings, Mapping) or not settings.get("database"):
        return None
    variable = f"{project.upper()}_SNOWFLAKE_DATABASE"
    database = check_identifier(variable, os.environ.get(variable, "").strip() or settings["database"])
    return database, public_schemas(settings.get("public_schema"), project)


def grantable_problem(
    interface: Mapping[str, Any], database: str, schemas: Sequence[str] = ()
) -> str | None:
    """Why the interface's public relations cannot all be granted to consumers (outside the
    producer's database, or outside its public schemas when it names any), or None."""
    try:
        public_relations(interface, producer_database=database, public_schemas=schemas)
    except (InterfaceGrantError, UnsafeIdentifierError) as exc:
        return str(exc)
    return None


def _targets(raw: object, mesh_file: str) -> dict[str, dict[str, str]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{mesh_file}: `targets` must be a mapping")
    targets = {}
    for name, settings in raw.items():
        if not isinstance(settings, dict):
            raise ConfigError(f"{mesh_file}: targets.{name} must be a mapping")
        targets[str(name)] = {str(k): str(v) for k, v in settings.items()}
    return targets


def validate_layout(layout: MeshLayout) -> None:
    """Check the edges: every upstream is a project with a public schema that is not private."""
    for project in layout.projects.values():
        for schema in project.grant_schemas:
            if schema in PRIVATE_SCHEMAS:
                raise ConfigError(
                    f"{project.name}: public_schema {schema} is a private layer; "
                    "publish a schema other than RAW and STAGING (MARTS)"
                )
        for upstream in project.upstreams:
            producer = layout.projects.get(upstream)
            if producer is None:
                raise ConfigError(
                    f"{project.name}/dependencies.yml lists {upstream}, which is not in mesh.yml"
                )
            if producer.public_schema is None:
                raise ConfigError(
                    f"{project.name} reads {upstream}, but snowflake.projects.{upstream} has no "
                    "public_schema in mesh.yml"
                )


# --- rendering -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderedScript:
    """One script rendered for one unit (a warehouse, a project or a consumer edge)."""

    name: str
    unit: str
    sql: str


def script_unit(text: str, name: str) -> str:
    """What a script is rendered for, from its `-- mesh:render-per <unit>` line."""
    match = RENDER_PER_RE.search(text)
    if not match:
        raise SqlTemplateError(
            f"{name} has no `-- mesh:render-per warehouse|project|edge` line: add one at the top"
        )
    return match.group(1)


def render_template(text: str, values: Mapping[str, str], name: str = "script") -> str:
    """Replace every `{{ placeholder }}` with its value, each checked as an identifier first."""
    checked = {key: check_identifier(key, value) for key, value in values.items()}

    def substitute(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in checked:
            raise SqlTemplateError(
                f"{name}: unknown placeholder {{{{ {key} }}}}; known: {', '.join(sorted(checked))}"
            )
        return checked[key]

    rendered = PLACEHOLDER_RE.sub(substitute, text)
    if "{{" in rendered or "}}" in rendered:
        raise SqlTemplateError(f"{name}: malformed placeholder left after rendering")
    return rendered


def unit_contexts(unit: str, layout: MeshLayout) -> list[tuple[str, dict[str, str]]]:
    """(label, placeholder values) for every unit of the given kind."""
    if unit == "warehouse":
        return [
            (wh, {"warehouse": wh, "resource_monitor": f"{wh}_MONITOR"})
            for wh in layout.warehouses()
        ]
    if unit == "project":
        return [
            (
                name,
                {
                    "database": p.database,
                    "warehouse": p.warehouse,
                    "role": p.role,
                    "user": p.user,
                },
            )
            for name, p in sorted(layout.projects.items())
        ]
    if unit == "edge":
        contexts = []
        for consumer, producer in layout.edges():
            assert producer.public_schema is not None  # validate_layout guarantees it
            for schema in producer.grant_schemas:
                label = f"{consumer.name} reads {producer.name}"
                if schema != producer.public_schema:
                    label += f" ({schema})"
                contexts.append(
                    (
                        label,
                        {
                            "consumer_role": consumer.role,
                            "producer_database": producer.database,
                            "producer_public_schema": schema,
                        },
                    )
                )
        return contexts
    raise SqlTemplateError(f"unknown render unit {unit!r}")


def setup_scripts(sql_dir: Path) -> list[Path]:
    """The numbered scripts, in the order they run."""
    scripts = sorted(sql_dir.glob(SCRIPT_GLOB))
    if not scripts:
        raise ConfigError(f"no numbered .sql scripts in {sql_dir.name}/")
    return scripts


def render_setup(
    layout: MeshLayout,
    sql_dir: Path,
    *,
    include_resource_monitors: bool = True,
    include_consumer_grants: bool = True,
    include_wap: bool = True,
) -> list[RenderedScript]:
    """Every script rendered for every unit it applies to, in execution order."""
    skipped = set()
    if not include_resource_monitors:
        skipped.add(RESOURCE_MONITOR_SCRIPT)
    if not include_consumer_grants:
        skipped.add(CONSUMER_GRANTS_SCRIPT)
    if not include_wap:
        skipped.add(WAP_SCRIPT)
    rendered = []
    for path in setup_scripts(sql_dir):
        if path.name in skipped:
            continue
        text = path.read_text(encoding="utf-8")
        unit = script_unit(text, path.name)
        for label, values in unit_contexts(unit, layout):
            rendered.append(
                RenderedScript(path.name, label, render_template(text, values, path.name))
            )
    return rendered


def format_scripts(scripts: Iterable[RenderedScript]) -> str:
    """SQL of the rendered scripts, each headed by the script and unit it was rendered for."""
    parts = [f"-- ==== {s.name} ({s.unit}) ====\n{s.sql.strip()}\n" for s in scripts]
    return "\n".join(parts)


# --- grants from the interface -------------------------------------------------------------------

_ID = IDENTIFIER_RE.pattern
_KIND = r"(?:TABLE|VIEW|DYNAMIC TABLE)"
GRANT_RE = re.compile(
    rf"GRANT (?P<privilege>USAGE|SELECT) ON "
    rf"(?:DATABASE (?P<database>{_ID})"
    rf"|SCHEMA (?P<schema_db>{_ID})\.(?P<schema>{_ID})"
    rf"|(?P<bulk>ALL|FUTURE) (?P<bulk_kind>TABLES|VIEWS|DYNAMIC TABLES|MATERIALIZED VIEWS) IN "
    rf"(?:SCHEMA (?P<bulk_db>{_ID})\.(?P<bulk_schema>{_ID})|DATABASE (?P<bulk_database>{_ID}))"
    rf"|(?P<kind>{_KIND}) (?P<rel_db>{_ID})\.(?P<rel_schema>{_ID})\.(?P<relation>{_ID}))"
    rf" TO ROLE (?P<role>{_ID})"
)
REVOKE_RE = re.compile(
    rf"REVOKE SELECT ON (?P<kind>{_KIND}) (?P<rel_db>{_ID})\.(?P<rel_schema>{_ID})\."
    rf"(?P<relation>{_ID}) FROM ROLE (?P<role>{_ID})"
)
# Node types that become a relation a consumer can select from, when they are public.
GRANTABLE_TYPES = frozenset({"model", "seed", "snapshot"})
# How a materialization is named in GRANT ... ON <kind>; everything else that builds a relation is
# a table (table, incremental, seeds, snapshots). Ephemeral models build nothing.
RELATION_KINDS = {"view": "VIEW", "dynamic_table": "DYNAMIC TABLE"}


def grant_statement_parts(statement: str) -> dict[str, str] | None:
    """Parts of a read-only consumer grant, or None if the statement is anything else.

    The pattern admits USAGE on a database or schema and SELECT on tables and views (one relation,
    or ALL/FUTURE in a schema or database), nothing more: no other privilege, no WITH GRANT
    OPTION, no OWNERSHIP. `bulk` is set (ALL or FUTURE) for a grant over a whole schema or
    database, which `infra.lint` only accepts on a schema that holds public relations alone.
    """
    normalized = " ".join(statement.replace(";", " ").split()).upper()
    match = GRANT_RE.fullmatch(normalized)
    if not match:
        return None
    parts = {k: v for k, v in match.groupdict().items() if v is not None}
    parts["schema_db"] = (
        parts.get("schema_db")
        or parts.get("bulk_db")
        or parts.get("bulk_database")
        or parts.get("rel_db", "")
    )
    parts["schema"] = parts.get("schema") or parts.get("bulk_schema") or parts.get("rel_schema", "")
    return parts


@dataclass(frozen=True, order=True)
class Relation:
    """One relation a consumer may select from: `kind` is TABLE, VIEW or DYNAMIC TABLE."""

    database: str
    schema: str
    name: str
    kind: str = "TABLE"
    unique_id: str = field(default="", compare=False)

    @property
    def key(self) -> tuple[str, str, str]:
        """What identifies the relation in Snowflake, whatever its kind."""
        return self.database, self.schema, self.name

    @property
    def fqn(self) -> str:
        return f"{self.database}.{self.schema}.{self.name}"

    def in_database(self, database: str) -> Relation:
        """The same relation in another database (the audit copy of write-audit-publish)."""
        return Relation(database, self.schema, self.name, self.kind, self.unique_id)


def _config(node: Mapping[str, Any]) -> Mapping[str, Any]:
    config = node.get("config")
    return config if isinstance(config, dict) else {}


def _materialized(node: Mapping[str, Any]) -> str:
    return str(_config(node).get("materialized") or node.get("materialized") or "").lower()


def _materialization(node: Mapping[str, Any]) -> str:
    return RELATION_KINDS.get(_materialized(node), "TABLE")


def node_access(node: Mapping[str, Any]) -> str:
    """A node's access (`public`, `protected`, `private`), from the node or its config."""
    return str(node.get("access") or _config(node).get("access") or "protected")


def public_relations(
    interface: Mapping[str, Any],
    *,
    producer_database: str | None = None,
    public_schemas: Sequence[str] = (),
    public_ids: Collection[str] | None = None,
    what: str = "interface",
) -> list[Relation]:
    """The relations of an interface's public models, seeds and snapshots, sorted.

    Identifiers are checked and upper-cased (Snowflake resolves unquoted names upper-cased). A
    public node in RAW or STAGING, outside `producer_database` when given, outside
    `public_schemas` when any are given (the producer's own settings in mesh.yml), not public in
    the producer's own manifest when `public_ids` is given, or with an identifier that would need
    quoting raises InterfaceGrantError: an interface cannot make a grant reach anything but the
    producer's own published relations.
    """
    if not isinstance(interface, Mapping) or not isinstance(interface.get("nodes"), dict):
        raise InterfaceGrantError(f"{what} has no `nodes` mapping: is it a published manifest?")
    expected = (
        check_identifier("producer database", producer_database) if producer_database else None
    )
    allowed = {check_identifier("public schema", schema) for schema in public_schemas}
    relations: dict[tuple[str, str, str], Relation] = {}
    for unique_id, node in sorted(interface["nodes"].items()):
        if not isinstance(node, dict):
            raise InterfaceGrantError(f"{what} node {unique_id!r} is not an object")
        if node.get("resource_type", "model") not in GRANTABLE_TYPES:
            continue
        if node_access(node) != "public" or _materialized(node) == "ephemeral":
            continue
        if public_ids is not None and unique_id not in public_ids:
            raise InterfaceGrantError(
                f"{what} node {unique_id!r} is public in the interface but not in the producer's "
                "own manifest: the registry's interface is not what the producer built, nothing "
                "is granted"
            )
        try:
            database = check_identifier("database", node.get("database"))
            schema = check_identifier("schema", node.get("schema"))
            alias = check_identifier("alias", node.get("alias") or node.get("name"))
        except UnsafeIdentifierError as exc:
            raise InterfaceGrantError(f"{what} node {unique_id!r}: {exc}") from exc
        if schema in PRIVATE_SCHEMAS:
            raise InterfaceGrantError(
                f"{what} node {unique_id!r} lives in {schema}, a private layer: "
                "public models must be built outside RAW and STAGING"
            )
        if expected and database != expected:
            raise InterfaceGrantError(
                f"{what} node {unique_id!r} lives in database {database}, not in the producer's "
                f"database {expected}: an interface can only grant its own relations"
            )
        if allowed and schema not in allowed:
            raise InterfaceGrantError(
                f"{what} node {unique_id!r} lives in schema {schema}, not in a public schema of "
                f"the producer ({', '.join(sorted(allowed))} in mesh.yml): move it, or add "
                f"{schema} to the producer's public_schema"
            )
        relation = Relation(database, schema, alias, _materialization(node), unique_id)
        relations[relation.key] = relation
    return sorted(relations.values())


def _usage_statements(relations: Iterable[Relation], role: str) -> list[str]:
    rels = list(relations)
    statements = [
        f"GRANT USAGE ON DATABASE {database} TO ROLE {role}"
        for database in sorted({r.database for r in rels})
    ]
    statements += [
        f"GRANT USAGE ON SCHEMA {database}.{schema} TO ROLE {role}"
        for database, schema in sorted({(r.database, r.schema) for r in rels})
    ]
    return statements


def grants_for_relations(relations: Iterable[Relation], consumer_roles: Iterable[str]) -> list[str]:
    """USAGE on each database and schema that holds one of `relations`, then SELECT on each."""
    rels = sorted(relations)
    statements = []
    for role in sorted({check_identifier("consumer role", r) for r in consumer_roles}):
        statements += _usage_statements(rels, role)
        statements += [f"GRANT SELECT ON {r.kind} {r.fqn} TO ROLE {role}" for r in rels]
    return statements


def grants_for_interface(
    interface: dict[str, Any],
    consumer_roles: list[str],
    *,
    producer_database: str | None = None,
) -> list[str]:
    """GRANT statements that let each consumer role read exactly the interface's public relations.

    For every role: USAGE on each database and schema that holds a public node, then SELECT ON
    TABLE|VIEW|DYNAMIC TABLE for each relation (by the node's materialization). See
    `public_relations` for what is refused.
    """
    roles = [check_identifier("consumer role", role) for role in consumer_roles]
    relations = public_relations(interface, producer_database=producer_database)
    return grants_for_relations(relations, roles)


@dataclass(frozen=True)
class GrantChanges:
    """What to run after a publish: revoke what is no longer published, grant what is."""

    revokes: list[str]
    grants: list[str]

    @property
    def statements(self) -> list[str]:
        """Revokes first: what stops being published stops being readable before anything else."""
        return [*self.revokes, *self.grants]


def _as_interfaces(value: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [value]
    return list(value)


def grant_changes(
    previous: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
    new: Mapping[str, Any],
    consumer_roles: Iterable[str],
    *,
    producer_database: str | None = None,
    public_schemas: Sequence[str] = (),
    public_ids: Collection[str] | None = None,
    database: str | None = None,
) -> GrantChanges:
    """Grants for `new`, and a REVOKE SELECT for each relation `previous` published and `new` does not.

    `previous` is the interface published before (or several, oldest first: every relation any of
    them published is revoked unless `new` still publishes it, which also covers a rollback or a
    publish whose grants never ran). Every SELECT of `new` is granted again, not only the added
    ones: dbt's `CREATE OR REPLACE` drops the grants of every relation it rebuilds. USAGE is never
    revoked (it shows no data; Terraform and 05_consumer_grants.sql grant it too). `database`
    renders every statement against another database name (the audit copy before a swap).
    """
    roles = sorted({check_identifier("consumer role", r) for r in consumer_roles})
    wanted = public_relations(
        new, producer_database=producer_database, public_schemas=public_schemas, public_ids=public_ids
    )
    wanted_keys = {r.key for r in wanted}
    gone: dict[tuple[str, str, str], Relation] = {}
    for number, old in enumerate(_as_interfaces(previous)):
        # What was granted before is revoked wherever it is (only the new grants are held to the
        # public schemas): a revoke never widens access.
        for relation in public_relations(
            old, producer_database=producer_database, what=f"previous interface #{number + 1}"
        ):
            if relation.key not in wanted_keys:
                gone[relation.key] = relation  # a later interface's kind wins
    if database:
        target = check_identifier("database", database)
        wanted = [r.in_database(target) for r in wanted]
        gone = {k: r.in_database(target) for k, r in gone.items()}
    revokes = [
        f"REVOKE SELECT ON {r.kind} {r.fqn} FROM ROLE {role}"
        for role in roles
        for r in sorted(gone.values())
    ]
    return GrantChanges(revokes=revokes, grants=grants_for_relations(wanted, roles))


# --- connection and execution --------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectionSettings:
    """Key-pair connection settings read from SNOWFLAKE_* environment variables."""

    account: str
    user: str
    private_key_path: Path
    role: str
    private_key_passphrase: str | None = field(default=None, repr=False)
    host: str | None = None
    port: int | None = None
    protocol: str | None = None
    query_tag: str = "dbt-mesh-setup"

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for snowflake.connector.connect."""
        kwargs: dict[str, Any] = {
            "account": self.account,
            "user": self.user,
            "authenticator": "SNOWFLAKE_JWT",
            "private_key_file": str(self.private_key_path),
            "role": self.role,
            "session_parameters": {"QUERY_TAG": self.query_tag},
        }
        if self.private_key_passphrase:
            kwargs["private_key_file_pwd"] = self.private_key_passphrase
        if self.host:
            kwargs["host"] = self.host
        if self.port is not None:
            kwargs["port"] = self.port
        if self.protocol:
            kwargs["protocol"] = self.protocol
        return kwargs


REQUIRED_ENV = ("SNOWFLAKE_ACCOUNT", "SNOWFLAKE_USER", "SNOWFLAKE_PRIVATE_KEY_PATH")


def connection_settings_from_env(
    env: Mapping[str, str] | None = None, *, default_role: str = DEFAULT_SETUP_ROLE
) -> ConnectionSettings:
    """Read and check the connection settings; raise naming the first missing variable."""
    env = os.environ if env is None else env
    for name in REQUIRED_ENV:
        if not env.get(name, "").strip():
            raise SnowflakeSettingsError(
                f"{name} is not set: export it before running Snowflake tasks "
                "(see README.md, Infrastructure, 'Key pairs')"
            )
    key_path = Path(env["SNOWFLAKE_PRIVATE_KEY_PATH"]).expanduser()
    if not key_path.is_file():
        raise SnowflakeSettingsError(
            "SNOWFLAKE_PRIVATE_KEY_PATH does not point to a readable file: give the path of the "
            "PKCS#8 private key (.p8)"
        )
    port_text = env.get("SNOWFLAKE_PORT", "").strip()
    if port_text and not port_text.isdigit():
        raise SnowflakeSettingsError(f"SNOWFLAKE_PORT must be a number, not {port_text!r}")
    protocol = env.get("SNOWFLAKE_PROTOCOL", "").strip().lower() or None
    if protocol not in (None, "http", "https"):
        raise SnowflakeSettingsError(f"SNOWFLAKE_PROTOCOL must be http or https, not {protocol!r}")
    role = env.get("SNOWFLAKE_ROLE", "").strip() or default_role
    return ConnectionSettings(
        account=env["SNOWFLAKE_ACCOUNT"].strip(),
        user=env["SNOWFLAKE_USER"].strip(),
        private_key_path=key_path,
        private_key_passphrase=env.get("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE") or None,
        role=check_identifier("SNOWFLAKE_ROLE", role),
        host=env.get("SNOWFLAKE_HOST", "").strip() or None,
        port=int(port_text) if port_text else None,
        protocol=protocol,
    )


class _Connection(Protocol):
    def execute_string(self, sql_text: str, remove_comments: bool = ...) -> Iterable[Any]: ...

    def close(self) -> None: ...


def _default_connect(**kwargs: Any) -> _Connection:
    import snowflake.connector

    return snowflake.connector.connect(**kwargs)


def _connector_errors() -> Any:
    try:
        import snowflake.connector.errors as sf_errors
    except ImportError as exc:  # pragma: no cover - the connector is a pinned dependency
        raise ConfigError(f"snowflake-connector-python is not installed: run {install_hint('snowflake')}") from exc
    return sf_errors


def _open(settings: ConnectionSettings, connect: Callable[..., _Connection]) -> _Connection:
    sf_errors = _connector_errors()
    try:
        return connect(**settings.connect_kwargs())
    except (sf_errors.Error, ValueError, TypeError, OSError) as exc:
        # A wrong passphrase or a key that is not PKCS#8 surfaces as ValueError/TypeError.
        reason = getattr(exc, "msg", None) or str(exc) or type(exc).__name__
        raise SnowflakeExecutionError(
            f"cannot connect to Snowflake account {settings.account} as {settings.user}: {reason}"
        ) from exc


def execute(
    scripts: Sequence[RenderedScript],
    settings: ConnectionSettings,
    *,
    connect: Callable[..., _Connection] = _default_connect,
    echo: Callable[[str], None] | None = None,
) -> int:
    """Run the scripts in order over one connection; return the number of statements run.

    Stops at the first statement Snowflake rejects and raises SnowflakeExecutionError naming the
    script and unit, so a re-run (every script is idempotent) picks up from a clean state.
    """
    sf_errors = _connector_errors()
    connection = _open(settings, connect)
    count = 0
    try:
        for script in scripts:
            if echo:
                echo(f"{script.name} ({script.unit})")
            try:
                cursors = connection.execute_string(script.sql, remove_comments=True)
            except sf_errors.Error as exc:
                raise SnowflakeExecutionError(
                    f"{script.name} ({script.unit}) failed: {exc.msg or exc}"
                ) from exc
            count += len(list(cursors))
    finally:
        connection.close()
    return count


# Snowflake's error for an object that does not exist (or that the role cannot see).
OBJECT_MISSING_ERRNO = 2003


class Session:
    """One connection that runs single statements and returns their rows.

    `run` raises SnowflakeExecutionError naming the statement when Snowflake rejects it; with
    `missing_ok`, a statement on an object that does not exist (errno 2003) is skipped instead and
    reported by returning None.
    """

    def __init__(
        self,
        settings: ConnectionSettings,
        *,
        connect: Callable[..., _Connection] = _default_connect,
        label: str = "statement",
    ) -> None:
        self.settings = settings
        self.label = label
        self._errors = _connector_errors()
        self._connection = _open(settings, connect)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._connection.close()

    def _execute(self, statement: str, missing_ok: bool) -> Any:
        try:
            cursors = list(self._connection.execute_string(statement, remove_comments=True))
        except self._errors.Error as exc:
            if missing_ok and getattr(exc, "errno", None) == OBJECT_MISSING_ERRNO:
                return None
            reason = " ".join(str(exc.msg or exc).split())
            raise SnowflakeExecutionError(
                f"{self.label} failed on `{statement}`: {reason}"
            ) from exc
        return cursors[-1] if cursors else False

    def run(self, statement: str, *, missing_ok: bool = False) -> list[tuple[Any, ...]] | None:
        """Run one statement; its rows (empty when it returns none), None when skipped."""
        cursor = self._execute(statement, missing_ok)
        if cursor is None:
            return None
        if cursor is False:
            return []
        try:
            rows = cursor.fetchall()
        except self._errors.Error:
            return []
        return [tuple(row) for row in rows or []]

    def records(self, statement: str) -> list[dict[str, Any]]:
        """Run one query; its rows as dicts keyed by lower-case column name."""
        cursor = self._execute(statement, False)
        if not cursor:
            return []
        names = [str(column[0]).lower() for column in cursor.description or []]
        return [dict(zip(names, row, strict=False)) for row in cursor.fetchall() or []]


def project_connection_settings(
    project: ProjectSpec,
    env: Mapping[str, str] | None = None,
    *,
    query_tag: str = "dbt-mesh",
) -> ConnectionSettings:
    """Connection settings of a project's CI user, read as profiles/profiles.yml reads them.

    `<PROJECT>_SNOWFLAKE_USER`, `_PRIVATE_KEY_PATH` and `_ROLE` win over `SNOWFLAKE_USER`,
    `SNOWFLAKE_PRIVATE_KEY_PATH` and the project's role in mesh.yml; the connection runs as the
    project's own role, which owns its database and everything in it.
    """
    env = os.environ if env is None else env
    prefix = project.name.upper()
    merged = dict(env)
    for name in ("SNOWFLAKE_USER", "SNOWFLAKE_PRIVATE_KEY_PATH"):
        own = env.get(f"{prefix}_{name}", "").strip()
        if own:
            merged[name] = own
    merged["SNOWFLAKE_ROLE"] = env.get(f"{prefix}_SNOWFLAKE_ROLE", "").strip() or project.role
    settings = connection_settings_from_env(merged)
    return ConnectionSettings(
        account=settings.account,
        user=settings.user,
        private_key_path=settings.private_key_path,
        role=settings.role,
        private_key_passphrase=settings.private_key_passphrase,
        host=settings.host,
        port=settings.port,
        protocol=settings.protocol,
        query_tag=query_tag,
    )


def mesh_project_settings(mesh: Any, project: str, query_tag: str) -> ConnectionSettings:
    """`project_connection_settings` of a project of `mesh` (a `mesh.project.config.Mesh` or a
    `MeshLayout`); ConfigError when mesh.yml does not define it."""
    layout = mesh if isinstance(mesh, MeshLayout) else load_layout(Path(mesh.root))
    spec = layout.projects.get(project)
    if spec is None:
        raise ConfigError(f"project {project!r} is not in mesh.yml")
    return project_connection_settings(spec, query_tag=query_tag)


def run_grant_statements(
    statements: Sequence[str],
    settings: ConnectionSettings,
    *,
    connect: Callable[..., _Connection] = _default_connect,
    echo: Callable[[str], None] | None = None,
    label: str = "grants",
) -> int:
    """Run GRANT/REVOKE statements one by one; return how many ran.

    A REVOKE on a relation that no longer exists is skipped (dbt never drops a removed model's
    table, but someone may have): it has no grant left to revoke. Anything else Snowflake rejects
    stops the run with SnowflakeExecutionError; grants are idempotent, so a re-run is safe.
    """
    count = 0
    with Session(settings, connect=connect, label=label) as session:
        for statement in statements:
            rows = session.run(statement, missing_ok=statement.startswith("REVOKE "))
            if rows is None:
                if echo:
                    echo(f"-- skipped, the relation does not exist: {statement}")
                continue
            count += 1
    return count


def _own_public_ids(manifest: Mapping[str, Any]) -> set[str]:

    return set(public_node_ids(dict(manifest)))


def sync_grants(
    mesh: Any,
    project: str,
    previous_interface: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
    new_interface: Mapping[str, Any],
    dry_run: bool = False,
    *,
    settings: ConnectionSettings | None = None,
    connect: Callable[..., _Connection] = _default_connect,
    echo: Callable[[str], None] | None = None,
    producer_manifest: Mapping[str, Any] | None = None,
) -> list[str]:
    """Keep the consumers' SELECT grants in step with a producer's interface; return the statements.

    Call it after every publish to Snowflake: it revokes SELECT on every relation the previous
    interface(s) published and the new one does not, then grants USAGE and SELECT on every
    relation of the new one to the role of each project whose dependencies.yml lists `project`.
    Only relations in the producer's own database, and in its public schema(s) when mesh.yml names
    any, are granted; with `producer_manifest` (the producer's own build), only nodes public in it.
    Anything else raises InterfaceGrantError before anything runs.
    `mesh` is a `mesh.project.config.Mesh` or a `MeshLayout`. With `dry_run` nothing connects; otherwise
    the statements run as the producer's own role (it owns the relations), with the credentials
    `project_connection_settings` reads unless `settings` is given.
    """
    layout = mesh if isinstance(mesh, MeshLayout) else load_layout(Path(mesh.root))
    producer = layout.projects.get(project)
    if producer is None:
        raise ConfigError(f"project {project!r} is not in mesh.yml")
    roles = [p.role for p in layout.consumers_of(project)]
    changes = grant_changes(
        previous_interface,
        new_interface,
        roles,
        producer_database=producer.database,
        public_schemas=producer.grant_schemas,
        public_ids=None if producer_manifest is None else _own_public_ids(producer_manifest),
    )
    statements = changes.statements if roles else []
    if dry_run or not statements:
        return statements
    settings = settings or project_connection_settings(producer, query_tag="dbt-mesh-grants")
    run_grant_statements(statements, settings, connect=connect, echo=echo)
    return statements
