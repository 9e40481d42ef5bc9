"""The prod target rehearsed without an account: dbt-snowflake on fakesnow's server, the registry on
moto's S3 server, both over HTTP on loopback, started and stopped with `mesh.emulate` (the code
behind `invoke emulate.up|down`).

The mesh code under test is the prod code, unchanged: the profile reaches fakesnow through
SNOWFLAKE_HOST/PORT/PROTOCOL, the registry and dbt-loom reach moto through AWS_ENDPOINT_URL_S3.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from mesh import emulate
from mesh.config import Mesh, load_mesh
from mesh.dbt import run_dbt
from mesh.pipeline import MeshRun, run_mesh
from mesh.validate import validate_projects
from tests.conftest import REPO, copy_template
from tests.servers import AWS_ENV_TO_CLEAR, bucket_snapshot, raw_client, start_moto_server

pytestmark = pytest.mark.slow

INVOKE = Path(sys.executable).parent / "invoke"
# Settings from a developer's shell that would point the rehearsal somewhere else.
_FOREIGN_ENV = re.compile(r"(SNOWFLAKE_|DBT_[A-Z_]+_SNOWFLAKE_|MESH_)")


def _clean_environ() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not _FOREIGN_ENV.match(k)}
    for name in AWS_ENV_TO_CLEAR:
        env.pop(name, None)
    env.update(DBT_SEND_ANONYMOUS_USAGE_STATS="false", DO_NOT_TRACK="1")
    return env


def _pem_body_lines(path: Path) -> list[str]:
    """The base64 lines of a PEM file: what a leaked key would show."""
    return [line for line in path.read_text().splitlines() if line and not line.startswith("-----")]


@dataclass
class Secrets:
    passphrase: str
    encrypted_key: Path
    aws_secret: str

    def needles(self, plain_key: Path) -> list[str]:
        lines = _pem_body_lines(self.encrypted_key) + _pem_body_lines(plain_key)
        return [self.passphrase, self.aws_secret, *lines]


@dataclass
class Rehearsal:
    root: Path
    mesh: Mesh
    result: MeshRun
    output: str
    emulation: emulate.Emulation
    secrets: Secrets

    @property
    def bucket(self) -> str:
        return self.emulation.registry[len("s3://") :].partition("/")[0]

    @property
    def prefix(self) -> str:
        return self.emulation.registry[len("s3://") :].partition("/")[2]

    def s3(self) -> Any:
        return raw_client(self.emulation.env["AWS_ENDPOINT_URL_S3"])


# --- fixtures ------------------------------------------------------------------------------------


def emulated_template(dest: Path) -> Path:
    """The template without the consumers' unit tests on dbt_up's `public_orders`: dbt types a
    fixture with `describe table` on the input's relation, and fakesnow describes only tables of
    the session's database (its `_fs_columns` view is one per database), where Snowflake describes
    any table the role can read. The local runs carry them (tests/integration/test_unit_tests_across.py)."""
    root = copy_template(dest)
    for project in ("dbt_down", "dbt_down_loom"):
        yml = root / project / "models/staging/stg_orders.yml"
        own, found, _unit_tests = yml.read_text().partition("\nunit_tests:")
        assert found, f"{yml} has no unit test to leave out"
        yml.write_text(own)
    return root


@pytest.fixture(scope="module")
def prod_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return emulated_template(tmp_path_factory.mktemp("prod") / "mesh")


@pytest.fixture(scope="module")
def emulation(prod_root: Path) -> Iterator[emulate.Emulation]:
    """Both emulators, started as `invoke emulate.up` starts them; stopped as `down` does."""
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if _FOREIGN_ENV.match(name):
                mp.delenv(name)
        running = emulate.up(prod_root)
    try:
        yield running
    finally:
        emulate.down(prod_root)


@pytest.fixture(scope="module")
def planted(prod_root: Path) -> Secrets:
    """Secret-looking values the rehearsal runs with: none may surface anywhere."""
    passphrase = f"pp-{secrets.token_hex(12)}"
    key = emulate.generate_key_pair(prod_root / ".mesh/emulate/rsa_key_encrypted.p8", passphrase)
    return Secrets(passphrase, key, f"aws-{secrets.token_hex(16)}")


@pytest.fixture(scope="module")
def prod_env(
    emulation: emulate.Emulation, planted: Secrets, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """The environment `. .mesh/emulate.env` gives, with the encrypted key and its passphrase."""
    aws_dir = tmp_path_factory.mktemp("aws")
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if _FOREIGN_ENV.match(name) or name in AWS_ENV_TO_CLEAR:
                mp.delenv(name)
        env = {
            **emulation.env,
            "AWS_SECRET_ACCESS_KEY": planted.aws_secret,  # moto takes any key
            "AWS_CONFIG_FILE": str(aws_dir / "none"),
            "AWS_SHARED_CREDENTIALS_FILE": str(aws_dir / "none"),
            "SNOWFLAKE_PRIVATE_KEY_PATH": str(planted.encrypted_key),
            "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE": planted.passphrase,
        }
        for name, value in env.items():
            mp.setenv(name, value)
        yield env


@pytest.fixture(scope="module")
def rehearsal(
    prod_root: Path, emulation: emulate.Emulation, planted: Secrets, prod_env: dict[str, str]
) -> Rehearsal:
    """`invoke mesh --target prod` in-process: all three projects on Snowflake, registry on S3."""
    mesh = load_mesh(prod_root, "prod")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        result = run_mesh(mesh, say=print)
        print("\n".join(result.summary()))
    return Rehearsal(prod_root, mesh, result, out.getvalue(), emulation, planted)


@pytest.fixture(scope="module")
def task_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A template copy with the repo's tasks.py: invoke's ROOT is this folder."""
    root = copy_template(tmp_path_factory.mktemp("tasks") / "mesh")
    shutil.copy2(REPO / "tasks.py", root / "tasks.py")
    shutil.copy2(REPO / "tasks_infra.py", root / "tasks_infra.py")
    return root


def _invoke(root: Path, *args: str, env: dict[str, str], timeout: float = 180) -> Any:
    return subprocess.run(
        [str(INVOKE), *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _manifest(root: Path, project: str) -> dict[str, Any]:
    return dict(orjson.loads((root / project / "target/manifest.json").read_bytes()))


# --- the rehearsal -------------------------------------------------------------------------------


def test_interface_and_history_are_in_the_bucket(rehearsal: Rehearsal) -> None:
    (pub,) = rehearsal.result.publishes
    assert pub.project == "dbt_up" and pub.public_models == 5
    base = f"{rehearsal.prefix}/dbt_up/prod"
    client = rehearsal.s3()
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=rehearsal.bucket)["Contents"]}
    assert f"{base}/latest/manifest.json" in keys
    assert f"{base}/history/{pub.version}/manifest.json" in keys
    assert [k for k in keys if "/history/" in k] == [f"{base}/history/{pub.version}/manifest.json"]
    latest = client.get_object(Bucket=rehearsal.bucket, Key=f"{base}/latest/manifest.json")
    body = latest["Body"].read()
    history = client.get_object(Bucket=rehearsal.bucket, Key=f"{base}/history/{pub.version}/manifest.json")
    assert body == history["Body"].read()
    assert latest["Metadata"]["version"] == pub.version
    interface = json.loads(body)
    assert interface["metadata"]["mesh"]["env"] == "prod"
    # Every project also stored its private state after its build.
    for project in ("dbt_up", "dbt_down", "dbt_down_loom"):
        assert any(k.startswith(f"{rehearsal.prefix}/{project}/prod/") and "state" in k for k in keys)


def test_interface_names_snowflake_relations(rehearsal: Rehearsal) -> None:
    body = rehearsal.s3().get_object(
        Bucket=rehearsal.bucket, Key=f"{rehearsal.prefix}/dbt_up/prod/latest/manifest.json"
    )["Body"].read()
    interface = json.loads(body)
    assert interface["metadata"]["adapter_type"] == "snowflake"
    relations = {uid: node["relation_name"] for uid, node in interface["nodes"].items()}
    for uid, node in interface["nodes"].items():
        assert node["database"] == "DBT_UP_PROD", uid
        assert node["schema"].upper() in {"MARTS", "FINANCE"}, uid
        assert relations[uid] == f"{node['database']}.{node['schema']}.{node['alias']}"
    # Unquoted, so Snowflake resolves them upper-cased: DBT_UP_PROD.MARTS.PUBLIC_ORDERS.
    assert relations["model.dbt_up.public_orders"].upper() == "DBT_UP_PROD.MARTS.PUBLIC_ORDERS"
    assert relations["model.dbt_up.public_order_payments"].upper() == "DBT_UP_PROD.MARTS.ORDER_PAYMENTS"
    assert relations["model.dbt_up.public_daily_revenue"].upper() == "DBT_UP_PROD.FINANCE.PUBLIC_DAILY_REVENUE"
    assert "duckdb" not in body.decode().lower()


def test_consumers_hold_cross_project_edges_and_validate(rehearsal: Rehearsal) -> None:
    loom_parents = {p for ps in _manifest(rehearsal.root, "dbt_down_loom")["parent_map"].values() for p in ps}
    assert {"model.dbt_up.public_orders", "model.dbt_up.public_customers.v1"} <= loom_parents
    down = _manifest(rehearsal.root, "dbt_down")
    down_parents = {p for ps in down["parent_map"].values() for p in ps}
    assert "source.dbt_down.dbt_up.public_orders" in down_parents
    source = down["sources"]["source.dbt_down.dbt_up.public_orders"]
    assert (source["database"], source["schema"].upper()) == ("DBT_UP_PROD", "MARTS")
    assert source["relation_name"].upper() == "DBT_UP_PROD.MARTS.PUBLIC_ORDERS"
    reports = validate_projects(rehearsal.mesh, ["dbt_down", "dbt_down_loom"])
    assert all(r.ok for r in reports), "\n".join(r.text() for r in reports)
    assert all(r.edges for r in reports)
    assert rehearsal.result.reports and all(r.ok for r in rehearsal.result.reports)


def test_prod_builds_pass_without_dbt_warnings(rehearsal: Rehearsal) -> None:
    builds = {run.project: run for run in rehearsal.result.builds}
    assert sorted(builds) == ["dbt_down", "dbt_down_loom", "dbt_up"]
    for run in builds.values():
        assert run.success and set(run.statuses) <= {"pass", "success"}, run.summary()
    assert {p: r.warnings for p, r in builds.items()} == {p: [] for p in builds}


def _snowflake(rehearsal: Rehearsal) -> Any:
    import snowflake.connector

    env = rehearsal.emulation.env
    return snowflake.connector.connect(
        account=env["SNOWFLAKE_ACCOUNT"],
        user=env["SNOWFLAKE_USER"],
        private_key_file=env["SNOWFLAKE_PRIVATE_KEY_PATH"],
        host=env["SNOWFLAKE_HOST"],
        port=int(env["SNOWFLAKE_PORT"]),
        protocol="http",
    )


def test_consumers_read_across_databases_on_the_emulator(rehearsal: Rehearsal) -> None:
    conn = _snowflake(rehearsal)
    try:
        cur = conn.cursor()
        counts = {}
        for relation in (
            "DBT_UP_PROD.MARTS.PUBLIC_ORDERS",
            "DBT_DOWN_PROD.MARTS.CUSTOMER_ORDERS",
            "DBT_DOWN_LOOM_PROD.MARTS.CUSTOMER_ORDERS",
        ):
            cur.execute(f"select count(*) from {relation}")
            counts[relation] = cur.fetchone()[0]  # type: ignore[index]
    finally:
        conn.close()
    assert all(n > 0 for n in counts.values()), counts


def test_unchanged_projects_skip_until_one_of_their_tables_is_dropped(rehearsal: Rehearsal) -> None:
    """On Snowflake the skip asks each project's database whether its relations are still there."""

    def statuses() -> dict[str, str]:
        run = run_mesh(rehearsal.mesh, say=lambda _line: None)
        return {o.project: o.status for o in run.outcomes}

    assert statuses() == {"dbt_up": "skipped", "dbt_down": "skipped", "dbt_down_loom": "skipped"}
    conn = _snowflake(rehearsal)
    try:
        conn.cursor().execute("drop table DBT_DOWN_PROD.MARTS.CUSTOMER_ORDERS")
        assert statuses() == {"dbt_up": "skipped", "dbt_down": "built", "dbt_down_loom": "skipped"}
        cur = conn.cursor()
        cur.execute("select count(*) from DBT_DOWN_PROD.MARTS.CUSTOMER_ORDERS")
        assert cur.fetchone()[0] > 0  # type: ignore[index]
    finally:
        conn.close()


def test_planted_secrets_appear_nowhere(rehearsal: Rehearsal) -> None:
    needles = rehearsal.secrets.needles(Path(rehearsal.emulation.env["SNOWFLAKE_PRIVATE_KEY_PATH"]))
    assert len(needles) > 20
    # dbt's own output goes to the projects' logs (searched below with every other file).
    assert "Completed successfully" in (rehearsal.root / "logs/dbt_up.log").read_text()
    haystacks: dict[str, str] = {"captured output": rehearsal.output}
    snapshot = bucket_snapshot(rehearsal.s3(), rehearsal.bucket)
    assert any(k.endswith("latest/manifest.json") for k in snapshot)
    for key, (body, metadata) in snapshot.items():
        haystacks[f"s3://{rehearsal.bucket}/{key}"] = body.decode("utf-8") + json.dumps(metadata)
    keys = {rehearsal.secrets.encrypted_key.name, Path(rehearsal.emulation.env["SNOWFLAKE_PRIVATE_KEY_PATH"]).name}
    for path in rehearsal.root.rglob("*"):
        if path.is_file() and path.name not in keys and path.suffix != ".msgpack":
            haystacks[str(path.relative_to(rehearsal.root))] = path.read_text(errors="replace")
    leaks = [(where, n[:12]) for where, text in haystacks.items() for n in needles if n in text]
    assert leaks == []
    assert not any(
        n.encode() in (rehearsal.root / p / "target/partial_parse.msgpack").read_bytes()
        for n in needles
        for p in ("dbt_up", "dbt_down", "dbt_down_loom")
    )


def test_plain_key_from_emulate_env_and_wrong_passphrase(
    rehearsal: Rehearsal, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = rehearsal.emulation.env["SNOWFLAKE_PRIVATE_KEY_PATH"]
    monkeypatch.setenv("SNOWFLAKE_PRIVATE_KEY_PATH", plain)
    monkeypatch.delenv("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE")
    ok = run_dbt(rehearsal.mesh, "dbt_up", ["debug", "--connection"], raise_on_failure=False)
    assert ok.success, ok.errors
    # fakesnow accepts any signature, but the client must decrypt the key to sign at all.
    wrong = f"wrong-{secrets.token_hex(6)}"
    monkeypatch.setenv("SNOWFLAKE_PRIVATE_KEY_PATH", str(rehearsal.secrets.encrypted_key))
    monkeypatch.setenv("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE", wrong)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        bad = run_dbt(rehearsal.mesh, "dbt_up", ["debug", "--connection"], raise_on_failure=False)
    assert not bad.success
    assert "could not decrypt key" in out.getvalue()
    assert wrong not in out.getvalue() and wrong not in " ".join(bad.errors)


# --- the task surface ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "missing", ["SNOWFLAKE_ACCOUNT", "SNOWFLAKE_USER", "SNOWFLAKE_PRIVATE_KEY_PATH"]
)
def test_missing_snowflake_variable_fails_before_dbt(task_root: Path, missing: str) -> None:
    key = task_root / ".mesh/emulate/unused.p8"
    if not key.exists():
        emulate.generate_key_pair(key)
    env = {
        **_clean_environ(),
        "SNOWFLAKE_ACCOUNT": "acme-prod",
        "SNOWFLAKE_USER": "DBT_UP_CI_USER",
        "SNOWFLAKE_PRIVATE_KEY_PATH": str(key),
        "MESH_REGISTRY": "s3://acme-dbt-mesh-registry/mesh",
    }
    del env[missing]
    proc = _invoke(task_root, "mesh", "--target", "prod", env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and missing in lines[0], proc.stderr
    assert not (task_root / "dbt_up/target").exists()  # dbt never started


def _alive(pid: int, start_time: str) -> bool:
    return emulate.is_running(pid, start_time)


def test_emulate_up_and_down_through_invoke(task_root: Path) -> None:
    env = _clean_environ()
    # Decoys: an unrelated process and another moto_server, which `down` must leave running.
    sleeper = subprocess.Popen(["sleep", "300"], stdin=subprocess.DEVNULL)
    other_moto = start_moto_server()
    try:
        started = time.monotonic()
        up = _invoke(task_root, "emulate.up", env=env)
        assert up.returncode == 0, up.stderr
        assert "emulate: S3 (moto)" in up.stdout and "emulate: Snowflake (fakesnow)" in up.stdout
        up_seconds = time.monotonic() - started
        records = json.loads((task_root / ".mesh/emulate.pids").read_text())["processes"]
        assert [r["name"] for r in records] == ["s3", "snowflake"]
        for record in records:  # outlived the `invoke emulate.up` process
            assert _alive(record["pid"], record["start_time"]), record
        written = emulate.read_env_file(task_root / ".mesh/emulate.env")
        assert written["MESH_TARGET"] == "prod" and written["SNOWFLAKE_PROTOCOL"] == "http"
        assert written["MESH_REGISTRY"] == "s3://acme-dbt-mesh-registry/mesh"
        assert written["SNOWFLAKE_PRIVATE_KEY_PATH"] == str(task_root / ".mesh/emulate/rsa_key.p8")
        assert not any("PASSPHRASE" in name or "PASSWORD" in name for name in written)
        client = raw_client(written["AWS_ENDPOINT_URL_S3"])
        client.head_bucket(Bucket="acme-dbt-mesh-registry")
        again = _invoke(task_root, "emulate.up", env=env)
        assert again.returncode == 2 and "already running" in again.stderr

        down = _invoke(task_root, "emulate.down", env=env)
        assert down.returncode == 0, down.stderr
        for record in records:
            assert not _alive(record["pid"], record["start_time"]), record
            assert f"stopped pid {record['pid']}" in down.stdout
        assert not (task_root / ".mesh/emulate.env").exists()
        assert not (task_root / ".mesh/emulate.pids").exists()
        assert sleeper.poll() is None and other_moto.proc.poll() is None
        assert os.getpid() and emulate.process_start_time(os.getpid())
        idle = _invoke(task_root, "emulate.down", env=env)
        assert idle.returncode == 0 and "no emulator to stop" in idle.stdout
        assert up_seconds < 60
    finally:
        sleeper.send_signal(signal.SIGTERM)
        sleeper.wait(timeout=10)
        other_moto.stop()
        other_moto.log.unlink(missing_ok=True)
