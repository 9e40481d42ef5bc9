"""Which upstream columns a consumer uses, from real-looking compiled SQL (no dbt run)."""

from __future__ import annotations

from typing import Any

import pytest

from mesh.errors import ManifestError
from mesh.manifest import dump_json
from mesh.usage import (
    ALL_COLUMNS,
    Use,
    columns_used,
    compute_usage,
    dialect_of,
    parse_usage,
    usage_document,
)

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
    body = dump_json(usage_document(consumer_manifest(), uses, "local"))
    assert parse_usage(body, "usage") == uses
    with pytest.raises(ManifestError, match="not a usage record"):
        parse_usage(b'{"metadata": {}, "uses": []}', "usage")
    with pytest.raises(ManifestError, match="malformed use entry"):
        parse_usage(b'{"metadata": {"format": 1}, "uses": [{"node": "x"}]}', "usage")
