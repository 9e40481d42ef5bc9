"""Which projects must run, in which order: the plan CI runners follow (`invoke plan`).

Read from the working tree and the shared registry only, never the warehouse: each project's
fingerprint record (the hash of the files its last passing build read, the registry version of
each upstream interface it was synced to, the data version of each upstream node it stores) against
the files of this checkout, the registry's latest interfaces and the producers' freshness records.
A project is planned when

- `no passing build on record` (or its record is of another target, or unreadable: fail closed);
- `changed`: its own files (models, YAML, macros, seeds, local packages) differ from its last
  passing build's;
- `upstream interface changed`: an upstream published another interface version since;
- `upstream data changed`: an upstream node whose data it stores was rebuilt since;
- `upstream planned: P`: an upstream runs in this plan, so what it publishes is not known yet.

Levels follow the dependency graph: a project runs one level after the last of its planned
upstreams, so a job never starts before what it reads was published, and a failed job's consumers
(later levels) do not start. What the plan cannot see without the warehouse (a relation dropped,
a source table reloaded, the profile's environment) each job still checks when it runs: a planned
job may find nothing to do, an unplanned project is never started.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from mesh.core.errors import ConfigError, MeshError
from mesh.core.suggest import did_you_mean
from mesh.core.text import plural
from mesh.project.artifacts import Json
from mesh.project.config import Mesh
from mesh.run import fingerprint


@dataclass(frozen=True)
class Planned:
    """One project to run, and every reason it must."""

    project: str
    level: int
    reasons: tuple[str, ...]

    def to_json(self) -> Json:
        return {"project": self.project, "reasons": list(self.reasons)}


@dataclass
class MeshPlan:
    """The projects to run, level by level, and the ones left alone."""

    target: str
    env: str
    levels: list[list[Planned]] = field(default_factory=list)
    unchanged: dict[str, str] = field(default_factory=dict)  # project -> recorded_at of its build

    @property
    def planned(self) -> list[str]:
        return [p.project for level in self.levels for p in level]

    def to_json(self) -> Json:
        return {
            "format": 1,
            "target": self.target,
            "env": self.env,
            "levels": [[p.to_json() for p in level] for level in self.levels],
            "projects": self.planned,
            "unchanged": sorted(self.unchanged),
        }

    def github_outputs(self, max_levels: int) -> str:
        """`level_1=[…]` … `level_<max_levels>=[…]` (JSON lists) and `projects=N`, the lines a
        workflow's plan step appends to $GITHUB_OUTPUT; a plan deeper than the workflow's levels
        is refused (the workflow would leave its last projects unbuilt)."""
        if len(self.levels) > max_levels:
            raise ConfigError(
                f"the plan has {len(self.levels)} levels and the workflow runs {max_levels}: "
                "add level jobs to the workflow (and raise --max-levels)"
            )
        lines = [
            f"level_{index}={orjson.dumps([p.project for p in level]).decode()}"
            for index, level in enumerate(
                [*self.levels, *([[]] * (max_levels - len(self.levels)))], start=1
            )
        ]
        return "\n".join([*lines, f"projects={len(self.planned)}"])

    def render(self) -> str:
        if not self.levels:
            return f"plan ({self.target}): nothing to run; {len(self.unchanged)} projects unchanged"
        lines = [
            f"plan ({self.target}): {plural(len(self.planned), 'project')} in "
            f"{plural(len(self.levels), 'level')}"
        ]
        for index, level in enumerate(self.levels, start=1):
            lines.append(f"level {index}:")
            lines += [f"  {p.project}: {'; '.join(p.reasons)}" for p in level]
        if self.unchanged:
            lines.append(f"unchanged: {', '.join(sorted(self.unchanged))}")
        return "\n".join(lines)


def _shown(uids: list[str]) -> str:
    labels = [".".join(uid.split(".")[1:]) for uid in uids[:3]]
    return ", ".join(labels) + (f" (and {len(uids) - 3} more)" if len(uids) > 3 else "")


def _reasons(mesh: Mesh, name: str, planned: set[str], doc: Json | None) -> list[str]:
    if doc is None or doc.get("target") != mesh.target_name:
        return ["no passing build on record"]
    reasons = []
    files = fingerprint.project_files_digests(mesh, name)[0]
    if (doc.get("components") or {}).get("files") != files:
        reasons.append("changed")
    if doc.get("plan_context") != fingerprint.plan_context(mesh, name):
        # Also what a failed build left: its record is still the last passing build's.
        reasons.append("profile, tool versions or audits changed")
    upstreams = mesh.project(name).upstreams
    moved_upstream = [u for u in upstreams if u in planned]
    reasons += [f"upstream planned: {u}" for u in moved_upstream]
    versions = doc.get("upstream_versions") or {}
    for upstream in upstreams:
        if upstream in moved_upstream:
            continue
        entry = mesh.registry.read_latest(upstream, mesh.upstream_env(upstream))
        if entry is None or versions.get(upstream) != entry.version:
            reasons.append(f"upstream interface changed: {upstream}")
    if upstreams:
        current = fingerprint.upstream_data_versions(mesh, name)
        data = doc.get("upstream_data") or {}
        moved = sorted(uid for uid, v in data.items() if v is None or current.get(uid) != v)
        if moved:
            reasons.append(f"upstream data changed: {_shown(moved)}")
    return reasons


def plan_mesh(mesh: Mesh, projects: list[str] | None = None) -> MeshPlan:
    """The plan for every project built here (or `projects` and what they need first)."""
    order = mesh.build_order()
    wanted = set(order if projects is None else projects)
    for unknown in sorted(wanted - set(order)):
        raise ConfigError(
            f"{unknown!r} is not a project built here (mesh.yml)"
            f"{did_you_mean(unknown, order)}"
        )
    plan = MeshPlan(mesh.target_name, mesh.env)
    level_of: dict[str, int] = {}
    for name in order:
        if name not in wanted:
            continue
        try:
            doc = fingerprint.recorded(mesh, name)
        except MeshError:
            doc = None  # unreadable: planned (fail closed)
        reasons = _reasons(mesh, name, set(level_of), doc)
        if not reasons:
            plan.unchanged[name] = str((doc or {}).get("recorded_at") or "")
            continue
        level = 1 + max((level_of[u] for u in mesh.project(name).upstreams if u in level_of), default=-1)
        level_of[name] = level
        while len(plan.levels) <= level:
            plan.levels.append([])
        plan.levels[level].append(Planned(name, level, tuple(reasons)))
    return plan
