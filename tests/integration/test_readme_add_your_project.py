"""The documentation's "Add your project" page is run literally: its first shell block, line by
line, in a copy of this repository, with the venv on PATH as the README's set-up puts it. The text cannot drift from
what the commands do."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.conftest import REPO, copy_template

pytestmark = pytest.mark.slow


def section_commands(readme: str, heading: str) -> list[str]:
    """The lines of the first ```bash block after `heading`."""
    text = "\n" + readme  # a page may start with the heading
    start = text.index(f"\n{heading}\n")
    block = re.search(r"```bash\n(.*?)```", text[start:], re.DOTALL)
    assert block is not None, f"no bash block under {heading}"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def test_add_your_project_runs_as_written(tmp_path: Path) -> None:
    root = copy_template(tmp_path / "repo")
    for name in ("tasks.py", "tasks_infra.py", "README.md"):
        shutil.copy2(REPO / name, root / name)
    shutil.copytree(REPO / "tests/fixtures/byo", root / "tests/fixtures/byo")
    commands = section_commands((REPO / "docs/adding-a-project.md").read_text(encoding="utf-8"), "# Add your project")
    assert any(c.startswith("invoke project.add") for c in commands) and commands[-1] == "invoke mesh"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for command in commands:
        out = subprocess.run(
            ["bash", "-c", command], cwd=root, env=env, capture_output=True, text=True, check=False
        )
        assert out.returncode == 0, f"{command}\n{out.stdout}\n{out.stderr}"
    # Every project joined, built, published where public, and the consumers' upstream tests ran.
    for name in ("jaffle_core", "jaffle_marketing"):
        assert (root / f"registry/{name}/local/latest/manifest.json").is_file()
    for name in ("jaffle_marketing", "jaffle_finance"):
        results = orjson.loads((root / f"teams/{name}/target/run_results.json").read_bytes())["results"]
        assert results and all(r["status"] in ("success", "pass") for r in results)
    assert "3 built" not in out.stdout  # the whole mesh: six projects
    assert "6 built, 0 skipped, 0 failed, 0 blocked" in out.stdout
    # `invoke mesh` redraws the lineage page and names it in its summary.
    assert "lineage/lineage.html (also .json, .mmd): 6 projects" in out.stdout
    assert (root / "lineage/lineage.html").stat().st_size > 1000
