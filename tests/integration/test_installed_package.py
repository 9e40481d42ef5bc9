"""The package as people install it: the wheel built from this repository, installed with the
DuckDB adapter extra into a fresh virtualenv (nothing of this repository on its path), imports every
module and runs a team's own repository with nothing but the `mesh` script it installs.

The install reads the pinned versions of requirements.txt as constraints and pip's usual sources
(the configured index, pip's cache), as `pip install 'dbt-mesh-core[duckdb]'` would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.test_one_repository_per_team import mesh_yml, team_repository

pytestmark = pytest.mark.slow
INSTALL_TIMEOUT_S = 900  # a cold machine; about two minutes on a warm one


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(argv)} -> {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv holding the built wheel with `[duckdb]`; returns its bin folder."""
    work = tmp_path_factory.mktemp("package")
    source = work / "source"  # what the wheel is built from: no build output lands in the repository
    source.mkdir()
    shutil.copy2(REPO / "pyproject.toml", source / "pyproject.toml")
    shutil.copytree(REPO / "mesh", source / "mesh", ignore=shutil.ignore_patterns("__pycache__"))
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(work / "dist"), str(source)], work)
    (wheel,) = (work / "dist").glob("dbt_mesh_core-*.whl")
    _run([sys.executable, "-m", "venv", str(work / "venv")], work)
    bin_dir = work / "venv" / "bin"
    _run(
        [
            str(bin_dir / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--constraint", str(REPO / "requirements.txt"), f"{wheel}[duckdb]",
        ],
        work, timeout=INSTALL_TIMEOUT_S,
    )
    return bin_dir


def _env(bin_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "MESH_SURFACE")}
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")])
    env.update(extra)
    return env


IMPORT_ALL = """
import importlib, pkgutil, sys
import mesh
found = [m.name for m in pkgutil.walk_packages(mesh.__path__, "mesh.")]
for name in found:
    importlib.import_module(name)
from importlib.resources import files
assets = sorted(p.name for p in files("mesh").joinpath("ui", "assets").iterdir())
print(mesh.__file__)
print(len(found), "modules")
print(" ".join(assets))
"""


def test_the_wheel_installs_and_imports_every_module(venv: Path, tmp_path: Path) -> None:
    version = _run([str(venv / "mesh"), "--version"], tmp_path, _env(venv))
    assert version.stdout.startswith("mesh 0.1.0 (dbt-mesh-core), dbt-core 1.11."), version.stdout
    # -I: nothing of the working folder or the environment on sys.path, only the virtualenv.
    out = _run([str(venv / "python"), "-I", "-c", IMPORT_ALL], tmp_path, _env(venv)).stdout.splitlines()
    assert out[0].startswith(str(venv.parent / "lib")), out  # the installed copy, not the repository's
    repo_modules = [p for p in (REPO / "mesh").rglob("*.py") if p.name != "__init__.py"]
    assert int(out[1].split()[0]) >= len(repo_modules), out
    assert {"lineage.js", "lineage.css", "elk.bundled.js"} <= set(out[2].split()), out  # the page's assets
    # the adapter of the extra, and what the infrastructure checks and the display import
    _run([str(venv / "python"), "-I", "-c", "import dbt.adapters.duckdb, hcl2, rich, sqlglot"], tmp_path, _env(venv))


def test_a_team_repository_joins_and_runs_with_the_installed_script(venv: Path, tmp_path: Path) -> None:
    """Two team repositories sharing a registry folder and the warehouse: `mesh add . && mesh run`
    in each, the producer's first; the consumer's first attempt, before its mesh.yml names the
    upstream, is told which mesh.yml edit to make."""
    env = _env(
        venv, MESH_REGISTRY=f"file://{tmp_path / 'registry'}", MESH_WAREHOUSE_DIR=str(tmp_path / "warehouse")
    )
    up = team_repository(tmp_path, "dbt_up", [])
    run = _run(["sh", "-c", "mesh add . && mesh run"], up, env)
    assert "1 built, 0 skipped, 0 failed, 0 blocked" in run.stdout, run.stdout
    assert (tmp_path / "registry/dbt_up/local/latest/manifest.json").is_file()

    down = team_repository(tmp_path, "dbt_down", [])
    refused = subprocess.run(["mesh", "add", "."], cwd=down, env=env, capture_output=True, text=True, check=False)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "add `dbt_up: {}` under `projects:` in mesh.yml" in refused.stderr, refused.stderr
    assert "invoke" not in refused.stderr
    (down / "mesh.yml").write_text(mesh_yml(["dbt_up"]))  # the edit the message names
    run = _run(["sh", "-c", "mesh add . && mesh run"], down, env)
    assert "1 built, 0 skipped, 0 failed, 0 blocked" in run.stdout, run.stdout
    assert "cross-project edges validated" in run.stdout, run.stdout
