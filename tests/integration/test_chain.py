"""The chain example mesh (core -> marketing -> finance, core -> finance) with real dbt runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mesh.config import load_mesh
from mesh.contracts import check_project
from mesh.pipeline import MeshRun, run_mesh
from mesh.report import consumers_lines
from mesh.validate import validate_projects
from tests.conftest import REPO

CHAIN = REPO / "examples" / "chain"
_IGNORED = shutil.ignore_patterns(
    "target", "logs", ".mesh", "dbt_packages", "_mesh_*.yml", "dbt_loom.config.yml", "warehouse", "registry", "lineage"
)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, MeshRun]:
    """The chain mesh, copied and built once for this module."""
    root = tmp_path_factory.mktemp("chain") / "mesh"
    shutil.copytree(CHAIN, root, ignore=_IGNORED)
    return root, run_mesh(load_mesh(root, "local"), say=lambda _msg: None)


@pytest.fixture
def chain_copy(chain: tuple[Path, MeshRun], tmp_path: Path) -> Path:
    dest = tmp_path / "mesh"
    shutil.copytree(chain[0], dest, symlinks=True)
    return dest


def test_build_order_publishes_and_builds_warning_free(chain: tuple[Path, MeshRun]) -> None:
    root, run = chain
    assert load_mesh(root, "local").build_order() == ["core", "marketing", "finance"]
    assert [b.project for b in run.builds] == ["core", "marketing", "finance"]
    assert all(b.success and not b.warnings for b in run.builds), [b.warnings for b in run.builds]
    assert [(p.project, p.status) for p in run.publishes] == [("core", "published"), ("marketing", "published")]
    assert load_mesh(root, "local").consumers_of("core") == ["marketing", "finance"]


def test_both_upstreams_of_finance_are_validated(chain: tuple[Path, MeshRun]) -> None:
    root, _run = chain
    reports = {r.project: r for r in validate_projects(load_mesh(root, "local"), ["marketing", "finance"])}
    assert all(r.ok and not r.findings for r in reports.values())
    finance = reports["finance"]
    assert set(finance.upstream_versions) == {"core", "marketing"}
    assert {(e.upstream, e.upstream_node, e.via) for e in finance.edges} >= {
        ("core", "model.core.orders", "ref"),
        ("core", "model.core.customers", "ref"),
        ("marketing", "model.marketing.customer_segments", "ref"),
    }
    marketing = reports["marketing"]
    assert {(e.upstream, e.upstream_node, e.via) for e in marketing.edges} == {
        ("core", "model.core.customers", "source"),
        ("core", "model.core.orders", "source"),
    }


def test_consumers_of_each_producer_are_on_record(chain: tuple[Path, MeshRun]) -> None:
    mesh = load_mesh(chain[0], "local")
    core = "\n".join(consumers_lines(mesh, "core"))
    assert "finance          monthly_revenue" in core and "marketing        stg_core_customers" in core
    assert "country, customer_id, email" in core
    marketing = "\n".join(consumers_lines(mesh, "marketing"))
    assert "finance          revenue_by_segment           ref    unpinned  customer_id, segment" in marketing


def _drop(root: Path, yml: str, column: str) -> None:
    path = root / yml
    text = path.read_text()
    start = text.index(f"      - name: {column}\n")
    end = text.index("\n      - name: ", start + 1)
    path.write_text(text[:start] + text[end + 1 :])


def test_gate_on_core_catches_a_column_marketing_uses(chain_copy: Path) -> None:
    _drop(chain_copy, "core/models/marts/_marts.yml", "email")
    result = check_project(load_mesh(chain_copy, "local"), "core")
    assert result.blocked
    assert {(h.use.consumer, h.use.node, h.column) for h in result.hits} == {
        ("marketing", "model.marketing.stg_core_customers", "email")
    }
    assert "marketing model stg_core_customers (column email)" in str(result.error())


def test_gate_on_marketing_catches_a_column_finance_uses(chain_copy: Path) -> None:
    _drop(chain_copy, "marketing/models/marts/_marts.yml", "segment")
    _drop(chain_copy, "marketing/models/marts/_marts.yml", "country")
    result = check_project(load_mesh(chain_copy, "local"), "marketing")
    assert {(h.use.consumer, h.column) for h in result.hits} == {("finance", "segment")}
    assert [c.column for c in result.unconsumed] == ["country"]
