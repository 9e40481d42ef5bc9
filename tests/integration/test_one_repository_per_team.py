"""One repository per team: three git repositories (a producer, a dbt-loom consumer, a sources
consumer) that share nothing but a registry folder and the warehouse (a folder of DuckDB files
standing in for the Snowflake account they would share), each running only the `mesh` commands its
own CI would run, in the order teams would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow
MESH = str(Path(sys.executable).parent / "mesh")
IGNORED = shutil.ignore_patterns("target", "logs", ".mesh", "dbt_packages", "_mesh_*.yml", "dbt_loom.config.yml")


def mesh_yml(upstreams: list[str]) -> str:
    """A team repository's mesh.yml before its project joins: the upstreams it reads (built and
    published by their own repositories: no path) and the registry. `mesh add .` adds the rest."""
    lines = ["version: 1", "default_target: local"]
    if upstreams:
        lines.append("projects:")
        lines += [f"  {up}: {{}}              # built and published by its own repository" for up in upstreams]
    lines += ["targets:", "  local:", "    registry: ${MESH_REGISTRY}", "    env: local"]
    return "\n".join(lines) + "\n"


def team_repository(base: Path, project: str, upstreams: list[str]) -> Path:
    repo = base / f"{project}-repo"
    shutil.copytree(REPO / project, repo, ignore=IGNORED)
    (repo / "mesh.yml").write_text(mesh_yml(upstreams))
    (repo / "profiles").mkdir()
    (repo / "profiles/profiles.yml").write_text("# profiles the mesh writes for this repository\n")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    return repo


def mesh(repo: Path, *args: str, env: dict[str, str], code: int = 0) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(  # from the repository's root, as its CI would
        [MESH, *args], cwd=repo, capture_output=True, text=True, env=env, check=False
    )
    assert out.returncode == code, f"mesh {' '.join(args)} -> {out.returncode}\n{out.stdout}\n{out.stderr}"
    return out


def test_three_repositories_share_only_a_registry(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "MESH_REGISTRY": f"file://{tmp_path / 'registry'}",
        "MESH_WAREHOUSE_DIR": str(tmp_path / "warehouse"),
    }
    up = team_repository(tmp_path, "dbt_up", [])
    loom = team_repository(tmp_path, "dbt_down_loom", ["dbt_up"])
    sources = team_repository(tmp_path, "dbt_down", ["dbt_up"])

    # Once per repository: the team registers its project (profile for every target).
    mesh(up, "add", ".", env=env)
    mesh(loom, "add", ".", "--via", "loom", env=env)
    mesh(sources, "add", ".", "--via", "sources", env=env)

    # The producer's CI on main: build (contract gate first), publish.
    mesh(up, "build", "--project", "dbt_up", "--save-state", env=env)
    mesh(up, "publish", "--project", "dbt_up", env=env)
    assert (tmp_path / "registry/dbt_up/local/latest/manifest.json").is_file()

    # Each consumer's CI on main: sync, build, validate (recording usage for the gate).
    for repo, name in ((loom, "dbt_down_loom"), (sources, "dbt_down")):
        mesh(repo, "sync", "--project", name, env=env)
        mesh(repo, "build", "--project", name, "--save-state", env=env)
        report = mesh(repo, "validate", "--project", name, "--record-usage", "--format", "json", env=env)
        doc = orjson.loads(report.stdout)
        assert doc["ok"] and doc["reports"][0]["edges"], doc
        assert not (repo / "dbt_up").exists()  # nothing of the producer's repository is here

    # The producer's pull request drops a column both consumers read: its gate names them.
    yml = up / "models/marts/orders/public_orders.yml"
    text = yml.read_text()
    start = text.index("      - name: payment_count\n")
    end = text.index("      - name: is_refunded\n")
    yml.write_text(text[:start] + text[end:])
    sql = up / "models/marts/orders/public_orders.sql"
    sql.write_text("\n".join(line for line in sql.read_text().splitlines() if "payment_count" not in line) + "\n")
    check = mesh(up, "check", "--project", "dbt_up", env=env, code=1)
    assert "dbt_down" in check.stderr and "dbt_down_loom" in check.stderr
    assert "payment_count" in check.stdout
    # and a build of that change is refused before it touches the shared warehouse.
    before = (tmp_path / "warehouse/dbt_up.duckdb").read_bytes()
    mesh(up, "build", "--project", "dbt_up", env=env, code=1)
    assert (tmp_path / "warehouse/dbt_up.duckdb").read_bytes() == before
