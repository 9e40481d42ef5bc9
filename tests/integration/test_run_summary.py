"""A run's counts are dbt's own and add up: every status dbt reports (NO-OP included) is shown."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mesh.ui.cli import main

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
