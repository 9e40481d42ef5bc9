"""Sync and the unit tests of a consumer whose inputs are an upstream's public nodes (no dbt run)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from ruamel.yaml import YAML

from mesh.consumer.unit_fixtures import fixture_inputs
from mesh.core.errors import SyncError
from mesh.interface.publish import publish_project
from mesh.project.config import Mesh, load_mesh
from mesh.run.pipeline import sync_project
from tests import factories
from tests.unit.test_publish_sync import MESH_YML, snapshot, write_build


@pytest.fixture
def mesh(tmp_path: Path) -> Mesh:
    (tmp_path / "mesh.yml").write_text(MESH_YML)
    for name in ("core", "app", "loomy"):
        (tmp_path / name / "models").mkdir(parents=True)
        (tmp_path / name / "dbt_project.yml").write_text(f"name: {name}\n")
    for name in ("app", "loomy"):
        (tmp_path / name / "dependencies.yml").write_text("projects:\n  - name: core\n")
    (tmp_path / "app/models/a.sql").write_text("select * from {{ source('core', 'orders') }}")
    (tmp_path / "loomy/models/b.sql").write_text("select * from {{ ref('core', 'orders') }}")
    write_build(tmp_path / "core", factories.producer())
    m = load_mesh(tmp_path, "local")
    publish_project(m, "core")
    return m


def unit_test(model: str, given: str) -> str:
    return f"unit_tests:\n  - name: t_{model}\n    model: {model}\n    given:\n{given}    expect:\n      rows: []\n"


def test_loom_input_is_named_for_no_package(mesh: Mesh) -> None:
    sync_project(mesh, "loomy")
    config = YAML(typ="safe").load((mesh.root / "loomy/.mesh/dbt_loom.config.yml").read_text())
    assert config["manifests"][0]["name"] == "core"
    synced = orjson.loads((mesh.root / "loomy/.mesh/upstreams/core.json").read_bytes())
    registry = orjson.loads((mesh.root / "registry/core/local/latest/manifest.json").read_bytes())
    assert registry["metadata"]["project_name"] == "core"
    # Not an identifier, so never the name of a dbt package dbt-loom could restrict.
    assert synced["metadata"]["project_name"] == "core (public interface, synced by the mesh)"
    assert {k: v for k, v in synced["metadata"].items() if k != "project_name"} == {
        k: v for k, v in registry["metadata"].items() if k != "project_name"
    }
    assert {n["package_name"] for n in synced["nodes"].values()} == {"core"}


@pytest.mark.parametrize(
    ("project", "given"),
    [
        ("loomy", "      - input: ref('core', 'orders')\n        rows:\n          - {id: 1, amount: 2.5}\n"),
        ("app", "      - input: source('core', 'orders')\n        rows:\n          - {ID: 1}\n          - {amount: 2}\n"),
        ("app", "      - input: source('core', 'orders')\n        format: csv\n        rows: |\n          id,amount\n          1,2\n"),
        ("loomy", "      - input: ref('core', 'orders')\n        format: sql\n        rows: select 1 as anything\n"),
    ],
)
def test_fixtures_of_published_columns_sync(mesh: Mesh, project: str, given: str) -> None:
    (mesh.root / project / "models/u.yml").write_text(unit_test("b" if project == "loomy" else "a", given))
    plan = sync_project(mesh, project)
    assert plan.upstream_versions["core"]


@pytest.mark.parametrize(
    ("project", "given", "names"),
    [
        (
            "loomy",
            "      - input: ref('core', 'orders')\n        rows:\n          - {id: 1, discount: 2.5}\n",
            "ref('core', 'orders') names column discount, which core does not publish",
        ),
        (
            "app",
            "      - input: source(\"core\", \"orders\")\n        format: csv\n        fixture: orders_rows\n",
            "source('core', 'orders') names column cents, which core does not publish",
        ),
        (
            "loomy",
            "      - input: ref('core', 'customers', v=1)\n        rows:\n          - {id: 1, first: x}\n",
            "ref('core', 'customers', v=1) names column first, which core does not publish",
        ),
    ],
)
def test_fixture_of_an_unpublished_column_stops_sync(mesh: Mesh, project: str, given: str, names: str) -> None:
    model = "b" if project == "loomy" else "a"
    (mesh.root / project / "models/u.yml").write_text(unit_test(model, given))
    (mesh.root / project / "tests/fixtures").mkdir(parents=True)
    (mesh.root / project / "tests/fixtures/orders_rows.csv").write_text("id,cents\n1,250\n")
    before = snapshot(mesh.root / project)
    with pytest.raises(SyncError) as err:
        sync_project(mesh, project)
    message = str(err.value)
    assert message.startswith(f"{project}/models/u.yml: unit test t_{model}: its fixture for ")
    assert names in message and "\n" not in message
    assert "(published " in message
    assert snapshot(mesh.root / project) == before


def test_fixture_inputs_reads_model_paths_only(mesh: Mesh) -> None:
    project = mesh.project("loomy")
    (mesh.root / "loomy/dbt_project.yml").write_text("name: loomy\nmodel-paths: [src]\n")
    given = "      - input: ref('core', 'orders')\n        rows:\n          - {id: 1}\n"
    (mesh.root / "loomy/models/u.yml").write_text(unit_test("b", given))
    assert fixture_inputs(project, {"core"}) == []
    (mesh.root / "loomy/src/staging").mkdir(parents=True)
    (mesh.root / "loomy/src/staging/u.yml").write_text(unit_test("b", given))
    (mesh.root / "loomy/src/broken.yml").write_text("unit_tests: [\n")  # dbt's to report
    (found,) = fixture_inputs(project, {"core", "other"})
    assert (found.test, found.kind, found.upstream, found.name, found.version) == ("t_b", "ref", "core", "orders", None)
    assert found.columns == ("id",)
    assert fixture_inputs(project, {"other"}) == []
