"""Named crash points, for tests only.

`failpoint(name)` kills its own process with SIGKILL when the environment variable MESH_FAILPOINT
equals `name`, and does nothing otherwise (one dictionary lookup). The publish path calls it between
the steps whose interruption the registry must survive (tests/unit/test_crash.py runs a publish per
name and checks `latest`, `list_versions`, fsck and a rerun afterwards). SIGKILL, not an exception:
no `finally`, no `atexit`, no flush, exactly like a killed CI runner or an out-of-memory kill.

`MESH_FAILPOINT=<name>:pause` pauses there instead: the process writes the file named by
MESH_FAILPOINT_MARKER and waits until it is interrupted (a signal), so a test can interrupt a run at
an exact point (tests/integration/test_interrupt.py). `<name>:raise` raises FailpointError there,
as a library call that fails at that point would.

Never set MESH_FAILPOINT outside tests.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

ENV = "MESH_FAILPOINT"
MARKER_ENV = "MESH_FAILPOINT_MARKER"
_STOP = threading.Event()

# Every failpoint the library defines, in the order a publish reaches them.
NAMES = (
    "publish.audited",  # audit passed, nothing written yet
    "registry.history.partial",  # folder: temporary entry holds its checksum, not its body
    "registry.history.uncommitted",  # folder: temporary entry complete, not renamed into history
    "registry.history.committed",  # history entry committed, `latest` not touched
    "registry.latest.prepared",  # folder: new link made beside `latest`; S3: before the PUT
    "registry.latest.swapped",  # `latest` moved, the publisher never hears of it
)
# Points of a mesh run a test interrupts (with `:pause`), besides "publish.audited", and points
# of a worker's stop.
RUN_POINTS = (
    "mesh.planned",  # the run has its plan; no dbt has started
    "dbt.node_finished",  # inside dbt: a node of the build just finished
    "dbt.cancel",  # dbt cancels a query after an interrupt (`:raise`: the adapter's cancel fails)
    "worker.stopping",  # a worker got the run's stop (SIGKILL: it dies without a word)
)


class FailpointError(RuntimeError):
    """Raised by a failpoint set to `<name>:raise` (tests only)."""


def failpoint(name: str) -> None:
    """SIGKILL this process if MESH_FAILPOINT names this point; pause it with `<name>:pause`,
    raise FailpointError with `<name>:raise`."""
    wanted = os.environ.get(ENV)
    if wanted is None:
        return
    if wanted == name:
        os.kill(os.getpid(), signal.SIGKILL)
    elif wanted == f"{name}:raise":
        raise FailpointError(f"failpoint {name}")
    elif wanted == f"{name}:pause":
        marker = os.environ.get(MARKER_ENV)
        if marker:
            Path(marker).write_text(f"{name} {os.getpid()}\n")
        while not _STOP.wait(0.05):  # a signal handler that returns sets _STOP (stop_pauses);
            pass  # one that raises (KeyboardInterrupt) ends the wait by itself


def stop_pauses() -> None:
    """End every pause of this process (called by the signal handler of a mesh run)."""
    _STOP.set()
