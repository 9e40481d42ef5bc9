"""Acceptance of the interface with real dbt runs (tests/fixtures/interface_mesh): a producer, shop,
publishes a public seed, a public snapshot, a public model without a contract, an incremental public
model and a versioned public model with a deprecated v1 (and keeps a private and a protected model
to itself); ledger reads them through dbt-loom refs, report through generated sources."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import orjson
import pytest
from ruamel.yaml import YAML
from ruamel.yaml.events import AliasEvent

from mesh.consumer.validate import validate_projects
from mesh.core.errors import BuildFailedError, PublishRefusedError
from mesh.interface.publish import ensure_catalog, publish_project
from mesh.project.config import load_mesh
from mesh.run.gate import check_project
from mesh.run.pipeline import MeshRun, run_mesh
from mesh.warehouse.runner import run_dbt
from tests.conftest import REPO
from tests.unit.test_publish_sync import snapshot

FIXTURE = REPO / "tests" / "fixtures" / "interface_mesh"
_IGNORED = shutil.ignore_patterns(
    "target", "logs", ".mesh", "_mesh_*.yml", "dbt_loom.config.yml", "warehouse", "registry", "lineage"
)
PUBLIC = {
    "seed.shop.countries",
    "snapshot.shop.order_status_history",
    "model.shop.order_facts",
    "model.shop.order_events",
    "model.shop.customers.v1",
    "model.shop.customers.v2",
}
UNCONTRACTED = ["model.shop.order_facts", "seed.shop.countries", "snapshot.shop.order_status_history"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, MeshRun]:
    """The fixture mesh, copied and built (build, publish, sync, validate) once for this module."""
    root = tmp_path_factory.mktemp("interface") / "mesh"
    shutil.copytree(FIXTURE, root, ignore=_IGNORED)
    return root, run_mesh(load_mesh(root, "local"), say=lambda _msg: None)


@pytest.fixture
def copy(built: tuple[Path, MeshRun], tmp_path: Path) -> Path:
    dest = tmp_path / "mesh"
    shutil.copytree(built[0], dest, symlinks=True)
    return dest


def latest(root: Path) -> dict:
    return orjson.loads((root / "registry/shop/local/latest/manifest.json").read_bytes())


def test_mesh_builds_publishes_and_validates_warning_free(built: tuple[Path, MeshRun]) -> None:
    root, run = built
    assert [(b.project, b.success, b.warnings) for b in run.builds] == [
        ("shop", True, []), ("ledger", True, []), ("report", True, [])
    ]
    assert [(p.project, p.status, p.public_models) for p in run.publishes] == [("shop", "published", 6)]
    nodes = latest(root)["nodes"]
    assert set(nodes) == PUBLIC  # no private or protected model, no private seed
    assert {uid: nodes[uid]["resource_type"] for uid in PUBLIC} == {uid: uid.split(".")[0] for uid in PUBLIC}
    assert nodes["model.shop.order_events"]["config"]["materialized"] == "incremental"
    assert nodes["model.shop.customers.v1"]["deprecation_date"].startswith("2099-12-31")
    reports = {r.project: r for r in run.reports}
    assert all(r.ok and not r.findings for r in reports.values()), [r.text() for r in reports.values()]
    for project, via in (("ledger", "ref"), ("report", "source")):
        reached = {(e.via, e.upstream_node) for e in reports[project].edges}
        assert reached == {(via, uid) for uid in PUBLIC - {"model.shop.customers.v1"}}


def test_uncontracted_columns_come_from_the_catalog(built: tuple[Path, MeshRun]) -> None:
    root, _run = built
    nodes = latest(root)["nodes"]
    facts = nodes["model.shop.order_facts"]
    assert facts["contract"] == {"enforced": False}
    assert {name: (c["data_type"], c["contract"]) for name, c in facts["columns"].items()} == {
        "order_id": ("integer", False),
        "customer_id": ("integer", False),
        "country": ("varchar", False),
        "amount": ("decimal(18,2)", False),
        "status": ("varchar", False),
    }
    assert facts["columns"]["amount"]["description"] == "Order amount in EUR."  # YAML kept
    seed = nodes["seed.shop.countries"]["columns"]
    assert {n: c["data_type"] for n, c in seed.items()} == {"code": "varchar", "name": "varchar"}
    history = nodes["snapshot.shop.order_status_history"]["columns"]
    assert history["dbt_valid_from"]["data_type"] == "timestamp" and history["status"]["contract"] is False
    events = nodes["model.shop.order_events"]["columns"]
    assert events["order_id"] == {
        "name": "order_id", "data_type": "integer", "description": "",
        "constraints": [{"type": "not_null", "name": None, "expression": None, "warn_unenforced": True,
                         "warn_unsupported": True, "to": None, "to_columns": []}],
    }
    # The warehouse was read for exactly the nodes that need it: no second dbt invocation, the
    # build's own artifacts untouched, the published columns those of the live relations.
    target = root / "shop/target"
    assert not (target / "mesh_catalog").exists()
    manifest = orjson.loads((target / "manifest.json").read_bytes())
    results = orjson.loads((target / "run_results.json").read_bytes())
    assert manifest["metadata"]["invocation_id"] == results["metadata"]["invocation_id"]
    catalog = ensure_catalog(load_mesh(root, "local"), "shop", manifest)
    assert catalog is not None and sorted(catalog["nodes"]) == UNCONTRACTED


def test_dbt_loom_injects_the_seed_and_the_snapshot(copy: Path) -> None:
    root = copy  # a copy: this process's dbt adapter may still hold the built mesh's files open
    manifest = orjson.loads((root / "ledger/target/manifest.json").read_bytes())
    assert {"seed.shop.countries", "snapshot.shop.order_status_history"} <= set(manifest["nodes"])
    assert manifest["parent_map"]["model.ledger.ledger_orders"] == ["model.shop.order_facts", "seed.shop.countries"]
    with duckdb.connect(str(root / "warehouse/ledger.duckdb"), read_only=True) as con:
        rows = con.execute("select country_name, count(*) from marts.ledger_orders group by 1 order by 1").fetchall()
        assert rows == [("France", 1), ("Germany", 2), ("Japan", 1)]
        assert con.execute("select count(*) from marts.ledger_status").fetchone() == (4,)
    with duckdb.connect(str(root / "warehouse/report.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from marts.report_orders").fetchone() == (4,)


def test_generated_sources_have_no_anchors(built: tuple[Path, MeshRun]) -> None:
    root, _run = built
    text = (root / "report/models/_mesh_shop.yml").read_text()
    assert not [e for e in YAML(typ="safe").parse(text) if isinstance(e, AliasEvent) or getattr(e, "anchor", None)]
    data = YAML(typ="safe").load(text)
    tables = {t["name"]: t for s in data["sources"] for t in s["tables"]}
    # `customers` (the latest version) and `customers_v2` are two tables of one node.
    assert tables["customers"]["columns"] == tables["customers_v2"]["columns"]
    assert tables["countries"]["config"]["meta"]["mesh"]["unique_id"] == "seed.shop.countries"


def test_removing_a_used_column_of_the_uncontracted_model_fails_the_gate(copy: Path) -> None:
    facts = copy / "shop/models/marts/order_facts.sql"
    facts.write_text(facts.read_text().replace("    amount,\n", ""))
    mesh = load_mesh(copy, "local")
    run_dbt(mesh, "shop", ["build", "--select", "order_facts"])  # as CI builds a pull request
    result = check_project(mesh, "shop")
    assert result.blocked
    assert {(h.use.consumer, h.change.kind, h.column) for h in result.hits} == {
        ("ledger", "column_removed", "amount"), ("report", "column_removed", "amount")
    }
    message = str(result.error())
    assert "column_removed order_facts.amount used by ledger model ledger_orders" in message
    assert "report model report_orders" in message


def test_require_contracts_refuses_the_publish_naming_the_node(copy: Path) -> None:
    config = copy / "mesh.yml"
    config.write_text(config.read_text().replace("require_contracts: false", "require_contracts: true"))
    mesh = load_mesh(copy, "local")
    before = snapshot(copy / "registry")
    for attempt in (lambda: publish_project(mesh, "shop"), lambda: check_project(mesh, "shop")):
        with pytest.raises(PublishRefusedError) as info:
            attempt()
        message = str(info.value)
        assert message.startswith(
            "shop: public model model.shop.order_facts has no enforced contract (and 2 more: "
            "seed.shop.countries, snapshot.shop.order_status_history), and mesh.yml sets require_contracts"
        )
        assert info.value.exit_code == 1 and "\n" not in message
    assert snapshot(copy / "registry") == before


def test_validate_refuses_to_judge_a_failed_build(copy: Path) -> None:
    model = copy / "ledger/models/ledger_orders.sql"
    model.write_text(model.read_text().replace("o.amount", "o.amount_that_is_not_there"))
    mesh = load_mesh(copy, "local")
    assert not run_dbt(mesh, "ledger", ["build", "--select", "ledger_orders"], raise_on_failure=False).success
    with pytest.raises(BuildFailedError) as info:
        validate_projects(mesh, ["ledger"])
    assert str(info.value).startswith("ledger's last build failed (model.ledger.ledger_orders (error)")
    assert info.value.exit_code == 1
