"""Columns of uncontracted public nodes judged from compiled SQL (mesh/interface/code_columns.py), the data
inputs of a consumer (what it stores of its upstreams), and constraints compared in one form."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mesh.interface.code_columns import CodeColumns, published_spelling, same_type
from mesh.interface.contracts import _Differ
from mesh.run.fingerprint import data_inputs


def node(uid: str, code: str | None = None, **extra: Any) -> dict[str, Any]:
    kind, package, name = uid.split(".")[:3]
    found: dict[str, Any] = {
        "unique_id": uid, "resource_type": kind, "package_name": package, "name": name,
        "database": package, "schema": "main", "alias": name, "language": "sql",
        "config": {"materialized": "table"}, "columns": {},
        "depends_on": {"nodes": []},
    }
    if code is not None:
        found["compiled_code"] = code
    found.update(extra)
    return found


def manifest(*nodes: dict[str, Any], sources: dict[str, Any] | None = None, project: str = "shop") -> dict[str, Any]:
    return {
        "metadata": {"project_name": project, "adapter_type": "duckdb"},
        "nodes": {n["unique_id"]: n for n in nodes},
        "sources": sources or {},
    }


STG = node(
    "model.shop.stg_orders",
    'select cast(id as integer) as order_id, cast(amount as decimal(18, 2)) as amount, status from "shop"."main"."raw_orders"',
)
RAW = node("seed.shop.raw_orders", root_path="/nonexistent", original_file_path="seeds/raw_orders.csv")
WAREHOUSE = {"shop.main.raw_orders": [("id", "INTEGER"), ("amount", "DOUBLE"), ("status", "VARCHAR")]}


def judge(code: str, **kwargs: Any) -> Any:
    facts = node("model.shop.order_facts", code)
    return CodeColumns(manifest(facts, STG, RAW), WAREHOUSE, **kwargs).judge("model.shop.order_facts")


def test_stars_expand_and_casts_and_pass_throughs_are_typed() -> None:
    judged = judge('select *, amount * 2 as doubled, upper(status) as loud from "shop"."main"."stg_orders"')
    assert judged.columns is not None
    assert [(c.name, c.data_type) for c in judged.columns] == [
        ("order_id", "int"), ("amount", "decimal(18, 2)"), ("status", "varchar"), ("doubled", None), ("loud", None),
    ]


def test_a_removed_and_a_retyped_column_show() -> None:
    judged = judge('select order_id, cast(amount as varchar) as amount from "shop"."main"."stg_orders"')
    assert [(c.name, c.data_type) for c in judged.columns or []] == [("order_id", "int"), ("amount", "varchar")]


def test_what_cannot_be_read_says_why() -> None:
    unknown = judge("select * from read_csv_auto('elsewhere.csv')")
    assert unknown.columns is None and "read_csv_auto('elsewhere.csv'), whose columns are not known" in unknown.why.lower()
    foreign = judge('select * from "other"."main"."table_x"')
    assert foreign.columns is None and "other.main.table_x, which is no node of the manifest" in foreign.why
    broken = judge("select from where")
    assert broken.columns is None and broken.why


def test_an_unreadable_parent_falls_back_to_the_warehouse_only_when_unchanged() -> None:
    odd = node("model.shop.odd", "select * from some_table_function()")
    facts = node("model.shop.facts", 'select * from "shop"."main"."odd"')
    warehouse = {**WAREHOUSE, "shop.main.odd": [("x", "INTEGER")]}
    previous = manifest(dict(odd))
    changed = manifest(facts, {**odd, "compiled_code": "select * from other_function()"})
    assert CodeColumns(changed, warehouse, previous=lambda: previous).judge("model.shop.facts").columns is None
    same = manifest(facts, odd)
    judged = CodeColumns(same, warehouse, previous=lambda: previous).judge("model.shop.facts")
    assert [(c.name, c.data_type) for c in judged.columns or []] == [("x", "int")]


def test_seeds_without_a_warehouse_read_their_csv_header(tmp_path: Path) -> None:
    (tmp_path / "seeds").mkdir()
    (tmp_path / "seeds/countries.csv").write_text("code,name\nDE,Germany\n")
    seed = node("seed.shop.countries", root_path=str(tmp_path), original_file_path="seeds/countries.csv",
                config={"column_types": {"code": "varchar"}})
    judged = CodeColumns(manifest(seed)).judge("seed.shop.countries")
    assert [(c.name, c.data_type) for c in judged.columns or []] == [("code", "varchar"), ("name", None)]


def test_type_spellings_compare_as_types() -> None:
    assert same_type("integer", "INT", "duckdb")
    assert same_type("varchar", "text", "duckdb")
    assert same_type("decimal(18,2)", "DECIMAL(18, 2)", "duckdb")
    assert not same_type("decimal(18,2)", "decimal(10,2)", "duckdb")
    assert same_type("number", "decimal(18,2)", "snowflake")  # information_schema omits precision
    assert not same_type("varchar", "integer", "duckdb")
    assert published_spelling("int", "integer", "duckdb") == "integer"
    assert published_spelling("varchar", "integer", "duckdb") == "varchar"


def test_data_inputs_follow_views_to_what_is_stored() -> None:
    up = "model.up.orders"
    view = node("model.app.stg", depends_on={"nodes": [up]}, config={"materialized": "view"})
    table = node("model.app.facts", depends_on={"nodes": ["model.app.stg"]})
    only_view = node("model.app.peek", depends_on={"nodes": ["model.up.customers"]}, config={"materialized": "view"})
    doc = manifest(view, table, only_view, project="app")
    assert data_inputs(doc, "app", ["up"]) == [up]  # the view alone reads live data
    public_view = {**only_view, "access": "public"}
    doc = manifest(view, table, public_view, project="app")
    assert data_inputs(doc, "app", ["up"]) == ["model.up.customers", up]  # republished: its data version follows


def test_constraints_compare_in_one_form() -> None:
    target = node("model.up.customers", version=2, latest_version=2, alias="customers_v2", database="up", schema="marts")
    differ = _Differ("duckdb", manifest(target, project="up"))
    forms = [
        {"type": "foreign_key", "to": "ref('customers')", "to_columns": ["customer_id"], "warn_unenforced": False},
        {"type": "foreign_key", "to": "ref('customers', v=2)", "to_columns": ["customer_id"]},
        {"type": "foreign_key", "to": '"up"."marts"."customers_v2"', "to_columns": ["CUSTOMER_ID"], "warn_unsupported": True},
    ]
    keys = {differ.constraint_key(form) for form in forms}
    assert len(keys) == 1
    other = {"type": "foreign_key", "to": '"up"."marts"."customers_v1"', "to_columns": ["customer_id"]}
    assert differ.constraint_key(other) not in keys


def test_a_contract_mismatch_keeps_its_rows_before_the_cut() -> None:
    from mesh.warehouse.runner import clean_message

    text = (
        "Compilation Error in model orders (models/orders.sql)\n"
        "  This model has an enforced contract that failed.\n"
        "  Please ensure the name, data_type, and number of columns in your contract match the columns in your model's definition.\n"
        "\n"
        "  | column_name | definition_type | contract_type | mismatch_reason    |\n"
        "  | ----------- | --------------- | ------------- | ------------------ |\n"
        "  | order_total | DOUBLE          | DECIMAL(10,2) | data type mismatch |\n"
        "  | note        |                 | TEXT          | missing in definition |\n"
    )
    assert clean_message(text) == (
        "the model's columns do not match its enforced contract: order_total: DOUBLE in the model, "
        "DECIMAL(10,2) in the contract (data type mismatch); note: missing in the model, TEXT in the "
        "contract (missing in definition)"
    )


def test_another_tools_compatibility_key_is_named() -> None:
    from mesh.interface.impact import foreign_meta_notes

    notes = foreign_meta_notes({
        "model.p.a": {"meta": {"datacontract": {"compatibility": "full"}, "mesh": {"compatibility": "none"}}},
        "model.p.b": {"meta": {"mesh": {"compatibility": "full"}}},
    })
    assert notes == [
        "a declares meta.datacontract.compatibility, which the mesh does not read: its compatibility "
        "mode is meta.mesh.compatibility (backward, forward, full, none)"
    ]
