"""Invoke tasks for the infrastructure: `infra.*` (Terraform) and `snowflake.*` (SQL set-up).

The root tasks.py adds them with `from tasks_infra import infra, snowflake`; on their own they run
as `invoke -c tasks_infra infra.lint`. Each task is mesh/ui/infra_commands.py's function of the same
name (which `mesh infra.*` and `mesh snowflake.*` call too); the logic lives in mesh/infra/terraform.py,
mesh/warehouse/snowflake.py and mesh/warehouse/snowflake_wap.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from invoke import Collection, Context, Exit, task

from mesh.core.errors import MeshError
from mesh.project.config import Mesh
from mesh.ui import infra_commands as commands

ROOT = Path(__file__).resolve().parent
T = TypeVar("T")


def _run(action: Callable[[], T]) -> T:
    """Run `action`, turning a MeshError into invoke's one-line failure with its exit code."""
    try:
        return action()
    except MeshError as exc:
        raise Exit(str(exc), exc.exit_code) from exc


# --- infra ---------------------------------------------------------------------------------------


@task(name="lint", help=commands.HELP["infra.lint"])
def infra_lint(
    c: Context,
    path: str = "infra",
    sql_path: str = "snowflake_sql",
    skip_checkov: bool = False,
    skip_schemas: bool = False,
) -> None:
    """Check Terraform and SQL: fmt, provider schemas, checkov, structural rules, SQL grants."""
    _run(lambda: commands.infra_lint(ROOT, path, sql_path, skip_checkov, skip_schemas=skip_schemas))


@task(name="schemas")
def infra_schemas(c: Context) -> None:
    """Download and extract the provider schemas pinned in provider-schemas.toml into the cache."""
    from mesh.infra import schemas as infra_schema

    paths = _run(infra_schema.prefetch)
    for path in paths:
        print(f"{path.name}: {path.stat().st_size // 1024} KiB")
    print(f"infra.schemas: {len(paths)} schema(s) in {infra_schema.cache_dir()}")


def _terraform(action: str, stack: str, target: str, yes: bool) -> None:
    _run(lambda: commands.infra_terraform(ROOT, action, target, stack, yes))


@task(name="plan", help=commands.HELP["infra.plan"])
def infra_plan(c: Context, target: str = "prod", stack: str = "infra/examples/complete") -> None:
    """Show what Terraform would change, with variables generated from mesh.yml."""
    _terraform("plan", stack, target, yes=False)


@task(name="apply", help=commands.HELP["infra.apply"])
def infra_apply(
    c: Context, target: str = "prod", stack: str = "infra/examples/complete", yes: bool = False
) -> None:
    """Create or update the registry, IAM and Snowflake resources with Terraform."""
    _terraform("apply", stack, target, yes)


@task(name="destroy", help=commands.HELP["infra.destroy"])
def infra_destroy(
    c: Context, target: str = "prod", stack: str = "infra/examples/complete", yes: bool = False
) -> None:
    """Destroy what the stack created (asks first); a non-empty registry bucket is kept."""
    _terraform("destroy", stack, target, yes)


@task(name="verify", help=commands.HELP["infra.verify"])
def infra_verify(c: Context, target: str = "prod", registry: str | None = None) -> None:
    """Prove on the real bucket and IAM what emulators cannot; throwaway objects, always removed."""
    _run(lambda: commands.infra_verify(ROOT, target, registry))


def prod_up(c: Context, mesh: Mesh, yes: bool = False) -> None:
    """`invoke up --target prod` before the mesh runs: show the plan, apply it, set up Snowflake."""
    print(f"up [1/3] infra.plan for target {mesh.target_name}")
    infra_plan(c, target=mesh.target_name)
    print("up [2/3] infra.apply")
    infra_apply(c, target=mesh.target_name, yes=yes)
    print("up [3/3] snowflake.setup")
    snowflake_setup(c)


def prod_down(c: Context, mesh: Mesh, yes: bool = False) -> None:
    """`invoke down --target prod`: terraform destroy, only after confirmation (or --yes)."""
    infra_destroy(c, target=mesh.target_name, yes=yes)


infra = Collection("infra")
infra.add_task(infra_lint)
infra.add_task(infra_schemas)
infra.add_task(infra_verify)
infra.add_task(infra_plan)
infra.add_task(infra_apply)
infra.add_task(infra_destroy)


# --- snowflake -----------------------------------------------------------------------------------


@task(name="setup", help=commands.HELP["snowflake.setup"])
def snowflake_setup(
    c: Context,
    dry_run: bool = False,
    skip_resource_monitors: bool = False,
    skip_consumer_grants: bool = False,
    skip_wap: bool = False,
    sql_path: str = "snowflake_sql",
) -> None:
    """Create warehouses, roles, databases, CI users and consumers' USAGE grants from mesh.yml."""
    _run(
        lambda: commands.snowflake_setup(
            ROOT, dry_run, skip_resource_monitors, skip_consumer_grants, skip_wap, sql_path
        )
    )


@task(name="grants", help=commands.HELP["snowflake.grants"])
def snowflake_grants(
    c: Context,
    project: str,
    target: str = "prod",
    interface: str | None = None,
    previous: str | None = None,
    dry_run: bool = False,
) -> None:
    """Grant consumers SELECT on exactly the published relations; revoke what is no longer."""
    _run(lambda: commands.snowflake_grants(ROOT, project, target, interface, previous, dry_run))


@task(name="wap", help=commands.HELP["snowflake.wap"])
def snowflake_wap_task(
    c: Context,
    project: str,
    step: str,
    target: str = "prod",
    previous: str = "latest",
    dry_run: bool = False,
) -> None:
    """Write-audit-publish on Snowflake by hand: prepare, promote or discard a project's audit copy."""
    _run(lambda: commands.snowflake_wap(ROOT, project, step, target, previous, dry_run))


@task(name="verify")
def snowflake_verify(c: Context) -> None:
    """Prove on a real account what emulators cannot; throwaway objects, always dropped."""
    _run(commands.snowflake_verify)


snowflake = Collection("snowflake")
snowflake.add_task(snowflake_setup)
snowflake.add_task(snowflake_grants)
snowflake.add_task(snowflake_wap_task)
snowflake.add_task(snowflake_verify)

# Lets `invoke -c tasks_infra ...` run these tasks without the root tasks.py.
ns = Collection(infra, snowflake)
