"""The gate on a producer whose public nodes have no contract, judged from the code before any build,
and the runs around it: every pipeline build of such a producer publishes what is live.

tests/fixtures/interface_mesh: `shop` publishes an uncontracted table (order_facts), a public seed,
a snapshot, an incremental model and a versioned contracted model; `ledger` reads it through
dbt-loom, `report` through generated sources; both read order_facts.amount.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import orjson
import pytest

from mesh.project.config import load_mesh
from mesh.run.pipeline import run_mesh
from tests.conftest import REPO

pytestmark = pytest.mark.slow
FIXTURE = REPO / "tests" / "fixtures" / "interface_mesh"
MESH = str(Path(sys.executable).parent / "mesh")
ORDER_FACTS = "shop/models/marts/order_facts.sql"


def mesh(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MESH, "--root", str(root), *args], capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def built_shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shop") / "mesh"
    shutil.copytree(FIXTURE, root)
    run_mesh(load_mesh(root, "local"), say=lambda _m: None)
    return root


@pytest.fixture
def shop(built_shop: Path, tmp_path: Path) -> Path:
    root = tmp_path / "mesh"
    shutil.copytree(built_shop, root, symlinks=True)
    return root


def live_columns(root: Path, relation: str) -> list[str]:
    database, schema, table = relation.split(".")
    with duckdb.connect(str(root / "warehouse" / f"{database}.duckdb"), read_only=True) as connection:
        rows = connection.execute(
            f"select column_name from duckdb_columns() where schema_name = '{schema}' and table_name = '{table}' "
            "order by column_index"
        ).fetchall()
    return [r[0] for r in rows]


def published_columns(root: Path, uid: str) -> list[str]:
    doc = orjson.loads((root / "registry/shop/local/latest/manifest.json").read_bytes())
    return list(doc["nodes"][uid]["columns"])


def edit(root: Path, old: str, new: str) -> None:
    path = root / ORDER_FACTS
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_an_uncontracted_producer_rebuilds_and_publishes_what_is_live(shop: Path) -> None:
    full = mesh(shop, "run", "--full")
    assert full.returncode == 0, full.stdout + full.stderr
    assert "gate passed" in full.stdout
    edit(shop, "    status\n", "    status,\n    1 as probe_col\n")
    added = mesh(shop, "run")
    assert added.returncode == 0, added.stdout + added.stderr
    assert "column_added order_facts.probe_col" in added.stdout
    assert published_columns(shop, "model.shop.order_facts") == live_columns(shop, "shop.marts.order_facts")
    assert "probe_col" in live_columns(shop, "shop.marts.order_facts")
    # the audit folder holds no stray file a later dbt call could have opened
    assert not (shop / "warehouse/.audit/shop").exists()


def test_check_names_a_removed_or_retyped_column_before_any_build(shop: Path) -> None:
    before = (shop / "warehouse/shop.duckdb").read_bytes()
    edit(shop, "    amount,\n", "")
    removed = mesh(shop, "check", "--project", "shop")
    assert removed.returncode == 1, removed.stdout + removed.stderr
    assert "column_removed" in removed.stdout and "ledger" in removed.stderr and "report" in removed.stderr
    assert "compared: working tree vs latest" in removed.stdout
    assert "columns from contract" in removed.stdout and "code (" in removed.stdout

    edit(shop, "    country,\n", "    country,\n    cast(amount as varchar) as amount,\n")
    retyped = mesh(shop, "check", "--project", "shop")
    assert retyped.returncode == 1, retyped.stdout + retyped.stderr
    assert "data_type_changed" in retyped.stdout and "decimal(18,2) -> varchar" in retyped.stdout

    edit(shop, "    cast(amount as varchar) as amount,\n", "    amount,\n")
    edit(shop, "    status\n", "    status,\n    2 as another_col\n")
    added = mesh(shop, "check", "--project", "shop", "--format", "json")
    assert added.returncode == 0, added.stdout + added.stderr
    doc = orjson.loads(added.stdout)
    assert [c["kind"] for c in doc["changes"]] == ["column_added"] and doc["changes"][0]["column"] == "another_col"
    assert doc["compared"].startswith("working tree vs latest")
    assert (shop / "warehouse/shop.duckdb").read_bytes() == before  # the check touched nothing live


def test_code_the_gate_cannot_read_is_named_and_left_to_the_audit_step(shop: Path) -> None:
    # A select * over a relation the gate knows nothing about: no columns can be told from the code.
    (shop / ORDER_FACTS).write_text("select * from read_csv_auto('" + str(shop / "shop/seeds/raw_orders.csv") + "')\n")
    checked = mesh(shop, "check", "--project", "shop", "--format", "markdown")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "cannot judge order_facts from code" in checked.stdout
    assert "the audit step judges it after the build" in checked.stdout
    # The run: the audit step compares the built relation and refuses before the swap.
    before = (shop / "warehouse/shop.duckdb").read_bytes()
    ran = mesh(shop, "run")
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert (shop / "warehouse/shop.duckdb").read_bytes() == before


def test_without_write_audit_publish_the_gate_protects_and_a_revert_passes(shop: Path) -> None:
    mesh_yml = shop / "mesh.yml"
    mesh_yml.write_text(mesh_yml.read_text().replace("    env: local\n", "    env: local\n    wap: false\n"))
    edit(shop, "    amount,\n", "")
    refused = mesh(shop, "run")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "amount" in live_columns(shop, "shop.marts.order_facts")  # refused before the build
    edit(shop, "    country,\n", "    country,\n    amount,\n")  # the revert
    reverted = mesh(shop, "run")
    assert reverted.returncode == 0, reverted.stdout + reverted.stderr


def test_a_damaged_only_version_is_superseded_by_a_passing_build(shop: Path) -> None:
    registry = shop / "registry/shop/local"
    (version,) = [p.name for p in (registry / "history").iterdir() if not p.name.startswith(".")]
    manifest = registry / "history" / version / "manifest.json"
    manifest.write_bytes(manifest.read_bytes()[:100])
    from mesh.interface.retention import fsck_project

    inspected = fsck_project(load_mesh(shop, "local"), "shop", repair=True)
    assert "publishes over it" in str(inspected.error())
    ran = mesh(shop, "run", "--full")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert f"replaces damaged latest {version}" in ran.stdout
    latest = orjson.loads((registry / "latest/manifest.json").read_bytes())
    assert latest["metadata"]["mesh"]["replaces_damaged"] == version
