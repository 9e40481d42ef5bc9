"""Run projects of the mesh by their dependency graph, in worker processes, skipping the unchanged.

The parent process walks the graph `dependencies.yml` gives: a project is ready when every upstream
in the run is done. For a ready project the parent syncs it with its upstreams (their new
interfaces included), fingerprints its inputs (mesh/run/fingerprint.py) and, when nothing changed since
its last passing build and its relations still exist, skips it without starting dbt at all.
Otherwise it starts a worker process for it (at most `jobs` at once, default: the number of
cores), which runs mesh/run/steps.py with dbt's log in `logs/<project>.log`. A failed project blocks
its downstream only; the others go on.

Workers fork from a server process that imported dbt once (multiprocessing's forkserver with dbt
preloaded), so a project does not pay dbt's import again and never shares dbt's global state with
another project. Workers ignore Ctrl-C: the parent owns the terminal, and on SIGINT or SIGTERM it
sends each worker SIGTERM, which the worker turns into dbt's own interrupt (dbt cancels its
queries), waits for them, and exits 130 (SIGINT) or 143 (SIGTERM) with one line saying what was
interrupted and what, if anything, was published. Every write the mesh makes is atomic, so an
interrupted run leaves nothing half-written: the live data and `latest` are the old or the new.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue as queue_module
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mesh.consumer.sync import apply_plan, invalidate_partial_parse, plan_sync
from mesh.core import interrupts
from mesh.core.errors import Interrupted, MeshError
from mesh.core.failpoints import failpoint, stop_pauses
from mesh.project.config import Mesh, load_mesh
from mesh.registry.document import load_interface
from mesh.run import fingerprint
from mesh.run.progress import PlainDisplay, RichDisplay, Throttle
from mesh.run.steps import BuildOptions, ProjectOutcome, run_project
from mesh.warehouse.runner import dbt_log

LOG_DIR = "logs"
TERM_GRACE_S = 30.0
_POLL_S = 0.1


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs (picklable)."""

    root: str
    target: str
    project: str
    options: BuildOptions
    environ: dict[str, str]
    cwd: str
    log: str
    upstream_data: dict[str, str | None] | None = None  # what the run read when it decided to build


def log_path(mesh: Mesh, name: str) -> Path:
    """Where a project's dbt log of the current run goes."""
    return mesh.root / LOG_DIR / f"{name}.log"


def shown(path: Path, base: Path | None = None) -> str:
    """A path as the user can type it: relative to the working folder when inside it."""
    base = base or Path.cwd()
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


# --- the worker side -------------------------------------------------------------------------------


def _raise_interrupt(signum: int, _frame: Any) -> None:
    interrupts.request()  # whatever fails from here on failed because of the stop
    failpoint("worker.stopping")
    stop_pauses()  # a test's pause in a dbt thread must not hold the worker
    raise KeyboardInterrupt


def worker_main(spec: WorkerSpec, channel: Any) -> None:
    """Entry point of a worker process: one project, messages to the parent through `channel`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent owns Ctrl-C
    signal.signal(signal.SIGTERM, _raise_interrupt)  # the parent's stop: dbt's own interrupt
    os.environ.clear()
    os.environ.update(spec.environ)
    os.chdir(spec.cwd)
    log = Path(spec.log)
    log.parent.mkdir(parents=True, exist_ok=True)
    # Everything this process prints (dbt, adapters, warnings) goes to the project's log.
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", encoding="utf-8", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", buffering=1, closefd=False)  # noqa: SIM115

    name = spec.project
    throttle = Throttle()
    counts = {"done": 0, "total": 0}

    def step(what: str, detail: str) -> None:
        channel.put(("step", name, what, detail))

    def progress(kind: str, payload: dict[str, Any]) -> None:
        if kind == "LogStartLine":
            counts["total"] = max(counts["total"], int(payload.get("total", 0)))
        elif kind == "NodeFinished":
            counts["done"] += 1
            failpoint("dbt.node_finished")
        if throttle.ready():
            channel.put(("nodes", name, counts["done"], counts["total"]))

    try:
        mesh = load_mesh(Path(spec.root), spec.target)
        with dbt_log(log, progress):
            outcome = run_project(mesh, name, spec.options, step, spec.upstream_data)
    except KeyboardInterrupt:
        outcome = ProjectOutcome(name, "interrupted", error=f"interrupted ({name})", exit_code=130)
    except MeshError as exc:
        outcome = ProjectOutcome(
            name, "failed", error=str(exc), exit_code=exc.exit_code, error_type=type(exc).__name__
        )
    except Exception as exc:  # a bug: the trace goes to the log, one line to the user
        traceback.print_exc()
        outcome = ProjectOutcome(
            name, "failed", exit_code=1,
            error=f"internal error {type(exc).__name__}: {exc}; full trace in {spec.log}",
        )
    if outcome.timings:  # where this project's time went, for whoever reads its log
        print(f"mesh: {name} {outcome.status} in {outcome.seconds:.1f}s: {outcome.timing_line()}")
    channel.put(("done", name, outcome))


# --- the parent side -------------------------------------------------------------------------------


class _Signals:
    """SIGINT/SIGTERM in the parent: remembered, acted on by the run loop at its next turn (within
    a tenth of a second), never raised in the middle of a queue read or a file write."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum: int, _frame: Any) -> None:
        if self.signum is None:
            self.signum = signum
        stop_pauses()

    @contextlib.contextmanager
    def installed(self) -> Iterator[_Signals]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {sig: signal.signal(sig, self) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)


_CONTEXTS: dict[str, Any] = {}


def _context(mesh: Mesh) -> Any:
    """The forkserver context, its server preloading dbt and the adapter this target uses."""
    adapter = "dbt.adapters.snowflake" if mesh.dbt_target == "prod" else "dbt.adapters.duckdb"
    if adapter not in _CONTEXTS:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["mesh.run.steps", "dbt.cli.main", adapter])
        _CONTEXTS[adapter] = ctx
    return _CONTEXTS[adapter]


@dataclass
class _Running:
    process: Any
    started: float
    step: str = "start-up"


@dataclass
class Run:
    """What a scheduler run did, project by project, in the order they finished or were decided."""

    outcomes: dict[str, ProjectOutcome] = field(default_factory=dict)
    started_at: str = ""
    seconds: float = 0.0

    def of(self, status: str) -> list[ProjectOutcome]:
        return [o for o in self.outcomes.values() if o.status == status]


@dataclass
class _Prepared:
    """The parent's decision for one project: skip it (`skipped`), or build it and why."""

    skipped: ProjectOutcome | None = None
    reason: str = ""
    upstream_data: dict[str, str | None] = field(default_factory=dict)


def _prepare(
    mesh: Mesh, name: str, options: BuildOptions, skip_unchanged: bool, display: Any, label: str
) -> _Prepared:
    """In the parent, before a worker: sync, then skip the project if its inputs, and the upstream
    data it stores, did not change."""

    project = mesh.project(name)
    if project.upstreams or options.defer:
        plan = plan_sync(mesh, name, with_state=options.defer)
        apply_plan(plan)
        if plan.changes:
            invalidate_partial_parse(project)
            what = ", ".join(f"{k}@{v}" for k, v in plan.upstream_versions.items()) or "own state"
            changed = len(plan.changes)
            display.line(f"{label}  synced: {changed} file{'s' if changed != 1 else ''} updated ({what})")
    current = fingerprint.upstream_data_versions(mesh, name) if project.upstreams else {}
    if not (options.complete and options.record_fingerprint):
        return _Prepared(upstream_data=current)
    if not skip_unchanged:
        return _Prepared(upstream_data=current)
    decision = fingerprint.decide(
        mesh, name, fingerprint.compute(mesh, name, options.fingerprint_options()), current
    )
    if not decision.build:
        skipped = ProjectOutcome(name, "skipped", since=decision.since)
        if project.upstreams:
            skipped.notes.extend(f"warning: {line}" for line in plan.deprecated)
        return _Prepared(skipped, upstream_data=current)
    return _Prepared(reason=decision.reason, upstream_data=current)


def _published_during(mesh: Mesh, names: list[str], started_at: str) -> list[str]:
    """`project version` of each publish to these projects since `started_at` (best effort)."""

    found = []
    for name in names:
        try:
            entry = mesh.registry.read_latest(name, mesh.env)
            if entry is None:
                continue
            meta = load_interface(entry.body, name, name)["metadata"]["mesh"]
        except MeshError:
            continue
        if str(meta.get("published_at") or "") >= started_at:
            found.append(f"{name} {entry.version}")
    return found


def run_projects(
    mesh: Mesh,
    names: list[str],
    options: BuildOptions,
    display: PlainDisplay | RichDisplay,
    jobs: int | None = None,
    skip_unchanged: bool = False,
    verbose: bool = False,
) -> Run:
    """Run `names` (in dependency order, in parallel where the graph allows). `verbose` streams
    each project's dbt log, its lines prefixed with the project's name."""
    order = [n for n in mesh.build_order() if n in names]
    deps = {n: [u for u in mesh.project(n).upstreams if u in names] for n in order}
    jobs = max(1, jobs or os.cpu_count() or 1)
    run = Run(started_at=datetime.now(UTC).isoformat().replace("+00:00", "Z"))
    started = time.monotonic()
    pending = list(order)
    running: dict[str, _Running] = {}
    raw = {n: f"[{i}/{len(order)}] {n} ({mesh.target_name})" for i, n in enumerate(order, 1)}
    width = max((len(label) for label in raw.values()), default=0)
    labels = {n: label.ljust(width) for n, label in raw.items()}
    channel: Any = None
    tail = _LogTail(display) if verbose else None

    reasons: dict[str, str] = {}

    def finish(outcome: ProjectOutcome) -> None:
        if tail is not None:
            tail.flush(outcome.project, final=True)
        outcome.reason = outcome.reason or reasons.get(outcome.project, "")
        run.outcomes[outcome.project] = outcome
        if isinstance(display, RichDisplay):
            display.finish(outcome.project)
        for line in outcome_lines(outcome, labels[outcome.project]):
            display.line(line)

    def start(name: str) -> None:
        nonlocal channel
        display.project_started(name, order.index(name) + 1, len(order), mesh.target_name)
        try:
            prepared = _prepare(mesh, name, options, skip_unchanged, display, labels[name])
        except MeshError as exc:
            finish(
                ProjectOutcome(
                    name, "failed", error=str(exc), exit_code=exc.exit_code, step="sync",
                    error_type=type(exc).__name__,
                )
            )
            return
        if prepared.skipped is not None:
            finish(prepared.skipped)
            return
        reasons[name] = prepared.reason
        if prepared.reason and skip_unchanged:
            display.line(f"{labels[name]}  building: {prepared.reason}")
        ctx = _context(mesh)
        channel = channel or ctx.Queue()
        log = log_path(mesh, name)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"dbt mesh: {name} on target {mesh.target_name}, {run.started_at}\n")
        spec = WorkerSpec(
            str(mesh.root), mesh.target_name, name, options, dict(os.environ), str(Path.cwd()), str(log),
            prepared.upstream_data,
        )
        process = ctx.Process(target=worker_main, args=(spec, channel), name=f"mesh-{name}")
        process.start()
        running[name] = _Running(process, time.monotonic())
        if tail is not None:
            tail.follow(name, log)

    signals = _Signals()
    with signals.installed():
        failpoint("mesh.planned")
        while (pending or running) and signals.signum is None:
            for name in list(pending):
                if signals.signum is not None or len(running) >= jobs:
                    break
                states = [run.outcomes[u].status if u in run.outcomes else None for u in deps[name]]
                if any(state not in (None, "built", "skipped") for state in states):
                    pending.remove(name)
                    failed = next(u for u, st in zip(deps[name], states, strict=True) if st not in (None, "built", "skipped"))
                    finish(ProjectOutcome(name, "blocked", error=f"blocked: upstream {failed} did not build"))
                elif None not in states:
                    pending.remove(name)
                    start(name)
            if running:
                _drain(channel, running, display, finish, timeout=_POLL_S)
                _reap(running, finish)
                if tail is not None:
                    for name in running:
                        tail.flush(name)
        if signals.signum is not None:
            _stop_workers(running, channel, display, finish)
            run.seconds = time.monotonic() - started
            raise _interrupted(mesh, order, run, signals.signum)
    run.seconds = time.monotonic() - started
    return run


class _LogTail:
    """`--verbose`: the new lines of each running project's log, prefixed with its name."""

    def __init__(self, display: Any) -> None:
        self.display = display
        self.files: dict[str, tuple[Path, int]] = {}

    def follow(self, name: str, path: Path) -> None:
        self.files[name] = (path, 0)

    def flush(self, name: str, final: bool = False) -> None:
        if name not in self.files:
            return
        path, offset = self.files[name]
        try:
            with open(path, "rb") as handle:
                handle.seek(offset)
                data = handle.read()
        except OSError:
            return
        end = len(data) if final else data.rfind(b"\n") + 1
        for line in data[:end].decode("utf-8", "replace").splitlines():
            self.display.line(f"{name} | {line}")
        self.files[name] = (path, offset + end)
        if final:
            del self.files[name]


def _drain(channel: Any, running: dict[str, _Running], display: Any, finish: Any, timeout: float) -> None:
    """Handle the workers' messages for up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            message = channel.get(timeout=max(left, 0.0)) if left > 0 else channel.get_nowait()
        except queue_module.Empty:
            return
        kind, name = message[0], message[1]
        if kind == "step" and name in running:
            running[name].step = message[2]
            display.step(name, message[2], message[3])
        elif kind == "nodes":
            display.nodes(name, message[2], message[3])
        elif kind == "done":
            item = running.pop(name, None)
            if item is not None:
                item.process.join(timeout=10)
            finish(message[2])


def _reap(running: dict[str, _Running], finish: Any) -> None:
    """A worker that died without saying so (killed, out of memory) fails its project."""
    for name, item in list(running.items()):
        if item.process.exitcode is not None and not item.process.is_alive():
            # Give a message already in flight a moment before declaring the worker dead.
            time.sleep(0.05)
            if name in running:
                running.pop(name)
                finish(
                    ProjectOutcome(
                        name, "failed", exit_code=1, step=item.step,
                        error=f"the worker building {name} died (exit code {item.process.exitcode}) during {item.step}",
                    )
                )


def _stop_workers(running: dict[str, _Running], channel: Any, display: Any, finish: Any) -> None:
    """SIGTERM every worker (dbt cancels its queries), wait for their outcomes, then kill.

    Every project running at the stop is reported as interrupted: a worker that says its project
    failed, or dies without a word, failed because of the stop (its cancelled queries, a closed
    connection), not because of its project."""
    steps = {name: item.step for name, item in running.items()}

    def stopped(outcome: ProjectOutcome) -> None:
        if outcome.project in steps and outcome.status == "failed":
            step = outcome.step or steps[outcome.project]
            outcome = ProjectOutcome(
                outcome.project, "interrupted", seconds=outcome.seconds, step=step, exit_code=130,
                error=f"interrupted during {step} ({outcome.project})", timings=outcome.timings,
            )
        finish(outcome)

    for item in running.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(item.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + TERM_GRACE_S
    while running and time.monotonic() < deadline:
        _drain(channel, running, display, stopped, timeout=_POLL_S)
        _reap(running, stopped)
    for name, item in running.items():
        item.process.kill()
        item.process.join(timeout=5)
        finish(ProjectOutcome(name, "interrupted", step=steps.get(name), exit_code=130, error=f"interrupted ({name})"))
    running.clear()


def _interrupted(mesh: Mesh, order: list[str], run: Run, signum: int) -> Interrupted:
    interrupted = [o for o in run.outcomes.values() if o.status == "interrupted"]
    first = interrupted[0] if interrupted else None
    step = (first.step or "build") if first else "planning"
    error = Interrupted(step, first.project if first else None, signum)
    published = _published_during(mesh, order, run.started_at)
    tail = "nothing published" if not published else "published before the interrupt: " + ", ".join(published)
    error.args = (f"{error}; {tail}",)
    return error


def outcome_lines(outcome: ProjectOutcome, label: str) -> list[str]:
    """The lines a finished project prints."""
    if outcome.status == "skipped":
        return [f"{label}  unchanged since {_when(outcome.since)}, skipped"] + [f"{label}  {n}" for n in outcome.notes]
    if outcome.status == "blocked":
        return [f"{label}  {outcome.error}"]
    lines = [f"{label}  {note}" for note in outcome.notes]
    if outcome.status == "built":
        return lines
    lines.extend(f"  {d}" for d in outcome.details for d in d.splitlines())
    lines.append(f"{label}  {outcome.status.upper()}: {outcome.error}")
    return lines


def _when(moment: str | None) -> str:
    if not moment:
        return "an earlier build"
    return moment.replace("T", " ")[:19] + " UTC"


def run_one(mesh: Mesh, name: str, options: BuildOptions, display: Any) -> ProjectOutcome:
    """One project, in a worker, without skipping (what `invoke build` runs)."""
    return run_projects(mesh, [name], options, display, jobs=1, skip_unchanged=False).outcomes[name]

