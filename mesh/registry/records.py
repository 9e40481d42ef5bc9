"""A project's private records read back under the schema, for decisions other layers make: a
record that cannot be read, or that the schema refuses, decides nothing (the caller builds, or
fails closed)."""

from __future__ import annotations

from typing import Any

from mesh.core.errors import ManifestError, MeshError, RegistryError
from mesh.registry.base import Registry
from mesh.registry.document import parse_json
from mesh.registry.record_schema import FingerprintRecord, check_record

FINGERPRINT_FORMAT = 2  # 2: components (files, generated, context), upstreams and their data versions


def fingerprint_record(registry: Registry, env: str, name: str) -> dict[str, Any] | None:
    """The fingerprint record of `name`'s last passing build in `env`, or None (unreadable: None)."""
    try:
        body = registry.read_private(name, env, "fingerprint")
        doc = parse_json(body, f"{name}/{env} fingerprint") if body else None
    except (RegistryError, ManifestError):
        return None  # a damaged record only costs a rebuild
    if not isinstance(doc, dict) or doc.get("format") != FINGERPRINT_FORMAT:
        return None  # an older record only costs a rebuild
    try:
        check_record(FingerprintRecord, doc, name, env, f"{name}/{env} fingerprint")
    except MeshError:
        return None  # a record the schema refuses decides nothing: the project builds
    return doc


def recorded_consumers(registry: Registry, env: str, producer: str) -> list[str]:
    """Projects whose last passing build (in `env`) read `producer`."""
    found = []
    for name in registry.list_private(env, "fingerprint"):
        upstreams = (fingerprint_record(registry, env, name) or {}).get("upstreams")
        if isinstance(upstreams, list) and producer in upstreams:
            found.append(name)
    return sorted(found)
