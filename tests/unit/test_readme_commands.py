"""Every command the README shows, and every command a hint in the library tells users to run,
names something that exists: an invoke task of tasks.py with flags that task accepts, a `mesh`
subcommand with its options, or an allowed command that is not ours (make, git, openssl, ...).

Where commands are found:
- README.md's and docs/*.md's fenced code blocks tagged bash, sh, shell or console, and untagged ones. In a shell
  block every line is a command; in console and untagged blocks only `$ ` lines are, and untagged
  lines that start with `invoke`/`mesh` are read as a synopsis (below). Concrete commands are
  parsed exactly as invoke and argparse parse them (`mesh.ui.taskrunner.usage_problem`,
  `mesh.ui.cli.build_parser`): a missing value or a flag taken as a value fails too.
- those pages' inline code spans that start with `invoke ` or `mesh ` (outside fenced blocks), and
  the code spans of string literals in mesh/**/*.py and tasks*.py (plus literals that start with
  `invoke `), found with `ast`. These are references and synopses (`invoke build --project P
  [--select S]`, `invoke infra.lint\\|plan`): the task or subcommand must exist and every `--flag`
  written must be one it takes; required values are not demanded.

Commands are run from an activated venv (README, top): `.venv/bin/invoke` is reported, so the
docs keep one convention. The test prints every offending command with its file and line.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from invoke import Collection, Program
from invoke.parser import ParserContext

from mesh.core.suggest import did_you_mean
from mesh.ui.cli import UsageError, build_parser, check_words, option_action, subcommands
from mesh.ui.taskrunner import long_flags, task_names, usage_problem
from tests.conftest import REPO

# Commands that are not ours and that the README may show. Keep this short: anything else in a
# shell block is most likely a typo or a command that needs explaining.
ALLOWED = frozenset({
    ".", "cd", "export", "unset", "make", "git", "openssl", "terraform", "dbt", "python", "pip",
    "aws", "gh", "mesh_emulate_off", "mkdir", "cp",
})
# A word standing for a task in a message template: TASK, VALUE (an f-string's `{...}`), ..., <x>.
PLACEHOLDER_RE = re.compile(r"^([A-Z][A-Z_]*|\.\.\.|…|<[^>]*>)[:,.;]?$")
SHELL_LANGUAGES = frozenset({"bash", "sh", "shell"})
OPERATORS = frozenset({"&&", "||", ";", "|"})
FENCE_RE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
SPAN_RE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
FLAG_RE = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
ASSIGNMENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
# The library's messages; the benchmark's labels ("invoke mesh vs dbt alone") are not hints.
LIBRARY = ["tasks.py", "tasks_infra.py", *sorted(
    str(p.relative_to(REPO)) for p in (REPO / "mesh").rglob("*.py") if p.parent.name != "bench"
)]
# The README and every page of the documentation site.
PAGES = ["README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))]


@dataclass(frozen=True)
class Command:
    where: str
    text: str
    exact: bool  # a command line to run as is, or a reference / synopsis in prose


# --- finding commands -------------------------------------------------------------------------------


def readme_commands(text: str, name: str = "README.md") -> Iterator[Command]:
    fence: str | None = None
    language = ""
    pending = ""
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE_RE.match(line)
        if fence is None and match:
            fence, language = match.group(2), match.group(3).lower()
            continue
        if fence is not None and line.strip().startswith(fence):
            fence = None
            continue
        where = f"{name}:{number}"
        if fence is None:
            for span in SPAN_RE.findall(line):
                if _is_ours(span):
                    yield Command(where, span, exact=False)
            continue
        body = line.strip()
        if language in SHELL_LANGUAGES:
            if body.endswith("\\"):
                pending += body[:-1] + " "
                continue
            body, pending = pending + body, ""
            body = body.removeprefix("$ ")
            if body and not body.startswith("#"):
                yield Command(where, body, exact=True)
        elif language in ("console", ""):
            if body.startswith("$ "):
                yield Command(where, body[2:], exact=True)
            elif language == "" and _is_ours(body):
                yield Command(where, body, exact=False)


def _is_ours(text: str) -> bool:
    """Whether a span or line is an `invoke`/`mesh` command (or runs one after `&&`), as opposed
    to prose that happens to start with the word mesh ("mesh (8.8s):")."""
    words = text.split()
    if not words:
        return False
    if words[0] in ("invoke", ".venv/bin/invoke", ".venv/bin/mesh") and len(words) > 1:
        return True
    if words[0] == "mesh" and len(words) > 1 and re.match(r"^(\[?--?[a-z]|[a-z])", words[1]):
        return True
    return "&& invoke " in text or "&& mesh " in text


def library_commands() -> Iterator[Command]:
    for rel in LIBRARY:
        tree = ast.parse((REPO / rel).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            text = _literal_text(node)
            if text is None:
                continue
            line = node.lineno  # type: ignore[attr-defined]
            if text.startswith("invoke "):
                # An f-string is a template: its `{...}` parts are checked as placeholders.
                exact = isinstance(node, ast.Constant) and not _is_synopsis(text)
                yield Command(f"{rel}:{line}", text, exact=exact)
            for match in SPAN_RE.finditer(text):
                if _is_ours(match.group(1)):
                    where = f"{rel}:{line + text[: match.start()].count(chr(10))}"
                    yield Command(where, match.group(1), exact=False)


def _literal_text(node: ast.AST) -> str | None:
    """A string literal's text; an f-string's with each `{...}` as VALUE."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            part.value if isinstance(part, ast.Constant) and isinstance(part.value, str) else "VALUE"
            for part in node.values
        )
    return None


# --- checking commands ------------------------------------------------------------------------------


class Checker:
    """Checks commands against the task collection and the `mesh` parser."""

    def __init__(self, collection: Collection, parser: argparse.ArgumentParser) -> None:
        self.collection = collection
        self.parser = parser
        self.initial: ParserContext = Program().initial_context  # the `invoke` binary's options
        self.contexts = {
            name: context
            for context in collection.to_contexts(ignore_unknown_help=True)
            for name in (context.name, *context.aliases)
        }
        self.names = task_names(collection)

    def problems(self, command: Command) -> list[str]:
        if command.exact:
            try:
                segments = _split_exact(command.text)
            except ValueError as exc:
                return [f"cannot split into words: {exc}"]
        else:
            segments = [s.split() for s in re.split(r"&&|;", command.text.replace("\\|", "|"))]
        found: list[str] = []
        for words in segments:
            while words and ASSIGNMENT_RE.match(words[0]):
                words = words[1:]
            if words:
                problem = self.check(words, command.exact)
                if problem:
                    found.append(problem)
        return found

    def check(self, words: list[str], exact: bool) -> str | None:
        head, rest = words[0], words[1:]
        if head.endswith(("/invoke", "/mesh")):
            return f"{head}: write bare `{Path(head).name}` (the README activates the venv first)"
        if head == "invoke":
            return self.check_invoke(rest, exact)
        if head == "mesh":
            return self.check_mesh(rest, exact)
        if head in ALLOWED:
            return None
        return f"{head!r} is neither invoke, mesh nor an allowed command ({', '.join(sorted(ALLOWED))})"

    # invoke -------------------------------------------------------------------------------------------

    def check_invoke(self, words: list[str], exact: bool) -> str | None:
        after: list[str] = []
        if "--" in words:
            words, after = words[: words.index("--")], words[words.index("--") + 1 :]
        if exact:
            problem = usage_problem(self.collection, words)
        else:
            problem = self.check_invoke_synopsis(words)
        if problem is None and after and "emulate.run" in words:
            if not exact and not _is_ours(" ".join(after)):
                return None  # `invoke emulate.run -- CMD...`
            return self.check(after, exact)
        return problem

    def check_invoke_synopsis(self, words: list[str]) -> str | None:
        index = 0
        while index < len(words) and words[index].startswith("-"):
            word = words[index].split("=")[0]
            if word not in self.initial.flags:
                return f"unknown invoke option {word}{did_you_mean(word, long_flags(self.initial))}"
            takes_value = self.initial.flags[word].takes_value
            index += 2 if takes_value and "=" not in words[index] else 1
        if index >= len(words) or PLACEHOLDER_RE.match(words[index]):
            return None  # `invoke --list`, or `invoke TASK` / `invoke {task}` in a message
        spec = words[index].strip("[]")
        first, *others = spec.split("|")
        prefix = first.rpartition(".")[0]
        tasks = [first] + [f"{prefix}.{o}" if prefix and "." not in o else o for o in others]
        if len(tasks) == 1 and first.endswith(".*"):  # `invoke infra.*`: a collection
            if any(n.startswith(first[:-1]) for n in self.names):
                return None
            return f"no task in collection {first[:-2]!r}"
        for name in tasks:
            if name not in self.names:
                return f"unknown task {name!r}{did_you_mean(name, self.names)}"
        accepted = set(long_flags(self.initial))
        for name in tasks:
            if name in self.contexts:
                accepted |= set(long_flags(self.contexts[name]))
        for flag in FLAG_RE.findall(" ".join(words[index + 1 :])):
            if flag not in accepted:
                return f"invoke {'|'.join(tasks)}: unknown flag {flag}{did_you_mean(flag, accepted)}"
        return None

    # mesh ---------------------------------------------------------------------------------------------

    def check_mesh(self, words: list[str], exact: bool) -> str | None:
        if exact:
            try:
                check_words(self.parser, words)
                with contextlib.redirect_stdout(io.StringIO()):
                    self.parser.parse_args(words)
            except UsageError as exc:
                return str(exc)
            except SystemExit as exc:  # --help, --version
                return None if exc.code == 0 else f"mesh exits {exc.code}"
            return None
        words = [w for w in (w.strip("[]") for w in words) if w]
        index = 0
        while index < len(words) and words[index].startswith("-"):
            action = option_action(self.parser, words[index].split("=")[0])
            if action is None:
                known = list(self.parser._option_string_actions)
                return f"mesh: unknown option {words[index]}{did_you_mean(words[index], known)}"
            index += 2 if action.nargs != 0 and "=" not in words[index] else 1
        if index >= len(words):
            return None
        commands = subcommands(self.parser)
        command = words[index]
        if command.endswith(".*"):  # `mesh registry.*`: a group of commands
            if any(c.startswith(command[:-1]) for c in commands):
                return None
            return f"mesh: no command in group {command[:-2]!r}"
        first, *others = command.split("|")  # `mesh emulate.up|down`: several of one group
        prefix = first.rpartition(".")[0]
        names = [first] + [f"{prefix}.{o}" if prefix and "." not in o else o for o in others]
        for name in names:
            if name not in commands:
                return f"mesh: unknown command {name!r}{did_you_mean(name, commands)}"
        for flag in FLAG_RE.findall(" ".join(words[index + 1 :])):  # taken by one of them
            if all(option_action(commands[name], flag) is None for name in names):
                options = [o for name in names for o in commands[name]._option_string_actions]
                return f"mesh {'|'.join(names)}: unknown option {flag}{did_you_mean(flag, options)}"
        return None


def _split_exact(text: str) -> list[list[str]]:
    lexer = shlex.shlex(text, posix=True, punctuation_chars="&|;")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    segments: list[list[str]] = [[]]
    for word in lexer:
        if word in OPERATORS:
            segments.append([])
        else:
            segments[-1].append(word)
    return [s for s in segments if s]


def _is_synopsis(text: str) -> bool:
    return "[" in text or "\\|" in text


# --- the tests -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checker() -> Checker:
    from tasks import ns

    return Checker(ns, build_parser())


def _report(commands: list[Command], checker: Checker) -> list[str]:
    return [
        f"{c.where}: `{c.text}`: {problem}" for c in commands for problem in checker.problems(c)
    ]


def test_every_readme_command_exists(checker: Checker) -> None:
    """Every page: the README and each page under docs/."""
    commands = [
        command for page in PAGES
        for command in readme_commands((REPO / page).read_text(encoding="utf-8"), page)
    ]
    assert len(PAGES) >= 10
    assert sum(c.exact for c in commands) >= 5 and sum(not c.exact for c in commands) >= 20
    offending = _report(commands, checker)
    assert not offending, "documented commands that do not run as written:\n" + "\n".join(offending)


def test_every_hint_in_the_library_names_a_real_command(checker: Checker) -> None:
    commands = list(library_commands())
    assert len(commands) >= 15
    offending = _report(commands, checker)
    assert not offending, "hints naming commands that do not exist:\n" + "\n".join(offending)


def test_readme_sets_up_the_venv_before_any_bare_command() -> None:
    """The first code block: `make mesh`, then the activation line that puts invoke on PATH."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = [c.text.split("#")[0].strip() for c in readme_commands(text) if c.exact][:2]
    assert block == ["make mesh", ". .venv/bin/activate"], block


BAD_README = """\
Some prose with `invoke lineag` and `invoke build --projet P` and `mesh publsh --project P`.
Also `invoke registry.list [--project P]`, `invoke infra.lint\\|plan\\|aply` and `mesh [--root DIR] check --projct P`.

```bash
make mesh
.venv/bin/invoke mesh
invoke build --project
invoke build --projet x
invoke emulate.run -- invoke mesh --targt prod
mesh sync --project a --dryrun
frobnicate --all
. .mesh/emulate.env && invoke lineage --formt json
```

```
mesh (8.8s):
$ invoke registry.shw --project dbt_up
invoke check --project P [--allow-breaking --reasn "..."]   the PR gate
```
"""


def test_the_checker_reports_each_kind_of_bad_command(checker: Checker) -> None:
    """The checks above can fail: every bad command in a sample README is reported, with where."""
    offending = _report(list(readme_commands(BAD_README, "SAMPLE.md")), checker)
    expected = [
        ("SAMPLE.md:1", "invoke lineag", "did you mean 'lineage'?"),
        ("SAMPLE.md:1", "invoke build --projet P", "did you mean '--project'?"),
        ("SAMPLE.md:1", "mesh publsh --project P", "did you mean 'publish'?"),
        ("SAMPLE.md:2", "infra.lint\\|plan\\|aply", "unknown task 'infra.aply'"),
        ("SAMPLE.md:2", "check --projct P", "did you mean '--project'?"),
        ("SAMPLE.md:6", ".venv/bin/invoke mesh", "write bare `invoke`"),
        ("SAMPLE.md:7", "invoke build --project", "--project needs a value"),
        ("SAMPLE.md:8", "invoke build --projet x", "unknown flag --projet"),
        ("SAMPLE.md:9", "--targt prod", "did you mean '--target'?"),
        ("SAMPLE.md:10", "--dryrun", "did you mean '--dry-run'?"),
        ("SAMPLE.md:11", "frobnicate --all", "'frobnicate' is neither invoke, mesh nor"),
        ("SAMPLE.md:12", "invoke lineage --formt json", "did you mean '--format'?"),
        ("SAMPLE.md:17", "invoke registry.shw", "did you mean 'registry.show'?"),
        ("SAMPLE.md:18", "--reasn", "did you mean '--reason'?"),
    ]
    for where, command, problem in expected:
        hits = [o for o in offending if o.startswith(where + ":") and command in o and problem in o]
        assert hits, f"not reported: {where} {command} ({problem}); reported:\n" + "\n".join(offending)
    assert len(offending) == len(expected), "\n".join(offending)
