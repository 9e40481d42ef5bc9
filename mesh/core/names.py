"""Names that become registry paths: projects, envs and version ids.

Every name is checked before it touches a path or an S3 key, so nothing can escape the registry root
(`../x`), collide with the layout (`latest`, `history`) or hide behind a Unicode look-alike.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

from mesh.core.errors import InvalidNameError
from mesh.core.surface import hint

NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,62}", re.ASCII)
VERSION_RE = re.compile(r"\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{8}", re.ASCII)
# Names the registry layout uses for its own folders and files.
RESERVED = frozenset(
    {"latest", "history", "state", "usage", "freshness", "fingerprint", "lock", "tmp"}
)


def check_name(kind: str, value: object) -> str:
    """Return `value` if it is a valid project or env name, else raise InvalidNameError."""
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise InvalidNameError(
            f"invalid {kind} name {value!r}: use 1-63 characters from a-z, 0-9 and _, "
            "starting with a letter"
        )
    if value in RESERVED:
        raise InvalidNameError(
            f"invalid {kind} name {value!r}: it is reserved by the registry layout "
            f"({', '.join(sorted(RESERVED))})"
        )
    return value


def check_version(value: object) -> str:
    """Return `value` if it is a version id of the form 20261123T101502.123456Z-3f2a9c1e."""
    if not isinstance(value, str) or not VERSION_RE.fullmatch(value):
        raise InvalidNameError(
            f"invalid version {value!r}: expected an id like 20261123T101502.123456Z-3f2a9c1e "
            f"(see {hint('registry.list', '--project', 'P')})"
        )
    return value


def new_version(content_sha256: str, now: datetime | None = None) -> str:
    """A version id that sorts by publish time and never collides: UTC time to the microsecond
    plus the first 8 hex digits of the content hash."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%S.%f}Z-{content_sha256[:8]}"


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()
