"""The local mesh end to end with real dbt runs on DuckDB and a real registry folder."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import orjson
import pytest

from mesh.consumer.validate import validate_projects
from mesh.core.errors import BuildFailedError, SyncError
from mesh.project.artifacts import load_manifest, public_node_ids
from mesh.project.config import load_mesh
from mesh.run.pipeline import build_project, clean_local, run_mesh
from mesh.ui.lineage import draw_lineage
from mesh.warehouse.runner import run_dbt
from tests.conftest import REPO
from tests.unit.test_publish_sync import snapshot

BIN = Path(sys.executable).parent


def manifest_of(root: Path, project: str) -> dict:
    return orjson.loads((root / project / "target/manifest.json").read_bytes())


def test_registry_holds_exactly_the_public_interface(built_template: Path) -> None:
    env_dir = built_template / "registry/dbt_up/local"
    latest = orjson.loads((env_dir / "latest/manifest.json").read_bytes())
    assert len([p for p in (env_dir / "history").iterdir() if not p.name.startswith(".")]) == 1
    full = manifest_of(built_template, "dbt_up")
    public = public_node_ids(full)
    assert sorted(latest["nodes"]) == public
    assert {"model.dbt_up.public_orders", "model.dbt_up.public_customers.v1", "model.dbt_up.public_customers.v2"} <= set(public)
    private_or_protected = [
        uid
        for uid, node in full["nodes"].items()
        if node["resource_type"] == "model" and node["access"] != "public"
    ]
    assert private_or_protected, "the template must have private/protected models to keep out"
    text = (env_dir / "latest/manifest.json").read_text()
    for uid in private_or_protected:
        assert uid not in text
    assert '"raw_code"' not in text and '"compiled_code"' not in text
    assert latest["metadata"]["mesh"]["version"] == (env_dir / "latest").resolve().name


def test_loom_consumer_lineage_holds_upstream_models(built_template: Path) -> None:
    parents = {p for ps in manifest_of(built_template, "dbt_down_loom")["parent_map"].values() for p in ps}
    assert "model.dbt_up.public_orders" in parents
    assert "model.dbt_up.public_customers.v1" in parents  # the pinned version
    assert "model.dbt_up.public_customers.v2" in parents  # the unpinned ref -> latest


def test_source_consumer_lineage_maps_back_to_upstream_models(built_template: Path) -> None:
    doc = manifest_of(built_template, "dbt_down")
    parents = {p for ps in doc["parent_map"].values() for p in ps}
    assert "source.dbt_down.dbt_up.public_orders" in parents
    mesh = load_mesh(built_template, "local")
    (report,) = validate_projects(mesh, ["dbt_down"])
    assert report.ok, report.text()
    mapped = {(e.parent, e.upstream_node) for e in report.edges}
    assert ("source.dbt_down.dbt_up.public_orders", "model.dbt_up.public_orders") in mapped
    assert ("source.dbt_down.dbt_up.public_customers_v1", "model.dbt_up.public_customers.v1") in mapped
    # Every generated source resolves to exactly the upstream relation, schemas and aliases included.
    up = manifest_of(built_template, "dbt_up")["nodes"]
    for source_id, upstream_id in mapped:
        source, model = doc["sources"][source_id], up[upstream_id]
        assert (source["database"], source["schema"], source["identifier"]) == (
            model["database"], model["schema"], model["alias"],
        )


def test_build_is_warning_free(built_template: Path) -> None:
    warnings = orjson.loads((built_template / "warnings.json").read_bytes())
    assert warnings == {"dbt_up": [], "dbt_down": [], "dbt_down_loom": []}


def test_each_log_ends_with_where_the_projects_time_went(built_template: Path) -> None:
    for project, steps in {
        "dbt_up": ["deps", "prepare", "copy", "gate", "parse", "build", "audit", "swap", "publish",
                   "state", "record"],
        "dbt_down": ["deps", "prepare", "copy", "gate", "build", "swap", "state", "validate", "record"],
    }.items():
        last = (built_template / "logs" / f"{project}.log").read_text().rstrip().splitlines()[-1]
        match = re.fullmatch(rf"mesh: {project} built in ([0-9.]+)s: (.*)", last)
        assert match, last
        timings = {k: float(v[:-1]) for k, v in (part.split() for part in match[2].split(", "))}
        assert list(timings) == steps
        # Each figure is rounded to a tenth: their sum may exceed the total by half a tenth each.
        assert timings["build"] > 0.5 and sum(timings.values()) <= float(match[1]) + 0.05 * (len(timings) + 1)


def test_consumer_cannot_write_to_upstream_database(workspace: Path) -> None:
    macro = workspace / "dbt_down/macros/try_write_upstream.sql"
    macro.write_text(
        "{% macro try_write_upstream() %}"
        "{% do run_query('create table dbt_up.marts.hijacked as select 1 as x') %}"
        "{% endmacro %}"
    )
    mesh = load_mesh(workspace, "local")
    run = run_dbt(mesh, "dbt_down", ["run-operation", "try_write_upstream"], raise_on_failure=False)
    assert not run.success
    assert any("read-only" in e.lower() or "read only" in e.lower() for e in run.errors), run.errors
    with duckdb.connect(str(workspace / "warehouse/dbt_up.duckdb"), read_only=True) as con:
        tables = {r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()}
    assert "hijacked" not in tables and "public_orders" in tables


def test_mesh_twice_is_a_noop_publish(workspace: Path) -> None:
    """Rebuilt with nothing changed (--full: not skipped), the producer publishes nothing new."""
    mesh = load_mesh(workspace, "local")
    before = sorted((workspace / "registry/dbt_up/local/history").iterdir())
    result = run_mesh(mesh, say=lambda _m: None, full=True)
    assert [p.status for p in result.publishes] == ["unchanged"]
    assert sorted((workspace / "registry/dbt_up/local/history").iterdir()) == before
    assert all(r.ok for r in result.reports)


@pytest.mark.parametrize(
    ("project", "sql", "shown"),
    [
        ("dbt_down_loom", "select * from {{ ref('dbt_up', 'stg_orders') }}", "ref('dbt_up', 'stg_orders')"),
        ("dbt_down", "select * from {{ source('dbt_up', 'customer_scoring') }}", "source('dbt_up', 'customer_scoring')"),
    ],
)
def test_reference_to_non_public_model_fails_naming_it(workspace: Path, project: str, sql: str, shown: str) -> None:
    (workspace / project / "models/marts/sneaky.sql").write_text(sql)
    with pytest.raises(SyncError) as info:
        build_project(load_mesh(workspace, "local"), project, say=lambda _m: None)
    assert f"{project}/models/marts/sneaky.sql: {shown} does not resolve in dbt_up" in str(info.value)
    name = shown.split("'")[3]
    assert f"dbt_up publishes no public model, seed or snapshot named {name}" in str(info.value)
    assert "sync cannot tell whether one exists with another access" in str(info.value)


def test_loom_ref_bypassing_sync_fails_in_dbt(workspace: Path) -> None:
    """Even without sync's check, dbt-loom only injects public nodes: dbt cannot resolve the ref."""
    (workspace / "dbt_down_loom/models/marts/sneaky.sql").write_text(
        "select * from {{ ref('dbt_up', 'int_order_payments') }}"
    )
    with pytest.raises(BuildFailedError, match="int_order_payments"):
        run_dbt(load_mesh(workspace, "local"), "dbt_down_loom", ["parse"])


def test_removing_a_public_model_breaks_validate_naming_consumers(workspace: Path) -> None:
    yml = workspace / "dbt_up/models/marts/finance/public_daily_revenue.yml"
    yml.write_text(yml.read_text().replace("access: public", "access: protected"))
    mesh = load_mesh(workspace, "local")
    build_project(mesh, "dbt_up", say=lambda _m: None, allow_breaking=True, reason="removing it")
    from mesh.interface.publish import publish_project

    assert publish_project(mesh, "dbt_up").status == "published"
    out = subprocess.run(
        [str(BIN / "mesh"), "--root", str(workspace), "validate", "--all"],
        capture_output=True, text=True, check=False,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "model.dbt_down.stg_daily_revenue" in out.stdout
    assert "model.dbt_down_loom.stg_daily_revenue" in out.stdout
    assert "model.dbt_up.public_daily_revenue is not a public model of dbt_up" in out.stdout
    assert out.stderr.strip().count("\n") == 0 and "broken cross-project lineage" in out.stderr


def test_defer_builds_only_modified_models(workspace: Path) -> None:
    model = workspace / "dbt_down/models/marts/monthly_revenue.sql"
    model.write_text(model.read_text() + "\n-- a change\n")
    mesh = load_mesh(workspace, "local")
    run = build_project(mesh, "dbt_down", select="state:modified+", defer=True, say=lambda _m: None)
    built = set(run.executed)
    assert "model.dbt_down.monthly_revenue" in built
    assert not any(uid.startswith("model.") and uid != "model.dbt_down.monthly_revenue" for uid in built)
    assert any(uid.startswith("test.") for uid in built)


def test_invoke_surface_exit_codes(workspace: Path) -> None:
    shutil.copy2(REPO / "tasks.py", workspace / "tasks.py")
    shutil.copy2(REPO / "tasks_infra.py", workspace / "tasks_infra.py")
    invoke = [str(BIN / "invoke"), "-r", str(workspace)]
    bad = subprocess.run([*invoke, "publish", "--project", "nope"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "unknown project 'nope'" in bad.stderr
    assert bad.stderr.strip().count("\n") == 0
    ok = subprocess.run([*invoke, "validate", "--format", "json"], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    assert orjson.loads(ok.stdout)["ok"] is True
    listing = subprocess.run([*invoke, "registry.list", "--project", "dbt_up"], capture_output=True, text=True, check=False)
    assert listing.returncode == 0 and "1 version, newest first; latest " in listing.stdout
    first = subprocess.run([*invoke, "sync", "--project", "dbt_down", "--dry-run"], capture_output=True, text=True, check=False)
    # The first mesh run synced dbt_down before its own state existed: the state is new now.
    assert first.returncode == 0 and "Create dbt_down/.mesh/state/manifest.json" in first.stdout
    subprocess.run([*invoke, "sync", "--project", "dbt_down"], capture_output=True, check=True)
    dry = subprocess.run([*invoke, "sync", "--project", "dbt_down", "--dry-run"], capture_output=True, text=True, check=False)
    assert dry.returncode == 0 and "everything is up to date" in dry.stdout, dry.stdout


def test_down_removes_local_state_only(workspace: Path) -> None:
    mesh = load_mesh(workspace, "local")
    sources = snapshot(workspace / "dbt_up/models")
    removed = clean_local(mesh).removed
    assert workspace / "warehouse" in removed and workspace / "registry" in removed
    assert not (workspace / "dbt_down/models/_mesh_dbt_up.yml").exists()
    assert not (workspace / "dbt_down_loom/.mesh").exists()
    assert not (workspace / "dbt_up/target").exists()
    assert snapshot(workspace / "dbt_up/models") == sources
    assert (workspace / "mesh.yml").exists() and (workspace / "profiles/profiles.yml").exists()


def test_down_never_removes_a_file_git_tracks(workspace: Path) -> None:
    """A team that committed what the mesh also writes (a generated dbt-loom config) keeps it."""
    loom = workspace / "dbt_down_loom/dbt_loom.config.yml"
    from mesh.project.files import HEADER

    loom.write_text(f"# {HEADER}\nmanifests: []\n")  # generated by an older sync, then committed
    subprocess.run(["git", "init", "-q"], cwd=workspace, check=True)
    subprocess.run(["git", "add", "-f", str(loom)], cwd=workspace, check=True)
    done = clean_local(load_mesh(workspace, "local"))
    assert loom.is_file() and done.kept == [loom]
    assert not (workspace / "warehouse").exists() and not (workspace / "dbt_down_loom/target").exists()
    assert not (workspace / "dbt_down/models/_mesh_dbt_up.yml").exists()  # untracked: removed


def test_a_failed_run_prints_its_summary_and_redraws_the_lineage(workspace: Path) -> None:
    model = workspace / "dbt_down/models/marts/customer_orders.sql"
    model.write_text(model.read_text().replace("customer_order_totals.order_count", "customer_order_totals.no_such_column", 1))
    page = workspace / "lineage/lineage.html"
    page.unlink(missing_ok=True)
    shown: list[str] = []
    with pytest.raises(BuildFailedError):
        run_mesh(load_mesh(workspace, "local"), say=lambda _m: None, show=shown.append, draw=draw_lineage)
    assert shown[0].startswith("mesh local (") and "1 failed" in shown[0]
    assert any(line.split()[:2] == ["dbt_down", "failed"] for line in shown), shown
    assert page.is_file()


def test_a_full_refresh_does_not_make_the_next_run_rebuild(workspace: Path) -> None:
    mesh = load_mesh(workspace, "local")
    run_mesh(mesh, say=lambda _m: None, full=True, full_refresh=True)
    again = run_mesh(load_mesh(workspace, "local"), say=lambda _m: None)
    assert {o.status for o in again.outcomes} == {"skipped"}


def test_published_state_supports_own_defer(built_template: Path) -> None:
    state = built_template / "registry/dbt_down/local/state/manifest.json"
    assert load_manifest(state, "dbt_down")["metadata"]["project_name"] == "dbt_down"


def test_packages_that_cannot_be_fetched_fail_in_one_line_naming_them(workspace: Path) -> None:
    """No network here: dbt deps cannot reach the hub. The line names the package and how to vendor."""
    (workspace / "dbt_down/packages.yml").write_text(
        "packages:\n  - package: dbt-labs/dbt_utils\n    version: 1.3.0\n"
    )
    with pytest.raises(BuildFailedError) as info:
        build_project(load_mesh(workspace, "local"), "dbt_down", say=lambda _m: None)
    message = str(info.value)
    assert "dbt deps failed for dbt_down (dbt-labs/dbt_utils)" in message
    assert "`- local: <path>`" in message and "logs/dbt_down.log" in message
    assert "\n" not in message and "\x1b[" not in message
    assert not (workspace / "dbt_down/dbt_packages").exists()


def test_up_on_an_existing_mesh_asks_and_refuses_without_a_terminal(workspace: Path) -> None:
    shutil.copy2(REPO / "tasks.py", workspace / "tasks.py")
    shutil.copy2(REPO / "tasks_infra.py", workspace / "tasks_infra.py")
    registry = snapshot(workspace / "registry")
    out = subprocess.run(
        [str(BIN / "invoke"), "-r", str(workspace), "up"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False,
    )
    assert out.returncode == 2, out.stdout + out.stderr
    assert "registry/ (the registry: 1 published version of 1 project/env pair)" in out.stdout
    assert "invoke up --yes" in out.stderr and out.stderr.strip().count("\n") == 0
    assert snapshot(workspace / "registry") == registry
    assert (workspace / "warehouse/dbt_up.duckdb").exists()


def test_a_producers_own_dbt_loom_config_is_never_loaded(workspace: Path) -> None:
    """A hand-written dbt_loom.config.yml in the producer, pointing at a consumer's manifest, is
    ignored with one warning: no consumer node enters the producer's manifest."""
    consumer = workspace / "dbt_down_loom/target/manifest.json"
    (workspace / "dbt_up/dbt_loom.config.yml").write_text(
        f"manifests:\n  - name: dbt_down_loom\n    type: file\n    config:\n      path: {consumer}\n"
    )
    lines: list[str] = []
    run = build_project(load_mesh(workspace, "local"), "dbt_up", say=lines.append, full_refresh=True)
    assert run.success
    manifest = orjson.loads((workspace / "dbt_up/target/manifest.json").read_bytes())
    assert not [uid for uid in manifest["nodes"] if ".dbt_down_loom." in uid]
    assert any("dbt_up/dbt_loom.config.yml ignored" in line for line in lines), lines
    # --full-refresh reached dbt (its own command line is in the project's log)
    assert "=== dbt build --full-refresh (dbt_up" in (workspace / "logs/dbt_up.log").read_text()
