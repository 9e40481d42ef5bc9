"""Contract diff, compatibility modes, versions and the gate, on synthetic interfaces (no dbt run)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.config import Mesh, load_mesh
from mesh.contracts import (
    ContractChange,
    diff_interfaces,
    diff_versions,
    evaluate,
    hits_of,
    publish_gate,
    rollback_project,
    type_change,
)
from mesh.errors import BreakingChangeError, ConfigError, ManifestError
from mesh.manifest import dump_json, extract_interface, load_interface
from mesh.publish import publish_project
from mesh.usage import Use, read_uses, usage_document
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


def test_column_changes_of_a_never_enforced_contract_are_notices() -> None:
    """As in dbt-core, for columns nobody observed: an interface published before the mesh read
    uncontracted columns from the catalog (their entries carry no `"contract": false`)."""
    old = iface(model(enforced=False))
    new = iface(model(enforced=False, columns={"id": "varchar"}))
    for node in (*old.values(), *new.values()):
        for column in node["columns"].values():
            del column["contract"]
    assert all(not c.breaking for c in diff_interfaces(old, new))


def test_observed_columns_of_an_uncontracted_model_are_judged() -> None:
    """Columns marked `"contract": false` (observed in the warehouse) are what consumers read: their
    removal or type change is breaking under the model's mode; the gate blocks it only where a
    consumer's recorded usage reaches it."""
    old = iface(model(enforced=False))
    new = iface(model(enforced=False, columns={"id": "varchar"}))
    changes = {(c.kind, c.column): c.breaking for c in diff_interfaces(old, new)}
    assert changes == {("column_removed", "amount"): True, ("data_type_changed", "id"): True}


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
