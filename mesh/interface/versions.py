"""Registry views of one producer's history: the contract diff between two published versions, and a
rollback to an earlier one (published again as a new version, with its reason)."""

from __future__ import annotations

from typing import Any

from mesh.core.errors import (
    ChecksumError,
    NotFoundError,
)
from mesh.core.names import new_version
from mesh.core.surface import hint
from mesh.interface.contracts import (
    ContractChange,
    Say,
    _adapter,
    diff_interfaces,
)
from mesh.interface.impact import evaluate_usage
from mesh.interface.publish import PublishResult, _publisher
from mesh.interface.retention import newest_intact, recovery_target
from mesh.interface.usage import read_usage
from mesh.project.artifacts import Json
from mesh.project.config import Mesh
from mesh.registry import Entry, commit_version, read_latest_or_damage
from mesh.registry.document import dump_interface, load_interface

# --- registry views: diff between versions, rollback ----------------------------------------------


def _interface(mesh: Mesh, project: str, version: str) -> Json:
    entry = mesh.registry.read_version(project, mesh.env, version)
    return load_interface(entry.body, f"{project}/{mesh.env} {version}", project)


def diff_versions(
    mesh: Mesh, project: str, from_version: str | None = None, to_version: str | None = None
) -> tuple[str | None, str, list[ContractChange]]:
    """The contract diff between two history versions (default: the one before `to` -> latest).

    The default `from` skips damaged entries. When `to` is the first (intact) version and no `from`
    is given, there is nothing earlier to compare with: `from` comes back None and every public
    model of `to` is reported as added."""

    env = mesh.env
    if to_version is None:
        latest = mesh.registry.read_latest(project, env)
        if latest is None:
            raise NotFoundError(f"{project}/{env} has no latest in {mesh.registry.url}: publish it first")
        to_version = latest.version
    new = _interface(mesh, project, to_version)
    if from_version is None:

        # The one before `to`, skipping damaged entries (a recovery leaves one behind).
        earlier = newest_intact(mesh.registry, project, env, before=to_version)
        if earlier is None:
            changes = diff_interfaces({}, new["nodes"], adapter_type=_adapter(new))
            return None, to_version, changes
        from_version = earlier.version
    old = _interface(mesh, project, from_version)
    changes = diff_interfaces(old["nodes"], new["nodes"], adapter_type=_adapter(new) or _adapter(old))
    return from_version, to_version, changes


def _rollback_entry(
    doc: Json, to_version: str, previous: str | None, reason: str, recovered_from: str | None
) -> tuple[str, bytes]:
    """A new history entry (version, body) holding `doc`'s nodes unchanged, recorded as a
    rollback to `to_version` (and a recovery from the damaged `recovered_from`, if given)."""
    from datetime import UTC, datetime


    meta = doc["metadata"]["mesh"]
    now = datetime.now(UTC)
    version = new_version(str(meta["content_sha256"]), now)
    dropped = ("reason", "breaking_changes", "rollback_of", "recovered_from")
    recorded: Json = {
        **{k: v for k, v in meta.items() if k not in dropped},
        "version": version,
        "published_at": now.isoformat().replace("+00:00", "Z"),
        "publisher": _publisher(),
        "previous": previous,
        "rollback_of": to_version,
        "reason": reason,
    }
    if recovered_from is not None:
        recorded["recovered_from"] = recovered_from
    entry = {**doc, "metadata": {**doc["metadata"], "mesh": recorded}}
    return version, dump_interface(entry)


def record_rollback(
    mesh: Mesh,
    project: str,
    to_version: str,
    reason: str,
    recovered_from: str | None,
    replaces: Entry,
    source: Json | None = None,
) -> str | None:
    """Record `to_version`'s nodes (or `source`'s) as a new history entry and make it latest, only
    if latest still is `replaces` (compare-and-swap on its token, a damaged latest included).

    The recovery of `invoke registry.fsck --repair`; returns the new version, or None when latest
    moved meanwhile (the entry then stays in history only, as a publish that lost its race)."""

    registry, env = mesh.registry, mesh.env
    doc = source if source is not None else _interface(mesh, project, to_version)
    previous = replaces.version or None
    version, body = _rollback_entry(doc, to_version, previous, reason, recovered_from)

    def still_there(current: Entry | None) -> bool:
        return current is not None and current.token == replaces.token

    replaced = commit_version(registry, project, env, version, body, still_there, over_damaged=True)
    return version if replaced else None


def rollback_project(
    mesh: Mesh,
    project: str,
    to_version: str,
    reason: str | None = None,
    allow_breaking: bool = False,
    say: Say = print,
) -> Any:
    """Make history version `to_version` latest again, as a new recorded publish.

    The new history entry holds `to_version`'s nodes unchanged, with `metadata.mesh.rollback_of` and
    `reason`. It deliberately skips publish's "older build" rule (its build is older by design); the
    contract gate still runs against the current latest, since consumers may already use what the
    rollback removes, and again against whatever another publisher makes latest meanwhile.

    A damaged latest (one that does not read back whole) is replaced too, by the same
    compare-and-swap: the gate then compares with the newest intact version (what fsck would
    recover to) and says so, and the entry records `recovered_from` the damaged version. Returns a
    PublishResult.
    """

    registry, env = mesh.registry, mesh.env
    try:
        target = _interface(mesh, project, to_version)
    except ChecksumError as exc:
        raise ChecksumError(
            f"version {to_version} of {project}/{env} is damaged ({str(exc).split('; ')[0]}): roll "
            f"back to an intact one, see {hint('registry.list', '--project', project)}"
        ) from exc
    nodes: Json = target["nodes"]
    sha = str(target["metadata"]["mesh"]["content_sha256"])

    def gate(baseline: Json, baseline_version: str) -> None:
        changes = diff_interfaces(baseline["nodes"], nodes, adapter_type=_adapter(baseline))
        result = evaluate_usage(
            project, env, baseline_version, changes, read_usage(mesh), allow_breaking,
            reason or "rollback",
        )
        for line in result.lines():
            say(line)
        if result.blocked:
            raise result.error()

    latest = read_latest_or_damage(registry, project, env)
    recovered_from: str | None = None
    if latest is not None and latest.damaged:
        gone = latest.version or "(unknown version)"
        recovered_from = latest.version or None
        base = recovery_target(registry, project, env, latest)
        if base is None:
            say(
                f"latest {gone} of {project}/{env} is damaged ({latest.damaged}) and no older "
                "version is intact: the contract gate has nothing to compare with"
            )
        else:
            say(
                f"latest {gone} of {project}/{env} is damaged ({latest.damaged}); the contract "
                f"gate compares with {base.version}, the newest intact version"
            )
            gate(_interface(mesh, project, base.version), base.version)
    elif latest is not None:
        current = load_interface(latest.body, f"{project}/{env} latest", project)
        if current["metadata"]["mesh"].get("content_sha256") == sha:
            return PublishResult(project, env, "unchanged", latest.version, latest.version, len(nodes), registry.url)
        gate(current, latest.version)
    judged = {latest.token if latest is not None else None}

    def should_replace(current: Entry | None) -> bool:
        # No "is my build newer?" rule: a rollback replaces whatever latest holds. But another
        # publisher may have moved latest since the gate ran: judge the rollback against that too.
        if current is None or current.damaged or current.token in judged:
            return True
        judged.add(current.token)
        gate(load_interface(current.body, f"{project}/{env} latest", project), current.version)
        return True

    previous = (latest.version or None) if latest is not None else None
    why = (reason or "").strip() or f"rollback to {to_version}" + (
        f"; latest {recovered_from or '(unknown version)'} was damaged" if latest is not None and latest.damaged else ""
    )
    version, body = _rollback_entry(target, to_version, previous, why, recovered_from)
    commit_version(registry, project, env, version, body, should_replace, over_damaged=True)
    if latest is not None and latest.damaged:
        say(f"the damaged {latest.version or 'latest'} stays in history, no longer latest")
    return PublishResult(project, env, "published", version, previous, len(nodes), registry.url)
