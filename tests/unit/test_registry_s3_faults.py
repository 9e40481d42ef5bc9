"""The S3 registry when things go wrong, against a real moto server over HTTP.

Each test proves two things: the error is one line that names the bucket/key and what to check,
and the registry is unchanged (every object and its bytes, read with an independent client, are
the same before and after). Network faults come from tests/faultproxy.py between the registry and
moto; bad credentials from a second moto server with IAM authentication switched on.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import boto3
import pytest

from mesh.core.errors import (
    ChecksumError,
    ConfigError,
    ConflictError,
    CredentialsError,
    NotFoundError,
    RegistryError,
)
from mesh.core.names import new_version, sha256_hex
from mesh.registry import Entry, commit_version
from mesh.registry.s3 import S3Registry
from tests.faultproxy import Fault, FaultProxy
from tests.servers import (
    MotoServer,
    admin_client,
    bucket_snapshot,
    free_port,
    moto_server,
    new_bucket,
    raw_client,
    s3_environment,
)

T0 = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
P, E = "sales", "prod"
PREFIX = "reg"


def vid(i: int) -> str:
    return new_version(sha256_hex(b"%d" % i), now=T0 + timedelta(seconds=i))


def body(i: int) -> bytes:
    return json.dumps({"metadata": {"mesh": {"version": vid(i)}}, "nodes": {"n": i}}).encode()


def key(rel: str) -> str:
    return f"{PREFIX}/{P}/{E}/{rel}"


def populate(registry: S3Registry) -> None:
    """latest = v1, history = v1 v2, a private state object."""
    assert commit_version(registry, P, E, vid(1), body(1), lambda _: True)
    registry.create_version(P, E, vid(2), body(2))
    registry.write_private(P, E, "state", b'{"state": 1}')


def one_line(exc: BaseException, *must_name: str) -> str:
    message = str(exc)
    assert "\n" not in message and message.strip() == message
    for part in must_name:
        assert part in message, f"{part!r} not in {message!r}"
    return message


# Every registry operation, as (name, call): each must fail cleanly when S3 cannot be used.
OPERATIONS: list[tuple[str, Any]] = [
    ("read_latest", lambda r: r.read_latest(P, E)),
    ("read_version", lambda r: r.read_version(P, E, vid(1))),
    ("list_versions", lambda r: r.list_versions(P, E)),
    ("list_published", lambda r: r.list_published()),
    ("create_version", lambda r: r.create_version(P, E, vid(3), body(3))),
    ("swap_latest", lambda r: r.swap_latest(P, E, vid(2), body(2), None)),
    ("write_private", lambda r: r.write_private(P, E, "usage", b"{}")),
    ("read_private", lambda r: r.read_private(P, E, "state")),
    ("delete_version", lambda r: r.delete_version(P, E, vid(2))),
    ("fsck", lambda r: r.fsck(P, E, True)),
]


@pytest.fixture
def bucket(s3_env: dict[str, str], moto_s3: str) -> str:
    """A populated bucket on the session's moto server."""
    name = new_bucket(moto_s3)
    populate(S3Registry(name, PREFIX))
    return name


@pytest.fixture
def snapshot(moto_s3: str) -> Any:
    """Every object of a bucket with bytes and metadata, read with a client of its own."""
    return lambda bucket: bucket_snapshot(admin_client(moto_s3), bucket)


# --- missing bucket ------------------------------------------------------------------------------


@pytest.mark.parametrize("operation", [name for name, _ in OPERATIONS])
def test_missing_bucket_is_named_and_nothing_is_created(
    s3_env: dict[str, str], moto_s3: str, operation: str
) -> None:
    client = admin_client(moto_s3)
    buckets_before = client.list_buckets()["Buckets"]
    registry = S3Registry("mesh-no-such-bucket", PREFIX)
    with pytest.raises(RegistryError) as info:
        dict(OPERATIONS)[operation](registry)
    # Not "not found"/"nothing published": the registry itself is missing.
    assert type(info.value) is RegistryError
    one_line(info.value, "'mesh-no-such-bucket' does not exist", "MESH_REGISTRY")
    assert client.list_buckets()["Buckets"] == buckets_before


# --- credentials ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def auth_s3() -> Iterator[tuple[MotoServer, str, dict[str, dict[str, str]]]]:
    """A moto server of its own that checks signatures and IAM policies.

    moto accepts any keys unless IAM authentication is on (its INITIAL_NO_AUTH_ACTION_COUNT);
    this server gets a populated bucket and two IAM users (`admin` may use S3, `nobody` may not)
    and then switches authentication on through /moto-api/reset-auth. Server-wide, hence a
    server of its own.
    """
    with (
        moto_server() as server,
        pytest.MonkeyPatch.context() as monkeypatch,
        TemporaryDirectory() as tmp,
    ):
        s3_environment(monkeypatch, server.url, Path(tmp))
        bucket = new_bucket(server.url)
        populate(S3Registry(bucket, PREFIX))
        iam = boto3.session.Session().client("iam", endpoint_url=server.url)
        keys = {}
        for user in ("admin", "nobody"):
            iam.create_user(UserName=user)
            access = iam.create_access_key(UserName=user)["AccessKey"]
            keys[user] = {"key_id": access["AccessKeyId"], "secret": access["SecretAccessKey"]}
        statement = {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}
        policy = json.dumps({"Version": "2012-10-17", "Statement": [statement]})
        iam.put_user_policy(UserName="admin", PolicyName="s3", PolicyDocument=policy)
        server.post("/moto-api/reset-auth", b"0")
        yield server, bucket, keys


AUTH_OPERATIONS = ["read_latest", "list_versions", "create_version", "swap_latest", "write_private"]


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("unknown-key", "InvalidAccessKeyId"),
        ("wrong-secret", "SignatureDoesNotMatch"),
        ("no-permission", "AccessDenied"),
    ],
)
@pytest.mark.parametrize("operation", AUTH_OPERATIONS)
def test_rejected_credentials_say_what_to_check(
    auth_s3: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    case: str,
    code: str,
    operation: str,
) -> None:
    server, bucket, keys = auth_s3
    admin = raw_client(server.url, **keys["admin"])
    before = bucket_snapshot(admin, bucket)
    assert f"{PREFIX}/{P}/{E}/latest/manifest.json" in before  # the admin key works
    creds = {
        "unknown-key": {"key_id": "AKIAMESHUNKNOWN00000", "secret": "x"},
        "wrong-secret": {"key_id": keys["admin"]["key_id"], "secret": "not-the-secret"},
        "no-permission": keys["nobody"],
    }[case]
    s3_environment(monkeypatch, server.url, tmp_path, **creds)
    with pytest.raises(CredentialsError) as info:
        dict(OPERATIONS)[operation](S3Registry(bucket, PREFIX))
    message = one_line(info.value, f"s3://{bucket}/{PREFIX}/{P}/{E}/", "AWS_PROFILE", "OIDC")
    assert code in message or "(403)" in message  # HEAD answers carry no error code
    assert bucket_snapshot(admin, bucket) == before


def test_no_credentials_anywhere(
    bucket: str, snapshot: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Nothing in the environment, empty ~/.aws files, no instance metadata: say how to log in."""
    before = snapshot(bucket)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
        empty = tmp_path / name.lower()
        empty.write_text("")
        monkeypatch.setenv(name, str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for operation in ("read_latest", "create_version"):
        with pytest.raises(CredentialsError) as info:
            dict(OPERATIONS)[operation](S3Registry(bucket, PREFIX))
        one_line(info.value, "no usable AWS credentials", f"s3://{bucket}/", "AWS_PROFILE", "OIDC")
    assert snapshot(bucket) == before


# --- unreachable endpoint ------------------------------------------------------------------------


def count_attempts(registry: S3Registry) -> list[str]:
    """Every HTTP request the registry's client sends, retries included."""
    sent: list[str] = []
    registry.client.meta.events.register(
        "before-send.s3", lambda request, **_: sent.append(request.url)
    )
    return sent


@pytest.mark.parametrize("operation", ["read_latest", "create_version", "list_versions"])
def test_endpoint_down_fails_after_the_configured_attempts(
    bucket: str, snapshot: Any, monkeypatch: pytest.MonkeyPatch, operation: str
) -> None:
    before = snapshot(bucket)
    closed = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", closed)
    monkeypatch.setenv("MESH_S3_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("MESH_S3_TIMEOUT", "2")
    registry = S3Registry(bucket, PREFIX)
    sent = count_attempts(registry)
    with pytest.raises(RegistryError) as info:
        dict(OPERATIONS)[operation](registry)
    one_line(
        info.value, f"cannot reach S3 endpoint {closed}", f"s3://{bucket}/", "AWS_ENDPOINT_URL_S3"
    )
    assert len(sent) == 2
    assert snapshot(bucket) == before


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A port that accepts TCP connections and never answers a request."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_endpoint_that_never_answers_times_out(
    bucket: str, snapshot: Any, monkeypatch: pytest.MonkeyPatch, silent_endpoint: str
) -> None:
    before = snapshot(bucket)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", silent_endpoint)
    monkeypatch.setenv("MESH_S3_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("MESH_S3_TIMEOUT", "0.3")
    registry = S3Registry(bucket, PREFIX)
    sent = count_attempts(registry)
    with pytest.raises(RegistryError) as info:
        registry.read_latest(P, E)
    one_line(
        info.value, f"cannot reach S3 endpoint {silent_endpoint}", "ReadTimeoutError", key("latest")
    )
    assert len(sent) == 2
    assert snapshot(bucket) == before


@pytest.mark.parametrize("value", ["0", "-1", "many", "1.5"])
def test_bad_retry_settings_are_config_errors(
    s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("MESH_S3_MAX_ATTEMPTS", value)
    with pytest.raises(ConfigError, match="MESH_S3_MAX_ATTEMPTS"):
        S3Registry("any-bucket").read_latest(P, E)


def test_region_comes_from_boto3_and_defaults_to_us_east_1(
    s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    assert S3Registry("any-bucket").client.meta.region_name == "us-east-1"
    config = tmp_path / "config"
    config.write_text("[default]\nregion = ap-southeast-2\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    assert S3Registry("any-bucket").client.meta.region_name == "ap-southeast-2"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert S3Registry("any-bucket").client.meta.region_name == "eu-west-1"


# --- compare-and-swap races ----------------------------------------------------------------------


def test_lost_race_is_a_conflict_and_the_winner_stays(bucket: str, snapshot: Any) -> None:
    mine, theirs = S3Registry(bucket, PREFIX), S3Registry(bucket, PREFIX)
    seen = mine.read_latest(P, E)
    assert seen is not None and seen.version == vid(1)
    theirs.create_version(P, E, vid(3), body(3))
    won = theirs.swap_latest(P, E, vid(3), body(3), seen.token)
    before = snapshot(bucket)
    with pytest.raises(ConflictError) as info:
        mine.swap_latest(P, E, vid(2), body(2), seen.token)
    one_line(info.value, f"s3://{bucket}/{key('latest/manifest.json')}", vid(2))
    assert snapshot(bucket) == before
    assert mine.read_latest(P, E) == Entry(vid(3), body(3), won)


def test_commit_version_rechecks_after_a_lost_race(bucket: str) -> None:
    """Another publisher wins between our read and our swap: we re-read, re-decide, and win."""
    mine, theirs = S3Registry(bucket, PREFIX), S3Registry(bucket, PREFIX)
    decisions: list[str | None] = []

    def newer_and_race_once(current: Entry | None) -> bool:
        decisions.append(current.version if current else None)
        if len(decisions) == 1:
            assert commit_version(theirs, P, E, vid(3), body(3), lambda _: True)
        return True

    assert commit_version(mine, P, E, vid(4), body(4), newer_and_race_once)
    assert decisions == [vid(1), vid(3)]
    assert mine.read_latest(P, E).version == vid(4)  # type: ignore[union-attr]
    assert mine.list_versions(P, E) == [vid(1), vid(2), vid(3), vid(4)]


def test_commit_version_gives_up_after_bounded_races(bucket: str) -> None:
    mine, theirs = S3Registry(bucket, PREFIX), S3Registry(bucket, PREFIX)
    rounds = iter(range(10, 100))

    def always_raced(current: Entry | None) -> bool:
        n = next(rounds)
        assert commit_version(theirs, P, E, vid(n), body(n), lambda _: True)
        return True

    with pytest.raises(ConflictError) as info:
        commit_version(mine, P, E, vid(5), body(5), always_raced, attempts=3)
    one_line(info.value, vid(5), "after 3 lost races", "it is in history")
    assert vid(5) in mine.list_versions(P, E)
    assert mine.read_latest(P, E).version == vid(12)  # type: ignore[union-attr]


# --- damaged objects -----------------------------------------------------------------------------


def tamper(
    client: Any, bucket: str, object_key: str, metadata: dict[str, str] | None = None
) -> None:
    """Replace the bytes of an object behind the registry's back, keeping (or replacing) its
    user metadata: a raw put, like a broken tool or a hand edit would do."""
    old = client.get_object(Bucket=bucket, Key=object_key)
    data = old["Body"].read()
    data = data[:-1] + bytes([data[-1] ^ 0x20])
    meta = old["Metadata"] if metadata is None else metadata
    client.put_object(Bucket=bucket, Key=object_key, Body=data, Metadata=meta)


@pytest.mark.parametrize(
    ("rel", "read"),
    [
        (f"history/{vid(2)}/manifest.json", lambda r: r.read_version(P, E, vid(2))),
        ("latest/manifest.json", lambda r: r.read_latest(P, E)),
        ("state/manifest.json", lambda r: r.read_private(P, E, "state")),
    ],
    ids=["history", "latest", "state"],
)
def test_corrupted_object_is_refused_and_left_for_a_human(
    bucket: str, snapshot: Any, moto_s3: str, rel: str, read: Any
) -> None:
    registry = S3Registry(bucket, PREFIX)
    tamper(admin_client(moto_s3), bucket, key(rel))
    before = snapshot(bucket)
    with pytest.raises(ChecksumError) as info:
        read(registry)
    one_line(info.value, f"s3://{bucket}/{key(rel)}", "SHA-256", "fsck")
    problems = registry.fsck(P, E, repair=True)
    assert len(problems) == 1 and key(rel) in problems[0]
    assert snapshot(bucket) == before  # neither the read nor fsck --repair removed anything


def test_object_without_checksum_metadata_is_refused(
    bucket: str, snapshot: Any, moto_s3: str
) -> None:
    tamper(admin_client(moto_s3), bucket, key(f"history/{vid(2)}/manifest.json"), metadata={})
    before = snapshot(bucket)
    with pytest.raises(ChecksumError) as info:
        S3Registry(bucket, PREFIX).read_version(P, E, vid(2))
    one_line(info.value, "no sha256 metadata", key(f"history/{vid(2)}"))
    assert snapshot(bucket) == before


def test_latest_without_version_metadata_is_refused(
    bucket: str, snapshot: Any, moto_s3: str
) -> None:
    client = admin_client(moto_s3)
    client.put_object(
        Bucket=bucket,
        Key=key("latest/manifest.json"),
        Body=body(2),
        Metadata={"sha256": sha256_hex(body(2))},
    )
    before = snapshot(bucket)
    with pytest.raises(RegistryError) as info:
        S3Registry(bucket, PREFIX).read_latest(P, E)
    one_line(info.value, "no valid `version` metadata", key("latest/manifest.json"))
    assert snapshot(bucket) == before


def test_fsck_reports_latest_pointing_outside_history(
    bucket: str, snapshot: Any, moto_s3: str
) -> None:
    admin_client(moto_s3).delete_object(Bucket=bucket, Key=key(f"history/{vid(1)}/manifest.json"))
    admin_client(moto_s3).put_object(Bucket=bucket, Key=key("history/junk.txt"), Body=b"?")
    before = snapshot(bucket)
    problems = S3Registry(bucket, PREFIX).fsck(P, E, repair=True)
    assert any(f"latest points at a missing history entry: {vid(1)}" in p for p in problems)
    assert any("unexpected object" in p and "junk.txt" in p for p in problems)
    assert len(problems) == 2
    assert snapshot(bucket) == before


# --- faults between the registry and S3 (tests/faultproxy.py) ------------------------------------


@pytest.fixture
def via_proxy(
    bucket: str, fault_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> S3Registry:
    """A registry on the populated bucket whose every request goes through the fault proxy."""
    s3_environment(monkeypatch, fault_proxy.url, tmp_path)
    monkeypatch.setenv("MESH_S3_MAX_ATTEMPTS", "3")
    # Generous: on a loaded machine a normal answer must never time out and skew the counts.
    monkeypatch.setenv("MESH_S3_TIMEOUT", "10")
    return S3Registry(bucket, PREFIX)


def test_transient_errors_are_retried_by_botocore(
    via_proxy: S3Registry, fault_proxy: FaultProxy
) -> None:
    fault_proxy.add(Fault("status", method="PUT", path="/history/", status=503, times=2))
    via_proxy.create_version(P, E, vid(3), body(3))
    assert fault_proxy.count("PUT", "/history/") == 3
    assert via_proxy.read_version(P, E, vid(3)).body == body(3)


def test_persistent_errors_stop_after_the_configured_attempts(
    via_proxy: S3Registry, fault_proxy: FaultProxy, snapshot: Any, bucket: str
) -> None:
    before = snapshot(bucket)
    fault_proxy.add(Fault("status", method="PUT", status=503, times=None))
    with pytest.raises(RegistryError) as info:
        via_proxy.create_version(P, E, vid(3), body(3))
    one_line(info.value, "SlowDown", key(f"history/{vid(3)}/manifest.json"), "MESH_S3_MAX_ATTEMPTS")
    assert fault_proxy.count("PUT") == 3
    assert snapshot(bucket) == before


def test_create_whose_answer_was_lost_is_not_reported_as_existing(
    via_proxy: S3Registry, fault_proxy: FaultProxy
) -> None:
    """The PUT landed, the answer did not; botocore retries and S3 says 412: that is our object."""
    fault_proxy.add(Fault("drop_response", method="PUT", path="/history/"))
    via_proxy.create_version(P, E, vid(3), body(3))
    assert fault_proxy.count("PUT", "/history/") == 2
    assert via_proxy.read_version(P, E, vid(3)).body == body(3)


def test_retried_create_still_refuses_someone_elses_version(
    via_proxy: S3Registry, fault_proxy: FaultProxy, snapshot: Any, bucket: str
) -> None:
    """A retry that meets a different body under the same version must not claim it."""
    fault_proxy.add(Fault("status", method="PUT", path="/history/", status=503, times=1))
    before = snapshot(bucket)
    with pytest.raises(RegistryError, match="exists already; history is create-only"):
        via_proxy.create_version(P, E, vid(2), body(3))
    assert fault_proxy.count("PUT", "/history/") == 2
    assert snapshot(bucket) == before


def test_swap_whose_answer_was_lost_still_wins(
    via_proxy: S3Registry, fault_proxy: FaultProxy
) -> None:
    fault_proxy.add(Fault("drop_response", method="PUT", path="/latest/"))
    assert commit_version(via_proxy, P, E, vid(3), body(3), lambda _: True)
    assert fault_proxy.count("PUT", "/latest/") == 2
    latest = via_proxy.read_latest(P, E)
    assert latest is not None and (latest.version, latest.body) == (vid(3), body(3))


def test_slow_answer_times_out_and_is_retried(
    via_proxy: S3Registry, fault_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An answer slower than MESH_S3_TIMEOUT is abandoned and the request sent again."""
    monkeypatch.setenv("MESH_S3_TIMEOUT", "1.5")
    slow = fault_proxy.add(Fault("delay", method="GET", path="/latest/", delay_s=8.0))
    latest = via_proxy.read_latest(P, E)
    assert latest is not None and latest.body == body(1)
    assert slow.times == 0  # the slow answer was the first attempt...
    assert fault_proxy.count("GET", "/latest/") >= 2  # ...and it was abandoned and retried


def test_body_damaged_in_transit_is_refused(via_proxy: S3Registry, fault_proxy: FaultProxy) -> None:
    fault_proxy.add(Fault("corrupt", method="GET", path="/history/", times=None))
    with pytest.raises(ChecksumError) as info:
        via_proxy.read_version(P, E, vid(2))
    one_line(info.value, key(f"history/{vid(2)}/manifest.json"))
    assert "retry" in str(info.value)


def test_missing_version_is_not_found_not_a_fault(via_proxy: S3Registry) -> None:
    with pytest.raises(NotFoundError) as info:
        via_proxy.read_version(P, E, vid(9))
    one_line(info.value, vid(9), key(f"history/{vid(9)}/manifest.json"))


def test_unknown_aws_profile_is_a_credentials_error(
    s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_PROFILE", "mesh-no-such-profile")
    with pytest.raises(CredentialsError) as info:
        S3Registry("any-bucket", PREFIX).read_latest(P, E)
    one_line(info.value, "mesh-no-such-profile", "AWS_PROFILE", "s3://any-bucket/reg")
