"""The registry contract every backend implements.

Layout (DESIGN.md), relative to the registry root:

    {project}/{env}/latest/manifest.json             the contract: the current interface
    {project}/{env}/history/{version}/manifest.json  immutable, one per publish
    {project}/{env}/state/manifest.json              the project's own full manifest (private)
    {project}/{env}/usage/manifest.json              what the project consumes upstream
    {project}/{env}/freshness/manifest.json          when each public node's data was last built
    {project}/{env}/fingerprint/manifest.json        inputs of the project's last passing build

Guarantees every backend gives (tests/unit/test_registry_contract.py runs the same suite on each):
- history objects are create-only: writing an existing version raises, never overwrites;
- `latest` is replaced by compare-and-swap on the token read before (None: there is none yet), so
  a reader sees the previous or the new complete object, never a mix;
- every object carries a SHA-256 checksum that is verified on every read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

MANIFEST = "manifest.json"
# Private objects a project keeps next to its interface, by short name.
PRIVATE_OBJECTS = {
    name: f"{name}/{MANIFEST}" for name in ("state", "usage", "freshness", "fingerprint")
}


@dataclass(frozen=True)
class Entry:
    """One interface read from the registry.

    `token` is the backend's compare-and-swap token for `latest` (the version id on the folder
    backend, the ETag on S3); it is empty for history entries.
    """

    version: str
    body: bytes
    token: str = ""


@runtime_checkable
class Registry(Protocol):
    """A manifest registry: a folder or an S3 prefix."""

    url: str

    def read_latest(self, project: str, env: str) -> Entry | None:
        """The current `latest` of project/env, or None if nothing was published."""
        ...

    def read_version(self, project: str, env: str, version: str) -> Entry:
        """One history entry; raises NotFoundError if it does not exist (never falls back)."""
        ...

    def list_versions(self, project: str, env: str) -> list[str]:
        """Every committed history version, oldest first."""
        ...

    def list_published(self) -> list[tuple[str, str]]:
        """Every (project, env) that has a `latest`."""
        ...

    def create_version(self, project: str, env: str, version: str, body: bytes) -> None:
        """Write a history entry; raises RegistryError if the version exists already."""
        ...

    def swap_latest(
        self, project: str, env: str, version: str, body: bytes, expected_token: str | None
    ) -> str:
        """Point `latest` at `version` if it still holds `expected_token`; return the new token.

        `body` must be the bytes of history entry `version` (S3 stores a copy and checks it; the
        folder backend links to the entry).

        Raises ConflictError when another publisher moved `latest` in between.
        """
        ...

    def write_private(self, project: str, env: str, name: str, body: bytes) -> None:
        """Store a private object (`state` or `usage`), replacing the previous one."""
        ...

    def read_private(self, project: str, env: str, name: str) -> bytes | None:
        """Read a private object, or None if there is none."""
        ...

    def list_private(self, env: str, name: str) -> list[str]:
        """Every project holding the private object `name` in `env` (e.g. each consumer's
        `usage`, whichever repository it lives in)."""
        ...

    def delete_version(self, project: str, env: str, version: str) -> None:
        """Remove one history entry (retention); never called on the version `latest` holds."""
        ...

    def fsck(self, project: str, env: str, repair: bool) -> list[str]:
        """Report (and with `repair`, remove) leftovers of interrupted writes."""
        ...
