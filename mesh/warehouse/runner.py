"""Run dbt in-process (`dbtRunner`) for one project of the mesh, with the right profile and target.

In-process saves the 2-3 s interpreter and import start-up of every `dbt` CLI call. dbt keeps global
state, so invocations are serialised; the working directory is the project's for the duration of a
call, because dbt-loom resolves its config and file paths relative to it, as it does for a user
running `dbt` in the project folder. The orchestration (mesh/run/scheduler.py) runs each project in a
worker process of its own, so projects never share dbt's global state.

Inside `dbt_log(path)`, dbt's console output goes to that file (no colours) instead of the terminal,
and a failure is reported as one line naming the node, its file and dbt's own first error line.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from mesh.core import interrupts
from mesh.core.errors import BuildFailedError, ConfigError, Interrupted
from mesh.core.failpoints import failpoint
from mesh.project.config import Mesh, Project
from mesh.project.profiles import BASE_ENV
from mesh.warehouse.reachable import check_snowflake_reachable
from mesh.warehouse.readers import release_dbt_connections
from mesh.warehouse.wap import write_effective_profile

_LOCK = threading.Lock()
PROD_REQUIRED_ENV = ("SNOWFLAKE_ACCOUNT", "SNOWFLAKE_USER", "SNOWFLAKE_PRIVATE_KEY_PATH")
ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# Statuses of a node in dbt's results that mean it did not pass.
FAILED_STATUSES = frozenset({"error", "fail", "runtime error"})
_GENERIC_LINES = re.compile(
    r"^(Encountered an error:|Runtime Error|Database Error|Compilation Error|Parsing Error"
    r"|Failure in test|Completed with \d+ errors?)\s*$",
    re.IGNORECASE,
)

# Where dbt's console output goes (None: dbt's own default, the terminal), and who hears progress.
_LOG: ContextVar[Path | None] = ContextVar("mesh_dbt_log", default=None)
Progress = Callable[[str, dict[str, Any]], None]
_PROGRESS: ContextVar[Progress | None] = ContextVar("mesh_dbt_progress", default=None)
# Extra environment of every dbt call in a block (an audit build's MESH_BUILD_DIR, for one).
_EXTRA_ENV: ContextVar[dict[str, str]] = ContextVar("mesh_dbt_env", default={})  # noqa: B039


@contextlib.contextmanager
def dbt_environment(values: dict[str, str]) -> Iterator[None]:
    """Within the block, every `run_dbt` also gets `values` in its environment."""
    token = _EXTRA_ENV.set({**_EXTRA_ENV.get(), **values})
    try:
        yield
    finally:
        _EXTRA_ENV.reset(token)


@dataclass
class NodeFailure:
    """One node that failed in a dbt run: what, where, and dbt's first error line."""

    unique_id: str
    path: str
    status: str
    message: str

    def line(self) -> str:
        where = f" ({self.path})" if self.path else ""
        return f"{self.unique_id}{where}: {self.message}"


# The counts of dbt's StatsLine (`Done. PASS=… TOTAL=…`), in its order, and how it labels them.
STATS_ORDER = ("pass", "warn", "error", "skip", "noop", "total")
STATS_LABELS = {"noop": "NO-OP"}


@dataclass
class DbtRun:
    """Outcome of one dbt invocation (picklable: it crosses from a worker process)."""

    project: str
    command: str
    success: bool
    statuses: Counter[str] = field(default_factory=Counter)
    stats: dict[str, int] = field(default_factory=dict)  # dbt's own "Done. PASS=…" numbers
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    failures: list[NodeFailure] = field(default_factory=list)
    executed: list[str] = field(default_factory=list)  # unique_ids dbt ran, in order
    log: str | None = None
    result: Any = None

    def counts(self) -> str:
        """dbt's own summary numbers, as its `Done.` line has them, so that they add up to TOTAL
        (`PASS=22 WARN=0 ERROR=0 SKIP=0 NO-OP=1 TOTAL=23`: an exposure is a no-op)."""
        if self.stats:
            others = sorted(k for k in self.stats if k not in STATS_ORDER)  # a newer dbt's
            keys = [*STATS_ORDER[:-1], *others, STATS_ORDER[-1]]
            return " ".join(f"{STATS_LABELS.get(k, k.upper())}={self.stats.get(k, 0)}" for k in keys)
        return ", ".join(f"{n} {s}" for s, n in sorted(self.statuses.items())) or "no nodes run"

    def summary(self) -> str:
        return f"dbt {self.command} {self.project}: {self.counts()}"

    def cause(self) -> str:
        """One line: the first failing node with dbt's message, or dbt's own error."""
        if self.failures:
            more = len(self.failures) - 1
            extra = f" (and {more} more failing node{'s' if more != 1 else ''})" if more else ""
            return self.failures[0].line() + extra
        first = next((e for e in self.errors if clean_message(e)), "")
        return clean_message(first) or "dbt reported a failure without a message"

    def error(self) -> BuildFailedError:
        where = f"; full log: {self.log}" if self.log else ""
        return BuildFailedError(f"dbt {self.command} failed for {self.project}: {self.cause()}{where}")


def _contract_rows(lines: list[str]) -> str | None:
    """dbt's contract-mismatch table as one sentence: `order_total: DOUBLE in the model,
    DECIMAL(10,2) in the contract (data type mismatch)`; None when there is no such table."""
    rows = []
    for line in lines:
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.strip().startswith("|") else []
        if len(cells) < 4 or set(cells[0]) <= {"-", " "} or cells[0] == "column_name":
            continue
        name, model_type, contract_type, why = cells[:4]
        rows.append(
            f"{name}: {model_type or 'missing'} in the model, {contract_type or 'missing'} in the contract ({why})"
        )
    return "; ".join(rows) or None


def clean_message(text: str, limit: int = 400) -> str:
    """dbt's message as one plain line: no ANSI codes, generic header lines dropped, joined. A
    contract mismatch keeps its rows, not dbt's boilerplate: the cause comes before the cut."""
    lines = [ANSI_RE.sub("", line).strip() for line in str(text).splitlines()]
    if any("enforced contract that failed" in line for line in lines):
        rows = _contract_rows(lines)
        if rows is not None:
            message = f"the model's columns do not match its enforced contract: {rows}"
            return message if len(message) <= limit else message[: limit - 1] + "…"
    lines = [line for line in lines if line and not _GENERIC_LINES.match(line)]
    message = " ".join(" ".join(lines).split())
    return message if len(message) <= limit else message[: limit - 1] + "…"


@contextlib.contextmanager
def dbt_log(path: Path, progress: Progress | None = None) -> Iterator[Path]:
    """Within the block, dbt's console output of every `run_dbt` is appended to `path` (the file
    is created by the first dbt call, so a step that fails before dbt runs writes nothing)."""
    log_token = _LOG.set(path)
    progress_token = _PROGRESS.set(progress)
    try:
        yield path
    finally:
        _LOG.reset(log_token)
        _PROGRESS.reset(progress_token)


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


LOOM_CONFIG = "dbt_loom.config.yml"
EMPTY_LOOM_CONFIG = b"# Generated by the dbt mesh: this project reads no upstream through dbt-loom.\nmanifests: []\n"


def generated_loom_config(project: Project) -> Path:
    """Where the dbt-loom config the mesh gives dbt lives: never the team's own file."""
    return project.mesh_dir / LOOM_CONFIG


def dbt_env(mesh: Mesh, project_name: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment a dbt call of the mesh runs with.

    dbt-loom is a plugin every dbt call in this environment loads, and it reads only the config the
    mesh generated under `.mesh/`: a consumer's, written by sync, naming the verified interfaces of
    its upstreams; every other project's, empty (`manifests: []`), so dbt-loom behaves as it does
    for any project (its patched access checks included) while reading nothing. A team's own
    `dbt_loom.config.yml` is never given to dbt-loom: add reads it for upstream names only.
    """
    project = mesh.project(project_name)
    env = dict(BASE_ENV)
    env["MESH_WAREHOUSE_DIR"] = str(mesh.warehouse_dir)
    config = generated_loom_config(project)
    if not (project.upstreams and project.config.upstreams_via == "loom"):
        try:
            current = config.read_bytes()
        except OSError:
            current = None
        if current != EMPTY_LOOM_CONFIG:
            config.parent.mkdir(parents=True, exist_ok=True)
            config.write_bytes(EMPTY_LOOM_CONFIG)
    env["DBT_LOOM_CONFIG"] = str(config)
    env.update(extra or {})
    return env


def stray_loom_config(mesh: Mesh, project_name: str) -> Path | None:
    """A `dbt_loom.config.yml` in a project that does not read upstreams through dbt-loom."""
    project = mesh.project(project_name)
    path = project.dir / LOOM_CONFIG
    uses_loom = bool(project.upstreams) and project.config.upstreams_via == "loom"
    return path if path.exists() and not uses_loom else None


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
    check_snowflake_reachable()  # seconds, not the connector's 75 s of retries (mesh/warehouse/reachable.py)


def _status(value: Any) -> str:
    return str(getattr(value, "value", value)).lower()


def _failures(result: Any) -> list[NodeFailure]:
    failures = []
    for item in getattr(result, "results", None) or []:
        status = _status(getattr(item, "status", ""))
        if status not in FAILED_STATUSES:
            continue
        node = getattr(item, "node", None)
        failures.append(
            NodeFailure(
                unique_id=str(getattr(node, "unique_id", "") or "?"),
                path=str(getattr(node, "original_file_path", "") or ""),
                status=status,
                message=clean_message(getattr(item, "message", None) or status),
            )
        )
    return failures


def run_dbt(
    mesh: Mesh,
    project_name: str,
    args: list[str],
    raise_on_failure: bool = True,
    env: dict[str, str] | None = None,
) -> DbtRun:
    """Run `dbt <args>` for a project of the mesh; raise BuildFailedError when dbt fails.

    `env`: extra environment for this call (e.g. MESH_BUILD_DIR for an audit build). A Ctrl-C (or
    the SIGTERM a worker turns into one) during dbt raises Interrupted: never reported as a failed
    build, never swallowed.
    """
    from dbt.cli.main import dbtRunner

    project = mesh.project(project_name)
    check_target_env(mesh)
    mesh.warehouse_dir.mkdir(parents=True, exist_ok=True)
    run = DbtRun(project_name, args[0], success=False)
    log = _LOG.get()
    progress = _PROGRESS.get()

    def on_event(event: Any) -> None:
        info = event.info
        if info.level == "warn":
            run.warnings.append(clean_message(info.msg))
        elif info.level == "error":
            run.errors.append(info.msg)
        if info.name == "StatsLine":
            run.stats = {k: int(v) for k, v in dict(event.data.stats).items()}
        elif info.name == "LogCancelLine":  # dbt cancels a query: an interrupt is being handled
            failpoint("dbt.cancel")
        elif progress is not None and info.name in ("LogStartLine", "NodeFinished"):
            data = event.data
            payload: dict[str, Any] = {"unique_id": data.node_info.unique_id}
            if info.name == "LogStartLine":
                payload["total"] = int(data.total)
            else:
                payload["status"] = _status(data.run_result.status)
            progress(info.name, payload)


    profiles_dir, profile = write_effective_profile(mesh, project_name)
    full = [
        *args,
        "--project-dir",
        str(project.dir),
        "--profiles-dir",
        str(profiles_dir),
        "--profile",
        profile,
        "--target",
        mesh.dbt_target,
    ]
    from dbt_common.events.functions import capture_stdout_logs, stop_capture_stdout_logs

    extra = {**_EXTRA_ENV.get(), **(env or {})}
    with contextlib.ExitStack() as stack:
        stream: TextIO | None = None
        if log is not None:
            full.append("--no-use-colors")
            log.parent.mkdir(parents=True, exist_ok=True)
            stream = stack.enter_context(open(log, "a", encoding="utf-8", buffering=1))
            stream.write(f"\n=== dbt {' '.join(args)} ({project_name}, target {mesh.dbt_target})\n")
            run.log = str(log)
        with _LOCK, _environment(dbt_env(mesh, project_name, extra), project.dir):
            if stream is not None:
                capture_stdout_logs(stream)
            try:
                outcome = dbtRunner(callbacks=[on_event]).invoke(full)
            finally:
                # No DuckDB instance outlives the call: the next one (or the mesh's own reader)
                # opens the file as it is then, never a copy that was deleted or renamed since.
                release_dbt_connections()
                if stream is not None:
                    stop_capture_stdout_logs()
    # An error raised while dbt handled the interrupt (a cancel that failed on a closed connection)
    # takes the interrupt's place in `exception`; a failure after a stop request is the stop too.
    if interrupts.caused_by_interrupt(outcome.exception) or (not outcome.success and interrupts.requested()):
        raise Interrupted(f"dbt {args[0]}", project_name)
    run.success = bool(outcome.success)
    result = outcome.result
    run.result = result
    for item in getattr(result, "results", None) or []:
        run.statuses[_status(getattr(item, "status", "unknown"))] += 1
        node = getattr(item, "node", None)
        if node is not None and getattr(node, "unique_id", None):
            run.executed.append(str(node.unique_id))
    run.failures = _failures(result)
    if outcome.exception is not None:
        run.success = False
        run.errors.append(str(outcome.exception))
    if raise_on_failure and not run.success:
        raise run.error()
    return run
