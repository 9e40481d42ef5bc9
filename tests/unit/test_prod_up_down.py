"""`invoke up/down --target prod` through the real task surface: the parts that run without an
account (Terraform plan/apply/destroy need providers, which cannot be downloaded here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

INVOKE = str(Path(sys.executable).parent / "invoke")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SNOWFLAKE_", "MESH_"))}
    env["MESH_TERRAFORM"] = "/nonexistent/terraform"
    return subprocess.run(
        [INVOKE, *args], cwd=REPO, capture_output=True, text=True, stdin=subprocess.DEVNULL,
        env=env, check=False, timeout=120,
    )


def test_down_prod_refuses_without_confirmation() -> None:
    out = run("down", "--target", "prod")
    assert out.returncode == 2
    assert "not confirmed: nothing destroyed" in out.stderr
    assert out.stderr.strip().count("\n") == 0


def test_up_prod_stops_before_anything_without_a_usable_terraform() -> None:
    out = run("up", "--target", "prod", "--yes")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "up [1/3] infra.plan" in out.stdout
    assert "up [2/3]" not in out.stdout  # nothing applied, no Snowflake set-up, no mesh run
    assert "terraform" in out.stderr.lower() and out.stderr.strip().count("\n") == 0
