"""Named crash points, for tests only.

`failpoint(name)` kills its own process with SIGKILL when the environment variable MESH_FAILPOINT
equals `name`, and does nothing otherwise (one dictionary lookup). The publish path calls it between
the steps whose interruption the registry must survive (tests/unit/test_crash.py runs a publish per
name and checks `latest`, `list_versions`, fsck and a rerun afterwards). SIGKILL, not an exception:
no `finally`, no `atexit`, no flush, exactly like a killed CI runner or an out-of-memory kill.

Never set MESH_FAILPOINT outside tests.
"""

from __future__ import annotations

import os
import signal

ENV = "MESH_FAILPOINT"

# Every failpoint the library defines, in the order a publish reaches them.
NAMES = (
    "publish.audited",  # audit passed, nothing written yet
    "registry.history.partial",  # folder: temporary entry holds its checksum, not its body
    "registry.history.uncommitted",  # folder: temporary entry complete, not renamed into history
    "registry.history.committed",  # history entry committed, `latest` not touched
    "registry.latest.prepared",  # folder: new link made beside `latest`; S3: before the PUT
    "registry.latest.swapped",  # `latest` moved, the publisher never hears of it
)


def failpoint(name: str) -> None:
    """SIGKILL this process if MESH_FAILPOINT names this point (test-only)."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
