"""A run's counts are dbt's own and add up: every status dbt reports (NO-OP included) is shown."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mesh.project.config import load_mesh
from mesh.ui.cli import main
from mesh.ui.lineage import drawing_problems, write_lineage
from mesh.ui.lineage_graph import load_graph
from tests.integration.test_lineage_html import SETTLE, geometry_of, run_chromium

pytestmark = pytest.mark.slow

EXPOSURE = """
exposures:
  - name: customer_dashboard
    label: Customer dashboard
    type: dashboard
    maturity: medium
    owner:
      name: Analytics
      email: analytics@example.com
    depends_on:
      - ref('customer_orders')
"""
COUNTS_RE = re.compile(r"((?:[A-Z-]+=\d+ )+TOTAL=(\d+))")


def test_counts_of_a_project_with_an_exposure_add_up(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    yml = workspace / "dbt_down_loom/models/marts/customer_orders.yml"
    yml.write_text(yml.read_text() + EXPOSURE)

    code = main(["--root", str(workspace), "build", "--project", "dbt_down_loom"])
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    match = COUNTS_RE.search(out.out)
    assert match, out.out
    counts = dict(item.split("=") for item in match.group(1).split())
    total = int(counts.pop("TOTAL"))
    assert list(counts) == ["PASS", "WARN", "ERROR", "SKIP", "NO-OP"], match.group(1)
    assert counts["NO-OP"] == "1", match.group(1)  # the exposure
    assert sum(int(n) for n in counts.values()) == total, match.group(1)


def test_the_lineage_page_draws_the_exposure_as_the_last_hop(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    yml = workspace / "dbt_down_loom/models/marts/customer_orders.yml"
    yml.write_text(yml.read_text() + EXPOSURE)
    assert main(["--root", str(workspace), "build", "--project", "dbt_down_loom"]) == 0

    graph = load_graph(load_mesh(workspace, "local"))
    board = graph.nodes["exposure.dbt_down_loom.customer_dashboard"]
    assert (board.project, board.name, board.owner) == (
        "dbt_down_loom", "Customer dashboard", "Analytics"
    )
    parents = {e.source for e in graph.edges if e.target == board.id}
    assert parents == {"model.dbt_down_loom.customer_orders"}
    assert not any(e.source == board.id for e in graph.edges)
    page = write_lineage(graph, workspace / "lineage", ["html"])["html"]
    dom = run_chromium([SETTLE, "--dump-dom", page.as_uri()], workspace / "chromium")
    assert drawing_problems(geometry_of(dom), graph) == []
    assert 'data-node-id="exposure.dbt_down_loom.customer_dashboard"' in dom
