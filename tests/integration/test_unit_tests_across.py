"""dbt unit tests whose input is an upstream public model, in both consumer styles (real dbt on DuckDB)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from mesh.project.config import load_mesh
from mesh.warehouse.runner import run_dbt
from tests.unit.test_publish_sync import snapshot

BIN = Path(sys.executable).parent
UNIT_TEST = "stg_orders.stg_orders_reads_upstream_orders"
STYLES = [("dbt_down", "source('dbt_up', 'public_orders')"), ("dbt_down_loom", "ref('dbt_up', 'public_orders')")]
# One fixture column as dbt renders it: `cast(<value> as <type>) as "<column>"`.
_CAST = re.compile(r"cast\((?:.+?) as ([A-Za-z ]+(?:\(\d+,\s*\d+\))?)\)\s+as \"(\w+)\"", re.DOTALL)


def _type(text: str) -> str:
    return re.sub(r"\s+", "", text.upper()).replace("CHARACTERVARYING", "VARCHAR")


def _results(root: Path, project: str) -> tuple[str, dict[str, dict]]:
    doc = orjson.loads((root / project / "target/run_results.json").read_bytes())
    return doc["args"]["which"], {r["unique_id"]: r for r in doc["results"]}


@pytest.mark.parametrize(("project", "given"), STYLES)
def test_mesh_runs_the_consumers_unit_test_on_the_upstream_model(built_template: Path, project: str, given: str) -> None:
    yml = (built_template / project / "models/staging/stg_orders.yml").read_text()
    assert f"- input: {given}" in yml
    which, results = _results(built_template, project)
    assert which == "build"
    result = results[f"unit_test.{project}.{UNIT_TEST}"]
    assert result["status"] == "pass", result["message"]
    # dbt typed the fixture from the upstream relation: exactly the columns and types of the interface.
    latest = orjson.loads((built_template / "registry/dbt_up/local/latest/manifest.json").read_bytes())
    published = latest["nodes"]["model.dbt_up.public_orders"]["columns"]
    fixture = result["compiled_code"].split("union all")[0]
    typed = {column: _type(kind) for kind, column in _CAST.findall(fixture)}
    assert typed == {name: _type(column["data_type"]) for name, column in published.items()}


def test_loom_input_restricts_no_package(workspace: Path) -> None:
    """The synced input's own name is what makes dbt accept the fixture's stand-in for dbt_up's
    public model: named `dbt_up`, dbt-loom restricts the package and dbt refuses the stand-in as
    `protected`. (Fails once dbt-loom or dbt-core carry `access: public` to the stand-in; the
    renaming can go then.)"""
    mesh = load_mesh(workspace, "local")
    synced = workspace / "dbt_down_loom/.mesh/upstreams/dbt_up.json"
    doc = orjson.loads(synced.read_bytes())
    assert doc["metadata"]["project_name"] != "dbt_up"
    assert doc["nodes"] and all(node["access"] == "public" for node in doc["nodes"].values())
    unit_tests = ["test", "--select", "test_type:unit"]
    passed = run_dbt(mesh, "dbt_down_loom", unit_tests, raise_on_failure=False)
    assert passed.success and f"unit_test.dbt_down_loom.{UNIT_TEST}" in passed.executed, passed.cause()
    doc["metadata"]["project_name"] = "dbt_up"
    synced.write_bytes(orjson.dumps(doc))
    refused = run_dbt(mesh, "dbt_down_loom", unit_tests, raise_on_failure=False)
    assert not refused.success
    assert "protected to the 'dbt_up' package" in refused.cause()


def test_loom_fixture_naming_an_unpublished_column_fails_clearly(workspace: Path) -> None:
    yml = workspace / "dbt_down_loom/models/staging/stg_orders.yml"
    yml.write_text(yml.read_text().replace("{order_id: 1, customer_id: 10,", "{order_id: 1, discount: 5, customer_id: 10,", 1))
    before = snapshot(workspace / "dbt_down_loom")
    out = subprocess.run(
        [str(BIN / "mesh"), "--root", str(workspace), "sync", "--project", "dbt_down_loom"],
        capture_output=True, text=True, check=False,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stderr.strip().count("\n") == 0, out.stderr
    assert (
        "dbt_down_loom/models/staging/stg_orders.yml: unit test stg_orders_reads_upstream_orders: its fixture "
        "for ref('dbt_up', 'public_orders') names column discount, which dbt_up does not publish"
    ) in out.stderr
    assert "order_id, customer_id, order_date, status, amount, payment_count, is_refunded" in out.stderr
    assert snapshot(workspace / "dbt_down_loom") == before
