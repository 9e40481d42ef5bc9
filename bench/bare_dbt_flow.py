"""dbt alone, run the way `invoke mesh` runs it: the floor `invoke bench` measures the mesh against.

What any orchestration of the template's projects on dbt-core pays at least, with none of the
mesh's work: one interpreter imports dbt once; each project builds in a fresh process forked from a
server that preloaded dbt (multiprocessing's forkserver, as mesh/run/scheduler.py does); the two
consumers build at the same time once the producer is done. Between them, the least a hand-off can
be: the producer's full manifest copied to the registry folder, the consumers' inputs written as the
proof of concept writes them (`bench/poc_flow.py`: a sources file joined from strings, dbt-loom on
the full manifest). No gate, no write-audit-publish, no interface, no lineage validation, no
fingerprint, no lineage page.

So `invoke mesh` / this flow is what the mesh's guarantees cost on top of dbt, and this flow / the
proof of concept's is the most any orchestration in this process model can save on these projects.

Usage: `python bench/bare_dbt_flow.py run --root <copy of the template mesh> [--out F]`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import poc_flow  # the proof of concept's publish and sync: the least a hand-off does

ADAPTER = "dbt.adapters.duckdb"


def build(project_dir: str, profiles_dir: str) -> None:
    """One project's `dbt build`, in-process, in the project folder (dbt-loom reads relative paths)."""
    from dbt.cli.main import dbtRunner

    os.chdir(project_dir)
    args = ["build", "--quiet", "--profiles-dir", profiles_dir, "--target", "local"]
    if Path(project_dir).name == "dbt_down_loom":
        # dbt refuses a unit test whose input is another package's model ("protected to the
        # 'dbt_up' package") when dbt-loom reads the producer's manifest as is; the mesh gives
        # dbt-loom an input named for no package. dbt alone builds everything else.
        args += ["--exclude-resource-type", "unit_test"]
    result = dbtRunner().invoke(args)
    sys.exit(0 if result.success else 1)


def run(root: Path) -> float:
    """The flow on a copy of the template mesh; returns its wall time in seconds."""
    root = root.resolve()
    started = time.perf_counter()
    env = poc_flow.prepare(root)  # the workers inherit this process's environment
    os.environ.clear()
    os.environ.update(env)
    registry = root / "registry"
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["dbt.cli.main", ADAPTER])
    profiles = str(root / "profiles")

    def start(project: str) -> multiprocessing.process.BaseProcess:
        process = ctx.Process(target=build, args=(str(root / project), profiles), name=project)
        process.start()
        return process

    def wait(processes: list[multiprocessing.process.BaseProcess]) -> None:
        for process in processes:
            process.join()
        failed = [p.name for p in processes if p.exitcode != 0]
        if failed:
            raise SystemExit(f"dbt build failed: {', '.join(failed)}")

    wait([start(poc_flow.UPSTREAM)])
    poc_flow.publish(root / poc_flow.UPSTREAM, registry)
    poc_flow.sync(root / "dbt_down", registry)
    wait([start(consumer) for consumer in poc_flow.CONSUMERS])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["run"])
    parser.add_argument("--root", required=True, help="the template mesh copy")
    parser.add_argument("--out", help="write {op_seconds, op_cpu_seconds, peak_rss_mb} as JSON here")
    args = parser.parse_args()
    seconds = run(Path(args.root))
    # This process's own, as for `invoke mesh`: the projects run in the forkserver's children.
    usage = resource.getrusage(resource.RUSAGE_SELF)
    figures = {
        "op_seconds": seconds,
        "op_cpu_seconds": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024.0,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(figures))
    print(f"dbt alone: {seconds:.1f}s")


if __name__ == "__main__":
    main()
