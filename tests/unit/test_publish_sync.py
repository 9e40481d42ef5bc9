"""Publish, sync and validate on synthetic artifacts and a real registry folder (no dbt run)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from ruamel.yaml import YAML

from mesh.config import Mesh, load_mesh
from mesh.errors import ManifestError, NotFoundError, PublishRefusedError, SyncError
from mesh.manifest import content_sha256, dump_interface
from mesh.pipeline import sync_project
from mesh.publish import publish_project
from mesh.validate import validate_manifest
from tests import factories

MESH_YML = """
version: 1
projects:
  core: {path: core}
  app: {path: app}
  loomy: {path: loomy, upstreams_via: loom}
targets:
  local: {registry: "file://registry", env: local}
"""


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file and symlink under root, for byte-for-byte comparisons."""
    out: dict[str, bytes] = {}
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            out[str(path.relative_to(root))] = path.read_bytes()
        for name in _dirs:
            path = Path(folder) / name
            if path.is_symlink():
                out[str(path.relative_to(root))] = os.readlink(path).encode()
    return out


def write_build(project_dir: Path, doc: dict[str, Any], status: str = "success") -> None:
    target = project_dir / "target"
    target.mkdir(parents=True, exist_ok=True)
    (target / "manifest.json").write_bytes(orjson.dumps(doc))
    (target / "run_results.json").write_bytes(orjson.dumps(factories.run_results(doc, status=status)))


@pytest.fixture
def mesh(tmp_path: Path) -> Mesh:
    (tmp_path / "mesh.yml").write_text(MESH_YML)
    for name in ("core", "app", "loomy"):
        (tmp_path / name / "models").mkdir(parents=True)
        (tmp_path / name / "dbt_project.yml").write_text(f"name: {name}\n")
    for name in ("app", "loomy"):
        (tmp_path / name / "dependencies.yml").write_text("projects:\n  - name: core\n")
    (tmp_path / "app/models/a.sql").write_text(
        "select * from {{ source('core', 'orders') }} join {{ source(\"core\", 'customers_v1') }}"
    )
    (tmp_path / "loomy/models/b.sql").write_text(
        "select * from {{ ref('core', 'customers') }} union all {{ ref('core','customers', v=1) }}"
    )
    write_build(tmp_path / "core", factories.producer())
    return load_mesh(tmp_path, "local")


def test_publish_writes_history_and_latest_then_noop(mesh: Mesh) -> None:
    first = publish_project(mesh, "core")
    assert first.status == "published" and first.public_models == 4
    latest = mesh.registry.read_latest("core", "local")
    assert latest is not None and latest.version == first.version
    assert mesh.registry.list_versions("core", "local") == [first.version]
    on_disk = mesh.root / "registry/core/local/latest/manifest.json"
    doc = orjson.loads(on_disk.read_bytes())
    assert doc["metadata"]["mesh"]["version"] == first.version
    assert "model.core.stg_orders" not in doc["nodes"] and "model.core.int_secret" not in doc["nodes"]
    before = snapshot(mesh.root / "registry")
    again = publish_project(mesh, "core")
    assert again.status == "unchanged" and "nothing published" in again.summary()
    assert snapshot(mesh.root / "registry") == before


@pytest.mark.parametrize(
    ("breakage", "error", "message"),
    [
        ("failed_test", PublishRefusedError, "did not pass"),
        ("no_public", PublishRefusedError, "no public model"),
        ("wrong_project", ManifestError, "belongs to project 'other'"),
        ("bad_schema", ManifestError, "incompatible schema"),
        ("no_run_results", ManifestError, "run_results.json not found"),
        ("older_build", PublishRefusedError, "older than the one latest holds"),
    ],
)
def test_refusals_leave_registry_unchanged(mesh: Mesh, breakage: str, error: type, message: str) -> None:
    publish_project(mesh, "core")
    before = snapshot(mesh.root / "registry")
    core = mesh.root / "core"
    doc = factories.producer()
    doc["nodes"]["model.core.orders"]["columns"]["extra"] = {"name": "extra", "data_type": "text"}
    if breakage == "failed_test":
        write_build(core, doc, status="fail")
    elif breakage == "no_public":
        for node in doc["nodes"].values():
            node["access"] = "protected"
        write_build(core, doc)
    elif breakage == "wrong_project":
        doc["metadata"]["project_name"] = "other"
        write_build(core, doc)
    elif breakage == "bad_schema":
        doc["metadata"]["dbt_schema_version"] = "https://schemas.getdbt.com/dbt/manifest/v7.json"
        write_build(core, doc)
    elif breakage == "no_run_results":
        write_build(core, doc)
        (core / "target/run_results.json").unlink()
    elif breakage == "older_build":
        doc["metadata"]["generated_at"] = "2020-01-01T00:00:00.000000Z"
        write_build(core, doc)
    with pytest.raises(error) as info:
        publish_project(mesh, "core")
    assert message in str(info.value) and "\n" not in str(info.value)
    assert snapshot(mesh.root / "registry") == before


def test_sync_sources_resolve_each_relation(mesh: Mesh) -> None:
    version = publish_project(mesh, "core").version
    plan = sync_project(mesh, "app")
    assert plan.upstream_versions == {"core": version}
    text = (mesh.root / "app/models/_mesh_core.yml").read_text()
    assert text.startswith("# Generated by dbt mesh sync.")
    data = YAML(typ="safe").load(text)
    tables = {
        t["name"]: (s["database"], s["schema"], t["identifier"], t["config"]["meta"]["mesh"]["unique_id"])
        for s in data["sources"]
        for t in s["tables"]
    }
    # Only what app references: orders and the pinned v1 (no revenue, no v2).
    assert tables == {
        "orders": ("core", "marts", "orders", "model.core.orders"),
        "customers_v1": ("core", "marts", "customers_v1", "model.core.customers.v1"),
    }
    assert {s["name"] for s in data["sources"]} == {"core"}


def test_sync_all_scope_and_aliases_in_other_schemas(mesh: Mesh) -> None:
    publish_project(mesh, "core")
    text = (mesh.root / "mesh.yml").read_text().replace("app: {path: app}", "app: {path: app, sync_scope: all}")
    (mesh.root / "mesh.yml").write_text(text)
    m = load_mesh(mesh.root, "local")
    sync_project(m, "app")
    data = YAML(typ="safe").load((mesh.root / "app/models/_mesh_core.yml").read_text())
    schemas = {(s["schema"], t["name"], t["identifier"]) for s in data["sources"] for t in s["tables"]}
    assert ("finance", "revenue", "daily_revenue") in schemas
    assert ("marts", "customers", "customers_v2") in schemas  # unversioned name -> latest version
    assert len(data["sources"]) == 2  # one entry per schema, both named core


def test_sync_loom_trims_interface_and_writes_config(mesh: Mesh) -> None:
    publish_project(mesh, "core")
    sync_project(mesh, "loomy")
    config = YAML(typ="safe").load((mesh.root / "loomy/.mesh/dbt_loom.config.yml").read_text())
    assert config == {
        "manifests": [{"name": "core", "type": "file", "config": {"path": ".mesh/upstreams/core.json"}}]
    }
    trimmed = orjson.loads((mesh.root / "loomy/.mesh/upstreams/core.json").read_bytes())
    assert sorted(trimmed["nodes"]) == ["model.core.customers.v1", "model.core.customers.v2"]


def test_sync_dry_run_writes_nothing_and_second_sync_is_noop(mesh: Mesh) -> None:
    publish_project(mesh, "core")
    before = snapshot(mesh.root / "app")
    plan = sync_project(mesh, "app", dry_run=True)
    assert {c.operation for c in plan.changes} == {"create"}
    assert any("_mesh_core.yml" in c.sentence(mesh.root) for c in plan.changes)
    assert snapshot(mesh.root / "app") == before
    sync_project(mesh, "app")
    assert sync_project(mesh, "app").changes == []


def test_sync_refuses_non_public_reference_and_writes_nothing(mesh: Mesh) -> None:
    publish_project(mesh, "core")
    (mesh.root / "app/models/bad.sql").write_text("select * from {{ source('core', 'int_secret') }}")
    before = snapshot(mesh.root / "app")
    with pytest.raises(SyncError, match=r"app/models/bad.sql: source\('core', 'int_secret'\) does not resolve in core "
                       r"\(published .*\): core publishes no public model, seed or snapshot named int_secret"):
        sync_project(mesh, "app")
    assert snapshot(mesh.root / "app") == before


def test_sync_without_published_upstream(mesh: Mesh) -> None:
    with pytest.raises(NotFoundError, match="upstream core has not published"):
        sync_project(mesh, "app")


def test_stale_generated_files_are_removed(mesh: Mesh) -> None:
    publish_project(mesh, "core")
    sync_project(mesh, "app")
    stale = mesh.root / "app/models/_mesh_gone.yml"
    # A file of an older sync (its header named the invoke task) is still sync's own.
    stale.write_text("# Generated by `invoke sync` (dbt mesh). Do not edit: every sync overwrites this file.\n")
    handwritten = mesh.root / "app/models/_mesh_mine.yml"
    handwritten.write_text("version: 2\n")
    plan = sync_project(mesh, "app")
    assert [c.operation for c in plan.changes] == ["delete"]
    assert not stale.exists() and handwritten.exists()


def test_untrusted_upstream_text_is_inert(mesh: Mesh) -> None:
    doc = factories.producer()
    node = doc["nodes"]["model.core.orders"]
    node["description"] = "{{ run_query('drop table x') }} {% do exceptions.raise_compiler_error('boom') %} {# c #}"
    node["columns"]["id"]["description"] = "x\n- y: {{ env_var('SECRET') }}"
    write_build(mesh.root / "core", doc)
    publish_project(mesh, "core")
    sync_project(mesh, "app")
    text = (mesh.root / "app/models/_mesh_core.yml").read_text()
    assert "{{" not in text and "{%" not in text and "{#" not in text
    table = next(
        t for s in YAML(typ="safe").load(text)["sources"] for t in s["tables"] if t["name"] == "orders"
    )
    assert "run_query('drop table x')" in table["description"]


HOSTILE = 'x.y"; drop'


def _hostile(doc: dict[str, Any], field: str) -> None:
    node = doc["nodes"]["model.core.orders"]
    if field == "column":
        node["columns"]["id; drop table x"] = {
            "name": "id; drop table x", "data_type": "int", "description": "", "constraints": [],
        }
    else:
        node[field] = HOSTILE


@pytest.mark.parametrize(("field", "shown"), [("alias", "alias"), ("schema", "schema"), ("column", "columns")])
def test_invalid_identifiers_are_refused_at_publish_and_at_sync(mesh: Mesh, field: str, shown: str) -> None:
    # The producer's own manifest: publish refuses before the first write.
    doc = factories.producer()
    _hostile(doc, field)
    write_build(mesh.root / "core", doc)
    before = snapshot(mesh.root)
    with pytest.raises(ManifestError) as refused:
        publish_project(mesh, "core")
    message = str(refused.value)
    assert "\n" not in message and message.startswith("core/local (to publish): node model.core.orders, field " + shown)
    assert message.endswith("fix it in core and rebuild; nothing was published")
    assert snapshot(mesh.root) == before
    # Anyone who can write the registry: a forged interface (valid checksums) is refused at sync.
    write_build(mesh.root / "core", factories.producer())
    published = publish_project(mesh, "core")
    latest = mesh.registry.read_latest("core", "local")
    assert latest is not None
    forged = orjson.loads(latest.body)
    _hostile(forged, field)
    forged["metadata"]["mesh"]["version"] = version = factories.later_version(published.version)
    forged["metadata"]["mesh"]["content_sha256"] = content_sha256(forged["nodes"], forged["groups"])
    body = dump_interface(forged)
    mesh.registry.create_version("core", "local", version, body)
    mesh.registry.swap_latest("core", "local", version, body, latest.token)
    before = snapshot(mesh.root / "app")
    with pytest.raises(ManifestError) as refused:
        sync_project(mesh, "app")
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"core/local latest {version}: node model.core.orders, field {shown}")
    assert snapshot(mesh.root / "app") == before


def consumer_manifest(parents: dict[str, list[str]], sources: dict[str, Any]) -> dict[str, Any]:
    doc = factories.manifest("app", [])
    doc["parent_map"] = parents
    doc["sources"] = sources
    return doc


def test_validate_maps_sources_back_and_catches_removed_models(mesh: Mesh, tmp_path: Path) -> None:
    publish_project(mesh, "core")
    source_id = "source.app.core.orders"
    source = {
        "unique_id": source_id,
        "database": "core",
        "schema": "marts",
        "identifier": "orders",
        "name": "orders",
        "meta": {"mesh": {"unique_id": "model.core.orders"}},
    }
    doc = consumer_manifest({"model.app.a": [source_id]}, {source_id: source})
    path = tmp_path / "consumer.json"
    path.write_bytes(orjson.dumps(doc))
    report = validate_manifest(mesh, path)
    assert report.ok and [e.upstream_node for e in report.edges] == ["model.core.orders"]
    # The producer removes `orders` and republishes: the consumer's edge is now broken.
    smaller = factories.producer()
    del smaller["nodes"]["model.core.orders"]
    smaller["metadata"]["generated_at"] = "2026-11-23T11:00:00.000000Z"
    write_build(mesh.root / "core", smaller)
    publish_project(mesh, "core")
    report = validate_manifest(mesh, path)
    assert not report.ok
    assert [(f.kind, f.node) for f in report.findings] == [("broken", "model.app.a")]


def test_validate_reports_non_public_loom_ref_and_missing_edges(mesh: Mesh, tmp_path: Path) -> None:
    publish_project(mesh, "core")
    doc = consumer_manifest({"model.loomy.b": ["model.core.stg_orders"]}, {})
    doc["metadata"]["project_name"] = "loomy"
    path = tmp_path / "loomy.json"
    path.write_bytes(orjson.dumps(doc))
    report = validate_manifest(mesh, path)
    assert [(f.kind, f.upstream_node) for f in report.findings] == [("broken", "model.core.stg_orders")]
    doc["parent_map"] = {"model.loomy.b": []}
    path.write_bytes(orjson.dumps(doc))
    kinds = [f.kind for f in validate_manifest(mesh, path).findings]
    assert kinds == ["missing"]
