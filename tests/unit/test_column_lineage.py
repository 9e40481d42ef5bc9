"""Column lineage of one compiled SELECT: which upstream columns feed each output column."""

from __future__ import annotations

from mesh.interface.column_lineage import statement_lineage
from mesh.interface.sql_columns import ALL_COLUMNS

ORDERS = ("core", "marts", "orders")
CUSTOMERS = ("core", "marts", "customers")
OTHER = ("app", "main", "other")
KNOWN: dict[tuple[str, str, str], list[str] | None] = {
    ORDERS: ["order_id", "customer_id", "amount", "status", "order_date"],
    CUSTOMERS: ["customer_id", "email", "country"],
}


def lineage(
    sql: str, relations: dict[tuple[str, str, str], list[str] | None] | None = None, dialect: str | None = "duckdb"
) -> dict[str, dict[str, list[str]]] | None:
    """Output column -> {relation name: sorted columns}, or None when the SQL cannot be read."""
    found = statement_lineage(sql, dialect, KNOWN if relations is None else relations)
    if found is None:
        return None
    return {out: {key[2]: sorted(cols) for key, cols in deps.items()} for out, deps in found.items()}


def test_import_ctes_renames_and_casts_are_followed() -> None:
    sql = """
        with source as (select * from "core"."marts"."orders"),
        renamed as (
            select order_id, customer_id, amount as order_amount from source where status <> 'returned'
        ),
        final as (
            select cast(customer_id as integer) as customer_id,
                   cast(sum(order_amount) as decimal(18, 2)) as lifetime_amount,
                   cast(count(*) as integer) as order_count
            from renamed group by customer_id
        )
        select * from final
    """
    assert lineage(sql) == {
        "customer_id": {"orders": ["customer_id"]},
        "lifetime_amount": {"orders": ["amount"]},
        "order_count": {},  # count(*) reads no column; the WHERE on status decides rows, not values
    }


def test_joins_and_table_aliases() -> None:
    sql = """
        select o.order_id as id, c.email as contact, o.amount
        from "core"."marts"."orders" as o
        join "core"."marts"."customers" as c on o.customer_id = c.customer_id
    """
    assert lineage(sql) == {
        "id": {"orders": ["order_id"]},
        "contact": {"customers": ["email"]},
        "amount": {"orders": ["amount"]},
    }
    # Unqualified names are attributed through the relations' known columns, USING included.
    sql = 'select amount, email from "core"."marts"."orders" join "core"."marts"."customers" using (customer_id)'
    assert lineage(sql) == {"amount": {"orders": ["amount"]}, "email": {"customers": ["email"]}}


def test_an_expression_combining_two_columns_depends_on_both() -> None:
    sql = """
        with o as (select * from "core"."marts"."orders"), c as (select * from "core"."marts"."customers")
        select o.amount || c.country as label,
               case when o.status = 'completed' then o.amount else 0 end as completed_amount,
               sum(o.amount) over (partition by o.customer_id order by o.order_date) as running
        from o join c on o.customer_id = c.customer_id
    """
    assert lineage(sql) == {
        "label": {"customers": ["country"], "orders": ["amount"]},
        "completed_amount": {"orders": ["amount", "status"]},
        "running": {"orders": ["amount", "customer_id", "order_date"]},
    }


def test_select_star_passes_every_known_column_through() -> None:
    assert lineage('select * from "core"."marts"."customers"') == {
        "customer_id": {"customers": ["customer_id"]},
        "email": {"customers": ["email"]},
        "country": {"customers": ["country"]},
    }
    # `t.*` through a CTE, next to a named column of another relation.
    sql = """
        with c as (select * from "core"."marts"."customers")
        select c.*, o.amount from c join "core"."marts"."orders" as o on o.customer_id = c.customer_id
    """
    found = lineage(sql)
    assert found is not None and set(found) == {"customer_id", "email", "country", "amount"}
    assert found["email"] == {"customers": ["email"]} and found["amount"] == {"orders": ["amount"]}


def test_select_star_over_unknown_columns_is_every_column() -> None:
    assert lineage('select * from "core"."marts"."orders"', {ORDERS: None}) == {ALL_COLUMNS: {"orders": [ALL_COLUMNS]}}
    # Named outputs stay precise next to a star over a relation whose columns are unknown.
    sql = 'select x.*, o.amount from "app"."main"."other" as x join "core"."marts"."orders" as o on o.order_id = x.id'
    assert lineage(sql) == {ALL_COLUMNS: {"other": [ALL_COLUMNS]}, "amount": {"orders": ["amount"]}}


def test_derived_tables_unions_and_subqueries() -> None:
    assert lineage('select a, b from (select amount as a, status as b from "core"."marts"."orders") as t') == {
        "a": {"orders": ["amount"]},
        "b": {"orders": ["status"]},
    }
    # UNION branches match by position.
    sql = 'select order_id as id from "core"."marts"."orders" union all select customer_id from "core"."marts"."customers"'
    assert lineage(sql) == {"id": {"customers": ["customer_id"], "orders": ["order_id"]}}
    # A scalar subquery's value depends on all it reads, its WHERE (correlated) included.
    sql = """
        select (select max(c.email) from "core"."marts"."customers" as c where c.customer_id = o.customer_id) as email
        from "core"."marts"."orders" as o
    """
    assert lineage(sql) == {"email": {"customers": ["customer_id", "email"], "orders": ["customer_id"]}}


def test_a_column_no_relation_is_known_to_hold_is_counted_for_each_that_may() -> None:
    sql = 'select order_id, mystery from "core"."marts"."orders" as o join "app"."main"."other" as x on o.order_id = x.id'
    assert lineage(sql) == {"order_id": {"orders": ["order_id"]}, "mystery": {"other": ["mystery"]}}
    both_unknown = {ORDERS: None, OTHER: None}
    assert lineage(sql, both_unknown) == {
        "order_id": {"orders": ["order_id"], "other": ["order_id"]},
        "mystery": {"orders": ["mystery"], "other": ["mystery"]},
    }


def test_unparseable_sql_cannot_be_read() -> None:
    assert lineage("select from where (") is None
    assert lineage("{{ ref('not compiled') }}") is None


def test_snowflake_identifiers_are_case_insensitive() -> None:
    sql = "with s as (select * from CORE_PROD.MARTS.ORDERS) select Order_Id, AMOUNT * 2 as Doubled from s"
    found = statement_lineage(sql, "snowflake", {("core_prod", "marts", "orders"): ["order_id", "amount"]})
    assert found == {
        "order_id": {("core_prod", "marts", "orders"): {"order_id"}},
        "doubled": {("core_prod", "marts", "orders"): {"amount"}},
    }
