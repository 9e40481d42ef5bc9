"""The lineage picture: every project's nodes in one graph, and the cross-project edges.

Built from what the mesh already has, no warehouse needed:
- each project's local `target/manifest.json` (its models, seeds, snapshots and ordinary sources,
  and the edges between them; tests are left out);
- each project's published interface in the registry (the env consumers read it from): marks which
  public models are published, and stands in for a project that has no local build.

Cross-project edges are found the way `mesh.validate` validates them: a consumer node whose parent is
`model.<upstream>.*` (dbt-loom) or a generated source `source.<consumer>.<upstream>.<table>` (mapped
back to the upstream model through the source's `meta.mesh.unique_id`). Generated sources are folded
into their edge, so an edge reads "upstream public model -> consumer node" in every format.

Rendered as JSON (for tools), Mermaid (GitHub PRs and job summaries) and a self-contained HTML page
with an SVG drawn here in Python (works offline: inline CSS and JS, no fonts or scripts fetched).
"""

from __future__ import annotations

import html
import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from mesh.config import Mesh, Project
from mesh.errors import ConfigError
from mesh.manifest import Json, load_interface, load_manifest

GRAPH_FORMAT = 1
FORMATS = ("json", "mermaid", "html")
FILE_NAMES = {"json": "lineage.json", "mermaid": "lineage.mmd", "html": "lineage.html"}
OUTPUT_DIR = "lineage"
# Node kinds drawn from a manifest's `nodes` (sources come from its `sources`).
NODE_TYPES = ("model", "seed", "snapshot")
_TYPE_ORDER = {"source": 0, "seed": 1, "snapshot": 2, "model": 3}
# GitHub renders Mermaid with the library defaults, which a diagram cannot raise.
MERMAID_MAX_EDGES = 500
MERMAID_MAX_TEXT = 50_000


# --- the graph ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """One model, seed, snapshot or source, in the project that owns it."""

    id: str
    name: str
    project: str
    resource_type: str
    access: str | None = None
    version: str | None = None
    latest_version: str | None = None
    materialized: str | None = None
    published: bool = False  # in the project's latest interface in the registry
    origin: str = "manifest"  # manifest | interface | reference (only seen as a parent)
    description: str = ""

    @property
    def public(self) -> bool:
        return self.access == "public"

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}" if self.version else self.name

    def to_json(self) -> Json:
        return {
            "id": self.id,
            "name": self.name,
            "label": self.label,
            "project": self.project,
            "resource_type": self.resource_type,
            "access": self.access,
            "public": self.public,
            "version": self.version,
            "latest_version": self.latest_version,
            "materialized": self.materialized,
            "published": self.published,
            "origin": self.origin,
            "description": self.description,
        }


@dataclass(frozen=True)
class Edge:
    """parent -> child. `via`: how a cross-project edge is read, `ref` (dbt-loom) or `source`."""

    source: str
    target: str
    cross_project: bool
    via: str | None = None

    def to_json(self) -> Json:
        return {
            "from": self.source,
            "to": self.target,
            "cross_project": self.cross_project,
            "via": self.via,
        }


@dataclass(frozen=True)
class ProjectInput:
    """What is known of one project: its local manifest and its published interface, if any."""

    name: str
    upstreams: tuple[str, ...] = ()
    manifest: Json | None = None
    manifest_path: str | None = None
    interface: Json | None = None
    interface_version: str | None = None
    env: str | None = None


@dataclass
class ProjectInfo:
    """A project as drawn: a column of the picture."""

    name: str
    upstreams: tuple[str, ...] = ()
    in_mesh: bool = True
    manifest: str | None = None
    interface_version: str | None = None
    env: str | None = None

    def to_json(self, nodes: int) -> Json:
        return {
            "name": self.name,
            "upstreams": list(self.upstreams),
            "in_mesh": self.in_mesh,
            "manifest": self.manifest,
            "interface_version": self.interface_version,
            "env": self.env,
            "nodes": nodes,
        }


@dataclass
class Graph:
    """The cross-project DAG: projects in dependency order, their nodes, every edge."""

    projects: list[ProjectInfo]
    nodes: dict[str, Node]
    edges: list[Edge]
    meta: Json = field(default_factory=dict)

    def project_nodes(self, project: str) -> list[Node]:
        return [n for n in self.nodes.values() if n.project == project]

    @property
    def cross_edges(self) -> list[Edge]:
        return [e for e in self.edges if e.cross_project]

    def to_json(self) -> Json:
        counts: dict[str, int] = {}
        for node in self.nodes.values():
            counts[node.project] = counts.get(node.project, 0) + 1
        return {
            "format": GRAPH_FORMAT,
            "meta": self.meta,
            "stats": {
                "projects": len(self.projects),
                "nodes": len(self.nodes),
                "edges": len(self.edges),
                "cross_project_edges": len(self.cross_edges),
                "public_nodes": sum(n.public for n in self.nodes.values()),
            },
            "projects": [p.to_json(counts.get(p.name, 0)) for p in self.projects],
            "nodes": [n.to_json() for n in self.nodes.values()],
            "edges": [e.to_json() for e in self.edges],
        }

    def summary(self) -> str:
        return (
            f"{len(self.projects)} projects, {len(self.nodes)} nodes, "
            f"{len(self.cross_edges)} cross-project edges"
        )


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _mesh_target(source: Json | None) -> str | None:
    """The upstream model a generated mesh source stands for (`meta.mesh.unique_id`), if any."""
    if not isinstance(source, dict):
        return None
    mesh_meta = (source.get("meta") or {}).get("mesh")
    target = mesh_meta.get("unique_id") if isinstance(mesh_meta, dict) else None
    return target if isinstance(target, str) and target else None


def _node(raw: Json, project: str, origin: str, published: bool) -> Node:
    config = raw.get("config") or {}
    return Node(
        id=raw["unique_id"],
        name=str(raw.get("name") or raw["unique_id"].split(".")[-1]),
        project=project,
        resource_type=str(raw.get("resource_type") or raw["unique_id"].split(".")[0]),
        access=_text(raw.get("access") or config.get("access")),
        version=_text(raw.get("version")),
        latest_version=_text(raw.get("latest_version")),
        materialized=_text(config.get("materialized")),
        published=published,
        origin=origin,
        description=str(raw.get("description") or ""),
    )


def _source_node(raw: Json, project: str) -> Node:
    return Node(
        id=raw["unique_id"],
        name=f"{raw.get('source_name')}.{raw.get('name')}",
        project=project,
        resource_type="source",
        description=str(raw.get("description") or ""),
    )


def _reference_node(unique_id: str, seen: Json | None) -> Node:
    """A parent known only by its id (or from a dbt-loom copy in a consumer manifest)."""
    parts = unique_id.split(".")
    if seen is not None:
        return _node(seen, parts[1], "reference", False)
    return Node(
        id=unique_id,
        name=parts[2] if len(parts) > 2 else unique_id,
        project=parts[1] if len(parts) > 1 else "unknown",
        resource_type=parts[0],
        version=parts[3][1:] if len(parts) > 3 and parts[3].startswith("v") else None,
        origin="reference",
    )


def _parents(manifest: Json, unique_id: str, raw: Json) -> list[str]:
    listed = (manifest.get("parent_map") or {}).get(unique_id) or []
    depends = (raw.get("depends_on") or {}).get("nodes") or []
    return list(dict.fromkeys([*listed, *depends]))


def build_graph(inputs: Sequence[ProjectInput], meta: Json | None = None) -> Graph:
    """The graph of `inputs` (pure: no file or registry access)."""
    names = {p.name for p in inputs}
    nodes: dict[str, Node] = {}
    foreign: dict[str, Json] = {}  # dbt-loom copies of upstream nodes in consumer manifests
    raw_edges: list[tuple[str, str, str | None]] = []

    def owned(raw: Json, project: str) -> bool:
        package = raw.get("package_name")
        return package == project or package not in names

    for p in inputs:
        published = set((p.interface or {}).get("nodes") or {})
        if p.manifest is not None:
            for uid, raw in p.manifest["nodes"].items():
                if raw.get("resource_type") not in NODE_TYPES:
                    continue
                if owned(raw, p.name):
                    nodes.setdefault(uid, _node(raw, p.name, "manifest", uid in published))
                else:
                    foreign.setdefault(uid, raw)
            for uid, raw in (p.manifest.get("sources") or {}).items():
                if _mesh_target(raw) is None:
                    nodes.setdefault(uid, _source_node(raw, p.name))
        if p.interface is not None:
            for uid, raw in p.interface["nodes"].items():
                if uid not in nodes:
                    nodes[uid] = _node(raw, p.name, "interface", True)
                    if p.manifest is None:
                        for parent in (raw.get("depends_on") or {}).get("nodes") or []:
                            raw_edges.append((parent, uid, None))

    for p in inputs:
        if p.manifest is None:
            continue
        sources = p.manifest.get("sources") or {}
        for uid, raw in p.manifest["nodes"].items():
            if raw.get("resource_type") not in NODE_TYPES or not owned(raw, p.name):
                continue
            for parent in _parents(p.manifest, uid, raw):
                kind = parent.split(".")[0]
                if kind == "source":
                    target = _mesh_target(sources.get(parent))
                    if target is not None:
                        raw_edges.append((target, uid, "source"))
                    elif parent in nodes:
                        raw_edges.append((parent, uid, None))
                elif kind in NODE_TYPES:
                    raw_edges.append((parent, uid, "ref"))

    for parent, _child, _via in raw_edges:
        if parent not in nodes:
            nodes[parent] = _reference_node(parent, foreign.get(parent))

    edges: dict[tuple[str, str], Edge] = {}
    for parent, child, via in raw_edges:
        if (parent, child) in edges:
            continue
        cross = nodes[parent].project != nodes[child].project
        edges[(parent, child)] = Edge(parent, child, cross, via if cross else None)

    infos = [
        ProjectInfo(p.name, p.upstreams, True, p.manifest_path, p.interface_version, p.env)
        for p in inputs
    ]
    for node in nodes.values():
        if node.project not in {i.name for i in infos}:
            infos.append(ProjectInfo(node.project, in_mesh=False))
    ordered = _order_projects(infos, edges.values(), nodes)
    rank = {info.name: index for index, info in enumerate(ordered)}
    sorted_nodes = dict(
        sorted(
            nodes.items(),
            key=lambda item: (
                rank[item[1].project],
                _TYPE_ORDER.get(item[1].resource_type, 9),
                item[0],
            ),
        )
    )
    return Graph(ordered, sorted_nodes, list(edges.values()), dict(meta or {}))


def _order_projects(
    infos: list[ProjectInfo], edges: Iterable[Edge], nodes: dict[str, Node]
) -> list[ProjectInfo]:
    """Upstreams before consumers (declared upstreams and drawn edges), else in the given order."""
    after: dict[str, set[str]] = {i.name: set(i.upstreams) for i in infos}
    for edge in edges:
        if edge.cross_project:
            after[nodes[edge.target].project].add(nodes[edge.source].project)
    remaining = list(infos)
    ordered: list[ProjectInfo] = []
    while remaining:
        placed = {i.name for i in ordered}
        ready = next(
            (i for i in remaining if not (after[i.name] - placed) & after.keys()),
            remaining[0],  # a cycle: draw it anyway
        )
        ordered.append(ready)
        remaining.remove(ready)
    return ordered


def load_graph(mesh: Mesh) -> Graph:
    """The graph of the mesh: local manifests of every project in mesh.yml, and the registry."""
    inputs: list[ProjectInput] = []
    for name, cfg in mesh.config.projects.items():
        project: Project | None = None
        if cfg.path is not None and ((mesh.root / cfg.path) / "dbt_project.yml").is_file():
            project = mesh.project(name)  # a checkout may lack other teams' project folders
        manifest: Json | None = None
        manifest_path: str | None = None
        if project is not None and (project.target_dir / "manifest.json").is_file():
            path = project.target_dir / "manifest.json"
            manifest = load_manifest(path, project=name)
            manifest_path = _shown(path, mesh.root)
        env = mesh.upstream_env(name)
        entry = mesh.registry.read_latest(name, env)
        interface = (
            None if entry is None else load_interface(entry.body, f"{name}/{env} latest", name)
        )
        inputs.append(
            ProjectInput(
                name=name,
                upstreams=project.upstreams if project is not None else (),
                manifest=manifest,
                manifest_path=manifest_path,
                interface=interface,
                interface_version=None if entry is None else entry.version,
                env=env,
            )
        )
    meta = {
        "target": mesh.target_name,
        "env": mesh.env,
        "registry": mesh.target.registry,
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return build_graph(inputs, meta)


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
}
_MERMAID_CLASSES = (
    "classDef public fill:#e6fcf5,stroke:#0ca678,stroke-width:2px,color:#063",
    "classDef private fill:#f8f9fa,stroke:#868e96,color:#212529",
    "classDef reference fill:#fff,stroke:#adb5bd,stroke-dasharray:4 3,color:#495057",
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
    return "public" if node.public else "private"


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
            label = _mermaid_label(node.label)
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


# --- layout ------------------------------------------------------------------------------------

NODE_W = 236
NODE_H = 42
ROW_GAP = 18
COL_GAP = 64
PROJECT_PAD = 22
PROJECT_HEADER = 60
PROJECT_GAP = 130  # between layers of projects: room for the cross-project edges
PROJECT_VGAP = 36  # between projects stacked in one layer
MARGIN = 24
PITCH = NODE_H + ROW_GAP


@dataclass
class _Box:
    """A project's box: its node columns, left to right, and where it sits."""

    columns: list[list[str]]
    x: float = 0.0
    y: float = 0.0

    @property
    def rows(self) -> int:
        return max((len(c) for c in self.columns), default=0)

    @property
    def w(self) -> float:
        n = max(len(self.columns), 1)
        return n * NODE_W + (n - 1) * COL_GAP + 2 * PROJECT_PAD

    @property
    def h(self) -> float:
        return PROJECT_HEADER + max(self.rows, 1) * PITCH - ROW_GAP + PROJECT_PAD

    def col_x(self, index: int) -> float:
        return self.x + PROJECT_PAD + index * (NODE_W + COL_GAP)

    def row_y(self, index: int) -> float:
        return self.y + PROJECT_HEADER + index * PITCH

    def channel(self, near: float) -> float:
        """The free lane between rows (aligned in every column) nearest to `near`."""
        lanes = [self.row_y(k) - ROW_GAP / 2 for k in range(max(self.rows, 1) + 1)]
        return min(lanes, key=lambda lane: abs(lane - near))


@dataclass
class Layout:
    """In SVG user units: node top-left corners, project boxes (x, y, w, h), edge paths."""

    nodes: dict[str, tuple[float, float]]
    projects: dict[str, tuple[float, float, float, float]]
    paths: dict[tuple[str, str], str]
    width: float
    height: float


def _longest_path(members: Iterable[str], parents: dict[str, set[str]]) -> dict[str, int]:
    """Depth of each member: 1 + the deepest parent among members (iterative; on a cycle, the
    nodes left over go one deeper than everything placed)."""
    keys = list(members)
    inside = set(keys)
    ups = {k: parents.get(k, set()) & inside for k in keys}
    downs: dict[str, list[str]] = {k: [] for k in keys}
    for key in keys:
        for parent in ups[key]:
            downs[parent].append(key)
    waiting = {k: len(ups[k]) for k in keys}
    ranks: dict[str, int] = {}
    ready = [k for k in keys if not waiting[k]]
    while ready:
        key = ready.pop()
        ranks[key] = 1 + max((ranks[p] for p in ups[key] if p in ranks), default=-1)
        for child in downs[key]:
            waiting[child] -= 1
            if not waiting[child]:
                ready.append(child)
    deepest = max(ranks.values(), default=-1)
    for key in keys:
        ranks.setdefault(key, deepest + 1)
    return ranks


def _project_columns(graph: Graph, project: str) -> list[list[str]]:
    """A project's nodes in columns by local depth; nodes read only by other projects go last."""
    members = [n.id for n in graph.project_nodes(project)]
    inside = set(members)
    parents: dict[str, set[str]] = {m: set() for m in members}
    local_children: set[str] = set()
    exported: set[str] = set()
    for edge in graph.edges:
        if edge.source in inside and edge.target in inside:
            parents[edge.target].add(edge.source)
            local_children.add(edge.source)
        elif edge.source in inside:
            exported.add(edge.source)
    ranks = _longest_path(members, parents)
    depth = max(ranks.values(), default=0) + 1
    for uid in exported - local_children:
        ranks[uid] = depth - 1
    columns: list[list[str]] = [[] for _ in range(depth)]
    for uid in members:
        columns[ranks[uid]].append(uid)
    return [c for c in columns if c] or [[]]


def layout(graph: Graph, sweeps: int = 4) -> Layout:
    """Layers of projects left to right (upstreams first; projects of one layer stacked), each
    project a box of node columns by local depth, rows ordered by the barycentre of neighbours,
    and edges routed through the free lanes between rows so they do not run over nodes."""
    boxes = {p.name: _Box(_project_columns(graph, p.name)) for p in graph.projects}
    project_of = {uid: node.project for uid, node in graph.nodes.items()}
    depends: dict[str, set[str]] = {p.name: set(p.upstreams) & boxes.keys() for p in graph.projects}
    for edge in graph.cross_edges:
        depends[project_of[edge.target]].add(project_of[edge.source])
    layer_of = _longest_path([p.name for p in graph.projects], depends)
    layers: dict[int, list[str]] = {}
    for project in graph.projects:
        layers.setdefault(layer_of[project.name], []).append(project.name)
    x = float(MARGIN)
    width = height = 2.0 * MARGIN
    for index in sorted(layers):
        y = float(MARGIN)
        for name in layers[index]:
            box = boxes[name]
            box.x, box.y = x, y
            y += box.h + PROJECT_VGAP
        x += max(boxes[n].w for n in layers[index]) + PROJECT_GAP
        width = x - PROJECT_GAP + MARGIN
        height = max(height, y - PROJECT_VGAP + MARGIN)

    where: dict[str, tuple[_Box, int]] = {}
    for box in boxes.values():
        for col, ids in enumerate(box.columns):
            for uid in ids:
                where[uid] = (box, col)
    centre: dict[str, float] = {}

    def place(box: _Box, ids: list[str]) -> None:
        for row, uid in enumerate(ids):
            centre[uid] = box.row_y(row) + NODE_H / 2

    sequence = [
        (box, ids)
        for _x, _y, box, ids in sorted(
            (
                (box.col_x(col), box.y, box, ids)
                for box in boxes.values()
                for col, ids in enumerate(box.columns)
            ),
            key=lambda item: (item[0], item[1]),
        )
    ]
    for box, ids in sequence:
        place(box, ids)
    parents: dict[str, list[str]] = {uid: [] for uid in graph.nodes}
    children: dict[str, list[str]] = {uid: [] for uid in graph.nodes}
    for edge in graph.edges:
        parents[edge.target].append(edge.source)
        children[edge.source].append(edge.target)

    def reorder(box: _Box, ids: list[str], neighbours: dict[str, list[str]]) -> None:
        def key(uid: str) -> tuple[float, float]:
            near = neighbours[uid]
            return (sum(centre[n] for n in near) / len(near) if near else centre[uid], centre[uid])

        ids.sort(key=key)
        place(box, ids)

    for _ in range(sweeps):
        for box, ids in sequence[1:]:
            reorder(box, ids, parents)
        for box, ids in reversed(sequence[:-1]):
            reorder(box, ids, children)

    positions = {
        uid: (where[uid][0].col_x(where[uid][1]), c - NODE_H / 2) for uid, c in centre.items()
    }
    paths = {(e.source, e.target): _route(e, where, centre) for e in graph.edges}
    return Layout(
        positions,
        {name: (b.x, b.y, b.w, b.h) for name, b in boxes.items()},
        paths,
        width,
        height,
    )


def _route(edge: Edge, where: dict[str, tuple[_Box, int]], centre: dict[str, float]) -> str:
    """Waypoints from the parent's right side to the child's left side, using the lanes between
    rows wherever a straight curve would cross the columns in between."""
    (sbox, scol), (tbox, tcol) = where[edge.source], where[edge.target]
    points = [(sbox.col_x(scol) + NODE_W, centre[edge.source])]
    end = (tbox.col_x(tcol), centre[edge.target])
    if sbox is tbox:
        if tcol > scol + 1:
            lane = sbox.channel((points[0][1] + end[1]) / 2)
            points.append((sbox.col_x(scol) + NODE_W + COL_GAP - 10, lane))
            points.append((tbox.col_x(tcol) - COL_GAP + 10, lane))
    else:
        if scol < len(sbox.columns) - 1:
            lane = sbox.channel(end[1])
            points.append((sbox.col_x(scol) + NODE_W + COL_GAP - 10, lane))
            points.append((sbox.x + sbox.w, lane))
        if tcol > 0:
            lane = tbox.channel(points[-1][1])
            points.append((tbox.x, lane))
            points.append((tbox.col_x(tcol) - COL_GAP + 10, lane))
    points.append(end)
    return _smooth(points)


def _smooth(points: Sequence[tuple[float, float]]) -> str:
    """A path through `points` leaving and entering each one horizontally."""
    out = [f"M{points[0][0]:.1f},{points[0][1]:.1f}"]
    for (x1, y1), (x2, y2) in itertools.pairwise(points):
        if abs(y2 - y1) < 0.5 and x2 > x1:
            out.append(f"L{x2:.1f},{y2:.1f}")
            continue
        bend = max(30.0, (x2 - x1) / 2) if x2 > x1 else 60.0  # backwards: loop out and back
        out.append(f"C{x1 + bend:.1f},{y1:.1f} {x2 - bend:.1f},{y2:.1f} {x2:.1f},{y2:.1f}")
    return " ".join(out)


# --- HTML ----------------------------------------------------------------------------------------


def _attr(value: object) -> str:
    return html.escape(str(value), quote=True)


def _fit(text: str, width: float, char_w: float = 7.0) -> str:
    limit = max(4, int(width / char_w))
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _node_svg(node: Node, pos: tuple[float, float]) -> str:
    classes = ["node", f"type-{node.resource_type}", f"origin-{node.origin}"]
    if node.public:
        classes.append("public")
    if node.published:
        classes.append("published")
    facts = [node.resource_type, node.access or "", "published" if node.published else ""]
    if node.origin == "reference":
        facts.append("not in any manifest or interface")
    meta_line = " \u00b7 ".join(f for f in facts if f)
    title = f"{node.id}\n{meta_line}" + (f"\n{node.description}" if node.description else "")
    badge = ""
    if node.public:
        badge = (
            f'<rect class="badge" x="{NODE_W - 52}" y="6" width="46" height="15" rx="7"/>'
            f'<text class="badge-text" x="{NODE_W - 29}" y="17">public</text>'
        )
    return (
        f'<g class="{" ".join(classes)}" data-node-id="{_attr(node.id)}" '
        f'data-project="{_attr(node.project)}" data-resource-type="{_attr(node.resource_type)}" '
        f'data-access="{_attr(node.access or "")}" data-public="{str(node.public).lower()}" '
        f'data-published="{str(node.published).lower()}" '
        f'data-version="{_attr(node.version or "")}" '
        f'transform="translate({pos[0]:.1f},{pos[1]:.1f})" tabindex="0">'
        f"<title>{html.escape(title)}</title>"
        f'<rect class="node-box" width="{NODE_W}" height="{NODE_H}" rx="7"/>'
        f'<text class="node-name" x="11" y="18">'
        f"{html.escape(_fit(node.label, NODE_W - (72 if node.public else 20), 7.7))}</text>"
        f'<text class="node-meta" x="11" y="33">'
        f"{html.escape(_fit(meta_line, NODE_W - 20, 6))}</text>"
        f"{badge}</g>"
    )


def to_svg(graph: Graph) -> str:
    """The picture as one inline SVG element (every node and edge carries data attributes)."""
    lay = layout(graph)
    counts = {p.name: len(graph.project_nodes(p.name)) for p in graph.projects}
    parts = [
        f'<svg id="lineage-svg" xmlns="http://www.w3.org/2000/svg" width="{lay.width:.0f}" '
        f'height="{lay.height:.0f}" viewBox="0 0 {lay.width:.0f} {lay.height:.0f}" '
        'role="img" aria-label="cross-project lineage">',
        "<defs>"
        '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'class="arrow-local"/></marker>'
        '<marker id="arrow-cross" viewBox="0 0 10 10" refX="8" refY="5" markerWidth="4" '
        'markerHeight="4" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'class="arrow-cross"/></marker></defs>',
        '<g class="projects">',
    ]
    for project in graph.projects:
        x, y, w, h = lay.projects[project.name]
        facts = [f"{counts[project.name]} nodes"]
        if project.interface_version:
            facts.append(f"published {project.interface_version}")
        if project.upstreams:
            facts.append("reads " + ", ".join(project.upstreams))
        if not project.in_mesh:
            facts.append("not in mesh.yml")
        elif project.manifest is None:
            facts.append("no local build")
        parts.append(
            f'<g class="project{"" if project.in_mesh else " outside"}" '
            f'data-project="{_attr(project.name)}" data-in-mesh="{str(project.in_mesh).lower()}">'
            f'<rect class="project-box" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" '
            f'rx="12"/><text class="project-name" x="{x + PROJECT_PAD:.1f}" y="{y + 24:.1f}">'
            f"{html.escape(project.name)}</text>"
            f'<text class="project-meta" x="{x + PROJECT_PAD:.1f}" y="{y + 41:.1f}">'
            f"{html.escape(_fit(' · '.join(facts), w - 2 * PROJECT_PAD, 6))}</text></g>"
        )
    parts.append('</g><g class="edges">')
    ordered = sorted(graph.edges, key=lambda e: e.cross_project)  # cross-project edges on top
    for edge in ordered:
        kind = "cross" if edge.cross_project else "local"
        parts.append(
            f'<path class="edge {kind}" d="{lay.paths[(edge.source, edge.target)]}" '
            f'data-edge-from="{_attr(edge.source)}" data-edge-to="{_attr(edge.target)}" '
            f'data-cross-project="{str(edge.cross_project).lower()}" '
            f'data-via="{_attr(edge.via or "")}" '
            f'marker-end="url(#{"arrow-cross" if edge.cross_project else "arrow"})">'
            f"<title>{html.escape(edge.source)} \u2192 {html.escape(edge.target)}"
            f"{' (cross-project, via ' + edge.via + ')' if edge.via else ''}</title></path>"
        )
    parts.append('</g><g class="nodes">')
    for node in graph.nodes.values():
        parts.append(_node_svg(node, lay.nodes[node.id]))
    parts.append("</g></svg>")
    return "".join(parts)


_CSS = """
:root { --ink:#212529; --muted:#6c757d; --line:#adb5bd; --cross:#e8590c; --public:#0ca678;
  --bg:#f8f9fa; --box:#ffffff; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
  color:var(--ink); background:var(--bg); }
header { padding:14px 22px 10px; border-bottom:1px solid #dee2e6; background:#fff; }
h1 { font-size:19px; margin:0 0 4px; }
.meta { color:var(--muted); font-size:13px; }
.bar { display:flex; flex-wrap:wrap; gap:18px; align-items:center; margin-top:8px; font-size:13px; }
.bar input { font:inherit; padding:4px 8px; border:1px solid #ced4da; border-radius:6px;
  width:220px; }
.key { display:inline-flex; align-items:center; gap:6px; }
.swatch { display:inline-block; width:26px; height:0; border-top:2px solid var(--line); }
.swatch.cross { border-top:4px solid var(--cross); }
.chip { display:inline-block; width:14px; height:14px; border-radius:4px;
  border:2px solid var(--public);
  background:#e6fcf5; }
.chip.dashed { border:2px dashed var(--line); background:#fff; }
main { overflow:auto; padding:8px; }
main.fit svg { width:100%; height:auto; }
.bar button { font:inherit; padding:3px 10px; border:1px solid #ced4da; border-radius:6px;
  background:#fff; cursor:pointer; }
#details { position:fixed; right:16px; bottom:16px; max-width:420px; background:#fff;
  border:1px solid #dee2e6; border-radius:8px; padding:10px 14px; font-size:13px;
  box-shadow:0 4px 14px rgba(0,0,0,.08); white-space:pre-wrap; }
#details[hidden] { display:none; }
svg text { font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif; }
.project-box { fill:#fff; stroke:#ced4da; stroke-width:1.5; }
.project.outside .project-box { stroke-dasharray:6 4; fill:#fdfdfd; }
.project-name { font-size:16px; font-weight:650; fill:var(--ink); }
.project-meta { font-size:11.5px; fill:var(--muted); }
.edge { fill:none; stroke:var(--line); stroke-width:1.4; }
.edge.cross { stroke:var(--cross); stroke-width:3.2; }
.arrow-local { fill:var(--line); }
.arrow-cross { fill:var(--cross); }
.node { cursor:pointer; }
.node-box { fill:#f1f3f5; stroke:#adb5bd; stroke-width:1.2; }
.node.type-model .node-box { fill:#eef2ff; stroke:#748ffc; }
.node.type-seed .node-box { fill:#fff9db; stroke:#fab005; }
.node.type-snapshot .node-box { fill:#f3f0ff; stroke:#9775fa; }
.node.type-source .node-box { fill:#fff4e6; stroke:#ffa94d; }
.node.public .node-box { fill:#e6fcf5; stroke:var(--public); stroke-width:2.2; }
.node.origin-reference .node-box { fill:#fff; stroke-dasharray:5 3; }
.node-name { font-size:13px; font-weight:600; fill:var(--ink); }
.node-meta { font-size:10.5px; fill:var(--muted); }
.badge { fill:var(--public); }
.badge-text { font-size:10px; fill:#fff; text-anchor:middle; font-weight:600; }
.node:focus { outline:none; }
.node.selected .node-box, .node:focus .node-box { stroke:#1c7ed6; stroke-width:3; }
.dim { opacity:.15; }
.match .node-box { stroke:#1c7ed6; stroke-width:3; }
"""

_JS = """
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("lineage-data").textContent);
  var svg = document.getElementById("lineage-svg");
  var details = document.getElementById("details");
  var info = {};
  data.nodes.forEach(function (n) { info[n.id] = n; });
  var nodes = {};
  Array.prototype.forEach.call(svg.querySelectorAll("g.node"), function (el) {
    nodes[el.getAttribute("data-node-id")] = el;
  });
  var edges = Array.prototype.slice.call(svg.querySelectorAll("path.edge"));
  var up = {}, down = {};
  edges.forEach(function (e) {
    var a = e.getAttribute("data-edge-from"), b = e.getAttribute("data-edge-to");
    (down[a] = down[a] || []).push(b);
    (up[b] = up[b] || []).push(a);
  });
  function reach(start, map) {
    var seen = {}, todo = [start];
    seen[start] = true;
    while (todo.length) {
      (map[todo.pop()] || []).forEach(function (n) {
        if (!seen[n]) { seen[n] = true; todo.push(n); }
      });
    }
    return seen;
  }
  function clear() {
    Object.keys(nodes).forEach(function (id) {
      nodes[id].classList.remove("dim", "selected", "match");
    });
    edges.forEach(function (e) { e.classList.remove("dim"); });
    details.hidden = true;
    if (location.hash) {
      try { history.replaceState(null, "", location.pathname); } catch (e) { /* file: */ }
    }
  }
  function select(id) {
    clear();
    var keep = reach(id, up), below = reach(id, down);
    Object.keys(below).forEach(function (k) { keep[k] = true; });
    Object.keys(nodes).forEach(function (k) { if (!keep[k]) { nodes[k].classList.add("dim"); } });
    edges.forEach(function (e) {
      var a = e.getAttribute("data-edge-from"), b = e.getAttribute("data-edge-to");
      if (!(keep[a] && keep[b])) { e.classList.add("dim"); }
    });
    nodes[id].classList.add("selected");
    try {
      history.replaceState(null, "", "#node=" + encodeURIComponent(id));
    } catch (e) { /* some file: pages refuse it */ }
    var n = info[id] || {};
    var lines = [n.id, "project: " + n.project, "type: " + n.resource_type +
      (n.materialized ? " (" + n.materialized + ")" : ""),
      "access: " + (n.access || "-") + (n.published ? ", published" : "")];
    if (n.version) { lines.push("version: " + n.version + " (latest " + n.latest_version + ")"); }
    lines.push("upstream: " + (Object.keys(keep).length - Object.keys(below).length) +
      " nodes, downstream: " + (Object.keys(below).length - 1) + " nodes");
    if (n.description) { lines.push("", n.description); }
    details.textContent = lines.join("\\n");
    details.hidden = false;
  }
  Object.keys(nodes).forEach(function (id) {
    var el = nodes[id];
    el.addEventListener("click", function (ev) { ev.stopPropagation(); select(id); });
    el.addEventListener("keydown", function (ev) { if (ev.key === "Enter") { select(id); } });
  });
  svg.addEventListener("click", clear);
  document.addEventListener("keydown", function (ev) { if (ev.key === "Escape") { clear(); } });
  document.getElementById("search").addEventListener("input", function (ev) {
    var q = ev.target.value.trim().toLowerCase();
    clear();
    if (!q) { return; }
    Object.keys(nodes).forEach(function (id) {
      nodes[id].classList.add(id.toLowerCase().indexOf(q) >= 0 ? "match" : "dim");
    });
    edges.forEach(function (e) { e.classList.add("dim"); });
  });
  var main = document.querySelector("main"), zoom = document.getElementById("zoom");
  function fit(on) {
    main.classList.toggle("fit", on);
    zoom.textContent = on ? "actual size" : "fit to width";
  }
  zoom.addEventListener("click", function () { fit(!main.classList.contains("fit")); });
  var natural = svg.width.baseVal.value;
  fit(natural > main.clientWidth && main.clientWidth / natural >= 0.45);
  var wanted = decodeURIComponent(location.hash.replace(/^#node=/, ""));
  if (location.hash.indexOf("#node=") === 0 && nodes[wanted]) { select(wanted); }
  document.body.setAttribute("data-ready", "true");
  document.body.setAttribute("data-rendered-nodes", String(Object.keys(nodes).length));
  document.body.setAttribute("data-rendered-edges", String(edges.length));
})();
"""


def to_html(graph: Graph) -> str:
    """A self-contained page: inline CSS, inline SVG, inline JS (click a node: its lineage)."""
    data = orjson.dumps(graph.to_json()).replace(b"<", b"\\u003c").decode()
    meta = graph.meta
    facts = [f"{k} {meta[k]}" for k in ("target", "env", "registry", "generated_at") if meta.get(k)]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>dbt mesh lineage</title>"
        f"<style>{_CSS}</style></head><body>"
        "<header><h1>dbt mesh lineage</h1>"
        f'<div class="meta">{html.escape(graph.summary())}'
        f"{' · ' + html.escape(' · '.join(facts)) if facts else ''}</div>"
        '<div class="bar"><input id="search" type="search" placeholder="find a node…" '
        'aria-label="find a node"><button id="zoom" type="button">actual size</button>'
        '<span class="key"><span class="swatch cross"></span>cross-project edge</span>'
        '<span class="key"><span class="swatch"></span>edge inside a project</span>'
        '<span class="key"><span class="chip"></span>public model</span>'
        '<span class="key"><span class="chip dashed"></span>known only as a parent</span>'
        '<span class="key">click a node for its lineage, Esc to clear</span></div></header>'
        f"<main>{to_svg(graph)}</main>"
        '<div id="details" hidden></div>'
        f'<script type="application/json" id="lineage-data">{data}</script>'
        f"<script>{_JS}</script></body></html>\n"
    )


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


def _shown(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


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
