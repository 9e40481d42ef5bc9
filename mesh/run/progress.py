"""What a mesh run shows while it works: one line per project step, live node counts on a terminal.

On a terminal, rich draws a live line per running project (step, nodes done of total, time) and
prints each finished step above it; anywhere else (CI logs, files, pipes) the same step lines are
printed plainly, without colours or control codes. dbt's own log never reaches the screen: it is in
`logs/<project>.log` (`--verbose` streams it).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, Protocol

Say = Callable[[str], None]


class Display(Protocol):
    def project_started(self, project: str, index: int, total: int, target: str) -> None: ...
    def step(self, project: str, step: str, detail: str) -> None: ...
    def nodes(self, project: str, done: int, total: int) -> None: ...
    def line(self, text: str) -> None: ...
    def close(self) -> None: ...


class PlainDisplay:
    """Step lines through `say` (print by default): for logs, pipes and tests."""

    def __init__(self, say: Say = print) -> None:
        self.say = say
        self.labels: dict[str, str] = {}

    def project_started(self, project: str, index: int, total: int, target: str) -> None:
        self.labels[project] = f"[{index}/{total}] {project} ({target})"

    def step(self, project: str, step: str, detail: str) -> None:
        """Plain output prints finished steps only (see `line`), not every change of step."""

    def nodes(self, project: str, done: int, total: int) -> None:
        """No live counts without a terminal."""

    def line(self, text: str) -> None:
        self.say(text)

    def close(self) -> None:
        """Nothing to tear down."""


class RichDisplay:
    """A live line per running project on a terminal (rich), finished lines printed above it."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = Console(highlight=False)
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.fields[label]}", style="bold"),
            TextColumn("{task.description}"),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.tasks: dict[str, Any] = {}
        self.labels: dict[str, str] = {}
        self.progress.start()

    def project_started(self, project: str, index: int, total: int, target: str) -> None:
        label = f"[{index}/{total}] {project} ({target})"
        self.labels[project] = label
        self.tasks[project] = self.progress.add_task("starting", label=label, total=None)

    def step(self, project: str, step: str, detail: str) -> None:
        task = self.tasks.get(project)
        if task is not None:
            self.progress.update(task, description=f"{step}: {detail}" if detail else step)

    def nodes(self, project: str, done: int, total: int) -> None:
        task = self.tasks.get(project)
        if task is not None:
            self.progress.update(task, completed=done, total=total or None)

    def line(self, text: str) -> None:
        self.progress.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def finish(self, project: str) -> None:
        task = self.tasks.pop(project, None)
        if task is not None:
            self.progress.remove_task(task)

    def close(self) -> None:
        self.progress.stop()


def make_display(say: Say | None) -> PlainDisplay | RichDisplay:
    """Rich on a terminal when nobody asked for the lines themselves; plain lines otherwise."""
    if say is None:
        if sys.stdout.isatty():
            return RichDisplay()
        say = print
    return PlainDisplay(say)


class Throttle:
    """At most one call per `interval` seconds (node counts arrive faster than anyone reads)."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.last = 0.0

    def ready(self) -> bool:
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            return True
        return False
