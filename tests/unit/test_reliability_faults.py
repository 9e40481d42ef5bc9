"""Every S3 fault on every registry operation, transient and persistent, through tests/faultproxy.py.

tests/unit/test_registry_s3_faults.py covers one fault per operation (a 503 on a history PUT, a
lost answer to a create and to a swap, a slow GET of latest, a body corrupted every time). This
runs the whole matrix: reads (latest, a history entry, a private object, a listing) and writes
(create, swap, private object, delete) against error statuses, connection resets before and after
the request lands, stalls, and bodies that arrive cut short or damaged. What must hold:
- transient (fewer faults than MESH_S3_MAX_ATTEMPTS): the operation succeeds with the right result,
  within the configured attempts;
- persistent: it fails with one line naming the object and what to check, within the configured
  attempts, and never leaves anything but complete objects: `latest` is the old or the new
  complete version (a stalled compare-and-swap that lands late never overwrites a newer latest);
- a whole publish under a random storm of transient faults publishes exactly its build.
Long variant (invoke reliability): more storm rounds and faults.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from mesh.core.errors import ChecksumError, RegistryError
from mesh.core.names import new_version, sha256_hex
from mesh.interface.publish import publish_project
from mesh.project.config import load_mesh
from mesh.registry import commit_version
from mesh.registry.document import load_interface
from mesh.registry.s3 import S3Registry
from tests import factories
from tests.faultproxy import Fault, FaultProxy, running_proxy
from tests.reliability import LONG, report, scale
from tests.servers import admin_client, bucket_snapshot, new_bucket, s3_environment

T0 = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
P, E = "sales", "prod"
PREFIX = "reg"
ATTEMPTS = 4


def vid(i: int) -> str:
    return new_version(sha256_hex(b"%d" % i), now=T0 + timedelta(seconds=i))


def body(i: int) -> bytes:
    return json.dumps({"metadata": {"mesh": {"version": vid(i)}}, "nodes": {"n": i}}).encode()


def key(rel: str) -> str:
    return f"{PREFIX}/{P}/{E}/{rel}"


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore sleeps up to 1, 2, 4 s before retrying a 503 (throttling); the count of attempts,
    not the sleep, is under test, so the short variant sleeps 10 ms (the long one for real)."""
    if not LONG:
        from botocore.retries.standard import ExponentialBackoff

        monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.01)


@pytest.fixture
def bucket(s3_env: dict[str, str], moto_s3: str) -> str:
    """latest = v1, history = v1 v2, private `state`."""
    name = new_bucket(moto_s3)
    registry = S3Registry(name, PREFIX)
    assert commit_version(registry, P, E, vid(1), body(1), lambda _: True)
    registry.create_version(P, E, vid(2), body(2))
    registry.write_private(P, E, "state", b'{"state": 1}')
    return name


@pytest.fixture(scope="module")
def shared_proxy(moto_s3: str) -> Iterator[FaultProxy]:
    """One proxy for the module (starting and stopping one costs half a second)."""
    yield from running_proxy(moto_s3)


@pytest.fixture
def fault_proxy(shared_proxy: FaultProxy) -> Iterator[FaultProxy]:
    shared_proxy.clear()
    yield shared_proxy
    shared_proxy.clear()


@pytest.fixture
def via_proxy(
    bucket: str, fault_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> S3Registry:
    s3_environment(monkeypatch, fault_proxy.url, tmp_path)
    monkeypatch.setenv("MESH_S3_MAX_ATTEMPTS", str(ATTEMPTS))
    monkeypatch.setenv("MESH_S3_TIMEOUT", "10")
    return S3Registry(bucket, PREFIX)


def snapshot(moto_s3: str, bucket: str) -> dict[str, Any]:
    return bucket_snapshot(admin_client(moto_s3), bucket)


def assert_whole(moto_s3: str, bucket: str) -> None:
    """Every object is complete: its bytes match its sha256, and latest is a history entry."""
    objects = snapshot(moto_s3, bucket)
    for name, (data, meta) in objects.items():
        assert sha256_hex(data) == meta.get("sha256"), f"{name} is not a complete object"
    data, meta = objects[key("latest/manifest.json")]
    assert objects[key(f"history/{meta['version']}/manifest.json")][0] == data


# --- the matrix ---------------------------------------------------------------------------------

Op = Callable[[S3Registry], Any]
READS: dict[str, tuple[str, str, Op, Callable[[Any], bool]]] = {
    "read_latest": (
        "GET", r"/latest/manifest\.json", lambda r: r.read_latest(P, E),
        lambda e: e.version == vid(1) and e.body == body(1),
    ),
    "read_version": (
        "GET", r"/history/.+/manifest\.json", lambda r: r.read_version(P, E, vid(2)),
        lambda e: e.body == body(2),
    ),
    "read_private": (
        "GET", r"/state/manifest\.json", lambda r: r.read_private(P, E, "state"),
        lambda b: b == b'{"state": 1}',
    ),
    "list_versions": (
        "GET", r"list-type=2", lambda r: r.list_versions(P, E), lambda v: v == [vid(1), vid(2)],
    ),
}
WRITES: dict[str, tuple[str, str, Op, Callable[[S3Registry], bool]]] = {
    "create_version": (
        "PUT", r"/history/", lambda r: r.create_version(P, E, vid(3), body(3)),
        lambda r: r.read_version(P, E, vid(3)).body == body(3),
    ),
    "swap_latest": (
        "PUT", r"/latest/", lambda r: r.swap_latest(P, E, vid(2), body(2), r.read_latest(P, E).token),
        lambda r: (r.read_latest(P, E).version, r.read_latest(P, E).body) == (vid(2), body(2)),
    ),
    "write_private": (
        "PUT", r"/usage/", lambda r: r.write_private(P, E, "usage", b"{}"),
        lambda r: r.read_private(P, E, "usage") == b"{}",
    ),
    "delete_version": (
        "DELETE", r"/history/", lambda r: r.delete_version(P, E, vid(2)),
        lambda r: r.list_versions(P, E) == [vid(1)],
    ),
}
READ_FAULTS = ["503", "500", "reset", "lost_answer", "truncated", "corrupted"]
WRITE_FAULTS = ["503", "500", "reset", "lost_answer"]
# What a persistent fault's message must say (besides the object's key).
PERSISTENT_MESSAGE = {
    "503": "SlowDown",
    "500": "InternalError",
    "reset": "cannot reach S3 endpoint",
    "lost_answer": "cannot reach S3 endpoint",
    "truncated": "cannot reach S3 endpoint",
    "corrupted": "checksum",
}


def matrix(ops: list[str], kinds: list[str], offset: int) -> list[tuple[str, str]]:
    """(op, fault) pairs: all of them in the long variant; in the short one every third, chosen so
    that each op and each fault still occurs (and `offset` shifts which, between test kinds)."""
    return [
        (op, kind)
        for i, op in enumerate(ops)
        for j, kind in enumerate(kinds)
        if (LONG or (i + j + offset) % 3 == 0) and (op, kind) not in IMPOSSIBLE
    ]


# Listings carry no checksum (TLS protects them on the wire): a corrupted listing is not a case.
IMPOSSIBLE = {("list_versions", "corrupted")}


def fault(kind: str, method: str, path: str, times: int | None) -> Fault:
    if kind in ("503", "500"):
        return Fault("status", method=method, path=path, status=int(kind), times=times)
    action = {"reset": "drop", "lost_answer": "drop_response", "truncated": "truncate", "corrupted": "corrupt"}[kind]
    return Fault(action, method=method, path=path, times=times)  # type: ignore[arg-type]


def one_line(exc: BaseException, *parts: str) -> str:
    message = str(exc)
    assert "\n" not in message and message.strip() == message
    for part in parts:
        assert part.lower() in message.lower(), f"{part!r} not in {message!r}"
    return message


@pytest.mark.parametrize(("op", "kind"), matrix(list(READS), READ_FAULTS, 0))
def test_transient_read_faults_are_retried(
    via_proxy: S3Registry, fault_proxy: FaultProxy, op: str, kind: str
) -> None:
    method, path, call, ok = READS[op]
    injected = fault_proxy.add(fault(kind, method, path, times=ATTEMPTS - 1))
    assert ok(call(via_proxy))
    assert injected.times == 0  # every fault was really injected...
    assert fault_proxy.count(method, path) == ATTEMPTS  # ...and the last attempt succeeded
    report("s3 faults: transient", cases=1, faults=ATTEMPTS - 1)


@pytest.mark.parametrize(("op", "kind"), matrix(list(READS), READ_FAULTS, 1))
def test_persistent_read_faults_fail_clearly_within_bounds(
    via_proxy: S3Registry, fault_proxy: FaultProxy, moto_s3: str, bucket: str, op: str, kind: str
) -> None:
    method, path, call, _ = READS[op]
    before = snapshot(moto_s3, bucket)
    fault_proxy.add(fault(kind, method, path, times=None))
    with pytest.raises(RegistryError) as info:
        call(via_proxy)
    # A listing cut short does not parse: botocore reports (and retries) it as a server error.
    expected = "could not list" if (op, kind) == ("list_versions", "truncated") else PERSISTENT_MESSAGE[kind]
    one_line(info.value, expected, f"s3://{bucket}/{PREFIX}/{P}/{E}/")
    if kind == "corrupted":
        assert isinstance(info.value, ChecksumError)
    assert fault_proxy.count(method, path) == ATTEMPTS
    assert snapshot(moto_s3, bucket) == before
    report("s3 faults: persistent", cases=1, faults=ATTEMPTS)


@pytest.mark.parametrize(("op", "kind"), matrix(list(WRITES), WRITE_FAULTS, 0))
def test_transient_write_faults_are_retried(
    via_proxy: S3Registry, fault_proxy: FaultProxy, moto_s3: str, bucket: str, op: str, kind: str
) -> None:
    method, path, call, ok = WRITES[op]
    injected = fault_proxy.add(fault(kind, method, path, times=ATTEMPTS - 1))
    call(via_proxy)
    assert ok(via_proxy)
    assert injected.times == 0
    assert fault_proxy.count(method, path) == ATTEMPTS
    assert_whole(moto_s3, bucket)
    report("s3 faults: transient", cases=1, faults=ATTEMPTS - 1)


@pytest.mark.parametrize(("op", "kind"), matrix(list(WRITES), WRITE_FAULTS, 1))
def test_persistent_write_faults_fail_clearly_and_leave_whole_objects(
    via_proxy: S3Registry, fault_proxy: FaultProxy, moto_s3: str, bucket: str, op: str, kind: str
) -> None:
    method, path, call, ok = WRITES[op]
    before = snapshot(moto_s3, bucket)
    fault_proxy.add(fault(kind, method, path, times=None))
    with pytest.raises(RegistryError) as info:
        call(via_proxy)
    one_line(info.value, PERSISTENT_MESSAGE[kind], f"s3://{bucket}/{PREFIX}/{P}/{E}/")
    assert fault_proxy.count(method, path) == ATTEMPTS
    after = snapshot(moto_s3, bucket)
    if kind == "lost_answer":
        # The first attempt landed and only its answer was lost: a complete object, or nothing.
        assert ok(S3Registry(bucket, PREFIX)) or after == before
    else:
        assert after == before
    assert_whole(moto_s3, bucket)
    report("s3 faults: persistent", cases=1, faults=ATTEMPTS)


def test_stalled_swap_that_lands_late_never_overwrites_a_newer_latest(
    via_proxy: S3Registry, fault_proxy: FaultProxy, moto_s3: str, bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A swap's first PUT stalls past the timeout and is retried (the retry wins); another
    publisher then moves latest on; the stalled PUT reaches S3 last, with the old If-Match: refused."""
    monkeypatch.setenv("MESH_S3_TIMEOUT", "1")
    registry = S3Registry(bucket, PREFIX)
    stalled = fault_proxy.add(Fault("delay", method="PUT", path="/latest/", delay_s=3.0))
    start = time.monotonic()
    assert commit_version(registry, P, E, vid(3), body(3), lambda _: True)
    assert stalled.times == 0
    other = S3Registry(bucket, PREFIX)
    assert commit_version(other, P, E, vid(4), body(4), lambda _: True)
    time.sleep(max(0.0, 3.5 - (time.monotonic() - start)))  # the stalled PUT has been delivered
    latest = other.read_latest(P, E)
    assert latest is not None and (latest.version, latest.body) == (vid(4), body(4))
    assert_whole(moto_s3, bucket)
    report("s3 faults: stalls", cases=1, faults=1)


def test_stalled_read_is_abandoned_and_retried(
    via_proxy: S3Registry, fault_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MESH_S3_TIMEOUT", "1")
    registry = S3Registry(via_proxy.bucket, PREFIX)
    fault_proxy.add(Fault("delay", method="GET", path="/history/", delay_s=3.0))
    assert registry.read_version(P, E, vid(2)).body == body(2)
    assert fault_proxy.count("GET", "/history/") == 2
    report("s3 faults: stalls", cases=1, faults=1)


# --- a storm of transient faults on whole publishes ----------------------------------------------

STORM_KINDS = [
    ("status", 503), ("status", 500), ("drop", 0), ("drop_response", 0),
    ("truncate", 0), ("corrupt", 0),
]
STORM_PATHS = [
    ("GET", r"/latest/manifest\.json"), ("GET", r"/history/.+/manifest\.json"), ("GET", r"list-type=2"),
    ("PUT", r"/history/"), ("PUT", r"/latest/"), ("HEAD", r"/history/"), ("GET", r"/usage/"),
]


def test_publishes_succeed_through_a_storm_of_transient_faults(
    bucket: str, fault_proxy: FaultProxy, moto_s3: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    rounds = scale(4, 25)
    rng = random.Random(7)
    s3_environment(monkeypatch, fault_proxy.url, tmp_path / "aws")
    monkeypatch.setenv("MESH_S3_MAX_ATTEMPTS", "5")
    monkeypatch.setenv("MESH_S3_TIMEOUT", "10")
    root = tmp_path / "mesh"
    (root / "core").mkdir(parents=True)
    (root / "core" / "dbt_project.yml").write_text("name: core\n")
    (root / "mesh.yml").write_text(
        f'version: 1\nprojects:\n  core: {{path: core}}\ntargets:\n  local: {{registry: "s3://{bucket}/storm", env: prod}}\n'
    )
    injected = 0
    published: list[str] = []
    for round_ in range(rounds):
        doc = factories.producer("core")
        doc["metadata"]["generated_at"] = f"2026-11-23T10:{round_:02d}:00.000000Z"
        doc["metadata"]["invocation_id"] = f"storm-{round_}"
        doc["nodes"]["model.core.orders"]["description"] = f"round {round_}"
        (root / "core" / "target").mkdir(exist_ok=True)
        (root / "core" / "target" / "manifest.json").write_bytes(orjson.dumps(doc))
        (root / "core" / "target" / "run_results.json").write_bytes(orjson.dumps(factories.run_results(doc)))
        faults = []
        for _ in range(rng.randint(2, 4)):
            action, status = rng.choice(STORM_KINDS)
            method, path = rng.choice(STORM_PATHS)
            if method != "GET" and action in ("truncate", "corrupt"):
                continue  # answers to PUT and HEAD have no body to damage
            faults.append(fault_proxy.add(Fault(action, method=method, path=path, status=status or 503, times=1)))  # type: ignore[arg-type]
        mesh = load_mesh(root, "local")  # a fresh client each round
        result = publish_project(mesh, "core")
        assert result.status == "published", result
        published.append(result.version)
        injected += sum(1 for f in faults if f.times == 0)
        fault_proxy.clear()
    direct = S3Registry(bucket, "storm")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_s3)
    versions = direct.list_versions("core", "prod")
    lost = len(set(published) - set(versions))
    corrupted = 0
    for round_, version in enumerate(published):
        doc = load_interface(direct.read_version("core", "prod", version).body, version, "core")
        corrupted += doc["nodes"]["model.core.orders"]["description"] != f"round {round_}"
    latest = direct.read_latest("core", "prod")
    corrupted += latest is None or latest.version != published[-1]
    report("s3 faults: storm", cases=rounds, faults=injected, publishes=rounds, lost=lost, corrupted=corrupted)
    assert versions == published and lost == 0 and corrupted == 0
    assert injected >= rounds  # the storm really hit the publishes
