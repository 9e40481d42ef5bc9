"""Ctrl-C and SIGTERM during `invoke mesh`: exit 130/143, one line naming the step, nothing published.

Each case pauses the real run at a named point (mesh/core/failpoints.py, `<point>:pause`: the paused
process writes a marker file), then signals the `invoke` process as a user's Ctrl-C or a CI
runner's cancel would, and checks the exit code, the one line on stderr and the registry.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, copy_template
from tests.unit.test_publish_sync import snapshot

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _workspace(tmp_path: Path) -> Path:
    root = copy_template(tmp_path / "mesh")
    shutil.copy2(REPO / "tasks.py", root / "tasks.py")
    shutil.copy2(REPO / "tasks_infra.py", root / "tasks_infra.py")
    return root


def _run_until(root: Path, point: str, marker: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "MESH_FAILPOINT": f"{point}:pause", "MESH_FAILPOINT_MARKER": str(marker)}
    proc = subprocess.Popen(
        [str(BIN / "invoke"), "-r", str(root), "mesh"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 240
    while not marker.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run ended before reaching {point}: {proc.returncode}\n{out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the run never reached {point}")
        time.sleep(0.05)
    return proc


@pytest.mark.parametrize(
    ("point", "sig", "code", "said"),
    [
        ("mesh.planned", signal.SIGINT, 130, "interrupted during planning; nothing published"),
        ("dbt.node_finished", signal.SIGINT, 130, "interrupted during dbt build (dbt_up); nothing published"),
        ("publish.audited", signal.SIGINT, 130, "interrupted during publish (dbt_up); nothing published"),
        ("dbt.node_finished", signal.SIGTERM, 143, "interrupted during dbt build (dbt_up); nothing published"),
    ],
)
def test_interrupt_exits_with_one_line_and_publishes_nothing(
    tmp_path: Path, point: str, sig: signal.Signals, code: int, said: str
) -> None:
    root = _workspace(tmp_path)
    marker = tmp_path / "paused"
    proc = _run_until(root, point, marker)
    registry = snapshot(root / "registry") if (root / "registry").exists() else {}
    live = root / "warehouse" / "dbt_up.duckdb"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, out + err
    assert err.strip() == f"error: {said}", err
    assert "Traceback" not in out + err
    after = snapshot(root / "registry") if (root / "registry").exists() else {}
    assert after == registry
    assert not any(path.endswith("latest/manifest.json") for path in after)
    if point == "publish.audited":
        # The data passed its audit and was swapped in before the interface publish began.
        assert live.exists()
    else:  # a first run: nothing was live before, and an interrupted build shows nothing
        assert not live.exists(), "an interrupted build must not make its data visible"
    if sig == signal.SIGTERM:  # and the next run finishes the work
        rerun = subprocess.run(
            [str(BIN / "invoke"), "-r", str(root), "mesh"], capture_output=True, text=True, check=False
        )
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert "3 built, 0 skipped, 0 failed, 0 blocked" in rerun.stdout


SLOW_MODEL = """{{ config(materialized='table') }}
-- minutes of work: the interrupt always finds this query running
select count(*) as n from range(100000000000) t(i) where i % 7 = 3
"""


@pytest.mark.parametrize(
    "failpoint",
    [
        # dbt's cancel of the running query fails (as DuckDB's does on a connection a finished
        # node just closed: `Connection already closed!`), raising in place of the interrupt
        "dbt.cancel:raise",
        # a worker dies on the stop without reporting anything
        "worker.stopping",
    ],
)
def test_interrupt_reports_every_running_project_as_interrupted(tmp_path: Path, failpoint: str) -> None:
    """Two independent projects build at once (both consumers, after their producer), each in a
    query when Ctrl-C arrives: both are reported as interrupted, neither as failed, however their
    worker ends."""
    root = _workspace(tmp_path)
    consumers = ("dbt_down", "dbt_down_loom")
    for name in consumers:
        (root / name / "models/slow_count.sql").write_text(SLOW_MODEL)
    env = {**os.environ, "MESH_FAILPOINT": failpoint}
    proc = subprocess.Popen(
        [str(BIN / "invoke"), "-r", str(root), "mesh", "--jobs", "2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    started = "START sql table model main.slow_count"
    deadline = time.monotonic() + 300
    while not all(started in _read(root / f"logs/{name}.log") for name in consumers):
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run ended before both slow queries started: {proc.returncode}\n{out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the slow queries never started in both projects")
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    lines = err.strip().splitlines()
    assert lines[0].startswith("error: interrupted during "), err
    if failpoint == "worker.stopping":
        # A worker killed outright leaves dbt's process locks behind; Python's resource tracker
        # (a process of its own) removes them and says so when the run exits.
        lines = [line for line in lines[1:] if "resource_tracker" not in line and "warnings.warn" not in line]
        assert not lines, err
    else:
        assert len(lines) == 1, err
    assert "FAILED" not in out and "Traceback" not in out + err, out + err
    for name in consumers:
        line = next((line for line in out.splitlines() if f"] {name} (local)" in line and "INTERRUPTED" in line), None)
        assert line is not None, out
        assert "interrupted during " in line and f"({name})" in line, line


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
