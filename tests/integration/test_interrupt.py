"""Ctrl-C and SIGTERM during `invoke mesh`: exit 130/143, one line naming the step, nothing published.

Each case pauses the real run at a named point (mesh/failpoints.py, `<point>:pause`: the paused
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
