"""Write-audit-publish for a project's data on Snowflake: build a zero-copy clone, swap it in.

The steps, each a function the orchestration calls in turn (this module runs no dbt):

    prepare   CREATE DATABASE <DB>__AUDIT CLONE <DB>
    build     dbt build with `build_env(plan)`: <PROJECT>_SNOWFLAKE_DATABASE=<DB>__AUDIT, which
              profiles/profiles.yml reads, so every relation lands in the clone
    promote   `check_audit_manifest`; carry the database's own grants over to the clone; grant the
              consumers exactly the relations of the new interface on the clone (and revoke what the
              previous one published); refuse if production changed since the clone; then
              ALTER DATABASE <DB> SWAP WITH <DB>__AUDIT; DROP DATABASE <DB>__AUDIT
    discard   DROP DATABASE IF EXISTS <DB>__AUDIT (a failed build or test)

The swap is one statement: readers see the old database or the new one, never a mix. Grants are
applied to the clone before the swap, so the database is readable by the consumers the moment it
becomes production. dbt renders fully qualified names into view definitions; a view built in the
clone would go on naming <DB>__AUDIT after the swap, so promote refuses a build whose views name the
audit database (the template ships `macros/mesh_refs.sql`, which renders a project's references to
its own relations without the database on Snowflake). The manifest of the audit build names the
audit database: `rewrite_manifest` / `rewrite_interface` give the production names to publish.

Every statement is built from identifiers checked by `check_identifier`, parsed with sqlglot's
Snowflake dialect and held to what WAP may do (`check_statements`) before it runs.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mesh.core.errors import CheckFailedError, ConfigError
from mesh.core.surface import hint
from mesh.project.artifacts import extract_interface
from mesh.registry.document import content_sha256, load_json
from mesh.warehouse.snowflake import (
    IDENTIFIER_RE,
    ConnectionSettings,
    MeshLayout,
    Session,
    _Connection,
    _default_connect,
    check_identifier,
    load_layout,
    mesh_project_settings,
)
from mesh.warehouse.snowflake_grants import grant_changes

__all__ = [
    "AUDIT_SUFFIX",
    "WapPlan",
    "WapRefusedError",
    "WapStateError",
    "build_env",
    "carried_grants",
    "check_audit_manifest",
    "check_statements",
    "consumer_grant_statements",
    "discard",
    "discard_statements",
    "plan_for",
    "prepare",
    "prepare_statements",
    "production_changes",
    "promote",
    "promote_statements",
    "refuse_other_databases",
    "rewrite_interface",
    "rewrite_manifest",
    "rewrite_manifest_file",
    "swap_statements",
]

AUDIT_SUFFIX = "__AUDIT"
# Materializations whose Snowflake object keeps the SQL it was created with.
STORED_SQL = frozenset({"view", "materialized_view", "dynamic_table"})
BUILT_TYPES = frozenset({"model", "seed", "snapshot"})
# The manifest sections whose entries carry a database.
_SECTIONS = ("nodes", "sources", "snapshots", "seeds", "unit_tests")


class WapRefusedError(CheckFailedError):
    """The audit build cannot be promoted: nothing was swapped, production is unchanged."""


class WapStateError(CheckFailedError):
    """The audit database is not where this step expects it (missing, or left by another run)."""


@dataclass(frozen=True)
class WapPlan:
    """Names one project's write-audit-publish works with, all checked identifiers."""

    project: str
    database: str
    audit_database: str
    role: str
    public_schema: str | None
    consumer_roles: tuple[str, ...]
    public_schemas: tuple[str, ...] = ()  # every schema consumers may be granted relations in

    @property
    def database_env_var(self) -> str:
        """The variable profiles/profiles.yml reads the project's database from."""
        return f"{self.project.upper()}_SNOWFLAKE_DATABASE"


def plan_for(
    mesh: Any,
    project: str,
    *,
    env: Mapping[str, str] | None = None,
    suffix: str = AUDIT_SUFFIX,
) -> WapPlan:
    """The plan for `project` of a `mesh.project.config.Mesh` or `MeshLayout`.

    The production database is what the profile would build into: <PROJECT>_SNOWFLAKE_DATABASE
    when set, else the project's database in mesh.yml.
    """
    layout = mesh if isinstance(mesh, MeshLayout) else load_layout(Path(mesh.root))
    spec = layout.projects.get(project)
    if spec is None:
        raise ConfigError(f"project {project!r} is not in mesh.yml")
    env = os.environ if env is None else env
    variable = f"{project.upper()}_SNOWFLAKE_DATABASE"
    database = check_identifier(variable, env.get(variable, "").strip() or spec.database)
    audit = check_identifier("audit database", database + suffix)
    if database.endswith(suffix):
        raise ConfigError(
            f"{variable} is {database}, an audit copy: unset it (it is set for the audit build "
            "only, by build_env)"
        )
    return WapPlan(
        project=project,
        database=database,
        audit_database=audit,
        role=spec.role,
        public_schema=spec.public_schema,
        consumer_roles=tuple(sorted({p.role for p in layout.consumers_of(project)})),
        public_schemas=spec.grant_schemas,
    )


def refuse_other_databases(plan: WapPlan, configured: Iterable[str]) -> None:
    """Refuse, before anything is built, a project whose configs name databases besides its own
    (`+database`, a model's `database` config): write-audit-publish clones and swaps one database
    per project, so dbt would write those live, unaudited. Configured names are literal (Jinja
    values are not followed); what slips through is caught after the build by
    `check_audit_manifest`, before anything is swapped or published."""
    others = sorted(
        {str(name).upper() for name in configured} - {plan.database, plan.audit_database}
    )
    if others:
        raise ConfigError(
            f"{plan.project} writes database{'s' if len(others) > 1 else ''} {', '.join(others)} "
            f"besides {plan.database} (its `database` configs): write-audit-publish on Snowflake "
            "clones and swaps one database per project, so dbt would write "
            f"{'them' if len(others) > 1 else 'it'} live and unaudited; nothing was built. Keep the "
            f"project's layers in schemas of {plan.database}, or set `wap: false` on this target"
        )


def build_env(plan: WapPlan) -> dict[str, str]:
    """The environment overrides that make the project's dbt build write into the audit copy."""
    return {plan.database_env_var: plan.audit_database}


# --- statements ----------------------------------------------------------------------------------


def prepare_statements(plan: WapPlan) -> list[str]:
    """Zero-copy clone of the production database (no OR REPLACE, no IF NOT EXISTS: a clone left
    by another run must be looked at, not silently replaced)."""
    return [f"CREATE DATABASE {plan.audit_database} CLONE {plan.database}"]


def discard_statements(plan: WapPlan) -> list[str]:
    return [f"DROP DATABASE IF EXISTS {plan.audit_database}"]


def swap_statements(plan: WapPlan) -> list[str]:
    """The atomic swap, then the previous production database (now named <DB>__AUDIT) dropped:
    it stays in Time Travel for the database's DATA_RETENTION_TIME_IN_DAYS (UNDROP, then swap
    again, rolls back), then fail-safe."""
    return [
        f"ALTER DATABASE {plan.database} SWAP WITH {plan.audit_database}",
        f"DROP DATABASE {plan.audit_database}",
    ]


def consumer_grant_statements(
    plan: WapPlan,
    previous_interface: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
    new_interface: Mapping[str, Any],
) -> list[str]:
    """The consumers' grants, rendered on the audit copy so they hold the moment it is swapped in.

    USAGE on the database (a clone never inherits the grants on the cloned container itself) and
    on the public schema, as Terraform and 05_consumer_grants.sql give it; then SELECT on exactly
    the relations of `new_interface` (production names, as published) and REVOKE on those
    `previous_interface` published and `new_interface` does not.
    """
    if not plan.consumer_roles:
        return []
    base = []
    for role in plan.consumer_roles:
        base.append(f"GRANT USAGE ON DATABASE {plan.audit_database} TO ROLE {role}")
        if plan.public_schema:
            base.append(
                f"GRANT USAGE ON SCHEMA {plan.audit_database}.{plan.public_schema} TO ROLE {role}"
            )
    changes = grant_changes(
        previous_interface,
        new_interface,
        plan.consumer_roles,
        producer_database=plan.database,
        public_schemas=plan.public_schemas,
        database=plan.audit_database,
    )
    return list(dict.fromkeys([*changes.revokes, *base, *changes.grants]))


_PRIVILEGE_RE = re.compile(r"[A-Z][A-Z _]*")


def carried_grants(
    plan: WapPlan, show_grants: Iterable[Mapping[str, Any]]
) -> tuple[list[str], list[str]]:
    """Statements that give the audit copy the grants production holds on the database itself.

    `show_grants` are the rows of `SHOW GRANTS ON DATABASE <DB>` (keys: privilege, granted_to,
    grantee_name, grant_option). OWNERSHIP is left out (the role that cloned owns the clone).
    Returns (statements, shares): a database granted to a share must not be swapped (the share
    follows the object, and the object is dropped), so `promote` refuses when shares is not empty.
    Grants to anything but a role or share (database roles) are cloned with the database.
    """
    statements: list[str] = []
    shares: list[str] = []
    for row in show_grants:
        privilege = " ".join(str(row.get("privilege", "")).upper().split())
        granted_to = str(row.get("granted_to", "")).upper()
        grantee = str(row.get("grantee_name", ""))
        if granted_to == "SHARE":
            shares.append(grantee)
            continue
        if granted_to != "ROLE" or privilege == "OWNERSHIP":
            continue
        if not _PRIVILEGE_RE.fullmatch(privilege):
            raise WapRefusedError(
                f"SHOW GRANTS ON DATABASE {plan.database} lists privilege {privilege!r}, which "
                "cannot be carried over: grant it again by hand after the swap"
            )
        role = grantee.strip('"')
        if not IDENTIFIER_RE.fullmatch(role):
            raise WapRefusedError(
                f"{plan.database} grants {privilege} to role {grantee!r}, whose name needs "
                "quoting: the mesh cannot carry that grant over; grant it again after the swap, "
                "or set `wap: false`"
            )
        option = " WITH GRANT OPTION" if str(row.get("grant_option", "")).lower() == "true" else ""
        statements.append(
            f"GRANT {privilege} ON DATABASE {plan.audit_database} TO ROLE {role}{option}"
        )
    return list(dict.fromkeys(statements)), sorted(set(shares))


def promote_statements(
    plan: WapPlan,
    previous_interface: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
    new_interface: Mapping[str, Any],
    carried: Sequence[str] = (),
) -> list[str]:
    """Grants on the audit copy, then the swap and the drop of the previous production database."""
    grants = consumer_grant_statements(plan, previous_interface, new_interface)
    return [*dict.fromkeys([*carried, *grants]), *swap_statements(plan)]


def check_statements(plan: WapPlan, statements: Sequence[str]) -> None:
    """Parse every statement with sqlglot (Snowflake) and refuse anything WAP should not run.

    Allowed: the clone into the audit database, the swap of exactly the two databases, the drop
    of the audit database, GRANT on the audit database and its objects (USAGE, SELECT, or a
    privilege carried over on the database itself), REVOKE SELECT there, and the queries promote
    reads with.
    """
    import sqlglot
    from sqlglot.errors import ParseError

    audit, prod = re.escape(plan.audit_database), re.escape(plan.database)
    allowed = [
        re.compile(rf"CREATE DATABASE {audit} CLONE {prod}"),
        re.compile(rf"ALTER DATABASE {prod} SWAP WITH {audit}"),
        re.compile(rf"DROP DATABASE (?:IF EXISTS )?{audit}"),
        re.compile(
            rf"GRANT (?:USAGE|SELECT) ON (?:DATABASE {audit}|SCHEMA {audit}\.\w+"
            rf"|(?:TABLE|VIEW|DYNAMIC TABLE) {audit}\.\w+\.[\w$]+) TO ROLE [\w$]+"
        ),
        re.compile(
            rf"GRANT [A-Z][A-Z ]* ON DATABASE {audit} TO ROLE [\w$]+(?: WITH GRANT OPTION)?"
        ),
        re.compile(
            rf"REVOKE SELECT ON (?:TABLE|VIEW|DYNAMIC TABLE) {audit}\.\w+\.[\w$]+"
            r" FROM ROLE [\w$]+"
        ),
    ]
    for statement in statements:
        try:
            parsed = [e for e in sqlglot.parse(statement, read="snowflake") if e is not None]
        except ParseError as exc:
            raise WapRefusedError(f"sqlglot cannot parse `{statement}`: {exc}") from exc
        if len(parsed) != 1:
            raise WapRefusedError(f"`{statement}` is not exactly one statement")
        if not any(p.fullmatch(statement) for p in allowed):
            raise WapRefusedError(f"write-audit-publish does not run `{statement}`")
        if " OWNERSHIP " in f" {statement} " or statement.startswith("GRANT ALL"):
            raise WapRefusedError(f"write-audit-publish does not run `{statement}`")


# --- the audit build's manifest -------------------------------------------------------------------


def _names_database(sql: str, database: str) -> list[str]:
    """References in `sql` whose database part is `database` (quoted or not, any case)."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import SqlglotError

    try:
        tables = [
            t
            for e in sqlglot.parse(sql, read="snowflake")
            if e is not None
            for t in e.find_all(exp.Table)
        ]
        return sorted(
            {
                ".".join(p.upper() for p in (t.catalog, t.db, t.name) if p)
                for t in tables
                if t.catalog and t.catalog.upper() == database
            }
        )
    except SqlglotError:
        pattern = re.compile(rf'(?<![\w$"])"?{re.escape(database)}"?\s*\.', re.IGNORECASE)
        return [database] if pattern.search(sql) else []


def _materialized(node: Mapping[str, Any]) -> str:
    config = node.get("config") if isinstance(node.get("config"), dict) else {}
    return str((config or {}).get("materialized") or "").lower()


def check_audit_manifest(plan: WapPlan, manifest: Mapping[str, Any]) -> None:
    """Refuse to promote an audit build that the swap would break; raise WapRefusedError.

    - every relation the project built must be in the audit database (a model configured with
      another `database` was written there directly, unaudited, and the swap cannot move it);
    - no view (materialized view, dynamic table) created by this build may name the audit
      database: Snowflake keeps a view's SQL as written, so after the swap it would read the
      dropped audit copy, or during the next build an unaudited one. Ship macros/mesh_refs.sql
      (references to the project's own relations without the database) or set `wap: false`.
    """
    nodes = manifest.get("nodes")
    if not isinstance(nodes, dict):
        raise WapRefusedError("the audit build's manifest has no nodes: run the build first")
    problems = []
    for unique_id, node in sorted(nodes.items()):
        if not isinstance(node, dict) or node.get("package_name") != plan.project:
            continue
        if node.get("resource_type") not in BUILT_TYPES or _materialized(node) == "ephemeral":
            continue
        database = str(node.get("database") or "").upper()
        if database != plan.audit_database:
            problems.append(
                f"{unique_id} builds into {database or 'no database'}, outside the audit copy "
                f"{plan.audit_database} (was the build run with build_env? does it set `database`?)"
            )
            continue
        code = node.get("compiled_code")
        if _materialized(node) in STORED_SQL and isinstance(code, str) and code:
            named = _names_database(code, plan.audit_database)
            if named:
                problems.append(
                    f"{_materialized(node).replace('_', ' ')} {unique_id} reads {named[0]}: after "
                    f"the swap it would still read {plan.audit_database}; render the project's own "
                    "references without the database (macros/mesh_refs.sql, see README, "
                    "Production) or set `wap: false`"
                )
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise WapRefusedError(f"cannot promote {plan.project}: {problems[0]}{more}")


_RELATION_HEAD = r'^(?P<q>"?){name}(?P=q)\.'


def _rewrite_entry(entry: dict[str, Any], plan: WapPlan) -> None:
    database = entry.get("database")
    if isinstance(database, str) and database.upper() == plan.audit_database:
        entry["database"] = plan.database
    relation = entry.get("relation_name")
    if isinstance(relation, str):
        head = re.compile(_RELATION_HEAD.format(name=re.escape(plan.audit_database)), re.IGNORECASE)
        entry["relation_name"] = head.sub(
            lambda m: f"{m.group('q')}{plan.database}{m.group('q')}.", relation, count=1
        )


def rewrite_manifest(manifest: Mapping[str, Any], plan: WapPlan) -> dict[str, Any]:
    """A copy of the audit build's manifest naming the production database instead of the audit
    copy (`database` and `relation_name` of every node and source), as a direct build would. The
    interface extracted from it is what consumers read after the swap; as state it defers to
    production."""
    doc = copy.deepcopy(dict(manifest))
    for section in _SECTIONS:
        entries = doc.get(section)
        if isinstance(entries, dict):
            for entry in entries.values():
                if isinstance(entry, dict):
                    _rewrite_entry(entry, plan)
    return doc


def rewrite_interface(interface: Mapping[str, Any], plan: WapPlan) -> dict[str, Any]:
    """An interface extracted from the audit build, with production names; its
    metadata.mesh.content_sha256 (when present) is recomputed over the rewritten nodes."""

    doc = rewrite_manifest(interface, plan)
    mesh_meta = (doc.get("metadata") or {}).get("mesh")
    if isinstance(mesh_meta, dict) and "content_sha256" in mesh_meta:
        mesh_meta["content_sha256"] = content_sha256(doc["nodes"], doc.get("groups") or {})
    return doc


def rewrite_manifest_file(path: Path, plan: WapPlan) -> None:
    """Rewrite target/manifest.json in place (atomically) with production names."""
    import orjson


    doc = rewrite_manifest(load_json(path, "manifest"), plan)
    tmp = path.with_name(f".{path.name}.wap-tmp")
    tmp.write_bytes(orjson.dumps(doc))
    os.replace(tmp, path)


# --- running the steps ---------------------------------------------------------------------------


def _settings(mesh: Any, plan: WapPlan, settings: ConnectionSettings | None) -> ConnectionSettings:
    if settings is not None:
        return settings
    return mesh_project_settings(mesh, plan.project, "dbt-mesh-wap")


def _databases(session: Session, plan: WapPlan) -> dict[str, Any]:
    """{name: created_on} of the production and audit databases that exist (and the role sees)."""
    rows = session.records(f"SHOW DATABASES LIKE '{plan.database}%'")
    wanted = {plan.database, plan.audit_database}
    found = {str(r.get("name", "")).upper(): r.get("created_on") for r in rows}
    found = {name: created for name, created in found.items() if name in wanted}
    if plan.database not in found:
        raise WapStateError(
            f"{plan.database} does not exist (or {plan.role} cannot see it): create it first "
            f"({hint('infra.apply')} or {hint('snowflake.setup')})"
        )
    return found


def _run_checked(session: Session, plan: WapPlan, statements: Sequence[str]) -> None:
    check_statements(plan, statements)
    for statement in statements:
        session.run(statement, missing_ok=statement.startswith("REVOKE "))


def prepare(
    mesh: Any,
    plan: WapPlan,
    *,
    settings: ConnectionSettings | None = None,
    connect: Callable[..., _Connection] = _default_connect,
) -> list[str]:
    """Clone production into the audit database; return the statements run.

    Refuses (WapStateError) when production does not exist, or when the audit database exists
    already: another build of the project is running, or one stopped before promote or discard.
    """
    statements = prepare_statements(plan)
    with Session(_settings(mesh, plan, settings), connect=connect, label=_label(plan)) as session:
        found = _databases(session, plan)
        if plan.audit_database in found:
            raise WapStateError(
                f"{plan.audit_database} exists already: another build of {plan.project} is "
                "running, or one stopped before promote or discard; when none is running, "
                f"discard it ({hint('snowflake.wap', '--project', plan.project, '--step', 'discard')})"
            )
        _run_checked(session, plan, statements)
    return statements


def _label(plan: WapPlan) -> str:
    return f"write-audit-publish of {plan.project}"


def production_changes(session: Session, plan: WapPlan, since: datetime) -> list[str]:
    """Tables of production altered after `since` (the clone): writes the swap would lose."""
    moment = since.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    rows = session.run(
        f"SELECT TABLE_SCHEMA, TABLE_NAME FROM {plan.database}.INFORMATION_SCHEMA.TABLES "
        "WHERE TABLE_SCHEMA <> 'INFORMATION_SCHEMA' "
        f"AND LAST_ALTERED > TO_TIMESTAMP_TZ('{moment} +00:00', 'YYYY-MM-DD HH24:MI:SS.FF TZH:TZM') "
        "ORDER BY 1, 2"
    )
    return [f"{schema}.{name}" for schema, name in rows or []]


def _show_grants(session: Session, plan: WapPlan) -> list[dict[str, Any]]:
    return session.records(f"SHOW GRANTS ON DATABASE {plan.database}")


def promote(
    mesh: Any,
    plan: WapPlan,
    manifest: Mapping[str, Any],
    *,
    previous_interface: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    new_interface: Mapping[str, Any] | None = None,
    allow_production_changes: bool = False,
    settings: ConnectionSettings | None = None,
    connect: Callable[..., _Connection] = _default_connect,
) -> list[str]:
    """Swap the audited copy in; return the statements run.

    `manifest` is the audit build's target/manifest.json (as dbt wrote it, naming the audit copy);
    `new_interface` defaults to the interface extracted from it with production names, and
    `previous_interface` is what was published before (its relations no longer published lose
    SELECT). Refuses, before anything changes, when `check_audit_manifest` does; when the audit
    copy is missing or older than production (a swap already happened: discard it); when the
    database is granted to a share; and when a table of production changed after the clone
    (writes that the swap would lose; `allow_production_changes` skips this check).
    """

    check_audit_manifest(plan, manifest)
    if new_interface is None:
        nodes, _groups = extract_interface(rewrite_manifest(manifest, plan))
        new_interface = {"nodes": nodes}
    with Session(_settings(mesh, plan, settings), connect=connect, label=_label(plan)) as session:
        found = _databases(session, plan)
        if plan.audit_database not in found:
            raise WapStateError(
                f"{plan.audit_database} does not exist: run prepare and the build before promote"
            )
        created, audit_created = found.get(plan.database), found[plan.audit_database]
        if created is not None and audit_created is not None and audit_created < created:
            raise WapStateError(
                f"{plan.audit_database} is older than {plan.database}: it is the previous "
                "production database a promote swapped out and did not drop; discard it"
            )
        carried, shares = carried_grants(plan, _show_grants(session, plan))
        if shares:
            raise WapRefusedError(
                f"{plan.database} is granted to share(s) {', '.join(shares)}: a swap would leave "
                "them on the dropped database; share from another database or set `wap: false`"
            )
        if not allow_production_changes and isinstance(audit_created, datetime):
            changed = production_changes(session, plan, audit_created)
            if changed:
                raise WapRefusedError(
                    f"{len(changed)} table(s) of {plan.database} changed after the audit copy was "
                    f"cloned ({', '.join(changed[:3])}): the swap would lose those writes; load "
                    "sources into another database, then discard and build again"
                )
        statements = promote_statements(plan, previous_interface, new_interface, carried)
        _run_checked(session, plan, statements)
    return statements


def discard(
    mesh: Any,
    plan: WapPlan,
    *,
    settings: ConnectionSettings | None = None,
    connect: Callable[..., _Connection] = _default_connect,
) -> list[str]:
    """Drop the audit copy (the build or its tests failed); production is untouched."""
    statements = discard_statements(plan)
    with Session(_settings(mesh, plan, settings), connect=connect, label=_label(plan)) as session:
        _run_checked(session, plan, statements)
    return statements
