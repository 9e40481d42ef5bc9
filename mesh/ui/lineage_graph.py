"""The lineage graph: every project's nodes and edges from what the registry holds (published
interfaces, consumers' state manifests, freshness records); the page, the Mermaid text and the JSON
are drawn from it (mesh.ui.lineage)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from mesh.core.errors import ChecksumError
from mesh.project.artifacts import Json, load_manifest, table_of
from mesh.project.config import Mesh, Project
from mesh.registry.document import load_interface

GRAPH_FORMAT = 1
NODE_TYPES = ("model", "seed", "snapshot")
_TYPE_ORDER = {"source": 0, "seed": 1, "snapshot": 2, "model": 3, "exposure": 4}


# --- the graph ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """One model, seed, snapshot, source or exposure, in the project that owns it."""

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
    built_at: str | None = None  # when its data was last built (the registry's `freshness`)
    owner: str | None = None  # an exposure's owner (name, else email)
    unread: bool = False  # a source that no model, seed, snapshot or exposure reads

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
            "built_at": self.built_at,
            "owner": self.owner,
            "unread": self.unread,
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
    built_at: Mapping[str, str] = field(default_factory=dict)  # node id -> ISO-8601 UTC


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


def _exposure_node(raw: Json, project: str) -> Node:
    owner = raw.get("owner")
    if not isinstance(owner, dict):
        owner = {}
    return Node(
        id=raw["unique_id"],
        name=str(raw.get("label") or raw.get("name") or raw["unique_id"].split(".")[-1]),
        project=project,
        resource_type="exposure",
        materialized=_text(raw.get("type")),  # dashboard, notebook, analysis, ml, application
        description=str(raw.get("description") or ""),
        owner=_text(owner.get("name")) or _text(owner.get("email")),
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
            for uid, raw in (p.manifest.get("exposures") or {}).items():
                if isinstance(raw, dict) and owned(raw, p.name):
                    nodes.setdefault(uid, _exposure_node(raw, p.name))
        if p.interface is not None:
            for uid, raw in p.interface["nodes"].items():
                if uid not in nodes:
                    nodes[uid] = _node(raw, p.name, "interface", True)
                    if p.manifest is None:
                        for parent in (raw.get("depends_on") or {}).get("nodes") or []:
                            raw_edges.append((parent, uid, None))

    seeds = {  # a seed's table -> the seed, for the sources that read it
        table_of(raw, "alias"): uid
        for p in inputs
        if p.manifest is not None
        for uid, raw in p.manifest["nodes"].items()
        if raw.get("resource_type") == "seed" and owned(raw, p.name)
    }
    for p in inputs:
        if p.manifest is None:
            continue
        sources = p.manifest.get("sources") or {}
        for uid, raw in sources.items():
            seed = seeds.get(table_of(raw, "identifier"))
            if seed is not None and uid in nodes and _mesh_target(raw) is None:
                raw_edges.append((seed, uid, "source"))
        readers = [
            (uid, raw)
            for uid, raw in p.manifest["nodes"].items()
            if raw.get("resource_type") in NODE_TYPES and owned(raw, p.name)
        ]
        readers += [
            (uid, raw)
            for uid, raw in (p.manifest.get("exposures") or {}).items()
            if uid in nodes and nodes[uid].resource_type == "exposure"
        ]
        for uid, raw in readers:
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

    read = {edge.source for edge in edges.values()}
    for uid, node in nodes.items():
        if node.resource_type == "source" and uid not in read:
            nodes[uid] = dataclasses.replace(node, unread=True)

    for p in inputs:
        for uid, built_at in p.built_at.items():
            if uid in nodes and nodes[uid].project == p.name:
                nodes[uid] = dataclasses.replace(nodes[uid], built_at=built_at)

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
            None if entry is None else load_interface(entry.body, f"{name}/{env} latest", name, env, entry.version)
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
                built_at=_read_freshness(mesh, name, env),
            )
        )
    meta = {
        "target": mesh.target_name,
        "env": mesh.env,
        "registry": mesh.target.registry,
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return build_graph(inputs, meta)


def _read_freshness(mesh: Mesh, project: str, env: str) -> dict[str, str]:
    """The registry's `freshness` object of `project`, read; a corrupt one (its checksum does not
    match) only costs the picture its ages: `invoke registry.fsck` is where corruption is dealt with."""
    try:
        return freshness_of(mesh.registry.read_private(project, env, "freshness"))
    except ChecksumError:
        return {}


def freshness_of(body: bytes | None) -> dict[str, str]:
    """When each node's data was last built, from a project's `freshness` object
    (`{"format": 1, "nodes": {"<unique_id>": {"built_at": "<ISO-8601>"}}}`), as UTC
    `YYYY-MM-DDTHH:MM:SSZ`. The picture only shows it: a missing or malformed object, or a node
    whose time does not parse, means no age, never a failure."""
    if body is None:
        return {}
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    nodes = doc.get("nodes") if isinstance(doc, dict) and doc.get("format") == 1 else None
    if not isinstance(nodes, dict):
        return {}
    found: dict[str, str] = {}
    for uid, entry in nodes.items():
        built = entry.get("built_at") if isinstance(entry, dict) else None
        if not isinstance(built, str):
            continue
        try:
            when = datetime.fromisoformat(built)
        except ValueError:
            continue
        if when.tzinfo is None:  # the object is written in UTC; a naive time is read as such
            when = when.replace(tzinfo=UTC)
        found[uid] = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return found


def _shown(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)
