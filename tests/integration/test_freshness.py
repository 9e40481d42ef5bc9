"""Freshness across projects on the template mesh, with real dbt runs and a real registry folder."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from ruamel.yaml import YAML

from mesh.consumer.freshness import parse_time, read_freshness
from mesh.consumer.validate import validate_projects
from mesh.project.artifacts import load_manifest, public_node_ids
from mesh.project.config import load_mesh
from mesh.registry.document import dump_json
from mesh.warehouse.runner import run_dbt
from tests.conftest import REPO

BIN = Path(sys.executable).parent


def test_run_mesh_records_freshness_of_every_public_model(built_template: Path) -> None:
    mesh = load_mesh(built_template, "local")
    doc = read_freshness(mesh, "dbt_up")
    assert doc is not None and (doc["project"], doc["env"]) == ("dbt_up", "local")
    target = built_template / "dbt_up" / "target"
    manifest = load_manifest(target / "manifest.json", "dbt_up")
    assert sorted(doc["nodes"]) == public_node_ids(manifest)
    run = orjson.loads((target / "run_results.json").read_bytes())
    assert doc["build"]["invocation_id"] == run["metadata"]["invocation_id"]
    executed = {
        r["unique_id"]: t["completed_at"]
        for r in run["results"]
        for t in r["timing"]
        if t["name"] == "execute"
    }
    for uid, node in doc["nodes"].items():
        assert parse_time(node["built_at"], "built_at") == parse_time(executed[uid], "completed_at")
    # The interface is not where freshness lives: latest carries no build times per node.
    latest = mesh.registry.read_latest("dbt_up", "local")
    assert latest is not None and b"freshness" not in latest.body
    # Consumers publish no public model: they record no freshness.
    assert mesh.registry.read_private("dbt_down", "local", "freshness") is None


def test_stale_upstream_fails_validate_of_a_consumer_that_declares_freshness(workspace: Path) -> None:
    yaml = YAML()
    # Project-wide through dbt's own `+meta` (dbt propagates it to every model)...
    project_file = workspace / "dbt_down" / "dbt_project.yml"
    project = yaml.load(project_file)
    project["models"]["dbt_down"]["+meta"] = {
        "mesh": {"freshness": {"warn_after": {"count": 30, "period": "minute"}}}
    }
    yaml.dump(project, project_file)
    # ...and on one model, with a tiny error_after.
    model_file = workspace / "dbt_down" / "models" / "staging" / "stg_orders.yml"
    props = yaml.load(model_file)
    props["models"][0]["config"] = {
        "meta": {"mesh": {"freshness": {"error_after": {"count": 1, "period": "minute"}}}}
    }
    yaml.dump(props, model_file)
    mesh = load_mesh(workspace, "local")
    parsed = run_dbt(mesh, "dbt_down", ["parse", "--no-partial-parse"])
    assert parsed.warnings == []

    # A real registry write: dbt_up's data was built an hour ago.
    record = read_freshness(mesh, "dbt_up")
    assert record is not None
    hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    for node in record["nodes"].values():
        node["built_at"] = hour_ago
    mesh.registry.write_private("dbt_up", "local", "freshness", dump_json(record))

    (report,) = validate_projects(mesh, ["dbt_down"])
    assert not report.ok
    stale = [f for f in report.findings if f.kind == "freshness"]
    errors = {(f.node, f.upstream_node) for f in stale if f.severity == "error"}
    assert errors == {("model.dbt_down.stg_orders", "model.dbt_up.public_orders")}
    warned = {f.node for f in stale if f.severity == "warning"}
    assert {"model.dbt_down.stg_customers", "model.dbt_down.customer_orders"} <= warned
    error = next(f for f in stale if f.severity == "error")
    assert error.message.startswith("stg_orders reads model.dbt_up.public_orders, built 1 hour")
    assert f"ago ({hour_ago}), past its error_after of 1 minute: the upstream data is stale" in error.message

    cli = subprocess.run(
        [str(BIN / "mesh"), "--root", str(workspace), "validate", "--project", "dbt_down"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert cli.returncode == 1, cli.stderr
    assert "ERROR   freshness   model.dbt_down.stg_orders: stg_orders reads model.dbt_up.public_orders" in cli.stdout
    assert cli.stderr.strip().startswith("error: ") and "dbt_down" in cli.stderr


def test_build_save_state_records_freshness_again(workspace: Path) -> None:
    """`invoke build --save-state` (CI on main) records freshness after every passing build, even
    when the interface did not change."""
    shutil.copy2(REPO / "tasks.py", workspace / "tasks.py")
    shutil.copy2(REPO / "tasks_infra.py", workspace / "tasks_infra.py")
    mesh = load_mesh(workspace, "local")
    before = read_freshness(mesh, "dbt_up")
    latest = mesh.registry.read_latest("dbt_up", "local")
    assert before is not None and latest is not None
    run = subprocess.run(
        [str(BIN / "invoke"), "-r", str(workspace), "build", "--project", "dbt_up", "--save-state"],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "data versions: 5 public nodes recorded" in run.stdout
    after = read_freshness(mesh, "dbt_up")
    invocation = orjson.loads((workspace / "dbt_up" / "target" / "run_results.json").read_bytes())
    assert after is not None and after["build"]["invocation_id"] == invocation["metadata"]["invocation_id"]
    assert after["build"]["invocation_id"] != before["build"]["invocation_id"]
    assert all(
        parse_time(after["nodes"][uid]["built_at"], "after") > parse_time(node["built_at"], "before")
        for uid, node in before["nodes"].items()
    )
    assert mesh.registry.read_latest("dbt_up", "local") == latest  # nothing published
