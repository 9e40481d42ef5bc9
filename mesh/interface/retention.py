"""Registry housekeeping: find (and repair) what interrupted writes left behind, prune old history.

- `fsck_project`: the backend's own check (leftover temporary objects, entries whose checksum does
  not verify, a `latest` pointing outside history) plus a damaged `latest`; with `repair`,
  leftovers are removed, a damaged `latest` is recovered (restored from its own intact history
  entry, else the newest intact version is recorded as a new entry and made latest by
  compare-and-swap), and the check is run again. Damaged entries are never deleted: a human
  decides (or prune removes them with the rest of old history).
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

from mesh.core.errors import (
    CheckFailedError,
    ChecksumError,
    ConfigError,
    ConflictError,
    ManifestError,
    MeshError,
    NotFoundError,
    RegistryError,
)
from mesh.core.names import check_name
from mesh.core.surface import hint
from mesh.core.text import plural
from mesh.project.config import Mesh
from mesh.registry import Entry, Registry, read_latest_or_damage
from mesh.registry.base import LATEST_DAMAGE_PREFIXES, damaged_entry_problem, damaged_entry_version
from mesh.registry.document import load_interface, read_interface
from mesh.registry.file import FileRegistry
from mesh.registry.signing import SignatureError

_VERSION_IN_TEXT = re.compile(r"\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{8}")
_USAGE_KEY = re.compile(r"(?:^|/)([^/]+)/([^/]+)/usage/manifest\.json$")


# --- history, entry by entry ----------------------------------------------------------------------


@dataclass(frozen=True)
class VersionInfo:
    """What one history entry says about itself, or why it cannot be read (`damage`)."""

    version: str
    damage: str | None = None
    published_at: str | None = None
    publisher: str | None = None
    public_models: int | None = None
    content_sha256: str | None = None
    rollback_of: str | None = None
    recovered_from: str | None = None
    reason: str | None = None

    @property
    def intact(self) -> bool:
        return self.damage is None


def _cause(exc: Exception) -> str:
    """An error's finding without its advice (the text before the first `; `)."""
    return str(exc).split("; ")[0]


def inspect_version(registry: Registry, project: str, env: str, version: str) -> VersionInfo:
    """Read one history entry whole (checksum, interface, content hash) and summarise it.

    Damage (bytes failing their checksum, a missing entry, a body that is no interface of
    `project`) is reported in `damage`; any other registry error (S3 unreachable) is raised."""

    what = f"{project}/{env} {version}"
    try:
        body = registry.read_version(project, env, version).body
    except SignatureError as exc:
        return VersionInfo(version, damage=_cause(exc).replace(f"{project}/{env} interface {version}", "it"))
    except ChecksumError:
        return VersionInfo(version, damage="its bytes do not match their stored SHA-256 checksum")
    except NotFoundError:
        return VersionInfo(version, damage="it is missing or incomplete")
    try:
        doc = read_interface(body, what, project, lazy=True, env=env, version=version).doc
    except (ChecksumError, ManifestError) as exc:
        return VersionInfo(version, damage=_cause(exc).replace(f"{what}: ", "").replace(what, "it"))
    meta = doc["metadata"]["mesh"]

    def text(key: str) -> str | None:
        value = meta.get(key)
        return None if value is None else str(value)

    return VersionInfo(
        version,
        published_at=text("published_at"),
        publisher=text("publisher"),
        public_models=len(doc["nodes"]),
        content_sha256=text("content_sha256"),
        rollback_of=text("rollback_of"),
        recovered_from=text("recovered_from"),
        reason=text("reason"),
    )


def history(registry: Registry, project: str, env: str) -> list[VersionInfo]:
    """Every history entry of project/env, newest first, each read whole."""
    versions = registry.list_versions(project, env)
    return [inspect_version(registry, project, env, v) for v in reversed(versions)]


def newest_intact(
    registry: Registry, project: str, env: str, before: str | None = None
) -> VersionInfo | None:
    """The newest history entry that reads back whole, older than `before` when given.

    Recovery passes the damaged latest as `before`: entries newer than it are never chosen, they
    never were latest (a publish that lost its race to a newer build, or one still in flight)."""
    for version in reversed(registry.list_versions(project, env)):
        if before is not None and version >= before:
            continue
        info = inspect_version(registry, project, env, version)
        if info.intact:
            return info
    return None


# --- fsck -----------------------------------------------------------------------------------------


@dataclass
class _Inspection:
    """One pass of fsck over project/env."""

    problems: list[str]
    notes: list[str]
    latest: Entry | None  # what `latest` holds; `damaged` set when it does not read back whole
    unrecorded: str | None = None  # latest reads whole, but its own history entry is damaged


def _inspect(registry: Registry, project: str, env: str, repair: bool) -> _Inspection:
    found = registry.fsck(project, env, repair)
    latest = read_latest_or_damage(registry, project, env)
    copy_differs = [p for p in found if p.startswith("latest is damaged: it claims")]
    if latest is not None and not latest.damaged and copy_differs:  # S3: latest is not its entry
        latest = Entry(latest.version, b"", latest.token, damaged=copy_differs[0].removeprefix("latest is damaged: "))
    damaged_latest = latest if latest is not None and latest.damaged else None
    entries = history(registry, project, env)
    # Entries whose bytes verify but which no reader accepts (the schema, a signature): damage too.
    reported = {v for v in map(damaged_entry_version, found) if v}
    found += [damaged_entry_problem(i.version, i.damage) for i in entries if not i.intact and i.version not in reported]
    damaged = {v for v in map(damaged_entry_version, found) if v}
    recovered: dict[str, str] = {}  # damaged version -> the intact entry that recovered from it
    if damaged:
        for info in entries:
            if info.intact and info.recovered_from in damaged:
                recovered.setdefault(info.recovered_from, info.version)
    result = _Inspection([], [], latest)
    for problem in found:
        version = damaged_entry_version(problem)
        if damaged_latest is not None and (
            problem.startswith(LATEST_DAMAGE_PREFIXES) or version == damaged_latest.version
        ):
            continue  # reported once, below
        if version is not None and latest is not None and version == latest.version:
            result.unrecorded = version
            problem = (
                f"the history entry of latest {version} is damaged (the copy in latest/ reads "
                f"whole): {problem.split(' is damaged: ', 1)[1]}"
            )
        elif version is not None and version in recovered:
            result.notes.append(
                f"history entry {version} is damaged; latest was recovered from it by "
                f"{recovered[version]} (it stays for the record until "
                f"{hint('registry.prune', '--project', project, '--keep', 'N')} removes it)"
            )
            continue
        result.problems.append(problem)
    if damaged_latest is not None:
        result.problems.append(
            f"latest {damaged_latest.version or '(unknown version)'} is damaged: "
            f"{damaged_latest.damaged}"
        )
    return result


@dataclass
class FsckResult:
    """What `fsck_project` found, what a repair did, and what is left."""

    project: str
    env: str
    registry: str
    found: list[str]
    remaining: list[str]
    repair: bool
    actions: list[str] = field(default_factory=list)  # what the repair did, one line each
    notes: list[str] = field(default_factory=list)  # known damage that needs nothing more
    next_step: str = ""  # what to run for what remains

    @property
    def ok(self) -> bool:
        return not self.remaining

    def lines(self) -> list[str]:
        where = f"{self.project}/{self.env} in {self.registry}"
        if not self.found:
            return [f"fsck {where}: clean"] + [f"  note: {note}" for note in self.notes]
        lines = [f"fsck {where}: {plural(len(self.found), 'problem')}"]
        lines += [f"  {problem}" for problem in self.found]
        lines += [f"  repaired: {action}" for action in self.actions]
        if not self.actions:  # after a repair, its own line says what became of the damaged entry
            lines += [f"  note: {note}" for note in self.notes]
        if self.repair:
            fixed = len(self.found) - len(self.remaining)
            lines.append(f"  repaired {fixed}, {len(self.remaining)} left for a human")
        return lines

    def error(self) -> CheckFailedError:
        count = plural(len(self.remaining), "problem")
        verb = "remains" if len(self.remaining) == 1 else "remain"
        return CheckFailedError(f"fsck {self.project}/{self.env}: {count} {verb}; {self.next_step}")


def _next_step(project: str, inspection: _Inspection, target: VersionInfo | None, repair: bool) -> str:
    """What to run for what an inspection found."""
    fix = hint("registry.fsck", "--project", project, "--repair")
    latest = inspection.latest
    if latest is not None and latest.damaged:
        if repair or target is None:
            return (
                f"no intact version older than the damaged latest to recover to: a passing build of "
                f"{project} publishes over it ({hint('mesh', '--full')}, or "
                f"{hint('build', '--project', project)} then {hint('publish', '--project', project)}), "
                f"or roll back to a version from {hint('registry.list', '--project', project)} with "
                f"{hint('registry.rollback', '--project', project, '--to', 'VERSION')}"
            )
        if latest.version and target.version == latest.version:
            return f"run {fix} to restore latest from its intact history entry {target.version}"
        return (
            f"run {fix} to make {target.version} (the newest intact version) latest again, or "
            f"{hint('registry.rollback', '--project', project, '--to', 'VERSION')} for another one"
        )
    if inspection.unrecorded and not repair:
        return f"run {fix} to record latest {inspection.unrecorded} again as an intact history entry"
    if repair:
        return (
            "damaged history entries are never removed automatically: "
            f"{hint('registry.prune', '--project', project, '--keep', 'N')} removes old ones, or "
            "delete them by hand (README: Recovery)"
        )
    return f"rerun with --repair ({fix}) to remove leftovers of interrupted writes"


def recovery_target(registry: Registry, project: str, env: str, latest: Entry) -> VersionInfo | None:
    """What a damaged `latest` is recovered to: its own history entry if that one is intact (S3,
    where `latest` is a copy), else the newest intact entry older than it."""
    if latest.version:
        own = inspect_version(registry, project, env, latest.version)
        if own.intact:
            return own
        return newest_intact(registry, project, env, before=latest.version)
    return newest_intact(registry, project, env)


def fsck_project(mesh: Mesh, project: str, repair: bool = False) -> FsckResult:
    """Check one project's registry objects in the target's env.

    `repair` removes leftovers of interrupted writes and recovers a damaged `latest`: it is
    restored from its own history entry when that one is intact (S3 keeps `latest` as a copy),
    else the newest intact history version older than it becomes latest again, as a new recorded
    history entry (`metadata.mesh.rollback_of`, `recovered_from`, `reason`) moved by the same
    compare-and-swap as a publish. A damaged entry is never deleted: it stays in history, no longer
    latest, and later checks note it instead of reporting it again.
    """
    registry, env = mesh.registry, mesh.env
    check_name("project", project)
    first = _inspect(registry, project, env, repair)
    latest = first.latest
    target = (
        recovery_target(registry, project, env, latest)
        if latest is not None and latest.damaged
        else None
    )
    actions: list[str] = []
    if repair:
        leftovers = [p for p in first.problems if p.startswith("leftover of an interrupted write")]
        if leftovers:
            actions.append(f"removed {plural(len(leftovers), 'leftover')} of interrupted writes")
        if latest is not None and latest.damaged and target is not None:
            actions.append(_recover(mesh, project, latest, target))
        elif first.unrecorded and latest is not None:
            actions.append(_rerecord(mesh, project, latest))
    after = _inspect(registry, project, env, False) if repair and first.problems else first
    result = FsckResult(
        project, env, registry.url, first.problems, after.problems, repair, actions, after.notes
    )
    if after.problems:
        retarget = (
            recovery_target(registry, project, env, after.latest)
            if after.latest is not None and after.latest.damaged
            else None
        )
        result.next_step = _next_step(project, after, retarget, repair)
    return result


def _recover(mesh: Mesh, project: str, damaged: Entry, target: VersionInfo) -> str:
    """Replace a damaged `latest` by `target`, by compare-and-swap on the damaged object's token."""
    from mesh.interface.versions import record_rollback

    registry, env = mesh.registry, mesh.env
    if damaged.version and target.version == damaged.version:
        body = registry.read_version(project, env, target.version).body
        try:
            registry.swap_latest(project, env, target.version, body, damaged.token)
        except ConflictError:
            return _moved(registry, project, env)
        return (
            f"latest is {target.version} again, restored from its intact history entry (only the "
            "copy in latest/ was damaged)"
        )
    gone = damaged.version or "(unknown version)"
    outcome = record_rollback(
        mesh,
        project,
        target.version,
        reason=f"recovery: latest {gone} was damaged ({damaged.damaged})",
        recovered_from=damaged.version or None,
        replaces=damaged,
    )
    if outcome is None:
        return _moved(registry, project, env)
    return (
        f"latest is now {outcome}, a new history entry holding {target.version} (the newest intact "
        f"version, published {target.published_at}); the damaged {gone} stays in history, no "
        "longer latest"
    )


def _rerecord(mesh: Mesh, project: str, latest: Entry) -> str:
    """Latest reads whole but its own history entry is damaged (S3): record it again."""
    from mesh.interface.versions import record_rollback

    env = mesh.env
    outcome = record_rollback(
        mesh,
        project,
        latest.version,
        reason=f"recovery: the history entry of latest {latest.version} was damaged; "
        "re-recorded from the intact copy in latest/",
        recovered_from=latest.version,
        replaces=latest,
        source=load_interface(latest.body, f"{project}/{env} latest", project),
    )
    if outcome is None:
        return _moved(mesh.registry, project, mesh.env)
    return (
        f"latest is now {outcome}, a new history entry holding latest {latest.version}'s intact "
        f"copy; the damaged entry {latest.version} stays in history, no longer latest"
    )


def _moved(registry: Registry, project: str, env: str) -> str:
    now = read_latest_or_damage(registry, project, env)
    shown = "nothing" if now is None else now.version or "(unknown version)"
    return f"nothing: latest of {project}/{env} moved meanwhile (now {shown}); run fsck again"


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
                f"unknown: fix or delete it (rerun {hint('sync', '--project', name)}), then prune"
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
                f"versions of {project}: fix it (rerun {hint('validate', '--project', name)}), then prune"
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
                f"{project}: rerun {hint('validate', '--project', name)}, then prune"
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
            f"run {hint('registry.fsck', '--project', project)} before pruning"
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
