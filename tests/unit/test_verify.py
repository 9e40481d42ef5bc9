"""`invoke snowflake.verify` and `invoke infra.verify` on the emulators: fakesnow's server and
moto's, on loopback. They run every check the emulator can, mark the others "needs a real
account", leave nothing behind and exit 0; a check that fails exits 1 naming it, and the throwaway
objects are still removed (also on Ctrl-C)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mesh.infra import emulate, verify
from mesh.warehouse import snowflake as sf
from tests.servers import AWS_ENV_TO_CLEAR, TEST_KEYS, TEST_REGION, new_bucket, raw_client

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def invoke(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", "-c", "tasks_infra", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=env,
        timeout=300,
    )


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SNOWFLAKE_", "MESH_")) and k not in AWS_ENV_TO_CLEAR
    }
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def fakesnow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """fakesnow's server on loopback and the SNOWFLAKE_* settings that reach it."""
    folder = tmp_path_factory.mktemp("fakesnow")
    server = emulate.start_server("snowflake", emulate.fakesnow_argv, folder / "fakesnow.log")
    try:
        key = emulate.generate_key_pair(folder / "rsa_key.p8")
        yield {
            "SNOWFLAKE_ACCOUNT": emulate.ACCOUNT,
            "SNOWFLAKE_USER": emulate.USER,
            "SNOWFLAKE_PRIVATE_KEY_PATH": str(key),
            "SNOWFLAKE_HOST": emulate.HOST,
            "SNOWFLAKE_PORT": str(server.port),
            "SNOWFLAKE_PROTOCOL": "http",
        }
    finally:
        emulate.stop_server(server)


def aws_env(endpoint: str, tmp_path: Path) -> dict[str, str]:
    return clean_env(
        AWS_ENDPOINT_URL_S3=endpoint,
        AWS_DEFAULT_REGION=TEST_REGION,
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
        **TEST_KEYS,
    )


def lines(output: str, status: str) -> list[str]:
    return [
        line.split("  ", 1)[1] for line in output.splitlines() if line.startswith(status + "  ")
    ]


# --- snowflake.verify ----------------------------------------------------------------------------

SNOWFLAKE_REAL_ONLY = [
    "consumer role with the interface's grants",
    "consumer reads a public relation",
    "consumer is refused a protected relation",
    "per-relation SELECT revoked and granted again",
    "zero-copy clone",
    "ALTER DATABASE … SWAP WITH carries the grants",
]


def test_snowflake_verify_on_fakesnow_runs_what_it_can_and_drops_it(
    fakesnow: dict[str, str],
) -> None:
    result = invoke("snowflake.verify", env=clean_env(**fakesnow))
    assert result.returncode == 0, result.stdout + result.stderr
    passed = lines(result.stdout, "PASS")
    assert [p.split(":")[0] for p in passed] == [
        "throwaway database, schema and tables",
        "throwaway objects dropped",
    ]
    skipped = lines(result.stdout, "SKIP")
    assert skipped == [f"{name}: needs a real account" for name in SNOWFLAKE_REAL_ONLY]
    assert not lines(result.stdout, "FAIL")
    assert "2 check(s) passed, 0 failed, 6 need a real account" in result.stdout
    # The tables and the schema it created are gone (fakesnow cannot drop the database itself).
    database = re.search(r"in (MESH_VERIFY_[0-9A-F]{8})", result.stdout)
    assert database, result.stdout
    settings = sf.connection_settings_from_env(fakesnow)
    with sf.Session(settings, label="test") as session:
        rows = session.run(
            f"SELECT TABLE_NAME FROM {database.group(1)}.INFORMATION_SCHEMA.TABLES "
            "WHERE TABLE_SCHEMA = 'MARTS'"
        )
    assert rows == []


def test_snowflake_verify_without_settings_fails_in_one_line() -> None:
    result = invoke("snowflake.verify", env=clean_env())
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "SNOWFLAKE_ACCOUNT is not set: export it before running Snowflake tasks (see README.md, "
        "Infrastructure, 'Key pairs')"
    ]


# --- infra.verify --------------------------------------------------------------------------------


def test_infra_verify_on_moto_runs_the_conditional_writes_and_leaves_nothing(
    moto_s3: str, tmp_path: Path
) -> None:
    bucket = new_bucket(moto_s3)
    client = raw_client(moto_s3)
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    client.put_object(Bucket=bucket, Key="mesh/dbt_up/prod/latest/manifest.json", Body=b"{}")
    result = invoke(
        "infra.verify", "--registry", f"s3://{bucket}/mesh", env=aws_env(moto_s3, tmp_path)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    passed = [p.split(":")[0] for p in lines(result.stdout, "PASS")]
    assert passed == [
        "history is create-only (If-None-Match)",
        "latest is compare-and-swap (If-Match)",
        "throwaway objects dropped",
    ]
    assert lines(result.stdout, "SKIP") == [
        "the bucket policy refuses a history write without If-None-Match: needs a real account",
        "a project's publisher role is refused another project's prefix: needs a real account",
    ]
    assert "3 check(s) passed, 0 failed, 2 need a real account" in result.stdout
    # Every version it wrote (the bucket is versioned) is gone; what was there stays.
    versions = client.list_object_versions(Bucket=bucket)
    keys = [v["Key"] for v in versions.get("Versions", []) + versions.get("DeleteMarkers", [])]
    assert keys == ["mesh/dbt_up/prod/latest/manifest.json"]


def test_infra_verify_fails_naming_the_checks_that_failed(moto_s3: str, tmp_path: Path) -> None:
    result = invoke(
        "infra.verify", "--registry", "s3://mesh-verify-no-such-bucket/mesh",
        env=aws_env(moto_s3, tmp_path),
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    failed = [f.split(":")[0] for f in lines(result.stdout, "FAIL")]
    assert failed == [
        "history is create-only (If-None-Match)",
        "latest is compare-and-swap (If-Match)",
    ]
    assert "PASS  throwaway objects dropped" in result.stdout
    (error,) = result.stderr.strip().splitlines()
    assert error.startswith("infra.verify: 1 check(s) passed, 2 failed")
    assert "history is create-only" in error and "compare-and-swap" in error


def test_infra_verify_refuses_a_registry_that_is_not_s3(tmp_path: Path) -> None:
    result = invoke("infra.verify", "--registry", "file://registry", env=clean_env())
    assert result.returncode == 2
    assert "needs an s3://bucket/prefix registry" in result.stderr


# --- the runner ------------------------------------------------------------------------------------


def test_cleanup_runs_on_interrupt_and_failure_last_first() -> None:
    said: list[str] = []
    undone: list[str] = []

    def steps(v: verify.Verification) -> None:
        v.on_cleanup("first", lambda: undone.append("first"))
        v.check("creates", lambda: "made it")
        v.on_cleanup("second", lambda: undone.append("second"))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        verify.run(verify.Verification("t", emulated=False, say=said.append), steps)
    assert undone == ["second", "first"]
    assert said[-1] == "PASS  throwaway objects dropped"


def test_an_object_that_cannot_be_dropped_is_a_failure_naming_it() -> None:
    def steps(v: verify.Verification) -> None:
        def refuse() -> Any:
            raise RuntimeError("permission denied")

        v.on_cleanup("database X", refuse)
        v.check("creates", lambda: None)

    with pytest.raises(verify.VerifyFailedError, match="throwaway objects dropped") as caught:
        verify.run(verify.Verification("t", emulated=False, say=lambda _: None), steps)
    assert caught.value.exit_code == 1


def test_real_only_checks_run_on_a_real_account_and_are_marked_on_an_emulator() -> None:
    ran: list[str] = []
    for emulated in (True, False):
        v = verify.Verification("t", emulated=emulated, say=lambda _: None)
        v.check("swap", lambda e=emulated: ran.append(str(e)) or "", real_only=True)
        assert v.results[0].status == (verify.REAL_ONLY if emulated else verify.PASS)
    assert ran == ["False"]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("localhost", True), ("::1", True), ("127.0.0.2", True),
     (None, False), ("acme-xy12345.snowflakecomputing.com", False), ("10.0.0.1", False)],
)  # fmt: skip
def test_an_emulator_is_told_by_its_loopback_host(host: str | None, loopback: bool) -> None:
    assert verify.is_loopback(host) is loopback


def test_the_publisher_policy_is_rendered_from_the_terraform() -> None:
    policy = verify.publisher_policy("bkt", "mesh", "dbt_up", "arn:aws:kms:eu-west-1:1:key/k")
    statements = {s["Sid"]: s for s in policy["Statement"]}
    assert statements["WriteOwnPrefix"]["Resource"] == ["arn:aws:s3:::bkt/mesh/dbt_up/*"]
    assert set(statements["WriteOwnPrefix"]["Action"]) == {"s3:GetObject", "s3:PutObject"}
    assert statements["NeverDeleteHistory"]["Effect"] == "Deny"
    assert statements["UseRegistryKey"]["Resource"] == ["arn:aws:kms:eu-west-1:1:key/k"]
