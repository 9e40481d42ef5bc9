"""Real servers on loopback for the tests: a `moto_server` S3 emulator, started as a child process.

Loaded as a pytest plugin (`pytest_plugins = ["tests.servers"]` in tests/conftest.py). The
registry under test talks HTTP to the server exactly as it talks to AWS: the only thing pointing it
at the emulator is boto3's standard AWS_ENDPOINT_URL_S3, which the fixtures set.

Each server is one process this module started; stopping it terminates (then kills) that process
and nothing else.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from mesh.registry.s3 import S3Registry
from tests.faultproxy import FaultProxy, running_proxy

MOTO_SERVER = Path(sys.executable).parent / "moto_server"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
TEST_REGION = "us-east-1"
TEST_KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
# Settings that could point boto3 somewhere else than the server under test.
AWS_ENV_TO_CLEAR = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "MESH_S3_MAX_ATTEMPTS",
    "MESH_S3_TIMEOUT",
)


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel picks it for a socket bound to 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT_S) -> None:
    """Stop exactly `proc`: SIGTERM, then SIGKILL if it has not exited within `timeout`."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


def _answers(url: str) -> bool:
    # No proxies: the server is on loopback whatever HTTP_PROXY says.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{url}/moto-api/data.json", timeout=1.0) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError:
        return True  # it answered HTTP, so it is up
    except OSError:
        return False


@dataclass
class MotoServer:
    """A running `moto_server` child process and its endpoint URL."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self) -> None:
        stop_process(self.proc)

    def post(self, path: str, data: bytes) -> bytes:
        """POST to the server's own control API (e.g. /moto-api/reset-auth)."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        # Not form-encoded: moto reads the raw body, which Flask empties for form posts.
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=data,
            method="POST",
            headers={"Content-Type": "application/octet-stream"},
        )
        with opener.open(request, timeout=10.0) as response:
            return bytes(response.read())


def start_moto_server(env: Mapping[str, str] | None = None, attempts: int = 3) -> MotoServer:
    """Start `moto_server` on a free loopback port and wait until it answers HTTP.

    `env` adds to the child's environment (e.g. INITIAL_NO_AUTH_ACTION_COUNT). The port is free
    when picked but could be taken before the server binds it, so a server that dies at start is
    retried on another port.
    """
    if not MOTO_SERVER.exists():
        raise RuntimeError(f"{MOTO_SERVER} is missing: install moto[server] in the venv")
    child_env = {**os.environ, **(env or {})}
    last_log = ""
    for _ in range(attempts):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        fd, log_name = tempfile.mkstemp(prefix="moto-server-", suffix=".log")
        log = Path(log_name)
        with os.fdopen(fd, "wb") as log_file:
            proc = subprocess.Popen(
                [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=child_env,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None:
            if _answers(url):
                return MotoServer(proc, url, log)
            time.sleep(0.05)
        stop_process(proc)
        last_log = log.read_text(errors="replace")[-2000:]
        log.unlink(missing_ok=True)
    raise RuntimeError(f"moto_server did not start; last output:\n{last_log}")


@contextlib.contextmanager
def moto_server(env: Mapping[str, str] | None = None) -> Iterator[MotoServer]:
    """A moto server for the duration of the block; stopped (that process only) afterwards."""
    server = start_moto_server(env)
    try:
        yield server
    finally:
        server.stop()
        server.log.unlink(missing_ok=True)


@functools.lru_cache(maxsize=8)
def admin_client(endpoint: str) -> Any:
    """One shared client per endpoint for test setup (creating a boto3 client costs ~0.1 s)."""
    return raw_client(endpoint)


def raw_client(endpoint: str, **keys: str) -> Any:
    """A plain boto3 S3 client on `endpoint` for setting up and inspecting buckets in tests."""
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=TEST_REGION,
        aws_access_key_id=keys.get("key_id", TEST_KEYS["AWS_ACCESS_KEY_ID"]),
        aws_secret_access_key=keys.get("secret", TEST_KEYS["AWS_SECRET_ACCESS_KEY"]),
        config=Config(retries={"mode": "standard", "total_max_attempts": 2}),
    )


def new_bucket(endpoint: str) -> str:
    """Create a bucket with a name no other test uses."""
    name = f"mesh-test-{secrets.token_hex(6)}"
    admin_client(endpoint).create_bucket(Bucket=name)
    return name


def bucket_snapshot(client: Any, bucket: str) -> dict[str, tuple[bytes, dict[str, str]]]:
    """Every object in `bucket` with its bytes and user metadata: compare before and after."""
    snapshot = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            response = client.get_object(Bucket=bucket, Key=item["Key"])
            snapshot[item["Key"]] = (response["Body"].read(), dict(response["Metadata"]))
    return snapshot


def s3_environment(
    monkeypatch: pytest.MonkeyPatch, endpoint: str, tmp_dir: Path, **keys: str
) -> dict[str, str]:
    """Point boto3 at `endpoint` through the environment only, isolated from ~/.aws."""
    for name in AWS_ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    settings = {
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ACCESS_KEY_ID": keys.get("key_id", TEST_KEYS["AWS_ACCESS_KEY_ID"]),
        "AWS_SECRET_ACCESS_KEY": keys.get("secret", TEST_KEYS["AWS_SECRET_ACCESS_KEY"]),
        "AWS_DEFAULT_REGION": TEST_REGION,
        "AWS_CONFIG_FILE": str(tmp_dir / "aws-config-none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_dir / "aws-credentials-none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    return settings


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[str]:
    """Endpoint URL of one moto S3 server shared by the session (each test uses its own bucket)."""
    with moto_server() as server:
        yield server.url


@pytest.fixture
def s3_env(
    monkeypatch: pytest.MonkeyPatch, moto_s3: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """The AWS_* environment pointing boto3 at the session's moto server."""
    return s3_environment(monkeypatch, moto_s3, tmp_path_factory.mktemp("aws"))


@pytest.fixture
def s3_registry(s3_env: dict[str, str], moto_s3: str) -> S3Registry:
    """An S3Registry on a fresh bucket of the session's moto server, under a prefix."""
    return S3Registry(new_bucket(moto_s3), "mesh/registry")


@pytest.fixture
def fault_proxy(moto_s3: str) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of the session's moto server (see tests/faultproxy.py)."""
    yield from running_proxy(moto_s3)
