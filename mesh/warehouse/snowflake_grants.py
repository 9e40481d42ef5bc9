"""Grants from the interface: the relations a producer published as public (checked against its own
manifest and public schemas), the GRANT and REVOKE statements that give consumer roles exactly
those, and their sync after a publish."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesh.core.errors import ConfigError
from mesh.project.artifacts import public_node_ids
from mesh.warehouse.snowflake import (
    IDENTIFIER_RE,
    PRIVATE_SCHEMAS,
    ConnectionSettings,
    InterfaceGrantError,
    MeshLayout,
    Session,
    UnsafeIdentifierError,
    _Connection,
    _default_connect,
    check_identifier,
    load_layout,
    project_connection_settings,
)

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
