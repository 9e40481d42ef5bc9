"""The contract gate on a copy of the built template mesh, with real dbt runs (DuckDB).

The template is built once per session (`built_template`); each test changes a private copy
(`workspace`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mesh.consumer.validate import validate_manifest
from mesh.core.errors import BreakingChangeError
from mesh.interface.usage import read_uses
from mesh.interface.versions import diff_versions, rollback_project
from mesh.project.config import load_mesh
from mesh.registry.document import load_interface
from mesh.run.gate import check_project
from mesh.run.pipeline import build_project, run_mesh
from mesh.ui.cli import run_publish
from mesh.ui.report import consumers_lines
from tests.conftest import REPO

BIN = Path(sys.executable).parent
ORDERS = Path("dbt_up/models/marts/orders")
CUSTOMERS = Path("dbt_up/models/marts/customers")
quiet = lambda _msg: None  # noqa: E731


def drop_column(root: Path, yml: Path, column: str, sql: Path | None = None) -> None:
    """Remove a column's block from a model YAML (and its line from the SQL, if given)."""
    path = root / yml
    text = path.read_text()
    start = text.index(f"      - name: {column}\n")
    end = text.find("\n      - name: ", start + 1)
    path.write_text(text[:start] + (text[end + 1 :] if end != -1 else ""))
    if sql is not None:
        code = (root / sql).read_text()
        # The final projection: the last line that names the column.
        line = [line for line in code.splitlines(keepends=True) if f" as {column}" in line][-1]
        (root / sql).write_text(code.replace(line, ""))


def ship_orders_as_versions(root: Path, latest: int) -> None:
    """public_orders becomes versioned: v1 as today (same relation), v2 without payment_count."""
    yml = root / ORDERS / "public_orders.yml"
    text = yml.read_text().replace(
        "    config:\n      group: orders", f"    latest_version: {latest}\n    config:\n      group: orders", 1
    )
    yml.write_text(
        text
        + "    versions:\n"
        + "      - v: 1\n        defined_in: public_orders\n        config:\n          alias: public_orders\n"
        + "      - v: 2\n        columns:\n          - include: all\n            exclude: [payment_count]\n"
    )
    sql = (root / ORDERS / "public_orders.sql").read_text()
    (root / ORDERS / "public_orders_v2.sql").write_text(
        sql.replace("        cast(payment_count as integer) as payment_count,\n", "")
    )


def test_check_fails_through_invoke_when_a_consumed_column_is_dropped(workspace: Path) -> None:
    drop_column(workspace, ORDERS / "public_orders.yml", "payment_count", ORDERS / "public_orders.sql")
    shutil.copy2(REPO / "tasks.py", workspace / "tasks.py")  # tasks.py finds mesh.yml beside itself
    shutil.copy2(REPO / "tasks_infra.py", workspace / "tasks_infra.py")
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DO_NOT_TRACK": "1"}
    out = subprocess.run(
        [str(BIN / "invoke"), "check", "--project", "dbt_up"],
        cwd=workspace, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    report = "\n".join(line for line in out.stdout.splitlines() if "\x1b[" not in line)
    print(report + "\n" + out.stderr)  # the gate's output, shown with `pytest -s`
    assert out.returncode == 1, out.stderr
    assert "error: breaking change to dbt_up's contract hits dbt_down, dbt_down_loom" in out.stderr
    assert "dbt_down_loom model stg_orders (column payment_count)" in out.stderr
    assert "BREAKING  column_removed" in report and "public_orders.payment_count" in report
    row = next(line for line in report.splitlines() if "dbt_down_loom" in line and "stg_orders" in line)
    assert row.split() == [
        "column_removed", "public_orders", "dbt_down_loom", "stg_orders", "payment_count",
        "dbt_up.public_orders.payment_count", "→", "dbt_down_loom.stg_orders",
    ]
    assert "hint:" in report and "deprecation_date" in report
    # The last build's artifacts are untouched (check parses into target/check/).
    assert (workspace / "dbt_up/target/run_results.json").is_file()


def test_check_passes_with_a_warning_when_nobody_reads_the_column(workspace: Path) -> None:
    mesh = load_mesh(workspace, "local")
    readers = [u for u in read_uses(mesh, "dbt_up") if u.upstream_node.startswith("model.dbt_up.public_customers")]
    assert readers and not any(u.uses_column("first_order_date") for u in readers)
    drop_column(workspace, CUSTOMERS / "public_customers.yml", "first_order_date")
    result = check_project(mesh, "dbt_up")
    assert not result.blocked
    assert {(c.kind, c.column) for c in result.breaking} == {("column_removed", "first_order_date")}
    assert len(result.unconsumed) == 2  # v1 and v2 both lose it; nobody reads it
    text = "\n".join(result.lines())
    assert "WARNING: breaking change column_removed public_customers.v2.first_order_date has no registered consumer" in text


def test_a_consumer_whose_usage_is_unknown_counts_as_reading_everything(workspace: Path) -> None:
    """Fail closed: with both consumers' usage records gone (never recorded, deleted, or rewritten
    without what they read), a dropped column is breaking for both."""
    mesh = load_mesh(workspace, "local")
    drop_column(workspace, ORDERS / "public_orders.yml", "payment_count", ORDERS / "public_orders.sql")
    shutil.rmtree(workspace / "registry/dbt_down/local/usage")
    body = b'{"metadata": {"format": 2, "project_name": "dbt_down_loom"}, "uses": [], "lineage": []}'
    mesh.registry.write_private("dbt_down_loom", "local", "usage", body)  # rewritten empty
    result = check_project(mesh, "dbt_up")
    assert result.blocked
    assert result.hit_projects() == ["dbt_down", "dbt_down_loom"]
    assert set(result.assumed) == {"dbt_down", "dbt_down_loom"}
    text = "\n".join(result.lines())
    assert "usage of dbt_down unknown (no usage record of it): assumed to read everything" in text
    assert "invoke build --project dbt_down --save-state" in text


def test_a_new_model_version_passes_and_old_consumers_still_build(workspace: Path) -> None:
    mesh = load_mesh(workspace, "local")
    ship_orders_as_versions(workspace, latest=1)
    result = check_project(mesh, "dbt_up")
    assert not result.breaking and not result.blocked
    assert {c.kind for c in result.changes} == {"latest_version_changed", "version_added"}

    run = run_mesh(load_mesh(workspace, "local"), say=quiet)  # publish (gated), consumers rebuild
    assert [p.status for p in run.publishes] == ["published"]
    assert all(r.ok for r in run.reports)
    uses = read_uses(mesh, "dbt_up")
    readers = {(u.consumer, u.node) for u in uses if u.upstream_node == "model.dbt_up.public_orders.v1"}
    assert readers == {("dbt_down", "model.dbt_down.stg_orders"), ("dbt_down_loom", "model.dbt_down_loom.stg_orders")}
    text = "\n".join(consumers_lines(mesh, "dbt_up"))
    assert "public_orders.v1  (latest version): 2 consumer models" in text
    assert "public_orders.v2: no registered consumer" in text

    # Making v2 the latest would move the unpinned consumers onto it: now that is breaking.
    yml = workspace / ORDERS / "public_orders.yml"
    yml.write_text(yml.read_text().replace("latest_version: 1", "latest_version: 2"))
    moved = check_project(mesh, "dbt_up")
    assert moved.blocked
    assert {(h.use.consumer, h.column) for h in moved.hits} == {("dbt_down", "payment_count"), ("dbt_down_loom", "payment_count")}


def test_publish_gate_refuses_then_records_an_allowed_break_and_rollback(workspace: Path) -> None:
    mesh = load_mesh(workspace, "local")
    first = mesh.registry.read_latest("dbt_up", "local")
    assert first is not None
    drop_column(workspace, ORDERS / "public_orders.yml", "payment_count", ORDERS / "public_orders.sql")
    # The build itself is gated: refused first, then built with a recorded override.
    with pytest.raises(BreakingChangeError, match="dbt_down_loom model stg_orders"):
        build_project(mesh, "dbt_up", say=quiet)
    build_project(mesh, "dbt_up", say=quiet, allow_breaking=True, reason="consumers migrate in PR 42")
    assert mesh.registry.list_versions("dbt_up", "local") == [first.version]
    # The build's recorded decision (allowed, with its reason) carries to the publish of that build.
    summary = run_publish(mesh, "dbt_up", False, None)
    latest = mesh.registry.read_latest("dbt_up", "local")
    assert latest is not None and latest.version in summary
    meta = load_interface(latest.body, "latest", "dbt_up")["metadata"]["mesh"]
    assert meta["reason"] == "consumers migrate in PR 42 (allowed when it was built)"
    assert {c["column"] for c in meta["breaking_changes"]} == {"payment_count"}

    old, new, changes = diff_versions(mesh, "dbt_up")
    assert (old, new) == (first.version, latest.version)
    assert [(c.kind, c.column, c.breaking) for c in changes] == [("column_removed", "payment_count", True)]

    back = rollback_project(mesh, "dbt_up", first.version, reason="revert the drop", say=quiet)
    assert back.status == "published"
    doc = load_interface(mesh.registry.read_version("dbt_up", "local", back.version).body, "rollback", "dbt_up")
    assert doc["metadata"]["mesh"]["rollback_of"] == first.version
    assert "payment_count" in doc["nodes"]["model.dbt_up.public_orders"]["columns"]


def test_deprecated_version_warns_then_fails_only_where_a_consumer_opted_in(workspace: Path) -> None:
    yml = workspace / CUSTOMERS / "public_customers.yml"
    yml.write_text(yml.read_text().replace("      - v: 1\n", "      - v: 1\n        deprecation_date: 2099-12-31\n"))
    mesh = load_mesh(workspace, "local")
    result = check_project(mesh, "dbt_up")
    assert not result.breaking and {c.kind for c in result.changes} == {"deprecation_changed"}
    build_project(mesh, "dbt_up", say=quiet)
    run_publish(mesh, "dbt_up", False, None)  # validate reads deprecation from the published interface
    text = "\n".join(consumers_lines(mesh, "dbt_up"))
    assert "public_customers.v1  (deprecated 2099-12-31" in text
    manifest = workspace / "dbt_down_loom/target/manifest.json"
    # Far ahead: nothing yet; within the lead time (30 days by default): a warning.
    assert not [f for f in validate_manifest(mesh, manifest).findings if f.kind == "deprecated"]
    soon = datetime(2099, 12, 15, tzinfo=UTC)
    (warning,) = [f for f in validate_manifest(mesh, manifest, today=soon).findings if f.kind == "deprecated"]
    assert warning.severity == "warning"
    assert "dbt_down_loom must migrate model stg_customers_v1" in warning.message
    assert "model.dbt_up.public_customers.v2" in warning.message
    assert "public_customers versions published: 1, 2" in warning.message
    # Past the date: still a warning, never a surprise failure...
    later = datetime(2100, 1, 1, tzinfo=UTC)
    report = validate_manifest(mesh, manifest, today=later)
    (past,) = [f for f in report.findings if f.kind == "deprecated"]
    assert report.ok and past.severity == "warning"
    assert "past its deprecation_date: dbt_down_loom must migrate model stg_customers_v1" in past.message
    # ...unless the consumer opted in to failing on it.
    config = workspace / "mesh.yml"
    config.write_text(config.read_text().replace("upstreams_via: loom", "upstreams_via: loom\n    deprecations: fail", 1))
    strict = validate_manifest(load_mesh(workspace, "local"), manifest, today=later)
    (error,) = [f for f in strict.findings if f.kind == "deprecated"]
    assert not strict.ok and error.severity == "error"
