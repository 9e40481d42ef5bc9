"""The `mesh` console script: the task surface for teams whose dbt project lives in its own
repository (a `mesh.yml` naming it, its upstreams and the registry), with the invoke tasks' flags
and exit codes; each command is the same library call as its task.

    mesh [--root DIR] [--target T] build --project P [--select S] [--defer] [--save-state] [--full-refresh]
    mesh [--root DIR] [--target T] publish --project P [--allow-breaking --reason TEXT]
    mesh [--root DIR] [--target T] check --project P [--format text|json|markdown]
                                         [--allow-breaking --reason TEXT]
    mesh [--root DIR] [--target T] sync --project P [--dry-run]
    mesh [--root DIR] [--target T] validate [--project P | --all | --manifest PATH] [--format json]
    mesh [--root DIR] [--target T] lineage [--format mermaid|json|html] [--output PATH]
    mesh [--root DIR] [--target T] propose --project P --reason TEXT [--deadline YYYY-MM-DD]
    mesh [--root DIR] [--target T] acknowledge --proposal ID --project C
    mesh [--root DIR] [--target T] downstream --project P [--since VERSION] [--format text|json]
    mesh [--root DIR] [--target T] plan [--format text|json|github] [--max-levels N] [--project P ...]
    mesh [--root DIR] [--target T] run [--jobs N] [--full] [--full-refresh] [--project P ...]   (invoke mesh)
    mesh [--root DIR] add PATH [--upstream NAME ...] [--via loom|sources] [--profiles-dir DIR] [--dry-run]
    mesh [--root DIR] [--target T] registry.list|show|diff|rollback|consumers|fsck|prune ...
    mesh [--root DIR] [--target T] infra.lint|plan|apply|destroy ..., snowflake.setup|grants|wap ...
    mesh [--root DIR] emulate.up|down, emulate.run -- COMMAND...
    mesh --version

Every invoke task a message can name has a `mesh` command of the same name and flags (`invoke mesh`
is `mesh run`, `invoke project.add` is `mesh add`), and `--target` is accepted before or after the
command. Messages name the `mesh` commands while it runs (mesh/core/surface.py).

Exit codes: 0 success, 1 the checked thing failed, 2 bad usage or bad input (one line on stderr,
with the closest command or option when one is misspelt), 130/143 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from importlib import metadata
from pathlib import Path
from typing import NoReturn

from mesh.core import surface
from mesh.core.errors import ConfigError, LineageError, MeshError
from mesh.core.suggest import did_you_mean
from mesh.project.config import Mesh, find_root, load_mesh
from mesh.ui.cli_operations import add_emulate, add_infra, add_registry, add_snowflake


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
    from mesh.consumer.validate import consumers, validate_manifest, validate_projects
    from mesh.ui.report import validate_output

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
        from mesh.interface.usage import record_usage as record

        for report in reports:
            if report.ok:
                record(mesh, report.project)
    failing = [r for r in reports if not r.ok]
    if failing:
        kinds = {f.kind for r in failing for f in r.findings if f.severity == "error"}
        what = []
        if kinds - {"freshness"}:
            what.append("broken cross-project lineage")
        if "freshness" in kinds:
            what.append("stale upstream data")
        names = ", ".join(r.project for r in failing)
        raise LineageError(f"{' and '.join(what)} in {names} (findings above)")


def run_check(
    mesh: Mesh, project: str, allow_breaking: bool, reason: str | None, fmt: str = "text"
) -> None:
    """The PR gate: print what changed against `latest` (text, json or markdown); raise
    BreakingChangeError when a breaking change hits a consumer, directly or through a chain."""
    from mesh.interface.impact import CHECK_FORMATS
    from mesh.run.gate import check_project
    from mesh.run.scheduler import log_path
    from mesh.warehouse.runner import dbt_log

    if fmt not in CHECK_FORMATS:
        raise ConfigError(f"unknown format {fmt!r}: use {', '.join(CHECK_FORMATS)}")
    with dbt_log(log_path(mesh, project)):  # dbt's parse log: logs/<project>.log, not the screen
        result = check_project(mesh, project, allow_breaking, reason)
    print(result.render(fmt))
    if result.blocked:
        raise result.error()


def run_publish(mesh: Mesh, project: str, allow_breaking: bool, reason: str | None) -> str:
    """Write-audit-publish behind the contract gate; return the summary."""
    from mesh.interface.publish import publish_project
    from mesh.run.gate import publish_gate
    from mesh.run.scheduler import log_path
    from mesh.warehouse.runner import dbt_log

    record: dict[str, object] = {}
    gate = publish_gate(mesh, project, allow_breaking, reason, record=record)
    with dbt_log(log_path(mesh, project)):
        return publish_project(mesh, project, checks=(gate,), extra_meta=record).summary()


def run_plan(
    mesh: Mesh, projects: list[str] | None, fmt: str = "text", max_levels: int = 4
) -> str:
    """What `invoke plan` prints: the projects to run level by level, as text, JSON, or the
    `level_N=[…]` lines a workflow appends to $GITHUB_OUTPUT."""
    import orjson

    from mesh.run.plan import plan_mesh

    if fmt not in ("text", "json", "github"):
        raise ConfigError(f"unknown format {fmt!r}: use text, json or github")
    plan = plan_mesh(mesh, projects)
    if fmt == "github":
        return plan.github_outputs(max_levels)
    if fmt == "json":
        return orjson.dumps(plan.to_json(), option=orjson.OPT_INDENT_2).decode()
    return plan.render()


def run_propose(mesh: Mesh, project: str, reason: str, deadline: str | None) -> str:
    """Record the breaking change the gate finds in the working tree as a proposal; its summary."""
    from mesh.interface.proposals import propose
    from mesh.run.gate import check_project
    from mesh.run.scheduler import log_path
    from mesh.warehouse.runner import dbt_log

    with dbt_log(log_path(mesh, project)):
        result = check_project(mesh, project)
    if result.against is None or not result.hits:
        raise ConfigError(f"nothing to propose: no breaking change of {project} hits a consumer on record")
    changes = sorted({(h.change.kind, h.change.unique_id, h.change.column) for h in result.hits}, key=str)
    consumers: dict[str, list[str]] = {}
    for hit in result.hits:
        consumers.setdefault(hit.use.consumer, []).append(result.route(hit))
    record = propose(mesh, project, reason, deadline, result.against, changes, consumers)
    lines = [
        f"proposed {record.id} against {project}/{mesh.env} latest {record.against}: "
        f"{len(record.changes)} breaking change{'s' if len(record.changes) != 1 else ''}, "
        f"hitting {', '.join(record.consumers)}",
    ]
    lines += [f"  {name}: {'; '.join(paths)}" for name, paths in record.consumers.items()]
    lines.append(
        "each consumer accepts it with "
        + surface.hint("acknowledge", "--proposal", record.id, "--project", "<consumer>")
        + ", or migrates off what it reads; the gate then lets the change through"
    )
    return "\n".join(lines)


def run_acknowledge(mesh: Mesh, proposal: str, project: str) -> str:
    from mesh.interface.proposals import acknowledge

    record = acknowledge(mesh, proposal, project)
    return f"{project} acknowledged {record.id} of {record.project}: {record.reason}"


def run_downstream(mesh: Mesh, project: str, since: str | None, fmt: str = "text") -> str:
    """What `invoke downstream` prints: the consumers `project`'s publish reaches."""
    import orjson

    from mesh.consumer.downstream import downstream

    if fmt not in ("text", "json"):
        raise ConfigError(f"unknown format {fmt!r}: use text or json")
    found = downstream(mesh, project, since)
    if fmt == "json":
        return orjson.dumps(found.to_json(), option=orjson.OPT_INDENT_2).decode()
    return found.render()


class UsageError(MeshError):
    """The command line itself is wrong: an unknown command or option, a missing value (exit 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (a UsageError) instead of usage text and a message."""

    def error(self, message: str) -> NoReturn:
        if "required: command" in message.lower():
            message = f"give a command: {', '.join(subcommands(self))}"
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def version_text() -> str:
    """`mesh --version`: this package's version and the dbt-core it runs with."""

    def of(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "not installed"

    return f"mesh {of('dbt-mesh-core')} (dbt-mesh-core), dbt-core {of('dbt-core')}"


def _levels(text: str) -> int:
    """--max-levels: a whole number of level jobs, at least 1."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"takes a number of level jobs (1 or more), got {text!r}")
    return int(text)


def _jobs(text: str) -> int:
    """--jobs: a whole number of projects, 0 for one per core."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"takes a number of projects (0: one per core), got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The whole command line of `mesh`: global options, then one subparser per command. The
    README test reads it to check every `mesh ...` command the docs show."""
    parser = _Parser(prog="mesh", description="dbt mesh on dbt-core")
    parser.add_argument("--version", action="version", version=version_text())
    parser.add_argument("--root", type=Path, default=None, help="folder holding mesh.yml")
    parser.add_argument("--target", default=None, help="target in mesh.yml (default MESH_TARGET or local)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    pub = sub.add_parser("publish", help="write-audit-publish a project's interface")
    pub.add_argument("--project", required=True)
    pub.add_argument("--allow-breaking", action="store_true", help="publish a breaking change anyway")
    pub.add_argument("--reason", help="why the breaking change is acceptable (recorded)")
    chk = sub.add_parser("check", help="would the working tree break a published contract?")
    chk.add_argument("--project", required=True)
    chk.add_argument("--allow-breaking", action="store_true", help="pass despite hit consumers")
    chk.add_argument("--reason", help="why the breaking change is acceptable")
    chk.add_argument(
        "--format", default="text", choices=["text", "json", "markdown"],
        help="text (default), json, or markdown for a pull-request comment",
    )
    syn = sub.add_parser("sync", help="write a consumer's generated upstream files")
    syn.add_argument("--project", required=True)
    syn.add_argument("--dry-run", action="store_true")
    val = sub.add_parser("validate", help="validate consumers' cross-project lineage")
    val.add_argument("--project")
    val.add_argument("--all", action="store_true")
    val.add_argument("--manifest")
    val.add_argument("--format", default="text", choices=["text", "json"])
    val.add_argument("--record-usage", action="store_true", help="store what passing consumers use")
    bld = sub.add_parser("build", help="build and test one project (sync first, contract gate first)")
    bld.add_argument("--project", required=True)
    bld.add_argument("--select", help="dbt node selection, e.g. state:modified+")
    bld.add_argument("--defer", action="store_true", help="defer unchanged parents to the last published state")
    bld.add_argument("--save-state", action="store_true", help="store state, usage and fingerprint (main branch)")
    bld.add_argument("--full-refresh", action="store_true", help="rebuild incremental models from scratch")
    bld.add_argument("--allow-breaking", action="store_true", help="build despite a breaking change consumers use")
    bld.add_argument("--reason", help="why the breaking change is acceptable")
    bld.add_argument("--verbose", action="store_true", help="stream dbt's log")
    bld.add_argument("--vars", help="dbt --vars, a YAML mapping: '{key: value}'")
    bld.add_argument("--event-time-start", help="dbt --event-time-start: a microbatch window's start")
    bld.add_argument("--event-time-end", help="dbt --event-time-end: a microbatch window's end")
    run = sub.add_parser("run", help="the whole mesh: build, test, publish, validate (invoke mesh)")
    run.add_argument("--jobs", type=_jobs, help="projects built at once (default 0: one per core)")
    run.add_argument("--full", action="store_true", help="build even projects whose inputs did not change")
    run.add_argument("--full-refresh", action="store_true", help="rebuild incremental models from scratch")
    run.add_argument("--verbose", action="store_true", help="stream dbt's log")
    run.add_argument("--project", action="append", default=[], metavar="NAME", help="run only this project (repeatable)")
    pln = sub.add_parser("plan", help="which projects must run, level by level (CI runners follow it)")
    pln.add_argument("--format", choices=["text", "json", "github"], default="text", help="text (default), json, or github ($GITHUB_OUTPUT lines)")
    pln.add_argument("--max-levels", type=_levels, default=4, help="with --format github: the workflow's level jobs (default 4)")
    pln.add_argument("--project", action="append", default=[], metavar="NAME", help="plan only these (repeatable)")
    prp = sub.add_parser("propose", help="propose the breaking change the gate finds to the consumers it hits")
    prp.add_argument("--project", required=True, help="the producer")
    prp.add_argument("--reason", required=True, help="why the break is needed (consumers read it)")
    prp.add_argument("--deadline", help="a date (YYYY-MM-DD) after which --allow-breaking may ship it")
    ack = sub.add_parser("acknowledge", help="accept, for a consumer, a producer's breaking-change proposal")
    ack.add_argument("--proposal", required=True, help="the proposal's id")
    ack.add_argument("--project", required=True, help="the consumer that accepts it")
    dwn = sub.add_parser("downstream", help="the consumers a project's publish reaches (who to trigger)")
    dwn.add_argument("--project", required=True, help="the producer")
    dwn.add_argument("--since", help="the version latest before the publish: only consumers of what changed")
    dwn.add_argument("--format", choices=["text", "json"], default="text", help="text (default) or json")
    lin = sub.add_parser("lineage", help="draw the cross-project lineage (Mermaid, JSON, HTML)")
    lin.add_argument("--format", choices=["mermaid", "json", "html"], help="default: all three into lineage/")
    lin.add_argument("--output", help="file (with --format) or folder to write")
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
    add.add_argument(
        "--allow-uncontracted", action="store_true",
        help="let it publish public models without an enforced contract (require_contracts: false)",
    )
    rem = sub.add_parser("remove", help="take a project out of the mesh (the registry keeps its history)")
    rem.add_argument("name")
    rem.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    sett = sub.add_parser("set", help="switch how a project reads its upstreams, or its profiles folder")
    sett.add_argument("name")
    sett.add_argument("--via", choices=["sources", "loom"])
    sett.add_argument("--profiles-dir", metavar="DIR")
    sett.add_argument("--mesh-profile", action=argparse.BooleanOptionalAction, default=None)
    sett.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    for command in (pub, chk, syn, val, bld, run, lin):
        command.add_argument("--target", default=argparse.SUPPRESS, help="target in mesh.yml (default: MESH_TARGET or local)")
    add_registry(sub)
    add_infra(sub)
    add_snowflake(sub)
    add_emulate(sub)
    return parser


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subparsers of `parser` by command name (empty for a parser without commands)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def option_action(parser: argparse.ArgumentParser, word: str) -> argparse.Action | None:
    """The action an option word selects, as argparse resolves it (exact, or a unique prefix)."""
    options = parser._option_string_actions
    if word in options:
        return options[word]
    if parser.allow_abbrev and word.startswith("--"):
        matches = {options[o] for o in options if o.startswith(word)}
        if len(matches) == 1:
            return matches.pop()
    return None


def check_words(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """Refuse an unknown command or option before argparse sees it, naming the closest valid one
    (argparse would first complain about a missing required option instead)."""
    current, index = parser, 0
    while index < len(argv):
        word = argv[index]
        if word == "--":
            return
        if word.startswith("-") and word != "-":
            name = word.split("=", 1)[0]
            action = option_action(current, name)
            if action is None:
                known = [o for o in current._option_string_actions if o.startswith("--")]
                raise UsageError(
                    f"{current.prog}: unknown option {name}{did_you_mean(name, known)} "
                    f"(see {current.prog} --help)"
                )
            if action.nargs != 0 and "=" not in word:
                index += 1  # its value, whatever it looks like
        elif current is parser and subcommands(parser):
            commands = subcommands(parser)
            if word not in commands:
                raise UsageError(
                    f"{parser.prog}: unknown command {word!r}{did_you_mean(word, commands)} "
                    f"(commands: {', '.join(commands)})"
                )
            current = commands[word]
        index += 1


def main(argv: list[str] | None = None) -> int:
    with surface.using(surface.MESH):  # messages name `mesh` commands (mesh/core/surface.py)
        return _main(sys.argv[1:] if argv is None else argv)


def script() -> None:
    """The console script: `main`, then exit. After a dbt run on DuckDB the interpreter's teardown
    goes to /dev/null: DuckDB's bindings report the instance dbt-duckdb keeps for the process as a
    reference leak, which would follow the one line a failure promises."""
    import os

    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`mesh registry.consumers … | head -1`): what it read is what it
        # wanted; the rest goes nowhere, as with any Unix filter.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    if "duckdb" in sys.modules:
        sys.stderr.flush()
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
    sys.exit(code)


def _main(words: list[str]) -> int:
    parser = build_parser()
    try:
        check_words(parser, words)
        args = parser.parse_args(words)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    try:
        if hasattr(args, "run"):  # the operations commands (mesh/ui/cli_operations.py)
            code: int = args.run(args)
            return code
        if args.command == "add":
            from mesh.ui.onboard import add_project

            added = add_project(
                args.root or find_root(), Path(args.path), args.upstream, args.via,
                args.profiles_dir, args.dry_run, args.allow_uncontracted,
            )
            print("\n".join(added.lines()))
            return 0
        if args.command in ("remove", "set"):
            from mesh.ui.membership import apply_plan, plan_remove, plan_set

            root = args.root or find_root()
            if args.command == "remove":
                changed = plan_remove(root, args.name)
            else:
                changed = plan_set(root, args.name, args.via, args.profiles_dir, args.mesh_profile)
            changed.dry_run = args.dry_run
            if not args.dry_run:
                apply_plan(changed)
            print("\n".join(changed.lines()))
            return 0
        mesh = load_mesh(args.root, args.target)
        if args.command == "publish":
            print(run_publish(mesh, args.project, args.allow_breaking, args.reason))
        elif args.command == "check":
            run_check(mesh, args.project, args.allow_breaking, args.reason, args.format)
        elif args.command == "sync":
            from mesh.run.pipeline import sync_project
            from mesh.ui.report import plan_lines

            plan = sync_project(mesh, args.project, dry_run=args.dry_run)
            print("\n".join(plan_lines(mesh, plan, args.dry_run)))
        elif args.command == "build":
            from mesh.run.pipeline import build_project

            built = build_project(
                mesh, args.project, select=args.select, defer=args.defer, say=None,
                full_refresh=args.full_refresh, save_state=args.save_state,
                allow_breaking=args.allow_breaking, reason=args.reason, verbose=args.verbose,
                vars=args.vars, event_time_start=args.event_time_start, event_time_end=args.event_time_end,
            )
            print(built.summary())
        elif args.command == "run":
            from mesh.run.pipeline import run_mesh
            from mesh.ui.lineage import draw_lineage

            run_mesh(
                mesh, say=None, jobs=args.jobs, full=args.full or args.full_refresh,
                full_refresh=args.full_refresh, verbose=args.verbose, show=print, draw=draw_lineage,
                projects=args.project or None,
            )
        elif args.command == "propose":
            print(run_propose(mesh, args.project, args.reason, args.deadline))
        elif args.command == "acknowledge":
            print(run_acknowledge(mesh, args.proposal, args.project))
        elif args.command == "downstream":
            print(run_downstream(mesh, args.project, args.since, args.format))
        elif args.command == "plan":
            print(run_plan(mesh, args.project or None, args.format, args.max_levels))
        elif args.command == "lineage":
            from mesh.ui.lineage import run_lineage

            print(run_lineage(mesh, args.format, args.output))
        else:
            run_validate(
                mesh, args.project, args.all, args.manifest, args.format, args.record_usage
            )
    except MeshError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    script()
