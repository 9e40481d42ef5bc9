"""The consumers a producer's publish reaches (`invoke downstream`): who to trigger after it.

Read from the registry alone: the producer's latest interface (and, with `since`, an earlier
version of it), its freshness record, and every consumer's usage record, which names the
repository whose CI builds the consumer (mesh.yml `repository`, else GITHUB_REPOSITORY when it
recorded). A producer's workflow dispatches exactly these after its publish; consumers in this
mesh.yml that have no usage record yet are listed too, as are consumers whose record cannot be
read (fail closed: a record that cannot be trusted cannot prove a consumer unaffected).

Without `since`, every consumer that reads the producer is listed. With `since` (the version that
was latest before the publish), only those using a node that changed: added, removed or altered
in the interface since that version, or whose data differs from what that version was published
with (the data versions a run records in the history entry; for an entry without them, data
rebuilt after it, by the freshness record's `built_at`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

from mesh.consumer.freshness import read_freshness
from mesh.core.errors import ConfigError, MeshError, NotFoundError
from mesh.core.names import VERSION_RE
from mesh.core.surface import hint
from mesh.interface.usage import REPOSITORY_RE, read_usage
from mesh.project.artifacts import Json
from mesh.project.config import Mesh
from mesh.registry.document import load_interface


@dataclass(frozen=True)
class Reached:
    """One consumer the publish reaches: where it is built, why, and what it uses that changed."""

    project: str
    repository: str | None
    reasons: tuple[str, ...]
    nodes: tuple[str, ...] = ()

    def to_json(self) -> Json:
        return {
            "project": self.project,
            "repository": self.repository,
            "reasons": list(self.reasons),
            "nodes": list(self.nodes),
        }


@dataclass
class Downstream:
    project: str
    env: str
    latest: str
    since: str | None
    consumers: list[Reached] = field(default_factory=list)

    @property
    def repositories(self) -> list[str]:
        return sorted({c.repository for c in self.consumers if c.repository})

    def to_json(self) -> Json:
        return {
            "format": 1,
            "project": self.project,
            "env": self.env,
            "latest": self.latest,
            "since": self.since,
            "consumers": [c.to_json() for c in self.consumers],
            "repositories": self.repositories,
        }

    def render(self) -> str:
        since = f" since {self.since}" if self.since else ""
        head = f"downstream of {self.project}/{self.env} (latest {self.latest}){since}: "
        if not self.consumers:
            return head + "no consumer reached"
        lines = [head + f"{len(self.consumers)} consumer{'s' if len(self.consumers) != 1 else ''}"]
        for c in self.consumers:
            where = c.repository or "repository unknown"
            lines.append(f"  {c.project} ({where}): {'; '.join(c.reasons)}")
        return "\n".join(lines)


def _version_time(version: str) -> datetime:
    return datetime.strptime(version[:23], "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)


def _changed_nodes(mesh: Mesh, project: str, env: str, latest: Json, since: str) -> set[str]:
    """Nodes added, removed or altered in the interface since `since`, or rebuilt after it."""
    if not VERSION_RE.fullmatch(since):
        raise ConfigError(f"--since {since!r} is not a version id like 20261123T101502.123456Z-3f2a9c1e")
    try:
        entry = mesh.registry.read_version(project, env, since)
    except NotFoundError as exc:
        raise NotFoundError(
            f"{project}/{env} has no version {since} in {mesh.registry.url}: "
            f"list them with {hint('registry.list', '--project', project)}"
        ) from exc
    then = load_interface(entry.body, f"{project}/{env} {since}", project, env, since)
    before = then["nodes"]
    after = latest["nodes"]
    recorded = then["metadata"]["mesh"].get("data_versions")  # what a run published with it
    changed = {
        uid for uid in set(before) | set(after)
        if orjson.dumps(before.get(uid), option=orjson.OPT_SORT_KEYS)
        != orjson.dumps(after.get(uid), option=orjson.OPT_SORT_KEYS)
    }
    cutoff = _version_time(since)
    try:
        freshness = read_freshness(mesh, project, env) or {}
    except MeshError:
        return set(after) | changed  # data of unknown age: every node may have moved
    for uid, node in (freshness.get("nodes") or {}).items():
        if isinstance(recorded, dict) and isinstance(node, dict) and uid in recorded:
            if node.get("data_version") != recorded[uid]:
                changed.add(uid)  # its data differs from what that version was published with
            continue
        built = node.get("built_at") if isinstance(node, dict) else None
        try:
            when = datetime.fromisoformat(str(built).replace("Z", "+00:00"))
        except ValueError:
            changed.add(uid)
            continue
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        if when > cutoff:
            changed.add(uid)
    return changed


def downstream(mesh: Mesh, project: str, since: str | None = None) -> Downstream:
    """The consumers `project`'s latest publish reaches (see the module's text)."""
    env = mesh.env
    entry = mesh.registry.read_latest(project, env)
    if entry is None:
        raise NotFoundError(f"{project} has not published to env {env} in {mesh.registry.url}")
    latest = load_interface(entry.body, f"{project}/{env} latest", project, env, entry.version)
    changed = None if since is None else _changed_nodes(mesh, project, env, latest, since)
    result = Downstream(project, env, entry.version, since)
    usage = read_usage(mesh)
    configured = mesh.config.projects

    def repository(name: str, recorded: object = None) -> str | None:
        if isinstance(recorded, str) and REPOSITORY_RE.fullmatch(recorded):
            return recorded
        settings = configured.get(name)
        return settings.repository if settings is not None else None

    seen: set[str] = set()
    for name, record in sorted(usage.records.items()):
        if name == project or not usage.covers(name, project):
            continue
        seen.add(name)
        used = sorted({u.upstream_node for u in record.uses if u.upstream == project})
        if changed is None:
            reasons, nodes = (f"reads {project}",), used
        else:
            nodes = [uid for uid in used if uid in changed]
            reasons = (f"uses {len(nodes)} changed node{'s' if len(nodes) != 1 else ''}",)
            if not nodes:
                continue
        result.consumers.append(Reached(name, repository(name, record.metadata.get("repository")), reasons, tuple(nodes)))
    for name, why in sorted(usage.unreadable.items()):
        if name != project and name not in seen:
            seen.add(name)
            result.consumers.append(Reached(name, repository(name), (f"usage record unreadable ({why})",)))
    for name, settings in sorted(configured.items()):
        if name in seen or name == project or settings.path is None:
            continue
        try:
            reads = project in mesh.project(name).upstreams
        except MeshError:
            continue
        if reads:
            result.consumers.append(Reached(name, repository(name), ("no usage on record",)))
    result.consumers.sort(key=lambda c: c.project)
    return result
