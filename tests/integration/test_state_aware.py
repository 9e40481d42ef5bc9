"""State-aware mesh runs on real dbt builds: skip the unchanged, rebuild exactly what a change
reaches, block only the downstream of a failure, build independent projects at the same time.

examples/chain is core -> marketing -> finance (finance reads core and marketing).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mesh.core.errors import BuildFailedError
from mesh.project.config import load_mesh
from mesh.run.pipeline import MeshRun, run_mesh
from tests.conftest import REPO, copy_template

pytestmark = pytest.mark.slow
CHAIN = REPO / "examples" / "chain"


def quiet(_line: str) -> None:
    """Tests read the outcomes, not the progress lines."""


def statuses(run: MeshRun) -> dict[str, str]:
    return {o.project: o.status for o in run.outcomes}


def run(root: Path, **kwargs: object) -> MeshRun:
    return run_mesh(load_mesh(root, "local"), say=quiet, **kwargs)  # type: ignore[arg-type]


NO_DBT = """
import sys
from mesh.project.config import load_mesh
from mesh.run.pipeline import run_mesh
result = run_mesh(load_mesh(sys.argv[1], "local"), say=lambda _l: None)
print(" ".join(f"{o.project}={o.status}" for o in result.outcomes))
"""


def test_runs_rebuild_exactly_what_changed(tmp_path: Path) -> None:
    root = tmp_path / "chain"
    shutil.copytree(CHAIN, root, ignore=shutil.ignore_patterns("target", "logs", ".mesh", "warehouse", "registry", "lineage"))
    assert statuses(run(root)) == {"core": "built", "marketing": "built", "finance": "built"}

    # 1. Nothing changed: every project is skipped and dbt is never even imported (a `dbt` package
    #    that refuses to import stands first on the path of this run).
    poison = tmp_path / "poison" / "dbt"
    poison.mkdir(parents=True)
    (poison / "__init__.py").write_text('raise ImportError("dbt was imported during a no-op run")\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(poison.parent), str(REPO)])}
    noop = subprocess.run(
        [sys.executable, "-c", NO_DBT, str(root)], capture_output=True, text=True, env=env, check=False
    )
    assert noop.returncode == 0, noop.stdout + noop.stderr
    assert noop.stdout.split() == ["core=skipped", "marketing=skipped", "finance=skipped"]

    # 2. One consumer's model changed: that consumer only.
    model = root / "finance/models/marts/monthly_revenue.sql"
    model.write_text(model.read_text() + "\n-- touched\n")
    assert statuses(run(root)) == {"core": "skipped", "marketing": "skipped", "finance": "built"}

    # 3. The producer's data changed, its interface did not: it rebuilds and publishes nothing new;
    #    its consumers keep the interface version they were built against, so they are skipped.
    before = load_mesh(root, "local").registry.list_versions("core", "local")
    staging = root / "core/models/staging/stg_orders.sql"
    staging.write_text(staging.read_text() + "\n-- touched\n")
    third = run(root)
    assert statuses(third) == {"core": "built", "marketing": "skipped", "finance": "skipped"}
    assert [p.status for p in third.publishes] == ["unchanged"]
    assert load_mesh(root, "local").registry.list_versions("core", "local") == before

    # 4. marketing's interface changed (a description): marketing publishes, finance (its
    #    consumer) rebuilds, core does not.
    marts = root / "marketing/models/marts/_marts.yml"
    text = marts.read_text()
    changed = re.sub(r'description: "([^"]*)"', r'description: "\1 (revised)"', text, count=1)
    assert changed != text
    marts.write_text(changed)
    fourth = run(root)
    assert statuses(fourth) == {"core": "skipped", "marketing": "built", "finance": "built"}
    assert [(p.project, p.status) for p in fourth.publishes] == [("marketing", "published")]

    # 5. --full builds everything again.
    assert set(statuses(run(root, full=True)).values()) == {"built"}


def test_a_failing_project_blocks_only_its_downstream(tmp_path: Path) -> None:
    root = tmp_path / "chain"
    shutil.copytree(CHAIN, root, ignore=shutil.ignore_patterns("target", "logs", ".mesh", "warehouse", "registry", "lineage"))
    model = root / "marketing/models/staging/stg_core_customers.sql"
    model.write_text("select no_such_column from {{ source('core', 'customers') }}\n")
    with pytest.raises(BuildFailedError) as info:
        run(root)
    message = str(info.value)
    assert "dbt build failed for marketing" in message
    assert "stg_core_customers" in message and "no_such_column" in message
    assert "logs/marketing.log" in message and "\x1b[" not in message
    assert "(finance blocked)" in message
    mesh = load_mesh(root, "local")
    assert mesh.registry.read_latest("core", "local") is not None  # core built and published
    assert mesh.registry.read_latest("marketing", "local") is None
    assert not (root / "finance/target/run_results.json").exists()  # never started
    assert (root / "logs/marketing.log").read_text().count("no_such_column") >= 1


def test_independent_projects_build_at_the_same_time(tmp_path: Path) -> None:
    """The two consumers of the template depend only on dbt_up: with two jobs they overlap, with
    one they run one after the other (wall-clock intervals recorded by the workers)."""
    root = copy_template(tmp_path / "mesh")

    def overlap(result: MeshRun) -> bool:
        spans = {o.project: (o.started_at, o.finished_at) for o in result.outcomes}
        (a0, a1), (b0, b1) = spans["dbt_down"], spans["dbt_down_loom"]
        return a0 < b1 and b0 < a1

    assert overlap(run(root, jobs=2, full=True))
    assert not overlap(run(root, jobs=1, full=True))


def test_a_mesh_in_another_folder_keeps_its_fingerprints(workspace: Path) -> None:
    """The built template, copied to another folder (another CI runner's checkout, a moved clone):
    nothing changed, so nothing rebuilds; the warehouse path is fingerprinted relative to the mesh."""
    result = run(workspace)
    assert statuses(result) == {"dbt_up": "skipped", "dbt_down": "skipped", "dbt_down_loom": "skipped"}


def test_on_snowflake_a_relations_check_that_cannot_connect_means_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without credentials (or a reachable account) the relations cannot be confirmed: the project
    builds rather than being skipped on trust."""
    from mesh.run import fingerprint

    root = copy_template(tmp_path / "mesh")
    for name in list(os.environ):
        if name.startswith("SNOWFLAKE_") or name.endswith("_SNOWFLAKE_USER"):
            monkeypatch.delenv(name)
    mesh = load_mesh(root, "prod")
    assert fingerprint.relations_exist(mesh, "dbt_up", ["DBT_UP_PROD.marts.public_orders"]) is False
