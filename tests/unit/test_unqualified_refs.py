"""Unqualified refs (`ref('x')` naming an upstream public node) are found and resolved as dbt
resolves them: the project's own nodes and installed packages first, then its upstreams."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh.consumer.sync import resolve_unqualified
from mesh.core.errors import SyncError
from mesh.project.config import Project, ProjectConfig
from mesh.project.files import own_node_names

UPSTREAMS = {
    "core": {"model.core.customers": {"name": "customers"}, "model.core.orders": {"name": "orders"}},
    "marketing": {"model.marketing.segments": {"name": "segments"}, "model.marketing.orders": {"name": "orders"}},
}


def project(tmp_path: Path, files: dict[str, str]) -> Project:
    root = tmp_path / "finance"
    (root / "models").mkdir(parents=True)
    (root / "dbt_project.yml").write_text("name: finance\nprofile: finance\n")
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return Project("finance", root, ProjectConfig(path="finance", upstreams_via="loom"), ("core", "marketing"))


def test_refs_in_models_macros_and_yaml_resolve_to_upstreams(tmp_path: Path) -> None:
    p = project(tmp_path, {
        "models/stg.sql": "select * from {{ ref('customers') }} join {{ ref('own') }}",
        "models/own.sql": "select 1 as x {# ref('nowhere') is a comment #}",
        "macros/m.sql": "{% macro m() %}{{ ref('segments', v=2) }}{% endmacro %}",
        "models/schema.yml": "models:\n  - name: own\n    columns:\n      - name: x\n        data_tests:\n"
        "          - relationships: {arguments: {to: \"ref('customers')\", field: id}}\n",
        "dbt_packages/util/models/helper.sql": "select 1",
        "models/uses_package.sql": "select * from {{ ref('helper') }}",
    })
    assert {"stg", "own", "uses_package", "helper"} <= own_node_names(p)
    found = resolve_unqualified(p, UPSTREAMS, "loom")
    assert sorted((r.name, r.version, r.file.name) for r in found["core"]) == [
        ("customers", None, "schema.yml"), ("customers", None, "stg.sql"),
    ]
    assert [(r.name, r.version) for r in found["marketing"]] == [("segments", "2")]


@pytest.mark.parametrize(
    ("sql", "via", "message"),
    [
        ("{{ ref('nope') }}", "loom", "finance/models/a.sql: ref('nope') resolves nowhere: finance defines no node 'nope' and no upstream publishes one (searched: core, marketing)"),
        ("{{ ref('orders') }}", "loom", "ref('orders') is ambiguous: core and marketing both publish 'orders'; qualify it: ref('core', 'orders')"),
        ("{{ ref('customers') }}", "sources", "ref('customers') names core's public 'customers', which finance reads through generated sources: write source('core', 'customers')"),
    ],
)
def test_a_ref_that_cannot_be_resolved_stops_sync_in_one_line(tmp_path: Path, sql: str, via: str, message: str) -> None:
    p = project(tmp_path, {"models/a.sql": sql})
    with pytest.raises(SyncError) as info:
        resolve_unqualified(p, UPSTREAMS, via)
    assert message in str(info.value) and "\n" not in str(info.value)
