"""S3 backend: the registry as objects under `s3://{bucket}/{prefix}/` (the team and CI target).

How the guarantees of `mesh.registry.base` are kept with plain S3 requests, no locks, no database:
- a history entry is one `PutObject` with `If-None-Match: *`: S3 refuses (412) to create a key
  that exists, so history is create-only, and a single PUT is atomic, so there is nothing
  half-written to see or to clean up;
- `latest/manifest.json` is a copy of the history entry's bytes, replaced by `PutObject` with
  `If-Match: <ETag read before>` (the first publish with `If-None-Match: *`): the ETag is the
  compare-and-swap token, and a lost race is a 412 (or a 409 when two conditional writes overlap);
  the object carries user metadata `version`, so `read_latest` knows the version without parsing;
- every object carries user metadata `sha256` (hex of the body), checked on every read; the PUT
  also sends S3's native `ChecksumSHA256`, so S3 rejects a body damaged on the way in;
- a signature (mesh.registry.signing), when the writer has a key, is user metadata `signature`;
  `latest` carries its history entry's. Readers verify it against the keys the mesh trusts.

Retries, back-off and timeouts are botocore's (`standard` mode, bounded attempts), configured by
MESH_S3_MAX_ATTEMPTS and MESH_S3_TIMEOUT. The endpoint comes from boto3's own settings
(AWS_ENDPOINT_URL_S3 points it at an emulator); nothing here knows about emulators.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import threading
from typing import TYPE_CHECKING, Any, NoReturn

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    FlexibleChecksumError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    SSOError,
    TokenRetrievalError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from mesh.errors import (
    ChecksumError,
    ConfigError,
    ConflictError,
    CredentialsError,
    MeshError,
    NotFoundError,
    RegistryError,
)
from mesh.failpoints import failpoint
from mesh.names import NAME_RE, RESERVED, VERSION_RE, check_name, check_version, sha256_hex
from mesh.registry.base import (
    MANIFEST,
    PRIVATE_OBJECTS,
    CorruptLatestError,
    Entry,
    damaged_entry_problem,
)
from mesh.registry.signing import INTERFACE, NO_TRUST, SignatureError, Trust, sign
from mesh.surface import hint

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_REGION = "us-east-1"

# Error codes S3 answers when the caller is not who it claims or may not do this.
_AUTH_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AuthorizationHeaderMalformed",
        "403",
    }
)
_MISSING_KEY_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
# 412: the condition did not hold; 409: another conditional write to the key was in flight.
_PRECONDITION_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})
_CREDENTIAL_ERRORS = (
    NoCredentialsError,
    PartialCredentialsError,
    CredentialRetrievalError,
    TokenRetrievalError,
    SSOError,
    ProfileNotFound,
)


def _env_number(name: str, default: float, kind: type[int] | type[float]) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigError(f"{name}={raw!r} is not a positive {kind.__name__}: unset it or fix it")
    return value


def _error_code(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    code = str(error.get("Code") or "")
    if not code:
        code = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return code


def _retried(exc: ClientError) -> bool:
    """Whether botocore sent the request more than once: an earlier attempt may have landed."""
    return int(exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) or 0) > 0


class S3Registry:
    """A registry under `s3://{bucket}/{prefix}` (the prefix may be empty)."""

    def __init__(self, bucket: str, prefix: str = "", trust: Trust = NO_TRUST) -> None:
        if not bucket:
            raise ConfigError("S3 registry needs a bucket: use s3://<bucket>/<prefix>")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._client: S3Client | None = None
        self._client_lock = threading.Lock()
        self._max_attempts = DEFAULT_MAX_ATTEMPTS
        self.trust = trust

    def __repr__(self) -> str:
        return f"S3Registry({self.url!r})"

    # --- client ---------------------------------------------------------------------------------

    @property
    def client(self) -> S3Client:
        """The boto3 client, created on first use so that opening a registry costs nothing and
        reads the environment (credentials, endpoint, MESH_S3_*) at the time it is first needed."""
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = self._make_client()
        return self._client

    def _make_client(self) -> S3Client:
        attempts = int(_env_number("MESH_S3_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS, int))
        timeout = float(_env_number("MESH_S3_TIMEOUT", DEFAULT_TIMEOUT_S, float))
        self._max_attempts = attempts
        config = Config(
            retries={"mode": "standard", "total_max_attempts": attempts},
            connect_timeout=timeout,
            read_timeout=timeout,
        )
        try:
            # A session per registry: boto3's default session is not safe to share across threads.
            session = boto3.session.Session()
            region = session.region_name or DEFAULT_REGION
            return session.client("s3", region_name=region, config=config)
        except _CREDENTIAL_ERRORS as exc:
            raise CredentialsError(
                f"cannot load AWS settings for {self.url}: {exc}; check AWS_PROFILE and ~/.aws/config"
            ) from exc
        except BotoCoreError as exc:
            raise RegistryError(f"cannot set up the S3 client for {self.url}: {exc}") from exc

    def _endpoint(self) -> str:
        return str(self.client.meta.endpoint_url)

    # --- keys -----------------------------------------------------------------------------------

    def _base(self, project: str, env: str) -> str:
        rel = f"{check_name('project', project)}/{check_name('env', env)}"
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def _history_key(self, project: str, env: str, version: str) -> str:
        return f"{self._base(project, env)}/history/{check_version(version)}/{MANIFEST}"

    def _latest_key(self, project: str, env: str) -> str:
        return f"{self._base(project, env)}/latest/{MANIFEST}"

    def _private_key(self, project: str, env: str, name: str) -> str:
        if name not in PRIVATE_OBJECTS:
            raise RegistryError(
                f"unknown private object {name!r}: use one of {', '.join(sorted(PRIVATE_OBJECTS))}"
            )
        return f"{self._base(project, env)}/{PRIVATE_OBJECTS[name]}"

    def _where(self, key: str | None) -> str:
        return f"s3://{self.bucket}/{key}" if key else f"s3://{self.bucket}"

    # --- errors ---------------------------------------------------------------------------------

    def _fail(self, exc: Exception, action: str, key: str | None) -> NoReturn:
        """Raise the one-line mesh error that says what went wrong and what to check."""
        where = self._where(key)
        if isinstance(exc, MeshError):
            raise exc
        if isinstance(exc, ClientError):
            code = _error_code(exc)
            message = exc.response.get("Error", {}).get("Message") or ""
            if code == "NoSuchBucket":
                raise self._no_bucket(action, where) from exc
            if code in _AUTH_CODES:
                raise CredentialsError(
                    f"S3 refused to {action} {where} ({code}): check the AWS credentials "
                    "(AWS_PROFILE locally, the OIDC role in CI) and that they may use the bucket"
                ) from exc
            if code in _MISSING_KEY_CODES:
                raise NotFoundError(f"{where} not found ({action})") from exc
            raise RegistryError(
                f"S3 could not {action} {where}: {code} {message}".rstrip()
                + f" (after up to {self._max_attempts} attempts; MESH_S3_MAX_ATTEMPTS)"
            ) from exc
        if isinstance(exc, _CREDENTIAL_ERRORS):
            raise CredentialsError(
                f"no usable AWS credentials to {action} {where} ({exc}): set AWS_PROFILE "
                "(or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), or run in CI with OIDC"
            ) from exc
        if isinstance(exc, FlexibleChecksumError):
            raise ChecksumError(
                f"the bytes received for {where} do not match the checksum S3 stored with it "
                f"({exc}): retry; if it persists the object is corrupt: republish it or run "
                f"{hint('registry.fsck', '--project', 'P')}"
            ) from exc
        if isinstance(exc, BotoConnectionError | HTTPClientError | IncompleteReadError):
            raise RegistryError(
                f"cannot reach S3 endpoint {self._endpoint()} to {action} {where} "
                f"({type(exc).__name__}, {self._max_attempts} attempts): check "
                "AWS_ENDPOINT_URL_S3, the region and the network (MESH_S3_TIMEOUT)"
            ) from exc
        if isinstance(exc, BotoCoreError):
            raise RegistryError(f"S3 could not {action} {where}: {exc}") from exc
        raise exc

    def _no_bucket(self, action: str, where: str) -> RegistryError:
        return RegistryError(
            f"S3 bucket {self.bucket!r} does not exist ({action} {where}): check MESH_REGISTRY "
            "or the target's `registry` in mesh.yml, and AWS_ENDPOINT_URL_S3"
        )

    def _missing_object(self, key: str, action: str) -> None:
        """A HEAD answered 404 without a body: tell a missing bucket from a missing key."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _error_code(exc) in _MISSING_KEY_CODES | {"NoSuchBucket"}:
                raise self._no_bucket(action, self._where(key)) from exc
            self._fail(exc, action, key)
        except BotoCoreError as exc:
            self._fail(exc, action, key)

    # --- low-level object access ----------------------------------------------------------------

    def _get(self, key: str, action: str) -> tuple[bytes, dict[str, Any]] | None:
        """Body and response of `key` with its checksum verified, or None if it does not exist.

        botocore retries a request until an answer's headers arrive; a body that then arrives cut
        short or damaged is fetched again here, within the same MESH_S3_MAX_ATTEMPTS.
        """
        found = self._fetch(key, action)
        if found is None:
            return None
        body, response, damage = found
        if damage is not None:
            raise damage
        return body, response

    def _fetch(
        self, key: str, action: str
    ) -> tuple[bytes, dict[str, Any], ChecksumError | None] | None:
        """As `_get`, but an object whose bytes keep failing their checksum is returned with the
        ChecksumError (and the response it came with: its ETag is the token that replaces it)."""
        client = self.client  # sets self._max_attempts
        failure: MeshError | None = None
        damaged: tuple[bytes, dict[str, Any], ChecksumError] | None = None
        for _attempt in range(self._max_attempts):
            try:
                response = client.get_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
            except ClientError as exc:
                if _error_code(exc) in _MISSING_KEY_CODES:
                    return None
                self._fail(exc, action, key)
            except (BotoCoreError, HTTPClientError) as exc:
                self._fail(exc, action, key)
            try:
                body = response["Body"].read()
                self._verify(key, body, response.get("Metadata", {}))
                return body, dict(response), None
            except ChecksumError as exc:
                failure = exc
                damaged = (body, dict(response), exc)
            except (BotoCoreError, HTTPClientError) as exc:
                damaged = None
                try:
                    self._fail(exc, action, key)
                except MeshError as error:
                    failure = error
        if damaged is not None and failure is damaged[2]:
            return damaged
        assert failure is not None
        raise failure

    def _verify(self, key: str, body: bytes, metadata: dict[str, str]) -> None:
        expected = metadata.get("sha256", "")
        if not expected:
            raise ChecksumError(
                f"{self._where(key)} has no sha256 metadata, so it cannot be verified (not written "
                f"by mesh?): republish it or run {hint('registry.fsck', '--project', 'P')}"
            )
        if sha256_hex(body) != expected:
            raise ChecksumError(
                f"{self._where(key)} does not match its stored SHA-256 checksum; the object is "
                f"corrupt: republish it or run {hint('registry.fsck', '--project', 'P')}"
            )

    def _head(self, key: str, action: str) -> dict[str, Any] | None:
        """Metadata of `key`, or None if it does not exist (the bucket does)."""
        try:
            return dict(self.client.head_object(Bucket=self.bucket, Key=key))
        except ClientError as exc:
            if _error_code(exc) in _MISSING_KEY_CODES:
                self._missing_object(key, action)
                return None
            self._fail(exc, action, key)
        except BotoCoreError as exc:
            self._fail(exc, action, key)

    def _put(self, key: str, body: bytes, metadata: dict[str, str], **conditions: str) -> str:
        """One atomic PUT; returns the new ETag. ClientErrors are left to the caller."""
        digest = hashlib.sha256(body).digest()
        response = self.client.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=body,
            ContentType="application/json",
            Metadata={"sha256": digest.hex(), **metadata},
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=base64.b64encode(digest).decode("ascii"),
            **conditions,  # type: ignore[arg-type]
        )
        return str(response["ETag"])

    def _list(self, prefix: str, action: str) -> list[str]:
        """Every key under `prefix`, across as many pages as S3 needs."""
        keys: list[str] = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                keys.extend(item["Key"] for item in page.get("Contents", []) if "Key" in item)
        except (ClientError, BotoCoreError) as exc:
            self._fail(exc, action, prefix or None)
        return keys

    # --- reading --------------------------------------------------------------------------------

    def read_version(self, project: str, env: str, version: str) -> Entry:
        key = self._history_key(project, env, version)
        found = self._get(key, "read")
        if found is None:
            raise NotFoundError(
                f"version {version} of {project}/{env} is not in the registry {self.url} "
                f"({self._where(key)}); see {hint('registry.list', '--project', project)}"
            )
        body, response = found
        signature = response.get("Metadata", {}).get("signature")
        self.trust.verify(INTERFACE, project, env, body, signature, version)
        return Entry(version, body)

    def read_latest(self, project: str, env: str) -> Entry | None:
        key = self._latest_key(project, env)
        found = self._fetch(key, "read")
        if found is None:
            return None
        body, response, damage = found
        token = str(response["ETag"])
        claimed = response.get("Metadata", {}).get("version", "")
        version = claimed if VERSION_RE.fullmatch(claimed) else None
        if damage is not None:
            cause = (
                f"{self._where(key)} has no sha256 metadata, so it cannot be verified"
                if "no sha256 metadata" in str(damage)
                else f"{self._where(key)} does not match its stored SHA-256 checksum"
            )
            raise CorruptLatestError(project, env, version, token, cause) from damage
        if version is None:
            raise CorruptLatestError(
                project, env, None, token,
                f"{self._where(key)} carries no valid `version` metadata ({claimed!r}); it was "
                "not written by mesh",
            )
        signature = response.get("Metadata", {}).get("signature")
        try:
            self.trust.verify(INTERFACE, project, env, body, signature, version)
        except SignatureError as exc:
            raise CorruptLatestError(project, env, version, token, str(exc).split("; ")[0]) from exc
        return Entry(version, body, token=token)

    def list_versions(self, project: str, env: str) -> list[str]:
        history = f"{self._base(project, env)}/history/"
        pattern = re.compile(re.escape(history) + r"([^/]+)/" + re.escape(MANIFEST))
        versions = []
        for key in self._list(history, "list"):
            match = pattern.fullmatch(key)
            if match and VERSION_RE.fullmatch(match.group(1)):
                versions.append(match.group(1))
        return sorted(versions)

    def list_published(self) -> list[tuple[str, str]]:
        root = f"{self.prefix}/" if self.prefix else ""
        pattern = re.compile(re.escape(root) + r"([^/]+)/([^/]+)/latest/" + re.escape(MANIFEST))
        found = set()
        for key in self._list(root, "list"):
            match = pattern.fullmatch(key)
            if match and all(
                NAME_RE.fullmatch(name) and name not in RESERVED for name in match.groups()
            ):
                found.add((match.group(1), match.group(2)))
        return sorted(found)

    def list_private(self, env: str, name: str) -> list[str]:
        if name not in PRIVATE_OBJECTS:
            return []
        root = f"{self.prefix}/" if self.prefix else ""
        pattern = re.compile(
            re.escape(root) + r"([^/]+)/" + re.escape(f"{env}/{PRIVATE_OBJECTS[name]}")
        )
        found = set()
        for key in self._list(root, "list"):
            match = pattern.fullmatch(key)
            if match and NAME_RE.fullmatch(match.group(1)) and match.group(1) not in RESERVED:
                found.add(match.group(1))
        return sorted(found)

    # --- writing --------------------------------------------------------------------------------

    def create_version(self, project: str, env: str, version: str, body: bytes) -> None:
        key = self._history_key(project, env, version)
        signature = sign(INTERFACE, project, env, body)
        try:
            self._put(key, body, {"signature": signature} if signature else {}, IfNoneMatch="*")
            failpoint("registry.history.committed")
        except ClientError as exc:
            if _error_code(exc) not in _PRECONDITION_CODES:
                self._fail(exc, "write", key)
            # A retried PUT whose first attempt landed finds its own object: that is success.
            if _retried(exc):
                head = self._head(key, "check")
                if head and head.get("Metadata", {}).get("sha256") == sha256_hex(body):
                    return
            raise RegistryError(
                f"version {version} of {project}/{env} at {self._where(key)} exists already; "
                "history is create-only"
            ) from exc
        except BotoCoreError as exc:
            self._fail(exc, "write", key)

    def swap_latest(
        self, project: str, env: str, version: str, body: bytes, expected_token: str | None
    ) -> str:
        history_key = self._history_key(project, env, version)
        key = self._latest_key(project, env)
        digest = sha256_hex(body)
        head = self._head(history_key, "read")
        if head is None:
            raise NotFoundError(
                f"cannot point latest of {project}/{env} at {version}: it is not in history "
                f"({self._where(history_key)})"
            )
        if head.get("Metadata", {}).get("sha256") != digest:
            raise RegistryError(
                f"cannot point latest of {project}/{env} at {version}: the body differs from "
                f"the history entry {self._where(history_key)}"
            )
        condition = {"IfMatch": expected_token} if expected_token else {"IfNoneMatch": "*"}
        metadata = {"version": version}
        signature = head.get("Metadata", {}).get("signature")
        if signature:  # latest is a copy of its history entry: so is its signature
            metadata["signature"] = signature
        failpoint("registry.latest.prepared")
        try:
            etag = self._put(key, body, metadata, **condition)
            failpoint("registry.latest.swapped")
            return etag
        except ClientError as exc:
            code = _error_code(exc)
            # If-Match on a key that vanished is a 404: `latest` moved too (it was deleted).
            lost = code in _PRECONDITION_CODES or (expected_token and code in _MISSING_KEY_CODES)
            if not lost:
                self._fail(exc, "write", key)
            if _retried(exc):
                now = self._head(key, "check")
                meta = now.get("Metadata", {}) if now else {}
                if now and meta.get("version") == version and meta.get("sha256") == digest:
                    return str(now["ETag"])
            raise ConflictError(
                f"latest of {project}/{env} ({self._where(key)}) moved from "
                f"{expected_token or 'nothing'} to something else while publishing {version}"
            ) from exc
        except BotoCoreError as exc:
            self._fail(exc, "write", key)

    def write_private(self, project: str, env: str, name: str, body: bytes) -> None:
        key = self._private_key(project, env, name)
        signature = sign(name, project, env, body)
        try:
            self._put(key, body, {"signature": signature} if signature else {})
        except (ClientError, BotoCoreError) as exc:
            self._fail(exc, "write", key)

    def read_private(self, project: str, env: str, name: str) -> bytes | None:
        found = self._get(self._private_key(project, env, name), "read")
        if found is None:
            return None
        body, response = found
        self.trust.verify(name, project, env, body, response.get("Metadata", {}).get("signature"))
        return body

    def delete_version(self, project: str, env: str, version: str) -> None:
        """Remove one history entry. S3 has no lock to hold across the check and the delete; the
        check still refuses the common mistake (deleting what `latest` holds), and `latest` is a
        copy, so readers of `latest` never depend on the history object anyway."""
        key = self._history_key(project, env, version)
        latest = self._head(self._latest_key(project, env), "read")
        if latest is not None and latest.get("Metadata", {}).get("version") == version:
            raise RegistryError(f"refusing to delete {version}: it is latest of {project}/{env}")
        if self._head(key, "read") is None:
            raise NotFoundError(
                f"version {version} of {project}/{env} is not in the registry {self.url}"
            )
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            self._fail(exc, "delete", key)

    def fsck(self, project: str, env: str, repair: bool) -> list[str]:
        """Report damaged objects of project/env; never removes anything, `repair` or not.

        Every S3 PUT is atomic, so an interrupted write leaves no temporary object behind: there
        are no leftovers to repair. What can be wrong is reported for a human to decide on:
        history entries whose checksum does not verify, a `latest` that is damaged or points at a
        version missing from history, and keys that are not part of the layout.
        """
        base = f"{self._base(project, env)}/"
        problems: list[str] = []
        known = {f"{base}latest/{MANIFEST}"} | {f"{base}{rel}" for rel in PRIVATE_OBJECTS.values()}
        versions = set(self.list_versions(project, env))
        known |= {f"{base}history/{v}/{MANIFEST}" for v in versions}
        for key in self._list(base, "list"):
            if key not in known:
                problems.append(f"unexpected object (not part of the layout): {self._where(key)}")
        for version in sorted(versions):
            try:
                self.read_version(project, env, version)
            except RegistryError as exc:
                problems.append(damaged_entry_problem(version, exc))
        try:
            latest = self.read_latest(project, env)
        except RegistryError as exc:
            problems.append(f"latest is damaged: {exc}")
            latest = None
        if latest is not None:
            if latest.version not in versions:
                problems.append(f"latest points at a missing history entry: {latest.version}")
            else:
                head = self._head(self._history_key(project, env, latest.version), "read")
                if head and head.get("Metadata", {}).get("sha256") != sha256_hex(latest.body):
                    problems.append(
                        f"latest is damaged: it claims {latest.version} but its bytes differ "
                        "from that history entry's"
                    )
        for name in sorted(PRIVATE_OBJECTS):
            try:
                self.read_private(project, env, name)
            except RegistryError as exc:
                problems.append(f"private object {name} is damaged: {exc}")
        return problems
