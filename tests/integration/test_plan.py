"""`invoke plan` on the built template: which projects must run, level by level, from the working
tree and the registry alone (no warehouse, no dbt)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from mesh.consumer.freshness import OBJECT
from mesh.project.config import load_mesh
from mesh.registry.document import dump_json
from mesh.run.plan import plan_mesh
from tests.conftest import REPO

pytestmark = pytest.mark.slow


def levels(root: Path) -> list[dict[str, tuple[str, ...]]]:
    plan = plan_mesh(load_mesh(root, "local"))
    return [{p.project: p.reasons for p in level} for level in plan.levels]


def test_an_unchanged_mesh_plans_nothing(workspace: Path) -> None:
    assert levels(workspace) == []
    plan = plan_mesh(load_mesh(workspace, "local"))
    assert sorted(plan.unchanged) == ["dbt_down", "dbt_down_loom", "dbt_up"]
    assert plan.render().startswith("plan (local): nothing to run; 3 projects unchanged")


def test_a_changed_producer_plans_itself_then_exactly_its_consumers(workspace: Path) -> None:
    model = workspace / "dbt_up/models/marts/orders/public_orders.sql"
    model.write_text(model.read_text() + "\n-- reworded\n")
    assert levels(workspace) == [
        {"dbt_up": ("changed",)},
        {
            "dbt_down": ("upstream planned: dbt_up",),
            "dbt_down_loom": ("upstream planned: dbt_up",),
        },
    ]


def test_a_changed_consumer_plans_only_itself(workspace: Path) -> None:
    model = workspace / "dbt_down/models/marts/monthly_revenue.sql"
    model.write_text(model.read_text() + "\n-- reworded\n")
    assert levels(workspace) == [{"dbt_down": ("changed",)}]


def test_a_new_interface_or_new_data_upstream_plans_the_consumers_alone(workspace: Path) -> None:
    mesh = load_mesh(workspace, "local")
    # new data under the same interface: a rebuilt node's data version moves
    body = mesh.registry.read_private("dbt_up", "local", OBJECT)
    assert body is not None
    doc = orjson.loads(body)
    uid = "model.dbt_up.public_orders"
    doc["nodes"][uid]["data_version"] = "0" * 16
    mesh.registry.write_private("dbt_up", "local", OBJECT, dump_json(doc))
    planned = levels(workspace)
    assert list(planned) == [planned[0]] and set(planned[0]) <= {"dbt_down", "dbt_down_loom"}
    assert planned[0], "a consumer storing dbt_up.public_orders must be planned"
    assert all(r == ("upstream data changed: dbt_up.public_orders",) for r in planned[0].values())

    # the consumers last built against another interface version than the latest
    mesh.registry.write_private("dbt_up", "local", OBJECT, body)
    assert levels(workspace) == []
    for consumer in ("dbt_down", "dbt_down_loom"):
        record = orjson.loads(mesh.registry.read_private(consumer, "local", "fingerprint") or b"")
        assert record["upstream_versions"]["dbt_up"] == mesh.registry.read_latest("dbt_up", "local").version
        record["upstream_versions"]["dbt_up"] = "20200101T000000.000000Z-0badc0de"
        mesh.registry.write_private(consumer, "local", "fingerprint", dump_json(record))
    assert levels(workspace) == [
        {
            "dbt_down": ("upstream interface changed: dbt_up",),
            "dbt_down_loom": ("upstream interface changed: dbt_up",),
        }
    ]


def test_a_missing_record_fails_closed_and_is_planned_before_its_consumers(workspace: Path) -> None:
    mesh = load_mesh(workspace, "local")
    mesh.registry.write_private("dbt_up", "local", "fingerprint", b"{not json")
    planned = levels(workspace)
    assert planned[0] == {"dbt_up": ("no passing build on record",)}
    assert set(planned[1]) == {"dbt_down", "dbt_down_loom"}


def test_the_task_prints_json_for_the_workflow_and_refuses_an_unknown_project(workspace: Path) -> None:
    model = workspace / "dbt_down_loom/models/marts/customer_orders.sql"
    model.write_text(model.read_text() + "\n-- reworded\n")
    shutil.copy2(REPO / "tasks.py", workspace / "tasks.py")  # tasks.py finds mesh.yml beside itself
    shutil.copy2(REPO / "tasks_infra.py", workspace / "tasks_infra.py")
    run = subprocess.run(
        [sys.executable, "-m", "invoke", "plan", "--format", "json"],
        cwd=workspace, capture_output=True, text=True, check=False, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    doc = orjson.loads(run.stdout)
    assert doc["levels"] == [[{"project": "dbt_down_loom", "reasons": ["changed"]}]]
    assert doc["projects"] == ["dbt_down_loom"] and doc["unchanged"] == ["dbt_down", "dbt_up"]
    bad = subprocess.run(
        [sys.executable, "-m", "invoke", "plan", "--project", "dbt_upp"],
        cwd=workspace, capture_output=True, text=True, check=False, timeout=120,
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert "dbt_upp" in bad.stderr and "dbt_up" in bad.stderr


def test_files_dbt_deps_writes_do_not_make_a_project_changed(workspace: Path) -> None:
    (workspace / "dbt_up/package-lock.yml").write_text("packages: []\nsha1_hash: 0\n")
    assert levels(workspace) == []  # a runner that ran `dbt deps` plans like a fresh checkout


def test_a_new_audit_or_profile_change_plans_the_project_until_a_build_passes(workspace: Path) -> None:
    mesh_yml = workspace / "mesh.yml"
    mesh_yml.write_text(mesh_yml.read_text().replace(
        "  dbt_down:\n    path: dbt_down\n", "  dbt_down:\n    path: dbt_down\n    audits:\n      - {name: rows, run: 'true'}\n", 1
    ))
    assert levels(workspace) == [{"dbt_down": ("profile, tool versions or audits changed",)}]
    mesh_yml.write_text(mesh_yml.read_text().replace("    audits:\n      - {name: rows, run: 'true'}\n", "", 1))
    assert levels(workspace) == []
    profiles = workspace / "profiles/profiles.yml"
    profiles.write_text(profiles.read_text().replace("threads: 4", "threads: 3", 1))
    planned = levels(workspace)
    assert planned and planned[0] == {"dbt_up": ("profile, tool versions or audits changed",)}
