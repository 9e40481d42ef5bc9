"""Task surface of the dbt mesh (invoke). CI calls exactly these tasks.

Thin wrappers over `mesh/`: each parses its arguments, calls the library and prints a short summary.
Failures leave through `invoke.Exit` with one line and the exit code of DESIGN.md (1: the checked thing
failed, 2: bad usage or bad input).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from invoke import Collection, Context, Exit, task

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from mesh.core import surface  # noqa: E402
from mesh.core.errors import LineageError, MeshError  # noqa: E402
from mesh.project.config import Mesh, load_mesh  # noqa: E402
from mesh.ui import registry_commands  # noqa: E402
from mesh.ui.taskrunner import install as exit_2_on_usage_errors  # noqa: E402

exit_2_on_usage_errors()  # invoke's own usage errors: exit 2, one line, "did you mean" (taskrunner.py)
surface.use(surface.INVOKE)  # hints name invoke tasks (mesh/core/surface.py)

F = TypeVar("F", bound=Callable[..., Any])
TARGET_HELP = "local (DuckDB + registry folder) or prod (Snowflake + S3); default: MESH_TARGET or local"


def _fails_cleanly(func: F) -> F:
    """Turn MeshError into invoke.Exit with its one-line message and exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except MeshError as exc:
            raise Exit(f"error: {exc}", code=exc.exit_code) from exc
        except KeyboardInterrupt as exc:  # outside a mesh run's own handling: still never exit 0
            raise Exit("error: interrupted", code=130) from exc

    return wrapper  # type: ignore[return-value]


def _mesh(target: str | None) -> Mesh:
    return load_mesh(ROOT, target)


JOBS_HELP = "projects built at once (default 0: one per core)"
VERBOSE_HELP = "stream dbt's log (always written to logs/<project>.log)"


@task(
    iterable=["project"],
    help={
        "target": TARGET_HELP,
        "jobs": JOBS_HELP,
        "full": "build every project, even those whose inputs did not change",
        "full_refresh": "pass --full-refresh to dbt (rebuild incremental models from scratch)",
        "verbose": VERBOSE_HELP,
        "project": "run only this project (repeatable; a CI job of one `invoke plan` level)",
    },
)
@_fails_cleanly
def mesh(
    c: Context,
    target: str | None = None,
    jobs: int = 0,
    full: bool = False,
    full_refresh: bool = False,
    verbose: bool = False,
    project: list[str] | None = None,
) -> None:
    """Build, test and publish every project by the dependency graph, validate, draw the lineage."""
    from mesh.run.pipeline import run_mesh
    from mesh.ui.lineage import draw_lineage

    if jobs < 0:
        raise Exit(f"error: --jobs takes a number of projects (0: one per core), got {jobs}", code=2)
    run_mesh(
        _mesh(target), say=None, jobs=jobs, full=full or full_refresh, full_refresh=full_refresh,
        verbose=verbose, show=print, draw=draw_lineage, projects=project or None,
    )


def _confirm(question: str, refusal: str) -> None:
    """Ask on a terminal; without one, refuse (exit 2) with the flag that skips the question."""
    if not sys.stdin.isatty():
        raise Exit(refusal, code=2)
    answer = input(f"{question} [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise Exit("nothing removed", code=1)


@task(help={"target": TARGET_HELP, "yes": "remove existing local state (or apply Terraform in prod) without asking"})
@_fails_cleanly
def up(c: Context, target: str | None = None, yes: bool = False) -> None:
    """From a clean state to a validated mesh (prod: infrastructure and Snowflake set-up first)."""
    m = _mesh(target)
    if m.target_name == "prod":
        from tasks_infra import prod_up

        prod_up(c, m, yes)
    else:
        from mesh.run.pipeline import clean_local, describe_local_state

        existing = describe_local_state(m)
        if existing and not yes:
            print("up starts from a clean state; it would remove:")
            print("\n".join(f"  {line}" for line in existing))
            _confirm(
                "remove them?",
                "error: invoke up would remove the local warehouse and the registry's history "
                "(listed above): run `invoke up --yes` to confirm, or `invoke mesh` to keep them",
            )
        clean_local(m)
    mesh(c, target=m.target_name)


@task(help={"target": TARGET_HELP, "yes": "prod: destroy without asking (CI)"})
@_fails_cleanly
def down(c: Context, target: str | None = None, yes: bool = False) -> None:
    """Remove local state (warehouse, registry folder, dbt targets); prod: terraform destroy."""
    m = _mesh(target)
    if m.target_name == "prod":
        from tasks_infra import prod_down

        prod_down(c, m, yes)
        return
    from mesh.run.pipeline import clean_local

    done = clean_local(m)
    removed, kept = done.removed, done.kept
    print(f"down: removed {len(removed)} path{'s' if len(removed) != 1 else ''}" + "".join(f"\n  {p.relative_to(ROOT)}" for p in removed))
    if kept:
        print(f"down: kept {len(kept)} file{'s' if len(kept) != 1 else ''} git tracks" + "".join(f"\n  {p.relative_to(ROOT)}" for p in kept))


@task(
    help={
        "project": "the dbt project to build (see mesh.yml)",
        "target": TARGET_HELP,
        "select": "dbt node selection, e.g. state:modified+",
        "defer": "defer unchanged parents to this project's last published state",
        "save_state": "after a passing build, store its state, usage and fingerprint (main branch)",
        "full_refresh": "pass --full-refresh to dbt (rebuild incremental models from scratch)",
        "allow_breaking": "build even if the contract gate finds a breaking change consumers use",
        "reason": "why the breaking change is acceptable (with --allow-breaking)",
        "verbose": VERBOSE_HELP,
        "vars": "dbt --vars, a YAML mapping: '{key: value}'",
        "event_time_start": "dbt --event-time-start: a microbatch window's start",
        "event_time_end": "dbt --event-time-end: a microbatch window's end",
    }
)
@_fails_cleanly
def build(
    c: Context,
    project: str,
    target: str | None = None,
    select: str | None = None,
    defer: bool = False,
    save_state: bool = False,
    full_refresh: bool = False,
    allow_breaking: bool = False,
    reason: str | None = None,
    verbose: bool = False,
    vars: str | None = None,  # noqa: A002 - dbt's own flag name
    event_time_start: str | None = None,
    event_time_end: str | None = None,
) -> None:
    """Build and test one project (consumers sync first; producers pass the contract gate first)."""
    from mesh.run.pipeline import build_project

    m = _mesh(target)
    run = build_project(
        m, project, select=select, defer=defer, say=None, full_refresh=full_refresh,
        save_state=save_state, allow_breaking=allow_breaking, reason=reason, verbose=verbose,
        vars=vars, event_time_start=event_time_start, event_time_end=event_time_end,
    )
    print(run.summary())
    if save_state:
        print(f"state: stored {project}/{m.env} (full manifest, usage, freshness, fingerprint)")


@task(
    help={
        "project": "the producer to publish",
        "target": TARGET_HELP,
        "allow_breaking": "publish even if a breaking change hits registered consumers",
        "reason": "why the breaking change is acceptable (recorded in the history entry)",
    }
)
@_fails_cleanly
def publish(
    c: Context,
    project: str,
    target: str | None = None,
    allow_breaking: bool = False,
    reason: str | None = None,
) -> None:
    """Write-audit-publish a project's interface from its last build to the registry."""
    from mesh.ui.cli import run_publish

    print(run_publish(_mesh(target), project, allow_breaking, reason))


@task(
    help={
        "project": "the producer whose working tree to check",
        "target": TARGET_HELP,
        "allow_breaking": "pass even if a breaking change hits registered consumers",
        "reason": "why the breaking change is acceptable",
        "format": "text (default), json, or markdown (a pull-request comment)",
    }
)
@_fails_cleanly
def check(
    c: Context,
    project: str,
    target: str | None = None,
    allow_breaking: bool = False,
    reason: str | None = None,
    format: str = "text",  # noqa: A002
) -> None:
    """PR gate: would this change break a published contract that consumers use?"""
    from mesh.ui.cli import run_check

    run_check(_mesh(target), project, allow_breaking, reason, format)


@task(
    help={
        "project": "the consumer to sync",
        "target": TARGET_HELP,
        "dry_run": "print the change set, write nothing",
    }
)
@_fails_cleanly
def sync(c: Context, project: str, target: str | None = None, dry_run: bool = False) -> None:
    """Fetch upstream interfaces and write the consumer's generated sources / dbt-loom files."""
    from mesh.run.pipeline import sync_project
    from mesh.ui.report import plan_lines

    m = _mesh(target)
    print("\n".join(plan_lines(m, sync_project(m, project, dry_run=dry_run), dry_run)))


@task(
    help={
        "project": "validate this consumer's target/manifest.json",
        "all": "validate every consumer in mesh.yml (default when nothing else is given)",
        "manifest": "validate this manifest.json file",
        "target": TARGET_HELP,
        "format": "text or json",
        "record_usage": "store what each passing consumer uses upstream, for the contract gate (main)",
    }
)
@_fails_cleanly
def validate(
    c: Context,
    project: str | None = None,
    all: bool = False,  # noqa: A002 - the flag users know from the proof of concept
    manifest: str | None = None,
    target: str | None = None,
    format: str = "text",  # noqa: A002
    record_usage: bool = False,
) -> None:
    """Check that consumers' cross-project edges resolve to published public models."""
    from mesh.ui.cli import run_validate

    run_validate(_mesh(target), project, all, manifest, format, record_usage)


@task(
    help={
        "project": "the producer",
        "reason": "why the break is needed (consumers read it)",
        "deadline": "a date (YYYY-MM-DD) after which --allow-breaking may ship it",
        "target": TARGET_HELP,
    }
)
@_fails_cleanly
def propose(
    c: Context, project: str, reason: str, deadline: str | None = None, target: str | None = None
) -> None:
    """Propose the breaking change the gate finds to the consumers it hits."""
    from mesh.ui.cli import run_propose

    print(run_propose(_mesh(target), project, reason, deadline))


@task(
    help={
        "proposal": "the proposal's id (invoke propose prints it; registry.list shows open ones)",
        "project": "the consumer that accepts it",
        "target": TARGET_HELP,
    }
)
@_fails_cleanly
def acknowledge(c: Context, proposal: str, project: str, target: str | None = None) -> None:
    """Accept, for a consumer, a producer's breaking-change proposal."""
    from mesh.ui.cli import run_acknowledge

    print(run_acknowledge(_mesh(target), proposal, project))


@task(
    help={
        "project": "the producer",
        "since": "the version that was latest before the publish: only consumers of what changed",
        "format": "text (default) or json",
        "target": TARGET_HELP,
    }
)
@_fails_cleanly
def downstream(
    c: Context,
    project: str,
    since: str | None = None,
    format: str = "text",  # noqa: A002
    target: str | None = None,
) -> None:
    """List the consumers a project's publish reaches, with the repositories that build them."""
    from mesh.ui.cli import run_downstream

    print(run_downstream(_mesh(target), project, since, format))


@task(
    iterable=["project"],
    help={
        "format": "text (default), json, or github (level_N=[...] lines for $GITHUB_OUTPUT)",
        "project": "plan only this project (repeatable); default: every project built here",
        "max_levels": "with --format github: how many level jobs the workflow has (default 4)",
        "target": TARGET_HELP,
    },
)
@_fails_cleanly
def plan(
    c: Context,
    format: str = "text",  # noqa: A002
    project: list[str] | None = None,
    max_levels: int = 4,
    target: str | None = None,
) -> None:
    """Which projects must run and in which order, from the working tree and the registry alone."""
    from mesh.ui.cli import run_plan

    print(run_plan(_mesh(target), project or None, format, max_levels))


@task(
    help={
        "format": "mermaid, json or html; default: all three into lineage/",
        "output": "file to write (with --format) or folder (without); "
        "default: mermaid/json to stdout, html to lineage/lineage.html",
        "target": TARGET_HELP,
    }
)
@_fails_cleanly
def lineage(
    c: Context,
    format: str | None = None,  # noqa: A002
    output: str | None = None,
    target: str | None = None,
) -> None:
    """Draw the cross-project lineage (every project's nodes) as Mermaid, JSON or an HTML page."""
    from mesh.ui.lineage import run_lineage

    print(run_lineage(_mesh(target), format, output))


def _registry_help(command: str) -> dict[str, str]:
    return {**registry_commands.HELP[command], "target": TARGET_HELP}


@task(help=_registry_help("registry.list"))
@_fails_cleanly
def registry_list(c: Context, project: str | None = None, target: str | None = None) -> None:
    """List published projects, or one project's versions (damaged ones marked)."""
    registry_commands.registry_list(_mesh(target), project)


@task(help=_registry_help("registry.show"))
@_fails_cleanly
def registry_show(c: Context, project: str, version: str | None = None, target: str | None = None) -> None:
    """Show one interface version: metadata and public models."""
    registry_commands.registry_show(_mesh(target), project, version)


@task
def lint(c: Context) -> None:
    """ruff and mypy over the library, tasks and tests; import-linter over the library's layers."""
    c.run(f"{sys.executable} -m ruff check .", pty=False)
    c.run(f"{sys.executable} -m mypy", pty=False)
    c.run(f"{Path(sys.executable).parent / 'lint-imports'} --no-cache", pty=False)
    print("lint: ruff and mypy clean, the layers kept")


@task(help={"serve": "serve the site on localhost with live reload instead of building it"})
def docs(c: Context, serve: bool = False) -> None:
    """Build the documentation site from docs/ strictly (every link and anchor checked) into site/."""
    command = "serve" if serve else "build --strict"
    c.run(f"{sys.executable} -m mkdocs {command}", pty=False, env={"NO_MKDOCS_2_WARNING": "1"})


@task(
    pre=[lint, docs],
    help={
        "k": "only tests matching this pytest -k expression",
        "args": "extra pytest arguments",
        "workers": "pytest-xdist workers (default 0: the number of cores, at least 2)",
    },
)
def test(c: Context, k: str | None = None, args: str = "", workers: int = 0) -> None:
    """Lint, build the docs strictly, then the whole test suite (unit, integration on DuckDB, e2e on emulators)."""
    import os

    if workers < 0:
        raise Exit(f"error: --workers takes a number of processes (0: one per core), got {workers}", code=2)
    selection = f" -k {k!r}" if k else ""
    count = workers or max(2, os.cpu_count() or 1)
    c.run(f"{sys.executable} -m pytest -n {count} --durations=15{selection} {args}", pty=False)


@task(help=_registry_help("registry.diff"))
@_fails_cleanly
def registry_diff(
    c: Context,
    project: str,
    from_: str | None = None,
    to: str | None = None,
    target: str | None = None,
) -> None:
    """Show the contract diff between two published versions (default: previous -> latest)."""
    registry_commands.registry_diff(_mesh(target), project, from_, to)


@task(help=_registry_help("registry.rollback"))
@_fails_cleanly
def registry_rollback(
    c: Context,
    project: str,
    to: str,
    reason: str | None = None,
    allow_breaking: bool = False,
    target: str | None = None,
) -> None:
    """Make an earlier version latest again, as a new recorded publish (also over a damaged latest)."""
    registry_commands.registry_rollback(_mesh(target), project, to, reason, allow_breaking)


@task(help=_registry_help("registry.consumers"))
@_fails_cleanly
def registry_consumers(c: Context, project: str, target: str | None = None) -> None:
    """List which consumer projects, models and columns use each public model and version."""
    registry_commands.registry_consumers(_mesh(target), project)


@task(help=_registry_help("registry.fsck"))
@_fails_cleanly
def registry_fsck(c: Context, project: str, repair: bool = False, target: str | None = None) -> None:
    """Check one project's registry objects; --repair removes leftovers, recovers a damaged latest."""
    registry_commands.registry_fsck(_mesh(target), project, repair)


@task(help=_registry_help("registry.prune"))
@_fails_cleanly
def registry_prune(
    c: Context, project: str, keep: str, dry_run: bool = False, target: str | None = None
) -> None:
    """Delete old history entries, never latest nor a version a consumer may be pinned to."""
    count = registry_commands.keep_count(keep)  # before the mesh is read: bad input first
    registry_commands.registry_prune(_mesh(target), project, count, dry_run)


@task
def registry_keygen(c: Context) -> None:
    """Print a new signing key pair: the private key for MESH_SIGNING_KEY, the public one for mesh.yml."""
    registry_commands.registry_keygen()


@task(help={"args": "extra pytest arguments, e.g. -k crash"})
def reliability(c: Context, args: str = "") -> None:
    """Long races, crash injection, S3 faults and bad inputs; prints what was tried and lost."""
    import tempfile

    from tests.reliability import LONG_SUITES, summary_lines

    with tempfile.TemporaryDirectory(prefix="mesh-reliability-") as tmp:
        report = Path(tmp) / "report.jsonl"
        env = {
            "MESH_RELIABILITY": "long",
            "MESH_RELIABILITY_REPORT": str(report),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "DO_NOT_TRACK": "1",
        }
        suites = " ".join(LONG_SUITES)
        run = c.run(f"{sys.executable} -m pytest -q {suites} {args}", env=env, warn=True, pty=False)
        lines, clean = summary_lines(report)
    print("\n".join(lines))
    if run is None or run.exited != 0 or not clean:
        raise Exit("error: reliability runs failed (see above)", code=1)


@task(
    help={
        "models": "comma-separated upstream model counts, e.g. 1000,10000,50000 (default "
        "1000,10000 when --projects is not given; --models '' with neither: the flows alone)",
        "public_share": "share of the producer's models that are public (default 0.2)",
        "repeat": "runs of each step or scenario; the tables show median (min-max)",
        "output": "folder for results.json and the plots (default: bench/)",
        "flows": "also time `invoke mesh` against the proof of concept's flow and dbt alone (--no-flows skips)",
        "projects": "run the mesh-scale part on a generated mesh of this many projects (at least 3)",
        "project_models": "models per project of the mesh-scale part (default 200, at least 12)",
    }
)
@_fails_cleanly
def bench(
    c: Context,
    models: str | None = None,
    public_share: float = 0.2,
    repeat: int = 3,
    output: str | None = None,
    flows: bool = True,
    projects: int = 0,
    project_models: int = 200,
) -> None:
    """Benchmark the mesh: against upstream size (--models) and at the scale of many projects (--projects)."""
    from mesh.bench.runner import BenchConfig, run_bench

    if models is None:
        models = "" if projects else "1000,10000"
    try:
        counts = [int(m) for m in models.split(",") if m.strip()]
    except ValueError as exc:
        raise Exit(f"error: --models takes comma-separated integers, got {models!r}", code=2) from exc
    if (counts and min(counts) < 20) or repeat < 1 or not 0 < public_share < 0.6:
        raise Exit("error: use --models of at least 20, --repeat >= 1 and 0 < --public-share < 0.6", code=2)
    if projects < 0 or (projects and (projects < 3 or project_models < 12)):
        raise Exit("error: use --projects of at least 3 and --project-models of at least 12", code=2)
    if not counts and not projects and not flows:
        raise Exit("error: nothing to measure: give --models, --projects, or neither for the default", code=2)
    config = BenchConfig(
        counts, public_share, repeat, flows=flows, projects=projects or None,
        project_models=project_models,
    )
    if output:
        config.output = Path(output).resolve()
    run_bench(config)
    written = ["results.json"]
    if counts:
        written.append("scaling.png")
    if projects:
        written.append("mesh_scale.png")
    print(f"bench: wrote {', '.join(str(config.output / name) for name in written)}")


@task
@_fails_cleanly
def emulate_up(c: Context) -> None:
    """Start S3 (moto) and Snowflake (fakesnow) emulators on loopback for a prod rehearsal."""
    from mesh.infra.emulate import up as start_emulators

    print("\n".join(start_emulators(ROOT).summary()))


@task
@_fails_cleanly
def emulate_run(c: Context) -> None:
    """Run one command with the emulators' environment: invoke emulate.run -- invoke mesh --target prod"""
    from mesh.infra.emulate import remainder_argv, run_with_env

    code = run_with_env(ROOT, remainder_argv(sys.argv, c.remainder))
    if code:
        raise Exit(code=code)


@task
@_fails_cleanly
def emulate_down(c: Context) -> None:
    """Stop exactly the emulators `emulate.up` started and remove .mesh/emulate.env."""
    from mesh.infra.emulate import down as stop_emulators

    print("\n".join(f"emulate: {line}" for line in stop_emulators(ROOT)))


@task(
    iterable=["upstream"],
    help={
        "path": "the dbt project's folder (holding dbt_project.yml)",
        "upstream": "an upstream project it reads (repeatable); those in its dependencies.yml "
        "are read from there",
        "via": "how it reads upstreams: sources (generated dbt sources) or loom (dbt-loom refs); "
        "read from its code when left out",
        "profiles_dir": "build with the project's own profiles folder instead of a profile the mesh writes",
        "dry_run": "print the plan as sentences, write nothing",
        "allow_uncontracted": "let it publish public models without an enforced contract "
        "(require_contracts: false for this project)",
    },
)
@_fails_cleanly
def project_add(
    c: Context,
    path: str,
    upstream: list[str] | None = None,
    via: str | None = None,
    profiles_dir: str | None = None,
    dry_run: bool = False,
    allow_uncontracted: bool = False,
) -> None:
    """Register an existing dbt project: mesh.yml, its profile, dependencies.yml, .gitignore."""
    from mesh.ui.onboard import add_project

    plan = add_project(ROOT, Path(path), upstream or [], via, profiles_dir, dry_run, allow_uncontracted)
    print("\n".join(plan.lines()))
    if not dry_run:
        print("next: `invoke mesh` builds, tests and publishes it with the rest of the mesh")


@task(help={"name": "the project to take out of the mesh", "dry_run": "print the plan, write nothing"})
@_fails_cleanly
def project_remove(c: Context, name: str, dry_run: bool = False) -> None:
    """Take a project out of the mesh: mesh.yml, its profile, generated files; the registry stays."""
    from mesh.ui.membership import apply_plan, plan_remove

    plan = plan_remove(ROOT, name)
    plan.dry_run = dry_run
    if not dry_run:
        apply_plan(plan)
    print("\n".join(plan.lines()))


@task(
    help={
        "name": "the project to change",
        "via": "sources or loom: how it reads its upstreams (its code must agree)",
        "profiles_dir": "its own profiles folder",
        "mesh_profile": "build with the mesh's profile even where its own defines the target",
        "dry_run": "print the plan, write nothing",
    }
)
@_fails_cleanly
def project_set(
    c: Context,
    name: str,
    via: str | None = None,
    profiles_dir: str | None = None,
    mesh_profile: bool | None = None,
    dry_run: bool = False,
) -> None:
    """Switch how a project reads its upstreams, or where its profile comes from."""
    from mesh.ui.membership import apply_plan, plan_set

    plan = plan_set(ROOT, name, via, profiles_dir, mesh_profile)
    plan.dry_run = dry_run
    if not dry_run:
        apply_plan(plan)
    print("\n".join(plan.lines()))


project = Collection("project")
project.add_task(project_add, name="add")
project.add_task(project_remove, name="remove")
project.add_task(project_set, name="set")

emulate = Collection("emulate")
emulate.add_task(emulate_up, name="up")
emulate.add_task(emulate_run, name="run")
emulate.add_task(emulate_down, name="down")

registry = Collection("registry")
registry.add_task(registry_list, name="list")
registry.add_task(registry_show, name="show")
registry.add_task(registry_diff, name="diff")
registry.add_task(registry_rollback, name="rollback")
registry.add_task(registry_consumers, name="consumers")
registry.add_task(registry_fsck, name="fsck")
registry.add_task(registry_prune, name="prune")
registry.add_task(registry_keygen, name="keygen")

ns = Collection(
    mesh, up, down, build, publish, check, sync, validate, plan, downstream, propose, acknowledge, lineage, lint, docs, test, bench,
    reliability, registry,
    emulate, project,
)

from tasks_infra import infra, snowflake  # noqa: E402

ns.add_collection(infra)
ns.add_collection(snowflake)

__all__ = ["LineageError", "ns"]
