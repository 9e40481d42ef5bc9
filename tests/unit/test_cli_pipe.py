"""The `mesh` script as a Unix filter: a reader that goes away early (`| head -1`) ends it quietly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import copy_template

MESH = str(Path(sys.executable).parent / "mesh")


def test_a_closed_pipe_is_not_a_crash(tmp_path: Path) -> None:
    root = copy_template(tmp_path / "mesh")
    # `true` exits before the script writes: its first write meets a closed pipe.
    out = subprocess.run(
        ["bash", "-c", f'"{MESH}" --root "{root}" registry.list | true; echo "status=${{PIPESTATUS[0]}}"'],
        capture_output=True, text=True, check=False, timeout=120,
    )
    assert "status=0" in out.stdout, out.stdout + out.stderr
    assert "Traceback" not in out.stderr and "BrokenPipeError" not in out.stderr, out.stderr
