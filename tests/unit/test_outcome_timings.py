"""Where a project's time went: each step's seconds on its outcome, in its log and the summary."""

from __future__ import annotations

import pytest

from mesh.run.pipeline import MeshRun
from mesh.run.steps import ProjectOutcome


def test_each_step_keeps_its_own_seconds_and_a_repeated_step_adds_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = iter([10.0, 10.5, 13.0, 13.25, 14.0, 14.0])
    monkeypatch.setattr("mesh.run.steps.time.monotonic", lambda: next(clock))
    outcome = ProjectOutcome("dbt_up", "built")
    outcome.enter("deps")  # 10.0
    outcome.enter("build")  # 10.5
    outcome.enter("publish")  # 13.0
    outcome.enter("build")  # 13.25
    outcome.enter(None)  # 14.0
    assert outcome.timings == {"deps": 0.5, "build": 3.25, "publish": 0.25}
    assert outcome.timing_line() == "deps 0.5s, build 3.2s, publish 0.2s"
    outcome.stop_clock()  # nothing current: nothing added
    assert outcome.timings["build"] == 3.25 and outcome.step is None


def test_a_failed_step_stays_current_with_its_time_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([1.0, 2.0, 4.5])
    monkeypatch.setattr("mesh.run.steps.time.monotonic", lambda: next(clock))
    outcome = ProjectOutcome("dbt_up", "failed")
    outcome.enter("gate")
    outcome.enter("build")
    outcome.stop_clock()  # what run_project does when a step raised
    assert outcome.step == "build"  # the step the failure is reported in
    assert outcome.timings == {"gate": 1.0, "build": 2.5}


def test_the_summary_shows_how_long_each_project_that_ran_took() -> None:
    run = MeshRun(
        outcomes=[
            ProjectOutcome("dbt_up", "built", seconds=7.84, started_at=1.0),
            ProjectOutcome("dbt_down", "failed", seconds=3.0, started_at=1.0, error="dbt build failed"),
            ProjectOutcome("marketing", "failed", step="sync", error="sync failed"),  # in the parent
            ProjectOutcome("dbt_down_loom", "blocked", error="upstream dbt_down did not build"),
            ProjectOutcome("finance", "skipped", since="2026-11-29T09:00:00+00:00"),
        ],
        seconds=11.0,
    )
    lines = run.summary()
    assert lines[0] == "mesh local (11.0s): 1 built, 1 skipped, 2 failed, 1 blocked"
    assert lines[1] == "  dbt_up          built      7.8s  built"
    assert lines[2] == "  dbt_down        failed     3.0s  dbt build failed"
    assert lines[3] == "  marketing       failed           sync failed"
    assert lines[4] == "  dbt_down_loom   blocked          upstream dbt_down did not build"
    assert lines[5] == "  finance         skipped          unchanged since 2026-11-29 09:00:00 UTC"
