"""Public seeds, snapshots and uncontracted models in the interface (synthetic artifacts, a real
registry folder, no dbt run): columns from the catalog, require_contracts, sync's resolution and
hints, validate's edges and its refusal of a failed build, the contract diff's wording."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest
from ruamel.yaml import YAML
from ruamel.yaml.events import AliasEvent

from mesh.config import Mesh, load_mesh
from mesh.contracts import diff_interfaces
from mesh.errors import BuildFailedError, MeshError, PublishRefusedError, SyncError
from mesh.manifest import content_sha256, extract_interface, public_node_ids
from mesh.pipeline import sync_project
from mesh.publish import ensure_catalog, publish_project
from mesh.registry.schema import SchemaError
from mesh.validate import validate_manifest
from tests import factories
from tests.unit.test_publish_sync import snapshot, write_build

MESH_YML = """
version: 1
require_contracts: {required}
projects:
  core: {{path: core}}
  app: {{path: app}}
  loomy: {{path: loomy, upstreams_via: loom}}
targets:
  local: {{registry: "file://registry", env: local}}
"""


def producer() -> dict[str, Any]:
    """factories.producer() plus a public seed, a public snapshot, a private seed and a public
    model without a contract."""
    doc = factories.producer()
    extra = [
        factories.seed("core", "country_codes", columns={"code": "text"}),
        factories.seed("core", "raw_orders", access=None),
        factories.snapshot("core", "orders_history"),
        factories.model("core", "events", enforced=False, columns={"event_id": "", "kind": ""}),
    ]
    for node in extra:
        doc["nodes"][node["unique_id"]] = node
    return doc


CATALOG = factories.catalog(
    {
        "seed.core.country_codes": [("code", "VARCHAR"), ("name", "VARCHAR")],
        "snapshot.core.orders_history": [("id", "INTEGER"), ("dbt_valid_from", "TIMESTAMP")],
        "model.core.events": [("EVENT_ID", "NUMBER(38,0)"), ("KIND", "TEXT"), ("AT", "TIMESTAMP_NTZ")],
        "seed.core.raw_orders": [("id", "INTEGER")],
    }
)


def make_mesh(root: Path, required: bool = False) -> Mesh:
    (root / "mesh.yml").write_text(MESH_YML.format(required=str(required).lower()))
    for name in ("core", "app", "loomy"):
        (root / name / "models").mkdir(parents=True, exist_ok=True)
        (root / name / "dbt_project.yml").write_text(f"name: {name}\n")
    for name in ("app", "loomy"):
        (root / name / "dependencies.yml").write_text("projects:\n  - name: core\n")
    (root / "app/models/a.sql").write_text(
        "select * from {{ source('core', 'country_codes') }} join {{ source('core', 'orders_history') }}"
        " join {{ source('core', 'customers') }}"
    )
    (root / "loomy/models/b.sql").write_text(
        "select * from {{ ref('core', 'country_codes') }} join {{ ref('core', 'events') }}"
    )
    write_build(root / "core", producer())
    return load_mesh(root, "local")


@pytest.fixture
def mesh(tmp_path: Path) -> Mesh:
    return make_mesh(tmp_path)


def test_public_seeds_and_snapshots_join_the_interface() -> None:
    doc = producer()
    ids = public_node_ids(doc)
    assert "seed.core.country_codes" in ids and "snapshot.core.orders_history" in ids
    assert "seed.core.raw_orders" not in ids  # no access: a seed is not public by default
    nodes, _ = extract_interface(doc, ids, catalog=CATALOG)
    seed = nodes["seed.core.country_codes"]
    assert seed["resource_type"] == "seed" and seed["access"] == "public"
    assert seed["config"]["materialized"] == "seed"
    assert (seed["database"], seed["schema"], seed["alias"]) == ("core", "raw", "country_codes")
    assert seed["relation_name"] == '"core"."raw"."country_codes"'
    assert seed["contract"] == {"enforced": False}
    assert nodes["snapshot.core.orders_history"]["resource_type"] == "snapshot"
    assert "select 1" not in orjson.dumps(nodes).decode()


def test_uncontracted_columns_come_from_the_catalog_marked_contract_false() -> None:
    nodes, _ = extract_interface(producer(), catalog=CATALOG)
    seed = nodes["seed.core.country_codes"]["columns"]
    # The catalog's columns, in its order, types lower-cased; the YAML's description kept; a
    # column only the catalog knows included.
    assert list(seed) == ["code", "name"]
    assert seed["code"] == {
        "name": "code", "data_type": "varchar", "description": "code doc", "constraints": [], "contract": False
    }
    assert seed["name"]["data_type"] == "varchar" and seed["name"]["description"] == ""
    # Upper-cased names (Snowflake's unquoted identifiers) match the YAML's and are lower-cased.
    events = nodes["model.core.events"]["columns"]
    assert list(events) == ["event_id", "kind", "at"]
    assert events["event_id"]["data_type"] == "number(38,0)" and events["event_id"]["description"] == "event_id doc"
    assert events["at"]["data_type"] == "timestamp_ntz"
    # Contracted columns are the contract's, without the key.
    orders = nodes["model.core.orders"]["columns"]
    assert orders["id"] == {"name": "id", "data_type": "integer", "description": "id doc", "constraints": []}


def test_without_a_catalog_entry_the_yaml_columns_are_marked_the_same_way() -> None:
    nodes, _ = extract_interface(producer())
    assert nodes["model.core.events"]["columns"]["kind"]["contract"] is False
    assert nodes["model.core.events"]["columns"]["kind"]["data_type"] is None


def test_content_hash_is_stable_across_identical_builds() -> None:
    first = extract_interface(producer(), catalog=CATALOG)
    again_catalog = factories.catalog(
        {uid: [(c["name"], c["type"]) for c in t["columns"].values()] for uid, t in CATALOG["nodes"].items()}
    )
    again_catalog["metadata"]["invocation_id"] = "docs-2"  # another docs run, same warehouse
    second = extract_interface(producer(), catalog=again_catalog)
    assert content_sha256(*first) == content_sha256(*second)


def test_seed_contract_config_is_not_an_enforced_contract() -> None:
    doc = producer()
    doc["nodes"]["seed.core.country_codes"]["config"]["contract"] = {"enforced": True}
    nodes, _ = extract_interface(doc, catalog=CATALOG)
    assert nodes["seed.core.country_codes"]["contract"] == {"enforced": False}


def test_publish_takes_the_columns_of_the_catalog_it_is_given(mesh: Mesh) -> None:
    result = publish_project(mesh, "core", catalog=CATALOG)
    assert result.status == "published"
    doc = orjson.loads((mesh.root / "registry/core/local/latest/manifest.json").read_bytes())
    assert doc["nodes"]["seed.core.country_codes"]["columns"]["code"]["data_type"] == "varchar"
    assert "seed.core.raw_orders" not in doc["nodes"]
    assert "SOMEONE" not in orjson.dumps(doc).decode()  # nothing else of the catalog is copied


def test_publish_refuses_a_public_node_the_catalog_does_not_hold(mesh: Mesh) -> None:
    partial = factories.catalog({"seed.core.country_codes": [("code", "VARCHAR")]})
    with pytest.raises(PublishRefusedError, match=r"no relation for public model model\.core\.events"):
        publish_project(mesh, "core", catalog=partial)
    assert not (mesh.root / "registry").exists()


@pytest.mark.parametrize(
    ("setting", "first"),
    [
        ("mesh-wide", "model.core.events"),
        ("seed only", "seed.core.country_codes"),
    ],
)
def test_require_contracts_refuses_naming_the_node(tmp_path: Path, setting: str, first: str) -> None:
    mesh = make_mesh(tmp_path, required=True)
    if setting == "seed only":
        doc = producer()
        doc["nodes"]["model.core.events"]["config"]["access"] = "protected"
        doc["nodes"]["model.core.events"]["access"] = "protected"
        doc["nodes"]["snapshot.core.orders_history"]["config"]["meta"] = {}
        write_build(tmp_path / "core", doc)
    with pytest.raises(PublishRefusedError) as info:
        publish_project(mesh, "core", catalog=CATALOG)
    message = str(info.value)
    assert f"public {first.split('.')[0]} {first} has no enforced contract" in message
    assert "require_contracts" in message and "\n" not in message
    if setting == "seed only":
        assert "dbt enforces contracts on models only" in message
    else:
        assert "(and 2 more: seed.core.country_codes, snapshot.core.orders_history)" in message
    assert not (tmp_path / "registry").exists()


def test_require_contracts_per_project_override(tmp_path: Path) -> None:
    mesh = make_mesh(tmp_path, required=True)
    text = (tmp_path / "mesh.yml").read_text()
    (tmp_path / "mesh.yml").write_text(text.replace("core: {path: core}", "core: {path: core, require_contracts: false}"))
    assert publish_project(load_mesh(tmp_path, "local"), "core", catalog=CATALOG).status == "published"
    assert mesh.requires_contracts("core") is True  # the mesh-wide default stood before the override


def test_sync_resolves_seeds_and_snapshots_in_both_styles(mesh: Mesh) -> None:
    publish_project(mesh, "core", catalog=CATALOG)
    sync_project(mesh, "app")
    data = YAML(typ="safe").load((mesh.root / "app/models/_mesh_core.yml").read_text())
    tables = {t["name"]: (s["schema"], t["config"]["meta"]["mesh"]["unique_id"]) for s in data["sources"] for t in s["tables"]}
    assert tables["country_codes"] == ("raw", "seed.core.country_codes")
    assert tables["orders_history"] == ("snapshots", "snapshot.core.orders_history")
    columns = {
        t["name"]: {c["name"]: c.get("data_type") for c in t["columns"]} for s in data["sources"] for t in s["tables"]
    }
    assert columns["country_codes"] == {"code": "varchar", "name": "varchar"}
    sync_project(mesh, "loomy")
    trimmed = orjson.loads((mesh.root / "loomy/.mesh/upstreams/core.json").read_bytes())
    assert sorted(trimmed["nodes"]) == ["model.core.events", "seed.core.country_codes"]


def test_generated_sources_have_no_anchors_or_aliases(mesh: Mesh) -> None:
    """`customers` resolves to v2, which is also table `customers_v2`: two tables, one columns list."""
    publish_project(mesh, "core", catalog=CATALOG)
    (mesh.root / "app/models/c.sql").write_text("select * from {{ source('core', 'customers_v2') }}")
    sync_project(mesh, "app")
    text = (mesh.root / "app/models/_mesh_core.yml").read_text()
    events = list(YAML(typ="safe").parse(text))
    assert not [e for e in events if isinstance(e, AliasEvent) or getattr(e, "anchor", None)]
    assert "&id" not in text and "*id" not in text
    data = YAML(typ="safe").load(text)
    tables = {t["name"]: t for s in data["sources"] for t in s["tables"]}
    assert tables["customers"]["columns"] == tables["customers_v2"]["columns"] != []


PRIVATE = "its interface lists no private or protected node, so sync cannot tell whether"


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("{{ ref('core', 'customers', v=3) }}", "core publishes model customers in versions 1, 2 (latest 2), not 3; did you mean ref('core', 'customers', v=2)?"),
        ("{{ ref('core', 'customers', v=0) }}", "core publishes model customers in versions 1, 2 (latest 2), not 0; did you mean ref('core', 'customers', v=1)?"),
        ("{{ source('core', 'customers_v3') }}", "core publishes model customers in versions 1, 2 (latest 2), not 3; did you mean source('core', 'customers_v2')?"),
        ("{{ ref('core', 'orders', v=1) }}", "core publishes orders as model model.core.orders, which has no versions; use ref('core', 'orders')"),
        ("{{ ref('core', 'country_codes', v=2) }}", "core publishes country_codes as seed seed.core.country_codes, which has no versions"),
        ("{{ ref('core', 'ordrs') }}", f"core publishes no public model, seed or snapshot named ordrs; did you mean 'orders'? ({PRIVATE} ordrs exists with another access)"),
        ("{{ source('core', 'country_code') }}", "core publishes no public model, seed or snapshot named country_code; did you mean 'country_codes'?"),
        ("{{ source('core', 'raw_orders') }}", f"core publishes no public model, seed or snapshot named raw_orders; did you mean 'orders'? ({PRIVATE} raw_orders exists"),
        ("{{ source('core', 'ledger_entries') }}", f"core publishes no public model, seed or snapshot named ledger_entries ({PRIVATE} one exists with another access): check the name, or ask the core owners to make it public"),
    ],
)
def test_unresolved_reference_hint_names_what_is_known(mesh: Mesh, sql: str, expected: str) -> None:
    publish_project(mesh, "core", catalog=CATALOG)
    consumer = "loomy" if sql.startswith("{{ ref") else "app"  # each style reads its own kind
    (mesh.root / consumer / "models").mkdir(parents=True, exist_ok=True)
    (mesh.root / consumer / "models/bad.sql").write_text(f"select * from {sql}")
    before = snapshot(mesh.root / consumer)
    with pytest.raises(SyncError) as info:
        sync_project(mesh, consumer)
    message = str(info.value)
    assert message.startswith(f"{consumer}/models/bad.sql: ") and "does not resolve in core (published " in message
    assert expected in message and "\n" not in message
    if "no public model, seed or snapshot" not in expected:
        assert "ask the core owners" not in message  # the interface says what is wrong
    assert snapshot(mesh.root / consumer) == before


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("{{ ref('cor', 'orders') }}", "app/models/bad.sql: ref('cor', 'orders') names no upstream, package or project of app called 'cor'; did you mean 'core'?"),
        ("{{ source( 'coore' , 'orders' ) }}", "app/models/bad.sql: source( 'coore' , 'orders' ) names no upstream or source of app called 'coore'; did you mean 'core'?"),
        ("{{ ref('loomi', 'x') }}", "did you mean 'loomy'? (loomy is not an upstream of app: add it to dependencies.yml)"),
    ],
)
def test_a_misspelt_project_in_a_qualified_reference_is_named(mesh: Mesh, sql: str, expected: str) -> None:
    publish_project(mesh, "core", catalog=CATALOG)
    (mesh.root / "app/models/bad.sql").write_text(f"select * from {sql}")
    before = snapshot(mesh.root / "app")
    with pytest.raises(SyncError) as info:
        sync_project(mesh, "app")
    assert expected in str(info.value), str(info.value)
    assert snapshot(mesh.root / "app") == before


def test_qualifiers_the_project_knows_are_not_misspellings(mesh: Mesh) -> None:
    """The project's own sources, its packages and the mesh's projects are not taken for typos,
    nor is a name far from every project's, nor a reference in a comment or in docs."""
    from mesh.qualifiers import find_misspelt

    app = mesh.root / "app"
    (app / "models/own_sources.yml").write_text(
        "version: 2\nsources:\n  - name: cores\n    tables:\n      - name: t\n"
    )
    (app / "packages.yml").write_text(
        "packages:\n  - package: acme/coree\n    version: 1.0.0\n  - local: ../vendored\n"
    )
    (mesh.root / "vendored").mkdir()
    (mesh.root / "vendored/dbt_project.yml").write_text("name: corre\n")
    (app / "models/ok.sql").write_text(
        "select * from {{ source('cores', 't') }} join {{ ref('coree', 'm') }} "
        "join {{ ref('corre', 'm') }} join {{ ref('loomy', 'x') }} join {{ ref('app', 'a') }} "
        "join {{ source('raw', 'orders') }} {# ref('cor', 'orders') #}"
    )
    (app / "models/docs.md").write_text("{% docs d %}ref('cor', 'orders'){% enddocs %}")
    assert find_misspelt(mesh.project("app"), mesh.config.projects) == []
    (app / "models/bad.sql").write_text("select * from {{ ref('cor', 'orders') }}")
    found = find_misspelt(mesh.project("app"), mesh.config.projects)
    assert [(m.qualifier, m.suggestion, m.file.name) for m in found] == [("cor", "core", "bad.sql")]


def test_hint_for_an_unpinned_ref_whose_latest_version_is_not_public(tmp_path: Path) -> None:
    mesh = make_mesh(tmp_path)
    doc = producer()
    latest = doc["nodes"]["model.core.customers.v2"]
    latest["access"] = latest["config"]["access"] = "protected"
    write_build(tmp_path / "core", doc)
    publish_project(mesh, "core", catalog=CATALOG)
    (tmp_path / "loomy/models/b.sql").write_text("select * from {{ ref('core', 'customers') }}")
    with pytest.raises(SyncError, match=r"the latest version of customers \(v2\) is not public; its public versions are 1: pin one"):
        sync_project(mesh, "loomy")


def write_consumer(path: Path, project: str, parents: dict[str, list[str]], sources: dict[str, Any] | None = None) -> dict[str, Any]:
    doc = factories.manifest(project, [])
    doc["metadata"]["invocation_id"] = "consumer-build"
    doc["parent_map"] = parents
    doc["sources"] = sources or {}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(doc))
    return doc


def test_validate_maps_seed_and_snapshot_edges_back(mesh: Mesh, tmp_path: Path) -> None:
    publish_project(mesh, "core", catalog=CATALOG)
    loomy = tmp_path / "loomy-target/manifest.json"
    write_consumer(loomy, "loomy", {"model.loomy.b": ["seed.core.country_codes", "snapshot.core.orders_history", "seed.loomy.own"]})
    report = validate_manifest(mesh, loomy)
    assert report.ok, report.text()
    assert sorted((e.via, e.upstream_node) for e in report.edges) == [
        ("ref", "seed.core.country_codes"), ("ref", "snapshot.core.orders_history")
    ]
    source_id = "source.app.core.country_codes"
    source = {
        "unique_id": source_id, "database": "core", "schema": "raw", "identifier": "country_codes",
        "name": "country_codes", "meta": {"mesh": {"unique_id": "seed.core.country_codes"}},
    }
    app = tmp_path / "app-target/manifest.json"
    write_consumer(app, "app", {"model.app.a": [source_id]}, {source_id: source})
    report = validate_manifest(mesh, app)
    assert report.ok and [(e.via, e.upstream_node) for e in report.edges] == [("source", "seed.core.country_codes")]
    # A seed that is no longer public breaks the edge, and the finding says it is a seed.
    write_consumer(loomy, "loomy", {"model.loomy.b": ["seed.core.raw_orders"]})
    findings = validate_manifest(mesh, loomy).findings
    assert [(f.kind, f.upstream_node) for f in findings] == [("broken", "seed.core.raw_orders")]
    assert "is not a public seed of core" in findings[0].message


@pytest.mark.parametrize(
    ("invocation", "status", "refused"),
    [
        ("consumer-build", "error", True),
        ("consumer-build", "fail", True),
        ("consumer-build", "success", False),
        ("an-earlier-build", "error", False),  # results of another invocation: judge the manifest
        (None, None, False),  # no run_results.json (a parse-only manifest): judge it
    ],
)
def test_validate_refuses_to_judge_a_failed_build(
    mesh: Mesh, tmp_path: Path, invocation: str | None, status: str | None, refused: bool
) -> None:
    publish_project(mesh, "core", catalog=CATALOG)
    path = tmp_path / "target/manifest.json"
    doc = write_consumer(path, "loomy", {"model.loomy.b": ["seed.core.country_codes"]})
    if invocation is not None:
        results = {
            "metadata": {"dbt_schema_version": factories.RUN_RESULTS_SCHEMA, "invocation_id": invocation},
            "results": [{"unique_id": "model.loomy.b", "status": status}, {"unique_id": "test.loomy.t", "status": "pass"}],
        }
        (path.parent / "run_results.json").write_bytes(orjson.dumps(results))
    if refused:
        with pytest.raises(BuildFailedError) as info:
            validate_manifest(mesh, path)
        assert info.value.exit_code == 1 and "\n" not in str(info.value)
        assert f"loomy's last build failed (model.loomy.b ({status}))" in str(info.value)
        assert "invoke build --project loomy" in str(info.value)
    else:
        assert validate_manifest(mesh, path).ok
    assert doc["metadata"]["invocation_id"] == "consumer-build"


def interface(doc: dict[str, Any]) -> dict[str, Any]:
    return extract_interface(doc, catalog=CATALOG)[0]


def test_diff_names_the_resource_type_of_a_removed_seed_or_snapshot() -> None:
    old = interface(producer())
    new_doc = producer()
    del new_doc["nodes"]["seed.core.country_codes"]
    new_doc["nodes"]["snapshot.core.orders_history"]["config"]["meta"] = {}  # no longer public
    new_doc["nodes"]["snapshot.core.orders_history"]["config"]["access"] = "protected"
    changes = {c.unique_id: c for c in diff_interfaces(old, interface(new_doc), manifest=new_doc)}
    removed = changes["seed.core.country_codes"]
    assert removed.kind == "model_removed" and removed.breaking
    assert removed.message == "Public seed 'seed.core.country_codes' was deleted or renamed"
    hidden = changes["snapshot.core.orders_history"]
    assert hidden.kind == "access_changed" and hidden.breaking
    assert hidden.message.startswith("Snapshot 'snapshot.core.orders_history' is no longer public")
    added = diff_interfaces(interface(new_doc), old)
    assert "Seed 'seed.core.country_codes' was added to the public interface" in [c.message for c in added]


def test_observed_columns_are_judged_and_unknown_types_are_news() -> None:
    old = interface(producer())
    smaller = factories.catalog(
        {**{uid: [(c["name"], c["type"]) for c in t["columns"].values()] for uid, t in CATALOG["nodes"].items()},
         "model.core.events": [("EVENT_ID", "VARCHAR"), ("AT", "TIMESTAMP_NTZ")]}
    )
    new = extract_interface(producer(), catalog=smaller)[0]
    changes = {(c.kind, c.column): c for c in diff_interfaces(old, new) if c.unique_id == "model.core.events"}
    # Breaking where a consumer uses them (the gate decides from usage), notices otherwise.
    assert changes[("column_removed", "kind")].usage_decides
    assert changes[("data_type_changed", "event_id")].usage_decides
    # A node published before its columns were observed: the types appearing are not a change.
    before = extract_interface(producer())[0]  # YAML columns, no types
    news = [c for c in diff_interfaces(before, old) if c.unique_id == "model.core.events"]
    assert news and not any(c.breaking or c.usage_decides for c in news)


def test_a_warehouse_that_cannot_be_read_is_refused_and_nothing_written(mesh: Mesh) -> None:
    """Columns of uncontracted public nodes come from the warehouse: without one, no publish."""
    with pytest.raises(MeshError) as info:
        publish_project(mesh, "core")
    assert "\n" not in str(info.value)
    assert not (mesh.root / "registry").exists()


def test_no_catalog_is_generated_when_every_public_node_is_contracted(mesh: Mesh) -> None:
    """No dbt run at all (this project is not a real dbt project: one would fail)."""
    doc = factories.producer()
    assert ensure_catalog(mesh, "core", doc) is None
    assert not (mesh.root / "core/target/mesh_catalog").exists()


def test_validate_ignores_dbt_package_nodes_and_flags_undeclared_mesh_projects(mesh: Mesh, tmp_path: Path) -> None:
    publish_project(mesh, "core", catalog=CATALOG)
    path = tmp_path / "target/manifest.json"
    parents = ["seed.core.country_codes", "seed.dbt_date.holidays", "model.dbt_utils.calendar", "model.app.a"]
    write_consumer(path, "loomy", {"model.loomy.b": parents})
    report = validate_manifest(mesh, path)
    assert [(f.kind, f.upstream_node) for f in report.findings] == [("undeclared", "model.app.a")]
    assert [e.upstream_node for e in report.edges] == ["seed.core.country_codes"]


def test_nested_catalog_types_reach_sources_and_odd_ones_are_refused(mesh: Mesh) -> None:
    nested = factories.catalog(
        {
            **{uid: [(c["name"], c["type"]) for c in t["columns"].values()] for uid, t in CATALOG["nodes"].items()},
            "seed.core.country_codes": [("code", "VARCHAR"), ("names", "STRUCT(en VARCHAR, de VARCHAR)"), ("tags", "VARCHAR[]")],
        }
    )
    publish_project(mesh, "core", catalog=nested)
    sync_project(mesh, "app")
    data = YAML(typ="safe").load((mesh.root / "app/models/_mesh_core.yml").read_text())
    table = next(t for s in data["sources"] for t in s["tables"] if t["name"] == "country_codes")
    assert [c["data_type"] for c in table["columns"]] == ["varchar", "struct(en varchar, de varchar)", "varchar[]"]
    # DuckDB quotes a struct field that needs it: a type all the same (quotes admit only letters,
    # digits, `_`, `$` and spaces, so nothing in a type can end an identifier or a string).
    quoted = copy.deepcopy(nested)
    quoted["nodes"]["seed.core.country_codes"]["columns"]["names"]["type"] = 'STRUCT("a b" VARCHAR)'
    doc = producer()
    doc["metadata"]["generated_at"] = "2026-11-23T11:00:00.000000Z"
    write_build(mesh.root / "core", doc)
    publish_project(mesh, "core", catalog=quoted)
    sync_project(mesh, "app")
    data = YAML(typ="safe").load((mesh.root / "app/models/_mesh_core.yml").read_text())
    table = next(t for s in data["sources"] for t in s["tables"] if t["name"] == "country_codes")
    assert table["columns"][1]["data_type"] == 'struct("a b" varchar)'
    # An odd one is refused at publish, before the first write, naming the node and the column.
    odd = copy.deepcopy(nested)
    odd["nodes"]["seed.core.country_codes"]["columns"]["names"]["type"] = 'STRUCT("a"" b" VARCHAR); DROP TABLE x'
    doc["metadata"]["generated_at"] = "2026-11-23T12:00:00.000000Z"
    write_build(mesh.root / "core", doc)
    before = snapshot(mesh.root)
    with pytest.raises(SchemaError, match=r"node seed\.core\.country_codes, field columns\.names\.data_type: .* is not a SQL type"):
        publish_project(mesh, "core", catalog=odd)
    assert snapshot(mesh.root) == before
