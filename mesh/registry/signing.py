"""Signatures on registry objects: a consumer can tell its producer's publish from a forgery.

Checksums detect damage, not forgery: anyone who can write a project's registry prefix can write
an interface with a valid checksum. With signing, a producer signs every object it stores (history
entries and `latest`, and its private `state`, `usage`, `freshness` and `fingerprint`) with an
Ed25519 key that only its CI holds (`MESH_SIGNING_KEY`), and each consumer's mesh.yml names the
public keys it trusts for that project. A consumer then refuses an unsigned or wrongly signed object
of a project it holds keys for, however valid its checksum.

What is signed: a domain tag, the kind of object, the project, the env and the SHA-256 of the bytes
(`message`), so a signature cannot be moved to another project, env or kind of object. The version
of an interface is inside its bytes (and the schema checks it against where it is stored). The
signature travels beside the object: a `manifest.json.sig` file in the folder registry, the object's
`signature` metadata on S3. `sign` and `verify` take any bytes, so other records (data versions,
proposals, acknowledgements) are signed the same way.

Keys: `MESH_SIGNING_KEY` holds the private key, as `ed25519-private:<base64 seed>` (what `invoke
registry.keygen` prints) or a PKCS#8 PEM. A public key is `ed25519:<base64 of its 32 bytes>`; a
signature names its key by `key_id` (16 hex digits of the key's SHA-256), so a project may list
several keys while it rotates.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from mesh.core.errors import ConfigError, SignatureError
from mesh.core.surface import hint

SIGNING_KEY_ENV = "MESH_SIGNING_KEY"
INTERFACE = "interface"  # the kind of `latest` and history entries; private objects use their name
SIGNATURE_FILE = "manifest.json.sig"
_DOMAIN = b"dbt-mesh signature v1"
_PUBLIC_PREFIX = "ed25519:"
_PRIVATE_PREFIX = "ed25519-private:"


def _b64decode(text: str) -> bytes:
    padded = text.strip() + "=" * (-len(text.strip()) % 4)
    return base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def key_id(raw_public: bytes) -> str:
    """How a signature names its key: 16 hex digits of the public key's SHA-256."""
    return hashlib.sha256(raw_public).hexdigest()[:16]


def message(kind: str, project: str, env: str, body: bytes) -> bytes:
    """What is signed: the object's bytes bound to where and what it is."""
    digest = hashlib.sha256(body).hexdigest()
    return b"\0".join([_DOMAIN, kind.encode(), project.encode(), env.encode(), digest.encode()])


@dataclass(frozen=True)
class PublicKey:
    """A public key a consumer trusts for a project."""

    raw: bytes
    text: str

    @property
    def key_id(self) -> str:
        return key_id(self.raw)

    @classmethod
    def parse(cls, text: str, where: str = "mesh.yml") -> PublicKey:
        """`ed25519:<base64 of 32 bytes>`; ConfigError otherwise."""
        value = str(text).strip()
        if not value.startswith(_PUBLIC_PREFIX):
            raise ConfigError(
                f"{where}: signing key {value[:24]!r} is not `ed25519:<base64>` "
                f"({hint('registry.keygen')} prints one)"
            )
        try:
            raw = _b64decode(value[len(_PUBLIC_PREFIX) :])
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            raise ConfigError(f"{where}: signing key {value[:24]!r}… is not 32 bytes of base64")
        return cls(raw, value)

    def verifies(self, signed: bytes, signature: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, signed)
        except InvalidSignature:
            return False
        return True


# --- signing -------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _private_key(text: str) -> object:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    value = text.strip()
    try:
        if value.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(value.encode(), password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise ValueError("not an Ed25519 key")
            return key
        seed = _b64decode(value.removeprefix(_PRIVATE_PREFIX))
        if len(seed) != 32:
            raise ValueError("not 32 bytes")
        return Ed25519PrivateKey.from_private_bytes(seed)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ConfigError(
            f"{SIGNING_KEY_ENV} is not an Ed25519 private key ({exc}): set it to what "
            f"{hint('registry.keygen')} printed (`ed25519-private:…`) or to a PKCS#8 PEM"
        ) from None


def signing_key() -> object | None:
    """The private key in MESH_SIGNING_KEY, or None when it is unset (objects go unsigned)."""
    text = os.environ.get(SIGNING_KEY_ENV, "")
    return _private_key(text) if text.strip() else None


def public_key_of(private: object) -> PublicKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    assert isinstance(private, Ed25519PrivateKey)
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PublicKey(raw, _PUBLIC_PREFIX + _b64encode(raw))


def sign(kind: str, project: str, env: str, body: bytes, private: object | None = None) -> str | None:
    """The signature of an object about to be stored (`ed25519:<key id>:<base64>`), made with
    `private` or MESH_SIGNING_KEY; None when there is no key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = private if private is not None else signing_key()
    if key is None:
        return None
    assert isinstance(key, Ed25519PrivateKey)
    signature = key.sign(message(kind, project, env, body))
    return f"ed25519:{public_key_of(key).key_id}:{_b64encode(signature)}"


def generate_key() -> tuple[str, str]:
    """A new key pair: (private, for MESH_SIGNING_KEY; public, for mesh.yml)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return _PRIVATE_PREFIX + _b64encode(seed), public_key_of(private).text


# --- verifying -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProjectTrust:
    """What a consumer trusts of one project: its keys, and up to which version history published
    before it signed is accepted unsigned (a decision recorded in mesh.yml)."""

    keys: tuple[PublicKey, ...]
    unsigned_until: str | None = None

    def key(self, kid: str) -> PublicKey | None:
        return next((k for k in self.keys if k.key_id == kid), None)


@dataclass(frozen=True)
class Trust:
    """The keys a mesh trusts, by project; a project without keys is read unverified."""

    projects: Mapping[str, ProjectTrust] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return any(t.keys for t in self.projects.values())

    def verify(
        self,
        kind: str,
        project: str,
        env: str,
        body: bytes,
        signature: str | None,
        version: str | None = None,
    ) -> None:
        """Raise SignatureError unless `body` is signed by a key trusted for `project` (or the
        project has no keys, or it is history up to `unsigned_until` and unsigned)."""
        trusted = self.projects.get(project)
        if trusted is None or not trusted.keys:
            return
        what = f"{project}/{env} {kind}" + (f" {version}" if version else "")
        keys = ", ".join(k.key_id for k in trusted.keys)
        if not signature:
            if version is not None and trusted.unsigned_until and version <= trusted.unsigned_until:
                return  # published before signing started: accepted by the recorded decision
            raise SignatureError(
                f"{what} is not signed, but mesh.yml trusts only objects of {project} signed by "
                f"its keys ({keys}): refusing it; {project} must publish it again with "
                f"{SIGNING_KEY_ENV} set (or record `unsigned_until` for history before signing)"
            )
        scheme, _, rest = signature.partition(":")
        kid, _, encoded = rest.partition(":")
        try:
            raw = _b64decode(encoded) if scheme == "ed25519" else b""
        except (binascii.Error, ValueError):
            raw = b""
        key = trusted.key(kid)
        if key is None or len(raw) != 64:
            raise SignatureError(
                f"{what} is signed by key {kid[:16] or '(none)'!r}, which mesh.yml does not trust "
                f"for {project} (trusted: {keys}): refusing it"
            )
        if not key.verifies(message(kind, project, env, body), raw):
            raise SignatureError(
                f"{what}: its signature by key {kid} does not verify (the object was changed after "
                "it was signed, or forged): refusing it"
            )


NO_TRUST = Trust()
