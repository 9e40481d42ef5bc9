"""Properties of the interface, the contract diff, publish and version ids, for generated inputs.

- the interface of any manifest (random public / protected / private models, versions, models of
  other packages, tests, seeds and snapshots) holds exactly the project's own public models, seeds
  and snapshots, and no SQL;
- the contract diff of an interface with itself (or a copy of it) is empty;
- publish then fetch returns identical bytes, whose nodes are exactly the interface;
- version ids sort by publish time.
"""

from __future__ import annotations

import copy
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mesh.config import load_mesh
from mesh.contracts import diff_interfaces
from mesh.manifest import extract_interface, load_interface
from mesh.names import VERSION_RE, new_version
from mesh.publish import publish_project
from mesh.registry.file import FileRegistry
from tests import factories
from tests.reliability import scale

P = "core"
NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
ACCESS = st.sampled_from(["public", "protected", "private"])
FAST = settings(max_examples=scale(60, 400), deadline=None)
SLOW = settings(
    max_examples=scale(15, 100), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@st.composite
def manifests(draw: st.DrawFn) -> dict[str, Any]:
    """A manifest of `core` with random models, versions and access, plus other packages' models
    (never cross), tests (never cross), and seeds and snapshots of random access, public through
    `config.access` or `config.meta.mesh.access`, of this project or another."""
    nodes: list[dict[str, Any]] = []
    for name in draw(st.lists(NAMES, min_size=1, max_size=8, unique=True)):
        package = draw(st.sampled_from([P, P, P, "dep"]))
        versions = draw(st.one_of(st.none(), st.lists(st.integers(1, 5), min_size=1, max_size=3, unique=True)))
        for version in versions or [None]:
            access = draw(ACCESS)
            node = factories.model(
                package,
                name,
                access=access,
                version=version,
                latest_version=max(versions) if versions else None,
                columns=draw(st.dictionaries(NAMES, st.sampled_from(["integer", "text", "double"]), max_size=4)),
                description=draw(st.text(max_size=40)),
                meta=draw(st.dictionaries(NAMES, st.integers(-(2**63), 2**63 - 1) | st.text(max_size=10), max_size=3)),
                tags=draw(st.lists(NAMES, max_size=3)),
            )
            if draw(st.booleans()):  # access only in config, as dbt writes it for some nodes
                node["access"] = None
            nodes.append(node)
    for kind in draw(st.lists(st.sampled_from(["test", "seed", "snapshot"]), max_size=3)):
        name = f"{kind}_{len(nodes)}"
        package = draw(st.sampled_from([P, P, "dep"]))
        if kind == "test":
            extra = factories.model(package, name, access="public")
            nodes.append({**extra, "unique_id": f"test.{package}.{name}", "resource_type": "test"})
            continue
        node = factories.seed(package, name, access=None, columns={"id": "integer"})
        node["unique_id"], node["resource_type"] = f"{kind}.{package}.{name}", kind
        where = draw(st.sampled_from(["config", "meta", "none"]))
        access = draw(ACCESS)
        if where == "config":
            node["config"]["access"] = access
        elif where == "meta":
            node["config"]["meta"] = {"mesh": {"access": access}}
        nodes.append(node)
    doc = factories.manifest(P, nodes)
    # A depends_on edge to every kind of node: the interface keeps only those to public models.
    ids = list(doc["nodes"])
    for node in doc["nodes"].values():
        node["depends_on"]["nodes"] = draw(st.lists(st.sampled_from(ids), max_size=3, unique=True))
    return doc


def _declared_access(node: dict[str, Any]) -> Any:
    config = node["config"]
    if node["resource_type"] == "model":
        return node.get("access") or config.get("access")
    return config.get("access") or ((config.get("meta") or {}).get("mesh") or {}).get("access")


def expected_public(doc: dict[str, Any]) -> set[str]:
    return {
        uid
        for uid, node in doc["nodes"].items()
        if node["resource_type"] in ("model", "seed", "snapshot")
        and node["package_name"] == P
        and _declared_access(node) == "public"
    }


def catalog_of(doc: dict[str, Any]) -> dict[str, Any]:
    """What `dbt docs generate` would find for every seed, snapshot and model of `doc`."""
    return factories.catalog(
        {uid: [(name, "INTEGER") for name in node["columns"]] for uid, node in doc["nodes"].items()}
    )


@FAST
@given(doc=manifests())
def test_interface_holds_exactly_the_public_nodes(doc: dict[str, Any]) -> None:
    nodes, _groups = extract_interface(doc, catalog=catalog_of(doc))
    public = expected_public(doc)
    assert set(nodes) == public
    text = orjson.dumps(nodes).decode()
    assert "raw_code" not in text and "compiled_code" not in text and "select 1" not in text
    for uid, node in nodes.items():
        assert node["access"] == "public"
        assert node["resource_type"] == uid.split(".")[0]
        assert set(node["depends_on"]["nodes"]) <= public
        # Columns are the contract's (no `contract` key) or observed (`"contract": false`).
        enforced = node["contract"]["enforced"]
        assert enforced == (node["resource_type"] == "model" and doc["nodes"][uid]["contract"]["enforced"])
        assert all(("contract" in col) != enforced for col in node["columns"].values())


@FAST
@given(doc=manifests())
def test_contract_diff_of_an_interface_with_itself_is_empty(doc: dict[str, Any]) -> None:
    nodes, _ = extract_interface(doc, catalog=catalog_of(doc))
    assert diff_interfaces(nodes, nodes) == []
    assert diff_interfaces(nodes, copy.deepcopy(nodes), adapter_type="duckdb", manifest=doc) == []
    # and through JSON, as a consumer reads it back from the registry
    assert diff_interfaces(nodes, orjson.loads(orjson.dumps(nodes)), adapter_type="snowflake") == []


@SLOW
@given(doc=manifests())
def test_publish_then_fetch_returns_identical_bytes(doc: dict[str, Any]) -> None:
    if not expected_public(doc):
        return  # publish refuses (tests/corpus/no_public_models.yml)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / P / "target").mkdir(parents=True)
        (root / P / "dbt_project.yml").write_text(f"name: {P}\n")
        (root / "mesh.yml").write_text(
            f'version: 1\nprojects:\n  {P}: {{path: {P}}}\ntargets:\n  local: {{registry: "file://registry", env: local}}\n'
        )
        (root / P / "target/manifest.json").write_bytes(orjson.dumps(doc))
        (root / P / "target/run_results.json").write_bytes(orjson.dumps(factories.run_results(doc)))
        result = publish_project(load_mesh(root, "local"), P, catalog=catalog_of(doc))
        fresh = FileRegistry(root / "registry")  # another client: nothing cached
        latest = fresh.read_latest(P, "local")
        assert latest is not None and latest.version == result.version
        stored = (root / "registry" / P / "local" / "history" / result.version / "manifest.json").read_bytes()
        assert latest.body == fresh.read_version(P, "local", result.version).body == stored
        assert (root / "registry" / P / "local" / "latest" / "manifest.json").read_bytes() == stored
        fetched = load_interface(latest.body, "latest", P)
        assert fetched["nodes"] == orjson.loads(orjson.dumps(extract_interface(doc, catalog=catalog_of(doc))[0]))


@FAST
@given(
    moments=st.lists(
        st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(9999, 1, 1), timezones=st.just(UTC)),
        min_size=1,
        max_size=20,
    ),
    hashes=st.lists(st.from_regex(r"[0-9a-f]{64}", fullmatch=True), min_size=20, max_size=20),
)
def test_version_ids_sort_by_publish_time(moments: list[datetime], hashes: list[str]) -> None:
    ids = [new_version(h, now=m) for m, h in zip(moments, hashes, strict=False)]
    assert all(VERSION_RE.fullmatch(v) for v in ids)
    by_time = sorted(range(len(ids)), key=lambda i: (moments[i], hashes[i][:8]))
    assert [ids[i] for i in by_time] == sorted(ids)


@FAST
@given(
    start=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(9000, 1, 1), timezones=st.just(UTC)),
    offset=st.sampled_from([timedelta(hours=h) for h in (-11, -5, 0, 1, 9, 14)]),
)
def test_version_ids_are_utc_whatever_the_clock_zone(start: datetime, offset: timedelta) -> None:
    """The same instant in any time zone gives the same id; a later instant a later id."""
    from datetime import timezone

    local = start.astimezone(timezone(offset))
    assert new_version("ab" * 32, now=local) == new_version("ab" * 32, now=start)
    assert new_version("00" * 32, now=start + timedelta(microseconds=1)) > new_version("ff" * 32, now=start)
