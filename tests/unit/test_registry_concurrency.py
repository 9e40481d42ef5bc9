"""16 publishers race `commit_version` on one project/env while readers poll `latest`, per backend.

Every publisher and reader is its own process (spawned, so nothing is shared but the registry:
the folder backend's locks are per process). Publishers keep `latest` at the newest build by
(built_at, version), like `mesh publish` does. What must hold afterwards:
- no publish is lost: 16 history entries, each byte-identical to what its publisher sent;
- `latest` is the newest by (built_at, version), whoever finished last;
- every `latest` a reader saw parses, names its own version, is byte-identical to a history entry,
  and a reader never sees `latest` go back to an older build (the compare-and-swap held).

On S3 the requests go through tests/faultproxy.py, which only makes moto's conditional writes
atomic, as S3's are (moto checks If-Match and writes in two steps on a threaded server).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import time
import traceback
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mesh.core.names import new_version, sha256_hex
from mesh.registry import Entry, Registry, commit_version
from mesh.registry.file import FileRegistry
from mesh.registry.s3 import S3Registry
from tests.faultproxy import FaultProxy
from tests.servers import new_bucket, s3_environment

PUBLISHERS = 16
READERS = 3
P, E = "sales", "prod"
T0 = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
JOIN_TIMEOUT_S = 60.0


def make_body(index: int, built_at: str) -> tuple[str, bytes]:
    """A small manifest: the version id hashes the content, the body names its version."""
    nodes = {f"model.{P}.m{index}": {"columns": list(range(index))}}
    version = new_version(sha256_hex(json.dumps([built_at, nodes]).encode()))
    doc = {"metadata": {"mesh": {"version": version, "built_at": built_at}}, "nodes": nodes}
    return version, json.dumps(doc, sort_keys=True).encode()


def build_key(data: bytes) -> tuple[str, str]:
    mesh = json.loads(data)["metadata"]["mesh"]
    return mesh["built_at"], mesh["version"]


def open_spec(spec: tuple[str, ...]) -> Registry:
    if spec[0] == "file":
        return FileRegistry(Path(spec[1]))
    return S3Registry(spec[1], spec[2])


def publisher(spec: tuple[str, ...], version: str, data: bytes, start: Any, results: Any) -> None:
    """Child process: publish one build, replacing `latest` only with something newer."""
    try:
        registry = open_spec(spec)
        mine = build_key(data)

        def newer(current: Entry | None) -> bool:
            return current is None or mine > build_key(current.body)

        start.wait()
        results.put(("published", version, commit_version(registry, P, E, version, data, newer)))
    except BaseException:
        results.put(("error", version, traceback.format_exc()))


def reader(spec: tuple[str, ...], start: Any, stop: Any, results: Any) -> None:
    """Child process: read `latest` until told to stop; report what was seen, in order."""
    try:
        registry = open_spec(spec)
        seen: list[tuple[str, str]] = []  # (version, sha256) in the order read
        bodies: dict[str, bytes] = {}
        reads = 0
        start.wait()
        while not stop.is_set():
            entry = registry.read_latest(P, E)
            reads += 1
            if entry is None:
                continue
            doc = json.loads(entry.body)  # parses: never a torn object
            assert doc["metadata"]["mesh"]["version"] == entry.version, "version mismatch"
            digest = sha256_hex(entry.body)
            bodies[digest] = entry.body
            if not seen or seen[-1] != (entry.version, digest):
                seen.append((entry.version, digest))
        results.put(("read", reads, (seen, bodies)))
    except BaseException:
        results.put(("error", "reader", traceback.format_exc()))


def race(spec: tuple[str, ...], registry: Registry) -> None:
    ctx = multiprocessing.get_context("spawn")
    rng = random.Random(os.getpid())
    # Four builds share each built_at, so the version breaks ties; the order of starting is
    # unrelated to the order of the builds.
    builds = []
    for index in range(PUBLISHERS):
        built_at = (T0 + timedelta(minutes=rng.randrange(4))).isoformat()
        builds.append(make_body(index, built_at))
    rng.shuffle(builds)
    start = ctx.Barrier(PUBLISHERS + READERS)
    stop = ctx.Event()
    results = ctx.Queue()
    readers = [
        ctx.Process(target=reader, args=(spec, start, stop, results)) for _ in range(READERS)
    ]
    publishers = [
        ctx.Process(target=publisher, args=(spec, version, data, start, results))
        for version, data in builds
    ]
    for proc in readers + publishers:
        proc.start()
    try:
        outcomes = [results.get(timeout=JOIN_TIMEOUT_S) for _ in publishers]
        time.sleep(0.2)  # let the readers see the final state too
        stop.set()
        outcomes += [results.get(timeout=JOIN_TIMEOUT_S) for _ in readers]
    finally:
        stop.set()
        for proc in readers + publishers:
            proc.join(timeout=JOIN_TIMEOUT_S)
            if proc.is_alive():
                proc.kill()
                proc.join()
    errors = [o[2] for o in outcomes if o[0] == "error"]
    assert not errors, "\n".join(errors)

    sent = {version: data for version, data in builds}
    # No publish lost, none altered.
    assert registry.list_versions(P, E) == sorted(sent)
    for version, data in sent.items():
        assert registry.read_version(P, E, version).body == data
    # latest is the newest build, and its publisher was told it won.
    newest = max(sent, key=lambda v: build_key(sent[v]))
    latest = registry.read_latest(P, E)
    assert latest is not None and (latest.version, latest.body) == (newest, sent[newest])
    won = {o[1] for o in outcomes if o[0] == "published" and o[2]}
    assert newest in won
    # Readers: only whole history entries, and latest never moved back to an older build.
    history_digests = {sha256_hex(data): version for version, data in sent.items()}
    total_reads = 0
    for _, reads, (seen, bodies) in (o for o in outcomes if o[0] == "read"):
        total_reads += reads
        for digest, data in bodies.items():
            assert sha256_hex(data) == digest and history_digests.get(digest) is not None
        keys = [build_key(bodies[digest]) for _, digest in seen]
        assert keys == sorted(keys), "a reader saw latest go back to an older build"
        assert all(history_digests[digest] == version for version, digest in seen)
    assert total_reads > READERS  # the readers really ran during the race


def test_file_registry_publishers_race(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    race(("file", str(root)), FileRegistry(root))


def test_s3_registry_publishers_race(
    moto_s3: str, fault_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bucket = new_bucket(moto_s3)
    # Children inherit this environment: every request goes through the proxy.
    s3_environment(monkeypatch, fault_proxy.url, tmp_path)
    race(("s3", bucket, "mesh"), S3Registry(bucket, "mesh"))
    # Every conditional write reached S3 through the proxy: 16 creates, at least one swap.
    assert fault_proxy.count("PUT", "/history/") == PUBLISHERS
    assert fault_proxy.count("PUT", "/latest/") >= 1
