"""What the registry schema (mesh.registry.schema) adds to reading a large interface.

Builds an interface of N public models (20 typed, described columns each, one in ten versioned,
meta and tags), as a publish writes it, then times, best of R runs:

- `parse + hash`: what a read cost before the schema (orjson, content hash);
- `load_interface`: a whole read now (parse, schema, hash);
- `read_interface(lazy)`: sync's read (one node at a time, schema, hash);
- `schema only`: `check_interface` on the parsed document.

Usage: `python bench/schema_cost.py [--models 10000] [--runs 3]`; prints one line per measure.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import orjson

from mesh.manifest import (
    build_interface,
    content_sha256,
    dump_interface,
    extract_interface,
    load_interface,
    paused_gc,
    read_interface,
)
from mesh.names import new_version
from mesh.registry.schema import check_interface
from tests import factories

TYPES = ("integer", "bigint", "varchar", "date", "timestamp with time zone", "decimal(18, 2)", "double", "varchar(256)")


def large_interface(models: int, project: str = "bench_up") -> bytes:
    """The registry form of an interface of `models` public models."""
    nodes = []
    for index in range(models):
        columns = {f"column_{c}": TYPES[(index + c) % len(TYPES)] for c in range(20)}
        versioned = index % 10 == 0
        for version in (1, 2) if versioned else (None,):
            node = factories.model(
                project, f"model_{index}", version=version, latest_version=2 if versioned else None,
                columns=columns, description=f"Model {index}: " + "words " * 40,
                meta={"owner": "team", "tier": index % 3}, tags=["public", f"domain_{index % 16}"],
            )
            for column in node["columns"].values():
                column["description"] = "A described column. " * 3
            nodes.append(node)
    manifest = factories.manifest(project, nodes)
    interface_nodes, groups = extract_interface(manifest)
    sha = content_sha256(interface_nodes, groups)
    meta = {"format": 1, "version": new_version(sha), "content_sha256": sha, "env": "prod"}
    return dump_interface(build_interface(manifest, interface_nodes, groups, meta))


def best(runs: int, action: Callable[[], Any]) -> float:
    """The least CPU time of `runs` runs (CPU, not wall time: the figure holds on a busy machine),
    with the cyclic collector paused as the readers pause it."""
    times = []
    for _ in range(runs):
        with paused_gc():
            started = time.process_time()
            action()
            times.append(time.process_time() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    body = large_interface(args.models)
    doc = orjson.loads(body)
    project = doc["metadata"]["project_name"]
    print(f"interface: {len(doc['nodes'])} nodes, {len(body) / 1e6:.1f} MB")

    def before() -> None:
        parsed = orjson.loads(body)
        content_sha256(parsed["nodes"], parsed["groups"])

    measures = {
        "parse + hash (no schema)": before,
        "load_interface": lambda: load_interface(body, "bench", project),
        "read_interface(lazy)": lambda: read_interface(body, "bench", project, lazy=True),
        "schema only": lambda: check_interface(doc, project),
    }
    for name, action in measures.items():
        print(f"{name:26} {best(args.runs, action):7.3f} s CPU")


if __name__ == "__main__":
    main()
