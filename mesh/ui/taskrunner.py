"""invoke's own usage errors the mesh's way: exit 2, one line on stderr, and "did you mean …".

invoke's `Program.run` prints a `ParseError` (unknown task, unknown flag, missing value) and exits
1, which the mesh reserves for "the checked thing failed". tasks.py calls `install()` while invoke
imports it, which is before invoke parses the task part of the command line (`Program.run` calls
`parse_collection`, which imports tasks.py, then `parse_tasks`). `install()` wraps
`Program.parse_tasks` and `Program.parse_cleanup` (which handles `--help <task>` and `--list
<collection>`): a `ParseError` leaving them, or invoke's own exit for an unknown collection, becomes
`invoke.Exit(<one line>, code=2)`, which `Program.run` prints and exits with.

One more check runs after a parse that invoke accepted: a task argument without a default is a
positional argument to invoke, so given "invoke build --projet x" invoke takes "--projet" as the
project's value. A positional value that looks like a flag is reported as the unknown flag it is.

`usage_problem(collection, argv)` runs the same parse without running anything; the README test
uses it to check every invoke command the docs show.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from invoke import Collection, Exit, ParseError, Program
from invoke.parser import Parser, ParserContext
from invoke.parser.context import to_flag

from mesh.core.suggest import closest

_MARK = "_mesh_usage_errors"
_NEEDS_VALUE_RE = re.compile(r"^Flag <Argument: ([^ >]+).*needed value")
_TAKES_NO_VALUE_RE = re.compile(r"^Flag <Argument: ([^ >]+).*doesn't take any value")
_UNKNOWN_RE = re.compile(r"^No idea what '(.*)' is!$")
_FLAG_LIKE_RE = re.compile(r"^--?[A-Za-z]")
_NO_COLLECTION_RE = re.compile(r"^Sub-collection '(.+)' not found!$")
_MISSING_POSITIONAL_RE = re.compile(r"^'(.+)' did not receive required positional arguments: (.+)$")
_NOT_A_NUMBER_RE = re.compile(
    r"^(?:invalid literal for int\(\) with base 10|could not convert string to float): '(.*)'$"
)


def task_names(collection: Collection) -> list[str]:
    """Every name a task of `collection` answers to (dotted for sub-collections, aliases too)."""
    names: list[str] = []
    for name, aliases in collection.task_names.items():
        names += [name, *aliases]
    return names


def long_flags(context: ParserContext) -> list[str]:
    """The `--flags` a parser context (a task, or invoke's core options) accepts."""
    return [f for f in [*context.flags.keys(), *context.inverse_flags.keys()] if f.startswith("--")]


def _flag_of(context: ParserContext | None, argument_name: str) -> str:
    if context is not None:
        for flag, argument in context.flags.items():
            if argument.name == argument_name and flag.startswith("--"):
                return str(flag)
    return to_flag(argument_name)


def _suggest(word: str, *groups: Iterable[str]) -> str:
    """`; did you mean 'x'?` from the first group holding a close match."""
    for group in groups:
        match = closest(word, group)
        if match:
            return f"; did you mean {match!r}?"
    return ""


def _task_label(context: ParserContext | None) -> str:
    return f"invoke {context.name}" if context is not None and context.name else "invoke"


def _help_hint(context: ParserContext | None) -> str:
    if context is not None and context.name:
        return f" (see invoke --help {context.name})"
    return " (see invoke --help)"


def unknown_flag(word: str, context: ParserContext | None, initial: ParserContext) -> str:
    name = word.split("=", 1)[0]
    own = long_flags(context) if context is not None and context.name else []
    hint = _suggest(name, own, long_flags(initial))
    return f"{_task_label(context)}: unknown flag {name}{hint}{_help_hint(context)}"


def unknown_task(word: str, collection: Collection, after: ParserContext | None = None) -> str:
    """After `emulate.up`, `dwn` most likely meant `emulate.down`: the collection of the task
    before is tried first."""
    names = task_names(collection)
    prefix = after.name.rpartition(".")[0] if after is not None and after.name else ""
    hint = (_suggest(f"{prefix}.{word}", names) if prefix else "") or _suggest(word, names)
    return f"unknown task {word!r}{hint} (invoke --list shows every task)"


def flag_taken_as_value(context: ParserContext) -> str | None:
    """The value invoke gave a positional argument, when it is really a (misspelt) flag."""
    for argument in context.positional_args:
        value = argument.value
        if isinstance(value, str) and _FLAG_LIKE_RE.match(value):  # not `-1`
            return value
    return None


def explain(error: ParseError, collection: Collection, initial: ParserContext) -> str:
    """One line, without the `error: ` prefix, for an invoke parse error."""
    context = error.context if isinstance(error.context, ParserContext) else None
    message = str(error)
    eaten = flag_taken_as_value(context) if context is not None else None
    if eaten is not None:
        return unknown_flag(eaten, context, initial)
    if match := _UNKNOWN_RE.match(message):
        word = match.group(1)
        if word.startswith("-"):
            return unknown_flag(word, context, initial)
        return unknown_task(word, collection, context)
    if match := _NEEDS_VALUE_RE.match(message):
        flag = _flag_of(context, match.group(1))
        return f"{_task_label(context)}: {flag} needs a value{_help_hint(context)}"
    if match := _TAKES_NO_VALUE_RE.match(message):
        flag = _flag_of(context, match.group(1))
        return f"{_task_label(context)}: {flag} takes no value{_help_hint(context)}"
    if match := _MISSING_POSITIONAL_RE.match(message):
        names = [n.strip().strip("'") for n in match.group(2).split(",")]
        flags = " and ".join(f"{_flag_of(context, n)} VALUE" for n in names)
        return f"invoke {match.group(1)}: give {flags}{_help_hint(context)}"
    return " ".join(message.split())


def check_parsed(tasks: Iterable[ParserContext], initial: ParserContext) -> str | None:
    """What is wrong with a parse invoke accepted (a flag taken as a positional value), if anything."""
    for context in tasks:
        eaten = flag_taken_as_value(context)
        if eaten is not None:
            return unknown_flag(eaten, context, initial)
    return None


def usage_problem(collection: Collection, argv: list[str]) -> str | None:
    """What invoke, with `install()`, would refuse in the command line `argv` (the words after
    "invoke"), without the `error: ` prefix; None when it parses. Runs nothing."""
    initial = Program().initial_context  # as the `invoke` binary has it: with -c, -r, ...
    try:
        core = Parser(initial=initial, ignore_unknown=True).parse_argv(argv)
        contexts = collection.to_contexts(ignore_unknown_help=True)
        tasks = Parser(initial=initial, contexts=contexts).parse_argv(core.unparsed)
    except ParseError as exc:
        return explain(exc, collection, initial)
    except ValueError as exc:
        problem = not_a_number(exc, list(argv))
        if problem is None:
            raise
        return problem
    help_for = core[0].args.help.value
    if isinstance(help_for, str) and help_for not in {c.name for c in contexts}:
        return unknown_task(help_for, collection)
    return check_parsed(tasks[1:], initial)


def collection_names(collection: Collection, prefix: str = "") -> list[str]:
    """Every sub-collection's dotted name (what `invoke --list <name>` takes)."""
    names: list[str] = []
    for name, sub in collection.collections.items():
        names += [prefix + name, *collection_names(sub, f"{prefix}{name}.")]
    return names


def not_a_number(exc: ValueError, argv: list[str]) -> str | None:
    """The flag of `argv` whose value is not a number, or None when `exc` is not about that.
    (The parser casts a flag's value to its default's type and lets the ValueError out.)"""
    match = _NOT_A_NUMBER_RE.match(str(exc))
    if match is None:
        return None
    value = match.group(1)
    for before, word in zip(["", *argv], argv, strict=False):
        if word == value and before.startswith("-"):
            return f"invoke: {before} takes a number, got {value!r}"
        if word.startswith("--") and word.endswith(f"={value}"):
            return f"invoke: {word.split('=', 1)[0]} takes a number, got {value!r}"
    return f"invoke: a flag takes a number, got {value!r}"


def _wrapped(method: Callable[[Program], None]) -> Callable[[Program], None]:
    def run(self: Program) -> None:
        try:
            method(self)
        except ParseError as exc:
            raise Exit(f"error: {explain(exc, self.collection, self.initial_context)}", code=2) from exc
        except ValueError as exc:
            problem = not_a_number(exc, list(self.core.unparsed))
            if problem is None:
                raise
            raise Exit(f"error: {problem}", code=2) from exc
        except Exit as exc:  # `invoke --list regstry`: invoke says so and exits 1
            match = _NO_COLLECTION_RE.match(exc.message or "")
            if not match:
                raise
            name = match.group(1)
            hint = _suggest(name, collection_names(self.collection))
            raise Exit(f"error: unknown collection {name!r}{hint} (invoke --list shows every task)", code=2) from exc
        if method.__name__ == "parse_tasks":
            problem = check_parsed(self.tasks, self.initial_context)
            if problem is not None:
                raise Exit(f"error: {problem}", code=2)

    setattr(run, _MARK, True)
    run.__name__ = method.__name__
    run.__doc__ = method.__doc__
    return run


def install() -> None:
    """Make invoke's usage errors exit 2 with one `error: ...` line (idempotent).

    Patches `invoke.Program` for this process: tasks.py calls it at import, which is the only
    moment a task collection can act before invoke parses the task arguments.
    """
    for name in ("parse_tasks", "parse_cleanup"):
        method: Any = getattr(Program, name)
        if not getattr(method, _MARK, False):
            setattr(Program, name, _wrapped(method))
