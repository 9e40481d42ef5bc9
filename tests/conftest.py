"""Shared fixtures: workspaces that copy the template mesh, and (from tests.servers) real servers."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

pytest_plugins = ["tests.servers"]

REPO = Path(__file__).resolve().parent.parent
TEMPLATE_PARTS = ("mesh.yml", "profiles", "dbt_up", "dbt_down", "dbt_down_loom")
_IGNORED = shutil.ignore_patterns("target", "logs", ".mesh", "dbt_packages", "_mesh_*.yml", "dbt_loom.config.yml")


def copy_template(dest: Path) -> Path:
    """Copy the template mesh (config, profiles, the three projects) without build output."""
    dest.mkdir(parents=True, exist_ok=True)
    for part in TEMPLATE_PARTS:
        src = REPO / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=_IGNORED)
        else:
            shutil.copy2(src, dest / part)
    return dest


@pytest.fixture(scope="session")
def built_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template mesh after one full `run_mesh` on the local target (built once per session)."""
    from mesh.project.config import load_mesh
    from mesh.run.pipeline import run_mesh
    from mesh.ui.lineage import draw_lineage

    root = copy_template(tmp_path_factory.mktemp("built") / "mesh")
    result = run_mesh(load_mesh(root, "local"), say=lambda _msg: None, draw=draw_lineage)
    # Kept beside the mesh so tests can assert dbt was warning-free without rebuilding.
    (root / "warnings.json").write_bytes(
        orjson.dumps({run.project: run.warnings for run in result.builds})
    )
    return root


@pytest.fixture
def workspace(built_template: Path, tmp_path: Path) -> Iterator[Path]:
    """A private copy of the built mesh (warehouse, registry, targets) a test may change freely."""
    dest = tmp_path / "mesh"
    shutil.copytree(built_template, dest, symlinks=True)
    yield dest
