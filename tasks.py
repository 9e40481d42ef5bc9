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

from mesh.config import Mesh, load_mesh  # noqa: E402
from mesh.errors import LineageError, MeshError  # noqa: E402

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

    return wrapper  # type: ignore[return-value]


def _mesh(target: str | None) -> Mesh:
    return load_mesh(ROOT, target)


@task(help={"target": TARGET_HELP})
@_fails_cleanly
def mesh(c: Context, target: str | None = None) -> None:
    """Build, test and publish the producer, sync and build the consumers, validate lineage."""
    from mesh.pipeline import run_mesh

    result = run_mesh(_mesh(target))
    print("\n".join(result.summary()))


@task(help={"target": TARGET_HELP})
@_fails_cleanly
def up(c: Context, target: str | None = None) -> None:
    """From a clean state to a validated mesh (prod: infrastructure and Snowflake set-up first)."""
    m = _mesh(target)
    if m.target_name == "prod":
        from tasks_infra import prod_up

        prod_up(c, m)
    else:
        from mesh.pipeline import clean_local

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
    from mesh.pipeline import clean_local

    removed = clean_local(m)
    print(f"down: removed {len(removed)} paths" + "".join(f"\n  {p.relative_to(ROOT)}" for p in removed))


@task(
    help={
        "project": "the dbt project to build (see mesh.yml)",
        "target": TARGET_HELP,
        "select": "dbt node selection, e.g. state:modified+",
        "defer": "defer unchanged parents to this project's last published state",
        "save_state": "store the full manifest as this project's state after a passing build (main)",
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
) -> None:
    """Build and test one project (consumers sync with their upstreams first)."""
    from mesh.pipeline import build_project
    from mesh.publish import save_state as store_state

    m = _mesh(target)
    run = build_project(m, project, select=select, defer=defer)
    print(run.summary())
    if save_state:
        size = store_state(m, project)
        print(f"state: stored {project}/{m.env} full manifest ({size} bytes)")


@task(help={"project": "the producer to publish", "target": TARGET_HELP})
@_fails_cleanly
def publish(c: Context, project: str, target: str | None = None) -> None:
    """Write-audit-publish a project's interface from its last build to the registry."""
    from mesh.publish import publish_project

    print(publish_project(_mesh(target), project).summary())


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
    from mesh.pipeline import sync_project
    from mesh.report import plan_lines

    m = _mesh(target)
    print("\n".join(plan_lines(m, sync_project(m, project, dry_run=dry_run), dry_run)))


@task(
    help={
        "project": "validate this consumer's target/manifest.json",
        "all": "validate every consumer in mesh.yml (default when nothing else is given)",
        "manifest": "validate this manifest.json file",
        "target": TARGET_HELP,
        "format": "text or json",
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
) -> None:
    """Check that consumers' cross-project edges resolve to published public models."""
    from mesh.cli import run_validate

    run_validate(_mesh(target), project, all, manifest, format)


@task(help={"project": "only this project's history", "target": TARGET_HELP})
@_fails_cleanly
def registry_list(c: Context, project: str | None = None, target: str | None = None) -> None:
    """List published projects, or one project's versions."""
    from mesh.report import registry_list_lines

    print("\n".join(registry_list_lines(_mesh(target), project)))


@task(
    help={
        "project": "the project to show",
        "version": "a history version (default: latest)",
        "target": TARGET_HELP,
    }
)
@_fails_cleanly
def registry_show(c: Context, project: str, version: str | None = None, target: str | None = None) -> None:
    """Show one interface version: metadata and public models."""
    from mesh.report import registry_show_lines

    print("\n".join(registry_show_lines(_mesh(target), project, version)))


@task
def lint(c: Context) -> None:
    """ruff and mypy over the library, tasks and tests."""
    c.run(f"{sys.executable} -m ruff check .", pty=False)
    c.run(f"{sys.executable} -m mypy", pty=False)
    print("lint: ruff and mypy clean")


@task(
    pre=[lint],
    help={"k": "only tests matching this pytest -k expression", "args": "extra pytest arguments"},
)
def test(c: Context, k: str | None = None, args: str = "") -> None:
    """Lint, then the whole test suite (unit, integration on DuckDB, e2e on emulators)."""
    selection = f" -k {k!r}" if k else ""
    c.run(f"{sys.executable} -m pytest{selection} {args}", pty=False)


registry = Collection("registry")
registry.add_task(registry_list, name="list")
registry.add_task(registry_show, name="show")

ns = Collection(mesh, up, down, build, publish, sync, validate, lint, test, registry)

try:
    from tasks_infra import infra, snowflake

    ns.add_collection(infra)
    ns.add_collection(snowflake)
except ImportError:  # pragma: no cover - infra tasks are optional for library users
    pass

__all__ = ["LineageError", "ns"]
