"""The lineage graph and its three renderings, on synthetic manifests and interfaces."""

from __future__ import annotations

import copy
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import orjson
import pytest

from mesh.config import Mesh, load_mesh
from mesh.errors import ConfigError
from mesh.lineage import (
    MERMAID_MAX_EDGES,
    NODE_H,
    NODE_W,
    Graph,
    ProjectInput,
    build_graph,
    layout,
    load_graph,
    run_lineage,
    to_html,
    to_json,
    to_mermaid,
)
from mesh.manifest import build_interface, extract_interface
from mesh.publish import publish_project
from tests import factories

Json = dict[str, Any]


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


# --- layout and HTML -----------------------------------------------------------------------------


def test_layout_keeps_nodes_inside_their_boxes_without_overlaps() -> None:
    graph = build_graph(inputs())
    lay = layout(graph)
    boxes = list(lay.projects.values())
    for i, (x, y, w, h) in enumerate(boxes):
        for x2, y2, w2, h2 in boxes[i + 1 :]:
            assert x + w <= x2 or x2 + w2 <= x or y + h <= y2 or y2 + h2 <= y
    placed = list(lay.nodes.items())
    for uid, (x, y) in placed:
        bx, by, bw, bh = lay.projects[graph.nodes[uid].project]
        assert bx <= x and x + NODE_W <= bx + bw and by <= y and y + NODE_H <= by + bh
    for i, (_a, (x, y)) in enumerate(placed):
        for _b, (x2, y2) in placed[i + 1 :]:
            assert abs(x - x2) >= NODE_W or abs(y - y2) >= NODE_H
    # upstream project left of its consumers
    assert lay.projects["core"][0] + lay.projects["core"][2] < lay.projects["app"][0]
    assert set(lay.paths) == {(e.source, e.target) for e in graph.edges}
    assert lay.width >= max(x + w for x, _y, w, _h in boxes)


class Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []
        self.script: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))
        self._in = dict(attrs).get("id") if tag == "script" else None

    def handle_data(self, data: str) -> None:
        if self._in == "lineage-data":
            self.script.append(data)


def test_html_is_self_contained_and_tags_every_node_and_edge() -> None:
    docs = inputs()
    assert docs[1].manifest is not None
    docs[1].manifest["nodes"]["model.app.a"]["description"] = "</script><script>alert(1)</script>"
    graph = build_graph(docs, {"target": "local"})
    page = to_html(graph)
    assert re.findall(r"https?://[^\s\"']+", page) == ["http://www.w3.org/2000/svg"]
    for forbidden in ("<link", " src=", "@import", "url(http", "<iframe"):
        assert forbidden not in page
    parser = Elements()
    parser.feed(page)
    assert page.count("</script>") == 2  # the description did not close the data block
    data = orjson.loads("".join(parser.script))
    assert data["stats"]["cross_project_edges"] == len(EXPECTED_CROSS)
    nodes = {
        a["data-node-id"]: a
        for t, a in parser.found
        if t == "g" and "node" in (a.get("class") or "").split()
    }
    assert set(nodes) == set(graph.nodes)
    assert all(nodes[n.id]["data-project"] == n.project for n in graph.nodes.values())
    edges = [a for t, a in parser.found if t == "path" and "data-edge-from" in a]
    assert len(edges) == len(graph.edges)
    cross = {
        (a["data-edge-from"], a["data-edge-to"]) for a in edges if a["data-cross-project"] == "true"
    }
    assert cross == {(a, b) for a, b, _via in EXPECTED_CROSS}
    projects = [
        a["data-project"] for t, a in parser.found if t == "g" and a.get("class") == "project"
    ]
    assert projects == ["core", "app", "loomy"]


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
