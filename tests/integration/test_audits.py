"""Audits beyond dbt's tests (mesh.yml `audits:`): commands run against the audit copy before the
swap; a failing one blocks the swap and the publish, a passing one is recorded with the build and
in the history entry its publish writes."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import orjson
import pytest

from mesh.consumer.freshness import OBJECT
from mesh.core.errors import AuditFailedError
from mesh.project.config import load_mesh
from mesh.run.pipeline import run_mesh
from mesh.ui.cli import main
from mesh.ui.report import registry_show_lines
from tests.conftest import copy_template

pytestmark = pytest.mark.slow

# Reads the audit copy it is given, never the live file, and says what it saw.
COUNT_ORDERS = (
    f"{sys.executable} -c \"import duckdb, os; "
    "path = os.environ['MESH_AUDIT_LOCATION']; "
    "assert '/.audit/' in path or '.audit' in path, path; "
    "n = duckdb.connect(path, read_only=True).execute('select count(*) from marts.public_orders').fetchone()[0]; "
    "print(f'{n} orders in the audit copy'); assert n > 0\""
)


def with_audits(root: Path, *audits: tuple[str, str]) -> None:
    mesh_yml = root / "mesh.yml"
    block = "".join(f"\n      - name: {name}\n        run: '{run.replace(chr(39), chr(39) * 2)}'" for name, run in audits)
    text = mesh_yml.read_text()
    assert "  dbt_up:\n    path: dbt_up\n" in text, text
    mesh_yml.write_text(text.replace("  dbt_up:\n    path: dbt_up\n", f"  dbt_up:\n    path: dbt_up\n    audits:{block}\n", 1))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_failing_audit_fails_the_run_naming_it_and_changes_nothing(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with_audits(workspace, ("row_counts", COUNT_ORDERS), ("soda_scan", "echo scanning; echo '2 checks failed'; exit 3"))
    mesh = load_mesh(workspace, "local")
    live = workspace / "warehouse/dbt_up.duckdb"
    before = digest(live)
    latest = mesh.registry.read_latest("dbt_up", "local")
    freshness = mesh.registry.read_private("dbt_up", "local", OBJECT)

    with pytest.raises(AuditFailedError, match="audit soda_scan of dbt_up failed"):
        run_mesh(load_mesh(workspace, "local"), say=None, projects=["dbt_up"], full=True)
    code = main(["--root", str(workspace), "run", "--project", "dbt_up"])
    out = capsys.readouterr()

    assert code == 1
    assert "audit soda_scan of dbt_up failed (exit 3: 2 checks failed); nothing was swapped or published" in out.err
    assert digest(live) == before  # the live data
    assert mesh.registry.read_latest("dbt_up", "local") == latest  # and latest
    assert mesh.registry.read_private("dbt_up", "local", OBJECT) == freshness
    log = (workspace / "logs/dbt_up.log").read_text()
    assert "=== audit row_counts" in log and "orders in the audit copy" in log and "2 checks failed" in log


def test_passing_audits_are_recorded_with_the_build_and_its_history_entry(tmp_path: Path) -> None:
    root = copy_template(tmp_path / "mesh")
    with_audits(root, ("row_counts", COUNT_ORDERS))
    mesh = load_mesh(root, "local")
    run = run_mesh(mesh, say=None, projects=["dbt_up"])
    (outcome,) = run.outcomes
    assert any(n.startswith("audits: row_counts passed") for n in outcome.notes), outcome.notes

    latest = mesh.registry.read_latest("dbt_up", "local")
    assert latest is not None
    (recorded,) = orjson.loads(latest.body)["metadata"]["mesh"]["audits"]
    assert recorded["name"] == "row_counts" and recorded["passed"] is True
    assert recorded["last_line"].endswith("orders in the audit copy")
    fresh = orjson.loads(mesh.registry.read_private("dbt_up", "local", OBJECT) or b"")
    assert fresh["build"]["audits"] == [recorded]
    shown = "\n".join(registry_show_lines(mesh, "dbt_up", None))
    assert "audit           row_counts passed" in shown and "orders in the audit copy" in shown

    # an audit added to mesh.yml makes the unchanged project build again, and it runs
    with_audits_again = (root / "mesh.yml").read_text().replace(
        "        run:", "        timeout_seconds: 60\n        run:", 1
    )
    (root / "mesh.yml").write_text(with_audits_again)
    again = run_mesh(load_mesh(root, "local"), say=None, projects=["dbt_up"])
    assert again.outcomes[0].status == "built"


def test_a_bad_audit_entry_is_one_line(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with_audits(workspace, ("has space", "true"))
    code = main(["--root", str(workspace), "run", "--project", "dbt_up"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "projects.dbt_up.audits" in err, err
