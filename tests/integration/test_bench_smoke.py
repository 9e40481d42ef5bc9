"""Smoke run of the benchmark (`invoke bench`) at a tiny size: every step runs, every figure and
ratio is written, the plot exists. Timings are not asserted: the machine running tests is shared."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from mesh.bench.runner import STEPS, BenchConfig, run_bench

RATIO_KEYS = (
    "parse_mesh_vs_no_upstream",
    "rss_mesh_vs_no_upstream",
    "parse_loom_full_vs_mesh",
    "publish_vs_floor",
    "republish_vs_floor",
    "sync_vs_floor",
    "interface_bytes_share",
    "cpu_parse_mesh_vs_no_upstream",
    "invoke_parse_mesh_vs_no_upstream",
    "parse_mesh_loom_vs_no_upstream",
)


@pytest.mark.slow
def test_bench_smoke_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # The template flows (`invoke mesh` vs the proof of concept, ~40 s) are left to `invoke bench`.
    config = BenchConfig([200], repeat=1, output=out, cache=tmp_path / "cache", flows=False)
    run_bench(config, say=lambda _msg: None)

    results = orjson.loads((out / "results.json").read_bytes())
    for key in ("started_at", "command", "config", "machine", "versions", "sizes", "steps",
                "flows", "ratios", "goals"):
        assert key in results
    assert results["machine"]["cpu_model"] and results["versions"]["dbt-core"]
    for step in STEPS:
        figures = results["steps"]["200"][step]
        for measure in ("op_seconds", "op_cpu_seconds", "wall_seconds", "peak_rss_mb"):
            assert figures[measure]["min"] <= figures[measure]["median"] <= figures[measure]["max"]
            assert figures[measure]["min"] > 0
    for key in RATIO_KEYS:
        assert results["ratios"][f"{key}_200"] > 0
    assert "mesh_vs_poc_flow" in results["ratios"]
    sizes = results["sizes"]["200"]
    assert sizes["public_models"] == 40
    assert 0 < sizes["consumer_interface_bytes"] < sizes["interface_bytes"]
    assert sizes["interface_bytes"] < sizes["manifest_bytes"]
    assert results["steps"]["200"]["validate"]["detail"]["edges"] > 0
    png = out / "scaling.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_dbt_alone_builds_every_project_and_names_a_failed_one(tmp_path: Path) -> None:
    """The benchmark's floor flow (`bench/bare_dbt_flow.py`) really builds the three projects, the
    consumers reading the producer's tables; a project that fails stops it with exit 1."""
    import subprocess
    import sys

    import duckdb

    from tests.conftest import REPO, copy_template

    script = [sys.executable, str(REPO / "bench" / "bare_dbt_flow.py"), "run"]
    root = copy_template(tmp_path / "ok")
    out = tmp_path / "figures.json"
    proc = subprocess.run([*script, "--root", str(root), "--out", str(out)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    figures = orjson.loads(out.read_bytes())
    assert set(figures) == {"op_seconds", "op_cpu_seconds", "peak_rss_mb"}
    assert figures["op_seconds"] > 0
    for consumer in ("dbt_down", "dbt_down_loom"):
        parents = orjson.loads((root / consumer / "target" / "manifest.json").read_bytes())["parent_map"]
        assert any(p.startswith(("model.dbt_up.", "source.dbt_down.dbt_up.")) for ps in parents.values() for p in ps)
        with duckdb.connect(str(root / "warehouse" / f"{consumer}.duckdb"), read_only=True) as db:
            (rows,) = db.execute("select count(*) from marts.customer_orders").fetchone()
        assert rows > 0

    broken = copy_template(tmp_path / "broken")
    (broken / "dbt_up" / "models" / "marts" / "orders" / "public_orders.sql").write_text("select nope\n")
    proc = subprocess.run([*script, "--root", str(broken)], capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == "dbt build failed: dbt_up"
    assert not (broken / "dbt_down" / "target").exists()  # consumers never started
