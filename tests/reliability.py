"""Short and long variants of the reliability tests, and the counters `invoke reliability` prints.

`make test` runs the short variants. `invoke reliability` (`make reliability`) sets
MESH_RELIABILITY=long (more publishers, rounds, faults and cases) and MESH_RELIABILITY_REPORT to a
JSON-lines file; each test appends what it tried and what it found (`report`), and the task prints
the sum (`summary_lines`), ending with `lost: N, corrupted: N`.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

LONG = os.environ.get("MESH_RELIABILITY", "").strip().lower() == "long"
LONG_SUITES = (
    "tests/unit/test_concurrency_long.py",
    "tests/unit/test_crash.py",
    "tests/unit/test_reliability_faults.py",
    "tests/unit/test_corpus.py",
)
COLUMNS = (
    ("cases", "cases tried"),
    ("faults", "faults injected"),
    ("publishes", "publishes raced"),
    ("lost", "lost"),
    ("corrupted", "corrupted"),
)


def scale(short: int, long: int) -> int:
    """`long` under `invoke reliability`, `short` otherwise."""
    return long if LONG else short


def report(suite: str, **counters: int) -> None:
    """Append one test's counters to MESH_RELIABILITY_REPORT (no-op when it is not set).

    Call it before asserting, so a failing run still shows what it lost or corrupted.
    """
    path = os.environ.get("MESH_RELIABILITY_REPORT")
    if not path:
        return
    unknown = set(counters) - {name for name, _ in COLUMNS}
    if unknown:
        raise ValueError(f"unknown counters {sorted(unknown)}")
    line = json.dumps({"suite": suite, **counters}) + "\n"
    # One short write with O_APPEND: lines of concurrent writers never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def summary_lines(path: Path) -> tuple[list[str], bool]:
    """The summary table of a report file, and whether it is clean (something ran, nothing lost
    or corrupted)."""
    rows: dict[str, Counter[str]] = {}
    if path.exists():
        for raw in path.read_text().splitlines():
            if raw.strip():
                item = json.loads(raw)
                suite = str(item.pop("suite"))
                rows.setdefault(suite, Counter()).update({k: int(v) for k, v in item.items()})
    total: Counter[str] = Counter()
    for counts in rows.values():
        total.update(counts)
    width = max([len("suite"), len("total"), *(len(s) for s in rows)])
    header = f"{'suite':<{width}}  " + "  ".join(f"{title:>15}" for _, title in COLUMNS)
    lines = ["reliability summary", header, "-" * len(header)]
    for suite in sorted(rows):
        lines.append(
            f"{suite:<{width}}  " + "  ".join(f"{rows[suite][name]:>15}" for name, _ in COLUMNS)
        )
    lines.append("-" * len(header))
    lines.append(f"{'total':<{width}}  " + "  ".join(f"{total[name]:>15}" for name, _ in COLUMNS))
    lines.append(f"lost: {total['lost']}, corrupted: {total['corrupted']}")
    clean = bool(rows) and total["lost"] == 0 and total["corrupted"] == 0
    return lines, clean
