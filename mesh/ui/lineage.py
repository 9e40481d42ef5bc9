"""The lineage picture: every project's nodes in one graph, and the cross-project edges.

Built from what the mesh already has, no warehouse needed:
- each project's local `target/manifest.json` (its models, seeds, snapshots and ordinary sources,
  and the edges between them; tests are left out);
- each project's published interface in the registry (the env consumers read it from): marks which
  public models are published, and stands in for a project that has no local build;
- each project's private `freshness` object in the registry, when there is one: when each public
  model's data was last built (shown as its age).

Cross-project edges are found the way `mesh.consumer.validate` validates them: a consumer node whose parent is
`model.<upstream>.*` (dbt-loom) or a generated source `source.<consumer>.<upstream>.<table>` (mapped
back to the upstream model through the source's `meta.mesh.unique_id`). Generated sources are folded
into their edge, so an edge reads "upstream public model -> consumer node" in every format.

Rendered as JSON (for tools), Mermaid (GitHub PRs and job summaries) and a self-contained HTML page
(works offline: inline CSS and JS, nothing fetched) that lays itself out in the browser with ELK,
the Eclipse Layout Kernel (elkjs, vendored under mesh/assets/ and inlined), from its measured text.
The page publishes what it drew (`#lineage-geometry`); `drawing_problems` checks it.
"""

from __future__ import annotations

import html
import itertools
import re
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from mesh.core.errors import ConfigError
from mesh.project.artifacts import Json
from mesh.project.config import Mesh
from mesh.ui.lineage_graph import Edge, Graph, Node, ProjectInfo, _shown, load_graph

FORMATS = ("json", "mermaid", "html")
FILE_NAMES = {"json": "lineage.json", "mermaid": "lineage.mmd", "html": "lineage.html"}
OUTPUT_DIR = "lineage"
# Node kinds drawn from a manifest's `nodes` (sources come from its `sources`).
# GitHub renders Mermaid with the library defaults, which a diagram cannot raise.
MERMAID_MAX_EDGES = 500
MERMAID_MAX_TEXT = 50_000


# --- JSON ----------------------------------------------------------------------------------------


def to_json(graph: Graph) -> bytes:
    return orjson.dumps(graph.to_json(), option=orjson.OPT_INDENT_2) + b"\n"


# --- Mermaid -------------------------------------------------------------------------------------

_MERMAID_ID_RE = re.compile(r"[^A-Za-z0-9_]")
_MERMAID_SHAPES = {
    "model": ('["', '"]'),
    "seed": ('[("', '")]'),
    "snapshot": ('[["', '"]]'),
    "source": ('[/"', '"/]'),
    "exposure": ('>"', '"]'),
}
_MERMAID_CLASSES = (
    "classDef public fill:#e6fcf5,stroke:#0ca678,stroke-width:2px,color:#063",
    "classDef protected fill:#fff9db,stroke:#f08c00,color:#5c3c00",
    "classDef private fill:#f8f9fa,stroke:#868e96,color:#212529",
    "classDef reference fill:#fff,stroke:#adb5bd,stroke-dasharray:4 3,color:#495057",
    "classDef unread fill:#fff,stroke:#ced4da,stroke-dasharray:2 3,color:#868e96",
    "classDef exposure fill:#fff0f6,stroke:#d6336c,color:#5c0f2e",
)
CROSS_LINK_STYLE = "stroke:#e8590c,stroke-width:3px"


def _mermaid_label(text: str) -> str:
    """Text safe inside a quoted Mermaid label (entity codes for the characters that break it)."""
    out = text.replace("#", "#35;").replace('"', "#quot;").replace("<", "#lt;")
    return out.replace(">", "#gt;").replace("\n", " ")


class _Ids:
    """Mermaid-safe, unique ids: letters, digits and underscores, with a prefix per kind."""

    def __init__(self) -> None:
        self._ids: dict[tuple[str, str], str] = {}
        self._used: set[str] = set()

    def __call__(self, key: str, prefix: str) -> str:
        if (prefix, key) not in self._ids:
            base = f"{prefix}_{_MERMAID_ID_RE.sub('_', key)}"
            candidate, n = base, 1
            while candidate in self._used:
                n += 1
                candidate = f"{base}_{n}"
            self._used.add(candidate)
            self._ids[(prefix, key)] = candidate
        return self._ids[(prefix, key)]


def _mermaid_class(node: Node) -> str:
    if node.origin == "reference":
        return "reference"
    if node.unread:
        return "unread"
    if node.resource_type == "exposure":
        return "exposure"
    if node.access in ("public", "protected"):
        return node.access
    return "private"


def _mermaid_text(node: Node) -> str:
    if node.owner:
        return f"{node.label} ({node.owner})"
    return f"{node.label} (read by no node)" if node.unread else node.label


def to_mermaid(graph: Graph, fenced: bool = False) -> str:
    """A `flowchart LR`: one subgraph per project, cross-project edges thick and coloured.

    A graph too big for GitHub's renderer is drawn smaller: first only the nodes on cross-project
    edges, then one box per project; a comment says what was left out.
    """
    text = _mermaid(graph, graph.nodes.keys(), graph.edges, "")
    if len(graph.edges) > MERMAID_MAX_EDGES or len(text) > MERMAID_MAX_TEXT:
        cross = graph.cross_edges
        keep = {e.source for e in cross} | {e.target for e in cross}
        note = (
            f"only the {len(keep)} nodes on cross-project edges of {len(graph.nodes)}: "
            "see lineage.html or lineage.json for all"
        )
        text = _mermaid(graph, [n for n in graph.nodes if n in keep], cross, note)
        if len(cross) > MERMAID_MAX_EDGES or len(text) > MERMAID_MAX_TEXT:
            text = _mermaid_projects(graph)
    return f"```mermaid\n{text}```\n" if fenced else text


def _mermaid(graph: Graph, keep: Iterable[str], edges: Sequence[Edge], note: str) -> str:
    ids = _Ids()
    kept = set(keep)
    lines = ["flowchart LR"]
    meta = graph.meta
    if meta:
        lines.append(
            f"%% dbt mesh lineage: target {meta.get('target')}, env {meta.get('env')}, "
            f"{graph.summary()}"
        )
    if note:
        lines.append(f"%% {note}")
    for project in graph.projects:
        pid = ids(project.name, "p")
        title = project.name + ("" if project.in_mesh else " (not in mesh.yml)")
        lines.append(f'  subgraph {pid}["{_mermaid_label(title)}"]')
        members = [n for n in graph.project_nodes(project.name) if n.id in kept]
        for node in members:
            opening, closing = _MERMAID_SHAPES.get(node.resource_type, _MERMAID_SHAPES["model"])
            label = _mermaid_label(_mermaid_text(node))
            lines.append(
                f"    {ids(node.id, 'n')}{opening}{label}{closing}:::{_mermaid_class(node)}"
            )
        if not members:
            empty = "no manifest or published interface"
            lines.append(f'    {ids(project.name, "empty")}["{empty}"]:::reference')
        lines.append("  end")
    local = [e for e in edges if not e.cross_project]
    cross = [e for e in edges if e.cross_project]
    for edge in local:
        lines.append(f"  {ids(edge.source, 'n')} --> {ids(edge.target, 'n')}")
    for edge in cross:
        via = f"|{edge.via}|" if edge.via else ""
        lines.append(f"  {ids(edge.source, 'n')} ==>{via} {ids(edge.target, 'n')}")
    if cross:
        indexes = ",".join(str(i) for i in range(len(local), len(local) + len(cross)))
        lines.append(f"  linkStyle {indexes} {CROSS_LINK_STYLE}")
    lines += [f"  {line}" for line in _MERMAID_CLASSES]
    return "\n".join(lines) + "\n"


def _mermaid_projects(graph: Graph) -> str:
    """One box per project, one thick edge per pair of projects with the number of edges."""
    ids = _Ids()
    lines = ["flowchart LR", f"%% dbt mesh lineage, projects only: {graph.summary()}"]
    counts: dict[str, int] = {}
    for node in graph.nodes.values():
        counts[node.project] = counts.get(node.project, 0) + 1
    for project in graph.projects:
        label = _mermaid_label(f"{project.name} ({counts.get(project.name, 0)} nodes)")
        lines.append(f'  {ids(project.name, "p")}["{label}"]')
    pairs: dict[tuple[str, str], int] = {}
    for edge in graph.cross_edges:
        key = (graph.nodes[edge.source].project, graph.nodes[edge.target].project)
        pairs[key] = pairs.get(key, 0) + 1
    for (up, down), n in pairs.items():
        lines.append(f"  {ids(up, 'p')} ==>|{n} edges| {ids(down, 'p')}")
    if pairs:
        lines.append(
            f"  linkStyle {','.join(str(i) for i in range(len(pairs)))} {CROSS_LINK_STYLE}"
        )
    return "\n".join(lines) + "\n"


# --- HTML ----------------------------------------------------------------------------------------

# The page lays itself out in the browser with ELK (elkjs, EPL-2.0), vendored under mesh/assets/
# and inlined: see mesh/assets/README.md for how it is pinned and updated.
ELKJS_VERSION = "0.12.1"
ELKJS_SHA256 = "b1032b7cfd2a57c54c6f0e8369d7665e19a579954f7cd20a6dae28f1912ea0d7"
_SCRIPT_END_RE = re.compile(r"</(script)", re.IGNORECASE)


def _asset(name: str) -> str:
    return (resources.files("mesh.ui") / "assets" / name).read_text(encoding="utf-8")


def _inline_script(code: str) -> str:
    """`code` safe inside an inline `<script>`: nothing in it can close the element."""
    return _SCRIPT_END_RE.sub(r"<\\/\1", code)


_SCRIPT_JSON_ESCAPES = {
    ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026",
    0x2028: "\\u2028", 0x2029: "\\u2029",
}


def script_json(value: object) -> str:
    """JSON for the text of a `<script type="application/json">`: `<`, `>`, `&` and the line
    separators escaped, so nothing in the data can end the element or start markup (the page
    script publishes its geometry the same way)."""
    return orjson.dumps(value).decode().translate(_SCRIPT_JSON_ESCAPES)


def _attr(value: object) -> str:
    return html.escape(str(value), quote=True)


def _node_svg(node: Node) -> str:
    """A node as the page script finds it: text and data attributes; the script sizes and
    places it (from the measured text) once ELK has laid the graph out."""
    classes = ["node", f"type-{node.resource_type}", f"origin-{node.origin}"]
    if node.access:
        classes.append(f"access-{node.access}")
    if node.public:
        classes.append("public")
    if node.published:
        classes.append("published")
    if node.unread:
        classes.append("unread")
    facts = [node.resource_type, node.access or "", "published" if node.published else ""]
    if node.resource_type == "exposure":
        facts = [node.materialized or "exposure", f"owner {node.owner}" if node.owner else ""]
    if node.unread:
        facts.append("read by no node")
    if node.origin == "reference":
        facts.append("not in any manifest or interface")
    meta_line = " \u00b7 ".join(f for f in facts if f)
    title = f"{node.id}\n{meta_line}"
    if node.built_at:
        title += f"\nbuilt {node.built_at}"
    if node.description:
        title += f"\n{node.description}"
    age = (
        f'<text class="node-age" data-built-at="{_attr(node.built_at)}">'
        f"built {html.escape(node.built_at)}</text>"
        if node.built_at
        else ""
    )
    badge = (
        '<g class="badge"><rect class="badge-box"/><text class="badge-text">public</text></g>'
        if node.public
        else ""
    )
    return (
        f'<g class="{" ".join(classes)}" data-node-id="{_attr(node.id)}" '
        f'data-project="{_attr(node.project)}" data-resource-type="{_attr(node.resource_type)}" '
        f'data-access="{_attr(node.access or "")}" data-public="{str(node.public).lower()}" '
        f'data-published="{str(node.published).lower()}" '
        f'data-version="{_attr(node.version or "")}" '
        f'data-built-at="{_attr(node.built_at or "")}" tabindex="0">'
        f"<title>{html.escape(title)}</title>"
        '<rect class="node-box" rx="7"/>'
        f'<text class="node-name">{html.escape(node.label)}</text>'
        f'<text class="node-meta">{html.escape(meta_line)}</text>'
        f"{age}{badge}</g>"
    )


def _project_svg(project: ProjectInfo, count: int) -> str:
    facts = [f"{count} nodes"]
    if project.interface_version:
        facts.append(f"published {project.interface_version}")
    if project.upstreams:
        facts.append("reads " + ", ".join(project.upstreams))
    if not project.in_mesh:
        facts.append("not in mesh.yml")
    elif project.manifest is None:
        facts.append("no local build")
    empty = (
        '<text class="project-empty">no manifest or published interface</text>' if not count else ""
    )
    return (
        f'<g class="project{"" if project.in_mesh else " outside"}" '
        f'data-project="{_attr(project.name)}" data-in-mesh="{str(project.in_mesh).lower()}">'
        '<rect class="project-box" rx="12"/>'
        f'<text class="project-name">{html.escape(project.name)}</text>'
        f'<text class="project-meta">{html.escape(" · ".join(facts))}</text>{empty}</g>'
    )


def _svg(graph: Graph) -> str:
    """The picture's elements, every node and edge with its data attributes, not yet placed."""
    counts = {p.name: len(graph.project_nodes(p.name)) for p in graph.projects}
    parts = [
        '<svg id="lineage-svg" class="laying-out" xmlns="http://www.w3.org/2000/svg" '
        'width="0" height="0" role="img" aria-label="cross-project lineage">',
        "<defs>"
        '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'class="arrow-local"/></marker>'
        '<marker id="arrow-cross" viewBox="0 0 10 10" refX="8" refY="5" markerWidth="4" '
        'markerHeight="4" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'class="arrow-cross"/></marker></defs>',
        '<g class="projects">',
        *(_project_svg(p, counts[p.name]) for p in graph.projects),
        '</g><g class="edges">',
    ]
    ordered = sorted(graph.edges, key=lambda e: e.cross_project)  # cross-project edges on top
    for edge in ordered:
        kind = "cross" if edge.cross_project else "local"
        via = f" (cross-project, via {edge.via})" if edge.via else ""
        parts.append(
            f'<path class="edge {kind}" data-edge-from="{_attr(edge.source)}" '
            f'data-edge-to="{_attr(edge.target)}" '
            f'data-cross-project="{str(edge.cross_project).lower()}" '
            f'data-via="{_attr(edge.via or "")}" '
            f'marker-end="url(#{"arrow-cross" if edge.cross_project else "arrow"})">'
            f"<title>{html.escape(edge.source)} \u2192 {html.escape(edge.target)}{via}</title>"
            "</path>"
        )
    parts.append('</g><g class="edge-labels">')
    for edge in ordered:
        if edge.cross_project and edge.via:
            parts.append(
                f'<g class="edge-label" data-edge-from="{_attr(edge.source)}" '
                f'data-edge-to="{_attr(edge.target)}" data-via="{_attr(edge.via)}">'
                '<rect class="edge-label-box"/>'
                f'<text class="edge-label-text">{html.escape(edge.via)}</text></g>'
            )
    parts.append('</g><g class="nodes">')
    parts += [_node_svg(node) for node in graph.nodes.values()]
    parts.append("</g></svg>")
    return "".join(parts)


def to_html(graph: Graph) -> str:
    """A self-contained page: inline CSS, the SVG elements, the graph as JSON, ELK and the page
    script, which lays the picture out in the browser (nothing is fetched; works offline)."""
    data = script_json(graph.to_json())
    meta = graph.meta
    facts = [f"{k} {meta[k]}" for k in ("target", "env", "registry", "generated_at") if meta.get(k)]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>dbt mesh lineage</title>"
        f"<style>{_asset('lineage.css')}</style></head><body>"
        "<header><h1>dbt mesh lineage</h1>"
        f'<div class="meta">{html.escape(graph.summary())}'
        f"{' · ' + html.escape(' · '.join(facts)) if facts else ''}</div>"
        '<div class="bar"><input id="search" type="search" placeholder="find a node…" '
        'aria-label="find a node"><button id="zoom" type="button">actual size</button>'
        '<span class="key"><span class="swatch cross"></span>cross-project edge: '
        '<span class="tag">ref</span> dbt-loom, <span class="tag">source</span> '
        "generated source</span>"
        '<span class="key"><span class="swatch"></span>edge inside a project</span>'
        '<span class="key"><span class="chip"></span>public model</span>'
        '<span class="key"><span class="chip dashed"></span>known only as a parent or '
        "read by no node</span>"
        '<span class="key"><span class="chip exposure"></span>exposure (who reads it)</span>'
        '<span class="key">click a node for its lineage, Esc to clear</span></div></header>'
        '<p id="status">Laying out the picture (this page needs JavaScript)…</p>'
        '<p id="problem" hidden></p>'
        f"<main>{_svg(graph)}</main>"
        '<div id="details" hidden></div>'
        f'<script type="application/json" id="lineage-data">{data}</script>'
        f"<script>/* elkjs {ELKJS_VERSION}, EPL-2.0 */\n"
        f"{_inline_script(_asset('elk.bundled.js'))}</script>"
        f"<script>{_inline_script(_asset('lineage.js'))}</script></body></html>\n"
    )


# --- checking a drawn page ---------------------------------------------------------------------

Box = tuple[float, float, float, float]  # x, y, width, height in SVG user units
_EPS = 0.5  # touching a border is not crossing it; half a unit absorbs rounding


def _box(value: Any) -> Box:
    x, y, w, h = (float(v) for v in value)
    return (x, y, w, h)


def _inside(inner: Box, outer: Box, tolerance: float = _EPS) -> bool:
    return (
        inner[0] >= outer[0] - tolerance
        and inner[1] >= outer[1] - tolerance
        and inner[0] + inner[2] <= outer[0] + outer[2] + tolerance
        and inner[1] + inner[3] <= outer[1] + outer[3] + tolerance
    )


def _overlap(a: Box, b: Box) -> bool:
    """The interiors of `a` and `b` share more than a border."""
    return (
        a[0] < b[0] + b[2] - _EPS
        and b[0] < a[0] + a[2] - _EPS
        and a[1] < b[1] + b[3] - _EPS
        and b[1] < a[1] + a[3] - _EPS
    )


def segment_crosses(p: tuple[float, float], q: tuple[float, float], box: Box) -> bool:
    """Whether the segment p-q runs through the interior of `box` (Liang-Barsky clipping against
    the box shrunk by half a unit: running along or touching a border does not count)."""
    left, top = box[0] + _EPS, box[1] + _EPS
    right, bottom = box[0] + box[2] - _EPS, box[1] + box[3] - _EPS
    if left >= right or top >= bottom:
        return False
    dx, dy = q[0] - p[0], q[1] - p[1]
    t0, t1 = 0.0, 1.0
    for pk, qk in ((-dx, p[0] - left), (dx, right - p[0]), (-dy, p[1] - top), (dy, bottom - p[1])):
        if pk == 0:
            if qk <= 0:
                return False
            continue
        t = qk / pk
        if pk < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 >= t1:
            return False
    return True


def drawing_problems(geometry: Json, graph: Graph) -> list[str]:
    """What is wrong with a drawn lineage page, from the geometry its script publishes after layout
    (`<script id="lineage-geometry">`: project and node boxes, edge polylines and labels, the box
    of every text and the box it must fit in). Empty when the picture is sound: every project,
    node and edge of `graph` drawn once; nodes inside their project, none overlapping; no edge
    running through a node it does not end at, nor through a project holding neither of its ends;
    no edge label over a node; no text wider or taller than its box."""
    problems: list[str] = []
    projects = {p["name"]: _box(p["box"]) for p in geometry.get("projects", [])}
    nodes = {n["id"]: _box(n["box"]) for n in geometry.get("nodes", [])}
    project_of = {n["id"]: n["project"] for n in geometry.get("nodes", [])}
    if len(nodes) != len(geometry.get("nodes", [])):
        problems.append("a node is drawn twice")
    for name in sorted({p.name for p in graph.projects} ^ projects.keys()):
        problems.append(
            f"project {name} is {'missing' if name not in projects else 'not in the graph'}"
        )
    for uid in sorted(graph.nodes.keys() ^ nodes.keys()):
        problems.append(f"node {uid} is {'missing' if uid not in nodes else 'not in the graph'}")
    drawn = [(e["from"], e["to"]) for e in geometry.get("edges", [])]
    wanted = [(e.source, e.target) for e in graph.edges]
    for a, b in sorted(set(wanted) - set(drawn)):
        problems.append(f"edge {a} -> {b} is missing")
    for a, b in sorted({pair for pair in drawn if drawn.count(pair) > 1 or pair not in wanted}):
        problems.append(f"edge {a} -> {b} is drawn {drawn.count((a, b))} times, wanted once")

    for uid, box in nodes.items():
        home = projects.get(project_of[uid])
        if home is None or not _inside(box, home):
            problems.append(f"node {uid} sticks out of its project {project_of[uid]}")
    ids = sorted(nodes)
    for i, a in enumerate(ids):
        problems += [
            f"nodes {a} and {b} overlap" for b in ids[i + 1 :] if _overlap(nodes[a], nodes[b])
        ]
    names = sorted(projects)
    for i, a in enumerate(names):
        problems += [
            f"projects {a} and {b} overlap"
            for b in names[i + 1 :]
            if _overlap(projects[a], projects[b])
        ]

    for edge in geometry.get("edges", []):
        a, b = edge["from"], edge["to"]
        if a not in nodes or b not in nodes:
            continue
        points = [(float(x), float(y)) for x, y in edge.get("points", [])]
        name = f"edge {a} -> {b}"
        if len(points) < 2:
            problems.append(f"{name} has no line")
            continue
        grow = 1.0
        if not _inside((*points[0], 0.0, 0.0), nodes[a], grow):
            problems.append(f"{name} does not start at {a}")
        if not _inside((*points[-1], 0.0, 0.0), nodes[b], grow):
            problems.append(f"{name} does not end at {b}")
        ends = {project_of[a], project_of[b]}
        crossed: set[str] = set()
        for p, q in itertools.pairwise(points):
            crossed |= {
                f"node {uid}"
                for uid, box in nodes.items()
                if uid not in (a, b) and segment_crosses(p, q, box)
            }
            crossed |= {
                f"project {project}"
                for project, box in projects.items()
                if project not in ends and segment_crosses(p, q, box)
            }
        problems += [f"{name} runs through {what}" for what in sorted(crossed)]
        label = edge.get("label")
        if label:
            lbox = _box(label["box"])
            over = [uid for uid, box in nodes.items() if _overlap(lbox, box)]
            over += [p for p, box in projects.items() if p not in ends and _overlap(lbox, box)]
            problems += [f"the label of {name} covers {what}" for what in sorted(over)]

    for text in geometry.get("texts", []):
        if not _inside(_box(text["box"]), _box(text["within"])):
            problems.append(f"text {text['text']!r} of {text['owner']} is clipped by its box")
    return problems


# --- writing -------------------------------------------------------------------------------------


def render(graph: Graph, fmt: str) -> bytes:
    if fmt == "json":
        return to_json(graph)
    if fmt == "mermaid":
        return to_mermaid(graph).encode()
    if fmt == "html":
        return to_html(graph).encode()
    raise ConfigError(f"unknown lineage format {fmt!r}: use {', '.join(FORMATS)}")


def write_lineage(graph: Graph, folder: Path, formats: Sequence[str] = FORMATS) -> dict[str, Path]:
    """Write `lineage.{json,mmd,html}` into `folder`; return the paths by format."""
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for fmt in formats:
        path = folder / FILE_NAMES[fmt]
        body = render(graph, fmt)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(body)
        tmp.replace(path)
        written[fmt] = path
    return written




def run_lineage(mesh: Mesh, fmt: str | None = None, output: str | None = None) -> str:
    """What `invoke lineage` prints.

    No format: all three files into `output` (a folder, default `lineage/` at the mesh root).
    A format: into the file `output`; without one, Mermaid (fenced, for Markdown) and JSON go to
    stdout and HTML to `lineage/lineage.html`. A `.md` output gets the fenced Mermaid block.
    """
    if fmt is not None and fmt not in FORMATS:
        raise ConfigError(f"unknown lineage format {fmt!r}: use {', '.join(FORMATS)}")
    graph = load_graph(mesh)
    if fmt is None:
        folder = Path(output) if output else mesh.root / OUTPUT_DIR
        paths = write_lineage(graph, folder)
        shown = ", ".join(_shown(p, mesh.root) for p in paths.values())
        return f"lineage: {graph.summary()} -> {shown}"
    if output in (None, "-") and fmt in ("mermaid", "json"):
        if fmt == "mermaid":
            return to_mermaid(graph, fenced=True).rstrip("\n")
        return to_json(graph).decode().rstrip("\n")
    path = Path(output) if output and output != "-" else mesh.root / OUTPUT_DIR / FILE_NAMES[fmt]
    path.parent.mkdir(parents=True, exist_ok=True)
    body = render(graph, fmt)
    if fmt == "mermaid" and path.suffix == ".md":
        body = to_mermaid(graph, fenced=True).encode()
    path.write_bytes(body)
    return f"lineage: {graph.summary()} -> {_shown(path, mesh.root)}"


def draw_lineage(mesh: Mesh) -> str:
    """Redraw the lineage page after a run from what the registry holds; the run summary's line."""
    graph = load_graph(mesh)
    folder = mesh.root / OUTPUT_DIR
    write_lineage(graph, folder)
    return (
        f"{_shown(folder / 'lineage.html', mesh.root)} (also .json, .mmd): "
        f"{len(graph.projects)} projects, {len(graph.nodes)} nodes"
    )
