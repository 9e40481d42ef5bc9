"""Projects as real repositories ship them join with no flags and no edits, and dbt's semantics are
the same inside the mesh as outside it, with real dbt runs on DuckDB.

- Two renamed copies of `dbt_down_loom`, each shipping a `profiles.yml` whose only output is a
  Snowflake `dev` output under `profile: snowflake` (so neither defines mesh.yml's `local` or
  `prod`), join with `invoke project.add <folder>` and no flags, and `invoke mesh` builds and
  validates both, each into a database of its own.
- A producer whose local package declares `+access: private` without a group builds: the mesh
  gives dbt-loom an empty config (`manifests: []`), so dbt-loom's access checks apply as they do
  for the same project outside the mesh. Plain dbt with no dbt-loom config refuses the project,
  which proves the fixture exercises that check.
- A consumer's own root `dbt_loom.config.yml` (pointing at manifests its CI would download) names
  its upstream for `mesh add`, and is never edited nor given to dbt-loom: read, it would fail the
  build, since the manifest it points at does not exist.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import orjson
import pytest
from ruamel.yaml import YAML

from mesh.warehouse.runner import EMPTY_LOOM_CONFIG
from tests.conftest import REPO, copy_template

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
SHIPPED_PROFILES = """\
# how this team runs dbt on its laptops
snowflake:
  target: dev
  outputs:
    dev:
      type: snowflake
      account: "{{ env_var('SNOWFLAKE_ACCOUNT') }}"
      user: "{{ env_var('SNOWFLAKE_USER') }}"
      authenticator: externalbrowser
      role: TRANSFORMER
      warehouse: TRANSFORMING
      database: ANALYTICS
      schema: "dbt_{{ env_var('USER', 'dev') }}"
      threads: 8
"""


def environment() -> dict[str, str]:
    """The caller's environment without Snowflake settings, the venv first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SNOWFLAKE_", "MESH_", "DBT_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def run(root: Path, *words: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(words), cwd=root, env=env or environment(), capture_output=True, text=True, check=False, timeout=900
    )


def sources(folder: Path) -> dict[str, bytes]:
    """A project's own files (what its team wrote), not what dbt or the mesh generate there."""
    skipped = {"target", "logs", "dbt_packages", ".mesh"}
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not skipped & set(p.relative_to(folder).parts) and not p.name.startswith("_mesh_")
    }


def dbt_warnings(root: Path) -> list[str]:
    return [line for log in sorted((root / "logs").glob("*.log")) for line in log.read_text().splitlines() if "[WARNING]" in line]


# --- two copies sharing `profile: snowflake` ----------------------------------------------------


def test_two_copies_shipping_one_snowflake_profile_join_without_flags_and_build(tmp_path: Path) -> None:
    root = copy_template(tmp_path / "repo")
    for name in ("tasks.py", "tasks_infra.py"):
        shutil.copy2(REPO / name, root / name)
    copies = ("loom_east", "loom_west")
    for name in copies:
        shutil.copytree(root / "dbt_down_loom", root / name)
        spec = root / name / "dbt_project.yml"
        text = spec.read_text().replace("name: dbt_down_loom", f"name: {name}", 1)
        text = text.replace("profile: dbt_down_loom", "profile: snowflake", 1).replace("  dbt_down_loom:\n", f"  {name}:\n", 1)
        spec.write_text(text)
        (root / name / "profiles.yml").write_text(SHIPPED_PROFILES)
    written = {name: sources(root / name) for name in copies}

    for name in copies:
        added = run(root, "invoke", "project.add", name)
        assert added.returncode == 0, added.stdout + added.stderr
        lines = added.stdout.splitlines()
        assert f"  Update mesh.yml: register project {name} at {name}, reading dbt_up through dbt-loom refs, with its own profiles folder {name}" in lines
        assert f"  Note: profile snowflake in {name}/profiles.yml has none of the mesh's targets (local, prod); the mesh's profile {name} serves local, prod" in lines
        assert f"  Note: target prod needs SNOWFLAKE_ACCOUNT, SNOWFLAKE_PRIVATE_KEY_PATH, SNOWFLAKE_USER set before {name} builds on it" in lines
        assert lines[-1] == "next: `invoke mesh` builds, tests and publishes it with the rest of the mesh"
        assert sources(root / name) == written[name]  # nothing of theirs edited, profiles.yml included
    profiles = YAML(typ="safe").load((root / "profiles/profiles.yml").read_text())
    assert "snowflake" not in profiles
    for name in copies:
        assert set(profiles[name]["outputs"]) == {"local", "prod"}

    built = run(root, "invoke", "mesh")

    assert built.returncode == 0, built.stdout + built.stderr
    assert "5 built, 0 skipped, 0 failed, 0 blocked" in built.stdout
    summary = {line.split()[0]: line for line in built.stdout.splitlines() if line.startswith("  ")}
    reference = duckdb.connect(str(root / "warehouse/dbt_down_loom.duckdb"), read_only=True)
    expected = reference.sql("select * from marts.customer_orders order by all").fetchall()
    reference.close()
    assert expected
    for name in copies:
        assert summary[name].split()[1] == "built" and "cross-project edges ok" in summary[name], summary[name]
        results = orjson.loads((root / name / "target/run_results.json").read_bytes())["results"]
        assert results and all(r["status"] in ("success", "pass") for r in results)
        manifest = orjson.loads((root / name / "target/manifest.json").read_bytes())
        assert "model.dbt_up.public_orders" in manifest["child_map"]  # the edge dbt-loom resolved
        con = duckdb.connect(str(root / "warehouse" / f"{name}.duckdb"), read_only=True)
        assert con.sql("select * from marts.customer_orders order by all").fetchall() == expected
        con.close()
        assert sources(root / name) == written[name]
    assert dbt_warnings(root) == []


# --- a private package without a group, and a team's own dbt-loom config --------------------------


def _write(folder: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)


PLATFORM = {
    "plat_utils/dbt_project.yml": "name: plat_utils\nversion: '1.0.0'\nconfig-version: 2\n\nmodels:\n  plat_utils:\n    +access: private\n",
    "plat_utils/models/util_ids.sql": "select 1 as id union all select 2 as id\n",
    "plat/dbt_project.yml": "name: plat\nversion: '1.0.0'\nprofile: platform\n",
    "plat/packages.yml": "packages:\n  - local: ../plat_utils\n",
    "plat/models/plat_orders.sql": "select cast(id as integer) as order_id, cast(id * 10 as integer) as amount from {{ ref('util_ids') }}\n",
    "plat/models/plat_orders.yml": (
        "models:\n  - name: plat_orders\n    config:\n      access: public\n      contract: {enforced: true}\n"
        "    columns:\n      - name: order_id\n        data_type: integer\n      - name: amount\n        data_type: integer\n"
    ),
    "shop/dbt_project.yml": "name: shop\nversion: '1.0.0'\nprofile: shop\n",
    "shop/models/shop_orders.sql": "{{ config(materialized='table') }}\nselect order_id, amount * 2 as doubled from {{ ref('plat', 'plat_orders') }}\n",
    "shop/dbt_loom.config.yml": (
        "# CI downloads the upstream manifests before dbt runs\n"
        "manifests:\n  - name: plat\n    type: file\n    config:\n      path: manifests/plat.json\n"
    ),
}


def test_private_package_producer_and_a_teams_own_loom_config(tmp_path: Path) -> None:
    root = tmp_path / "mesh"
    shutil.copytree(REPO / "tests/fixtures/byo/skeleton", root)
    _write(root, PLATFORM)
    team_loom = (root / "shop/dbt_loom.config.yml").read_bytes()
    mesh = str(BIN / "mesh")

    assert run(root, mesh, "add", "plat").returncode == 0
    shop = run(root, mesh, "add", "shop")  # no flags: upstream and style from its code

    assert shop.returncode == 0, shop.stderr
    assert "  Update mesh.yml: register project shop at shop, reading plat through dbt-loom refs" in shop.stdout.splitlines()
    assert "  Note: shop reads plat (its code): declared in dependencies.yml" in shop.stdout.splitlines()
    assert "dbt_loom.config.yml" not in (root / "shop/.gitignore").read_text()

    built = run(root, mesh, "run")

    assert built.returncode == 0, built.stdout + built.stderr
    assert "2 built, 0 skipped, 0 failed, 0 blocked" in built.stdout
    assert (root / "plat/.mesh/dbt_loom.config.yml").read_bytes() == EMPTY_LOOM_CONFIG
    assert (root / "shop/dbt_loom.config.yml").read_bytes() == team_loom  # never touched
    generated = YAML(typ="safe").load((root / "shop/.mesh/dbt_loom.config.yml").read_text())
    assert [m["name"] for m in generated["manifests"]] == ["plat"]
    con = duckdb.connect(str(root / "warehouse/shop.duckdb"), read_only=True)
    assert con.sql("select order_id, doubled from main.shop_orders order by order_id").fetchall() == [(1, 20), (2, 40)]
    con.close()
    assert dbt_warnings(root) == []

    # The same projects under plain dbt: without any dbt-loom config the producer does not parse
    # (so the empty config is what keeps it building), and with the team's own config the
    # consumer does not parse (so the mesh never gave it to dbt-loom).
    def plain_parse(project: str, loom_config: Path) -> subprocess.CompletedProcess[str]:
        env = {**environment(), "DBT_LOOM_CONFIG": str(loom_config), "MESH_WAREHOUSE_DIR": str(root / "warehouse")}
        return run(
            root / project, str(BIN / "dbt"), "parse", "--no-partial-parse", "--no-use-colors",
            "--target-path", str(tmp_path / f"plain_{project}"), "--profiles-dir", str(root / "profiles"),
            "--profile", project, "--target", "local", env=env,
        )

    private = plain_parse("plat", tmp_path / "no_such_config.yml")
    assert private.returncode != 0
    assert "which is not allowed because the referenced node is private to the '' group" in private.stdout
    theirs = plain_parse("shop", root / "shop/dbt_loom.config.yml")
    assert theirs.returncode != 0
    assert "manifests/plat.json` does not exist" in theirs.stdout + theirs.stderr
