"""The command line a user is on, and the commands hints name on it.

One library runs behind two surfaces: the invoke tasks of a repository that holds every team's
project (tasks.py at its root: `invoke registry.fsck --project P`) and the `mesh` console script of
a team's own repository (`mesh registry.fsck --project P`). A message that tells the user what to
run names the command of the surface in use: it is built with `command()` (or `hint()`, the same
in backquotes), never written as a literal, so the two cannot drift apart
(tests/unit/test_hint_commands.py runs every such command's `--help` on both surfaces).

Each entry point says which surface it is: tasks.py with `use(INVOKE)` when invoke imports it, the
`mesh` script with `using(MESH)` around a command. The choice travels in the environment, so the
worker processes of a run, which build the messages their projects print, inherit it. Unset (the
library called from Python), hints name invoke tasks.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

ENV = "MESH_SURFACE"
INVOKE = "invoke"
MESH = "mesh"
SURFACES = (INVOKE, MESH)

# invoke task -> `mesh` subcommand, where the names differ; every other task has the same name.
MESH_COMMANDS = {"mesh": "run", "project.add": "add", "project.remove": "remove", "project.set": "set"}


def current() -> str:
    """The surface in use: `mesh` under the console script, `invoke` otherwise."""
    value = os.environ.get(ENV)
    return value if value in SURFACES else INVOKE


def use(surface: str) -> None:
    """Make `surface` the one hints name, in this process and the processes it starts."""
    if surface not in SURFACES:
        raise ValueError(f"unknown surface {surface!r}")
    os.environ[ENV] = surface


@contextlib.contextmanager
def using(surface: str) -> Iterator[None]:
    """`use(surface)` within the block, then whatever was set before."""
    before = os.environ.get(ENV)
    use(surface)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before


def name(task: str, surface: str | None = None) -> str:
    """The name of invoke task `task` on `surface` (default: the one in use)."""
    if (surface or current()) == MESH:
        return MESH_COMMANDS.get(task, task)
    return task


def command(task: str, *args: str, surface: str | None = None) -> str:
    """The command line that runs invoke task `task` with `args` on `surface` (default: the one
    in use): `command("mesh", "--full")` is `invoke mesh --full` or `mesh run --full`."""
    chosen = surface or current()
    return " ".join([chosen, name(task, chosen), *args])


def hint(task: str, *args: str, surface: str | None = None) -> str:
    """`command(...)` in backquotes, as messages quote a command."""
    return f"`{command(task, *args, surface=surface)}`"


def install_hint(extra: str) -> str:
    """How to install what an extra of the package brings: `make venv` in this repository (its
    venv holds every extra), `pip install 'dbt-mesh-core[<extra>]'` elsewhere."""
    if current() == MESH:
        return f"`pip install 'dbt-mesh-core[{extra}]'`"
    return "`make venv`"


def team_repository() -> bool:
    """Whether the surface in use is a team's own repository (the `mesh` script), where a project
    built by another repository is a mesh.yml entry without a path rather than a folder to add."""
    return current() == MESH
