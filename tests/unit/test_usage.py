"""Which upstream columns a consumer uses, from real-looking compiled SQL (no dbt run)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest

from mesh.core.errors import ManifestError
from mesh.interface.sql_columns import ALL_COLUMNS, columns_used, dialect_of
from mesh.interface.usage import (
    Feed,
    Use,
    compute_lineage,
    compute_usage,
    parse_usage,
    parse_usage_record,
    prune_usage,
    read_usage,
    usage_document,
)
from mesh.project.config import load_mesh
from mesh.registry.document import dump_json
from tests import factories

ORDERS = ("dbt_up", "marts", "public_orders")
CUSTOMERS = ("dbt_up", "marts", "public_customers_v2")
ORDER_COLS = ["order_id", "customer_id", "order_date", "status", "amount", "payment_count", "is_refunded"]
CUSTOMER_COLS = ["customer_id", "first_name", "last_name", "email"]
KNOWN: dict[tuple[str, str, str], list[str] | None] = {ORDERS: ORDER_COLS, CUSTOMERS: CUSTOMER_COLS}

# What dbt compiles the template's `stg_orders` (import CTE -> renamed -> final) into.
STAGING = '''
with

source as (

    select * from "dbt_up"."marts"."public_orders"

),

renamed as (

    select
        order_id,
        customer_id,
        order_date,
        status,
        amount as order_amount

    from source

),

final as (

    select * from renamed

)

select * from final
'''


def used(sql: str, relations: dict[tuple[str, str, str], list[str] | None] | None = None,
         dialect: str | None = "duckdb") -> dict[str, list[str]]:
    found = columns_used(sql, dialect, KNOWN if relations is None else relations)
    return {key[2]: sorted(cols) for key, cols in found.items()}


def test_import_cte_then_rename_keeps_only_the_selected_columns() -> None:
    assert used(STAGING) == {"public_orders": ["amount", "customer_id", "order_date", "order_id", "status"]}


def test_unknown_upstream_columns_still_resolve_through_ctes() -> None:
    assert used(STAGING, {ORDERS: None}) == used(STAGING)


def test_qualified_and_aliased_columns_in_every_clause() -> None:
    sql = '''
        select o.order_id as id, sum(o.amount) as total
        from "dbt_up"."marts"."public_orders" as o
        join "dbt_down"."staging"."stg_x" as x on o.customer_id = x.customer_id
        where o.status = 'completed'
        group by o.order_id
        order by total
    '''
    assert used(sql) == {"public_orders": ["amount", "customer_id", "order_id", "status"]}


def test_select_star_reaching_the_output_records_all_columns() -> None:
    assert used('select * from "dbt_up"."marts"."public_orders"') == {"public_orders": [ALL_COLUMNS]}
    sql = 'with s as (select * from "dbt_up"."marts"."public_orders") select s.* from s'
    assert used(sql) == {"public_orders": [ALL_COLUMNS]}


def test_star_through_a_join_with_an_unknown_relation() -> None:
    sql = '''
        with s as (select * from "dbt_up"."marts"."public_orders"),
        j as (select * from s join "dbt_down"."main"."x" as x on s.order_id = x.id)
        select j.amount from j
    '''
    assert used(sql) == {"public_orders": ["amount", "order_id"]}


def test_joins_of_two_upstream_models() -> None:
    sql = '''
        with orders as (select * from "dbt_up"."marts"."public_orders"),
        customers as (select * from "dbt_up"."marts"."public_customers_v2")
        select customers.first_name, orders.amount
        from orders
        join customers on orders.customer_id = customers.customer_id
    '''
    assert used(sql) == {
        "public_customers_v2": ["customer_id", "first_name"],
        "public_orders": ["amount", "customer_id"],
    }


def test_unattributable_columns_are_conservative() -> None:
    # Unqualified names the upstream publishes are counted as the upstream's (the safe side) ...
    sql = '''
        select order_id, amount
        from "dbt_up"."marts"."public_orders" as o
        join "dbt_down"."main"."x" as x on o.order_id = x.id
    '''
    assert used(sql) == {"public_orders": ["amount", "order_id"]}
    # ... and a name that cannot be attributed to one relation makes every column count.
    sql = sql.replace("select order_id, amount", "select order_id, mystery")
    assert used(sql) == {"public_orders": [ALL_COLUMNS]}


def test_subqueries_unions_windows_and_unused_projections() -> None:
    assert used('select amount from (select * from "dbt_up"."marts"."public_orders") t where status = 1') == {
        "public_orders": ["amount", "status"]
    }
    assert used(
        'select order_id from "dbt_up"."marts"."public_orders" union all '
        'select customer_id from "dbt_up"."marts"."public_customers_v2"'
    ) == {"public_orders": ["order_id"], "public_customers_v2": ["customer_id"]}
    assert used(
        'select order_id, row_number() over (partition by customer_id order by order_date) as rn '
        'from "dbt_up"."marts"."public_orders"'
    ) == {"public_orders": ["customer_id", "order_date", "order_id"]}
    assert used(
        'with s as (select order_id, amount from "dbt_up"."marts"."public_orders") select order_id from s'
    ) == {"public_orders": ["order_id"]}
    assert used('with s as (select * from "dbt_up"."marts"."public_orders") select count(*) as n from s') == {
        "public_orders": []
    }


def test_unparseable_sql_counts_every_column() -> None:
    assert used("select from where (") == {"public_orders": [ALL_COLUMNS], "public_customers_v2": [ALL_COLUMNS]}


def test_relations_not_named_are_absent() -> None:
    assert used('select 1 as x from "dbt_down"."main"."other"') == {}


def test_snowflake_identifiers_are_case_insensitive() -> None:
    sql = "with s as (select * from DBT_UP_PROD.MARTS.PUBLIC_ORDERS) select Order_Id, AMOUNT from s"
    found = columns_used(sql, "snowflake", {("dbt_up_prod", "marts", "public_orders"): ORDER_COLS})
    assert found == {("dbt_up_prod", "marts", "public_orders"): {"order_id", "amount"}}
    assert dialect_of("snowflake") == "snowflake" and dialect_of("exotic") is None


# --- a consumer manifest ------------------------------------------------------------------------


def consumer_manifest() -> dict[str, Any]:
    def node(uid: str, parents: list[str], code: str | None, refs: list[dict[str, Any]] | None = None,
             language: str = "sql") -> dict[str, Any]:
        return {
            "unique_id": uid, "resource_type": uid.split(".")[0], "name": uid.split(".")[2],
            "depends_on": {"nodes": parents, "macros": []}, "compiled_code": code,
            "refs": refs or [], "language": language,
        }

    up = "model.dbt_up.public_orders"
    nodes = {
        "model.app.stg_orders": node("model.app.stg_orders", [up], STAGING, [{"package": "dbt_up", "name": "public_orders", "version": None}]),
        "model.app.customer_names": node(
            "model.app.customer_names", ["model.dbt_up.public_customers.v1"],
            'select customer_name from "dbt_up"."marts"."public_customers_v1"',
            [{"package": "dbt_up", "name": "public_customers", "version": 1}],
        ),
        "model.app.from_source": node(
            "model.app.from_source", ["source.app.dbt_up.public_customers"],
            'with s as (select * from "dbt_up"."marts"."public_customers_v2") select s.email from s',
        ),
        "model.app.pythonic": node("model.app.pythonic", [up], "def model(dbt, session): ...", language="python"),
        "model.app.internal": node("model.app.internal", ["model.app.stg_orders"], "select 1"),
        # dbt-loom injects the upstream's own public nodes, with their own (upstream) edges.
        "model.dbt_up.public_orders": {**node(up, ["model.dbt_up.public_customers.v2"], None), "database": "dbt_up", "schema": "marts", "alias": "public_orders"},
        "model.dbt_up.public_customers.v1": {**node("model.dbt_up.public_customers.v1", [], None), "database": "dbt_up", "schema": "marts", "alias": "public_customers_v1"},
    }
    sources = {
        "source.app.dbt_up.public_customers": {
            "unique_id": "source.app.dbt_up.public_customers", "name": "public_customers",
            "database": "dbt_up", "schema": "marts", "identifier": "public_customers_v2",
            "columns": {c: {"name": c} for c in CUSTOMER_COLS},
            "meta": {"mesh": {"unique_id": "model.dbt_up.public_customers.v2", "version": "2", "latest_version": "2"}},
        }
    }
    return {
        "metadata": {"project_name": "app", "adapter_type": "duckdb", "generated_at": "2026-11-23T10:00:00Z", "invocation_id": "i"},
        "nodes": nodes,
        "sources": sources,
    }


def test_compute_usage_of_refs_sources_and_versions() -> None:
    interfaces = {
        "dbt_up": {
            "model.dbt_up.public_orders": {"database": "dbt_up", "schema": "marts", "alias": "public_orders", "columns": {c: {} for c in ORDER_COLS}},
            "model.dbt_up.public_customers.v1": {"database": "dbt_up", "schema": "marts", "alias": "public_customers_v1", "columns": {"customer_id": {}, "customer_name": {}}},
        }
    }
    uses = compute_usage(consumer_manifest(), ["dbt_up"], interfaces)
    got = {(u.node, u.upstream_node, u.via, u.pinned, u.columns) for u in uses}
    assert got == {
        ("model.app.stg_orders", "model.dbt_up.public_orders", "ref", False,
         ("amount", "customer_id", "order_date", "order_id", "status")),
        ("model.app.customer_names", "model.dbt_up.public_customers.v1", "ref", True, ("customer_name",)),
        ("model.app.from_source", "model.dbt_up.public_customers.v2", "source", False, ("email",)),
        ("model.app.pythonic", "model.dbt_up.public_orders", "ref", False, (ALL_COLUMNS,)),
    }


def test_usage_document_round_trip_and_malformed_records() -> None:
    uses = [Use("app", "model.app.a", "dbt_up", "model.dbt_up.x", "ref", False, ("id",))]
    feeds = [Feed("app", "model.app.p", "total", "dbt_up", "model.dbt_up.x", False, ("amount", "id"))]
    body = dump_json(usage_document(consumer_manifest(), uses, "local", feeds))
    assert parse_usage(body, "usage") == uses
    record = parse_usage_record(body, "usage")
    assert (record.project, record.format, record.uses, record.lineage) == ("app", 2, uses, feeds)
    with pytest.raises(ManifestError, match="not a usage record"):
        parse_usage(b'{"metadata": {}, "uses": []}', "usage")
    with pytest.raises(ManifestError, match="not a usage record"):
        parse_usage(b'{"metadata": {"format": 3}, "uses": []}', "usage")
    with pytest.raises(ManifestError, match="not a usage record"):
        parse_usage(b'{"metadata": {"format": 2}, "uses": [], "lineage": {}}', "usage")
    with pytest.raises(ManifestError, match="malformed use entry"):
        parse_usage(b'{"metadata": {"format": 1}, "uses": [{"node": "x"}]}', "usage")
    with pytest.raises(ManifestError, match="malformed lineage entry"):
        parse_usage(b'{"metadata": {"format": 2}, "uses": [], "lineage": [{"node": "x"}]}', "usage")


def test_records_of_format_1_are_still_read_without_lineage() -> None:
    use = {"consumer": "app", "node": "model.app.a", "upstream": "dbt_up", "upstream_node": "model.dbt_up.x",
           "via": "ref", "pinned": False, "columns": ["id"]}
    body = orjson.dumps({"metadata": {"format": 1, "project_name": "app"}, "uses": [use]})
    record = parse_usage_record(body, "usage")
    assert record.format == 1 and record.lineage == []
    assert record.uses == [Use("app", "model.app.a", "dbt_up", "model.dbt_up.x", "ref", False, ("id",))]


# --- column lineage of a consumer that publishes -------------------------------------------------

UP_ORDERS = "model.core.orders"


def publishing_consumer() -> dict[str, Any]:
    """marketing: stg (source of core) -> ephemeral -> public mart; a public python model; a public
    model with SQL sqlglot cannot read; a public model fed by a seed only; a pinned dbt-loom ref."""

    def own(name: str, parents: list[str], code: str, access: str = "private", **extra: Any) -> dict[str, Any]:
        node = factories.model("marketing", name, access=access, schema="staging" if access == "private" else "marts",
                               depends_on=parents, columns={}, **extra)
        node["compiled_code"] = code
        return node

    stg = own("stg_orders", ["source.marketing.core.orders"], """
        with source as (select * from "core"."marts"."orders")
        select order_id, customer_id, amount as order_amount from source where status <> 'returned'
    """)
    eph = own("orders_enriched", ["model.marketing.stg_orders", "model.core.customers.v2"], """
        select customer_id, o.order_amount, c.email
        from "marketing"."staging"."stg_orders" as o join "core"."marts"."customers_v2" as c using (customer_id)
    """, config={"materialized": "ephemeral", "access": "private"})
    value = own("customer_value", ["model.marketing.orders_enriched", "seed.marketing.segments"], """
        with __dbt__cte__orders_enriched as (
            select customer_id, o.order_amount, c.email
            from "marketing"."staging"."stg_orders" as o join "core"."marts"."customers_v2" as c using (customer_id)
        ),
        e as (select * from __dbt__cte__orders_enriched)
        select e.customer_id, max(e.email) as email, sum(e.order_amount) + count(*) as score, max(s.label) as label
        from e cross join "marketing"."raw"."segments" as s
        group by e.customer_id
    """, access="public")
    pythonic = own("python_value", ["model.marketing.stg_orders"], "def model(dbt, session): ...", access="public",
                   language="python")
    opaque = own("opaque", ["model.marketing.stg_orders"], "select frobnicate(( from nowhere", access="public")
    seeded = own("seeded", ["seed.marketing.segments"], 'select label from "marketing"."raw"."segments"', access="public")
    seed = {"unique_id": "seed.marketing.segments", "resource_type": "seed", "name": "segments",
            "database": "marketing", "schema": "raw", "alias": "segments", "depends_on": {"nodes": []}}
    up_customers = {"unique_id": "model.core.customers.v2", "resource_type": "model", "name": "customers",
                    "package_name": "core", "database": "core", "schema": "marts", "alias": "customers_v2",
                    "depends_on": {"nodes": []}}
    doc = factories.manifest("marketing", [stg, eph, value, pythonic, opaque, seeded])
    doc["nodes"]["seed.marketing.segments"] = seed
    doc["nodes"]["model.core.customers.v2"] = up_customers
    doc["nodes"]["model.marketing.orders_enriched"]["refs"] = [{"package": "core", "name": "customers", "version": 2}]
    doc["sources"] = {
        "source.marketing.core.orders": {
            "unique_id": "source.marketing.core.orders", "name": "orders", "database": "core", "schema": "marts",
            "identifier": "orders", "columns": {}, "meta": {"mesh": {"unique_id": UP_ORDERS}},
        }
    }
    return doc


CORE_INTERFACE = {
    "core": {
        UP_ORDERS: {"database": "core", "schema": "marts", "alias": "orders",
                    "columns": {c: {} for c in ("order_id", "customer_id", "amount", "status")}},
        "model.core.customers.v2": {"database": "core", "schema": "marts", "alias": "customers_v2",
                                    "columns": {c: {} for c in ("customer_id", "email")}},
    }
}


def feeds_of(doc: dict[str, Any]) -> set[tuple[str, str, str, bool, tuple[str, ...]]]:
    return {
        (f.node.split(".")[2], f.column, f.upstream_node, f.pinned, f.columns)
        for f in compute_lineage(doc, ["core"], CORE_INTERFACE)
    }


def test_lineage_walks_the_projects_own_models_down_to_upstream_columns() -> None:
    got = feeds_of(publishing_consumer())
    value = {f for f in got if f[0] == "customer_value"}
    assert value == {
        # through the ephemeral model (inlined as a CTE) and the staging rename, to core's columns
        ("customer_value", "customer_id", UP_ORDERS, False, ("customer_id",)),
        ("customer_value", "score", UP_ORDERS, False, ("amount",)),
        # USING (customer_id): the unqualified key may come from either side
        ("customer_value", "customer_id", "model.core.customers.v2", True, ("customer_id",)),
        ("customer_value", "email", "model.core.customers.v2", True, ("email",)),
    }
    # `label` comes from a seed and `status` only filters rows: neither is lineage from core.
    assert not any(f[1] == "label" for f in got) and not any("status" in f[4] for f in got)


def test_lineage_is_conservative_where_it_cannot_tell() -> None:
    got = feeds_of(publishing_consumer())
    # A python model and SQL sqlglot cannot read: every output column may come from every upstream
    # column the model reaches.
    assert {f for f in got if f[0] in ("python_value", "opaque")} == {
        ("python_value", ALL_COLUMNS, UP_ORDERS, False, ("amount", "customer_id", "order_id")),
        ("opaque", ALL_COLUMNS, UP_ORDERS, False, ("amount", "customer_id", "order_id")),
    }
    assert not any(f[0] == "seeded" for f in got)  # a seed is no upstream column
    # A parent whose SQL cannot be read passes every upstream column on, to every output.
    doc = publishing_consumer()
    doc["nodes"]["model.marketing.stg_orders"]["compiled_code"] = "select (("
    assert {f for f in feeds_of(doc) if f[0] == "customer_value" and f[2] == UP_ORDERS} == {
        ("customer_value", "customer_id", UP_ORDERS, False, (ALL_COLUMNS,)),
        ("customer_value", "score", UP_ORDERS, False, (ALL_COLUMNS,)),
    }


def test_a_consumer_without_public_models_records_no_lineage() -> None:
    doc = publishing_consumer()
    for node in doc["nodes"].values():
        if node.get("package_name") == "marketing":
            node["access"] = "protected"
            node["config"]["access"] = "protected"
    assert compute_lineage(doc, ["core"], CORE_INTERFACE) == []


# --- pruning a consumer's record ------------------------------------------------------------------


def test_prune_drops_what_the_current_build_no_longer_has(tmp_path: Path) -> None:
    (tmp_path / "mesh.yml").write_text(
        "version: 1\nprojects:\n  core: {path: core}\n  marketing: {path: marketing}\n"
        "targets:\n  local: {registry: 'file://registry', env: local}\n"
    )
    for name in ("core", "marketing"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "dbt_project.yml").write_text(f"name: {name}\n")
    (tmp_path / "marketing" / "dependencies.yml").write_text("projects:\n  - name: core\n")
    mesh = load_mesh(tmp_path, "local")
    doc = publishing_consumer()
    uses = compute_usage(doc, ["core"], CORE_INTERFACE)
    feeds = compute_lineage(doc, ["core"], CORE_INTERFACE)
    mesh.registry.write_private("marketing", "local", "usage", dump_json(usage_document(doc, uses, "local", feeds)))
    assert prune_usage(mesh, "marketing", doc) == 0  # nothing gone: nothing written
    before = mesh.registry.read_private("marketing", "local", "usage")

    rebuilt = copy.deepcopy(doc)
    del rebuilt["nodes"]["model.marketing.stg_orders"]  # removed: its use of core goes
    del rebuilt["nodes"]["model.marketing.python_value"]  # removed: its lineage goes
    rebuilt["nodes"]["model.marketing.opaque"]["access"] = "protected"  # no longer public: lineage goes
    rebuilt["nodes"]["model.marketing.opaque"]["config"]["access"] = "protected"
    dropped = prune_usage(mesh, "marketing", rebuilt)
    after = read_usage(mesh)
    assert before != mesh.registry.read_private("marketing", "local", "usage")
    assert dropped == 3
    assert {u.node for u in after.uses} == {"model.marketing.orders_enriched"}
    assert {f.node for f in after.lineage} == {"model.marketing.customer_value"}
    assert after.without_lineage == []
