"""The emulators' environment without surprises in the shell: `invoke emulate.run -- CMD...` runs one
command with it and changes nothing else; `.mesh/emulate.env` can be undone (`mesh_emulate_off`,
the `unset` line `emulate.down` prints); and a prod target pointed at a stopped emulator fails in
seconds with one line instead of the connector's 75 s of retries.

The emulators themselves (moto, fakesnow) run in tests/e2e/test_prod_rehearsal.py; here a plain
`sleep` process stands in for them where only "is it running" matters, and a listening socket
where only "does the port answer" does.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mesh.core.errors import ConfigError
from mesh.infra import emulate
from mesh.warehouse.reachable import UnreachableError, check_snowflake_reachable, snowflake_endpoint
from tests.conftest import REPO, copy_template

INVOKE = Path(sys.executable).parent / "invoke"


def _environ() -> dict[str, str]:
    """This process's environment without anything that points the mesh somewhere."""
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("MESH_", "SNOWFLAKE_", "AWS_")) and not k.lower().endswith("_proxy")
    }
    env.update(PYTHONPATH=str(REPO), DBT_SEND_ANONYMOUS_USAGE_STATS="false", DO_NOT_TRACK="1")
    return env


@pytest.fixture
def task_root(tmp_path: Path) -> Path:
    """A template copy with the repo's task files: invoke's ROOT is this folder."""
    root = copy_template(tmp_path / "mesh")
    for name in ("tasks.py", "tasks_infra.py"):
        shutil.copy2(REPO / name, root / name)
    return root


@pytest.fixture
def stand_in(task_root: Path) -> Iterator[dict[str, str]]:
    """`.mesh/emulate.env` and `.mesh/emulate.pids` as `emulate.up` writes them, the pids being a
    `sleep` that is running (so `emulate.run` accepts them); Snowflake's port is closed."""
    key = emulate.generate_key_pair(task_root / emulate.EMULATE_DIR / emulate.KEY_FILE)
    env = emulate.emulator_env(
        f"http://127.0.0.1:{emulate.free_port()}", "s3://mesh-rehearsal/mesh", emulate.free_port(), key
    )
    emulate.write_env_file(task_root / emulate.ENV_FILE, env)
    sleeper = subprocess.Popen(["sleep", "300"], stdin=subprocess.DEVNULL)
    start = emulate.process_start_time(sleeper.pid) or ""
    servers = [
        emulate.ServerProcess(name, sleeper.pid, start, 1, "http://127.0.0.1:1", ["sleep"], "log")
        for name in ("s3", "snowflake")
    ]
    emulate._write_pids(task_root / emulate.PIDS_FILE, servers)
    try:
        yield env
    finally:
        sleeper.kill()
        sleeper.wait(timeout=10)


def _invoke(root: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(INVOKE), *args], cwd=root, env=env, capture_output=True, text=True,
        stdin=subprocess.DEVNULL, timeout=120, check=False,
    )


# --- emulate.run ------------------------------------------------------------------------------------


def test_emulate_run_runs_one_command_with_the_env_and_passes_its_exit_code(
    task_root: Path, stand_in: dict[str, str]
) -> None:
    script = 'printf "%s|%s|%s|%s" "$MESH_TARGET" "$SNOWFLAKE_PORT" "$1" "$2"; exit 5'
    done = _invoke(task_root, "emulate.run", "--", "sh", "-c", script, "sh", "a  b", "--c", env=_environ())
    assert done.returncode == 5, done.stderr
    # Quoting survives (invoke itself only keeps the remainder joined by spaces).
    assert done.stdout == f"prod|{stand_in['SNOWFLAKE_PORT']}|a  b|--c"
    assert done.stderr == ""


def test_emulate_run_finds_invoke_without_an_activated_venv(task_root: Path, stand_in: dict[str, str]) -> None:
    env = {**_environ(), "PATH": "/usr/bin:/bin"}
    done = _invoke(task_root, "emulate.run", "--", "sh", "-c", "command -v invoke; command -v mesh", env=env)
    assert done.returncode == 0, done.stderr
    found = [Path(p).resolve() for p in done.stdout.split()]
    assert found == [INVOKE.resolve(), (INVOKE.parent / "mesh").resolve()]


def test_the_shell_after_emulate_run_targets_local(task_root: Path, stand_in: dict[str, str]) -> None:
    """What users hit: after a rehearsal, a plain `invoke` in the same shell is local again."""
    shell = (
        f"{INVOKE} emulate.run -- sh -c 'test \"$MESH_TARGET\" = prod' && "
        'printf "%s" "${MESH_TARGET-unset} ${SNOWFLAKE_HOST-unset}"'
    )
    done = subprocess.run(["sh", "-c", shell], cwd=task_root, env=_environ(), capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "unset unset"


@pytest.mark.parametrize(
    ("args", "prepare", "message"),
    [
        (["emulate.run"], "running", "give the command after --, e.g. `invoke emulate.run -- invoke mesh --target prod`"),
        (["emulate.run", "--", "no-such-command-4c1e"], "running", "cannot run 'no-such-command-4c1e'"),
        (["emulate.run", "--", "true"], "no env", "no .mesh/emulate.env: start the emulators first with `invoke emulate.up`"),
        (["emulate.run", "--", "true"], "stopped", "the emulators are not running (s3 pid"),
    ],
)
def test_emulate_run_refuses_in_one_line(
    task_root: Path, stand_in: dict[str, str], args: list[str], prepare: str, message: str
) -> None:
    if prepare == "no env":
        (task_root / emulate.ENV_FILE).unlink()
    elif prepare == "stopped":
        pids = task_root / emulate.PIDS_FILE
        pids.write_text(pids.read_text().replace('"start_time": "', '"start_time": "0'))
    done = _invoke(task_root, *args, env=_environ())
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr


def test_remainder_argv_keeps_quoting_when_sys_argv_matches() -> None:
    argv = ["invoke", "emulate.run", "--", "sh", "-c", "echo 'a  b'"]
    assert emulate.remainder_argv(argv, "sh -c echo 'a  b'") == ["sh", "-c", "echo 'a  b'"]
    # In-process runs (no such sys.argv): the remainder, split as a shell would.
    assert emulate.remainder_argv(["pytest"], "invoke mesh --target prod") == ["invoke", "mesh", "--target", "prod"]


# --- the env file and emulate.down ------------------------------------------------------------------


def test_sourcing_the_env_file_and_mesh_emulate_off_leave_the_shell_as_it_was(tmp_path: Path) -> None:
    env = emulate.emulator_env("http://127.0.0.1:1", "s3://b/p", 2, tmp_path / "key with space.p8")
    path = tmp_path / "emulate.env"
    emulate.write_env_file(path, env)
    assert emulate.read_env_file(path) == env
    before = {**_environ(), "KEEP_ME": "yes"}
    script = f". '{path}' && test \"$MESH_TARGET\" = prod && mesh_emulate_off && env"
    done = subprocess.run(["sh", "-c", script], env=before, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    after = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    assert not set(env) & set(after), sorted(set(env) & set(after))
    assert after["KEEP_ME"] == "yes"
    # The function removes itself too.
    gone = subprocess.run(["sh", "-c", f". '{path}'; mesh_emulate_off; command -v mesh_emulate_off"],
                          env=before, capture_output=True, text=True, check=False)
    assert gone.returncode != 0 and gone.stdout == ""


def test_the_unset_line_names_every_variable_the_env_file_sets() -> None:
    names = list(emulate.emulator_env("u", "r", 1, Path("k")))
    assert emulate.unset_line() == "unset " + " ".join(names)
    assert "MESH_TARGET" in names and "SNOWFLAKE_HOST" in names


def test_emulate_down_prints_the_unset_line(task_root: Path, stand_in: dict[str, str]) -> None:
    unset = emulate.unset_line(list(stand_in))
    done = _invoke(task_root, "emulate.down", env=_environ())
    assert done.returncode == 0, done.stderr
    assert not (task_root / emulate.ENV_FILE).exists()
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("emulate: a shell that sourced it still points the prod target")
    assert last.endswith(f"run `mesh_emulate_off` there, or: {unset}")


def test_emulate_down_says_when_its_own_shell_sourced_the_file(task_root: Path, stand_in: dict[str, str]) -> None:
    done = _invoke(task_root, "emulate.down", env={**_environ(), **stand_in})
    assert done.returncode == 0, done.stderr
    assert "emulate: this shell still points the prod target at the stopped emulators" in done.stdout


# --- a stopped emulator fails in seconds ------------------------------------------------------------


def test_prod_target_on_a_stopped_emulator_fails_in_one_line_before_dbt(
    task_root: Path, stand_in: dict[str, str]
) -> None:
    """The shell that sourced the env file, after `emulate.down`: MESH_TARGET=prod, nothing listens."""
    done = _invoke(task_root, "mesh", env={**_environ(), **stand_in})
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    port = stand_in["SNOWFLAKE_PORT"]
    assert line.startswith(f"error: cannot reach Snowflake at 127.0.0.1:{port} (from SNOWFLAKE_HOST, SNOWFLAKE_PORT): connection refused")
    assert "`invoke emulate.up`" in line and "`mesh_emulate_off`" in line
    assert not (task_root / "dbt_up" / "target").exists()  # dbt never started


def test_reachable_endpoint_passes(tmp_path: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        check_snowflake_reachable({"SNOWFLAKE_HOST": "127.0.0.1", "SNOWFLAKE_PORT": str(port)})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SNOWFLAKE_HOST": "127.0.0.1", "SNOWFLAKE_PORT": "closed"}, "connection refused; no emulator listens there"),
        ({"SNOWFLAKE_HOST": "warehouse.invalid"}, "cannot reach Snowflake at warehouse.invalid:443 (from SNOWFLAKE_HOST): no such host name; check the account"),
        ({"SNOWFLAKE_HOST": "127.0.0.1", "SNOWFLAKE_PORT": "https"}, "SNOWFLAKE_PORT must be a port number, got 'https'"),
        ({"SNOWFLAKE_HOST": "127.0.0.1", "SNOWFLAKE_PORT": "70000"}, "SNOWFLAKE_PORT must be a port number"),
    ],
)
def test_unreachable_or_bad_endpoint_is_one_line(env: dict[str, str], message: str) -> None:
    if env.get("SNOWFLAKE_PORT") == "closed":
        env = {**env, "SNOWFLAKE_PORT": str(emulate.free_port())}
    with pytest.raises(ConfigError) as info:
        check_snowflake_reachable(env)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert info.value.exit_code == 2


def test_a_proxy_skips_the_check_unless_no_proxy_covers_the_host() -> None:
    closed = {"SNOWFLAKE_HOST": "127.0.0.1", "SNOWFLAKE_PORT": str(emulate.free_port())}
    check_snowflake_reachable({**closed, "HTTPS_PROXY": "http://proxy.example:3128"})
    with pytest.raises(UnreachableError):
        check_snowflake_reachable({**closed, "https_proxy": "http://p:1", "NO_PROXY": "localhost,127.0.0.1"})


def test_endpoint_of_a_real_account() -> None:
    assert snowflake_endpoint({"SNOWFLAKE_ACCOUNT": "myorg-acct"}) == (
        "myorg-acct.snowflakecomputing.com", 443, "SNOWFLAKE_ACCOUNT"
    )
    assert snowflake_endpoint({"SNOWFLAKE_ACCOUNT": "xy1.cn-north-1"})[0].endswith(".snowflakecomputing.cn")  # type: ignore[index]
    assert snowflake_endpoint({}) is None


# --- the same commands through the `mesh` script ------------------------------------------------


def test_the_mesh_script_runs_the_emulator_commands_and_names_its_own(
    task_root: Path, stand_in: dict[str, str]
) -> None:
    """A team repository has no invoke: `mesh emulate.run`, `mesh emulate.down`, and the hint of a
    stopped emulator names them."""
    mesh = str(INVOKE.parent / "mesh")

    def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [mesh, *args], cwd=task_root, env=env, capture_output=True, text=True,
            stdin=subprocess.DEVNULL, timeout=120, check=False,
        )

    script = 'printf "%s|%s|%s" "$MESH_TARGET" "$1" "$2"; exit 5'
    done = run("emulate.run", "--", "sh", "-c", script, "sh", "a  b", "--c", env=_environ())
    assert (done.returncode, done.stdout, done.stderr) == (5, "prod|a  b|--c", "")

    stopped = run("run", env={**_environ(), **stand_in})
    assert stopped.returncode == 2, stopped.stderr
    (line,) = stopped.stderr.strip().splitlines()
    assert "start one with `mesh emulate.up` and run through `mesh emulate.run -- ...`" in line, line

    down = run("emulate.down", env=_environ())
    assert down.returncode == 0, down.stderr
    assert not (task_root / emulate.ENV_FILE).exists()
    assert down.stdout.strip().splitlines()[-1].startswith("emulate: a shell that sourced it")
