"""dbt's partial parsing never leaves a consumer's cross-project test stale or disabled.

Sync writes what dbt (and dbt-loom) read about upstreams; dbt's partial parsing does not track all
of it. Every change sync makes must invalidate it, whatever the sequence of sync-scope and
interface changes: the consumers' `relationships` tests to dbt_up's public_customers must exist,
be enabled and run after each build.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from ruamel.yaml import YAML

from mesh.project.config import load_mesh
from mesh.run.pipeline import build_project, run_mesh

pytestmark = pytest.mark.slow
CONSUMERS = ("dbt_down", "dbt_down_loom")


def quiet(_line: str) -> None:
    """Tests read artifacts."""


def set_scope(workspace: Path, scope: str) -> None:
    yaml = YAML()
    path = workspace / "mesh.yml"
    doc = yaml.load(path.read_text())
    for name in CONSUMERS:
        doc["projects"][name]["sync_scope"] = scope
    with open(path, "w") as handle:
        yaml.dump(doc, handle)


def cross_project_test(workspace: Path, consumer: str) -> tuple[str, bool]:
    """The consumer's relationships test that depends on an upstream node: (unique_id, enabled)."""
    manifest = orjson.loads((workspace / consumer / "target/manifest.json").read_bytes())
    found = []
    for uid, node in manifest["nodes"].items():
        parents = node.get("depends_on", {}).get("nodes", [])
        upstream = [p for p in parents if p.startswith(("model.dbt_up.", f"source.{consumer}.dbt_up."))]
        if node["resource_type"] == "test" and uid.startswith(f"test.{consumer}.relationships") and upstream:
            found.append((uid, node["config"]["enabled"]))
    for uid in manifest.get("disabled", {}):
        if uid.startswith(f"test.{consumer}.relationships_stg_customers_customer_id"):
            found.append((uid, False))
    assert len(found) == 1, found
    return found[0]


def ran(workspace: Path, consumer: str, uid: str) -> str | None:
    results = orjson.loads((workspace / consumer / "target/run_results.json").read_bytes())["results"]
    return next((r["status"] for r in results if r["unique_id"] == uid), None)


def test_cross_project_tests_stay_enabled_through_scope_and_interface_changes(workspace: Path) -> None:
    def interface_change() -> None:
        yml = workspace / "dbt_up/models/marts/customers/public_customers.yml"
        yml.write_text(yml.read_text().replace('description: "', 'description: "Changed. ', 1))
        run_mesh(load_mesh(workspace, "local"), say=quiet, full=False)

    steps = [
        ("sync_scope all", lambda: set_scope(workspace, "all")),
        ("sync_scope referenced", lambda: set_scope(workspace, "referenced")),
        ("an interface change", interface_change),
        ("sync_scope all again", lambda: set_scope(workspace, "all")),
        ("back to referenced", lambda: set_scope(workspace, "referenced")),
    ]
    for what, change in steps:
        change()
        for consumer in CONSUMERS:
            build_project(load_mesh(workspace, "local"), consumer, say=quiet)
            uid, enabled = cross_project_test(workspace, consumer)
            assert enabled, f"after {what}: {uid} is disabled in {consumer}'s manifest"
            assert ran(workspace, consumer, uid) == "pass", f"after {what}: {uid} did not run in {consumer}"


def test_a_producer_rebuild_parses_partially(workspace: Path) -> None:
    """The gate's compile and the build run with the same profile (the audit copy's path), so after
    a first run in this folder neither starts dbt's parse over: one changed file, one file parsed."""
    model = workspace / "dbt_up/models/staging/stg_orders.sql"
    log = workspace / "logs/dbt_up.log"
    for change in ("first", "second"):
        model.write_text(model.read_text() + f"\n-- {change} change\n")
        outcomes = {o.project: o.status for o in run_mesh(load_mesh(workspace, "local"), say=quiet).outcomes}
        assert outcomes["dbt_up"] == "built"
    text = log.read_text()
    assert text.count("=== dbt compile") == 1 and text.count("=== dbt build") == 1
    assert "Unable to do partial parsing" not in text
    # The gate's compile parsed partially (its own saved state under target/check); the build
    # reused the manifest the compile parsed, so it parsed nothing itself.
    assert (workspace / "dbt_up/target/check/partial_parse.msgpack").is_file()
    build_section = text[text.index("=== dbt build"):]
    assert "Found " in build_section and "partial parsing" not in build_section.lower()
