"""Manifest registries: pick a backend by URL, and the compare-and-swap publish loop they share."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from mesh.core.errors import ChecksumError, ConfigError, ConflictError, ManifestError, RegistryError
from mesh.registry.base import MANIFEST, CorruptLatestError, Entry, Registry
from mesh.registry.signing import NO_TRUST, Trust

__all__ = [
    "MANIFEST",
    "CorruptLatestError",
    "Entry",
    "Registry",
    "commit_version",
    "open_registry",
    "read_baseline",
    "read_latest_or_damage",
]

# Bounded: each lost race re-reads `latest` and re-runs the caller's checks against it.
CAS_ATTEMPTS = 16


def open_registry(url: str, base_dir: Path | None = None, trust: Trust = NO_TRUST) -> Registry:
    """Open the registry at `url`: `file://path` (relative to `base_dir`) or `s3://bucket/prefix`.

    `trust`: the signing keys by project; every object of a project with keys is verified on read
    (mesh.registry.signing), and every object written is signed when MESH_SIGNING_KEY is set."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        raw = url[len("file://") :]
        if not raw:
            raise ConfigError(f"registry URL {url!r} names no folder: use file://registry")
        path = Path(raw)
        if not path.is_absolute():
            path = (base_dir or Path.cwd()) / path
        from mesh.registry.file import FileRegistry

        return FileRegistry(path, trust=trust)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ConfigError(f"registry URL {url!r} names no bucket: use s3://bucket/prefix")
        from mesh.registry.s3 import S3Registry

        return S3Registry(parsed.netloc, parsed.path.strip("/"), trust=trust)
    raise ConfigError(
        f"unsupported registry URL {url!r}: use file://<folder> or s3://<bucket>/<prefix>"
    )


def commit_version(
    registry: Registry,
    project: str,
    env: str,
    version: str,
    body: bytes,
    should_replace: Callable[[Entry | None], bool],
    attempts: int = CAS_ATTEMPTS,
    create: bool = True,
    over_damaged: bool = False,
) -> bool:
    """Write `version` to history, then make it `latest` by compare-and-swap.

    `should_replace(current_latest)` re-runs the caller's checks against whatever `latest` holds at
    each attempt (e.g. "is my build newer?"); when it says no, the version stays in history only and
    this returns False. Returns True once `latest` holds `version`. `create=False` finishes a commit
    whose history entry is written already (an interrupted publish being rerun).

    A damaged `latest` raises CorruptLatestError, unless `over_damaged` (a recovery): the check then
    sees an Entry with `damaged` set and the damaged object's token, which the swap replaces.
    """
    if create:
        registry.create_version(project, env, version, body)
    for _ in range(attempts):
        current = read_latest_or_damage(registry, project, env) if over_damaged else (
            registry.read_latest(project, env)
        )
        if not should_replace(current):
            return False
        try:
            registry.swap_latest(project, env, version, body, current.token if current else None)
            return True
        except ConflictError:
            continue
    raise ConflictError(
        f"gave up making {version} latest of {project}/{env} after {attempts} lost races; "
        "it is in history: rerun the publish"
    )


def read_latest_or_damage(registry: Registry, project: str, env: str) -> Entry | None:
    """`latest`, or for a damaged one a stand-in Entry (`damaged` set, empty body, its token).

    Damaged: its bytes do not read back whole (or their signature does not verify), or they are
    not an interface the schema accepts (mesh.registry.schema): no reader would take it, so a
    recovery may replace it."""
    from mesh.registry.document import read_interface

    try:
        latest = registry.read_latest(project, env)
    except CorruptLatestError as exc:
        return Entry(exc.version or "", b"", exc.token, damaged=exc.cause)
    if latest is None:
        return None
    what = f"{project}/{env} latest"
    try:
        read_interface(latest.body, what, project, lazy=True, env=env, version=latest.version)
    except (ChecksumError, ManifestError) as exc:
        cause = str(exc).split("; ")[0].replace(f"{what} {latest.version}: ", "").replace(f"{what}: ", "")
        return Entry(latest.version, b"", latest.token, damaged=cause)
    return latest


def read_baseline(registry: Registry, project: str, env: str) -> tuple[Entry | None, str | None]:
    """What a producer's next change is judged against: `latest`, or, when `latest` is damaged
    (`read_latest_or_damage`), the newest history entry that reads back whole and that the schema
    accepts (None when there is none); and the damaged latest's version (None when latest is
    intact). A producer's passing build may then publish over the damaged latest, as a recorded
    publish: recovery never waits for a manual repair."""
    from mesh.registry.document import read_interface

    latest = read_latest_or_damage(registry, project, env)
    if latest is None or not latest.damaged:
        return latest, None
    damaged = latest.version or "unknown version"
    for version in reversed(registry.list_versions(project, env)):
        try:
            entry = registry.read_version(project, env, version)
            read_interface(entry.body, f"{project}/{env} {version}", project, lazy=True, env=env, version=version)
        except (RegistryError, ManifestError):
            continue
        return entry, damaged
    return None, damaged
