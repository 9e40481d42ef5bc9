"""The mesh-scale benchmark (`invoke bench --projects N`): the generated mesh, and a smoke run of
every scenario on a small mesh (4 projects of 12 models, one repeat) that checks what each run
built and skipped. Timings are not asserted: the machine running tests is shared."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from mesh.bench.mesh_generate import MeshSpec, plan_mesh, topology, write_mesh
from mesh.bench.mesh_scale import RATIO_KEYS, SCENARIOS, change_description
from mesh.bench.runner import BenchConfig, run_bench
from mesh.project.config import load_mesh
from tests.conftest import REPO


def test_generated_mesh_is_deterministic_and_follows_the_conventions(tmp_path: Path) -> None:
    spec = MeshSpec(projects=20, models=40)
    write_mesh(tmp_path / "a", spec)
    write_mesh(tmp_path / "b", spec)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    for path in files:
        assert (tmp_path / "a" / path).read_bytes() == (tmp_path / "b" / path).read_bytes(), path

    mesh = load_mesh(tmp_path / "a", "local")
    assert len(mesh.config.projects) == 20 and mesh.config.require_contracts
    roles = {name: role for name, role, _ups, _via in topology(20)}
    ups = {name: mesh.project(name).upstreams for name in mesh.config.projects}
    assert sum(1 for u in ups.values() if len(u) == 2) >= 5  # some read two upstreams
    assert any(roles[u] == "middle" for name, u_list in ups.items() if roles[name] == "middle" for u in u_list)
    assert {mesh.config.projects[n].upstreams_via for n in ups if ups[n]} == {"sources", "loom"}
    consumed = {u for u_list in ups.values() for u in u_list}
    assert all(roles[n] != "leaf" for n in consumed)  # leaves publish nothing
    assert all(n in consumed for n, role in roles.items() if role != "leaf")
    profiles = (tmp_path / "a/profiles/profiles.yml").read_text()
    assert (
        "path: \"{{ env_var('MESH_BUILD_DIR', env_var('MESH_WAREHOUSE_DIR', 'warehouse')) }}/mid_02.duckdb\""
        in profiles
    )
    assert "path: \"{{ env_var('MESH_WAREHOUSE_DIR', 'warehouse') }}/mid_01.duckdb\"\n          alias: mid_01\n          read_only: true" in profiles
    plan = plan_mesh(spec)
    for project in plan.projects:
        assert len(project.models) == 40
        assert bool(project.public) == (project.role != "leaf")
    public_yml = (tmp_path / "a/core_00/models/marts/_marts.yml").read_text()
    assert public_yml.count("access: public") == spec.public
    assert public_yml.count("enforced: true") == spec.public


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--projects", "2"], "use --projects of at least 3 and --project-models of at least 12"),
        (["--projects", "5", "--project-models", "8"], "use --projects of at least 3"),
        (["--projects", "-1"], "use --projects of at least 3"),
        (["--projects", "5", "--repeat", "0"], "--repeat >= 1"),
        (["--models", "", "--projects", "0", "--no-flows"], "nothing to measure"),
        (["--models", "1k"], "--models takes comma-separated integers"),
    ],
)
def test_bad_bench_flags_exit_2_and_write_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "invoke"), "-r", str(REPO), "bench", *args, "--output", str(out)],
        capture_output=True, text=True, env=env, check=False,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: ") and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_change_description_edits_exactly_one_model(tmp_path: Path) -> None:
    info = write_mesh(tmp_path / "mesh", MeshSpec(projects=4, models=12))
    change = info["scenarios"]["interface"]
    path = tmp_path / "mesh" / change["file"]
    before = path.read_text()
    change_description(path, change["model"], "revision 1")
    after = path.read_text()
    assert after.count("(revision 1)") == 1
    assert f'description: "{change["description"]} (revision 1)"' in after
    assert len(after) - len(before) == len(" (revision 1)")
    with pytest.raises(ValueError, match="no description of no_such_model"):
        change_description(path, "no_such_model", "revision 2")


@pytest.mark.slow
def test_mesh_scale_scenarios_build_exactly_what_changed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    # A results file of an earlier model-count run: the mesh-scale run keeps its figures.
    shutil.copy(REPO / "bench" / "results.json", out / "results.json")
    before = orjson.loads((out / "results.json").read_bytes())
    config = BenchConfig(
        [], repeat=1, output=out, cache=tmp_path / "cache", flows=False, projects=4, project_models=12
    )
    run_bench(config, say=lambda _msg: None)

    results = orjson.loads((out / "results.json").read_bytes())
    for key in ("steps", "sizes", "config", "command", "flows"):
        assert results[key] == before[key]
    for key, value in before["ratios"].items():
        if key not in RATIO_KEYS:
            assert results["ratios"][key] == value
    part = results["mesh_scale"]
    assert part["spec"]["projects"] == 4 and part["machine"]["cpus"]
    assert len(part["load_average_before"]) == 3
    projects = sorted(part["projects"])
    assert projects == ["core_00", "leaf_00", "leaf_01", "mid_00"]
    runs = {name: part["scenarios"][name]["runs"][0] for name in SCENARIOS}

    def built(name: str) -> list[str]:
        return sorted(runs[name]["built"])

    def skipped(name: str) -> list[str]:
        return sorted(runs[name]["skipped"])

    assert built("cold_jobs1") == built("cold_jobs2") == projects
    assert sorted(runs["cold_jobs2"]["projects"]) == projects  # when each ran
    # No-op: every project skipped, no dbt in the process, no project log written.
    assert built("noop") == [] and skipped("noop") == projects
    assert runs["noop"]["logs_written"] == [] and runs["noop"]["dbt_imported"] is False
    # One leaf consumer changed: that consumer only, as when built alone.
    assert built("one_consumer") == ["leaf_01"] and runs["one_consumer"]["logs_written"] == ["leaf_01"]
    assert built("consumer_alone") == ["leaf_01"]
    # A producer's private model: it rebuilds, its consumers are skipped.
    assert built("producer_private") == ["core_00"]
    assert skipped("producer_private") == ["leaf_00", "leaf_01", "mid_00"]
    # An interface change in mid_00: it and exactly its consumers; its upstream is skipped.
    assert built("interface") == ["leaf_00", "leaf_01", "mid_00"]
    assert skipped("interface") == ["core_00"]
    for name in SCENARIOS:
        scenario = part["scenarios"][name]
        assert scenario["as_expected"], name
        assert scenario["op_seconds"]["median"] > 0
        assert not runs[name]["other"]
    ratios = results["ratios"]
    assert ratios["noop_dbt_invocations"] == 0
    for key in ("noop_vs_cold", "one_consumer_vs_alone", "jobs2_vs_jobs1"):
        assert ratios[key] > 0
    goals = {goal["ratio"]: goal for goal in results["goals"]}
    assert set(RATIO_KEYS) <= set(goals)
    assert goals["noop_dbt_invocations"]["met"]
    assert "mesh_vs_poc_flow" in goals  # kept from the earlier run, against its goal
    assert (out / "mesh_scale.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "scaling.png").exists()  # the model-count part did not run
