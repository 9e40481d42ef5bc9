"""The registry is untrusted input: each way in, refused with one line and nothing written.

Synthetic producer and consumers on a real registry folder (no dbt run; tests/integration/
test_untrusted_upstream.py runs real dbt on the template). Every forged object has valid checksums
and content hash, as anyone who can write a project's registry prefix could write it: only the
schema (mesh.registry.schema), the lock and the grant rules stand in the way.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from mesh.core.errors import MeshError, PublishRefusedError, RegistryError
from mesh.core.names import sha256_hex
from mesh.interface.publish import publish_project, save_state
from mesh.project.config import Mesh, load_mesh
from mesh.registry import CorruptLatestError
from mesh.registry.document import dump_json
from mesh.registry.file import FileRegistry
from mesh.registry.schema import SchemaError
from mesh.run.pipeline import sync_project
from tests import factories

MESH_YML = """
version: 1
projects:
  core: {path: core}
  app: {path: app}
  loomy: {path: loomy, upstreams_via: loom}
  everything: {path: everything, sync_scope: all}
targets:
  local: {registry: "file://registry", env: local}
"""
SECRET = "hunter2-canary-5c1e"
# The payload: dbt-loom put `database` and the relation name straight into SQL.
INJECTED_DATABASE = (
    'core"."marts"."orders" cross join (select 1 as k where error(\'INJECTED_SQL_RAN\' || '
    "(select trim(content) from read_text('/etc/hostname'))) is null) /*"
)
INJECTED_RELATION = '"core"."marts"."*/ as z --"'


def write_build(project_dir: Path, doc: dict[str, Any]) -> None:
    target = project_dir / "target"
    target.mkdir(parents=True, exist_ok=True)
    (target / "manifest.json").write_bytes(orjson.dumps(doc))
    (target / "run_results.json").write_bytes(orjson.dumps(factories.run_results(doc)))


def files(root: Path) -> dict[str, bytes]:
    """Every file and link under root, for byte-for-byte comparisons."""
    found: dict[str, bytes] = {}
    for folder, dirs, names in os.walk(root):
        for name in names + [d for d in dirs if (Path(folder) / d).is_symlink()]:
            path = Path(folder) / name
            found[str(path.relative_to(root))] = (
                os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
            )
    return found


@pytest.fixture
def mesh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Mesh:
    monkeypatch.setenv("MY_SECRET", SECRET)
    (tmp_path / "mesh.yml").write_text(MESH_YML)
    for name in ("core", "app", "loomy", "everything"):
        (tmp_path / name / "models").mkdir(parents=True)
        (tmp_path / name / "dbt_project.yml").write_text(f"name: {name}\n")
    for name in ("app", "loomy", "everything"):
        (tmp_path / name / "dependencies.yml").write_text("projects:\n  - name: core\n")
    (tmp_path / "app/models/a.sql").write_text(
        "select * from {{ source('core', 'orders') }} join {{ source('core', 'customers') }}"
    )
    (tmp_path / "loomy/models/b.sql").write_text("select * from {{ ref('core', 'orders') }}")
    write_build(tmp_path / "core", factories.producer())
    mesh = load_mesh(tmp_path, "local")
    publish_project(mesh, "core")
    for consumer in ("app", "loomy", "everything"):
        sync_project(mesh, consumer)
    return mesh


def forge(mesh: Mesh, change: Callable[[dict[str, Any]], None], project: str = "core") -> str:
    """Publish a forged latest of `project`: its first published interface with `change` applied,
    checksum and content hash valid. Serialized with the standard library (orjson stops at 254
    levels; an attacker need not use it)."""
    registry = FileRegistry(mesh.root / "registry")  # anyone with write access: no mesh checks
    latest = registry.read_latest(project, "local")
    assert latest is not None
    genuine = registry.read_version(project, "local", registry.list_versions(project, "local")[0])
    doc = json.loads(genuine.body)
    change(doc)
    version = factories.later_version(latest.version)
    doc["metadata"]["mesh"]["version"] = version

    def compact(value: Any) -> bytes:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    doc["metadata"]["mesh"]["content_sha256"] = sha256_hex(
        compact({"nodes": doc["nodes"], "groups": doc.get("groups") or {}})
    )
    body = compact(doc)
    registry.create_version(project, "local", version, body)
    registry.swap_latest(project, "local", version, body, latest.token)
    return version


def refused_sync(mesh: Mesh, consumer: str, error: type[MeshError] = SchemaError) -> str:
    """Sync `consumer`; it must fail with one line and leave every file of the mesh as it was."""
    before = files(mesh.root)
    with pytest.raises(error) as refused:
        sync_project(mesh, consumer)
    message = str(refused.value)
    assert "\n" not in message and len(message) < 1000, message
    assert files(mesh.root) == before
    return message


def nowhere(root: Path, *needles: str) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            text = path.read_bytes().decode("utf-8", "replace")
            for needle in needles:
                assert needle not in text, f"{needle!r} found in {path}"


def node(doc: dict[str, Any], uid: str = "model.core.orders") -> dict[str, Any]:
    found: dict[str, Any] = doc["nodes"][uid]
    return found


# --- the reproductions ---------------------------------------------------------------------


def test_sql_injection_via_database_and_relation_name_is_refused_for_a_loom_consumer(mesh: Mesh) -> None:
    def inject(doc: dict[str, Any]) -> None:
        node(doc).update(database=INJECTED_DATABASE, relation_name=INJECTED_RELATION)

    version = forge(mesh, inject)
    message = refused_sync(mesh, "loomy")
    assert message.startswith(f"core/local latest {version}: node model.core.orders, field database:")
    # Only the relation name, with identifiers that match: refused all the same.
    forge(mesh, lambda doc: node(doc).update(relation_name=INJECTED_RELATION))
    assert "field relation_name" in refused_sync(mesh, "loomy")
    nowhere(mesh.root / "loomy", "INJECTED_SQL_RAN")


def test_jinja_in_version_is_refused_for_a_sources_consumer(mesh: Mesh) -> None:
    hostile = "2{{ env_var('MY_SECRET','none') }}"
    for field in ("version", "latest_version"):
        forge(mesh, lambda doc, f=field: node(doc, "model.core.customers.v2").update({f: hostile}))
        message = refused_sync(mesh, "app")
        assert f"node model.core.customers.v2, field {field}:" in message
    nowhere(mesh.root / "app", SECRET, "{{ env_var")
    nowhere(mesh.root / "registry" / "app", SECRET)


def test_jinja_in_a_model_name_is_refused_under_sync_scope_all(mesh: Mesh) -> None:
    def rename(doc: dict[str, Any]) -> None:
        hostile = dict(node(doc))
        hostile.update(name="orders_{{ log(env_var('MY_SECRET'), info=True) }}")
        hostile["unique_id"] = f"model.core.{hostile['name']}"
        doc["nodes"][hostile["unique_id"]] = hostile

    forge(mesh, rename)
    message = refused_sync(mesh, "everything")
    assert "field name:" in message or "field nodes" in message
    nowhere(mesh.root / "everything", SECRET)


def test_publish_checks_the_identifiers_of_the_producers_own_manifest(mesh: Mesh) -> None:
    doc = factories.producer()
    node(doc).update(database=INJECTED_DATABASE)
    write_build(mesh.root / "core", doc)
    before = files(mesh.root / "registry")
    with pytest.raises(SchemaError) as refused:
        publish_project(mesh, "core")
    assert str(refused.value).startswith("core/local (to publish): node model.core.orders, field database:")
    doc = factories.producer()
    node(doc)["columns"]["id"]["data_type"] = "integer) as x; drop table y; --"
    write_build(mesh.root / "core", doc)
    with pytest.raises(SchemaError, match=r"field columns\.id\.data_type: .* is not a SQL type"):
        publish_project(mesh, "core")
    assert files(mesh.root / "registry") == before


def test_a_latest_moved_back_is_refused(mesh: Mesh) -> None:
    """A rollback publishes a newer version; `latest` repointed to an older entry is forgery."""
    first = mesh.registry.read_latest("core", "local")
    assert first is not None
    doc = factories.producer()
    node(doc)["description"] = "a newer build"
    doc["metadata"]["generated_at"] = "2026-11-24T10:00:00.000000Z"
    write_build(mesh.root / "core", doc)
    second = publish_project(mesh, "core").version
    sync_project(mesh, "app")
    registry = FileRegistry(mesh.root / "registry")
    registry.swap_latest("core", "local", first.version, first.body, second)  # repointed
    message = refused_sync(mesh, "app", RegistryError)
    assert message.startswith(f"core/local latest moved back from {second} to {first.version}:")


def test_meta_nested_300_deep_and_a_30_mb_description_are_refused_everywhere(mesh: Mesh) -> None:
    from mesh.interface.retention import fsck_project
    from mesh.ui.lineage_graph import load_graph
    from mesh.ui.report import registry_list_lines, registry_show_lines

    deep: dict[str, Any] = {}
    inner = deep
    for _ in range(300):
        inner["a"] = {}
        inner = inner["a"]

    cases = [
        ("meta", lambda doc: node(doc).update(meta=deep), "is nested deeper than 64 levels"),
        ("description", lambda doc: node(doc).update(description="x" * (30 << 20)), "at most 1048576 characters"),
    ]
    for field, change, why in cases:
        version = forge(mesh, change)
        for consumer in ("app", "loomy"):
            assert f"node model.core.orders, field {field}: " in refused_sync(mesh, consumer)
        for read in (lambda: load_graph(mesh), lambda: registry_show_lines(mesh, "core", None)):
            with pytest.raises(SchemaError, match=why):
                read()
        listing = "\n".join(registry_list_lines(mesh, "core", warn=lambda _line: None))
        assert version in listing and why in listing
        found = fsck_project(mesh, "core")
        assert not found.ok and any(version in p and why in p for p in found.found), found.found
    repaired = fsck_project(mesh, "core", repair=True)
    assert repaired.actions and "newest intact version" in repaired.actions[-1]
    sync_project(mesh, "app")  # the recovered latest is read as before


def test_a_forged_state_is_refused_before_defer_can_use_it(mesh: Mesh) -> None:
    state = factories.manifest("app", [factories.model("app", "a")])
    node(state, "model.app.a").update(relation_name=INJECTED_RELATION.replace("core", "app"))
    FileRegistry(mesh.root / "registry").write_private("app", "local", "state", dump_json(state))
    message = refused_sync(mesh, "app")
    assert message.startswith("app/local state: node model.app.a, field relation_name:")
    assert not (mesh.root / "app/.mesh/state/manifest.json").exists()


def test_save_state_checks_the_projects_own_manifest(mesh: Mesh) -> None:
    doc = factories.producer()
    node(doc).update(alias='orders"; drop table x; --')
    write_build(mesh.root / "core", doc)
    with pytest.raises(SchemaError, match=r"core/local state: node model\.core\.orders, field alias: .* nothing was stored"):
        save_state(mesh, "core")
    assert mesh.registry.read_private("core", "local", "state") is None


def test_a_latest_link_outside_its_history_is_damage(mesh: Mesh, tmp_path: Path) -> None:
    env_dir = mesh.root / "registry/core/local"
    version = os.readlink(env_dir / "latest").split("/")[-1]
    elsewhere = tmp_path / "elsewhere" / "history" / version
    elsewhere.mkdir(parents=True)
    for name in ("manifest.json", "manifest.json.sha256"):
        (elsewhere / name).write_bytes((env_dir / "history" / version / name).read_bytes())
    (env_dir / "latest").unlink()
    (env_dir / "latest").symlink_to(f"history/../../../../elsewhere/history/{version}")
    with pytest.raises(CorruptLatestError, match="not at history/"):
        mesh.registry.read_latest("core", "local")
    from mesh.interface.retention import fsck_project

    found = fsck_project(mesh, "core")
    assert not found.ok and any("points at" in p and "not at history/" in p for p in found.found)
    repaired = fsck_project(mesh, "core", repair=True)
    assert repaired.ok, repaired.lines()
    assert os.readlink(env_dir / "latest") == f"history/{version}"


def test_a_usage_record_names_only_its_consumers_nodes(mesh: Mesh) -> None:
    from mesh.interface.usage import read_usage

    def record(node_id: str, consumer: str = "app") -> bytes:
        use = {
            "consumer": consumer, "node": node_id, "upstream": "core",
            "upstream_node": "model.core.orders", "via": "source", "pinned": False, "columns": ["id"],
        }
        return dump_json({"metadata": {"format": 2, "project_name": "app"}, "uses": [use], "lineage": []})

    registry = FileRegistry(mesh.root / "registry")
    registry.write_private("app", "local", "usage", record("model.app.a"))
    assert [u.node for u in read_usage(mesh).uses] == ["model.app.a"]
    for forged, field in ((record("model.loomy.b"), "node"), (record("model.app.a", "loomy"), "consumer")):
        registry.write_private("app", "local", "usage", forged)
        usage = read_usage(mesh)  # set aside, never trusted: the gate assumes app reads everything
        refused = usage.unreadable["app"]
        assert refused.startswith("app/local usage: uses[0] (")
        assert f"field {field}:" in refused and "\n" not in refused
        assert usage.uses == [] and "app" not in usage.records


# --- grants from the producer's own truth ----------------------------------------------------------


def test_grants_refuse_a_protected_or_non_public_schema_relation(tmp_path: Path) -> None:
    from mesh.warehouse.snowflake import DEFAULT_LAYOUT, InterfaceGrantError, ProjectSpec
    from mesh.warehouse.snowflake_grants import sync_grants

    def interface(*nodes: dict[str, Any]) -> dict[str, Any]:
        return {"nodes": {n["unique_id"]: n for n in nodes}}

    def public(name: str, schema: str) -> dict[str, Any]:
        model = factories.model("dbt_up", name, schema=schema)
        model["database"] = "DBT_UP_PROD"
        return model

    marts_only = ProjectSpec("dbt_up", "DBT_UP_PROD", "DBT_UP_WH", "DBT_UP_ROLE", "MARTS")
    layout = type(DEFAULT_LAYOUT)({**DEFAULT_LAYOUT.projects, "dbt_up": marts_only})
    fine = interface(public("public_orders", "MARTS"))
    assert any("SELECT ON TABLE DBT_UP_PROD.MARTS.PUBLIC_ORDERS" in s for s in sync_grants(layout, "dbt_up", None, fine, dry_run=True))
    # A relation of a non-public schema of the producer's own database.
    with pytest.raises(InterfaceGrantError, match=r"lives in schema FINANCE, not in a public schema of the producer \(MARTS"):
        sync_grants(layout, "dbt_up", None, interface(public("public_daily_revenue", "FINANCE")), dry_run=True)
    # The template lists FINANCE too: then it is granted.
    assert sync_grants(DEFAULT_LAYOUT, "dbt_up", None, interface(public("public_daily_revenue", "FINANCE")), dry_run=True)
    # A protected model in the public schema, called public by the registry's interface: the
    # producer's own manifest says otherwise.
    own = factories.manifest("dbt_up", [public("public_orders", "MARTS"), {**public("customer_scoring", "MARTS"), "access": "protected"}])
    forged = interface(public("public_orders", "MARTS"), public("customer_scoring", "MARTS"))
    with pytest.raises(InterfaceGrantError, match="customer_scoring' is public in the interface but not in the producer's own manifest"):
        sync_grants(layout, "dbt_up", None, forged, dry_run=True, producer_manifest=own)


def test_publish_on_snowflake_refuses_a_relation_consumers_could_not_be_granted(mesh: Mesh) -> None:
    text = (mesh.root / "mesh.yml").read_text() + (
        "snowflake:\n  projects:\n    core: {database: CORE_PROD, warehouse: WH, role: CORE_ROLE, public_schema: MARTS}\n"
    )
    (mesh.root / "mesh.yml").write_text(text)
    snowflake = load_mesh(mesh.root, "local")
    doc = factories.producer()
    doc["metadata"]["adapter_type"] = "snowflake"
    for item in doc["nodes"].values():
        item["database"] = "CORE_PROD"
        item["relation_name"] = f"CORE_PROD.{item['schema']}.{item['alias']}"
    write_build(mesh.root / "core", doc)
    before = files(mesh.root / "registry")
    with pytest.raises(PublishRefusedError, match=r"model\.core\.revenue' lives in schema FINANCE, not in a public schema of the producer \(MARTS"):
        publish_project(snowflake, "core")
    assert files(mesh.root / "registry") == before
    (mesh.root / "mesh.yml").write_text(text.replace("public_schema: MARTS", "public_schema: [MARTS, FINANCE]"))
    assert publish_project(load_mesh(mesh.root, "local"), "core").status == "published"


def test_infra_lint_holds_public_nodes_to_the_public_schemas(tmp_path: Path) -> None:
    from mesh.infra.schema_rules import (
        HeldNode,
        SchemaContents,
        rule_public_nodes_in_public_schemas,
    )
    from mesh.warehouse.snowflake import DEFAULT_LAYOUT, MeshLayout, ProjectSpec

    contents = SchemaContents(
        held={
            ("DBT_UP_PROD", "MARTS"): [HeldNode("dbt_up", "model.dbt_up.public_orders", "public_orders", "public")],
            ("DBT_UP_PROD", "FINANCE"): [
                HeldNode("dbt_up", "model.dbt_up.public_daily_revenue", "public_daily_revenue", "public")
            ],
            ("DBT_UP_PROD", "STAGING"): [HeldNode("dbt_up", "model.dbt_up.stg_orders", "stg_orders", "protected")],
        }
    )
    assert rule_public_nodes_in_public_schemas(DEFAULT_LAYOUT, contents) == []
    marts_only = MeshLayout({"dbt_up": ProjectSpec("dbt_up", "DBT_UP_PROD", "DBT_UP_WH", "DBT_UP_ROLE", "MARTS")})
    (finding,) = rule_public_nodes_in_public_schemas(marts_only, contents)
    assert finding.rule == "snowflake-public-schema"
    assert "model.dbt_up.public_daily_revenue is built in FINANCE, outside dbt_up's public schema(s) MARTS" in finding.message
    undeclared = MeshLayout({"dbt_up": ProjectSpec("dbt_up", "DBT_UP_PROD", "DBT_UP_WH", "DBT_UP_ROLE")})
    assert rule_public_nodes_in_public_schemas(undeclared, contents) == []
