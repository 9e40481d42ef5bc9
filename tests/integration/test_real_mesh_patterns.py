"""Patterns met in real meshes, on the built template: a foreign key to a versioned public model, a
producer checked from a fresh checkout of its packages, an upstream declared and never read, and a
deprecation date in the past."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mesh.project.config import load_mesh
from mesh.run.gate import check_project
from mesh.run.pipeline import MeshRun, run_mesh
from mesh.ui.onboard import add_project
from tests.conftest import REPO

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
ORDERS_YML = Path("dbt_up/models/marts/orders/public_orders.yml")


def quiet(_line: str) -> None:
    """Outcomes are asserted, not progress lines."""


def run(root: Path) -> MeshRun:
    return run_mesh(load_mesh(root, "local"), say=quiet)


def outcome(result: MeshRun, project: str) -> object:
    return next(o for o in result.outcomes if o.project == project)


def test_a_foreign_key_to_a_versioned_model_never_bricks_the_producer(workspace: Path) -> None:
    path = workspace / ORDERS_YML
    text = path.read_text()
    anchor = "      - name: customer_id\n        description: \"The customer who placed the order.\"\n        data_type: integer\n        constraints:\n"
    assert anchor in text
    path.write_text(text.replace(anchor, anchor + (
        "          - type: foreign_key\n            to: ref('public_customers')\n"
        "            to_columns: [customer_id]\n            warn_unenforced: false\n"
    )))
    first = run(workspace)
    assert outcome(first, "dbt_up").status == "built"  # type: ignore[attr-defined]
    assert [p.status for p in first.publishes] == ["published"]
    unchanged = check_project(load_mesh(workspace, "local"), "dbt_up")
    assert unchanged.changes == [] and not unchanged.blocked
    sql = workspace / "dbt_up/models/marts/orders/public_orders.sql"
    sql.write_text(sql.read_text() + "\n-- a comment\n")
    second = run(workspace)
    assert outcome(second, "dbt_up").status == "built"  # type: ignore[attr-defined]
    assert [p.status for p in second.publishes] == ["unchanged"]


def test_check_from_a_fresh_checkout_installs_the_packages_it_needs(workspace: Path) -> None:
    package = workspace / "vendor/tiny_macros"
    (package / "macros").mkdir(parents=True)
    (package / "dbt_project.yml").write_text("name: tiny_macros\nversion: '1.0.0'\nconfig-version: 2\nmacro-paths: ['macros']\n")
    (package / "macros/shout.sql").write_text("{% macro shout(x) %}upper({{ x }}){% endmacro %}\n")
    (workspace / "dbt_up/packages.yml").write_text("packages:\n  - local: ../vendor/tiny_macros\n")
    shutil.rmtree(workspace / "dbt_up/dbt_packages", ignore_errors=True)
    shutil.rmtree(workspace / "dbt_up/.mesh", ignore_errors=True)
    out = subprocess.run(
        [str(BIN / "mesh"), "--root", str(workspace), "check", "--project", "dbt_up"],
        capture_output=True, text=True, check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert (workspace / "dbt_up/dbt_packages/tiny_macros").exists()
    # A tree the gate cannot compile is "could not judge" (exit 2), never "breaking" (exit 1).
    broken = workspace / "dbt_up/models/marts/orders/public_orders.sql"
    broken.write_text(broken.read_text() + "\n{{ no_such_macro() }}\n")
    bad = subprocess.run(
        [str(BIN / "mesh"), "--root", str(workspace), "check", "--project", "dbt_up"],
        capture_output=True, text=True, check=False,
    )
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert bad.stderr.startswith("error: could not judge dbt_up:") and bad.stderr.count("\n") == 1


def test_an_upstream_declared_and_never_read_is_a_warning(workspace: Path) -> None:
    up2 = workspace / "up2"
    shutil.copytree(REPO / "dbt_up", up2, ignore=shutil.ignore_patterns("target", ".mesh", "logs", "dbt_packages"))
    spec = up2 / "dbt_project.yml"
    spec.write_text(spec.read_text().replace("name: dbt_up", "name: up2").replace("profile: dbt_up", "profile: up2").replace("  dbt_up:\n", "  up2:\n"))
    add_project(workspace, up2)
    deps = workspace / "dbt_down/dependencies.yml"
    deps.write_text(deps.read_text() + "  - name: up2\n")
    result = run(workspace)
    down = outcome(result, "dbt_down")
    assert down.status == "built", down.error  # type: ignore[attr-defined]
    notes = "\n".join(down.notes)  # type: ignore[attr-defined]
    assert "dbt_down declares up2 but reads none of its public nodes: remove it from dependencies.yml or reference it" in notes


def test_a_past_deprecation_warns_both_consumers_and_a_strict_one_stops_the_producer(workspace: Path) -> None:
    yml = workspace / "dbt_up/models/marts/customers/public_customers.yml"
    yml.write_text(yml.read_text().replace("      - v: 1\n", "      - v: 1\n        deprecation_date: 2026-01-01\n"))
    result = run(workspace)
    for consumer in ("dbt_down", "dbt_down_loom"):
        found = outcome(result, consumer)
        assert found.status == "built", found.error  # type: ignore[attr-defined]
        notes = "\n".join(found.notes)  # type: ignore[attr-defined]
        assert "past its deprecation_date" in notes and "model.dbt_up.public_customers.v2" in notes, notes
    producer = "\n".join(outcome(result, "dbt_up").notes)  # type: ignore[attr-defined]
    assert "public_customers.v1 deprecated since 2026-01-01, still read by" in producer

    # A consumer that fails on past-due references: setting such a date again is refused.
    config = workspace / "mesh.yml"
    config.write_text(config.read_text().replace("upstreams_via: loom", "upstreams_via: loom\n    deprecations: fail", 1))
    yml.write_text(yml.read_text().replace("deprecation_date: 2026-01-01", "deprecation_date: 2026-02-01"))
    gate = check_project(load_mesh(workspace, "local"), "dbt_up")
    assert gate.blocked and gate.hit_projects() == ["dbt_down_loom"]
