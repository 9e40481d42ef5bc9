"""The lineage page of real meshes (the template, and the three-project chain), rendered by
headless Chromium after its script laid it out with ELK; the geometry the page publishes is checked
with `mesh.ui.lineage.drawing_problems`.

Needs Debian's `chromium` (`apt-get install -y chromium`): the test fails, never skips, without it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy
import orjson
import pytest
from PIL import Image

from mesh.consumer.validate import consumers, validate_projects
from mesh.project.config import load_mesh
from mesh.run.pipeline import run_mesh
from mesh.ui.lineage import drawing_problems, write_lineage
from mesh.ui.lineage_graph import Graph, ProjectInput, build_graph, load_graph
from tests import factories
from tests.conftest import REPO

pytestmark = pytest.mark.slow

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
# The page lays itself out asynchronously (ELK runs in a promise): let its timers run first.
SETTLE = "--virtual-time-budget=20000"
CHAIN = REPO / "examples" / "chain"


def chromium() -> str:
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser"):
        found = candidate and shutil.which(candidate)
        if found:
            return found
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    pytest.fail(
        "Chromium is not installed: the lineage page test needs it. "
        "Install it with `apt-get update && apt-get install -y chromium` (Debian) "
        "or set CHROMIUM=/path/to/chromium"
    )


def run_chromium(args: list[str], profile: Path) -> str:
    result = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"chromium exited {result.returncode}: {result.stderr[-2000:]}"
    return result.stdout


class Dom(HTMLParser):
    """Every element's tag and attributes, in document order."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def having(self, tag: str, css_class: str) -> list[dict[str, str]]:
        return [a for t, a in self.elements if t == tag and css_class in a.get("class", "").split()]

    def body(self) -> dict[str, str]:
        return next(a for t, a in self.elements if t == "body")


class Texts(HTMLParser):
    """The text of every SVG `<text>` by the node or project around it (a wrapped text: its
    `aria-label`, the whole text), and how many lines each wrapped text takes."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.owner = ""
        self.found: list[tuple[str, str, str]] = []  # (owner, class, text)
        self.lines: dict[str, int] = {}  # owner -> lines of its wrapped text
        self._label: str | None = None
        self._open = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "g" and ("data-node-id" in a or "data-project" in a):
            self.owner = a.get("data-node-id") or a["data-project"]
        if tag == "text":
            self._open = True
            self._label = a.get("aria-label")
            self.found.append((self.owner, a.get("class", ""), self._label or ""))
        if tag == "tspan":
            self.lines[self.owner] = self.lines.get(self.owner, 0) + 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "text":
            self._open = False

    def handle_data(self, data: str) -> None:
        if self._open and self._label is None:
            owner, cls, text = self.found[-1]
            self.found[-1] = (owner, cls, text + data)


def geometry_of(dom: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="lineage-geometry">(.*?)</script>', dom)
    assert found, "the page published no geometry: its layout did not run"
    geometry: dict[str, Any] = orjson.loads(found.group(1))
    return geometry


@pytest.fixture(scope="module")
def page(built_template: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Graph, Path]:
    mesh = load_mesh(built_template, "local")
    out = tmp_path_factory.mktemp("lineage")
    graph = load_graph(mesh)
    return graph, write_lineage(graph, out)["html"]


def test_invoke_mesh_wrote_the_lineage_picture(built_template: Path) -> None:
    for name in ("lineage.html", "lineage.json", "lineage.mmd"):
        assert (built_template / "lineage" / name).stat().st_size > 1000


def test_rendered_page_draws_every_project_node_and_cross_project_edge(
    built_template: Path, page: tuple[Graph, Path], tmp_path: Path
) -> None:
    graph, html_path = page
    mesh = load_mesh(built_template, "local")
    text = run_chromium([SETTLE, "--dump-dom", html_path.as_uri()], tmp_path / "profile")
    dom = Dom(text)
    assert drawing_problems(geometry_of(text), graph) == []

    body = dom.body()
    assert body.get("data-ready") == "true", "the page script did not finish"
    assert body["data-rendered-nodes"] == str(len(graph.nodes))

    projects = {a["data-project"] for a in dom.having("g", "project")}
    assert projects == set(mesh.config.projects)

    nodes = {a["data-node-id"]: a for a in dom.having("g", "node")}
    assert set(nodes) == set(graph.nodes)
    assert all(nodes[uid]["data-project"] == n.project for uid, n in graph.nodes.items())
    public = {uid for uid, a in nodes.items() if a["data-public"] == "true"}
    assert "model.dbt_up.public_orders" in public and "model.dbt_up.stg_orders" not in public

    edges = dom.having("path", "edge")
    assert len(edges) == len(graph.edges)
    for edge in edges:
        assert edge["data-edge-from"] in nodes and edge["data-edge-to"] in nodes
        assert edge["d"].startswith("M")
    drawn = {(e["data-edge-from"], e["data-edge-to"]): e["data-cross-project"] for e in edges}

    # The picture leaves tests out (README): a consumer's test across the boundary is validated,
    # not drawn.
    validated = [
        e for r in validate_projects(mesh, consumers(mesh)) for e in r.edges
        if not e.node.startswith("test.")
    ]
    assert validated, "the template mesh should have cross-project edges"
    for edge in validated:
        assert (edge.upstream_node, edge.node) in drawn, f"not drawn: {edge}"
    # dbt-loom also lists the upstream's own public-to-public edges in the consumer's manifest;
    # those are drawn inside the upstream project, every other validated edge crosses projects.
    expected = {
        (e.upstream_node, e.node) for e in validated if graph.nodes[e.node].project == e.consumer
    }
    assert {pair for pair, cross in drawn.items() if cross == "true"} == expected
    assert {e.consumer for e in validated} == {"dbt_down", "dbt_down_loom"}
    vias = {e["data-via"] for e in edges if e["data-cross-project"] == "true"}
    assert vias == {"ref", "source"}


def test_clicking_through_a_link_highlights_one_lineage(
    page: tuple[Graph, Path], tmp_path: Path
) -> None:
    _graph, html_path = page
    url = html_path.as_uri() + "#node=model.dbt_up.public_orders"
    dom = Dom(run_chromium([SETTLE, "--dump-dom", url], tmp_path / "profile"))
    nodes = {a["data-node-id"]: a["class"].split() for a in dom.having("g", "node")}
    assert "selected" in nodes["model.dbt_up.public_orders"]
    for kept in (
        "model.dbt_up.stg_orders",
        "model.dbt_down.stg_orders",
        "model.dbt_down_loom.stg_orders",
    ):
        assert "dim" not in nodes[kept], kept
    assert "dim" in nodes["model.dbt_down.customer_mailing_list"]


# --- the three-project chain: core -> marketing -> finance, and core -> finance ----------------


@pytest.fixture(scope="module")
def chain_page(tmp_path_factory: pytest.TempPathFactory) -> tuple[Graph, Path]:
    """The chain example built with real dbt, its core models dated, and its lineage page."""
    root = tmp_path_factory.mktemp("chain") / "mesh"
    shutil.copytree(
        CHAIN,
        root,
        ignore=shutil.ignore_patterns(
            "target", "logs", ".mesh", "dbt_packages", "warehouse", "registry", "lineage"
        ),
    )
    mesh = load_mesh(root, "local")
    run_mesh(mesh, say=lambda _msg: None)
    env = mesh.upstream_env("core")
    built = (datetime.now(UTC) - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    freshness = {
        "format": 1,
        "project": "core",
        "env": env,
        "nodes": {"model.core.customers": {"built_at": built}},
    }
    mesh.registry.write_private("core", env, "freshness", orjson.dumps(freshness))
    graph = load_graph(mesh)
    return graph, write_lineage(graph, tmp_path_factory.mktemp("chain_lineage"))["html"]


def test_chain_page_draws_everything_without_crossings_or_clipping(
    chain_page: tuple[Graph, Path], tmp_path: Path
) -> None:
    graph, html_path = chain_page
    assert [p.name for p in graph.projects] == ["core", "marketing", "finance"]
    jump = ("core", "finance")
    assert any(
        (graph.nodes[e.source].project, graph.nodes[e.target].project) == jump
        for e in graph.cross_edges
    ), "the chain should have an edge from core straight to finance"
    dom = run_chromium([SETTLE, "--dump-dom", html_path.as_uri()], tmp_path / "profile")
    assert Dom(dom).body().get("data-ready") == "true"
    geometry = geometry_of(dom)
    assert drawing_problems(geometry, graph) == []

    boxes = {p["name"]: p["box"] for p in geometry["projects"]}
    assert boxes["core"][0] + boxes["core"][2] < boxes["marketing"][0]  # upstreams to the left
    assert boxes["marketing"][0] + boxes["marketing"][2] < boxes["finance"][0]
    # every cross-project edge carries its label, drawn on the page
    labels = {(e["from"], e["to"]): e["label"] for e in geometry["edges"] if e["cross_project"]}
    assert {(a, b, (lab or {}).get("text")) for (a, b), lab in labels.items()} == {
        (e.source, e.target, e.via) for e in graph.cross_edges
    }
    texts = Texts(dom).found
    drawn_labels = sorted(t for _o, c, t in texts if c == "edge-label-text")
    assert drawn_labels == sorted(str(e.via) for e in graph.cross_edges)
    # project subtitles whole (wrapped, never cut); the dated model shows its age
    subtitles = {o: t for o, c, t in texts if c == "project-meta"}
    finance_nodes = sum(n.project == "finance" for n in graph.nodes.values())
    assert subtitles["finance"] == f"{finance_nodes} nodes · reads core, marketing"
    assert all("\u2026" not in t for _o, _c, t in texts)
    ages = {o: t for o, c, t in texts if c == "node-age"}
    # core's record was rewritten to three hours ago (only customers); marketing's was recorded by
    # its own build just now; private models have no age.
    assert ages["model.core.customers"] == "built 3 h ago" and "model.core.orders" not in ages
    assert {uid for uid in ages if uid.startswith("model.marketing.")} == {
        uid for uid, n in graph.nodes.items() if n.project == "marketing" and n.public
    }
    assert all(ages[uid] == "built just now" for uid in ages if uid.startswith("model.marketing."))


def test_chain_screenshot(chain_page: tuple[Graph, Path], tmp_path: Path) -> None:
    _graph, html_path = chain_page
    shot = tmp_path / "lineage-chain.png"
    run_chromium(
        [SETTLE, "--window-size=1600,640", f"--screenshot={shot}", html_path.as_uri()],
        tmp_path / "profile",
    )
    with Image.open(shot) as image:
        assert image.size == (1600, 640)
        rgb = numpy.asarray(image.convert("RGB")).astype(int)
    # the thick orange cross-project edges (#e8590c) are on the screen, after layout
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    orange = int(((red > 200) & (green > 70) & (green < 110) & (blue < 40)).sum())
    assert orange > 2000, f"only {orange} pixels of cross-project edges drawn"
    print(f"screenshot: {shot} ({orange} orange pixels)")


def test_awkward_mesh_page_is_sound(tmp_path: Path) -> None:
    """No dbt needed: long names and subtitles, an empty consumer known only from its declared
    upstreams, a parent from a project outside mesh.yml, versions, ages, a diamond of projects."""
    long = "a_model_name_much_longer_than_any_box_of_a_fixed_width_would_ever_hold"
    core = factories.producer()
    core["nodes"]["model.core.orders"]["name"] = long
    left = factories.manifest(
        "left", [factories.model("left", "l", depends_on=["model.core.orders", "model.zeta.y"])]
    )
    right = factories.manifest(
        "right",
        [factories.model("right", "r", access="protected", depends_on=["model.core.customers.v2"])],
    )
    last = factories.manifest(
        "last",
        [
            factories.model(
                "last", "z", depends_on=["model.left.l", "model.right.r", "model.core.revenue"]
            )
        ],
    )
    upstreams = ("core", "left", "right", *(f"some_other_project_number_{i}" for i in range(6)))
    graph = build_graph(
        [
            ProjectInput(
                "core", manifest=core, built_at={"model.core.revenue": "2026-01-01T00:00:00Z"}
            ),
            ProjectInput("left", ("core",), manifest=left),
            ProjectInput("right", ("core",), manifest=right),
            ProjectInput("last", upstreams, manifest=last),
            ProjectInput("unbuilt", ("last",)),
        ]
    )
    page = write_lineage(graph, tmp_path, ["html"])["html"]
    dom = run_chromium([SETTLE, "--dump-dom", page.as_uri()], tmp_path / "profile")
    geometry = geometry_of(dom)
    assert drawing_problems(geometry, graph) == []
    x = {p["name"]: p["box"][0] for p in geometry["projects"]}
    assert x["core"] < x["left"] < x["last"] < x["unbuilt"] and x["right"] < x["last"]
    assert x["zeta"] < x["left"]
    texts = Texts(dom).found
    assert ("model.core.orders", "node-name", long) in texts
    parsed = Texts(dom)
    meta = {o: t for o, c, t in parsed.found if c == "project-meta"}
    assert meta["last"] == "1 nodes · reads " + ", ".join(upstreams) + " · no local build"
    assert parsed.lines["last"] > 1 and parsed.lines["core"] == 1  # wrapped, not cut
    assert {o for o, c, _t in texts if c == "node-age"} == {"model.core.revenue"}


def test_screenshot_renders(page: tuple[Graph, Path], tmp_path: Path) -> None:
    _graph, html_path = page
    shot = tmp_path / "lineage.png"
    run_chromium(
        [SETTLE, "--window-size=1600,720", f"--screenshot={shot}", html_path.as_uri()],
        tmp_path / "profile",
    )
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


XSS = "</script><script>document.title='XSS_SCRIPT'</script>"


class Scripts(HTMLParser):
    """Every script element as a browser splits the page: (type, text)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []
        self._open = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.found.append((dict(attrs).get("type") or "", ""))
            self._open = True

    def handle_data(self, data: str) -> None:
        if self._open:
            kind, text = self.found[-1]
            self.found[-1] = (kind, text + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._open = False


def page_title(dom: str) -> str:
    found = re.search(r"<head>.*?<title>(.*?)</title>", dom, re.DOTALL)
    assert found, "no title in the page's head"
    return found.group(1)


def test_a_page_saved_after_rendering_runs_no_script_from_a_node_name(tmp_path: Path) -> None:
    """The page escapes what it draws, and the geometry its script publishes escapes `<`, `>`,
    `&` and the line separators: saved with --dump-dom and opened again, it runs nothing that a
    node name or description carries."""
    core = factories.producer()
    orders = core["nodes"]["model.core.orders"]
    orders["name"] = f"orders{XSS}"
    orders["description"] = f"<img src=x onerror=\"document.title='XSS_IMG'\"> & \u2028 {XSS}"
    graph = build_graph([ProjectInput("core", manifest=core)])
    page = write_lineage(graph, tmp_path, ["html"])["html"]
    rendered = run_chromium([SETTLE, "--dump-dom", page.as_uri()], tmp_path / "profile")
    assert any(t == f"orders{XSS}" for _o, _c, t in Texts(rendered).found)  # drawn as text
    geometry = geometry_of(rendered)
    assert any(t.get("text") == f"orders{XSS}" for t in geometry["texts"])  # published, intact
    saved = tmp_path / "saved.html"
    saved.write_text(rendered)
    reopened = run_chromium([SETTLE, "--dump-dom", saved.as_uri()], tmp_path / "profile2")
    title = page_title(reopened)
    assert "XSS" not in title and title == page_title(rendered)
    executable = [text for kind, text in Scripts(reopened).found if kind != "application/json"]
    assert not any("XSS_SCRIPT" in text for text in executable)
    assert 'data-ready="true"' in reopened  # the saved page still lays itself out
    # Control: the same saved page with the geometry written as plain JSON.stringify wrote it
    # before: reopening it runs the node name's script.
    unescaped = rendered.replace(
        re.search(r'id="lineage-geometry">(.*?)</script>', rendered).group(1),  # type: ignore[union-attr]
        orjson.dumps(geometry).decode(),
    )
    control = tmp_path / "control.html"
    control.write_text(unescaped)
    hijacked = run_chromium([SETTLE, "--dump-dom", control.as_uri()], tmp_path / "profile3")
    assert page_title(hijacked) == "XSS_SCRIPT"
