"""The `mesh` console script: publish, sync, validate for teams using the library outside this repo.

    mesh [--root DIR] [--target T] publish --project P
    mesh [--root DIR] [--target T] sync --project P [--dry-run]
    mesh [--root DIR] [--target T] validate [--project P | --all | --manifest PATH] [--format json]

Exit codes: 0 success, 1 the checked thing failed, 2 bad usage or bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mesh.config import Mesh, load_mesh
from mesh.errors import ConfigError, LineageError, MeshError


def run_validate(
    mesh: Mesh, project: str | None, all_: bool, manifest: str | None, fmt: str
) -> None:
    """Validate and print; raise LineageError (exit 1) when any report fails."""
    from mesh.lineage import consumers, validate_manifest, validate_projects
    from mesh.report import validate_output

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
    failing = [r.project for r in reports if not r.ok]
    if failing:
        raise LineageError(f"broken cross-project lineage in {', '.join(failing)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mesh", description="dbt mesh on dbt-core")
    parser.add_argument("--root", type=Path, default=None, help="folder holding mesh.yml")
    parser.add_argument("--target", default=None, help="target in mesh.yml (default MESH_TARGET or local)")
    sub = parser.add_subparsers(dest="command", required=True)
    pub = sub.add_parser("publish", help="write-audit-publish a project's interface")
    pub.add_argument("--project", required=True)
    syn = sub.add_parser("sync", help="write a consumer's generated upstream files")
    syn.add_argument("--project", required=True)
    syn.add_argument("--dry-run", action="store_true")
    val = sub.add_parser("validate", help="validate consumers' cross-project lineage")
    val.add_argument("--project")
    val.add_argument("--all", action="store_true")
    val.add_argument("--manifest")
    val.add_argument("--format", default="text", choices=["text", "json"])
    args = parser.parse_args(argv)
    try:
        mesh = load_mesh(args.root, args.target)
        if args.command == "publish":
            from mesh.publish import publish_project

            print(publish_project(mesh, args.project).summary())
        elif args.command == "sync":
            from mesh.pipeline import sync_project
            from mesh.report import plan_lines

            plan = sync_project(mesh, args.project, dry_run=args.dry_run)
            print("\n".join(plan_lines(mesh, plan, args.dry_run)))
        else:
            run_validate(mesh, args.project, args.all, args.manifest, args.format)
    except MeshError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
