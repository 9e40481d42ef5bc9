"""The benchmark plot, redrawn from results without running the benchmark."""

from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Any

import orjson
import pytest
from PIL import Image

from mesh.bench.report import PANELS, STYLES, _spread, main, plot
from mesh.bench.runner import STEP_TITLES
from tests.conftest import REPO

RESULTS = REPO / "bench" / "results.json"


def results() -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(RESULTS.read_bytes())
    return doc


def test_every_step_has_its_own_colour_and_label() -> None:
    assert set(STYLES) == set(STEP_TITLES)
    assert len({s.colour for s in STYLES.values()}) == len(STYLES)
    assert len({s.label for s in STYLES.values()}) == len(STYLES)


def test_labels_spread_apart_within_bounds_near_their_lines() -> None:
    gap = 0.06
    placed = _spread([0.5, 0.5, 0.51, 0.9, 0.1], gap)
    ordered = sorted(placed)
    assert all(b - a >= gap - 1e-9 for a, b in itertools.pairwise(ordered))
    assert placed[3] == pytest.approx(0.9) and placed[4] == pytest.approx(0.1)  # alone: unmoved
    assert abs(sum(placed[:3]) / 3 - (0.5 + 0.5 + 0.51) / 3) < 1e-9  # a crowd stays centred
    top = _spread([0.99, 0.99, 0.99], gap)
    assert max(top) <= 0.94 + 1e-9 and min(top) >= 0.02


def test_redraws_the_committed_results_one_panel_per_question(tmp_path: Path) -> None:
    out = tmp_path / "scaling.png"
    assert main([str(RESULTS), "--output", str(out)]) == 0
    with Image.open(out) as image:
        width, height = image.size
    assert width > 1000 and height > 800

    drawn: list[str] = []

    def recording(panel: Any) -> Any:
        def draw(ax: Any, doc: dict[str, Any]) -> None:
            panel(ax, doc)
            drawn.append(ax.get_title(loc="left"))
            # one line per step it shows, each with its direct label
            labels = {t.get_text() for t in ax.texts}
            assert len(ax.lines) == len(labels) >= 4

        return draw

    plot(results(), tmp_path / "again.png", [recording(p) for p in PANELS])
    assert len(drawn) == len(PANELS) == 4
    assert drawn[0].startswith("Consumer dbt parse: time")


def test_a_single_size_and_a_missing_step_still_plot(tmp_path: Path) -> None:
    doc = copy.deepcopy(results())
    doc["steps"] = {"1000": doc["steps"]["1000"]}
    del doc["steps"]["1000"]["parse_loom_full"]
    plot(doc, tmp_path / "one.png")
    assert (tmp_path / "one.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("body", [None, b"{not json", b'{"sizes": {}}'])
def test_unreadable_results_exit_2_and_write_nothing(
    tmp_path: Path, body: bytes | None, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "results.json"
    if body is not None:
        source.write_bytes(body)
    assert main([str(source)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert not (tmp_path / "scaling.png").exists()


def _flow(seconds: float) -> dict[str, Any]:
    stat = {"median": seconds, "min": seconds, "max": seconds}
    return {"wall_seconds": stat, "peak_rss_mb": {"median": 50.0, "min": 50.0, "max": 50.0}}


def test_flow_ratios_set_the_mesh_against_both_references() -> None:
    from mesh.bench.runner import flow_ratios, goals

    ratio = flow_ratios({"mesh": _flow(18.0), "poc": _flow(30.0), "bare": _flow(16.0)})
    assert ratio == pytest.approx(
        {"mesh_vs_poc_flow": 0.6, "mesh_vs_bare_dbt_flow": 1.125, "bare_dbt_vs_poc_flow": 16 / 30}
    )
    # the goal is against the proof of concept; dbt alone is the floor it is read against
    assert [(g["ratio"], g["met"]) for g in goals(ratio, [])] == [("mesh_vs_poc_flow", False)]
    # results written before dbt alone was measured: its ratios are unknown
    older = flow_ratios({"mesh": _flow(18.0), "poc": _flow(30.0)})
    assert older["mesh_vs_bare_dbt_flow"] is None and older["bare_dbt_vs_poc_flow"] is None
    assert older["mesh_vs_poc_flow"] == pytest.approx(0.6)


def test_the_flow_table_shows_dbt_alone_when_it_was_measured() -> None:
    from mesh.bench.report import table

    doc = results()
    doc["flows"] = {"mesh": _flow(18.0), "poc": _flow(30.0), "bare": _flow(16.0)}
    assert "| dbt alone, as the mesh runs it (`bench/bare_dbt_flow.py`) | 16.0" in table(doc)
    del doc["flows"]["bare"]
    assert "dbt alone" not in table(doc)


def test_a_flows_only_run_prints_the_flows_and_their_ratios() -> None:
    from mesh.bench.report import flow_lines
    from mesh.bench.runner import flow_ratios

    flows = {"mesh": _flow(18.0), "poc": _flow(30.0), "bare": _flow(16.0)}
    lines = flow_lines({"flows": flows, "ratios": flow_ratios(flows)})
    assert lines[3].startswith("| `invoke mesh` | 18.0")
    assert lines[5].startswith("| dbt alone, as the mesh runs it (`bench/bare_dbt_flow.py`) | 16.0")
    assert lines[-1] == "mesh_vs_poc_flow 0.60x, mesh_vs_bare_dbt_flow 1.12x, bare_dbt_vs_poc_flow 0.53x"
    assert flow_lines({"flows": None, "ratios": {}}) == []
