"""Three dbt projects written outside this repository join a fresh mesh with one command each, then
the whole mesh builds, publishes and validates — with real dbt runs on DuckDB.

The fixture (tests/fixtures/byo/, see its README): `jaffle_core` (producer whose `profile:` is
`jaffle_shop`; a local package from packages.yml; seeds read through its own `sources:`; public
models with enforced contracts), `jaffle_marketing` (reads jaffle_core with two-argument refs
declared in its dependencies.yml; publishes `customer_segments`), `jaffle_finance` (unqualified refs
to upstream public models, a `relationships` test `to: ref('customers')`, packages in its
dependencies.yml, which names only jaffle_core). The mesh starts as a mesh.yml with targets only and
an empty profiles.yml. Nothing is edited by hand.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from ruamel.yaml import YAML

from mesh.project.config import load_mesh
from mesh.project.profiles import check_profiles
from mesh.run.pipeline import MeshRun, run_mesh
from mesh.warehouse.outputs import OWN_FILE, UPSTREAM_FILE
from tests.conftest import REPO

pytestmark = pytest.mark.slow

FIXTURE = REPO / "tests" / "fixtures" / "byo"
PROJECTS = ("jaffle_utils", "jaffle_core", "jaffle_marketing", "jaffle_finance")
BIN = Path(sys.executable).parent
ORDER = ["jaffle_core", "jaffle_marketing", "jaffle_finance"]


@dataclass
class Joined:
    root: Path
    runs: list[subprocess.CompletedProcess[str]]


def load(path: Path) -> Any:
    return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))


def artifact(root: Path, project: str, name: str) -> Any:
    return orjson.loads((root / project / "target" / name).read_bytes())


@pytest.fixture(scope="module")
def joined(tmp_path_factory: pytest.TempPathFactory) -> Joined:
    """The skeleton mesh and the fixture projects in one folder, joined through the real commands:
    `invoke project.add` for the producer, `mesh add` for the two consumers."""
    root = tmp_path_factory.mktemp("byo") / "mesh"
    shutil.copytree(FIXTURE / "skeleton", root)
    for name in PROJECTS:
        shutil.copytree(FIXTURE / name, root / name)
    shutil.copy2(REPO / "tasks.py", root / "tasks.py")
    shutil.copy2(REPO / "tasks_infra.py", root / "tasks_infra.py")
    commands = [
        [str(BIN / "invoke"), "-r", str(root), "project.add", "jaffle_core"],
        [str(BIN / "mesh"), "--root", str(root), "add", "jaffle_marketing", "--via", "loom"],
        [
            str(BIN / "mesh"), "--root", str(root), "add", "jaffle_finance",
            "--upstream", "jaffle_marketing", "--via", "loom",
        ],
    ]
    runs = [
        subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=False, timeout=120)
        for cmd in commands
    ]
    return Joined(root, runs)


@pytest.fixture(scope="module")
def built(joined: Joined) -> MeshRun:
    """`invoke mesh` on the joined mesh (local target)."""
    return run_mesh(load_mesh(joined.root, "local"), say=lambda _msg: None)


def test_each_project_joins_with_one_command(joined: Joined) -> None:
    for run in joined.runs:
        assert run.returncode == 0, run.stderr
        assert run.stderr == ""
    assert joined.runs[0].stdout.startswith(
        "add jaffle_core (dbt project jaffle_core, profile jaffle_shop: 5 models, 3 seeds, public models)"
    )


def test_what_add_wrote(joined: Joined) -> None:
    root = joined.root
    mesh_yml = load(root / "mesh.yml")
    assert mesh_yml["projects"] == {
        "jaffle_core": {"path": "jaffle_core"},
        "jaffle_marketing": {"path": "jaffle_marketing", "upstreams_via": "loom"},
        "jaffle_finance": {"path": "jaffle_finance", "upstreams_via": "loom"},
    }
    assert mesh_yml["snowflake"]["projects"] == {
        "jaffle_core": {
            "database": "JAFFLE_CORE_PROD", "warehouse": "JAFFLE_CORE_WH",
            "role": "JAFFLE_CORE_ROLE",
        },
        "jaffle_marketing": {
            "database": "JAFFLE_MARKETING_PROD", "warehouse": "JAFFLE_MARKETING_WH",
            "role": "JAFFLE_MARKETING_ROLE",
        },
        "jaffle_finance": {
            "database": "JAFFLE_FINANCE_PROD", "warehouse": "JAFFLE_FINANCE_WH",
            "role": "JAFFLE_FINANCE_ROLE",
        },
    }
    profiles = load(root / "profiles" / "profiles.yml")
    # named after the projects (dbt gets `--profile`); their own `profile:` lines stay as written
    assert list(profiles) == ["jaffle_core", "jaffle_marketing", "jaffle_finance"]
    attaches = {
        profile: [a["alias"] for a in profiles[profile]["outputs"]["local"].get("attach", [])]
        for profile in profiles
    }
    assert attaches == {
        "jaffle_core": [],
        "jaffle_marketing": ["jaffle_core"],
        "jaffle_finance": ["jaffle_core", "jaffle_marketing"],
    }
    finance_local = profiles["jaffle_finance"]["outputs"]["local"]
    assert finance_local["path"] == OWN_FILE % "jaffle_finance"
    assert finance_local["attach"][1] == {
        "path": UPSTREAM_FILE % "jaffle_marketing", "alias": "jaffle_marketing", "read_only": True,
    }
    assert profiles["jaffle_marketing"]["outputs"]["prod"]["database"] == (
        "{{ env_var('JAFFLE_MARKETING_SNOWFLAKE_DATABASE', 'JAFFLE_MARKETING_PROD') }}"
    )
    for name in PROJECTS:  # nobody's dbt_project.yml was touched
        assert (root / name / "dbt_project.yml").read_bytes() == (FIXTURE / name / "dbt_project.yml").read_bytes()
    assert (root / "jaffle_marketing/dependencies.yml").read_bytes() == (
        FIXTURE / "jaffle_marketing/dependencies.yml"
    ).read_bytes()
    assert (root / "jaffle_finance/dependencies.yml").read_text() == (
        "packages:\n  - local: ../jaffle_utils\n\nprojects:\n"
        "  - name: jaffle_core\n  - name: jaffle_marketing\n"
    )
    for name in ("jaffle_core", "jaffle_marketing", "jaffle_finance"):
        ignored = (root / name / ".gitignore").read_text().splitlines()
        assert {"target/", "logs/", "dbt_packages/", ".mesh/", "models/_mesh_*.yml"} <= set(ignored)
        assert "dbt_loom.config.yml" not in ignored  # the mesh's own is under .mesh/
    check_profiles(load_mesh(root, "local"))
    check_profiles(load_mesh(root, "prod"))


def test_the_mesh_builds_publishes_and_validates(joined: Joined, built: MeshRun) -> None:
    assert [run.project for run in built.builds] == ORDER
    for run in built.builds:
        assert run.success, run.errors
        assert run.warnings == [], (run.project, run.warnings)
        assert set(run.statuses) <= {"success", "pass"}, (run.project, run.statuses)
    assert {pub.project: pub.public_models for pub in built.publishes} == {
        "jaffle_core": 3,
        "jaffle_marketing": 1,
    }
    assert [r.project for r in built.reports] == ["jaffle_marketing", "jaffle_finance"]
    assert all(report.ok for report in built.reports), [r.text() for r in built.reports]
    finance = next(r for r in built.reports if r.project == "jaffle_finance")
    assert {e.upstream_node for e in finance.edges} >= {
        "model.jaffle_core.stg_customers",  # ref('stg_customers'), unqualified
        "model.jaffle_core.orders",  # ref('orders'), unqualified
        "model.jaffle_marketing.customer_segments",
    }
    for name in ORDER:
        assert (joined.root / "warehouse" / f"{name}.duckdb").is_file()
    core = artifact(joined.root, "jaffle_core", "run_results.json")
    statuses = {r["unique_id"]: r["status"] for r in core["results"]}
    assert statuses["seed.jaffle_core.raw_customers"] == "success"
    assert statuses["model.jaffle_core.stg_payments"] == "success"  # uses the local package's macro


@pytest.mark.parametrize(
    ("consumer", "test_fragment"),
    [
        ("jaffle_marketing", "relationships_customer_segments_customer_id__customer_id__ref_jaffle_core_customers_"),
        ("jaffle_finance", "relationships_revenue_by_customer_customer_id__customer_id__ref_customers_"),
    ],
)
def test_consumer_tests_on_upstream_models_run_and_are_enabled(
    joined: Joined, built: MeshRun, consumer: str, test_fragment: str
) -> None:
    manifest = artifact(joined.root, consumer, "manifest.json")
    tests = [uid for uid in manifest["nodes"] if uid.startswith(f"test.{consumer}.{test_fragment}")]
    assert len(tests) == 1, sorted(manifest["nodes"])
    node = manifest["nodes"][tests[0]]
    assert node["config"]["enabled"] is True
    assert "model.jaffle_core.customers" in node["depends_on"]["nodes"]
    assert not any(test_fragment in uid for uid in manifest.get("disabled", {}))
    results = artifact(joined.root, consumer, "run_results.json")
    status = {r["unique_id"]: r["status"] for r in results["results"]}
    assert status.get(tests[0]) == "pass", status
