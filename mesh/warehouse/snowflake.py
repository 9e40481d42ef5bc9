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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mesh.core.errors import CheckFailedError, ConfigError, CredentialsError, ManifestError
from mesh.core.names import check_name
from mesh.core.surface import install_hint
from mesh.project.config import read_upstreams, read_yaml

__all__ = [
    "IDENTIFIER_RE",
    "ConnectionSettings",
    "InterfaceGrantError",
    "MeshLayout",
    "ProjectSpec",
    "RenderedScript",
    "Session",
    "SnowflakeExecutionError",
    "SnowflakeSettingsError",
    "SqlTemplateError",
    "UnsafeIdentifierError",
    "connection_settings_from_env",
    "execute",
    "load_layout",
    "project_connection_settings",
    "render_setup",
    "render_template",
    "script_unit",
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


