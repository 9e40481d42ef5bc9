"""The `mesh` console script: publish, sync, validate for teams using the library outside this repo.

    mesh [--root DIR] [--target T] publish --project P
    mesh [--root DIR] [--target T] sync --project P [--dry-run]
    mesh [--root DIR] [--target T] validate [--project P | --all | --manifest PATH] [--format json]
    mesh [--root DIR] [--target T] check --project P [--allow-breaking --reason TEXT]
    mesh [--root DIR] [--target T] publish --project P [--allow-breaking --reason TEXT]
    mesh [--root DIR] add PATH [--upstream NAME ...] [--via loom|sources] [--profiles-dir DIR] [--dry-run]

Exit codes: 0 success, 1 the checked thing failed, 2 bad usage or bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mesh.config import Mesh, find_root, load_mesh
from mesh.errors import ConfigError, LineageError, MeshError


def run_validate(
    mesh: Mesh,
    project: str | None,
    all_: bool,
    manifest: str | None,
    fmt: str,
    record_usage: bool = False,
) -> None:
    """Validate and print; raise LineageError (exit 1) when any report fails.

    With `record_usage`, store what each passing consumer uses upstream (the contract gate reads
    it). Main-branch CI records; pull requests do not, and their registry role cannot write.
    """
    from mesh.report import validate_output
    from mesh.validate import consumers, validate_manifest, validate_projects

    if fmt not in ("text", "json"):
        raise ConfigError(f"unknown format {fmt!r}: use text or json")
    if sum(bool(x) for x in (project, all_, manifest)) > 1:
        raise ConfigError("give one of --project, --all or --manifest")
    if manifest:
        reports = [validate_manifest(mesh, Path(manifest))]
    elif project:
        reports = validate_projects(mesh, [project])
    else:
        reports = validate_projects(mesh, consumers(mesh))
    print(validate_output(reports, fmt))
    if record_usage and not manifest:
        from mesh.usage import record_usage as record

        for report in reports:
            if report.ok:
                record(mesh, report.project)
    failing = [r.project for r in reports if not r.ok]
    if failing:
        raise LineageError(f"broken cross-project lineage in {', '.join(failing)}")


def run_check(mesh: Mesh, project: str, allow_breaking: bool, reason: str | None) -> None:
    """The PR gate: print what changed against `latest`; raise BreakingChangeError when it hits."""
    from mesh.contracts import check_project

    result = check_project(mesh, project, allow_breaking, reason)
    print("\n".join(result.lines()))
    if result.blocked:
        raise result.error()


def run_publish(mesh: Mesh, project: str, allow_breaking: bool, reason: str | None) -> str:
    """Write-audit-publish behind the contract gate; return the summary."""
    from mesh.contracts import publish_gate
    from mesh.publish import publish_project

    record: dict[str, object] = {}
    gate = publish_gate(mesh, project, allow_breaking, reason, record=record)
    return publish_project(mesh, project, checks=(gate,), extra_meta=record).summary()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mesh", description="dbt mesh on dbt-core")
    parser.add_argument("--root", type=Path, default=None, help="folder holding mesh.yml")
    parser.add_argument("--target", default=None, help="target in mesh.yml (default MESH_TARGET or local)")
    sub = parser.add_subparsers(dest="command", required=True)
    pub = sub.add_parser("publish", help="write-audit-publish a project's interface")
    pub.add_argument("--project", required=True)
    pub.add_argument("--allow-breaking", action="store_true", help="publish a breaking change anyway")
    pub.add_argument("--reason", help="why the breaking change is acceptable (recorded)")
    chk = sub.add_parser("check", help="would the working tree break a published contract?")
    chk.add_argument("--project", required=True)
    chk.add_argument("--allow-breaking", action="store_true", help="pass despite hit consumers")
    chk.add_argument("--reason", help="why the breaking change is acceptable")
    syn = sub.add_parser("sync", help="write a consumer's generated upstream files")
    syn.add_argument("--project", required=True)
    syn.add_argument("--dry-run", action="store_true")
    val = sub.add_parser("validate", help="validate consumers' cross-project lineage")
    val.add_argument("--project")
    val.add_argument("--all", action="store_true")
    val.add_argument("--manifest")
    val.add_argument("--format", default="text", choices=["text", "json"])
    val.add_argument("--record-usage", action="store_true", help="store what passing consumers use")
    add = sub.add_parser("add", help="register an existing dbt project with the mesh")
    add.add_argument("path", help="the dbt project's folder (holding dbt_project.yml)")
    add.add_argument(
        "--upstream", action="append", default=[], metavar="NAME",
        help="an upstream project it reads (repeatable; those in its dependencies.yml are read from there)",
    )
    add.add_argument("--via", help="how it reads upstreams: sources (generated dbt sources, default) or loom")
    add.add_argument(
        "--profiles-dir", metavar="DIR",
        help="build with the project's own profiles folder instead of a profile the mesh writes",
    )
    add.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    args = parser.parse_args(argv)
    try:
        if args.command == "add":
            from mesh.onboard import add_project

            added = add_project(
                args.root or find_root(), Path(args.path), args.upstream, args.via,
                args.profiles_dir, args.dry_run,
            )
            print("\n".join(added.lines()))
            return 0
        mesh = load_mesh(args.root, args.target)
        if args.command == "publish":
            print(run_publish(mesh, args.project, args.allow_breaking, args.reason))
        elif args.command == "check":
            run_check(mesh, args.project, args.allow_breaking, args.reason)
        elif args.command == "sync":
            from mesh.pipeline import sync_project
            from mesh.report import plan_lines

            plan = sync_project(mesh, args.project, dry_run=args.dry_run)
            print("\n".join(plan_lines(mesh, plan, args.dry_run)))
        else:
            run_validate(
                mesh, args.project, args.all, args.manifest, args.format, args.record_usage
            )
    except MeshError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
