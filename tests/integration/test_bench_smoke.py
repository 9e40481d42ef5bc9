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
