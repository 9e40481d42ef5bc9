"""`access:` means the same in the warehouse as in dbt: no consumer role can read customer_scoring.

An independent reading of everything that grants consumers anything, rendered as it would run:
the SQL scripts (parsed with sqlglot), the per-relation grants `invoke snowflake.grants` derives
from dbt_up's interface (extracted from a real `dbt parse` manifest), and the Terraform consumer
module (parsed with python-hcl2, evaluated for each edge of mesh.yml). A role can read a relation
when it holds SELECT on it, directly or through ALL/FUTURE objects of its schema or database, and
USAGE on its database and schema. The weakened fixtures prove the reading does find a leak.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import sqlglot
from sqlglot import exp

from mesh.infra import rules as infra_rules
from mesh.project.artifacts import extract_interface
from mesh.warehouse import snowflake as sf
from mesh.warehouse import snowflake_grants as sf_grants
from tests.parsed_template import load_manifest, parsed_template

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "infra"
LAYOUT = sf.load_layout(ROOT) if (ROOT / "mesh.yml").is_file() else sf.DEFAULT_LAYOUT
PRODUCER_DB = LAYOUT.projects["dbt_up"].database
CONSUMER_ROLES = {p.role for p in LAYOUT.consumers_of("dbt_up")}
BULK = re.compile(
    r"SELECT ON (?P<bulk>ALL|FUTURE) (?P<kinds>[A-Z ]+?) IN "
    r"(?:SCHEMA (?P<db>\w+)\.(?P<schema>\w+)|DATABASE (?P<whole>\w+)) TO ROLE (?P<role>\w+)",
    re.IGNORECASE,
)

Relation = tuple[str, str, str]


class Access:
    """What each role holds, and what that lets it read given what each schema holds."""

    def __init__(self, held: dict[tuple[str, str], list[str]]) -> None:
        self.held = held  # (DB, SCHEMA) -> relation names, from the producer's manifest
        self.usage: dict[str, set[tuple[str, ...]]] = defaultdict(set)
        self.select: dict[str, set[Relation]] = defaultdict(set)

    def grant_usage(self, role: str, *place: str) -> None:
        self.usage[role.upper()].add(tuple(p.upper() for p in place))

    def grant_select(self, role: str, database: str, schema: str | None, name: str | None) -> None:
        """SELECT on one relation, or (name None) on every one of a schema (schema None: database)."""
        for (db, sch), names in self.held.items():
            if db != database.upper() or (schema and sch != schema.upper()):
                continue
            for relation in names:
                if name is None or relation == name.upper():
                    self.select[role.upper()].add((db, sch, relation))
        if name is not None and schema is not None:
            self.select[role.upper()].add((database.upper(), schema.upper(), name.upper()))

    def readable(self, role: str) -> set[Relation]:
        usage = self.usage[role]
        return {r for r in self.select[role] if (r[0],) in usage and (r[0], r[1]) in usage}

    def readers_of(self, name: str) -> set[str]:
        return {role for role in set(self.select) | set(self.usage)
                if any(r[2] == name.upper() for r in self.readable(role))}  # fmt: skip


def read_sql(access: Access, sql: str) -> None:
    for expression in sqlglot.parse(sql, read="snowflake"):
        if isinstance(expression, exp.Grant):
            privileges = {p.this.name.upper() for p in expression.args["privileges"]}
            kind = str(expression.args.get("kind") or "").upper()
            securable = expression.args["securable"]
            for principal in expression.args["principals"]:
                role = principal.this.name
                if "USAGE" in privileges and kind == "DATABASE":
                    access.grant_usage(role, securable.name)
                elif "USAGE" in privileges and kind == "SCHEMA":
                    access.grant_usage(role, securable.args["db"].name, securable.name)
                elif "SELECT" in privileges:
                    access.grant_select(
                        role, securable.args["catalog"].name, securable.args["db"].name,
                        securable.name,
                    )  # fmt: skip
        elif isinstance(expression, exp.Command) and expression.name.upper() == "GRANT":
            text = expression.args.get("expression")
            match = BULK.search(text.name if isinstance(text, exp.Expression) else str(text))
            if match:
                database = match["db"] or match["whole"]
                access.grant_select(match["role"], database, match["schema"], None)


def read_terraform(access: Access, tree_root: Path) -> None:
    """Evaluate the consumer-grants module for each (consumer, producer) edge of mesh.yml."""
    tree = infra_rules.load_hcl(tree_root)
    module = tree_root / "modules" / "snowflake_consumer_grants"
    for consumer, producer in LAYOUT.edges():
        values = {
            "var.consumer_role_name": consumer.role,
            "var.producer_database_name": producer.database,
            "var.producer_public_schema": producer.public_schema or "",
        }

        def value(text: str, grant: infra_rules.Block, values: dict[str, str] = values) -> str:
            text = tree.resolve(grant, str(text))
            for name, replacement in values.items():
                text = text.replace("${" + name + "}", replacement)
            return text.replace('"', "")

        for grant in tree.of_type("resource", "snowflake_grant_privileges_to_account_role"):
            if grant.file.parent != module:
                continue
            role = value(grant.body["account_role_name"], grant)
            privileges = set(grant.body.get("privileges", []))
            for target in grant.body.get("on_account_object", []):
                if "USAGE" in privileges and target["object_type"] == "DATABASE":
                    access.grant_usage(role, value(target["object_name"], grant))
            for target in grant.body.get("on_schema", []):
                if "USAGE" in privileges:
                    access.grant_usage(role, *value(target["schema_name"], grant).split("."))
            for target in grant.body.get("on_schema_object", []):
                if "SELECT" not in privileges:
                    continue
                if target.get("object_name"):
                    access.grant_select(role, *value(target["object_name"], grant).split("."))
                for bulk in ("all", "future"):
                    for block in target.get(bulk, []):
                        if block.get("in_schema"):
                            db, schema = value(block["in_schema"], grant).split(".")
                            access.grant_select(role, db, schema, None)
                        if block.get("in_database"):
                            access.grant_select(
                                role, value(block["in_database"], grant), None, None
                            )


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return load_manifest(parsed_template(tmp_path_factory))


@pytest.fixture(scope="module")
def held(manifest: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    """What each dbt_up schema holds (every model, seed, snapshot), in the prod database."""
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    for node in manifest["nodes"].values():
        if node["resource_type"] in sf_grants.GRANTABLE_TYPES and node["package_name"] == "dbt_up":
            found[(PRODUCER_DB, node["schema"].upper())].append(node["alias"].upper())
    assert "CUSTOMER_SCORING" in found[(PRODUCER_DB, "MARTS")]
    return dict(found)


@pytest.fixture(scope="module")
def interface(manifest: dict[str, Any]) -> dict[str, Any]:
    """dbt_up's interface as a prod publish names it (database DBT_UP_PROD)."""
    nodes, _groups = extract_interface(manifest)
    nodes = copy.deepcopy(nodes)
    for node in nodes.values():
        node["database"] = PRODUCER_DB
    assert "model.dbt_up.customer_scoring" not in nodes
    return {"metadata": {"project_name": "dbt_up"}, "nodes": nodes}


def _sql(sql_dir: Path, interface: dict[str, Any]) -> list[str]:
    scripts = [s.sql for s in sf.render_setup(LAYOUT, sql_dir)]
    grants = sf_grants.sync_grants(LAYOUT, "dbt_up", None, interface, dry_run=True)
    return [*scripts, ";\n".join(grants)]


def test_no_consumer_role_can_read_customer_scoring(
    held: dict[tuple[str, str], list[str]], interface: dict[str, Any]
) -> None:
    access = Access(held)
    for sql in _sql(ROOT / "snowflake_sql", interface):
        read_sql(access, sql)
    read_terraform(access, ROOT / "infra")
    assert access.readers_of("customer_scoring") == set()
    for role in CONSUMER_ROLES:
        readable = {r[2] for r in access.readable(role)}
        # Exactly the published relations: the five public models, nothing else.
        assert readable == {
            sf.check_identifier("alias", n["alias"]) for n in interface["nodes"].values()
        }
        assert "PUBLIC_ORDERS" in readable and "PUBLIC_DAILY_REVENUE" in readable


def test_terraform_alone_grants_no_select(held: dict[tuple[str, str], list[str]]) -> None:
    access = Access(held)
    read_terraform(access, ROOT / "infra")
    assert set(access.usage) == CONSUMER_ROLES  # the way in: USAGE on database and schema
    assert not any(access.select.values())


def _weakened(tmp_path: Path, name: str) -> Path:
    spec = json.loads((FIXTURES / f"{name}.json").read_text())
    source = ROOT / spec.get("tree", "infra")
    tree = tmp_path / source.name
    shutil.copytree(source, tree, ignore=shutil.ignore_patterns(".terraform*"))
    target = tree / spec["file"]
    target.write_text(target.read_text().replace(spec["old"], spec["new"]))
    return tree


def test_the_reading_finds_a_schema_wide_grant_in_terraform(
    tmp_path: Path, held: dict[tuple[str, str], list[str]]
) -> None:
    access = Access(held)
    read_terraform(access, _weakened(tmp_path, "consumer_select_schema_wide"))
    assert access.readers_of("customer_scoring") == CONSUMER_ROLES


def test_the_reading_finds_a_schema_wide_grant_in_sql(
    tmp_path: Path, held: dict[tuple[str, str], list[str]], interface: dict[str, Any]
) -> None:
    access = Access(held)
    for sql in _sql(_weakened(tmp_path, "sql_select_schema_wide"), interface):
        read_sql(access, sql)
    assert access.readers_of("customer_scoring") == CONSUMER_ROLES


def test_select_without_usage_reads_nothing(held: dict[tuple[str, str], list[str]]) -> None:
    access = Access(held)
    read_sql(access, f"GRANT SELECT ON TABLE {PRODUCER_DB}.MARTS.PUBLIC_ORDERS TO ROLE R")
    assert access.readable("R") == set()
    read_sql(access, f"GRANT USAGE ON DATABASE {PRODUCER_DB} TO ROLE R;"
                     f"GRANT USAGE ON SCHEMA {PRODUCER_DB}.MARTS TO ROLE R")  # fmt: skip
    assert access.readable("R") == {(PRODUCER_DB, "MARTS", "PUBLIC_ORDERS")}
