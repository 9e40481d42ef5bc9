"""The infrastructure's rules about Snowflake schemas and grants: what each schema holds (from
the producers' manifests), the public nodes outside their public schemas, grants over a whole
schema or database, and the SQL setup scripts (parsed with sqlglot) held to what they may grant.
The Terraform tree's rules are in mesh.infra.rules."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesh.core.errors import ConfigError, MeshError
from mesh.core.surface import hint
from mesh.infra.rules import (
    ALLOWED_SQL_COMMANDS,
    FORBIDDEN_SQL,
    HCL_RULES,
    REPO_ROOT,
    SQL_DIR,
    Finding,
    HclTree,
    _as_list,
    _is_true,
    load_hcl,
    rule_no_password,
)
from mesh.registry.document import load_json
from mesh.warehouse.snowflake import (
    DEFAULT_LAYOUT,
    PRIVATE_SCHEMAS,
    MeshLayout,
    render_setup,
    unit_contexts,
)
from mesh.warehouse.snowflake_grants import GRANTABLE_TYPES, grant_statement_parts, node_access

# --- what a schema holds -------------------------------------------------------------------------


@dataclass(frozen=True)
class HeldNode:
    """A model, seed or snapshot a producer builds into a schema."""

    project: str
    unique_id: str
    name: str
    access: str

    def __str__(self) -> str:
        return f"{self.name} ({self.access})"


@dataclass
class SchemaContents:
    """What each producer schema holds, read from the producers' dbt manifests.

    Keys are (DATABASE, SCHEMA) upper-cased; the database is the project's database in mesh.yml
    (a manifest built for the local DuckDB target names another one), the schema is the one dbt
    resolved for the node. `missing` maps a database to why its contents are unknown.
    """

    held: dict[tuple[str, str], list[HeldNode]] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)

    def non_public(self, database: str, schema: str | None) -> list[HeldNode] | None:
        """Non-public nodes in `database.schema` (every schema when None); None when unknown."""
        if database in self.missing:
            return None
        return sorted(
            (
                node
                for (db, sch), nodes in self.held.items()
                if db == database and (schema is None or sch == schema)
                for node in nodes
                if node.access != "public"
            ),
            key=lambda n: n.unique_id,
        )

    def why_unknown(self, database: str) -> str:
        return self.missing.get(database, f"no project of mesh.yml has the database {database}")


def manifest_path(project_root: Path, project_dir: str) -> Path:
    return project_root / project_dir / "target" / "manifest.json"


def schema_contents(layout: MeshLayout, project_root: Path = REPO_ROOT) -> SchemaContents:
    """Read each project's target/manifest.json (if any) and list what each schema holds."""

    contents = SchemaContents()
    for name, project in sorted(layout.projects.items()):
        path = manifest_path(project_root, project.project_dir)
        if not path.is_file():
            contents.missing[project.database] = (
                f"{project.project_dir}/target/manifest.json is missing: build or parse {name} "
                f"first ({hint('build', '--project', name)})"
            )
            continue
        try:
            manifest = load_json(path, f"{name} manifest")
            nodes = manifest.get("nodes")
            if not isinstance(nodes, dict):
                raise ConfigError(f"{name} manifest has no nodes")
        except MeshError as exc:
            contents.missing[project.database] = f"cannot read {name}'s manifest: {exc}"
            continue
        for unique_id, node in sorted(nodes.items()):
            if not isinstance(node, dict) or node.get("package_name") != name:
                continue
            if node.get("resource_type") not in GRANTABLE_TYPES:
                continue
            config = node.get("config") if isinstance(node.get("config"), dict) else {}
            if str((config or {}).get("materialized") or "").lower() == "ephemeral":
                continue
            schema = str(node.get("schema") or "").upper()
            key = (project.database, schema)
            contents.held.setdefault(key, []).append(
                HeldNode(name, unique_id, str(node.get("name")), node_access(node))
            )
    return contents


def rule_public_nodes_in_public_schemas(layout: MeshLayout, contents: SchemaContents) -> list[Finding]:
    """Every public node of a producer that names public schemas in mesh.yml is built in one of
    them: grants (`invoke snowflake.grants`, a publish) refuse any other relation, so a public
    model elsewhere could never be read by its consumers. A producer that names none keeps
    per-relation grants in any schema of its database."""
    findings = []
    for name, project in sorted(layout.projects.items()):
        schemas = project.grant_schemas
        if not schemas or project.database in contents.missing:
            continue
        for (database, schema), nodes in sorted(contents.held.items()):
            if database != project.database or schema in schemas:
                continue
            for node in nodes:
                if node.project == name and node.access == "public":
                    findings.append(
                        Finding(
                            "snowflake-public-schema",
                            f"mesh.yml snowflake.projects.{name}",
                            f"public {node.unique_id} is built in {schema}, outside {name}'s public "
                            f"schema(s) {', '.join(schemas)}: its consumers could never be granted "
                            f"it; add {schema} to public_schema or build it in a public schema",
                        )
                    )
    return findings


def _schema_wide_message(
    what: str, database: str, schema: str | None, contents: SchemaContents, grantee: str = ""
) -> str | None:
    """Why a SELECT over a whole schema (or database) is refused, or None when it is safe."""
    place = f"{database}.{schema}" if schema else f"every schema of {database}"
    head = f"{what} in {place}{f' to {grantee}' if grantee else ''}"
    exposed = contents.non_public(database, schema)
    fix = f"grant SELECT per published relation ({hint('snowflake.grants', '--project', 'P')})"
    if exposed is None:
        return f"{head}, and what it holds is unknown ({contents.why_unknown(database)}): {fix}"
    if exposed:
        names = ", ".join(str(n) for n in exposed)
        return f"{head} lets consumers read non-public {exposed[0].project} node(s) {names}: {fix}"
    return None


def _bulk_targets(value: Any) -> list[tuple[str, str, str]]:
    """(`ALL TABLES`, in_schema|in_database, text) of every bulk block under on_schema_object."""
    found: list[tuple[str, str, str]] = []
    for entry in _as_list(value):
        if not isinstance(entry, dict):
            continue
        for bulk in ("all", "future"):
            for block in _as_list(entry.get(bulk)):
                if not isinstance(block, dict):
                    continue
                kinds = str(block.get("object_type_plural") or "OBJECTS").upper()
                for scope in ("in_schema", "in_database"):
                    if block.get(scope):
                        found.append((f"{bulk.upper()} {kinds}", scope, str(block[scope])))
    return found


_HCL_PART = re.compile(r'\\?"?(\$\{[^}]*\}|[A-Za-z_][A-Za-z0-9_$]*)\\?"?')


def _hcl_names(text: str) -> list[str]:
    """The dot-separated parts of a Terraform schema or database reference."""
    return [m.group(1) for m in _HCL_PART.finditer(text)]


def _candidate_places(scope: str, text: str, layout: MeshLayout) -> list[tuple[str, str | None]]:
    """The (database, schema) pairs a Terraform reference can name, given mesh.yml (schema None:
    every schema of the database).

    A literal part is taken as written. Both parts variables is how the root module calls the
    consumer-grants module for each edge: a producer database with that producer's public schema.
    A variable database is any project's database; a variable schema alone, or a reference that
    cannot be read, is any schema: the rule errs towards refusing.
    """
    parts = _hcl_names(text)
    databases = sorted({p.database for p in layout.projects.values()})

    def is_var(part: str) -> bool:
        return part.startswith("${")

    if scope == "in_database":
        if len(parts) == 1 and not is_var(parts[0]):
            return [(parts[0].upper(), None)]
        return [(db, None) for db in databases]
    if len(parts) != 2:
        return [(db, None) for db in databases]
    database, schema = parts
    if is_var(database) and is_var(schema):
        return sorted(
            {(p.database, p.public_schema) for p in layout.projects.values() if p.public_schema}
        )
    if is_var(database):
        return [(db, schema.upper()) for db in databases]
    if is_var(schema):
        return [(database.upper(), None)]
    return [(database.upper(), schema.upper())]


def rule_snowflake_schema_wide(
    tree: HclTree, layout: MeshLayout, contents: SchemaContents
) -> list[Finding]:
    """No SELECT on ALL/FUTURE objects of a schema that holds a non-public model.

    `access:` must mean the same in the warehouse as in dbt: a consumer reads the relations the
    interface publishes and nothing else, so a grant over a whole schema is only acceptable on a
    schema that holds public nodes alone (per the producer's manifest).
    """
    findings = []
    for grant in tree.of_type("resource", "snowflake_grant_privileges_to_account_role"):
        privileges = {str(p).upper() for p in _as_list(grant.body.get("privileges"))}
        if "SELECT" not in privileges and not _is_true(grant.body.get("all_privileges")):
            continue
        for bulk, scope, text in _bulk_targets(grant.body.get("on_schema_object")):
            resolved = tree.resolve(grant, text)
            for database, schema in _candidate_places(scope, resolved, layout):
                message = _schema_wide_message(f"SELECT on {bulk}", database, schema, contents)
                if message:
                    findings.append(
                        Finding("snowflake-consumer-schema-wide", tree.where(grant), message)
                    )
    return findings


# --- SQL rules -----------------------------------------------------------------------------------


def _sql_statements(sql: str, where: str) -> tuple[list[str], list[Finding]]:
    """Split and parse a rendered script with sqlglot; return statement texts and parse failures."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError

    findings: list[Finding] = []
    logger = logging.getLogger("sqlglot")
    level = logger.level
    # Fallbacks to Command are expected for Snowflake DDL and checked below; keep the log quiet.
    logger.setLevel(logging.ERROR)
    try:
        expressions = sqlglot.parse(sql, read="snowflake", error_level=sqlglot.ErrorLevel.RAISE)
    except ParseError as exc:
        return [], [Finding("sql-parse", where, f"sqlglot cannot parse it: {exc}")]
    finally:
        logger.setLevel(level)
    statements = []
    for expression in expressions:
        if expression is None:
            continue
        if (
            isinstance(expression, exp.Command)
            and expression.name.upper() not in ALLOWED_SQL_COMMANDS
        ):
            findings.append(
                Finding("sql-parse", where, f"unexpected statement kind {expression.name}")
            )
        statements.append(expression.sql(dialect="snowflake", comments=False))
    return statements, findings


def check_sql(
    sql_dir: Path = SQL_DIR,
    layout: MeshLayout = DEFAULT_LAYOUT,
    contents: SchemaContents | None = None,
) -> list[Finding]:
    """Render every script, parse it, and hold consumer grants to read-only, public-only, and
    never SELECT over a whole schema that holds a non-public node."""
    findings: list[Finding] = []
    contents = contents if contents is not None else schema_contents(layout)
    try:
        scripts = render_setup(layout, sql_dir)
    except MeshError as exc:
        return [Finding("sql-render", sql_dir.name, str(exc))]
    edge_values = {label: values for label, values in unit_contexts("edge", layout)}
    for script in scripts:
        where = f"{sql_dir.name}/{script.name} ({script.unit})"
        if FORBIDDEN_SQL.search(script.sql):
            findings.append(
                Finding(
                    "sql-idempotent",
                    where,
                    "uses DROP/DELETE/TRUNCATE/REVOKE/OR REPLACE; setup only creates and grants",
                )
            )
        statements, parse_findings = _sql_statements(script.sql, where)
        findings.extend(parse_findings)
        for statement in statements:
            head = statement.split(None, 2)[:2]
            if head and head[0].upper() == "CREATE" and "IF NOT EXISTS" not in statement.upper():
                findings.append(
                    Finding(
                        "sql-idempotent", where, f"CREATE without IF NOT EXISTS: {statement[:60]}"
                    )
                )
        if script.unit in edge_values:
            findings.extend(_check_consumer_statements(statements, edge_values[script.unit], where))
        findings.extend(_check_schema_wide_statements(statements, contents, where))
    return findings


def _check_schema_wide_statements(
    statements: Sequence[str], contents: SchemaContents, where: str
) -> list[Finding]:
    findings = []
    for statement in statements:
        parts = grant_statement_parts(statement)
        if parts is None or "bulk" not in parts or parts["privilege"] != "SELECT":
            continue
        database = parts.get("bulk_database") or parts["schema_db"]
        schema = parts.get("bulk_schema")
        message = _schema_wide_message(
            f"SELECT on {parts['bulk']} {parts['bulk_kind']}",
            database,
            schema,
            contents,
            grantee=parts["role"],
        )
        if message:
            findings.append(Finding("sql-consumer-schema-wide", where, message))
    return findings


def _check_consumer_statements(
    statements: Sequence[str], values: Mapping[str, str], where: str
) -> list[Finding]:
    findings = []
    for statement in statements:
        normalized = " ".join(statement.split()).upper()
        if normalized.startswith("USE ROLE "):
            continue
        parts = grant_statement_parts(normalized)
        if parts is None:
            findings.append(
                Finding(
                    "sql-consumer-read-only",
                    where,
                    f"not a USAGE/SELECT grant: {normalized[:80]}",
                )
            )
            continue
        if parts["role"] != values["consumer_role"]:
            findings.append(
                Finding(
                    "sql-consumer-read-only", where, f"grants to {parts['role']}, not the consumer"
                )
            )
        database = parts.get("database") or parts["schema_db"]
        if database != values["producer_database"]:
            findings.append(
                Finding("sql-consumer-public-only", where, f"reaches database {database}")
            )
        schema = parts["schema"]
        if schema and (schema in PRIVATE_SCHEMAS or schema != values["producer_public_schema"]):
            findings.append(
                Finding(
                    "sql-consumer-public-only",
                    where,
                    f"reaches schema {schema}; only {values['producer_public_schema']} is public",
                )
            )
    return findings


def check_hcl(
    root: Path,
    layout: MeshLayout = DEFAULT_LAYOUT,
    contents: SchemaContents | None = None,
) -> list[Finding]:
    """All structural rules on the Terraform tree under `root`."""
    tree = load_hcl(root)
    findings = rule_no_password(root)
    for rule in HCL_RULES:
        findings.extend(rule(tree))
    contents = contents if contents is not None else schema_contents(layout)
    findings.extend(rule_snowflake_schema_wide(tree, layout, contents))
    findings.extend(rule_public_nodes_in_public_schemas(layout, contents))
    return findings
