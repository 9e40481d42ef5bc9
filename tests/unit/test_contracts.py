"""Contract diff, compatibility modes, versions and the gate, on synthetic interfaces (no dbt run)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.core.errors import BreakingChangeError, ConfigError, ManifestError
from mesh.interface.contracts import ContractChange, diff_interfaces, type_change
from mesh.interface.impact import evaluate, hits_of, impact
from mesh.interface.publish import publish_project
from mesh.interface.usage import ALL_COLUMNS, Feed, Use, read_usage, read_uses, usage_document
from mesh.interface.versions import diff_versions, rollback_project
from mesh.project.artifacts import extract_interface
from mesh.project.config import Mesh, load_mesh
from mesh.registry.document import dump_json, load_interface
from mesh.run.gate import publish_gate
from mesh.ui.cli import run_check
from tests import factories

Json = dict[str, Any]


def iface(*models: Json, project: str = "core") -> Json:
    """Interface nodes of a producer made of `models` (built through the real extraction)."""
    nodes, _groups = extract_interface(factories.manifest(project, list(models)))
    return nodes


def model(name: str = "orders", **kwargs: Any) -> Json:
    return factories.model("core", name, **kwargs)


def with_meta(node: Json, **mesh_meta: Any) -> Json:
    node = copy.deepcopy(node)
    node["meta"] = {"mesh": mesh_meta}
    return node


def kinds(changes: list[ContractChange]) -> list[tuple[str, str | None, bool]]:
    return [(c.kind, c.column, c.breaking) for c in changes]


def use(
    uid: str = "model.core.orders",
    columns: tuple[str, ...] = ("id",),
    pinned: bool = False,
    consumer: str = "app",
    node: str = "model.app.stg_orders",
) -> Use:
    return Use(consumer, node, "core", uid, "ref", pinned, columns)


# --- categories -----------------------------------------------------------------------------------


def test_self_diff_is_empty() -> None:
    nodes, _ = extract_interface(factories.producer())
    assert diff_interfaces(nodes, copy.deepcopy(nodes)) == []


@settings(max_examples=40, deadline=None)
@given(
    st.dictionaries(
        st.from_regex(r"[a-z][a-z_]{0,8}", fullmatch=True),
        st.sampled_from(["integer", "varchar", "date", "decimal(18, 2)", "boolean"]),
        min_size=1,
        max_size=6,
    ),
    st.sampled_from(["backward", "forward", "full", "none"]),
)
def test_self_diff_is_empty_for_any_columns(columns: dict[str, str], mode: str) -> None:
    nodes = iface(with_meta(model(columns=columns), compatibility=mode))
    assert diff_interfaces(nodes, copy.deepcopy(nodes)) == []


def test_model_removed_made_non_public_or_disabled() -> None:
    old = iface(model("orders"), model("customers"))
    new = iface(model("customers"))
    (change,) = diff_interfaces(old, new)
    assert (change.kind, change.breaking) == ("model_removed", True)
    assert change.message == "Contracted model 'model.core.orders' was deleted or renamed"

    manifest = factories.manifest("core", [model("orders", access="protected"), model("customers")])
    (change,) = diff_interfaces(old, new, manifest=manifest)
    assert (change.kind, change.new, change.breaking) == ("access_changed", "protected", True)

    manifest = factories.manifest("core", [model("customers")])
    manifest["disabled"] = {"model.core.orders": [model("orders")]}
    (change,) = diff_interfaces(old, new, manifest=manifest)
    assert change.message == "Contracted model 'model.core.orders' was disabled"


def test_contract_enforcement_removed_and_added() -> None:
    (change,) = diff_interfaces(iface(model()), iface(model(enforced=False)))
    assert (change.kind, change.breaking) == ("contract_removed", True)
    assert change.message.startswith("Contract enforcement was removed")
    (change,) = diff_interfaces(iface(model(enforced=False)), iface(model()))
    assert (change.kind, change.breaking) == ("contract_enforced", False)


def test_column_removed_and_added() -> None:
    old = iface(model(columns={"id": "integer", "amount": "double"}))
    new = iface(model(columns={"id": "integer", "note": "varchar"}))
    assert kinds(diff_interfaces(old, new)) == [
        ("column_added", "note", False),
        ("column_removed", "amount", True),
    ]
    removed = diff_interfaces(old, new)[1]
    assert removed.message == "Column was removed: amount"
    assert removed.unique_id == "model.core.orders" and removed.target == "orders.amount"


def test_data_type_changes_follow_dbt_normalisation() -> None:
    def change(old: str, new: str) -> list[tuple[str, str | None, bool]]:
        return kinds(diff_interfaces(iface(model(columns={"c": old})), iface(model(columns={"c": new}))))

    assert change("integer", "varchar") == [("data_type_changed", "c", True)]
    assert change("decimal(18, 2)", "DECIMAL(18,2)") == []  # same type, other spelling
    assert change("varchar(10)", "varchar(20)") == [("data_type_changed", "c", False)]  # widened
    assert change("varchar(20)", "varchar(10)") == [("data_type_changed", "c", True)]  # narrowed
    assert change("decimal(18, 2)", "decimal(18, 4)") == [("data_type_changed", "c", True)]  # fewer int digits
    (c,) = diff_interfaces(iface(model(columns={"c": "integer"})), iface(model(columns={"c": "bigint"})))
    assert c.message == "Column data_type changed: c (integer -> bigint, change)"


def test_type_change_classification() -> None:
    assert type_change("varchar", "varchar(5)") == "narrowing"
    assert type_change("varchar(5)", "varchar") == "widening"
    assert type_change("numeric(10, 2)", "numeric(12, 2)") == "widening"
    assert type_change("integer[]", "integer") == "change"
    assert type_change(None, "integer") == "change"
    assert type_change("Integer", " integer ") is None


def _constrained(materialized: str = "table", ctype: str = "not_null") -> Json:
    node = model(materialized=materialized)
    node["columns"]["id"]["constraints"] = [{"type": ctype, "name": None, "expression": None}]
    return node


def test_enforced_constraint_removed() -> None:
    (change,) = diff_interfaces(iface(_constrained()), iface(model()), adapter_type="duckdb")
    assert (change.kind, change.column, change.breaking) == ("constraint_removed", "id", True)
    assert change.message == "Enforced column level constraint was removed: 'not_null' constraint on column id"
    # Snowflake does not enforce unique: dropping it is no contract change (as in dbt-core).
    (change,) = diff_interfaces(iface(_constrained(ctype="unique")), iface(model()), adapter_type="snowflake")
    assert change.breaking is False
    # Views enforce no constraint.
    (change,) = diff_interfaces(iface(_constrained("view")), iface(model(materialized="view")))
    assert change.breaking is False


def test_model_level_constraint_removed() -> None:
    old = model()
    old["constraints"] = [{"type": "primary_key", "name": "pk_orders", "columns": ["id"]}]
    (change,) = diff_interfaces(iface(old), iface(model()), adapter_type="duckdb")
    assert change.breaking and change.column is None
    assert change.message == "Enforced model level constraint was removed: 'pk_orders' constraint on columns ['id']"


def test_materialization_change_breaks_only_when_it_drops_enforced_constraints() -> None:
    (change,) = [c for c in diff_interfaces(iface(_constrained()), iface(_constrained("view")), adapter_type="duckdb") if c.kind == "materialization_changed"]
    assert change.breaking and change.message == "Materialization changed with enforced constraints: table -> view"
    (change,) = diff_interfaces(iface(model()), iface(model(materialized="view")))
    assert (change.kind, change.breaking) == ("materialization_changed", False)


def test_additions_and_descriptions_are_not_breaking() -> None:
    old = iface(model())
    new_node = model(description="new words")
    new_node["columns"]["id"]["description"] = "new column words"
    new = iface(new_node, model("refunds"))
    assert kinds(diff_interfaces(old, new)) == [
        ("description_changed", None, False),
        ("description_changed", "id", False),
        ("model_added", None, False),
    ]


def test_column_changes_of_a_never_enforced_contract_are_decided_by_usage() -> None:
    old = iface(model(enforced=False))
    new = iface(model(enforced=False, columns={"id": "varchar", "note": "text"}))
    changes = diff_interfaces(old, new)
    assert all(not c.breaking for c in changes)
    assert {(c.kind, c.column, c.usage_decides) for c in changes} == {
        ("column_removed", "amount", True),
        ("data_type_changed", "id", True),
        ("column_added", "note", False),  # additions stay notices
    }
    removed = next(c for c in changes if c.kind == "column_removed")
    assert removed.message == "Column was removed: amount (no enforced contract: breaking if a consumer uses it)"
    # Under `none` nothing is breaking, used or not.
    lax = iface(with_meta(model(enforced=False), compatibility="none"))
    assert not any(c.usage_decides for c in diff_interfaces(lax, iface(with_meta(model(enforced=False, columns={"id": "integer"}), compatibility="none"))))


def test_catalog_columns_marked_contract_false_are_decided_by_usage() -> None:
    # Columns a catalog showed for an uncontracted model carry "contract": false; types appearing
    # for the first time are no change, a later retype or removal is usage-decided.
    typed = iface(model(enforced=False, columns={"id": "integer", "amount": "double"}))
    bare = copy.deepcopy(typed)
    for column in bare["model.core.orders"]["columns"].values():
        column["data_type"] = None
    for node in typed.values():
        for column in node["columns"].values():
            column["contract"] = False
    assert diff_interfaces(bare, typed) == []
    retyped = copy.deepcopy(typed)
    node = retyped["model.core.orders"]
    node["columns"]["amount"]["data_type"] = "varchar"
    del node["columns"]["id"]
    changes = diff_interfaces(typed, retyped)
    assert {(c.kind, c.column, c.breaking, c.usage_decides) for c in changes} == {
        ("column_removed", "id", False, True),
        ("data_type_changed", "amount", False, True),
    }
    # The same key on an enforced model's column: not promised by the contract either.
    enforced = iface(model(columns={"id": "integer", "amount": "double"}))
    enforced["model.core.orders"]["columns"]["amount"]["contract"] = False
    dropped = copy.deepcopy(enforced)
    del dropped["model.core.orders"]["columns"]["amount"]
    (change,) = diff_interfaces(enforced, dropped)
    assert (change.breaking, change.usage_decides) == (False, True)


# --- compatibility modes ---------------------------------------------------------------------------

BASE = {"id": "integer", "amount": "varchar(10)"}
CASES = {
    "removed": {"id": "integer"},
    "added": {**BASE, "note": "varchar"},
    "narrowed": {"id": "integer", "amount": "varchar(5)"},
    "widened": {"id": "integer", "amount": "varchar(20)"},
    "retyped": {"id": "integer", "amount": "integer"},
}
EXPECTED = {  # mode -> the cases that are breaking
    "backward": {"removed", "narrowed", "retyped"},
    "forward": {"added", "widened", "retyped"},
    "full": {"removed", "added", "narrowed", "widened", "retyped"},
    "none": set(),
}


@pytest.mark.parametrize("mode", sorted(EXPECTED))
def test_compatibility_modes(mode: str) -> None:
    breaking = set()
    for case, columns in CASES.items():
        old = iface(with_meta(model(columns=BASE), compatibility=mode))
        new = iface(with_meta(model(columns=columns), compatibility=mode))
        changes = diff_interfaces(old, new)
        assert changes, case  # every case is reported, breaking or not
        assert all(c.mode == mode for c in changes)
        if any(c.breaking for c in changes):
            breaking.add(case)
    assert breaking == EXPECTED[mode]


def test_model_removal_is_breaking_in_every_mode_but_none() -> None:
    for mode, expected in (("forward", True), ("full", True), ("none", False)):
        (change,) = diff_interfaces(iface(with_meta(model(), compatibility=mode)), {})
        assert change.breaking is expected, mode


def test_mode_change_is_judged_under_both_modes() -> None:
    old = iface(model(columns=BASE))
    # Loosening to `none` in the same change does not let a removal through.
    new = iface(with_meta(model(columns={"id": "integer"}), compatibility="none"))
    changes = diff_interfaces(old, new)
    assert ("column_removed", "amount", True) in kinds(changes)
    assert ("compatibility_changed", None, False) in kinds(changes)
    # Tightening to `full` applies at once: an added column is breaking.
    new = iface(with_meta(model(columns={**BASE, "x": "integer"}), compatibility="full"))
    assert ("column_added", "x", True) in kinds(diff_interfaces(old, new))


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ManifestError, match="compatibility is 'sideways'"):
        diff_interfaces(iface(model()), iface(with_meta(model(description="x"), compatibility="sideways")))


# --- versions -------------------------------------------------------------------------------------


def customers(version: int, latest: int, columns: dict[str, str] | None = None, **kw: Any) -> Json:
    return factories.model("core", "customers", version=version, latest_version=latest, columns=columns or {"id": "integer", "name": "text"}, **kw)


def test_adding_a_version_is_not_breaking_and_pinned_consumers_keep_working() -> None:
    old = iface(customers(1, 1))
    new = iface(customers(1, 1), customers(2, 1, {"id": "integer", "first": "text"}))
    assert kinds(diff_interfaces(old, new)) == [("version_added", None, False)]


def test_bumping_latest_version_reaches_only_unpinned_consumers() -> None:
    old = iface(customers(1, 1), customers(2, 1, {"id": "integer", "first": "text"}))
    new = iface(customers(1, 2), customers(2, 2, {"id": "integer", "first": "text"}))
    changes = diff_interfaces(old, new)
    assert {(c.kind, c.column, c.breaking, c.audience) for c in changes} == {
        ("latest_version_changed", None, False, "unpinned"),
        ("column_removed", "name", True, "unpinned"),
        ("column_added", "first", False, "unpinned"),
        ("relation_changed", None, False, "unpinned"),  # v2 lives in its own relation
    }
    removed = next(c for c in changes if c.kind == "column_removed")
    assert removed.unique_id == "model.core.customers.v1"  # what unpinned consumers resolved to
    pinned = use("model.core.customers.v1", ("name",), pinned=True)
    unpinned = use("model.core.customers.v1", ("name",), pinned=False, node="model.app.latest")
    assert [h.use for h in hits_of(removed, [pinned, unpinned])] == [unpinned]


def test_removing_a_version_is_breaking_for_its_pinned_consumers() -> None:
    old = iface(customers(1, 2), customers(2, 2))
    new = iface(customers(2, 2))
    (change,) = diff_interfaces(old, new)
    assert (change.kind, change.breaking, change.audience) == ("version_removed", True, "all")
    assert change.message == "Version 1 of contracted model 'customers' was removed"
    assert hits_of(change, [use("model.core.customers.v1", (), pinned=True)])
    assert not hits_of(change, [use("model.core.customers.v2", ("*",))])


def test_making_a_model_versioned_keeps_unpinned_consumers_on_the_latest() -> None:
    old = iface(model(columns={"id": "integer", "amount": "double"}))
    v1 = factories.model("core", "orders", version=1, latest_version=1, alias="orders", columns={"id": "integer", "amount": "double"})
    v2 = factories.model("core", "orders", version=2, latest_version=1, columns={"id": "integer"})
    changes = diff_interfaces(old, iface(v1, v2))
    assert not any(c.breaking for c in changes)
    assert {c.kind for c in changes} == {"latest_version_changed", "version_added"}
    # Moving latest to v2 (without `amount`) breaks the unpinned consumers that read `amount`.
    v1b = {**v1, "latest_version": 2}
    v2b = {**v2, "latest_version": 2}
    changes = diff_interfaces(old, iface(v1b, v2b))
    (removed,) = [c for c in changes if c.breaking]
    assert (removed.kind, removed.unique_id, removed.column) == ("column_removed", "model.core.orders", "amount")
    assert hits_of(removed, [use("model.core.orders", ("amount",))])


# --- the gate -------------------------------------------------------------------------------------


def test_hits_match_columns_and_stars() -> None:
    old = iface(model(columns={"id": "integer", "amount": "double"}))
    new = iface(model(columns={"id": "integer", "note": "text"}))
    removed, added = (
        next(c for c in diff_interfaces(old, new) if c.kind == k) for k in ("column_removed", "column_added")
    )
    reads_amount, reads_id, reads_all = use(columns=("amount",)), use(columns=("id",)), use(columns=("*",))
    assert [h.use for h in hits_of(removed, [reads_amount, reads_id, reads_all])] == [reads_amount, reads_all]
    # An added column only reaches a consumer that reads every column.
    assert [h.use for h in hits_of(added, [reads_amount, reads_all])] == [reads_all]
    other = Use("app", "model.app.x", "core", "model.core.refunds", "ref", False, ("*",))
    assert hits_of(removed, [other]) == []


def test_gate_blocks_hits_warns_on_unconsumed_and_allows_with_reason() -> None:
    old = iface(model(columns={"id": "integer", "amount": "double", "spare": "text"}))
    new = iface(model(columns={"id": "integer"}))
    changes = diff_interfaces(old, new)
    uses = [use(columns=("amount", "id"), consumer="app", node="model.app.stg_orders")]
    result = evaluate("core", "local", "V1", changes, uses)
    assert result.blocked
    text = "\n".join(result.lines())
    assert "change" in text and "consumer project" in text and "consumer model" in text
    assert "column_removed orders  app               stg_orders      amount" in text
    assert "WARNING: breaking change column_removed orders.spare has no registered consumer" in text
    assert "hint:" in text and "deprecation_date" in text
    message = str(result.error())
    assert "app model stg_orders (column amount)" in message and "\n" not in message
    assert result.error().exit_code == 1

    allowed = evaluate("core", "local", "V1", changes, uses, allow_breaking=True, reason="agreed with app")
    assert not allowed.blocked
    assert allowed.meta()["reason"] == "agreed with app"
    with pytest.raises(ConfigError, match="--reason"):
        evaluate("core", "local", "V1", changes, uses, allow_breaking=True)

    nobody = evaluate("core", "local", "V1", changes, [])
    assert not nobody.blocked and len(nobody.unconsumed) == 2


def test_usage_decides_whether_an_uncontracted_column_change_breaks() -> None:
    old = iface(model(enforced=False, columns={"id": "integer", "amount": "double", "spare": "text"}))
    new = iface(model(enforced=False, columns={"id": "integer"}))
    changes = diff_interfaces(old, new)
    result = evaluate("core", "local", "V1", changes, [use(columns=("amount",))])
    assert result.blocked
    assert [(c.column, c.breaking) for c in result.breaking] == [("amount", True)]
    assert [(h.use.node, h.column) for h in result.hits] == [("model.app.stg_orders", "amount")]
    text = "\n".join(result.lines())
    assert "BREAKING  column_removed          orders.amount: Column was removed: amount (no enforced contract" in text
    assert "change    column_removed          orders.spare" in text  # unused: a notice
    assert not result.unconsumed  # nor a warning: it was never breaking
    assert not evaluate("core", "local", "V1", changes, [use(columns=("id",))]).blocked


# --- impact through chains of projects -------------------------------------------------------------


def feed(node: str, column: str, columns: tuple[str, ...], upstream_node: str = "model.core.orders",
         project: str = "marketing", pinned: bool = False) -> Feed:
    return Feed(project, node, column, upstream_node.split(".")[1], upstream_node, pinned, columns)


def reader(consumer: str, node: str, upstream_node: str, columns: tuple[str, ...], pinned: bool = False) -> Use:
    return Use(consumer, node, upstream_node.split(".")[1], upstream_node, "ref", pinned, columns)


VALUE = "model.marketing.customer_value"
CHAIN_USES = [
    reader("marketing", "model.marketing.stg_core_orders", "model.core.orders", ("amount", "customer_id", "status")),
    reader("finance", "model.finance.ltv", VALUE, ("customer_id", "lifetime_amount")),
    reader("finance", "model.finance.ids", VALUE, ("customer_id",)),
    reader("board", "model.board.kpis", "model.finance.ltv_public", ("ltv",)),
]
CHAIN_LINEAGE = [
    feed(VALUE, "lifetime_amount", ("amount",)),
    feed(VALUE, "customer_id", ("customer_id",)),
    feed("model.finance.ltv_public", "ltv", ("lifetime_amount",), upstream_node=VALUE, project="finance"),
]


def removal(column: str | None, uid: str = "model.core.orders") -> ContractChange:
    kind = "column_removed" if column else "model_removed"
    return ContractChange(kind, uid, column, None, None, True, "gone", effect="removal" if column else "model")


def routes(result_hits: list[Any], origin: str) -> set[str]:
    return {" → ".join(h.route(origin)) for h in result_hits}


def test_impact_follows_public_columns_through_projects() -> None:
    hits, reached = impact(removal("amount"), CHAIN_USES, CHAIN_LINEAGE)
    assert routes(hits, "core.orders.amount") == {
        "core.orders.amount → marketing.stg_core_orders",
        "core.orders.amount → marketing.customer_value.lifetime_amount → finance.ltv",
        "core.orders.amount → marketing.customer_value.lifetime_amount → finance.ltv_public.ltv → board.kpis",
    }
    assert [h.hops for h in hits] == [1, 2, 3]
    assert [r.path[-1] for r in reached] == ["marketing.customer_value.lifetime_amount", "finance.ltv_public.ltv"]
    # A column marketing reads but passes into nothing public stops there.
    hits, reached = impact(removal("status"), CHAIN_USES, CHAIN_LINEAGE)
    assert {h.use.consumer for h in hits} == {"marketing"} and reached == []
    # Removing the whole model reaches every public column derived from it.
    hits, _ = impact(removal(None), CHAIN_USES, CHAIN_LINEAGE)
    assert {(h.use.node, h.column) for h in hits} == {
        ("model.marketing.stg_core_orders", "(model)"),
        ("model.finance.ltv", "lifetime_amount"),
        ("model.finance.ltv", "customer_id"),
        ("model.finance.ids", "customer_id"),
        ("model.board.kpis", "ltv"),
    }


def test_impact_is_conservative_with_stars_and_respects_pinning() -> None:
    star_in = [feed(VALUE, "score", (ALL_COLUMNS,))]  # every core column may feed `score`
    star_out = [feed(VALUE, ALL_COLUMNS, ("amount",))]  # `amount` may feed every output column
    uses = [*CHAIN_USES, reader("finance", "model.finance.scores", VALUE, ("score",))]
    hits, _ = impact(removal("order_date"), uses, star_in)
    assert {h.use.node for h in hits} == {"model.finance.scores"}
    hits, _ = impact(removal("amount"), uses, star_out)
    assert {h.use.node for h in hits if h.path} == {"model.finance.ltv", "model.finance.ids", "model.finance.scores"}
    # A change only pinned references see does not follow lineage recorded through unpinned ones.
    pinned_only = ContractChange("column_removed", "model.core.orders", "amount", None, None, True, "gone",
                                 audience="pinned", effect="removal")
    hits, reached = impact(pinned_only, CHAIN_USES, CHAIN_LINEAGE)
    assert hits == [] and reached == []


def test_impact_ends_on_records_that_form_a_cycle() -> None:
    # Stale records may say marketing feeds finance feeds marketing: each column is followed once.
    back = "model.marketing.back"
    lineage = [
        *CHAIN_LINEAGE,
        feed(back, "lifetime_amount", ("ltv",), upstream_node="model.finance.ltv_public"),
        feed(VALUE, "lifetime_amount", ("lifetime_amount",), upstream_node=back),
    ]
    uses = [*CHAIN_USES, reader("marketing", "model.marketing.x", "model.finance.ltv_public", ("ltv",))]
    hits, reached = impact(removal("amount"), uses, lineage)
    assert len(reached) == len({(r.feed.node, r.feed.column) for r in reached}) == 3
    assert "model.marketing.x" in {h.use.node for h in hits}


def test_the_three_formats_carry_the_same_hits() -> None:
    old = iface(model(columns={"id": "integer", "amount": "double", "status": "text"}))
    new = iface(model(columns={"id": "integer"}))
    uses = [*CHAIN_USES, reader("marketing", "model.marketing.stg_core_orders", "model.core.orders", ("id",))]
    lineage = [*CHAIN_LINEAGE, feed(VALUE, "spare", ("status",))]
    result = evaluate("core", "local", "V1", diff_interfaces(old, new), uses, lineage=lineage,
                      without_lineage=["finance"])
    assert result.blocked
    text = "\n".join(result.lines())
    expected = {
        "core.orders.amount → marketing.stg_core_orders",
        "core.orders.status → marketing.stg_core_orders",
        "core.orders.amount → marketing.customer_value.lifetime_amount → finance.ltv",
        "core.orders.amount → marketing.customer_value.lifetime_amount → finance.ltv_public.ltv → board.kpis",
    }
    assert {result.route(h) for h in result.hits} == expected
    for route in expected:
        assert route in text
    assert "breaking changes hit 3 consumer projects (board, finance, marketing); 2 hits through public columns of finance, marketing:" in text
    assert "note: core.orders.status → marketing.customer_value.spare: public column of marketing, no consumer on record reads it" in text
    assert "note: finance's usage record predates column lineage" in text
    doc = orjson.loads(result.render("json"))
    assert {" → ".join(h["path"]) for h in doc["hits"]} == expected
    assert doc["blocked"] is True and doc["error"] == str(result.error()) and doc["hint"]
    assert [" → ".join(r["path"]) for r in doc["unread_public_columns"]] == ["core.orders.status → marketing.customer_value.spare"]
    markdown = result.render("markdown")
    rows = [line for line in markdown.splitlines() if line.startswith("| `column_removed`")]
    assert {row.split(" | ")[-1].rstrip(" |").replace("`", "") for row in rows} == expected
    assert markdown.startswith("<!-- mesh check core/local -->\n### Contract check for `core` (local): **blocked**")
    assert "**hint:**" in markdown and "predates column lineage" in markdown
    assert "\n".join(result.lines()) == result.render("text")


def test_check_refuses_an_unknown_format_before_anything_runs(tmp_path: Path) -> None:
    (tmp_path / "mesh.yml").write_text(MESH_YML)
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "dbt_project.yml").write_text("name: core\n")
    with pytest.raises(ConfigError, match="unknown format 'html': use text, json, markdown") as info:
        run_check(load_mesh(tmp_path, "local"), "core", False, None, "html")
    assert info.value.exit_code == 2
    assert not (tmp_path / "core" / "target").exists()


# --- on a registry ----------------------------------------------------------------------------------

MESH_YML = """
version: 1
projects:
  core: {path: core}
  app: {path: app}
targets:
  local: {registry: "file://registry", env: local}
"""


def write_build(project_dir: Path, doc: Json, generated_at: str) -> None:
    doc = copy.deepcopy(doc)
    doc["metadata"]["generated_at"] = generated_at
    doc["metadata"]["invocation_id"] = generated_at
    target = project_dir / "target"
    target.mkdir(parents=True, exist_ok=True)
    (target / "manifest.json").write_bytes(orjson.dumps(doc))
    (target / "run_results.json").write_bytes(orjson.dumps(factories.run_results(doc)))


@pytest.fixture
def mesh(tmp_path: Path) -> Mesh:
    (tmp_path / "mesh.yml").write_text(MESH_YML)
    for name in ("core", "app"):
        (tmp_path / name / "models").mkdir(parents=True)
        (tmp_path / name / "dbt_project.yml").write_text(f"name: {name}\n")
    (tmp_path / "app" / "dependencies.yml").write_text("projects:\n  - name: core\n")
    write_build(tmp_path / "core", factories.manifest("core", [model(), model("refunds")]), "2026-11-23T10:00:00Z")
    mesh = load_mesh(tmp_path, "local")
    publish_project(mesh, "core")
    consumer = factories.manifest("app", [])
    uses = [use(columns=("amount", "id")), use("model.core.refunds", ("*",), node="model.app.stg_refunds")]
    mesh.registry.write_private("app", "local", "usage", dump_json(usage_document(consumer, uses, "local")))
    return mesh


def test_usage_round_trips_through_the_registry(mesh: Mesh) -> None:
    uses = read_uses(mesh, "core")
    assert [(u.node, u.columns) for u in uses] == [
        ("model.app.stg_orders", ("amount", "id")),
        ("model.app.stg_refunds", ("*",)),
    ]
    assert read_usage(mesh).without_lineage == []  # format 2, even with no public model


def test_publish_gate_refuses_then_records_the_reason(mesh: Mesh) -> None:
    before = mesh.registry.list_versions("core", "local")
    dropped = factories.manifest("core", [model(columns={"id": "integer"}), model("refunds")])
    write_build(mesh.root / "core", dropped, "2026-11-23T11:00:00Z")
    said: list[str] = []
    with pytest.raises(BreakingChangeError, match="app model stg_orders"):
        publish_project(mesh, "core", checks=(publish_gate(mesh, "core", say=said.append),))
    assert mesh.registry.list_versions("core", "local") == before
    assert any("consumer project" in line for line in said)

    record: dict[str, Any] = {}
    gate = publish_gate(mesh, "core", allow_breaking=True, reason="app migrates today", say=said.append, record=record)
    result = publish_project(mesh, "core", checks=(gate,), extra_meta=record)
    assert result.status == "published"
    doc = load_interface(mesh.registry.read_version("core", "local", result.version).body, "v", "core")
    meta = doc["metadata"]["mesh"]
    assert meta["reason"] == "app migrates today"
    assert meta["breaking_changes"][0]["kind"] == "column_removed"
    assert meta["breaking_changes"][0]["consumers"] == ["app:stg_orders"]


def test_registry_diff_and_rollback(mesh: Mesh) -> None:
    (first,) = mesh.registry.list_versions("core", "local")
    write_build(mesh.root / "core", factories.manifest("core", [model(columns={"id": "integer"}), model("refunds")]), "2026-11-23T11:00:00Z")
    record: dict[str, Any] = {}
    gate = publish_gate(mesh, "core", True, "planned", say=lambda _m: None, record=record)
    second = publish_project(mesh, "core", checks=(gate,), extra_meta=record).version
    old, new, changes = diff_versions(mesh, "core")
    assert (old, new) == (first, second)
    assert kinds(changes) == [("column_removed", "amount", True)]

    # Rolling back re-adds `amount`: no consumer is hurt by an addition.
    result = rollback_project(mesh, "core", first, reason="bad release", say=lambda _m: None)
    assert result.status == "published" and result.version not in (first, second)
    latest = mesh.registry.read_latest("core", "local")
    assert latest is not None and latest.version == result.version
    doc = load_interface(latest.body, "latest", "core")
    assert doc["metadata"]["mesh"]["rollback_of"] == first
    assert doc["metadata"]["mesh"]["reason"] == "bad release"
    assert doc["metadata"]["mesh"]["previous"] == second
    first_doc = load_interface(mesh.registry.read_version("core", "local", first).body, "first", "core")
    assert doc["nodes"] == first_doc["nodes"]
    assert diff_versions(mesh, "core", second, result.version)[2][0].kind == "column_added"
    # Rolling back to what latest already holds changes nothing.
    assert rollback_project(mesh, "core", result.version, say=lambda _m: None).status == "unchanged"
