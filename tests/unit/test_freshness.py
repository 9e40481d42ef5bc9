"""Freshness across projects (mesh/consumer/freshness.py, the freshness findings of mesh/consumer/validate.py) on
synthetic dbt artifacts and a real registry folder (no dbt run; tests/integration has the real one).
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from mesh.consumer.freshness import age_text, read_freshness, record_freshness
from mesh.consumer.validate import Report, validate_manifest
from mesh.core.errors import CheckFailedError, ConfigError, ManifestError
from mesh.interface.publish import publish_project
from mesh.project.config import Mesh, load_mesh
from tests import factories

Json = dict[str, Any]
BUILT = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
MESH_YML = """
version: 1
projects:
  core: {path: core}
  loomy: {path: loomy, upstreams_via: loom}
targets:
  local: {registry: "file://registry", env: local}
  dev: {registry: "file://registry", env: dev, upstream_env: local}
"""


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def write_build(project_dir: Path, doc: Json, timings: dict[str, datetime], ended: datetime, **status: str) -> None:
    """target/ of a passing build: run_results with an `execute` timing for each node in `timings`."""
    run = factories.run_results(doc)
    run["metadata"]["generated_at"] = iso(ended)
    for result in run["results"]:
        result["status"] = status.get(result["unique_id"].split(".")[-1], "success")
        done = timings.get(result["unique_id"])
        result["timing"] = [{"name": "compile", "started_at": iso(ended), "completed_at": iso(ended)}]
        if done is not None:
            result["timing"].append({"name": "execute", "started_at": iso(done), "completed_at": iso(done)})
    target = project_dir / "target"
    target.mkdir(parents=True, exist_ok=True)
    (target / "manifest.json").write_bytes(orjson.dumps(doc))
    (target / "run_results.json").write_bytes(orjson.dumps(run))


def consumer(freshness: Any = None, on: str = "stg", project_meta: Any = None) -> Json:
    """loomy: `stg` reads core's `orders` and `customers` v2 through dbt-loom refs, `mart` reads stg."""
    stg = factories.model(
        "loomy", "stg", access="protected", depends_on=["model.core.orders", "model.core.customers.v2"]
    )
    mart = factories.model("loomy", "mart", access="protected", depends_on=["model.loomy.stg"])
    for node in (stg, mart):
        node["patch_path"] = f"loomy://models/{node['name']}.yml"
        node["original_file_path"] = f"models/{node['name']}.sql"
        if project_meta is not None:
            node["config"]["meta"] = copy.deepcopy(project_meta)
    if freshness is not None:
        target = stg if on == "stg" else mart
        target["config"]["meta"] = {"mesh": {"freshness": freshness}}
    return factories.manifest("loomy", [stg, mart])


@pytest.fixture
def mesh(tmp_path: Path) -> Mesh:
    (tmp_path / "mesh.yml").write_text(MESH_YML)
    for name in ("core", "loomy"):
        (tmp_path / name / "models").mkdir(parents=True)
        (tmp_path / name / "dbt_project.yml").write_text(f"name: {name}\n")
    (tmp_path / "loomy" / "dependencies.yml").write_text("projects:\n  - name: core\n")
    doc = factories.producer()
    timings = {
        "model.core.orders": BUILT,
        "model.core.customers.v1": BUILT - timedelta(minutes=10),
        "model.core.stg_orders": BUILT - timedelta(minutes=20),
    }  # customers.v2 and revenue: no execute timing (the run's end is their built_at)
    write_build(tmp_path / "core", doc, timings, ended=BUILT + timedelta(minutes=1))
    mesh = load_mesh(tmp_path, "local")
    publish_project(mesh, "core")
    return mesh


def validate(mesh: Mesh, manifest: Json, now: datetime) -> Report:
    path = mesh.root / "loomy" / "target" / "manifest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(manifest))
    return validate_manifest(mesh, path, "loomy", today=now)


# --- recording -------------------------------------------------------------------------------------


def test_record_holds_every_public_node_and_leaves_the_interface_alone(mesh: Mesh) -> None:
    registry = mesh.registry
    latest_before = registry.read_latest("core", "local")
    doc = record_freshness(mesh, "core")
    assert doc is not None
    assert doc == read_freshness(mesh, "core")
    assert (doc["format"], doc["project"], doc["env"]) == (1, "core", "local")
    end = iso(BUILT + timedelta(minutes=1))
    assert {uid: node["built_at"] for uid, node in doc["nodes"].items()} == {
        "model.core.customers.v1": iso(BUILT - timedelta(minutes=10)),
        "model.core.customers.v2": end,
        "model.core.orders": iso(BUILT),
        "model.core.revenue": end,
    }  # public nodes only: stg_orders (protected) and int_secret (private) are not recorded
    # Without a digest of the relation (none was read here), every build is new data.
    assert {node["data_basis"] for node in doc["nodes"].values()} == {"build"}
    versions = {uid: node["data_version"] for uid, node in doc["nodes"].items()}
    assert len(set(versions.values())) == 4
    assert doc["build"] == {"invocation_id": "inv-1", "generated_at": end}
    assert doc["sources"] == {}
    # A separate object: the interface and its content hash are untouched, publish is a no-op.
    assert registry.read_latest("core", "local") == latest_before
    assert publish_project(mesh, "core").status == "unchanged"
    # Recorded again on the next passing build even though the interface did not change.
    later = BUILT + timedelta(hours=6)
    rebuilt = factories.producer()
    rebuilt["metadata"]["invocation_id"] = "inv-2"  # another build
    write_build(mesh.root / "core", rebuilt, {"model.core.orders": later}, ended=later)
    again = record_freshness(mesh, "core")
    assert again is not None and again["nodes"]["model.core.orders"]["built_at"] == iso(later)
    assert again["nodes"]["model.core.orders"]["data_version"] != versions["model.core.orders"]
    # Given a content digest's version, the record holds it.
    digested = record_freshness(mesh, "core", {"model.core.orders": ("0123456789abcdef", "content")})
    assert digested is not None
    assert digested["nodes"]["model.core.orders"]["data_version"] == "0123456789abcdef"
    assert digested["nodes"]["model.core.orders"]["data_basis"] == "content"
    assert publish_project(mesh, "core").status == "unchanged"


def test_selected_build_keeps_what_it_did_not_run(mesh: Mesh) -> None:
    record_freshness(mesh, "core")
    doc = factories.producer()
    doc["metadata"]["invocation_id"] = "inv-2"
    later = BUILT + timedelta(hours=2)
    write_build(mesh.root / "core", doc, {"model.core.orders": later}, ended=later)
    run_path = mesh.root / "core" / "target" / "run_results.json"
    run = orjson.loads(run_path.read_bytes())
    run["results"] = [r for r in run["results"] if r["unique_id"] == "model.core.orders"]
    run_path.write_bytes(orjson.dumps(run))
    before = read_freshness(mesh, "core")["nodes"]  # type: ignore[index]
    nodes = record_freshness(mesh, "core")["nodes"]  # type: ignore[index]
    assert nodes["model.core.orders"]["built_at"] == iso(later)
    assert nodes["model.core.orders"]["data_version"] != before["model.core.orders"]["data_version"]
    assert nodes["model.core.customers.v1"] == before["model.core.customers.v1"]  # as it was


def test_source_freshness_of_this_cycle_is_recorded(mesh: Mesh) -> None:
    sources_path = mesh.root / "core" / "target" / "sources.json"

    def sources(at: datetime) -> None:
        sources_path.write_bytes(orjson.dumps({
            "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/sources/v3.json", "generated_at": iso(at)},
            "results": [{"unique_id": "source.core.raw.orders", "max_loaded_at": iso(at - timedelta(hours=3)), "status": "warn"}],
        }))

    sources(BUILT - timedelta(minutes=5))  # checked just before the first build
    first = record_freshness(mesh, "core")
    assert first is not None
    assert first["sources"] == {"source.core.raw.orders": {
        "max_loaded_at": iso(BUILT - timedelta(hours=3, minutes=5)), "status": "warn",
        "checked_at": iso(BUILT - timedelta(minutes=5)),
    }}
    # The next build without a new check: the old sources.json is not this cycle's, so what
    # was recorded stays (with its own checked_at), it is not re-dated.
    later = BUILT + timedelta(days=1)
    write_build(mesh.root / "core", factories.producer(), {}, ended=later)
    assert record_freshness(mesh, "core")["sources"] == first["sources"]  # type: ignore[index]
    sources(later + timedelta(minutes=1))
    assert record_freshness(mesh, "core")["sources"]["source.core.raw.orders"]["checked_at"] == iso(later + timedelta(minutes=1))  # type: ignore[index]


def test_failed_build_records_nothing(mesh: Mesh) -> None:
    write_build(mesh.root / "core", factories.producer(), {}, ended=BUILT, orders="error")
    with pytest.raises(CheckFailedError, match="did not pass") as info:
        record_freshness(mesh, "core")
    assert info.value.exit_code == 1 and "\n" not in str(info.value)
    assert read_freshness(mesh, "core") is None


def test_no_public_node_records_nothing(mesh: Mesh) -> None:
    write_build(mesh.root / "loomy", consumer(), {}, ended=BUILT)
    assert record_freshness(mesh, "loomy") is None
    assert mesh.registry.read_private("loomy", "local", "freshness") is None


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"{not json", "not JSON"),
        (b"[1]", "not a JSON object"),
        (orjson.dumps({"format": 2, "project": "core", "env": "local", "recorded_at": "2026-01-01T00:00:00Z", "nodes": {}}), "format 2"),
        (orjson.dumps({"format": 1, "project": "core", "env": "local", "recorded_at": "2026-01-01T00:00:00Z", "nodes": {"model.core.orders": {"built_at": "yesterday"}}}), "not an ISO 8601"),
        (orjson.dumps({"format": 1, "project": "other", "env": "local", "recorded_at": "2026-01-01T00:00:00Z", "nodes": {}}), "describes other/local"),
    ],
)
def test_malformed_records_are_refused_in_one_line(mesh: Mesh, body: bytes, why: str) -> None:
    mesh.registry.write_private("core", "local", "freshness", body)
    with pytest.raises(ManifestError) as info:
        read_freshness(mesh, "core")
    message = str(info.value)
    assert "\n" not in message and why in message and "freshness record of core/local is malformed" in message
    assert info.value.exit_code == 2


def test_consumers_read_the_env_their_target_binds(mesh: Mesh) -> None:
    record_freshness(mesh, "core")
    dev = load_mesh(mesh.root, "dev")  # env dev, reads upstreams' env local
    assert read_freshness(dev, "core") == read_freshness(mesh, "core")
    assert mesh.registry.read_private("core", "dev", "freshness") is None


# --- checking --------------------------------------------------------------------------------------


def test_past_error_after_fails_validate_naming_consumer_and_upstream(mesh: Mesh) -> None:
    record_freshness(mesh, "core")
    declared = {"warn_after": {"count": 12, "period": "hour"}, "error_after": {"count": 1, "period": "day"}}
    report = validate(mesh, consumer(declared), now=BUILT + timedelta(days=1, hours=2))
    assert not report.ok
    stale = [f for f in report.findings if f.kind == "freshness"]
    assert [(f.severity, f.node, f.upstream_node) for f in stale] == [
        ("error", "model.loomy.stg", "model.core.customers.v2"),
        ("error", "model.loomy.stg", "model.core.orders"),
    ]
    assert stale[1].message == (
        f"stg reads model.core.orders, built 1 day 2 hours ago ({iso(BUILT)}), past its "
        "error_after of 1 day: the upstream data is stale"
    )
    assert "ERROR   freshness   model.loomy.stg: stg reads model.core.orders, built 1 day 2 hours ago" in report.text()


def test_past_warn_after_only_warns(mesh: Mesh) -> None:
    record_freshness(mesh, "core")
    declared = {"warn_after": {"count": 12, "period": "hour"}, "error_after": {"count": 1, "period": "day"}}
    report = validate(mesh, consumer(declared), now=BUILT + timedelta(hours=13))
    assert report.ok
    assert {(f.severity, f.kind) for f in report.findings} == {("warning", "freshness")}
    assert "past its warn_after of 12 hours" in report.findings[0].message
    fresh = validate(mesh, consumer(declared), now=BUILT + timedelta(hours=1))
    assert fresh.ok and fresh.findings == []


def test_declaration_on_a_downstream_model_checks_what_it_is_built_from(mesh: Mesh) -> None:
    record_freshness(mesh, "core")
    report = validate(mesh, consumer({"error_after": {"count": 30, "period": "minute"}}, on="mart"), now=BUILT + timedelta(hours=1))
    assert {(f.node, f.upstream_node) for f in report.findings} == {
        ("model.loomy.mart", "model.core.orders"), ("model.loomy.mart", "model.core.customers.v2"),
    }


def test_project_wide_declaration_and_no_declaration(mesh: Mesh) -> None:
    record_freshness(mesh, "core")
    now = BUILT + timedelta(days=3)
    assert validate(mesh, consumer(), now=now).findings == []  # no declaration, no check
    project_wide = {"mesh": {"freshness": {"error_after": {"count": 2, "period": "day"}}}}
    report = validate(mesh, consumer(project_meta=project_wide), now=now)
    # dbt propagates `+meta` to every model: stg reads core directly, mart through stg.
    assert {f.node for f in report.findings} == {"model.loomy.stg", "model.loomy.mart"}
    assert not report.ok


def test_upstream_without_a_record_is_a_warning(mesh: Mesh) -> None:
    report = validate(mesh, consumer({"error_after": {"count": 1, "period": "day"}}), now=BUILT)
    assert report.ok and len(report.findings) == 2
    assert all(f.severity == "warning" and "recorded no freshness" in f.message for f in report.findings)


@pytest.mark.parametrize(
    ("declared", "why"),
    [
        ({"warn_after": {"count": 1, "period": "week"}}, "warn_after.period is 'week'; use minute, hour or day"),
        ({"error_after": {"count": 0, "period": "day"}}, "error_after.count is 0; use a positive whole number"),
        ({"error_after": {"count": "1", "period": "day"}}, "error_after.count is '1'"),
        ({"error_after": {"count": True, "period": "day"}}, "error_after.count is True"),
        ({"error_after": {"count": 1, "period": "day", "filter": "x"}}, "not {count: N, period: minute|hour|day}"),
        ({"stale_after": {"count": 1, "period": "day"}}, "unknown key(s) stale_after"),
        ({}, "not a mapping"),
        ("1 day", "is '1 day'"),
        ({"warn_after": None}, "sets neither warn_after nor error_after"),
    ],
)
def test_bad_declarations_are_refused(mesh: Mesh, declared: Any, why: str) -> None:
    record_freshness(mesh, "core")
    with pytest.raises(ConfigError) as info:
        validate(mesh, consumer(declared), now=BUILT)
    message = str(info.value)
    assert "\n" not in message and why in message, message
    assert message.startswith("model model.loomy.stg (models/stg.yml): meta.mesh.consumer.freshness ")
    assert info.value.exit_code == 2


def test_age_text() -> None:
    assert age_text(timedelta(seconds=59)) == "under a minute"
    assert age_text(timedelta(minutes=1)) == "1 minute"
    assert age_text(timedelta(hours=5, minutes=12, seconds=3)) == "5 hours 12 minutes"
    assert age_text(timedelta(days=3, hours=2, minutes=7)) == "3 days 2 hours"
