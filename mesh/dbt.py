"""Run dbt in-process (`dbtRunner`) for one project of the mesh, with the right profile and target.

In-process saves the 2-3 s interpreter and import start-up of every `dbt` CLI call. dbt keeps global
state, so invocations are serialised; the working directory is the project's for the duration of a
call, because dbt-loom resolves its config and file paths relative to it, as it does for a user
running `dbt` in the project folder.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesh.config import Mesh
from mesh.errors import BuildFailedError, ConfigError

_LOCK = threading.Lock()
# dbt's anonymous usage tracking would try to reach the internet on every call.
BASE_ENV = {"DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DO_NOT_TRACK": "1"}
PROD_REQUIRED_ENV = ("SNOWFLAKE_ACCOUNT", "SNOWFLAKE_USER", "SNOWFLAKE_PRIVATE_KEY_PATH")


@dataclass
class DbtRun:
    """Outcome of one dbt invocation."""

    project: str
    command: str
    success: bool
    statuses: Counter[str] = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    result: Any = None

    def summary(self) -> str:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(self.statuses.items())) or "no nodes run"
        return f"dbt {self.command} {self.project}: {counts}"


@contextlib.contextmanager
def _environment(values: dict[str, str], cwd: Path) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    old_cwd = Path.cwd()
    os.environ.update(values)
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(old_cwd)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def dbt_env(mesh: Mesh, project_dir: Path) -> dict[str, str]:
    """Environment a dbt call of the mesh runs with."""
    env = dict(BASE_ENV)
    env["MESH_WAREHOUSE_DIR"] = str(mesh.warehouse_dir)
    env["DBT_LOOM_CONFIG"] = str(project_dir / "dbt_loom.config.yml")
    return env


def check_target_env(mesh: Mesh) -> None:
    """Fail before dbt starts when the prod profile's required variables are missing."""
    if mesh.dbt_target != "prod":
        return
    missing = [name for name in PROD_REQUIRED_ENV if not os.environ.get(name)]
    if missing:
        raise ConfigError(
            f"environment variable {missing[0]} is not set; the prod target needs "
            f"{', '.join(PROD_REQUIRED_ENV)} (see README, Production)"
        )
    key = Path(os.environ["SNOWFLAKE_PRIVATE_KEY_PATH"])
    if not key.is_file():
        raise ConfigError(f"SNOWFLAKE_PRIVATE_KEY_PATH points at {key}, which is not a file")


def run_dbt(mesh: Mesh, project_name: str, args: list[str], raise_on_failure: bool = True) -> DbtRun:
    """Run `dbt <args>` for a project of the mesh; raise BuildFailedError when dbt fails."""
    from dbt.cli.main import dbtRunner

    project = mesh.project(project_name)
    check_target_env(mesh)
    mesh.warehouse_dir.mkdir(parents=True, exist_ok=True)
    run = DbtRun(project_name, args[0], success=False)

    def on_event(event: Any) -> None:
        level = event.info.level
        if level == "warn":
            run.warnings.append(event.info.msg)
        elif level == "error":
            run.errors.append(event.info.msg)

    full = [
        *args,
        "--project-dir",
        str(project.dir),
        "--profiles-dir",
        str(mesh.profiles_dir_of(project_name)),
        "--target",
        mesh.dbt_target,
    ]
    with _LOCK, _environment(dbt_env(mesh, project.dir), project.dir):
        outcome = dbtRunner(callbacks=[on_event]).invoke(full)
    run.success = bool(outcome.success)
    run.result = outcome.result
    for item in getattr(outcome.result, "results", None) or []:
        run.statuses[str(getattr(item, "status", "unknown"))] += 1
    if outcome.exception is not None:
        run.success = False
        run.errors.append(str(outcome.exception))
    if raise_on_failure and not run.success:
        first = next((e for e in run.errors if e.strip()), "see the dbt output above")
        cause = " ".join(first.replace("Encountered an error:", "").split())
        if len(cause) > 400:
            cause = cause[:400] + "…"
        raise BuildFailedError(f"dbt {args[0]} failed for {project_name}: {cause}")
    return run
