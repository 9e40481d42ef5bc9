"""A consumer that reads its upstream through its own hand-written `sources:` joins without an edit:
its source names, tests and descriptions survive; sync keeps relation, columns and types in step;
usage, validation and data versions follow the adopted edges. Three runs: cold, unchanged, changed.

The consumer is the template's dbt_down as another team would have written it: every
`source('dbt_up', …)` reads `source('orders_platform', …)` or `source('revenue_platform', …)`,
declared in its own YAML with a `not_null` test of its own.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import orjson
import pytest

from mesh.core.errors import SyncError
from mesh.project.config import load_mesh
from mesh.run.pipeline import run_mesh, sync_project
from mesh.ui.onboard import add_project
from tests.conftest import REPO

pytestmark = pytest.mark.slow
RENAMES = {
    "source('dbt_up', 'public_customers_v1')": "source('orders_platform', 'customers_v1')",
    "source('dbt_up', 'public_customers')": "source('orders_platform', 'customers')",
    "source('dbt_up', 'public_orders')": "source('orders_platform', 'orders')",
    "source('dbt_up', 'public_order_payments')": "source('orders_platform', 'order_payments')",
    "source('dbt_up', 'public_daily_revenue')": "source('revenue_platform', 'daily_revenue')",
}
OWN_SOURCES = """\
version: 2

sources:
  - name: orders_platform
    description: "The order platform, as this team reads it."
    database: dbt_up
    schema: marts
    tables:
      - name: orders
        identifier: public_orders
        description: "Orders (our own description)."
        columns:
          - name: order_id
            data_tests:
              - not_null
      - name: customers
        identifier: public_customers_v2
      - name: customers_v1
        identifier: public_customers_v1
      - name: order_payments
        identifier: order_payments
  - name: revenue_platform
    database: dbt_up
    schema: finance
    tables:
      - name: daily_revenue
        identifier: public_daily_revenue
"""


def own_sources_consumer(workspace: Path) -> Path:
    team = workspace / "teams/ledger_team"
    shutil.copytree(REPO / "dbt_down", team, ignore=shutil.ignore_patterns("target", ".mesh", "_mesh_*.yml", "logs"))
    spec = team / "dbt_project.yml"
    spec.write_text(
        spec.read_text().replace("name: dbt_down", "name: ledger_team").replace("profile: dbt_down", "profile: ledger_team")
        .replace("  dbt_down:\n", "  ledger_team:\n")
    )
    for sql in [*team.rglob("*.sql"), *team.rglob("*.yml")]:  # models, and unit tests' inputs
        text = sql.read_text()
        for old, new in RENAMES.items():
            text = text.replace(old, new)
        sql.write_text(text)
    (team / "models/staging/_sources.yml").write_text(OWN_SOURCES)
    return team


def sql_files(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*.sql"))
        if not {"target", "dbt_packages"} & set(p.relative_to(folder).parts)
    }


def test_hand_written_sources_are_adopted_and_kept_in_step(workspace: Path) -> None:
    team = own_sources_consumer(workspace)
    sql = sql_files(team)
    plan = add_project(workspace, team, dry_run=False)
    assert any("ledger_team" in line for line in plan.lines())
    quiet = lambda _m: None  # noqa: E731

    cold = run_mesh(load_mesh(workspace, "local"), say=quiet)
    outcome = next(o for o in cold.outcomes if o.project == "ledger_team")
    assert outcome.status == "built", outcome.error
    assert outcome.report is not None and len(outcome.report.edges) == 7
    assert sql_files(team) == sql  # no SQL edit
    adopted = (team / "models/staging/_sources.yml").read_text()
    assert "description: \"Orders (our own description).\"" in adopted and "- not_null" in adopted
    assert "unique_id: model.dbt_up.public_orders" in adopted and "data_type: decimal(18, 2)" in adopted
    assert not (team / "models/_mesh_dbt_up.yml").exists()  # nothing generated beside it
    results = orjson.loads((team / "target/run_results.json").read_bytes())
    own_test = [r for r in results["results"] if "not_null_orders_platform_orders_order_id" in r["unique_id"]]
    assert own_test and own_test[0]["status"] == "pass"
    usage = orjson.loads((workspace / "registry/ledger_team/local/usage/manifest.json").read_bytes())
    assert {u["upstream_node"] for u in usage["uses"]} >= {"model.dbt_up.public_orders", "model.dbt_up.public_daily_revenue"}

    # unchanged: skipped, and the team's file is not rewritten
    stamp = (team / "models/staging/_sources.yml").stat().st_mtime_ns
    again = run_mesh(load_mesh(workspace, "local"), say=quiet)
    assert {o.project: o.status for o in again.outcomes}["ledger_team"] == "skipped"
    assert (team / "models/staging/_sources.yml").stat().st_mtime_ns == stamp

    # changed: the producer's data; the adopted edges carry its data versions
    seed = workspace / "dbt_up/seeds/raw_orders.csv"
    seed.write_text(seed.read_text().replace(",shipped", ",completed", 1))
    changed = run_mesh(load_mesh(workspace, "local"), say=quiet)
    rebuilt = next(o for o in changed.outcomes if o.project == "ledger_team")
    assert rebuilt.status == "built" and "upstream data changed: dbt_up.public_orders" in rebuilt.reason
    with duckdb.connect(str(workspace / "warehouse/ledger_team.duckdb"), read_only=True) as con:
        mine = con.execute("select sum(completed_order_count) from marts.customer_orders").fetchone()
    with duckdb.connect(str(workspace / "warehouse/dbt_up.duckdb"), read_only=True) as con:
        theirs = con.execute("select count(*) from marts.public_orders where status = 'completed'").fetchone()
    assert mine == theirs


def test_an_adopted_table_whose_node_is_gone_is_refused(workspace: Path) -> None:
    team = own_sources_consumer(workspace)
    add_project(workspace, team, dry_run=False)
    sources = team / "models/staging/_sources.yml"
    config = workspace / "mesh.yml"
    text = config.read_text()
    config.write_text(text.replace("  ledger_team:\n", "  ledger_team:\n    source_names: {orders_platform: dbt_up}\n", 1))
    sources.write_text(sources.read_text().replace("identifier: order_payments", "identifier: gone_payments"))
    before = sources.read_bytes()
    with pytest.raises(SyncError) as info:
        sync_project(load_mesh(workspace, "local"), "ledger_team")
    assert "orders_platform.order_payments" in str(info.value) and "gone_payments" in str(info.value)
    assert sources.read_bytes() == before
