"""invoke's own usage errors and the `mesh` console script's, through the real binaries: exit 2, one
`error: ...` line on stderr, nothing on stdout, and the closest task, flag or command.

invoke alone exits 1 for these (and takes `build --projet x` as project `--projet`);
mesh/ui/taskrunner.py, installed by tasks.py, makes them the mesh's exit 2.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from invoke import Program

from mesh.ui import taskrunner
from tests.conftest import REPO

BIN = Path(sys.executable).parent


def _run(binary: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESH_")}
    env["PYTHONPATH"] = str(REPO)  # this checkout's mesh/, also in the child
    return subprocess.run(
        [str(BIN / binary), *args], cwd=cwd, env=env, capture_output=True, text=True,
        stdin=subprocess.DEVNULL, timeout=120, check=False,
    )


INVOKE_CASES = [
    (["lineag"], "error: unknown task 'lineag'; did you mean 'lineage'? (invoke --list shows every task)"),
    (["registry.lst"], "error: unknown task 'registry.lst'; did you mean 'registry.list'?"),
    (["emulate.up", "dwn"], "error: unknown task 'dwn'; did you mean 'emulate.down'?"),
    (["--help", "lineag"], "error: unknown task 'lineag'; did you mean 'lineage'?"),
    (["build", "--projet", "x"], "error: invoke build: unknown flag --projet; did you mean '--project'? (see invoke --help build)"),
    (["build", "--projet"], "error: invoke build: unknown flag --projet; did you mean '--project'?"),
    (["lineage", "--formt", "json"], "error: invoke lineage: unknown flag --formt; did you mean '--format'?"),
    (["bench", "--no-flow"], "error: invoke bench: unknown flag --no-flow; did you mean '--no-flows'?"),
    (["--lst"], "error: invoke: unknown flag --lst; did you mean '--list'?"),
    (["--list", "regstry"], "error: unknown collection 'regstry'; did you mean 'registry'?"),
    (["build", "--project"], "error: invoke build: --project needs a value (see invoke --help build)"),
    (["build"], "error: invoke build: give --project VALUE (see invoke --help build)"),
    (["registry.rollback", "--project", "p"], "error: invoke registry.rollback: give --to VALUE"),
    (["mesh", "--jobs", "x"], "error: invoke: --jobs takes a number, got 'x'"),
    (["bench", "--repeat=y"], "error: invoke: --repeat takes a number, got 'y'"),
    (["test", "--workers", "z"], "error: invoke: --workers takes a number, got 'z'"),
    # Parsed by invoke (an int, not the string "1"), then refused or carried on by the task itself:
    (["mesh", "--jobs=-1"], "error: --jobs takes a number of projects (0: one per core), got -1"),
    (["mesh", "--jobs", "1", "--target", "nosuch"], "error: unknown target 'nosuch'"),
]
DECIDED_BY_THE_TASK = 2


@pytest.mark.parametrize(("args", "message"), INVOKE_CASES, ids=[" ".join(a) for a, _ in INVOKE_CASES])
def test_invoke_usage_errors_exit_2_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    done = _run("invoke", "-r", str(REPO), *args, cwd=tmp_path)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(message), done.stderr
    assert done.stdout == ""


def test_invoke_still_lists_and_helps(tmp_path: Path) -> None:
    listed = _run("invoke", "-r", str(REPO), "--list", cwd=tmp_path)
    assert listed.returncode == 0 and "emulate.run" in listed.stdout and "lineage" in listed.stdout
    helped = _run("invoke", "-r", str(REPO), "--help", "build", cwd=tmp_path)
    assert helped.returncode == 0 and "--project" in helped.stdout, helped.stderr


def test_usage_problem_parses_like_the_binary() -> None:
    from tasks import ns

    for args, message in INVOKE_CASES[:-DECIDED_BY_THE_TASK]:
        if "--list" in args:
            continue  # decided after parsing, when invoke lists
        problem = taskrunner.usage_problem(ns, args)
        assert problem is not None and message.removeprefix("error: ").startswith(problem[:40]), (args, problem)
    for good in (["mesh", "--target", "prod"], ["build", "dbt_up"], ["-c", "tasks_infra", "infra.lint"],
                 ["lint", "test"], ["emulate.run", "--", "anything", "--at-all"], ["--list"]):
        assert taskrunner.usage_problem(ns, good) is None, good


def test_install_is_idempotent() -> None:
    taskrunner.install()
    first = (Program.parse_tasks, Program.parse_cleanup)
    taskrunner.install()
    assert (Program.parse_tasks, Program.parse_cleanup) == first
    assert getattr(Program.parse_tasks, "_mesh_usage_errors", False)


MESH_CASES = [
    (["publsh", "--project", "x"], "error: mesh: unknown command 'publsh'; did you mean 'publish'?"),
    (["valdate"], "error: mesh: unknown command 'valdate'; did you mean 'validate'?"),
    (["publish", "--projet", "x"], "error: mesh publish: unknown option --projet; did you mean '--project'?"),
    (["--rot", "x", "sync"], "error: mesh: unknown option --rot; did you mean '--root'?"),
    (["sync", "--project"], "error: mesh sync: argument --project: expected one argument"),
    (["publish"], "error: mesh publish: the following arguments are required: --project"),
    ([], "error: mesh: give a command: publish, check, sync, validate"),
    (["validate", "--format", "jsn"], "error: mesh validate: argument --format: invalid choice: 'jsn'"),
    (["run", "--jobs", "x"], "error: mesh run: argument --jobs: takes a number of projects (0: one per core), got 'x'"),
    (["run", "--jobs=-1"], "error: mesh run: argument --jobs: takes a number of projects (0: one per core), got '-1'"),
]


@pytest.mark.parametrize(("args", "message"), MESH_CASES, ids=[" ".join(a) or "(none)" for a, _ in MESH_CASES])
def test_mesh_usage_errors_exit_2_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    done = _run("mesh", *args, cwd=tmp_path)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(message), done.stderr
    assert done.stdout == ""


def test_mesh_version_names_the_package_and_dbt_core(tmp_path: Path) -> None:
    done = _run("mesh", "--version", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    expected = f"mesh {metadata.version('dbt-mesh-core')} (dbt-mesh-core), dbt-core {metadata.version('dbt-core')}"
    assert done.stdout.strip() == expected
