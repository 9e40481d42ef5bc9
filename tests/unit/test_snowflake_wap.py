"""mesh/warehouse/snowflake_wap.py without a server: names, statements (parsed with sqlglot), the checks on
the audit build's manifest, carrying grants over, and the rewrite to production names.

The statements run against fakesnow's server in tests/e2e/test_snowflake_wap_rehearsal.py.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
import sqlglot

from mesh.core.errors import CheckFailedError, ConfigError
from mesh.project.artifacts import build_interface
from mesh.registry.document import content_sha256, dump_interface, load_interface
from mesh.warehouse import snowflake as sf
from mesh.warehouse import snowflake_wap as wap
from tests import factories

LAYOUT = sf.DEFAULT_LAYOUT
AUDIT = "DBT_UP_PROD__AUDIT"


@pytest.fixture
def plan() -> wap.WapPlan:
    return wap.plan_for(LAYOUT, "dbt_up", env={})


def interface(*names: str, database: str = "DBT_UP_PROD") -> dict[str, Any]:
    nodes = {}
    for name in names:
        node = factories.model("dbt_up", name)
        node.update(database=database, schema="marts")
        nodes[node["unique_id"]] = node
    return {"nodes": nodes}


def audit_manifest(*nodes: dict[str, Any]) -> dict[str, Any]:
    """A manifest as the audit build writes it: every relation in the audit database."""
    doc = factories.manifest("dbt_up", list(nodes))
    for node in doc["nodes"].values():
        node["database"] = AUDIT
        node["relation_name"] = f"{AUDIT}.{node['schema']}.{node['alias']}"
    return doc


def view(name: str, code: str) -> dict[str, Any]:
    node = factories.model(
        "dbt_up", name, access="protected", schema="staging", materialized="view"
    )
    node["compiled_code"] = code
    return node


# --- names ---------------------------------------------------------------------------------------


def test_plan_names_the_audit_copy_and_the_profile_variable(plan: wap.WapPlan) -> None:
    assert (plan.database, plan.audit_database, plan.role) == ("DBT_UP_PROD", AUDIT, "DBT_UP_ROLE")
    assert plan.public_schema == "MARTS"
    assert plan.consumer_roles == ("DBT_DOWN_LOOM_ROLE", "DBT_DOWN_ROLE")
    assert wap.build_env(plan) == {"DBT_UP_SNOWFLAKE_DATABASE": AUDIT}
    consumer = wap.plan_for(LAYOUT, "dbt_down_loom", env={})
    assert wap.build_env(consumer) == {
        "DBT_DOWN_LOOM_SNOWFLAKE_DATABASE": "DBT_DOWN_LOOM_PROD__AUDIT"
    }
    assert consumer.consumer_roles == ()


def test_plan_follows_the_profile_database_override() -> None:
    ci = wap.plan_for(LAYOUT, "dbt_up", env={"DBT_UP_SNOWFLAKE_DATABASE": "dbt_up_ci"})
    assert (ci.database, ci.audit_database) == ("DBT_UP_CI", "DBT_UP_CI__AUDIT")


@pytest.mark.parametrize(
    ("env", "error", "match"),
    [
        ({"DBT_UP_SNOWFLAKE_DATABASE": AUDIT}, ConfigError, "an audit copy"),
        ({"DBT_UP_SNOWFLAKE_DATABASE": "X; DROP DATABASE Y"}, sf.UnsafeIdentifierError, "invalid"),
    ],
)
def test_plan_refuses_a_bad_database(env: dict[str, str], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        wap.plan_for(LAYOUT, "dbt_up", env=env)


def test_plan_refuses_an_unknown_project() -> None:
    with pytest.raises(ConfigError, match="not in mesh"):
        wap.plan_for(LAYOUT, "nope", env={})


# --- statements ----------------------------------------------------------------------------------


def test_prepare_discard_and_swap(plan: wap.WapPlan) -> None:
    assert wap.prepare_statements(plan) == [f"CREATE DATABASE {AUDIT} CLONE DBT_UP_PROD"]
    assert wap.discard_statements(plan) == [f"DROP DATABASE IF EXISTS {AUDIT}"]
    assert wap.swap_statements(plan) == [
        f"ALTER DATABASE DBT_UP_PROD SWAP WITH {AUDIT}",
        f"DROP DATABASE {AUDIT}",
    ]


def test_promote_grants_on_the_audit_copy_before_the_swap(plan: wap.WapPlan) -> None:
    previous = interface("orders", "revenue")
    new = interface("orders", "customers")
    carried = [f"GRANT MONITOR ON DATABASE {AUDIT} TO ROLE ANALYST"]
    statements = wap.promote_statements(plan, previous, new, carried)
    assert statements[0] == carried[0]
    assert statements[-2:] == wap.swap_statements(plan)
    grants = statements[1:-2]
    assert grants[:2] == [
        f"REVOKE SELECT ON TABLE {AUDIT}.MARTS.REVENUE FROM ROLE DBT_DOWN_LOOM_ROLE",
        f"REVOKE SELECT ON TABLE {AUDIT}.MARTS.REVENUE FROM ROLE DBT_DOWN_ROLE",
    ]
    for role in plan.consumer_roles:
        assert f"GRANT USAGE ON DATABASE {AUDIT} TO ROLE {role}" in grants
        assert f"GRANT USAGE ON SCHEMA {AUDIT}.MARTS TO ROLE {role}" in grants
        assert f"GRANT SELECT ON TABLE {AUDIT}.MARTS.ORDERS TO ROLE {role}" in grants
        assert f"GRANT SELECT ON TABLE {AUDIT}.MARTS.CUSTOMERS TO ROLE {role}" in grants
    assert len(grants) == len(set(grants))
    assert not any("DBT_UP_PROD." in s or s.endswith(" DBT_UP_PROD") for s in grants)
    wap.check_statements(plan, statements)


def test_every_statement_parses_with_sqlglot(plan: wap.WapPlan) -> None:
    statements = [
        *wap.prepare_statements(plan),
        *wap.promote_statements(plan, interface("gone"), interface("orders")),
        *wap.discard_statements(plan),
    ]
    kinds = set()
    for statement in statements:
        (expression,) = sqlglot.parse(statement, read="snowflake")
        kinds.add(type(expression).__name__)
        # sqlglot renders back the statement it read (no silent reinterpretation).
        assert " ".join(expression.sql(dialect="snowflake").split()) == statement
    # The swap is a Command to sqlglot; everything else is modelled.
    assert kinds == {"Create", "Command", "Drop", "Grant", "Revoke"}
    wap.check_statements(plan, statements)


@pytest.mark.parametrize(
    "statement",
    [
        "DROP DATABASE DBT_UP_PROD",
        f"CREATE OR REPLACE DATABASE {AUDIT} CLONE DBT_UP_PROD",
        "CREATE DATABASE DBT_UP_PROD CLONE DBT_UP_PROD__AUDIT",
        "ALTER DATABASE DBT_DOWN_PROD SWAP WITH DBT_UP_PROD__AUDIT",
        f"GRANT OWNERSHIP ON DATABASE {AUDIT} TO ROLE R",
        f"GRANT ALL ON DATABASE {AUDIT} TO ROLE R",
        "GRANT SELECT ON TABLE DBT_UP_PROD.MARTS.X TO ROLE R",
        f"GRANT INSERT ON TABLE {AUDIT}.MARTS.X TO ROLE R",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA {AUDIT}.MARTS TO ROLE R",
        f"DROP DATABASE {AUDIT}; DROP DATABASE DBT_UP_PROD",
        "SELECT (((",
    ],
)
def test_check_statements_refuses_what_wap_must_not_run(plan: wap.WapPlan, statement: str) -> None:
    with pytest.raises(wap.WapRefusedError):
        wap.check_statements(plan, [statement])


def test_identifiers_with_a_dollar_sign_are_matched_literally() -> None:
    layout = sf.MeshLayout({"dbt_up": sf.ProjectSpec("dbt_up", "DB$1", "WH", "R", "MARTS")}, {})
    plan = wap.plan_for(layout, "dbt_up", env={})
    assert plan.audit_database == "DB$1__AUDIT"
    wap.check_statements(plan, [*wap.prepare_statements(plan), *wap.swap_statements(plan)])
    with pytest.raises(wap.WapRefusedError):
        wap.check_statements(plan, ["CREATE DATABASE DB__AUDIT CLONE DB1"])


def test_no_consumers_means_no_consumer_grants() -> None:
    consumer = wap.plan_for(LAYOUT, "dbt_down", env={})
    assert wap.consumer_grant_statements(consumer, None, interface("x")) == []
    assert wap.promote_statements(consumer, None, {"nodes": {}}) == wap.swap_statements(consumer)


# --- carrying the database's own grants over -----------------------------------------------------


def test_database_grants_are_carried_over_to_the_audit_copy(plan: wap.WapPlan) -> None:
    rows = [
        {"privilege": "OWNERSHIP", "granted_to": "ROLE", "grantee_name": "DBT_UP_ROLE"},
        {"privilege": "USAGE", "granted_to": "ROLE", "grantee_name": "DBT_DOWN_ROLE"},
        {"privilege": "MONITOR", "granted_to": "ROLE", "grantee_name": "ANALYST", "grant_option": "true"},
        {"privilege": "USAGE", "granted_to": "DATABASE_ROLE", "grantee_name": "DBT_UP_PROD.READER"},
        {"privilege": "USAGE", "granted_to": "ROLE", "grantee_name": "DBT_DOWN_ROLE"},
    ]  # fmt: skip
    statements, shares = wap.carried_grants(plan, rows)
    assert statements == [
        f"GRANT USAGE ON DATABASE {AUDIT} TO ROLE DBT_DOWN_ROLE",
        f"GRANT MONITOR ON DATABASE {AUDIT} TO ROLE ANALYST WITH GRANT OPTION",
    ]
    assert shares == []
    wap.check_statements(plan, statements)
    _, shares = wap.carried_grants(
        plan, [{"privilege": "USAGE", "granted_to": "SHARE", "grantee_name": "ORG.ACC.S1"}]
    )
    assert shares == ["ORG.ACC.S1"]


@pytest.mark.parametrize(
    ("row", "error"),
    [
        (
            {"privilege": "USAGE; DROP", "granted_to": "ROLE", "grantee_name": "R"},
            wap.WapRefusedError,
        ),
        (
            {"privilege": "USAGE", "granted_to": "ROLE", "grantee_name": "r x"},
            wap.WapRefusedError,
        ),
        (
            {"privilege": "USAGE", "granted_to": "ROLE", "grantee_name": "analyst"},
            wap.WapRefusedError,
        ),
    ],
)
def test_a_grant_that_cannot_be_carried_over_is_refused(
    plan: wap.WapPlan, row: dict[str, str], error: type
) -> None:
    with pytest.raises(error):
        wap.carried_grants(plan, [row])


# --- the audit build's manifest ------------------------------------------------------------------


def test_views_without_the_database_pass(plan: wap.WapPlan) -> None:
    doc = audit_manifest(
        view("stg_orders", "select * from raw.raw_orders"),
        factories.model("dbt_up", "orders", depends_on=["model.dbt_up.stg_orders"]),
    )
    doc["nodes"]["model.dbt_up.orders"]["compiled_code"] = (
        f"select * from {AUDIT}.staging.stg_orders"
    )
    wap.check_audit_manifest(plan, doc)  # a table's data is copied at build time: fine


@pytest.mark.parametrize(
    "code",
    [
        f"select * from {AUDIT}.raw.raw_orders",
        f'select * from "{AUDIT}"."RAW"."RAW_ORDERS"',
        f"select * from {AUDIT.lower()}.raw.raw_orders join x using (id)",
        f"select * from {AUDIT}.raw.raw_orders where {{{{ broken jinja",  # regex fallback
    ],
)
def test_a_view_naming_the_audit_database_is_refused(plan: wap.WapPlan, code: str) -> None:
    doc = audit_manifest(view("stg_orders", code))
    with pytest.raises(wap.WapRefusedError) as caught:
        wap.check_audit_manifest(plan, doc)
    message = str(caught.value)
    assert message.startswith("cannot promote dbt_up: view model.dbt_up.stg_orders reads ")
    assert "macros/mesh_refs.sql" in message and "wap: false" in message
    assert "\n" not in message
    assert caught.value.exit_code == 1 and isinstance(caught.value, CheckFailedError)


def test_a_relation_built_outside_the_audit_copy_is_refused(plan: wap.WapPlan) -> None:
    doc = audit_manifest(factories.model("dbt_up", "orders"), factories.model("dbt_up", "other"))
    doc["nodes"]["model.dbt_up.other"]["database"] = "DBT_UP_PROD"
    with pytest.raises(wap.WapRefusedError, match=r"model\.dbt_up\.other builds into DBT_UP_PROD"):
        wap.check_audit_manifest(plan, doc)
    # A build that never used build_env: every node is outside, the count says so.
    for node in doc["nodes"].values():
        node["database"] = "DBT_UP_PROD"
    with pytest.raises(wap.WapRefusedError, match=r"\(and 1 more\)"):
        wap.check_audit_manifest(plan, doc)


def test_other_packages_ephemeral_models_and_uncompiled_views_are_not_checked(
    plan: wap.WapPlan,
) -> None:
    foreign = factories.model("dbt_utils", "helper")
    inline = factories.model("dbt_up", "inline", materialized="ephemeral")
    unbuilt = view("stg_later", "")
    doc = audit_manifest(foreign, inline, unbuilt)
    doc["nodes"]["model.dbt_utils.helper"]["database"] = "ELSEWHERE"
    doc["nodes"]["model.dbt_up.inline"]["database"] = None
    wap.check_audit_manifest(plan, doc)
    with pytest.raises(wap.WapRefusedError, match="no nodes"):
        wap.check_audit_manifest(plan, {"metadata": {}})


# --- production names ----------------------------------------------------------------------------


def test_rewrite_manifest_gives_production_names(plan: wap.WapPlan) -> None:
    doc = audit_manifest(factories.model("dbt_up", "orders"))
    doc["nodes"]["model.dbt_up.orders"]["relation_name"] = f'"{AUDIT}"."MARTS"."ORDERS"'
    doc["sources"] = {
        "source.dbt_up.raw.events": {"database": AUDIT.lower(), "relation_name": f"{AUDIT.lower()}.raw.events"},
        "source.dbt_up.other.x": {"database": "LOADER", "relation_name": f"LOADER.{AUDIT}.x"},
    }  # fmt: skip
    original = copy.deepcopy(doc)
    rewritten = wap.rewrite_manifest(doc, plan)
    assert doc == original  # a copy, not in place
    node = rewritten["nodes"]["model.dbt_up.orders"]
    assert (node["database"], node["relation_name"]) == (
        "DBT_UP_PROD",
        '"DBT_UP_PROD"."MARTS"."ORDERS"',
    )
    events = rewritten["sources"]["source.dbt_up.raw.events"]
    assert (events["database"], events["relation_name"]) == (
        "DBT_UP_PROD",
        "DBT_UP_PROD.raw.events",
    )
    assert (
        rewritten["sources"]["source.dbt_up.other.x"]
        == original["sources"]["source.dbt_up.other.x"]
    )


VERSION = "20261123T101502.123456Z-3f2a9c1e"


def test_rewrite_interface_keeps_it_verifiable(plan: wap.WapPlan) -> None:
    from mesh.project.artifacts import interface_node

    nodes = {
        uid: interface_node({**node, "database": AUDIT, "relation_name": f"{AUDIT}.marts.{node['alias']}"}, set())
        for uid, node in interface("orders", "customers")["nodes"].items()
    }
    meta = {"version": VERSION, "content_sha256": content_sha256(nodes, {})}
    audit_doc = build_interface(factories.manifest("dbt_up", []), nodes, {}, meta)
    rewritten = wap.rewrite_interface(audit_doc, plan)
    body = dump_interface(rewritten)
    loaded = load_interface(body, "rewritten", "dbt_up")  # the checksum matches the new nodes
    assert {n["database"] for n in loaded["nodes"].values()} == {"DBT_UP_PROD"}
    assert AUDIT not in body.decode()
    assert audit_doc["metadata"]["mesh"]["content_sha256"] == meta["content_sha256"]


def test_rewrite_manifest_file_replaces_it_atomically(tmp_path: Any, plan: wap.WapPlan) -> None:
    path = tmp_path / "manifest.json"
    path.write_bytes(orjson.dumps(audit_manifest(factories.model("dbt_up", "orders"))))
    wap.rewrite_manifest_file(path, plan)
    doc = orjson.loads(path.read_bytes())
    assert doc["nodes"]["model.dbt_up.orders"]["database"] == "DBT_UP_PROD"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_databases_besides_the_projects_own_are_refused_before_the_build(
    plan: wap.WapPlan,
) -> None:
    wap.refuse_other_databases(plan, [])
    wap.refuse_other_databases(plan, ["dbt_up_prod"])  # its own database, in any case
    with pytest.raises(ConfigError, match="writes databases DBT_UP_GOLD, DBT_UP_SILVER besides") as caught:
        wap.refuse_other_databases(plan, ["dbt_up_silver", "DBT_UP_GOLD", "dbt_up_gold"])
    assert "`wap: false`" in str(caught.value) and "\n" not in str(caught.value)
