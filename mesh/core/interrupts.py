"""Whether this process was asked to stop, and whether a failure is really that stop.

A worker of a mesh run turns the run's SIGTERM into dbt's own interrupt (a KeyboardInterrupt in its
main thread; mesh/run/scheduler.py). dbt then cancels the open queries, and what that cancelling raises
can take the interrupt's place: DuckDB's `Connection Error: Connection already closed!` from a
connection a finished node had just released, a node that fails because its query was cancelled.
Such a failure is the interrupt, and is reported as one: `caused_by_interrupt` finds the
KeyboardInterrupt among an exception's causes, and `requested` says whether a stop arrived at all.
"""

from __future__ import annotations

import threading

_REQUESTED = threading.Event()


def request() -> None:
    """Record that this process was asked to stop (called by the worker's signal handler)."""
    _REQUESTED.set()


def requested() -> bool:
    """Whether this process was asked to stop."""
    return _REQUESTED.is_set()


def caused_by_interrupt(exc: BaseException | None) -> bool:
    """Whether `exc` is a KeyboardInterrupt, or was raised while one was handled or because of one."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        item = stack.pop()
        if item is None or id(item) in seen:
            continue
        if isinstance(item, KeyboardInterrupt):
            return True
        seen.add(id(item))
        stack += [item.__cause__, item.__context__]
    return False
