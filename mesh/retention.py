"""Registry housekeeping: find (and repair) what interrupted writes left behind, prune old history.

- `fsck_project`: the backend's own check (leftover temporary objects, entries whose checksum does
  not verify, a `latest` pointing outside history); with `repair`, leftovers are removed and the
  check is run again. Damaged entries are never deleted automatically: a human decides.
- `prune_project`: delete history entries beyond the newest `keep`, and never one that must stay:
  the current `latest`, anything newer than it (a publish in flight), and every version a consumer
  may still be pinned to. Pins are read conservatively: any version id named anywhere in a
  consumer's sync lock (`.mesh/lock.json`) or registry usage record, plus, for every usage record
  of a consumer of the project, the two versions that were newest when the consumer's manifest was
  built (the one it most likely read, and the one before in case the publish was still landing).
  An unreadable lock or usage record stops the prune: what it pins cannot be known.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from mesh.config import Mesh
from mesh.errors import CheckFailedError, ConfigError, MeshError, RegistryError
from mesh.names import check_name
from mesh.registry import Registry

_VERSION_IN_TEXT = re.compile(r"\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{8}")
_USAGE_KEY = re.compile(r"(?:^|/)([^/]+)/([^/]+)/usage/manifest\.json$")


# --- fsck -----------------------------------------------------------------------------------------


@dataclass
class FsckResult:
    """What `fsck_project` found, and what is left after a repair."""

    project: str
    env: str
    registry: str
    found: list[str]
    remaining: list[str]
    repair: bool

    @property
    def ok(self) -> bool:
        return not self.remaining

    def lines(self) -> list[str]:
        where = f"{self.project}/{self.env} in {self.registry}"
        if not self.found:
            return [f"fsck {where}: clean"]
        lines = [f"fsck {where}: {len(self.found)} problems"]
        lines += [f"  {problem}" for problem in self.found]
        if self.repair:
            fixed = len(self.found) - len(self.remaining)
            lines.append(f"  repaired {fixed}, {len(self.remaining)} left for a human")
        return lines

    def error(self) -> CheckFailedError:
        hint = (
            "damaged entries are never removed automatically: republish, or delete them by hand"
            if self.repair
            else "rerun with --repair to remove leftovers of interrupted writes"
        )
        return CheckFailedError(
            f"fsck {self.project}/{self.env}: {len(self.remaining)} problems remain; {hint}"
        )


def fsck_project(mesh: Mesh, project: str, repair: bool = False) -> FsckResult:
    """Check one project's registry objects in the target's env; `repair` removes leftovers."""
    registry, env = mesh.registry, mesh.env
    check_name("project", project)
    found = registry.fsck(project, env, repair)
    remaining = registry.fsck(project, env, False) if repair and found else found
    return FsckResult(project, env, registry.url, found, remaining, repair)


# --- prune ----------------------------------------------------------------------------------------


@dataclass
class PruneResult:
    """What `prune_project` kept and deleted (or would delete, on a dry run)."""

    project: str
    env: str
    registry: str
    latest: str | None
    newest: list[str]
    pinned: dict[str, str] = field(default_factory=dict)  # version -> who pins it
    deleted: list[str] = field(default_factory=list)
    dry_run: bool = False

    def lines(self) -> list[str]:
        verb = "would delete" if self.dry_run else "deleted"
        where = f"{self.project}/{self.env} in {self.registry}"
        lines = [
            f"prune {where}: {verb} {len(self.deleted)}, kept latest {self.latest or '-'}, "
            f"{len(self.newest)} newest, {len(self.pinned)} pinned by consumers"
        ]
        lines += [f"  pinned {v}: {why}" for v, why in sorted(self.pinned.items())]
        lines += [f"  {verb} {v}" for v in self.deleted]
        return lines


def _version_prefix(moment: str) -> str | None:
    """An ISO timestamp as the time part of a version id (they compare as strings), or None."""
    try:
        when = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return f"{when.astimezone(UTC):%Y%m%dT%H%M%S.%f}Z"


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _named_versions(doc: Any) -> set[str]:
    """Every version id mentioned anywhere in a parsed document."""
    return {m.group(0) for text in _strings(doc) for m in _VERSION_IN_TEXT.finditer(text)}


def _mentions(doc: Any, project: str) -> bool:
    return any(text == project or text.startswith(f"model.{project}.") for text in _strings(doc))


def _envs(mesh: Mesh) -> set[str]:
    envs = set()
    for target in mesh.config.targets.values():
        envs.add(target.env)
        if isinstance(target.upstream_env, str):
            envs.add(target.upstream_env)
        elif isinstance(target.upstream_env, dict):
            envs.update(target.upstream_env.values())
    envs.add(mesh.env)
    return envs


def _usage_owners(mesh: Mesh) -> set[tuple[str, str]]:
    """Every (project, env) whose usage record may exist: the mesh's projects in every env it
    knows, plus any usage object the registry holds (consumers from other repositories)."""
    owners = {(name, env) for name in mesh.config.projects for env in _envs(mesh)}
    registry: Registry = mesh.registry
    from mesh.registry.file import FileRegistry
    from mesh.registry.s3 import S3Registry

    if isinstance(registry, FileRegistry):
        if registry.root.is_dir():
            keys = [str(p.relative_to(registry.root)) for p in registry.root.glob("*/*/usage/manifest.json")]
        else:
            keys = []
    elif isinstance(registry, S3Registry):
        keys = registry._list(f"{registry.prefix}/" if registry.prefix else "", "list")
    else:  # pragma: no cover - every backend is one of the above
        keys = []
    for key in keys:
        match = _USAGE_KEY.search(key)
        if match:
            owners.add((match.group(1), match.group(2)))
    valid = set()
    for name, env in owners:
        try:
            valid.add((check_name("project", name), check_name("env", env)))
        except MeshError:
            continue
    return valid


def pinned_versions(mesh: Mesh, project: str, env: str, versions: list[str]) -> dict[str, str]:
    """Versions of project/env that consumers may still be pinned to, with who pins each."""
    known = set(versions)
    pinned: dict[str, str] = {}

    def pin(version: str, why: str) -> None:
        if version in known:
            pinned.setdefault(version, why)

    # Sync locks of the mesh's consumers (present where their projects are checked out: CI, dev).
    for name in sorted(mesh.config.projects):
        try:
            lock_path = mesh.project(name).mesh_dir / "lock.json"
        except ConfigError:
            continue  # the project is not checked out here
        if not lock_path.is_file():
            continue
        try:
            lock = orjson.loads(lock_path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ConfigError(
                f"cannot read {lock_path} ({exc}), so the versions {name} is synced to are "
                "unknown: fix or delete it (rerun `invoke sync`), then prune"
            ) from exc
        for version in _named_versions(lock):
            pin(version, f"{name} sync lock")
    # Usage records in the registry: versions they name, and what was newest when they were built.
    for name, usage_env in sorted(_usage_owners(mesh)):
        try:
            body = mesh.registry.read_private(name, usage_env, "usage")
        except RegistryError as exc:
            raise RegistryError(
                f"cannot read the usage record of {name}/{usage_env} ({exc}); it may pin "
                f"versions of {project}: fix it (rerun `invoke validate --project {name}`), then prune"
            ) from exc
        if body is None:
            continue
        try:
            usage = orjson.loads(body)
            if not isinstance(usage, dict):
                raise orjson.JSONDecodeError("not an object", "", 0)
        except orjson.JSONDecodeError as exc:
            raise ConfigError(
                f"the usage record of {name}/{usage_env} is not a JSON object; it may pin versions of "
                f"{project}: rerun `invoke validate --project {name}`, then prune"
            ) from exc
        for version in _named_versions(usage):
            pin(version, f"{name}/{usage_env} usage record")
        declared = False
        with contextlib.suppress(ConfigError):  # the project is not checked out here
            declared = project in mesh.project(name).upstreams
        if name == project or not (declared or _mentions(usage.get("uses"), project)):
            continue
        meta = usage.get("metadata")
        moments = [meta.get(k) for k in ("manifest_generated_at", "recorded_at")] if isinstance(meta, dict) else []
        stamps = [p for p in (_version_prefix(str(m)) for m in moments if m) if p]
        if not stamps:
            # No time to place it by: keep everything it could have read.
            for version in versions:
                pin(version, f"{name}/{usage_env} usage record (undated)")
            continue
        for stamp in stamps:
            before = [v for v in versions if v[: len(stamp)] <= stamp]
            for version in before[-2:]:
                pin(version, f"{name}/{usage_env} built against it ({stamp})")
    return pinned


def prune_project(mesh: Mesh, project: str, keep: int, dry_run: bool = False) -> PruneResult:
    """Delete history entries of project/env older than the newest `keep`, except pinned ones."""
    if keep < 1:
        raise ConfigError(f"--keep must be at least 1, got {keep}")
    registry, env = mesh.registry, mesh.env
    check_name("project", project)
    versions = registry.list_versions(project, env)
    latest = registry.read_latest(project, env)
    if versions and latest is None:
        raise RegistryError(
            f"{project}/{env} has history but no latest in {registry.url}: "
            f"run `invoke registry.fsck --project {project}` before pruning"
        )
    newest = versions[-keep:]
    result = PruneResult(project, env, registry.url, latest.version if latest else None, newest)
    result.dry_run = dry_run
    if latest is None:
        return result
    result.pinned = {
        v: why for v, why in pinned_versions(mesh, project, env, versions).items() if v not in newest
    }
    keep_set = set(newest) | set(result.pinned) | {latest.version}
    # Anything newer than latest is a publish in flight or one that lost a race: never touched.
    result.deleted = [v for v in versions if v not in keep_set and v < latest.version]
    if not dry_run:
        for version in result.deleted:
            registry.delete_version(project, env, version)
    return result
