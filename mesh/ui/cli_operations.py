"""The `mesh` script's operations commands: `registry.*`, `emulate.*`, `infra.*` and
`snowflake.*`, named and flagged as the invoke tasks are, each calling the same function as its task
(mesh/ui/registry_commands.py, mesh/ui/infra_commands.py, mesh/infra/emulate.py).

Each subcommand sets `run`: a function of the parsed arguments that prints and returns an exit
code, or raises a MeshError (mesh/ui/cli.py turns it into one line and its exit code).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mesh.ui import infra_commands, registry_commands

Run = Callable[[argparse.Namespace], int]
TARGET_HELP = "target in mesh.yml (default: MESH_TARGET or local)"
INFRA_TARGET_HELP = "target in mesh.yml (default: prod)"


def _root(args: argparse.Namespace) -> Path:
    from mesh.project.config import find_root

    return Path(args.root).resolve() if args.root else find_root()


def _mesh(args: argparse.Namespace) -> Any:
    from mesh.project.config import load_mesh

    return load_mesh(args.root, args.target)


def _done(action: Callable[[argparse.Namespace], None]) -> Run:
    def run(args: argparse.Namespace) -> int:
        action(args)
        return 0

    return run


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add(
    sub: Any, command: str, summary: str, helps: dict[str, str], run: Run,
    flags: dict[str, dict[str, Any]], target_help: str = TARGET_HELP,
) -> argparse.ArgumentParser:
    """A subcommand with `flags` ({option name: argparse keywords}), each option's help from
    `helps` (the text the invoke task shows), and `--target` (also accepted before the command)."""
    parser: argparse.ArgumentParser = sub.add_parser(command, help=summary, description=summary)
    for name, keywords in flags.items():
        help_text = helps.get(name) or helps.get(name.replace("_", "-")) or ""
        parser.add_argument(_flag(name), help=help_text, **keywords)
    parser.add_argument("--target", default=argparse.SUPPRESS, help=target_help)
    parser.set_defaults(run=run)
    return parser


REQUIRED: dict[str, Any] = {"required": True}
OPTIONAL: dict[str, Any] = {}
SWITCH: dict[str, Any] = {"action": "store_true"}


def add_registry(sub: Any) -> None:
    helps = registry_commands.HELP
    _add(
        sub, "registry.list", "list published projects, or one project's versions",
        helps["registry.list"],
        _done(lambda a: registry_commands.registry_list(_mesh(a), a.project)),
        {"project": OPTIONAL},
    )
    _add(
        sub, "registry.show", "show one interface version: metadata and public models",
        helps["registry.show"],
        _done(lambda a: registry_commands.registry_show(_mesh(a), a.project, a.version)),
        {"project": REQUIRED, "version": OPTIONAL},
    )
    _add(
        sub, "registry.diff", "the contract diff between two published versions",
        helps["registry.diff"],
        _done(lambda a: registry_commands.registry_diff(_mesh(a), a.project, a.from_, a.to)),
        {"project": REQUIRED, "from": {"dest": "from_"}, "to": OPTIONAL},
    )
    _add(
        sub, "registry.rollback", "make an earlier version latest again, as a recorded publish",
        helps["registry.rollback"],
        _done(
            lambda a: registry_commands.registry_rollback(
                _mesh(a), a.project, a.to, a.reason, a.allow_breaking
            )
        ),
        {"project": REQUIRED, "to": REQUIRED, "reason": OPTIONAL, "allow_breaking": SWITCH},
    )
    _add(
        sub, "registry.consumers", "which consumers use each public model, version and column",
        helps["registry.consumers"],
        _done(lambda a: registry_commands.registry_consumers(_mesh(a), a.project)),
        {"project": REQUIRED},
    )
    _add(
        sub, "registry.fsck", "check one project's registry objects; --repair fixes what it can",
        helps["registry.fsck"],
        _done(lambda a: registry_commands.registry_fsck(_mesh(a), a.project, a.repair)),
        {"project": REQUIRED, "repair": SWITCH},
    )

    def prune(args: argparse.Namespace) -> None:
        keep = registry_commands.keep_count(args.keep)  # bad input before the mesh is read
        registry_commands.registry_prune(_mesh(args), args.project, keep, args.dry_run)

    _add(
        sub, "registry.prune", "delete old history entries (never latest nor a pinned version)",
        helps["registry.prune"], _done(prune),
        {"project": REQUIRED, "keep": REQUIRED, "dry_run": SWITCH},
    )
    _add(
        sub, "registry.keygen", "print a new signing key pair (private for MESH_SIGNING_KEY, public for mesh.yml)",
        {}, _done(lambda _a: registry_commands.registry_keygen()), {},
    )


def _infra_target(args: argparse.Namespace) -> str:
    return str(args.target or "prod")


def add_infra(sub: Any) -> None:
    helps = infra_commands.HELP
    stack = {"default": infra_commands.DEFAULT_STACK}
    _add(
        sub, "infra.lint", "check Terraform and SQL: fmt, checkov, structural rules, grants",
        helps["infra.lint"],
        _done(lambda a: infra_commands.infra_lint(
            _root(a), a.path, a.sql_path, a.skip_checkov, skip_schemas=a.skip_schemas
        )),
        {"path": {"default": "infra"}, "sql_path": {"default": "snowflake_sql"}, "skip_checkov": SWITCH,
         "skip_schemas": SWITCH},
    )
    _add(
        sub, "infra.verify", "prove on the real bucket and IAM what emulators cannot (throwaway objects)",
        helps["infra.verify"],
        _done(lambda a: infra_commands.infra_verify(_root(a), _infra_target(a), a.registry)),
        {"registry": {}},
        target_help=helps["infra.verify"]["target"],
    )
    for action, summary in (
        ("plan", "show what Terraform would change, with variables from mesh.yml"),
        ("apply", "create or update the registry, IAM and Snowflake resources with Terraform"),
        ("destroy", "destroy what the stack created (asks first)"),
    ):
        flags: dict[str, dict[str, Any]] = {"stack": stack}
        if action != "plan":
            flags["yes"] = SWITCH

        def run(args: argparse.Namespace, action: str = action) -> None:
            infra_commands.infra_terraform(
                _root(args), action, _infra_target(args), args.stack, getattr(args, "yes", False)
            )

        _add(
            sub, f"infra.{action}", summary, helps[f"infra.{action}"], _done(run), flags,
            target_help=helps[f"infra.{action}"]["target"],
        )


def add_snowflake(sub: Any) -> None:
    helps = infra_commands.HELP
    _add(
        sub, "snowflake.verify", "prove on a real account what emulators cannot (throwaway objects)",
        {}, _done(lambda a: infra_commands.snowflake_verify()), {},
    )
    _add(
        sub, "snowflake.setup", "warehouses, roles, databases, CI users and USAGE grants from mesh.yml",
        helps["snowflake.setup"],
        _done(
            lambda a: infra_commands.snowflake_setup(
                _root(a), a.dry_run, a.skip_resource_monitors, a.skip_consumer_grants, a.skip_wap,
                a.sql_path,
            )
        ),
        {
            "dry_run": SWITCH, "skip_resource_monitors": SWITCH, "skip_consumer_grants": SWITCH,
            "skip_wap": SWITCH, "sql_path": {"default": "snowflake_sql"},
        },
    )
    _add(
        sub, "snowflake.grants", "grant consumers SELECT on exactly the published relations",
        helps["snowflake.grants"],
        _done(
            lambda a: infra_commands.snowflake_grants(
                _root(a), a.project, _infra_target(a), a.interface, a.previous, a.dry_run
            )
        ),
        {"project": REQUIRED, "interface": OPTIONAL, "previous": OPTIONAL, "dry_run": SWITCH},
        target_help=helps["snowflake.grants"]["target"],
    )
    _add(
        sub, "snowflake.wap", "write-audit-publish on Snowflake by hand: prepare, promote, discard",
        helps["snowflake.wap"],
        _done(
            lambda a: infra_commands.snowflake_wap(
                _root(a), a.project, a.step, _infra_target(a), a.previous, a.dry_run
            )
        ),
        {
            "project": REQUIRED, "step": {"required": True, "choices": infra_commands.WAP_STEPS},
            "previous": {"default": "latest"}, "dry_run": SWITCH,
        },
        target_help=helps["snowflake.wap"]["target"],
    )


def add_emulate(sub: Any) -> None:
    from mesh.core.surface import command

    def up(args: argparse.Namespace) -> None:
        from mesh.infra.emulate import up as start

        print("\n".join(start(_root(args)).summary()))

    def down(args: argparse.Namespace) -> None:
        from mesh.infra.emulate import down as stop

        print("\n".join(f"emulate: {line}" for line in stop(_root(args))))

    def run(args: argparse.Namespace) -> int:
        from mesh.infra.emulate import run_with_env

        words = list(args.command)
        if words[:1] == ["--"]:
            words = words[1:]
        return run_with_env(_root(args), words)

    for name, summary, action in (
        ("emulate.up", "start S3 (moto) and Snowflake (fakesnow) emulators on loopback", _done(up)),
        ("emulate.down", "stop exactly the emulators emulate.up started", _done(down)),
    ):
        parser = sub.add_parser(name, help=summary, description=summary)
        parser.set_defaults(run=action)
    advice = command("emulate.run", "--", command("mesh", "--target", "prod", surface="mesh"), surface="mesh")
    parser = sub.add_parser(
        "emulate.run", help="run one command with the emulators' environment",
        description=f"Run one command with the emulators' environment: {advice}",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    parser.set_defaults(run=run)
