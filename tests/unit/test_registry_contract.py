"""One contract, every backend: the guarantees of `mesh.registry.base`, run unchanged on each.

`RegistryContract` holds the tests; each backend subclass provides the `registry` fixture and the
three things a test cannot do through the protocol: list every stored byte (`snapshot`), damage
an object behind the registry's back (`corrupt`), and drop a stray object into the layout
(`put_raw`). The S3 subclass talks HTTP to a real `moto_server` (tests/servers.py).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mesh.core.errors import (
    ChecksumError,
    ConflictError,
    InvalidNameError,
    NotFoundError,
    RegistryError,
)
from mesh.core.names import NAME_RE, RESERVED, new_version, sha256_hex
from mesh.registry import Entry, commit_version
from mesh.registry.file import FileRegistry
from mesh.registry.s3 import S3Registry
from tests.servers import bucket_snapshot, new_bucket

T0 = datetime(2026, 11, 23, 10, 15, 2, 123456, tzinfo=UTC)
P, E = "sales", "prod"
BAD_NAMES = ["../x", "latest", "A B", "\uff44bt", "", "history", "x/y", "sales\n", ".."]
BAD_VERSIONS = ["../x", "latest", "", "20261123T101502.123456Z-3F2A9C1E", "x" * 10]

Snapshot = dict[str, Any]


def vid(i: int, body: bytes | None = None) -> str:
    """The i-th version id: later `i` sorts later, as real publishes do."""
    return new_version(sha256_hex(body or f"body {i}".encode()), now=T0 + timedelta(seconds=i))


def body(i: int) -> bytes:
    return b'{"metadata": {"mesh": {"version": %d}}, "nodes": {"\xc3\xa9": "\x00\xff"}}' % i


def one_line(exc: BaseException) -> str:
    message = str(exc)
    assert "\n" not in message
    return message


class RegistryContract:
    """The contract. Subclasses provide the fixture and the three backend-specific helpers."""

    @pytest.fixture
    def registry(self) -> Any:
        raise NotImplementedError

    def snapshot(self, registry: Any) -> Snapshot:
        """Every stored object (path -> bytes or link target): equal snapshots, equal registry."""
        raise NotImplementedError

    def corrupt(self, registry: Any, rel: str) -> str:
        """Change the bytes of the object at `rel` (relative to the env folder), keeping its
        stored checksum; return the location the error message must name."""
        raise NotImplementedError

    def put_raw(self, registry: Any, rel: str, data: bytes) -> None:
        """Store `data` at `rel` (relative to the registry root) without the registry."""
        raise NotImplementedError

    # --- history ------------------------------------------------------------------------------

    @settings(
        max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(data=st.binary(max_size=4096))
    def test_version_round_trips_bytes_exactly(self, registry: Any, data: bytes) -> None:
        version = new_version(sha256_hex(data) + os.urandom(4).hex())
        registry.create_version(P, E, version, data)
        entry = registry.read_version(P, E, version)
        assert entry == Entry(version, data, "")
        assert version in registry.list_versions(P, E)

    def test_existing_version_is_refused_and_kept_byte_for_byte(self, registry: Any) -> None:
        version = vid(1)
        registry.create_version(P, E, version, body(1))
        before = self.snapshot(registry)
        with pytest.raises(RegistryError, match="exists already; history is create-only") as info:
            registry.create_version(P, E, version, body(2))
        one_line(info.value)
        assert registry.read_version(P, E, version).body == body(1)
        assert self.snapshot(registry) == before
        assert registry.list_versions(P, E) == [version]

    def test_missing_version_raises_and_never_falls_back_to_latest(self, registry: Any) -> None:
        assert commit_version(registry, P, E, vid(1), body(1), lambda _: True)
        with pytest.raises(NotFoundError) as info:
            registry.read_version(P, E, vid(2))
        assert vid(2) in one_line(info.value)
        with pytest.raises(NotFoundError):
            registry.read_version("other", E, vid(1))

    def test_nothing_published_yet(self, registry: Any) -> None:
        assert registry.read_latest(P, E) is None
        assert registry.list_versions(P, E) == []
        assert registry.list_published() == []
        assert registry.read_private(P, E, "state") is None

    # --- latest -------------------------------------------------------------------------------

    def test_first_swap_expects_nothing_and_only_once(self, registry: Any) -> None:
        v1, v2 = vid(1), vid(2)
        registry.create_version(P, E, v1, body(1))
        registry.create_version(P, E, v2, body(2))
        token = registry.swap_latest(P, E, v1, body(1), None)
        latest = registry.read_latest(P, E)
        assert latest == Entry(v1, body(1), token)
        with pytest.raises(ConflictError) as info:
            registry.swap_latest(P, E, v2, body(2), None)
        assert P in one_line(info.value)
        assert registry.read_latest(P, E) == latest

    def test_stale_token_loses_and_latest_is_unchanged(self, registry: Any) -> None:
        v1, v2, v3 = vid(1), vid(2), vid(3)
        for i, v in enumerate((v1, v2, v3), start=1):
            registry.create_version(P, E, v, body(i))
        stale = registry.swap_latest(P, E, v1, body(1), None)
        fresh = registry.swap_latest(P, E, v2, body(2), stale)
        assert fresh != stale
        before = self.snapshot(registry)
        with pytest.raises(ConflictError):
            registry.swap_latest(P, E, v3, body(3), stale)
        assert registry.read_latest(P, E) == Entry(v2, body(2), fresh)
        assert self.snapshot(registry) == before
        # The fresh token still wins.
        assert registry.read_latest(P, E).token == fresh
        registry.swap_latest(P, E, v3, body(3), fresh)
        assert registry.read_latest(P, E).version == v3

    def test_latest_can_only_point_into_history(self, registry: Any) -> None:
        with pytest.raises(NotFoundError):
            registry.swap_latest(P, E, vid(1), body(1), None)
        assert registry.read_latest(P, E) is None

    def test_commit_version_that_is_refused_keeps_latest_and_records_history(
        self, registry: Any
    ) -> None:
        v1, v2 = vid(1), vid(2)
        assert commit_version(registry, P, E, v1, body(1), lambda current: current is None)
        seen: list[Entry | None] = []

        def refuse(current: Entry | None) -> bool:
            seen.append(current)
            return False

        assert commit_version(registry, P, E, v2, body(2), refuse) is False
        assert [e.version if e else None for e in seen] == [v1]
        assert registry.read_latest(P, E).version == v1
        assert registry.read_latest(P, E).body == body(1)
        assert registry.list_versions(P, E) == [v1, v2]
        assert registry.read_version(P, E, v2).body == body(2)

    # --- listing ------------------------------------------------------------------------------

    def test_list_versions_is_sorted_and_ignores_junk(self, registry: Any) -> None:
        order = [5, 1, 4, 2, 3]
        for i in order:
            registry.create_version(P, E, vid(i), body(i))
        env = f"{P}/{E}"
        self.put_raw(registry, f"{env}/history/not-a-version/manifest.json", b"{}")
        self.put_raw(registry, f"{env}/history/.tmp-{vid(9)}-abcd/manifest.json", b"{}")
        self.put_raw(registry, f"{env}/history/{vid(8).upper()}/manifest.json", b"{}")
        self.put_raw(registry, f"{env}/history/notes.txt", b"hello")
        self.put_raw(registry, f"{env}/historyx/{vid(7)}/manifest.json", b"{}")
        assert registry.list_versions(P, E) == [vid(i) for i in sorted(order)]
        assert registry.list_versions(P, "dev") == []

    def test_list_published_finds_every_latest_and_only_those(self, registry: Any) -> None:
        published = [("finance", "prod"), ("sales", "dev"), ("sales", "prod")]
        for n, (project, env) in enumerate(published):
            assert commit_version(registry, project, env, vid(n), body(n), lambda _: True)
        registry.create_version("marketing", "prod", vid(10), body(10))  # history only
        registry.write_private("ops", "prod", "state", b"{}")  # private only
        self.put_raw(registry, "README.md", b"not a project")
        assert registry.list_published() == published

    # --- private objects ----------------------------------------------------------------------

    def test_private_objects_round_trip_and_are_not_versions(self, registry: Any) -> None:
        assert registry.read_private(P, E, "usage") is None
        registry.write_private(P, E, "state", b'{"full": 1}')
        registry.write_private(P, E, "usage", b'{"uses": []}')
        registry.write_private(P, E, "state", b'{"full": 2}')
        assert registry.read_private(P, E, "state") == b'{"full": 2}'
        assert registry.read_private(P, E, "usage") == b'{"uses": []}'
        assert registry.list_versions(P, E) == []
        assert registry.read_latest(P, E) is None
        assert registry.list_published() == []
        with pytest.raises(RegistryError):
            registry.write_private(P, E, "secrets", b"x")

    def test_private_objects_are_listed_by_kind_and_env(self, registry: Any) -> None:
        assert registry.list_private(E, "usage") == []
        registry.write_private("consumer_b", E, "usage", b"{}")
        registry.write_private("consumer_a", E, "usage", b"{}")
        registry.write_private("consumer_c", "other", "usage", b"{}")
        registry.write_private(P, E, "state", b"{}")
        assert registry.list_private(E, "usage") == ["consumer_a", "consumer_b"]
        assert registry.list_private(E, "state") == [P]
        assert registry.list_private("other", "usage") == ["consumer_c"]
        assert registry.list_private(E, "secrets") == []

    # --- integrity ----------------------------------------------------------------------------

    def test_corrupt_history_entry_fails_its_checksum(self, registry: Any) -> None:
        v1, v2 = vid(1), vid(2)
        assert commit_version(registry, P, E, v1, body(1), lambda _: True)
        registry.create_version(P, E, v2, body(2))
        where = self.corrupt(registry, f"history/{v2}/manifest.json")
        with pytest.raises(ChecksumError) as info:
            registry.read_version(P, E, v2)
        assert where in one_line(info.value)
        assert registry.read_version(P, E, v1).body == body(1)  # the others still read
        problems = registry.fsck(P, E, repair=True)
        assert len(problems) == 1 and v2 in problems[0]
        assert registry.list_versions(P, E) == [v1, v2]  # fsck removes no history

    def test_corrupt_latest_fails_its_checksum(self, registry: Any) -> None:
        assert commit_version(registry, P, E, vid(1), body(1), lambda _: True)
        where = self.corrupt(registry, "latest/manifest.json")
        with pytest.raises(ChecksumError) as info:
            registry.read_latest(P, E)
        assert where in one_line(info.value)

    def test_corrupt_private_object_fails_its_checksum(self, registry: Any) -> None:
        registry.write_private(P, E, "state", b'{"full": 1}')
        where = self.corrupt(registry, "state/manifest.json")
        with pytest.raises(ChecksumError) as info:
            registry.read_private(P, E, "state")
        assert where in one_line(info.value)

    def test_fsck_of_a_healthy_registry_reports_nothing(self, registry: Any) -> None:
        assert commit_version(registry, P, E, vid(1), body(1), lambda _: True)
        registry.create_version(P, E, vid(2), body(2))
        registry.write_private(P, E, "usage", b"{}")
        before = self.snapshot(registry)
        assert registry.fsck(P, E, repair=False) == []
        assert registry.fsck(P, E, repair=True) == []
        assert self.snapshot(registry) == before

    # --- retention ----------------------------------------------------------------------------

    def test_delete_version_refuses_latest(self, registry: Any) -> None:
        v1, v2 = vid(1), vid(2)
        registry.create_version(P, E, v1, body(1))
        assert commit_version(registry, P, E, v2, body(2), lambda _: True)
        before = self.snapshot(registry)
        with pytest.raises(RegistryError, match="latest") as info:
            registry.delete_version(P, E, v2)
        one_line(info.value)
        assert self.snapshot(registry) == before
        registry.delete_version(P, E, v1)
        assert registry.list_versions(P, E) == [v2]
        with pytest.raises(NotFoundError):
            registry.read_version(P, E, v1)
        with pytest.raises(NotFoundError):
            registry.delete_version(P, E, v1)
        assert registry.read_latest(P, E).body == body(2)

    # --- names --------------------------------------------------------------------------------

    @pytest.mark.parametrize("bad", BAD_NAMES)
    def test_bad_project_and_env_names_are_refused_and_nothing_written(
        self, registry: Any, bad: str
    ) -> None:
        assert commit_version(registry, P, E, vid(1), body(1), lambda _: True)
        before = self.snapshot(registry)
        for project, env in ((bad, E), (P, bad)):
            calls: list[tuple[str, tuple[Any, ...]]] = [
                ("create_version", (project, env, vid(2), body(2))),
                ("swap_latest", (project, env, vid(1), body(1), None)),
                ("read_latest", (project, env)),
                ("read_version", (project, env, vid(1))),
                ("list_versions", (project, env)),
                ("write_private", (project, env, "state", b"{}")),
                ("read_private", (project, env, "state")),
                ("delete_version", (project, env, vid(1))),
                ("fsck", (project, env, True)),
            ]
            for method, args in calls:
                with pytest.raises(InvalidNameError) as info:
                    getattr(registry, method)(*args)
                one_line(info.value)
        assert self.snapshot(registry) == before

    @pytest.mark.parametrize("bad", BAD_VERSIONS)
    def test_bad_versions_are_refused_and_nothing_written(self, registry: Any, bad: str) -> None:
        assert commit_version(registry, P, E, vid(1), body(1), lambda _: True)
        before = self.snapshot(registry)
        calls = [
            lambda: registry.create_version(P, E, bad, body(2)),
            lambda: registry.swap_latest(P, E, bad, body(1), None),
            lambda: registry.read_version(P, E, bad),
            lambda: registry.delete_version(P, E, bad),
        ]
        for call in calls:
            with pytest.raises(InvalidNameError):
                call()
        assert self.snapshot(registry) == before

    @settings(
        max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(name=st.text(max_size=70))
    def test_any_project_name_is_either_valid_or_refused(self, registry: Any, name: str) -> None:
        valid = bool(NAME_RE.fullmatch(name)) and name not in RESERVED
        before = self.snapshot(registry)
        if valid:
            registry.write_private(name, E, "usage", b"{}")
            assert registry.read_private(name, E, "usage") == b"{}"
        else:
            with pytest.raises(InvalidNameError):
                registry.write_private(name, E, "usage", b"{}")
            assert self.snapshot(registry) == before


class TestFileRegistry(RegistryContract):
    @pytest.fixture
    def registry(self, tmp_path: Path) -> FileRegistry:
        return FileRegistry(tmp_path / "registry")

    def snapshot(self, registry: Any) -> Snapshot:
        root: Path = registry.root
        found: Snapshot = {}
        if not root.exists():
            return found
        for path in sorted(root.rglob("*")):
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = ("link", os.readlink(path))
            elif path.is_file():
                found[rel] = path.read_bytes()
            else:
                found[rel] = "dir"
        return found

    def corrupt(self, registry: Any, rel: str) -> str:
        env_dir = registry.root / P / E
        if rel.startswith("latest/"):  # a link into history: damage what it points at
            rel = rel.replace("latest", os.readlink(env_dir / "latest"), 1)
        path = env_dir / rel
        data = path.read_bytes()
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 0x20]))
        return str(path)

    def put_raw(self, registry: Any, rel: str, data: bytes) -> None:
        path = registry.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


class TestS3Registry(RegistryContract):
    @pytest.fixture(params=["team/registry", ""], ids=["prefix", "no-prefix"])
    def registry(self, request: pytest.FixtureRequest, s3_env: Any, moto_s3: str) -> S3Registry:
        # Objects of other registries in the same bucket must not leak into this one.
        bucket = new_bucket(moto_s3)
        neighbour = S3Registry(bucket, "team/other")
        assert commit_version(neighbour, P, E, vid(99), body(99), lambda _: True)
        return S3Registry(bucket, request.param)

    def _key(self, registry: S3Registry, rel: str) -> str:
        return f"{registry.prefix}/{rel}" if registry.prefix else rel

    def snapshot(self, registry: Any) -> Snapshot:
        return dict(bucket_snapshot(registry.client, registry.bucket))

    def corrupt(self, registry: Any, rel: str) -> str:
        key = self._key(registry, f"{P}/{E}/{rel}")
        client = registry.client
        old = client.get_object(Bucket=registry.bucket, Key=key)
        data = old["Body"].read()
        client.put_object(
            Bucket=registry.bucket,
            Key=key,
            Body=data[:-1] + bytes([data[-1] ^ 0x20]),
            Metadata=old["Metadata"],  # keeps the old sha256
        )
        assert client.head_object(Bucket=registry.bucket, Key=key)["Metadata"] == old["Metadata"]
        return f"s3://{registry.bucket}/{key}"

    def put_raw(self, registry: Any, rel: str, data: bytes) -> None:
        registry.client.put_object(Bucket=registry.bucket, Key=self._key(registry, rel), Body=data)

    def test_layout_is_the_documented_one(self, registry: S3Registry) -> None:
        """Keys are exactly base.py's layout under the prefix: dbt-loom and humans read them."""
        v1 = vid(1)
        assert commit_version(registry, P, E, v1, body(1), lambda _: True)
        registry.write_private(P, E, "state", b"s")
        registry.write_private(P, E, "usage", b"u")
        keys = {k for k in self.snapshot(registry) if not k.startswith("team/other/")}
        expected = {
            f"{P}/{E}/latest/manifest.json",
            f"{P}/{E}/history/{v1}/manifest.json",
            f"{P}/{E}/state/manifest.json",
            f"{P}/{E}/usage/manifest.json",
        }
        assert keys == {self._key(registry, k) for k in expected}
        meta = registry.client.head_object(
            Bucket=registry.bucket, Key=self._key(registry, f"{P}/{E}/latest/manifest.json")
        )["Metadata"]
        assert meta == {"sha256": sha256_hex(body(1)), "version": v1}


def test_s3_list_versions_pages_past_one_thousand(s3_registry: S3Registry) -> None:
    """S3 answers at most 1,000 keys a page: the listing must follow every page."""
    registry = s3_registry
    history = f"{registry.prefix}/{P}/{E}/history"
    versions = [vid(i) for i in range(1001)]
    client = registry.client
    for v in versions:  # raw puts: fast, and the listing must not care who wrote them
        client.put_object(Bucket=registry.bucket, Key=f"{history}/{v}/manifest.json", Body=b"")
    calls = []
    client.meta.events.register(
        "before-call.s3.ListObjectsV2", lambda **kw: calls.append(kw["params"])
    )
    assert registry.list_versions(P, E) == versions
    assert len(calls) == 2
