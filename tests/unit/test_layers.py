"""The library's layers (docs/architecture.md): each subpackage of `mesh` imports only the ones below
it, checked by import-linter's layers contract in pyproject.toml over the real import graph; and no
tracked file carries a merge conflict."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, capture_output=True, text=True, check=False
    )


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(REPO / "mesh", root / "mesh", ignore=shutil.ignore_patterns("__pycache__", "assets"))
    shutil.copy(REPO / "pyproject.toml", root)
    return root


def test_the_library_keeps_its_layers(tmp_path: Path) -> None:
    done = _lint(_copy(tmp_path))
    assert done.returncode == 0, done.stdout
    assert "1 kept, 0 broken" in done.stdout


def test_an_upward_import_breaks_the_contract(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    low = root / "mesh/core/text.py"
    low.write_text(low.read_text() + "\nfrom mesh.run import pipeline  # noqa: E402,F401\n")
    done = _lint(root)
    assert done.returncode != 0
    assert "mesh.core is not allowed to import mesh.run" in done.stdout


def test_every_subpackage_is_a_layer() -> None:
    text = (REPO / "pyproject.toml").read_text()
    layers = set(re.findall(r'^\s*"(mesh\.\w+)",$', text, re.M))
    packages = {f"mesh.{p.parent.name}" for p in (REPO / "mesh").glob("*/__init__.py")}
    assert packages == layers


def test_no_tracked_file_holds_a_merge_conflict() -> None:
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode().split("\0")
    marker = re.compile(rb"^(<{7}|>{7}|={7})( |$)", re.M)
    found = [
        name for name in files
        if name and (REPO / name).is_file() and marker.search((REPO / name).read_bytes())
    ]
    assert found == []
