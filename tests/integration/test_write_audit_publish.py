"""A producer's change never breaks a consumer: the contract gate runs before the build, and the
build is written to an audit copy that replaces the live data only when every model and test passed.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from mesh.core.errors import BreakingChangeError, BuildFailedError
from mesh.project.config import load_mesh
from mesh.run.pipeline import build_project, run_mesh
from tests.unit.test_publish_sync import snapshot

pytestmark = pytest.mark.slow
ORDERS = Path("dbt_up/models/marts/orders")


def quiet(_line: str) -> None:
    """Tests read outcomes."""


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def drop_payment_count(workspace: Path) -> None:
    yml = workspace / ORDERS / "public_orders.yml"
    text = yml.read_text()
    yml.write_text(re.sub(r"\n      - name: payment_count\n(?:        .*\n)*", "\n", text, count=1))
    sql = workspace / ORDERS / "public_orders.sql"
    lines = [line for line in sql.read_text().splitlines() if "payment_count" not in line]
    sql.write_text("\n".join(lines) + "\n")


def test_breaking_change_is_refused_before_the_warehouse_changes(workspace: Path) -> None:
    live = workspace / "warehouse/dbt_up.duckdb"
    data, registry = digest(live), snapshot(workspace / "registry")
    drop_payment_count(workspace)
    with pytest.raises(BreakingChangeError, match="payment_count"):
        run_mesh(load_mesh(workspace, "local"), say=quiet)
    assert digest(live) == data, "the gate must run before dbt touches the producer's relations"
    assert snapshot(workspace / "registry") == registry
    # The consumer still builds, and its tests pass, against the unchanged producer relation.
    run = build_project(load_mesh(workspace, "local"), "dbt_down", say=quiet)
    assert run.success and run.stats["error"] == 0 and run.stats["pass"] > 0


def test_failing_test_leaves_live_data_and_registry_unchanged_then_a_fix_swaps_and_publishes(
    workspace: Path,
) -> None:
    live = workspace / "warehouse/dbt_up.duckdb"
    data, registry = digest(live), snapshot(workspace / "registry")
    failing = workspace / "dbt_up/tests/assert_never_true.sql"
    failing.write_text("select 1 as failure\n")
    # A non-breaking interface change rides along: it must not be published either.
    yml = workspace / ORDERS / "public_orders.yml"
    yml.write_text(yml.read_text().replace('description: "', 'description: "Revised. ', 1))
    mesh = load_mesh(workspace, "local")
    with pytest.raises(BuildFailedError) as info:
        run_mesh(mesh, say=quiet)
    assert "test.dbt_up.assert_never_true" in str(info.value)
    assert "dbt_down, dbt_down_loom blocked" in str(info.value)
    assert digest(live) == data and snapshot(workspace / "registry") == registry
    audit = workspace / "warehouse/.audit/dbt_up/dbt_up.duckdb"
    assert audit.exists(), "the failed audit build is kept for inspection"

    failing.unlink()
    result = run_mesh(load_mesh(workspace, "local"), say=quiet)
    assert [p.status for p in result.publishes] == ["published"]
    assert digest(live) != data and not audit.exists()
    assert snapshot(workspace / "registry") != registry


def test_audit_copy_can_be_turned_off(workspace: Path) -> None:
    mesh_yml = workspace / "mesh.yml"
    mesh_yml.write_text(mesh_yml.read_text().replace("    env: local\n", "    env: local\n    wap: false\n", 1))
    failing = workspace / "dbt_up/tests/assert_never_true.sql"
    failing.write_text("select 1 as failure\n")
    live = workspace / "warehouse/dbt_up.duckdb"
    inode = live.stat().st_ino
    with pytest.raises(BuildFailedError):
        build_project(load_mesh(workspace, "local"), "dbt_up", say=quiet)
    # Built in place: same file, no audit copy.
    assert live.stat().st_ino == inode
    assert not any((workspace / "warehouse/.audit").rglob("*.duckdb"))
