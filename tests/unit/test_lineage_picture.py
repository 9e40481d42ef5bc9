"""The lineage graph and its three renderings, on synthetic manifests and interfaces."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import orjson
import pytest

from mesh.core.errors import ConfigError
from mesh.interface.publish import publish_project
from mesh.project.artifacts import build_interface, extract_interface
from mesh.project.config import Mesh, load_mesh
from mesh.ui.lineage import (
    ELKJS_SHA256,
    ELKJS_VERSION,
    MERMAID_MAX_EDGES,
    drawing_problems,
    run_lineage,
    segment_crosses,
    to_html,
    to_json,
    to_mermaid,
)
from mesh.ui.lineage_graph import Graph, ProjectInput, build_graph, freshness_of, load_graph
from tests import factories
from tests.conftest import REPO

Json = dict[str, Any]
ELK_BUNDLE = REPO / "mesh" / "ui" / "assets" / "elk.bundled.js"


def interface_of(doc: Json) -> Json:
    nodes, groups = extract_interface(doc)
    return build_interface(doc, nodes, groups, {"version": "v1"})


def mesh_source(consumer: str, upstream: str, table: str, target: str) -> Json:
    return {
        "unique_id": f"source.{consumer}.{upstream}.{table}",
        "resource_type": "source",
        "source_name": upstream,
        "name": table,
        "package_name": consumer,
        "meta": {"mesh": {"unique_id": target, "upstream": upstream}},
    }


def consumer_app() -> Json:
    """Reads `core` through generated sources; also has an ordinary source and a test."""
    doc = factories.manifest(
        "app",
        [
            factories.model("app", "a", access="protected", depends_on=["source.app.core.orders"]),
            factories.model("app", "b", access="protected", depends_on=["source.app.raw.events"]),
            factories.model(
                "app",
                "c",
                access="private",
                depends_on=["model.app.a", "source.app.core.customers"],
            ),
        ],
    )
    doc["sources"] = {
        "source.app.core.orders": mesh_source("app", "core", "orders", "model.core.orders"),
        "source.app.core.customers": mesh_source(
            "app", "core", "customers", "model.core.customers.v2"
        ),
        "source.app.raw.events": {
            "unique_id": "source.app.raw.events",
            "resource_type": "source",
            "source_name": "raw",
            "name": "events",
            "package_name": "app",
            "meta": {},
        },
    }
    test = {
        "unique_id": "test.app.not_null_a_id.1",
        "resource_type": "test",
        "name": "not_null_a_id",
        "package_name": "app",
        "depends_on": {"nodes": ["model.app.a"]},
    }
    doc["nodes"][test["unique_id"]] = test
    doc["parent_map"][test["unique_id"]] = ["model.app.a"]
    return doc


def consumer_loomy() -> Json:
    """Reads `core` through dbt-loom: the manifest carries copies of the public upstream nodes."""
    core = factories.producer()
    doc = factories.manifest(
        "loomy",
        [
            factories.model(
                "loomy",
                "b",
                access="protected",
                depends_on=["model.core.customers.v2", "model.core.customers.v1"],
            ),
        ],
    )
    for uid in ("model.core.customers.v1", "model.core.customers.v2"):
        doc["nodes"][uid] = copy.deepcopy(core["nodes"][uid])
        doc["parent_map"][uid] = []
    return doc


def inputs(core_manifest: bool = True, core_interface: bool = True) -> list[ProjectInput]:
    core = factories.producer()
    return [
        ProjectInput(
            "core",
            manifest=core if core_manifest else None,
            interface=interface_of(core) if core_interface else None,
            interface_version="v1" if core_interface else None,
        ),
        ProjectInput("app", ("core",), manifest=consumer_app()),
        ProjectInput("loomy", ("core",), manifest=consumer_loomy()),
    ]


EXPECTED_CROSS = {
    ("model.core.orders", "model.app.a", "source"),
    ("model.core.customers.v2", "model.app.c", "source"),
    ("model.core.customers.v2", "model.loomy.b", "ref"),
    ("model.core.customers.v1", "model.loomy.b", "ref"),
}


def test_nodes_belong_to_their_project_tests_and_generated_sources_left_out() -> None:
    graph = build_graph(inputs())
    assert [p.name for p in graph.projects] == ["core", "app", "loomy"]
    by_project = {p.name: {n.id for n in graph.project_nodes(p.name)} for p in graph.projects}
    assert by_project["core"] == set(factories.producer()["nodes"])  # private ones too
    assert by_project["app"] == {
        "model.app.a",
        "model.app.b",
        "model.app.c",
        "source.app.raw.events",
    }
    assert by_project["loomy"] == {"model.loomy.b"}  # dbt-loom copies stay with core
    assert not any(uid.startswith("test.") for uid in graph.nodes)
    assert graph.nodes["source.app.raw.events"].resource_type == "source"
    v2 = graph.nodes["model.core.customers.v2"]
    assert (v2.public, v2.published, v2.version, v2.label) == (True, True, "2", "customers v2")
    private = graph.nodes["model.core.int_secret"]
    assert (private.public, private.published, private.access) == (False, False, "private")


def test_cross_project_edges_from_refs_and_generated_sources() -> None:
    graph = build_graph(inputs())
    cross = {(e.source, e.target, e.via) for e in graph.cross_edges}
    assert cross == EXPECTED_CROSS
    local = {(e.source, e.target) for e in graph.edges if not e.cross_project}
    assert ("model.core.stg_orders", "model.core.orders") in local
    assert ("source.app.raw.events", "model.app.b") in local
    assert ("model.app.a", "model.app.c") in local
    assert all(e.via is None for e in graph.edges if not e.cross_project)
    assert len({(e.source, e.target) for e in graph.edges}) == len(graph.edges)


def test_registry_interface_stands_in_for_a_project_without_a_local_build() -> None:
    graph = build_graph(inputs(core_manifest=False))
    core = {n.id: n for n in graph.project_nodes("core")}
    assert set(core) == set(interface_of(factories.producer())["nodes"])  # public models only
    assert all(n.origin == "interface" and n.published for n in core.values())
    assert {(e.source, e.target, e.via) for e in graph.cross_edges} == EXPECTED_CROSS


def test_parents_known_only_by_id_become_reference_nodes() -> None:
    graph = build_graph(inputs(core_manifest=False, core_interface=False))
    orders = graph.nodes["model.core.orders"]
    assert (orders.origin, orders.project, orders.published) == ("reference", "core", False)
    v1 = graph.nodes["model.core.customers.v1"]  # from the dbt-loom copy: access and version known
    assert (v1.origin, v1.access, v1.version) == ("reference", "public", "1")
    assert {(e.source, e.target, e.via) for e in graph.cross_edges} == EXPECTED_CROSS
    # a project outside mesh.yml is drawn too, flagged
    stray = factories.manifest("app", [factories.model("app", "x", depends_on=["model.zeta.y"])])
    graph = build_graph([ProjectInput("app", manifest=stray)])
    assert [(p.name, p.in_mesh) for p in graph.projects] == [("zeta", False), ("app", True)]
    assert graph.cross_edges[0].via == "ref"


def exposure(project: str, name: str, parents: list[str], owner: Json | None = None) -> Json:
    return {
        "unique_id": f"exposure.{project}.{name}",
        "resource_type": "exposure",
        "name": name,
        "label": name.replace("_", " ").capitalize(),
        "type": "dashboard",
        "package_name": project,
        "owner": owner if owner is not None else {"name": "Analytics", "email": "bi@example.com"},
        "description": "what the board reads",
        "depends_on": {"nodes": parents, "macros": []},
    }


def with_exposures_seeds_and_sources() -> list[ProjectInput]:
    """core loads a seed that one of its own sources reads, and declares a source nothing reads;
    app's dashboard reads its own model and core's public model through a generated source;
    loomy's notebook reads core's model through dbt-loom."""
    base = inputs()
    core = factories.producer()
    core["nodes"]["seed.core.countries"] = factories.seed("core", "countries", schema="raw")
    core["nodes"]["model.core.geo"] = factories.model(
        "core", "geo", access="private", depends_on=["source.core.raw.countries"]
    )
    core["parent_map"]["model.core.geo"] = ["source.core.raw.countries"]
    core["sources"] = {
        f"source.core.raw.{table}": {
            "unique_id": f"source.core.raw.{table}",
            "resource_type": "source",
            "source_name": "raw",
            "name": table,
            "identifier": table.upper(),  # a source names its table in any case
            "database": "CORE",
            "schema": "raw",
            "package_name": "core",
            "meta": {},
        }
        for table in ("countries", "legacy_feed")
    }
    app = consumer_app()
    app["exposures"] = {
        "exposure.app.revenue_board": exposure(
            "app", "revenue_board", ["model.app.c", "source.app.core.orders"]
        )
    }
    loomy = consumer_loomy()
    loomy["exposures"] = {
        "exposure.loomy.churn": exposure(
            "loomy", "churn", ["model.core.customers.v2"], owner={"email": "ds@example.com"}
        )
    }
    return [
        dataclasses.replace(base[0], manifest=core),
        dataclasses.replace(base[1], manifest=app),
        dataclasses.replace(base[2], manifest=loomy),
    ]


def test_exposures_are_the_last_hop_with_their_owner() -> None:
    graph = build_graph(with_exposures_seeds_and_sources())
    board = graph.nodes["exposure.app.revenue_board"]
    assert (board.project, board.resource_type, board.name, board.owner, board.materialized) == (
        "app", "exposure", "Revenue board", "Analytics", "dashboard"
    )
    assert graph.nodes["exposure.loomy.churn"].owner == "ds@example.com"  # no name: the email
    edges = {(e.source, e.target, e.cross_project, e.via) for e in graph.edges}
    assert ("model.app.c", "exposure.app.revenue_board", False, None) in edges
    assert ("model.core.orders", "exposure.app.revenue_board", True, "source") in edges
    assert ("model.core.customers.v2", "exposure.loomy.churn", True, "ref") in edges
    assert not any(e.source.startswith("exposure.") for e in graph.edges)  # nothing reads one
    drawn = to_json(graph).decode()
    assert '"owner": "Analytics"' in drawn
    mermaid = to_mermaid(graph)
    assert '>"Revenue board (Analytics)"]:::exposure' in mermaid
    page = to_html(graph)
    assert 'data-node-id="exposure.app.revenue_board"' in page
    assert "dashboard \u00b7 owner Analytics" in page


def test_seeds_feed_the_sources_that_read_them_and_unread_sources_are_marked() -> None:
    graph = build_graph(with_exposures_seeds_and_sources())
    edges = {(e.source, e.target) for e in graph.edges}
    # the seed's table is the source's table (case apart): one line from seed to source to model
    assert ("seed.core.countries", "source.core.raw.countries") in edges
    assert ("source.core.raw.countries", "model.core.geo") in edges
    feed = graph.nodes["source.core.raw.legacy_feed"]
    assert feed.unread and not graph.nodes["source.core.raw.countries"].unread
    assert not graph.nodes["source.app.raw.events"].unread  # model.app.b reads it
    assert not any(n.unread for n in graph.nodes.values() if n.resource_type != "source")
    assert ":::unread" in to_mermaid(graph)
    assert "legacy_feed (read by no node)" in to_mermaid(graph)
    page = to_html(graph)
    unread = re.findall(r'<g class="([^"]*)" data-node-id="([^"]*)"', page)
    assert {uid for cls, uid in unread if "unread" in cls.split()} == {feed.id}


def test_projects_ordered_upstreams_first_whatever_the_input_order() -> None:
    graph = build_graph(list(reversed(inputs())))
    names = [p.name for p in graph.projects]
    assert names.index("core") < names.index("app") and names.index("core") < names.index("loomy")


def test_json_shape() -> None:
    graph = build_graph(inputs(), {"target": "local", "env": "local"})
    doc = orjson.loads(to_json(graph))
    assert set(doc) == {"format", "meta", "stats", "projects", "nodes", "edges"}
    assert doc["stats"]["cross_project_edges"] == len(EXPECTED_CROSS)
    assert doc["stats"]["nodes"] == len(doc["nodes"])
    assert [p["name"] for p in doc["projects"]] == ["core", "app", "loomy"]
    assert {p["name"]: p["nodes"] for p in doc["projects"]}["loomy"] == 1
    assert doc["projects"][0]["interface_version"] == "v1"
    node_keys = {"id", "project", "resource_type", "access", "public", "version", "published"}
    assert all(node_keys <= set(n) for n in doc["nodes"])
    v1 = next(n for n in doc["nodes"] if n["id"] == "model.core.customers.v1")
    assert (v1["public"], v1["version"], v1["latest_version"]) == (True, "1", "2")
    ids = {n["id"] for n in doc["nodes"]}
    for edge in doc["edges"]:
        assert set(edge) == {"from", "to", "cross_project", "via"}
        assert edge["from"] in ids and edge["to"] in ids
        assert isinstance(edge["cross_project"], bool)
    assert {
        (e["from"], e["to"], e["via"]) for e in doc["edges"] if e["cross_project"]
    } == EXPECTED_CROSS


# --- Mermaid -------------------------------------------------------------------------------------

_ID = r"[A-Za-z][A-Za-z0-9_]*"
_LINK_RE = re.compile(rf"^\s+({_ID}) (-->|==>(?:\|[a-z]+\|)?) ({_ID})$")
_NODE_RE = re.compile(
    rf"^\s+({_ID})(\[\"|\[\(\"|\[\[\"|\[/\")(.*)(\"\]|\"\)\]|\"\]\]|\"/\]):::[a-z]+$"
)


def check_mermaid(text: str) -> tuple[dict[str, list[str]], list[tuple[str, str, str]]]:
    """Parse the subset of Mermaid `to_mermaid` writes; fail on anything else."""
    lines = text.rstrip("\n").split("\n")
    assert lines[0] == "flowchart LR"
    subgraphs: dict[str, list[str]] = {}
    declared: set[str] = set()
    links: list[tuple[str, str, str]] = []
    current: str | None = None
    cross_indexes: list[int] = []
    for line in lines[1:]:
        if line.startswith("%%") or line.strip().startswith("classDef "):
            continue
        if m := re.fullmatch(rf"  subgraph ({_ID})\[\"([^\"]*)\"\]", line):
            assert current is None, "nested subgraph"
            current = m.group(1)
            subgraphs[m.group(2)] = []
            declared.add(current)
        elif line == "  end":
            assert current is not None
            current = None
        elif m := _NODE_RE.match(line):
            assert current is not None, f"node outside a subgraph: {line}"
            assert m.group(1) not in declared, f"id declared twice: {m.group(1)}"
            assert '"' not in m.group(3)
            declared.add(m.group(1))
            list(subgraphs.values())[-1].append(m.group(1))
        elif m := _LINK_RE.match(line):
            assert current is None
            assert m.group(1) in declared and m.group(3) in declared, line
            links.append((m.group(1), m.group(2), m.group(3)))
        elif m := re.fullmatch(r"  linkStyle ([0-9,]+) stroke:[^ ;]+", line):
            cross_indexes = [int(i) for i in m.group(1).split(",")]
        else:
            raise AssertionError(f"unexpected Mermaid line: {line!r}")
    assert current is None
    assert cross_indexes == [i for i, link in enumerate(links) if link[1].startswith("==>")]
    return subgraphs, links


def test_mermaid_one_subgraph_per_project_thick_cross_edges() -> None:
    graph = build_graph(inputs(), {"target": "local", "env": "local"})
    text = to_mermaid(graph)
    subgraphs, links = check_mermaid(text)
    assert list(subgraphs) == ["core", "app", "loomy"]
    assert len(subgraphs["core"]) == len(graph.project_nodes("core"))
    assert len(links) == len(graph.edges)
    assert sum(kind.startswith("==>") for _a, kind, _b in links) == len(EXPECTED_CROSS)
    assert "==>|source|" in text and "==>|ref|" in text
    fenced = to_mermaid(graph, fenced=True)
    assert fenced.startswith("```mermaid\nflowchart LR\n") and fenced.endswith("\n```\n")


def test_mermaid_styles_public_protected_and_private_apart() -> None:
    text = to_mermaid(build_graph(inputs()))
    styles = dict(
        line.strip().removeprefix("classDef ").split(" ", 1)
        for line in text.splitlines()
        if line.strip().startswith("classDef ")
    )
    assert {"public", "protected", "private", "reference"} <= styles.keys()
    assert len({styles[k] for k in ("public", "protected", "private")}) == 3
    classes = dict(re.findall(r"(n_model_\w+)\[.*:::(\w+)$", text, re.MULTILINE))
    assert classes["n_model_core_orders"] == "public"
    assert classes["n_model_core_stg_orders"] == "protected"
    assert classes["n_model_app_a"] == "protected"
    assert classes["n_model_core_int_secret"] == "private"
    assert classes["n_model_app_c"] == "private"


def test_mermaid_ids_are_sanitized_and_unique_labels_escaped() -> None:
    weird = factories.model("p", "b_c")
    twin = factories.model("p_b", "c", depends_on=["model.p.b_c"])
    odd = factories.model("p", "end", depends_on=[])
    odd["name"] = 'say "hi" <b>#1</b>'
    graph = build_graph(
        [
            ProjectInput("p", manifest=factories.manifest("p", [weird, odd])),
            ProjectInput("p_b", manifest=factories.manifest("p_b", [twin])),
        ]
    )
    text = to_mermaid(graph)
    subgraphs, links = check_mermaid(text)
    assert len({i for ids in subgraphs.values() for i in ids}) == 3
    assert "#quot;hi#quot; #lt;b#gt;#35;1#lt;/b#gt;" in text
    assert len(links) == 1 and links[0][1].startswith("==>")


def test_empty_project_still_valid_mermaid() -> None:
    graph = build_graph([ProjectInput("lonely"), ProjectInput("other")])
    subgraphs, links = check_mermaid(to_mermaid(graph))
    assert list(subgraphs) == ["lonely", "other"] and links == []


def test_mermaid_too_big_for_github_shrinks_to_the_cross_project_edges() -> None:
    core = [factories.model("core", f"m{i}", access="private") for i in range(400)]
    for i in range(1, 400):
        core[i]["depends_on"]["nodes"] = [f"model.core.m{i - 1}", f"model.core.m{i // 2}"]
    core.append(factories.model("core", "pub", depends_on=["model.core.m399"]))
    app = factories.manifest("app", [factories.model("app", "x", depends_on=["model.core.pub"])])
    graph = build_graph(
        [
            ProjectInput("core", manifest=factories.manifest("core", core)),
            ProjectInput("app", ("core",), manifest=app),
        ]
    )
    assert len(graph.edges) > MERMAID_MAX_EDGES
    text = to_mermaid(graph)
    _subgraphs, links = check_mermaid(text)
    assert links == [("n_model_core_pub", "==>|ref|", "n_model_app_x")]
    assert "only the 2 nodes on cross-project edges" in text


# --- HTML ----------------------------------------------------------------------------------------


class Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.texts: list[tuple[str, str]] = []  # (class of the <text>, its text)
        self._script: dict[str, str | None] | None = None
        self._text: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))
        if tag == "script":
            self._script = dict(attrs)
            self.scripts.append((self._script, ""))
        self._text = (dict(attrs).get("class") or "") if tag == "text" else None

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._script = None
        self._text = None

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            attrs, body = self.scripts[-1]
            self.scripts[-1] = (attrs, body + data)
        if self._text is not None:
            self.texts.append((self._text, data))

    def having(self, tag: str, css_class: str) -> list[dict[str, str | None]]:
        return [
            a for t, a in self.found if t == tag and css_class in (a.get("class") or "").split()
        ]


def parse(page: str) -> Elements:
    parser = Elements()
    parser.feed(page)
    return parser


def test_html_is_self_contained_and_tags_every_node_and_edge() -> None:
    docs = inputs()
    assert docs[1].manifest is not None
    docs[1].manifest["nodes"]["model.app.a"]["description"] = "</script><script>alert(1)</script>"
    graph = build_graph(docs, {"target": "local"})
    page = to_html(graph)
    parser = parse(page)
    # nothing fetched: no element loads anything, no stylesheet imports
    for tag, attrs in parser.found:
        assert tag not in ("link", "iframe", "img", "object", "embed", "base"), tag
        assert not {"src", "href", "srcset"} & attrs.keys(), (tag, attrs)
    assert "@import" not in page and "url(http" not in page
    # the data, ELK and the page script, all inline; the description closed nothing
    assert page.count("</script>") == 3
    kinds = [(attrs.get("type"), attrs.get("id")) for attrs, _body in parser.scripts]
    assert kinds == [("application/json", "lineage-data"), (None, None), (None, None)]
    data = orjson.loads(parser.scripts[0][1])
    assert data["stats"]["cross_project_edges"] == len(EXPECTED_CROSS)
    assert parser.scripts[1][1].endswith(ELK_BUNDLE.read_text(encoding="utf-8"))
    assert f"elkjs {ELKJS_VERSION}" in parser.scripts[1][1]
    assert "new ELK()" in parser.scripts[2][1]

    nodes = {a["data-node-id"]: a for a in parser.having("g", "node")}
    assert set(nodes) == set(graph.nodes)
    assert all(nodes[n.id]["data-project"] == n.project for n in graph.nodes.values())
    edges = [a for t, a in parser.found if t == "path" and "data-edge-from" in a]
    assert len(edges) == len(graph.edges)
    cross = {
        (a["data-edge-from"], a["data-edge-to"]) for a in edges if a["data-cross-project"] == "true"
    }
    assert cross == {(a, b) for a, b, _via in EXPECTED_CROSS}
    projects = [a["data-project"] for a in parser.having("g", "project")]
    assert projects == ["core", "app", "loomy"]
    # every cross-project edge has a visible label saying how it is read
    labels = {
        (a["data-edge-from"], a["data-edge-to"], a["data-via"])
        for a in parser.having("g", "edge-label")
    }
    assert labels == EXPECTED_CROSS
    assert sorted(t for c, t in parser.texts if c == "edge-label-text") == sorted(
        via for _a, _b, via in EXPECTED_CROSS
    )
    # project subtitles are written whole (the page wraps them; nothing is cut with an ellipsis)
    subtitles = [t for c, t in parser.texts if c == "project-meta"]
    assert subtitles[1] == "4 nodes · reads core · no local build"
    assert not any("\u2026" in t for _c, t in parser.texts)


def test_long_names_and_subtitles_are_written_whole() -> None:
    upstreams = tuple(f"upstream_project_number_{i}" for i in range(8))
    long_name = "a_model_name_much_longer_than_any_box_of_a_fixed_width_would_hold"
    app = factories.manifest("app", [factories.model("app", long_name, access="protected")])
    graph = build_graph(
        [*(ProjectInput(u) for u in upstreams), ProjectInput("app", upstreams, manifest=app)]
    )
    parser = parse(to_html(graph))
    assert ("node-name", long_name) in parser.texts
    assert ("project-meta", "1 nodes · reads " + ", ".join(upstreams) + " · no local build") in (
        parser.texts
    )


def test_public_models_show_their_data_age_when_known() -> None:
    docs = inputs()
    docs[0] = dataclasses.replace(
        docs[0],
        built_at={
            "model.core.orders": "2026-11-23T10:00:00Z",
            "model.app.a": "2026-01-01T00:00:00Z",
        },
    )
    graph = build_graph(docs)
    assert graph.nodes["model.core.orders"].built_at == "2026-11-23T10:00:00Z"
    # a project only dates its own nodes
    assert graph.nodes["model.app.a"].built_at is None
    doc = orjson.loads(to_json(graph))
    ages = {n["id"]: n["built_at"] for n in doc["nodes"]}
    assert (
        ages["model.core.orders"] == "2026-11-23T10:00:00Z" and ages["model.core.revenue"] is None
    )
    parser = parse(to_html(graph))
    dated = [a for a in parser.having("text", "node-age")]
    assert [a["data-built-at"] for a in dated] == ["2026-11-23T10:00:00Z"]
    orders = next(a for a in parser.having("g", "node") if a["data-node-id"] == "model.core.orders")
    assert orders["data-built-at"] == "2026-11-23T10:00:00Z"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (None, {}),
        (b"not json", {}),
        (b"[1, 2]", {}),
        (b'{"format": 2, "nodes": {"model.p.a": {"built_at": "2026-11-23T10:00:00Z"}}}', {}),
        (b'{"format": 1, "nodes": ["model.p.a"]}', {}),
        (
            b'{"format": 1, "project": "p", "env": "prod", "nodes": {'
            b'"model.p.a": {"built_at": "2026-11-23T10:00:00Z", "rows": 3},'
            b'"model.p.b": {"built_at": "2026-11-23T11:30:00+01:00"},'
            b'"model.p.c": {"built_at": "2026-11-23T10:00:00"},'
            b'"model.p.d": {"built_at": "yesterday"},'
            b'"model.p.e": {"built_at": 1732356000},'
            b'"model.p.f": "2026-11-23T10:00:00Z",'
            b'"model.p.g": {}}}',
            {
                "model.p.a": "2026-11-23T10:00:00Z",
                "model.p.b": "2026-11-23T10:30:00Z",
                "model.p.c": "2026-11-23T10:00:00Z",
            },
        ),
    ],
)
def test_freshness_objects_read_leniently(body: bytes | None, expected: dict[str, str]) -> None:
    assert freshness_of(body) == expected


def test_vendored_elk_is_the_pinned_release_with_its_licence() -> None:
    assert hashlib.sha256(ELK_BUNDLE.read_bytes()).hexdigest() == ELKJS_SHA256
    licence = (ELK_BUNDLE.parent / "elkjs-LICENSE.md").read_text(encoding="utf-8")
    assert licence.startswith("# Eclipse Public License - v 2.0")
    assert f"elkjs {ELKJS_VERSION}" in (ELK_BUNDLE.parent / "README.md").read_text()


def test_package_ships_the_page_assets(tmp_path: Path) -> None:
    """What `pip install` copies: the package data declared in pyproject.toml."""
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    shutil.copytree(REPO / "mesh", tmp_path / "mesh", ignore=shutil.ignore_patterns("__pycache__"))
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import setuptools; setuptools.setup()",
            "-q",
            "build_py",
            "--build-lib",
            str(tmp_path / "lib"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    shipped = {p.name for p in (tmp_path / "lib/mesh/ui/assets").iterdir()}
    assert {"elk.bundled.js", "elkjs-LICENSE.md", "lineage.js", "lineage.css"} <= shipped


# --- checking a drawn page -----------------------------------------------------------------------


def two_projects() -> Graph:
    up = factories.manifest("up", [factories.model("up", "a")])
    mid = factories.manifest("mid", [factories.model("mid", "m", depends_on=["model.up.a"])])
    down = factories.manifest(
        "down", [factories.model("down", "d", depends_on=["model.up.a", "model.mid.m"])]
    )
    return build_graph(
        [
            ProjectInput("up", manifest=up),
            ProjectInput("mid", ("up",), manifest=mid),
            ProjectInput("down", ("up", "mid"), manifest=down),
        ]
    )


def sound_geometry() -> dict[str, Any]:
    """up | mid | down side by side, the up -> down edge routed below mid."""
    return {
        "projects": [
            {"name": "up", "box": [0, 0, 100, 100]},
            {"name": "mid", "box": [150, 0, 100, 100]},
            {"name": "down", "box": [300, 0, 100, 100]},
        ],
        "nodes": [
            {"id": "model.up.a", "project": "up", "box": [10, 40, 80, 30]},
            {"id": "model.mid.m", "project": "mid", "box": [160, 40, 80, 30]},
            {"id": "model.down.d", "project": "down", "box": [310, 40, 80, 30]},
        ],
        "edges": [
            {
                "from": "model.up.a",
                "to": "model.mid.m",
                "cross_project": True,
                "points": [[90, 50], [160, 50]],
                "label": {"text": "ref", "box": [110, 42, 20, 16]},
            },
            {
                "from": "model.mid.m",
                "to": "model.down.d",
                "cross_project": True,
                "points": [[240, 50], [310, 50]],
                "label": None,
            },
            {
                "from": "model.up.a",
                "to": "model.down.d",
                "cross_project": True,
                "points": [[90, 60], [120, 60], [120, 120], [280, 120], [280, 60], [310, 60]],
                "label": None,
            },
        ],
        "texts": [
            {
                "owner": "node:model.up.a",
                "text": "a",
                "box": [20, 45, 10, 14],
                "within": [10, 40, 80, 30],
            },
            {
                "owner": "project:up",
                "text": "up",
                "box": [10, 5, 30, 19],
                "within": [0, 0, 100, 100],
            },
        ],
    }


def test_segment_crossing_a_box_interior() -> None:
    box = (10.0, 10.0, 20.0, 20.0)
    assert segment_crosses((0, 20), (40, 20), box)  # straight through
    assert segment_crosses((0, 0), (40, 40), box)  # diagonally
    assert segment_crosses((15, 15), (16, 16), box)  # wholly inside
    assert not segment_crosses((0, 10), (40, 10), box)  # along the top border
    assert not segment_crosses((0, 5), (40, 5), box)  # above
    assert not segment_crosses((0, 20), (10, 20), box)  # ends at the border
    assert not segment_crosses((0, 0), (10, 10), box)  # touches a corner


def test_sound_geometry_has_no_problems() -> None:
    assert drawing_problems(sound_geometry(), two_projects()) == []


def test_an_edge_through_the_middle_project_is_a_problem() -> None:
    geometry = sound_geometry()
    geometry["edges"][2]["points"] = [[90, 60], [310, 60]]  # straight through mid and its node
    assert drawing_problems(geometry, two_projects()) == [
        "edge model.up.a -> model.down.d runs through node model.mid.m",
        "edge model.up.a -> model.down.d runs through project mid",
    ]
    # around mid's node, still inside mid's box
    geometry["edges"][2]["points"] = [
        [90, 60],
        [120, 60],
        [120, 90],
        [280, 90],
        [280, 60],
        [310, 60],
    ]
    assert drawing_problems(geometry, two_projects()) == [
        "edge model.up.a -> model.down.d runs through project mid"
    ]


def test_missing_overlapping_detached_and_clipped_drawings_are_problems() -> None:
    graph = two_projects()
    geometry = sound_geometry()
    del geometry["edges"][1]
    assert drawing_problems(geometry, graph) == ["edge model.mid.m -> model.down.d is missing"]

    geometry = sound_geometry()
    geometry["nodes"].pop()
    assert "node model.down.d is missing" in drawing_problems(geometry, graph)

    geometry = sound_geometry()
    geometry["nodes"][1]["box"] = [140, 40, 80, 30]  # sticks out of mid
    assert drawing_problems(geometry, graph)[0] == "node model.mid.m sticks out of its project mid"

    geometry = sound_geometry()
    geometry["edges"][1]["points"] = [[240, 10], [310, 10]]  # starts and ends beside its nodes
    assert drawing_problems(geometry, graph) == [
        "edge model.mid.m -> model.down.d does not start at model.mid.m",
        "edge model.mid.m -> model.down.d does not end at model.down.d",
    ]

    geometry = sound_geometry()
    geometry["edges"][0]["label"]["box"] = [85, 42, 20, 16]  # over node a
    assert drawing_problems(geometry, graph) == [
        "the label of edge model.up.a -> model.mid.m covers model.up.a"
    ]

    geometry = sound_geometry()
    geometry["texts"][0]["box"] = [20, 45, 75, 14]  # wider than its node
    assert drawing_problems(geometry, graph) == [
        "text 'a' of node:model.up.a is clipped by its box"
    ]

    geometry = sound_geometry()
    geometry["nodes"].append({"id": "model.up.a", "project": "up", "box": [10, 40, 80, 30]})
    assert drawing_problems(geometry, graph) == ["a node is drawn twice"]


# --- from a mesh folder: registry and manifests --------------------------------------------------

MESH_YML = """
version: 1
projects:
  core: {path: core}
  app: {path: app}
  loomy: {path: loomy, upstreams_via: loom}
  ghost: {path: ghost}
targets:
  local: {registry: "file://registry", env: local}
"""


@pytest.fixture
def mesh(tmp_path: Path) -> Mesh:
    (tmp_path / "mesh.yml").write_text(MESH_YML)
    docs = {"core": factories.producer(), "app": consumer_app(), "loomy": consumer_loomy()}
    for name, doc in docs.items():
        target = tmp_path / name / "target"
        target.mkdir(parents=True)
        (tmp_path / name / "dbt_project.yml").write_text(f"name: {name}\n")
        (target / "manifest.json").write_bytes(orjson.dumps(doc))
        (target / "run_results.json").write_bytes(orjson.dumps(factories.run_results(doc)))
        if name != "core":
            (tmp_path / name / "dependencies.yml").write_text("projects:\n  - name: core\n")
    return load_mesh(tmp_path, "local")


def test_load_graph_reads_manifests_and_the_registry(mesh: Mesh) -> None:
    before = load_graph(mesh)
    assert not any(n.published for n in before.nodes.values())
    version = publish_project(mesh, "core").version
    graph = load_graph(mesh)
    assert [p.name for p in graph.projects] == ["core", "app", "loomy", "ghost"]
    info = {p.name: p for p in graph.projects}
    assert info["core"].interface_version == version and info["app"].upstreams == ("core",)
    assert info["core"].manifest == "core/target/manifest.json" and info["ghost"].manifest is None
    assert graph.nodes["model.core.orders"].published
    assert {(e.source, e.target, e.via) for e in graph.cross_edges} == EXPECTED_CROSS
    assert graph.meta["target"] == "local" and graph.meta["registry"].startswith("file://")


def test_load_graph_dates_public_models_from_the_freshness_objects(mesh: Mesh) -> None:
    publish_project(mesh, "core")
    env = mesh.upstream_env("core")
    freshness = {
        "format": 1,
        "project": "core",
        "env": env,
        "nodes": {"model.core.orders": {"built_at": "2026-11-23T10:00:00+00:00", "rows": 12}},
    }
    mesh.registry.write_private("core", env, "freshness", orjson.dumps(freshness))
    mesh.registry.write_private("app", env, "freshness", b"{not json")  # ignored, no crash
    mesh.registry.write_private("loomy", env, "freshness", orjson.dumps(freshness))
    corrupt = next((mesh.root / "registry" / "loomy").rglob("freshness/manifest.json"))
    corrupt.write_bytes(corrupt.read_bytes().replace(b"core", b"cure"))  # checksum mismatch
    graph = load_graph(mesh)
    dated = {uid: n.built_at for uid, n in graph.nodes.items() if n.built_at}
    assert dated == {"model.core.orders": "2026-11-23T10:00:00Z"}
    assert orjson.loads(to_json(graph))["nodes"][0].keys() >= {"built_at"}


def test_run_lineage_writes_all_three_or_prints_one(
    mesh: Mesh, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    said = run_lineage(mesh)
    assert said.startswith("lineage: 4 projects") and "lineage/lineage.html" in said
    for name in ("lineage.json", "lineage.mmd", "lineage.html"):
        assert (mesh.root / "lineage" / name).stat().st_size > 100
    mmd = (mesh.root / "lineage/lineage.mmd").read_text()
    assert mmd.startswith("flowchart LR") and "```" not in mmd
    printed = run_lineage(mesh, "mermaid")
    assert printed.startswith("```mermaid\nflowchart LR") and printed.endswith("```")
    assert orjson.loads(run_lineage(mesh, "json"))["stats"]["projects"] == 4
    run_lineage(mesh, "mermaid", str(tmp_path / "out/summary.md"))
    assert (tmp_path / "out/summary.md").read_text().startswith("```mermaid\n")
    run_lineage(mesh, "html", str(tmp_path / "page.html"))
    assert (tmp_path / "page.html").read_text().startswith("<!DOCTYPE html>")
    run_lineage(mesh, None, str(tmp_path / "folder"))
    assert sorted(p.name for p in (tmp_path / "folder").iterdir()) == [
        "lineage.html",
        "lineage.json",
        "lineage.mmd",
    ]
    with pytest.raises(ConfigError, match="unknown lineage format 'svg'"):
        run_lineage(mesh, "svg")


def test_graph_type_is_exported() -> None:
    assert isinstance(build_graph([]), Graph)
