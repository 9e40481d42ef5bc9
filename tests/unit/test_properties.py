"""Properties of the interface, the contract diff, publish and version ids, for generated inputs;
and hostile interfaces, as anyone who can write the registry could write them.

- the interface of any manifest (random public / protected / private models, versions, models of
  other packages, tests, seeds and snapshots) holds exactly the project's own public models, seeds
  and snapshots, and no SQL;
- the contract diff of an interface with itself (or a copy of it) is empty;
- publish then fetch returns identical bytes, whose nodes are exactly the interface;
- version ids sort by publish time;
- a hostile interface (hostile strings, numbers, lists or objects in any field of any node) is
  refused by the schema in one line, or what it lets through is inert: sync plans no file with a
  Jinja opening, the page ends no element early, every grant is a read-only grant on identifiers.
"""

from __future__ import annotations

import contextlib
import copy
import html.parser
import re
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mesh.consumer.sync import plan_sync
from mesh.core.errors import MeshError
from mesh.core.names import VERSION_RE, new_version, sha256_hex
from mesh.interface.contracts import diff_interfaces
from mesh.interface.publish import publish_project
from mesh.project.artifacts import build_interface, extract_interface
from mesh.project.config import load_mesh
from mesh.registry.document import dump_interface, load_interface
from mesh.registry.file import FileRegistry
from mesh.registry.schema import SchemaError, check_interface, parse_data_type
from mesh.ui.lineage import to_html
from mesh.ui.lineage_graph import ProjectInput, build_graph
from mesh.warehouse.snowflake import InterfaceGrantError, UnsafeIdentifierError
from mesh.warehouse.snowflake_grants import grant_statement_parts, grants_for_interface
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


# --- hostile interfaces: anything anyone who can write the registry could write -------------------



PAYLOADS = [
    "{{ env_var('MESH_CANARY') }}", "{% do run_query('create table pwned as select 1') %}", "{# x #}",
    '"; drop table x; --', "x' or '1'='1", "*/ select 1 /*", "</script><script>document.title='XSS'</script>",
    "a\nb", "a\rb", "\u2028", "\x00", "\x1b[31m", "..", "../x", "", " ", "x" * 300, "é", "\U0001f600",
    "model.other.x", '"db"."schema"."t"', "integer) as x; --", "struct(a int", "--", "${HOME}",
]
HOSTILE_TEXT = st.one_of(st.sampled_from(PAYLOADS), st.text(max_size=30), st.text(alphabet="{}%#'\";-/*<>\\\n ", max_size=12))
HOSTILE_VALUE = st.one_of(
    HOSTILE_TEXT, st.none(), st.integers(-(2**70), 2**70), st.booleans(), st.floats(allow_nan=False, allow_infinity=False),
    st.lists(HOSTILE_TEXT, max_size=2), st.dictionaries(HOSTILE_TEXT, HOSTILE_TEXT, max_size=2),
)
# Every field of a node (and of one column) that a forger could set; `[]` marks a column field.
NODE_FIELDS = [
    "unique_id", "name", "package_name", "resource_type", "database", "schema", "alias", "relation_name",
    "access", "group", "version", "latest_version", "deprecation_date", "description", "meta", "tags",
    "config.materialized", "config.event_time", "config.access", "contract.enforced", "depends_on.nodes",
    "constraints", "[].name", "[].data_type", "[].description", "[].constraints", "[].key",
]
# Free-text fields with hostile text of the right type: the schema keeps them, sync defuses them.
TYPED_TEXT = {
    "description": HOSTILE_TEXT,
    "[].description": HOSTILE_TEXT,
    "tags": st.lists(HOSTILE_TEXT, max_size=3),
    "meta": st.dictionaries(HOSTILE_TEXT, st.one_of(HOSTILE_TEXT, st.lists(HOSTILE_TEXT, max_size=2)), max_size=3),
    "[].constraints": st.lists(st.fixed_dictionaries({"type": st.just("check"), "expression": HOSTILE_TEXT}), max_size=2),
}
HOSTILE = settings(max_examples=scale(40, 300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
_JINJA = re.compile(r"\{[{%#]")
_CANARY = "mesh-canary-7f3e91"


def _set(node: dict[str, Any], path: str, value: Any) -> None:
    if path.startswith("[]."):
        name, column = next(iter(node["columns"].items()))
        if path == "[].key":  # a column's key no longer its name
            node["columns"] = {str(value): column, **{k: v for k, v in node["columns"].items() if k != name}}
            return
        column[path[3:]] = value
        return
    *parents, last = path.split(".")
    target = node
    for part in parents:
        target = target[part]
    target[last] = value


@st.composite
def hostile_interfaces(draw: st.DrawFn) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The template-like producer's interface with hostile values in some fields of some nodes
    (the content hash recomputed: checksums never stop a forger)."""
    doc = factories.producer(P)
    nodes, groups = extract_interface(doc)
    interface = build_interface(doc, nodes, groups, {"format": 1, "version": VERSION, "content_sha256": ""})
    changed = []
    # Half the time hostile text of the right type in free-text fields only (what the schema lets
    # through, for sync and the page to defuse), otherwise anything at all in any field.
    text_only = draw(st.booleans())
    fields = sorted(TYPED_TEXT) if text_only else NODE_FIELDS
    for uid in draw(st.lists(st.sampled_from(sorted(nodes)), min_size=1, max_size=3, unique=True)):
        for field in draw(st.lists(st.sampled_from(fields), min_size=1, max_size=3, unique=True)):
            _set(interface["nodes"][uid], field, draw(TYPED_TEXT[field] if text_only else HOSTILE_VALUE))
            changed.append((uid, field))
    interface["metadata"]["mesh"]["content_sha256"] = _sha(interface)
    return interface, changed


def _sha(interface: dict[str, Any]) -> str:
    import json

    text = json.dumps({"nodes": interface["nodes"], "groups": interface["groups"]}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return sha256_hex(text.encode())


VERSION = "20261123T101502.123456Z-3f2a9c1e"


def _accepted_values_are_inert(interface: dict[str, Any]) -> None:
    """What the schema lets through can carry no code where code could run."""
    ident = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
    for uid, node in interface["nodes"].items():
        assert uid == node["unique_id"] and not _JINJA.search(uid)
        for key in ("database", "schema", "alias"):
            assert node[key] is None or ident.fullmatch(node[key])
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", node["name"])
        for key in ("version", "latest_version"):
            assert node[key] is None or re.fullmatch(r"[A-Za-z0-9_.]+", str(node[key]))
        for name, column in node["columns"].items():
            assert ident.fullmatch(name) and name == column["name"]
            assert column["data_type"] is None or parse_data_type(column["data_type"])


@HOSTILE
@given(case=hostile_interfaces())
def test_a_hostile_interface_is_refused_in_one_line_or_inert(case: tuple[dict[str, Any], list[tuple[str, str]]]) -> None:
    interface, _changed = case
    try:
        checked = check_interface(interface, P, "local", VERSION)
    except SchemaError as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith(f"{P}/local {VERSION}: ")
        assert len(message) < 1500
        event("refused")
        return
    event("accepted")
    _accepted_values_are_inert(checked)


_HOSTILE_MESH = """version: 1
projects:
  core: {path: core}
  app: {path: app}
  loomy: {path: loomy, upstreams_via: loom}
  everything: {path: everything, upstreams_via: loom, sync_scope: all}
targets:
  local: {registry: "file://registry", env: local}
"""


@contextlib.contextmanager
def _hostile_mesh() -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "mesh.yml").write_text(_HOSTILE_MESH)
        for name in ("core", "app", "loomy", "everything"):
            (root / name / "models").mkdir(parents=True)
            (root / name / "dbt_project.yml").write_text(f"name: {name}\n")
        for name in ("app", "loomy", "everything"):
            (root / name / "dependencies.yml").write_text("projects:\n  - name: core\n")
        (root / "app/models/a.sql").write_text("select * from {{ source('core', 'orders') }}")
        (root / "loomy/models/b.sql").write_text("select * from {{ ref('core', 'customers') }}")
        yield root


@HOSTILE
@given(case=hostile_interfaces())
def test_sync_plans_and_writes_nothing_hostile(case: tuple[dict[str, Any], list[tuple[str, str]]]) -> None:
    """sync's planning and its writers, for both consumer styles and `sync_scope: all`: one line
    and no plan, or files with no Jinja opening and no identifier that is not one."""
    interface, _changed = case
    try:
        body = dump_interface(interface)
    except TypeError:
        return  # nothing orjson can write (a forger would use another writer: the schema test covers it)
    with _hostile_mesh() as root:
        registry = FileRegistry(root / "registry")
        registry.create_version(P, "local", VERSION, body)
        registry.swap_latest(P, "local", VERSION, body, None)
        mesh = load_mesh(root, "local")
        for consumer in ("app", "loomy", "everything"):
            try:
                plan = plan_sync(mesh, consumer)
            except MeshError as exc:
                assert "\n" not in str(exc)
                event("sync refused")
                continue
            event("sync planned")
            for change in plan.changes:
                text = (change.content or b"").decode()
                assert not _JINJA.search(text), (change.path, text[:200])
                assert _CANARY not in text


@HOSTILE
@given(case=hostile_interfaces(), texts=st.lists(HOSTILE_TEXT, min_size=2, max_size=2))
def test_the_page_and_the_grants_hold_whatever_the_schema_lets_through(
    case: tuple[dict[str, Any], list[tuple[str, str]]], texts: list[str]
) -> None:
    interface, _changed = case
    try:
        checked = check_interface(interface, P, "local", VERSION)
    except SchemaError:
        checked = None
    # The page: what it draws, the registry's checked interface and a local manifest (the
    # project's own, with markup in a node's name and description), ends no element early.
    local = factories.producer(P)
    local["nodes"]["model.core.orders"].update(name=texts[0], description=texts[1])
    graph = build_graph([ProjectInput(P, manifest=local, interface=checked)])
    page = to_html(graph)
    scripts = _Scripts(page)
    assert scripts.count == 3 and scripts.data is not None
    assert orjson.loads(scripts.data) == orjson.loads(orjson.dumps(graph.to_json()))
    # The grants: a statement is a read-only grant on identifiers, or nothing is granted.
    if checked is None:
        return
    try:
        statements = grants_for_interface(checked, ["CONSUMER_ROLE"], producer_database=P)
    except (InterfaceGrantError, UnsafeIdentifierError) as exc:
        assert "\n" not in str(exc)
        return
    assert all(grant_statement_parts(s) is not None for s in statements), statements


class _Scripts(html.parser.HTMLParser):
    """How a browser splits the page into script elements."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.count = 0
        self.data: str | None = None
        self._in_data = False
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.count += 1
            self._in_data = dict(attrs).get("id") == "lineage-data"

    def handle_data(self, data: str) -> None:
        if self._in_data:
            self.data = (self.data or "") + data

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_data = False
