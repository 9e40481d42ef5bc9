"""The infrastructure commands both surfaces run: `infra.*` (Terraform) and `snowflake.*` (SQL).

`invoke infra.apply` (tasks_infra.py) and `mesh infra.apply` (mesh/ui/cli.py) parse their arguments
and call these with the folder holding mesh.yml; each prints through `echo` and raises a MeshError
(its exit code is the command's) for what failed or was refused. Relative paths (`--stack`,
`--sql-path`, `--interface`, ...) are read from that folder. The logic lives in mesh/infra/terraform.py,
mesh/warehouse/snowflake.py and mesh/warehouse/snowflake_wap.py.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mesh.core.errors import CheckFailedError, ConfigError

Echo = Callable[[str], None]
WAP_STEPS = ("env", "prepare", "promote", "discard")
DEFAULT_STACK = "infra/examples/complete"

# The options of each command, as both surfaces show them (`--help`).
HELP: dict[str, dict[str, str]] = {
    "infra.lint": {
        "path": "Terraform tree to check (default: infra).",
        "sql-path": "Folder of the numbered SQL scripts to check (default: snowflake_sql).",
        "skip-checkov": "Leave checkov out (fast local loop; CI always runs it).",
        "skip-schemas": "Leave out the check against the providers' schemas (CI always runs it; "
        "the first run downloads the pinned schema packages, later runs read the cache).",
    },
    "infra.verify": {
        "target": "mesh.yml target whose s3:// registry bucket to check in (default: prod).",
        "registry": "Check in this s3://bucket/prefix instead of the target's registry.",
    },
    "infra.plan": {
        "target": "mesh.yml target whose s3:// registry the stack serves (default: prod).",
        "stack": "Terraform root to run in (default: infra/examples/complete).",
    },
    "infra.apply": {
        "target": "mesh.yml target whose s3:// registry the stack serves (default: prod).",
        "stack": "Terraform root to run in (default: infra/examples/complete).",
        "yes": "Apply without Terraform's confirmation prompt (for CI).",
    },
    "infra.destroy": {
        "target": "mesh.yml target whose s3:// registry the stack serves (default: prod).",
        "stack": "Terraform root to run in (default: infra/examples/complete).",
        "yes": "Destroy without asking; refused otherwise when there is no terminal.",
    },
    "snowflake.setup": {
        "dry-run": "Print the rendered SQL instead of running it; needs no credentials.",
        "skip-resource-monitors": "Leave out 06_resource_monitors.sql (needs ACCOUNTADMIN).",
        "skip-consumer-grants": "Leave out 05_consumer_grants.sql (USAGE on each producer's "
        "database and public schema); SELECT always follows the interface (snowflake.grants).",
        "skip-wap": "Leave out 07_write_audit_publish.sql (CREATE DATABASE for the audit clone); "
        "for a mesh whose Snowflake target sets `wap: false`.",
        "sql-path": "Folder of the numbered SQL scripts (default: snowflake_sql).",
    },
    "snowflake.grants": {
        "project": "Producer whose published public relations its consumers may read.",
        "target": "mesh.yml target to read the interfaces from (default: prod).",
        "interface": "Grant this interface (a JSON file) instead of the registry's latest.",
        "previous": "What to revoke what is no longer published against: `history` (every other "
        "version in the registry; the default with the registry), a version id, a JSON file, "
        "or `none` (the default with --interface).",
        "dry-run": "Print the REVOKE and GRANT statements instead of running them; needs no "
        "Snowflake credentials.",
    },
    "snowflake.wap": {
        "project": "Project whose Snowflake database is built into an audit copy and swapped in.",
        "step": "env (print the override for the build), prepare (clone), promote (check the "
        "audit build, grant, swap) or discard (drop the audit copy).",
        "target": "mesh.yml target whose registry holds the interface published before "
        "(promote revokes what it published and the new build does not; default: prod).",
        "previous": "For promote: `latest` (default), a JSON file, or `none`.",
        "dry-run": "Print the statements instead of running them; needs no Snowflake credentials "
        "(promote also carries the database's own grants over, which only a connection shows).",
    },
}


def _path(root: Path, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else root / path


def confirm(question: str, expected: str) -> bool:
    """Ask on a terminal; a non-interactive run never confirms."""
    if not sys.stdin.isatty():
        return False
    try:
        return input(f"{question} Type '{expected}' to continue: ").strip() == expected
    except EOFError:
        return False


# --- infra ---------------------------------------------------------------------------------------


def infra_lint(
    root: Path, path: str = "infra", sql_path: str = "snowflake_sql", skip_checkov: bool = False,
    echo: Echo = print, skip_schemas: bool = False,
) -> None:
    """Check Terraform and SQL (fmt, provider schemas, checkov, structural rules, SQL grants);
    raise CheckFailedError (exit 1) on any finding."""
    from mesh.infra import terraform as infra

    report = infra.lint(
        _path(root, path), sql_dir=_path(root, sql_path), run_checkov=not skip_checkov,
        check_schemas=not skip_schemas,
    )
    for note in report.notes:
        echo(note)
    for finding in report.findings:
        echo(str(finding))
    steps = ", ".join(f"{name}: {state}" for name, state in report.steps.items())
    if not report.ok:
        raise CheckFailedError(
            f"infra.lint failed: {len(report.findings)} finding(s) in rule(s) "
            f"{', '.join(report.rules())} ({steps})"
        )
    echo(f"infra.lint passed in {report.seconds:.1f}s ({steps})")


def infra_terraform(
    root: Path, action: str, target: str = "prod", stack: str = DEFAULT_STACK, yes: bool = False,
    echo: Echo = print,
) -> None:
    """`terraform plan|apply|destroy` in `stack` with variables generated from mesh.yml; apply
    and destroy need a terminal to confirm, or `yes`."""
    from mesh.infra import terraform as infra

    if action == "apply" and not yes and not sys.stdin.isatty():
        raise ConfigError("infra.apply needs a terminal to confirm, or --yes in non-interactive runs")
    if action == "destroy" and not yes and not confirm(
        f"This destroys the IAM roles, Snowflake objects and (if empty) the registry bucket of "
        f"target {target}.",
        "destroy",
    ):
        raise ConfigError("infra.destroy not confirmed: nothing destroyed (pass --yes to skip asking)")
    auto_approve = yes or action == "destroy"
    infra.run_terraform(action, stack=_path(root, stack), target=target, auto_approve=auto_approve)
    echo(f"infra.{action} done for target {target} in {stack}")


# --- snowflake -----------------------------------------------------------------------------------


def snowflake_setup(
    root: Path,
    dry_run: bool = False,
    skip_resource_monitors: bool = False,
    skip_consumer_grants: bool = False,
    skip_wap: bool = False,
    sql_path: str = "snowflake_sql",
    echo: Echo = print,
) -> None:
    """Render the numbered SQL scripts from mesh.yml; run them (or print them with `dry_run`)."""
    from mesh.warehouse import snowflake

    layout = snowflake.load_layout(root)
    scripts = snowflake.render_setup(
        layout,
        _path(root, sql_path),
        include_resource_monitors=not skip_resource_monitors,
        include_consumer_grants=not skip_consumer_grants,
        include_wap=not skip_wap,
    )
    if dry_run:
        echo(snowflake.format_scripts(scripts))
        echo(f"-- snowflake.setup dry run: {len(scripts)} rendered script(s), nothing executed")
        return
    settings = snowflake.connection_settings_from_env()
    count = snowflake.execute(scripts, settings, echo=echo)
    echo(f"snowflake.setup done: {len(scripts)} script(s), {count} statement(s) as {settings.user}")


def _read_json_file(root: Path, value: str, what: str) -> dict[str, Any]:
    path = _path(root, value)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {what} {value}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {value} must be a JSON object")
    return data


def _registry(root: Path, layout: Any, target: str) -> tuple[Any, str]:
    from mesh.infra.terraform import expand_env
    from mesh.project.config import load_mesh
    from mesh.registry import open_registry

    settings = layout.targets.get(target)
    if settings is None:
        raise ConfigError(f"target {target!r} is not in mesh.yml")
    # The signing keys mesh.yml trusts: a forged interface grants nothing.
    trust = load_mesh(root, target).trust
    registry = open_registry(expand_env(settings.get("registry", "")), base_dir=root, trust=trust)
    return registry, settings.get("env", target)


def _interfaces(
    root: Path,
    layout: Any,
    project: str,
    target: str,
    interface: str | None,
    previous: str | None,
) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
    """The interface to grant (latest, or a file) and the ones to revoke against, described."""
    from mesh.core.names import check_version
    from mesh.core.surface import hint
    from mesh.registry.document import load_interface

    previous = previous or ("none" if interface else "history")
    registry = env = None
    if not interface or (previous != "none" and not previous.endswith(".json")):
        registry, env = _registry(root, layout, target)
    latest_version = ""
    if interface:
        new = _read_json_file(root, interface, "interface")
    else:
        assert registry is not None and env is not None
        entry = registry.read_latest(project, env)
        if entry is None:
            raise ConfigError(
                f"{project} has published no interface to target {target}: run "
                f"{hint('publish', '--project', project, '--target', target)} first"
            )
        latest_version = entry.version
        new = load_interface(entry.body, f"{project}/{env} latest", project, env, entry.version)
    if previous == "none":
        return new, [], "nothing revoked (--previous none)"
    if previous.endswith(".json"):
        return new, [_read_json_file(root, previous, "previous interface")], f"against {previous}"
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


def _own_manifest(root: Path, layout: Any, project: str) -> dict[str, Any] | None:
    """The producer's own last build (target/manifest.json), when this checkout has one: a relation
    is granted only when that build has it public too."""
    from mesh.project.artifacts import load_manifest

    path = root / layout.projects[project].project_dir / "target" / "manifest.json"
    return load_manifest(path, project=project) if path.is_file() else None


def snowflake_grants(
    root: Path,
    project: str,
    target: str = "prod",
    interface: str | None = None,
    previous: str | None = None,
    dry_run: bool = False,
    echo: Echo = print,
) -> None:
    """Grant consumers SELECT on exactly the published relations; revoke what is no longer."""
    from mesh.warehouse import snowflake
    from mesh.warehouse import snowflake_grants as grants_sql

    layout = snowflake.load_layout(root)
    if project not in layout.projects:
        raise ConfigError(f"project {project!r} is not in mesh.yml")
    roles = [p.role for p in layout.consumers_of(project)]
    if not roles:
        raise ConfigError(f"no project lists {project} in its dependencies.yml: nothing to grant")
    new, olds, described = _interfaces(root, layout, project, target, interface, previous)
    own = _own_manifest(root, layout, project)
    if own is None:
        described += "; no local build of the producer to hold the interface to"
    statements = grants_sql.sync_grants(layout, project, olds, new, dry_run=True, producer_manifest=own)
    revokes = sum(1 for s in statements if s.startswith("REVOKE "))
    counts = f"{revokes} revoke(s), {len(statements) - revokes} grant(s)"
    if dry_run:
        for statement in statements:
            echo(f"{statement};")
        echo(f"-- snowflake.grants dry run: {counts} for {', '.join(roles)}, {described}")
        return
    producer = layout.projects[project]
    settings = snowflake.project_connection_settings(producer, query_tag="dbt-mesh-grants")
    count = grants_sql.run_grant_statements(statements, settings, echo=echo)
    echo(
        f"snowflake.grants done as {settings.role}: {count} of {len(statements)} statement(s) "
        f"({counts}) for {', '.join(roles)}, {described}"
    )


def _print_statements(statements: list[str], step: str, echo: Echo) -> None:
    for statement in statements:
        echo(f"{statement};")
    echo(f"-- snowflake.wap {step} dry run: {len(statements)} statement(s), nothing executed")


def snowflake_wap(
    root: Path,
    project: str,
    step: str,
    target: str = "prod",
    previous: str = "latest",
    dry_run: bool = False,
    echo: Echo = print,
) -> None:
    """Write-audit-publish on Snowflake by hand: prepare, promote or discard a project's audit copy."""
    from mesh.warehouse import snowflake, snowflake_wap

    if step not in WAP_STEPS:
        raise ConfigError(f"--step must be one of {', '.join(WAP_STEPS)}, not {step!r}")
    layout = snowflake.load_layout(root)
    plan = snowflake_wap.plan_for(layout, project)
    if step == "env":
        for name, value in snowflake_wap.build_env(plan).items():
            echo(f"export {name}={value}")
        return
    if step == "prepare":
        if dry_run:
            _print_statements(snowflake_wap.prepare_statements(plan), "prepare", echo)
            return
        snowflake_wap.prepare(layout, plan)
        echo(f"snowflake.wap prepare: {plan.audit_database} cloned from {plan.database}")
        return
    if step == "discard":
        if dry_run:
            _print_statements(snowflake_wap.discard_statements(plan), "discard", echo)
            return
        snowflake_wap.discard(layout, plan)
        echo(f"snowflake.wap discard: {plan.audit_database} dropped")
        return

    from mesh.project.artifacts import extract_interface
    from mesh.registry.document import load_interface, load_json

    spec = layout.projects[project]
    manifest = load_json(root / spec.project_dir / "target" / "manifest.json", "manifest")
    olds: list[dict[str, Any]] = []
    if previous not in ("none", "latest"):
        olds = [_read_json_file(root, previous, "previous interface")]
    elif previous == "latest":
        registry, env = _registry(root, layout, target)
        entry = registry.read_latest(project, env)
        if entry is not None:
            olds = [load_interface(entry.body, f"{project}/{env} latest", project, env, entry.version)]
    if dry_run:
        snowflake_wap.check_audit_manifest(plan, manifest)
        rewritten = snowflake_wap.rewrite_manifest(manifest, plan)
        nodes, _groups = extract_interface(rewritten)
        _print_statements(snowflake_wap.promote_statements(plan, olds, {"nodes": nodes}), "promote", echo)
        return
    done = snowflake_wap.promote(layout, plan, manifest, previous_interface=olds)
    echo(
        f"snowflake.wap promote: {plan.audit_database} swapped in as {plan.database} "
        f"({len(done)} statement(s)); publish the interface next"
    )


def infra_verify(root: Path, target: str = "prod", registry: str | None = None, echo: Echo = print) -> None:
    """Prove on the real bucket and IAM what emulators cannot (mesh/infra/verify.py)."""
    from mesh.infra import verify
    from mesh.infra.terraform import expand_env
    from mesh.registry.s3 import S3Registry
    from mesh.warehouse import snowflake

    if registry:
        url = registry
    else:
        settings = snowflake.load_layout(root).targets.get(target)
        if settings is None:
            raise ConfigError(f"target {target!r} is not in mesh.yml")
        url = expand_env(settings.get("registry", ""))
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not url.startswith("s3://") or not bucket:
        raise ConfigError(f"infra.verify needs an s3://bucket/prefix registry, not {url!r}")
    echo(verify.verify_s3(S3Registry(bucket, prefix)))


def snowflake_verify(echo: Echo = print) -> None:
    """Prove on a real account what emulators cannot; throwaway objects, always dropped."""
    from mesh.infra import verify

    echo(verify.verify_snowflake())
