"""Invoke tasks for the infrastructure: `infra.*` (Terraform) and `snowflake.*` (SQL set-up).

The root tasks.py adds them with `from tasks_infra import infra, snowflake`; on their own they run
as `invoke -c tasks_infra infra.lint`. The logic lives in mesh/infra.py and mesh/snowflake.py.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from invoke import Collection, Context, Exit, task

from mesh import infra as mesh_infra
from mesh import snowflake as mesh_snowflake
from mesh import snowflake_wap
from mesh.config import Mesh
from mesh.errors import ConfigError, MeshError

ROOT = Path(__file__).resolve().parent
T = TypeVar("T")


def _run(action: Callable[[], T]) -> T:
    """Run `action`, turning a MeshError into invoke's one-line failure with its exit code."""
    try:
        return action()
    except MeshError as exc:
        raise Exit(str(exc), exc.exit_code) from exc


def _path(value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else ROOT / path


def _confirm(question: str, expected: str) -> bool:
    """Ask on a terminal; a non-interactive run never confirms."""
    if not sys.stdin.isatty():
        return False
    try:
        return input(f"{question} Type '{expected}' to continue: ").strip() == expected
    except EOFError:
        return False


# --- infra ---------------------------------------------------------------------------------------


@task(
    name="lint",
    help={
        "path": "Terraform tree to check (default: infra).",
        "sql-path": "Folder of the numbered SQL scripts to check (default: snowflake_sql).",
        "skip-checkov": "Leave checkov out (fast local loop; CI always runs it).",
    },
)
def infra_lint(
    c: Context, path: str = "infra", sql_path: str = "snowflake_sql", skip_checkov: bool = False
) -> None:
    """Check Terraform and SQL: fmt, checkov offline, structural rules, SQL parse and grants."""
    report = _run(
        lambda: mesh_infra.lint(_path(path), sql_dir=_path(sql_path), run_checkov=not skip_checkov)
    )
    for finding in report.findings:
        print(finding)
    steps = ", ".join(f"{name}: {state}" for name, state in report.steps.items())
    if not report.ok:
        raise Exit(
            f"infra.lint failed: {len(report.findings)} finding(s) in rule(s) "
            f"{', '.join(report.rules())} ({steps})",
            1,
        )
    print(f"infra.lint passed in {report.seconds:.1f}s ({steps})")


def _terraform(action: str, stack: str, target: str, auto_approve: bool) -> None:
    _run(
        lambda: mesh_infra.run_terraform(
            action, stack=_path(stack), target=target, auto_approve=auto_approve
        )
    )


@task(
    name="plan",
    help={
        "target": "mesh.yml target whose s3:// registry the stack serves (default: prod).",
        "stack": "Terraform root to run in (default: infra/examples/complete).",
    },
)
def infra_plan(c: Context, target: str = "prod", stack: str = "infra/examples/complete") -> None:
    """Show what Terraform would change, with variables generated from mesh.yml."""
    _terraform("plan", stack, target, auto_approve=False)
    print(f"infra.plan done for target {target} in {stack}")


@task(
    name="apply",
    help={
        "target": "mesh.yml target whose s3:// registry the stack serves (default: prod).",
        "stack": "Terraform root to run in (default: infra/examples/complete).",
        "yes": "Apply without Terraform's confirmation prompt (for CI).",
    },
)
def infra_apply(
    c: Context, target: str = "prod", stack: str = "infra/examples/complete", yes: bool = False
) -> None:
    """Create or update the registry, IAM and Snowflake resources with Terraform."""
    if not yes and not sys.stdin.isatty():
        raise Exit("infra.apply needs a terminal to confirm, or --yes in non-interactive runs", 2)
    _terraform("apply", stack, target, auto_approve=yes)
    print(f"infra.apply done for target {target} in {stack}")


@task(
    name="destroy",
    help={
        "target": "mesh.yml target whose s3:// registry the stack serves (default: prod).",
        "stack": "Terraform root to run in (default: infra/examples/complete).",
        "yes": "Destroy without asking; refused otherwise when there is no terminal.",
    },
)
def infra_destroy(
    c: Context, target: str = "prod", stack: str = "infra/examples/complete", yes: bool = False
) -> None:
    """Destroy what the stack created (asks first); a non-empty registry bucket is kept."""
    if not yes and not _confirm(
        f"This destroys the IAM roles, Snowflake objects and (if empty) the registry bucket of "
        f"target {target}.",
        "destroy",
    ):
        raise Exit("infra.destroy not confirmed: nothing destroyed (pass --yes to skip asking)", 2)
    _terraform("destroy", stack, target, auto_approve=True)
    print(f"infra.destroy done for target {target} in {stack}")


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
infra.add_task(infra_plan)
infra.add_task(infra_apply)
infra.add_task(infra_destroy)


# --- snowflake -----------------------------------------------------------------------------------


@task(
    name="setup",
    help={
        "dry-run": "Print the rendered SQL instead of running it; needs no credentials.",
        "skip-resource-monitors": "Leave out 06_resource_monitors.sql (needs ACCOUNTADMIN).",
        "skip-consumer-grants": "Leave out 05_consumer_grants.sql (USAGE on each producer's "
        "database and public schema); SELECT always follows the interface (snowflake.grants).",
        "skip-wap": "Leave out 07_write_audit_publish.sql (CREATE DATABASE for the audit clone); "
        "for a mesh whose Snowflake target sets `wap: false`.",
        "sql-path": "Folder of the numbered SQL scripts (default: snowflake_sql).",
    },
)
def snowflake_setup(
    c: Context,
    dry_run: bool = False,
    skip_resource_monitors: bool = False,
    skip_consumer_grants: bool = False,
    skip_wap: bool = False,
    sql_path: str = "snowflake_sql",
) -> None:
    """Create warehouses, roles, databases, CI users and consumers' USAGE grants from mesh.yml."""

    def render() -> list[mesh_snowflake.RenderedScript]:
        layout = mesh_snowflake.load_layout(ROOT)
        return mesh_snowflake.render_setup(
            layout,
            _path(sql_path),
            include_resource_monitors=not skip_resource_monitors,
            include_consumer_grants=not skip_consumer_grants,
            include_wap=not skip_wap,
        )

    scripts = _run(render)
    if dry_run:
        print(mesh_snowflake.format_scripts(scripts))
        print(f"-- snowflake.setup dry run: {len(scripts)} rendered script(s), nothing executed")
        return
    settings = _run(mesh_snowflake.connection_settings_from_env)
    count = _run(lambda: mesh_snowflake.execute(scripts, settings, echo=print))
    print(
        f"snowflake.setup done: {len(scripts)} script(s), {count} statement(s) as {settings.user}"
    )


def _read_json_file(value: str, what: str) -> dict[str, Any]:
    path = _path(value)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {what} {value}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {value} must be a JSON object")
    return data


def _registry(layout: mesh_snowflake.MeshLayout, target: str) -> tuple[Any, str]:
    from mesh.config import load_mesh
    from mesh.infra import expand_env
    from mesh.registry import open_registry

    settings = layout.targets.get(target)
    if settings is None:
        raise ConfigError(f"target {target!r} is not in mesh.yml")
    # The signing keys mesh.yml trusts: a forged interface grants nothing.
    trust = load_mesh(ROOT, target).trust
    registry = open_registry(expand_env(settings.get("registry", "")), base_dir=ROOT, trust=trust)
    return registry, settings.get("env", target)


def _interfaces(
    layout: mesh_snowflake.MeshLayout,
    project: str,
    target: str,
    interface: str | None,
    previous: str | None,
) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
    """The interface to grant (latest, or a file) and the ones to revoke against, described."""
    from mesh.manifest import load_interface
    from mesh.names import check_version

    previous = previous or ("none" if interface else "history")
    registry = env = None
    if not interface or (previous != "none" and not previous.endswith(".json")):
        registry, env = _registry(layout, target)
    latest_version = ""
    if interface:
        new = _read_json_file(interface, "interface")
    else:
        assert registry is not None and env is not None
        entry = registry.read_latest(project, env)
        if entry is None:
            raise ConfigError(
                f"{project} has published no interface to target {target}: run "
                f"`invoke publish --project {project} --target {target}` first"
            )
        latest_version = entry.version
        new = load_interface(entry.body, f"{project}/{env} latest", project, env, entry.version)
    if previous == "none":
        return new, [], "nothing revoked (--previous none)"
    if previous.endswith(".json"):
        return new, [_read_json_file(previous, "previous interface")], f"against {previous}"
    assert registry is not None and env is not None
    if previous == "history":
        versions = [v for v in registry.list_versions(project, env) if v != latest_version]
        described = f"against {len(versions)} earlier version(s) in the registry history"
    else:
        versions = [check_version(previous)]
        described = f"against version {previous}"
    olds = [
        load_interface(registry.read_version(project, env, v).body, f"{project}/{env}", project, env, v)
        for v in versions
    ]
    return new, olds, described


def _own_manifest(layout: mesh_snowflake.MeshLayout, project: str) -> dict[str, Any] | None:
    """The producer's own last build (target/manifest.json), when this checkout has one: a relation
    is granted only when that build has it public too."""
    from mesh.manifest import load_manifest

    path = ROOT / layout.projects[project].project_dir / "target" / "manifest.json"
    return load_manifest(path, project=project) if path.is_file() else None


@task(
    name="grants",
    help={
        "project": "Producer whose published public relations its consumers may read.",
        "target": "mesh.yml target to read the interfaces from (default: prod).",
        "interface": "Grant this interface (a JSON file) instead of the registry's latest.",
        "previous": "What to revoke what is no longer published against: `history` (every other "
        "version in the registry; the default with the registry), a version id, a JSON file, "
        "or `none` (the default with --interface).",
        "dry-run": "Print the REVOKE and GRANT statements instead of running them; needs no "
        "Snowflake credentials.",
    },
)
def snowflake_grants(
    c: Context,
    project: str,
    target: str = "prod",
    interface: str | None = None,
    previous: str | None = None,
    dry_run: bool = False,
) -> None:
    """Grant consumers SELECT on exactly the published relations; revoke what is no longer."""

    def plan() -> tuple[mesh_snowflake.MeshLayout, list[str], list[str], str]:
        layout = mesh_snowflake.load_layout(ROOT)
        if project not in layout.projects:
            raise ConfigError(f"project {project!r} is not in mesh.yml")
        roles = [p.role for p in layout.consumers_of(project)]
        if not roles:
            raise ConfigError(
                f"no project lists {project} in its dependencies.yml: nothing to grant"
            )
        new, olds, described = _interfaces(layout, project, target, interface, previous)
        own = _own_manifest(layout, project)
        if own is None:
            described += "; no local build of the producer to hold the interface to"
        statements = mesh_snowflake.sync_grants(
            layout, project, olds, new, dry_run=True, producer_manifest=own
        )
        return layout, statements, roles, described

    layout, statements, roles, described = _run(plan)
    revokes = sum(1 for s in statements if s.startswith("REVOKE "))
    counts = f"{revokes} revoke(s), {len(statements) - revokes} grant(s)"
    if dry_run:
        for statement in statements:
            print(f"{statement};")
        print(f"-- snowflake.grants dry run: {counts} for {', '.join(roles)}, {described}")
        return
    producer = layout.projects[project]
    settings = _run(
        lambda: mesh_snowflake.project_connection_settings(producer, query_tag="dbt-mesh-grants")
    )
    count = _run(lambda: mesh_snowflake.run_grant_statements(statements, settings, echo=print))
    print(
        f"snowflake.grants done as {settings.role}: {count} of {len(statements)} statement(s) "
        f"({counts}) for {', '.join(roles)}, {described}"
    )


WAP_STEPS = ("env", "prepare", "promote", "discard")


@task(
    name="wap",
    help={
        "project": "Project whose Snowflake database is built into an audit copy and swapped in.",
        "step": "env (print the override for the build), prepare (clone), promote (check the "
        "audit build, grant, swap) or discard (drop the audit copy).",
        "target": "mesh.yml target whose registry holds the interface published before "
        "(promote revokes what it published and the new build does not; default: prod).",
        "previous": "For promote: `latest` (default), a JSON file, or `none`.",
        "dry-run": "Print the statements instead of running them; needs no Snowflake credentials "
        "(promote also carries the database's own grants over, which only a connection shows).",
    },
)
def snowflake_wap_task(
    c: Context,
    project: str,
    step: str,
    target: str = "prod",
    previous: str = "latest",
    dry_run: bool = False,
) -> None:
    """Write-audit-publish on Snowflake by hand: prepare, promote or discard a project's audit copy."""
    if step not in WAP_STEPS:
        raise Exit(f"--step must be one of {', '.join(WAP_STEPS)}, not {step!r}", 2)

    def plan() -> tuple[mesh_snowflake.MeshLayout, snowflake_wap.WapPlan]:
        layout = mesh_snowflake.load_layout(ROOT)
        return layout, snowflake_wap.plan_for(layout, project)

    layout, wap_plan = _run(plan)
    if step == "env":
        for name, value in snowflake_wap.build_env(wap_plan).items():
            print(f"export {name}={value}")
        return
    if step == "prepare":
        if dry_run:
            _print_statements(snowflake_wap.prepare_statements(wap_plan), "prepare")
            return
        _run(lambda: snowflake_wap.prepare(layout, wap_plan))
        print(f"snowflake.wap prepare: {wap_plan.audit_database} cloned from {wap_plan.database}")
        return
    if step == "discard":
        if dry_run:
            _print_statements(snowflake_wap.discard_statements(wap_plan), "discard")
            return
        _run(lambda: snowflake_wap.discard(layout, wap_plan))
        print(f"snowflake.wap discard: {wap_plan.audit_database} dropped")
        return

    def inputs() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        from mesh.manifest import load_json

        spec = layout.projects[project]
        manifest = load_json(ROOT / spec.project_dir / "target" / "manifest.json", "manifest")
        if previous == "none":
            return manifest, []
        if previous != "latest":
            return manifest, [_read_json_file(previous, "previous interface")]
        from mesh.manifest import load_interface

        registry, env = _registry(layout, target)
        entry = registry.read_latest(project, env)
        if entry is None:
            return manifest, []
        return manifest, [load_interface(entry.body, f"{project}/{env} latest", project, env, entry.version)]

    manifest, olds = _run(inputs)
    if dry_run:

        def statements() -> list[str]:
            from mesh.manifest import extract_interface

            snowflake_wap.check_audit_manifest(wap_plan, manifest)
            rewritten = snowflake_wap.rewrite_manifest(manifest, wap_plan)
            nodes, _groups = extract_interface(rewritten)
            return snowflake_wap.promote_statements(wap_plan, olds, {"nodes": nodes})

        _print_statements(_run(statements), "promote")
        return
    done = _run(lambda: snowflake_wap.promote(layout, wap_plan, manifest, previous_interface=olds))
    print(
        f"snowflake.wap promote: {wap_plan.audit_database} swapped in as {wap_plan.database} "
        f"({len(done)} statement(s)); publish the interface next"
    )


def _print_statements(statements: list[str], step: str) -> None:
    for statement in statements:
        print(f"{statement};")
    print(f"-- snowflake.wap {step} dry run: {len(statements)} statement(s), nothing executed")


snowflake = Collection("snowflake")
snowflake.add_task(snowflake_setup)
snowflake.add_task(snowflake_grants)
snowflake.add_task(snowflake_wap_task)

# Lets `invoke -c tasks_infra ...` run these tasks without the root tasks.py.
ns = Collection(infra, snowflake)
