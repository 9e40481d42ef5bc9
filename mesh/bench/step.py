"""One measured benchmark step in a fresh interpreter: `python -m mesh.bench.step STEP --out F`.

The step times its own operation after its imports (`op_seconds` wall clock, `op_cpu_seconds` CPU)
and reports the process's peak resident memory (`peak_rss_mb`, `VmHWM`), so each figure is that
step's own; the runner adds the wall time of the whole process. Steps:

- `floor --manifest M [--gc]`: read the full manifest and parse it with orjson, the least any tool
  pays: with Python's cyclic garbage collector paused (as the mesh does), or with `--gc` as it runs
  by default (then most of the time is the collector walking the objects the parse allocates);
- `publish --root R --project P [--variant]`: `publish_project` (write-audit-publish); `--variant`
  publishes an interface whose content differs a little (an earlier build, to publish over);
- `sync --root R --project P`: `plan_sync` + `apply_plan`;
- `parse --root R --project P [--sync]`: `dbt parse --no-partial-parse` in-process (`run_dbt`),
  after a sync with `--sync`;
- `validate --root R --project P`: `validate_manifest` on the consumer's `target/manifest.json`;
- `mesh --root R [--jobs J]`: `run_mesh` (what `invoke mesh` runs), its progress lines to the log;
  the detail has each project's outcome (status, seconds, wall-clock start and finish) and whether
  dbt was imported in this process at all;
- `build --root R --project P`: `build_project` (what `invoke build --project P` runs).
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from mesh.consumer.validate import validate_manifest
from mesh.interface import publish as publish_module
from mesh.interface.publish import publish_project
from mesh.project.config import load_mesh
from mesh.project.profiles import BASE_ENV
from mesh.run.pipeline import build_project, run_mesh, sync_project
from mesh.ui.lineage import draw_lineage
from mesh.warehouse.runner import run_dbt


def peak_rss_mb() -> float:
    """This process's peak resident memory, MB.

    `VmHWM` is the high-water mark of this process's own address space; `ru_maxrss` is not used
    first because Linux carries it over `execve` from the parent that forked the process.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _work(args: argparse.Namespace) -> Callable[[], dict[str, Any]]:
    """The step's operation, set up (imports, config) but not started."""
    if args.step == "floor":
        path = Path(args.manifest)
        if not args.gc:
            gc.disable()
        return lambda: {"nodes": len(orjson.loads(path.read_bytes())["nodes"])}


    mesh = load_mesh(Path(args.root), "local")
    if args.step == "publish":

        if args.variant:  # an earlier build: one public model's description differs

            extract = publish_module.extract_interface

            def earlier(
                manifest: dict[str, Any], ids: list[str] | None = None, catalog: Any = None
            ) -> Any:
                nodes, groups = extract(manifest, ids, catalog=catalog)
                first = next(iter(nodes.values()))
                first["description"] += " (an earlier build)"
                return nodes, groups

            publish_module.extract_interface = earlier

        def publish() -> dict[str, Any]:
            result = publish_project(mesh, args.project)
            return {"status": result.status, "public_models": result.public_models}

        return publish
    if args.step == "sync":

        return lambda: {"changes": len(sync_project(mesh, args.project).changes)}
    if args.step == "parse":

        def parse() -> dict[str, Any]:
            # Timed as a user's `dbt parse` pays it after interpreter start: importing dbt (what
            # run_dbt does first; reported apart), the mesh's sync if any, then the invocation.
            started = time.perf_counter()
            import dbt.cli.main  # noqa: F401

            detail: dict[str, Any] = {"dbt_import_seconds": time.perf_counter() - started}
            if args.sync:
                started = time.perf_counter()
                sync_project(mesh, args.project)
                detail["sync_seconds"] = time.perf_counter() - started
            # A project that reads its upstream with dbt-loom alone (the baseline: no mesh, its
            # own dbt_loom.config.yml) gets that config; the mesh gives it only to its consumers.
            own = mesh.project(args.project).dir / "dbt_loom.config.yml"
            env = {"DBT_LOOM_CONFIG": str(own)} if own.is_file() and not args.sync else None
            run_dbt(mesh, args.project, ["parse", "--no-partial-parse"], env=env)
            return detail

        return parse
    if args.step == "validate":

        manifest = mesh.project(args.project).target_dir / "manifest.json"

        def validate() -> dict[str, Any]:
            report = validate_manifest(mesh, manifest, args.project)
            if not report.ok:
                raise SystemExit(f"validate found errors: {report.text()}")
            return {"edges": len(report.edges)}

        return validate
    if args.step == "mesh":

        def run() -> dict[str, Any]:
            result = run_mesh(mesh, say=print, jobs=args.jobs, draw=draw_lineage)
            return {
                "builds": len(result.builds),
                "outcomes": {
                    o.project: {
                        "status": o.status,
                        "seconds": o.seconds,
                        "started_at": o.started_at,
                        "finished_at": o.finished_at,
                        "steps": o.timings,
                    }
                    for o in result.outcomes
                },
                "dbt_imported": dbt_imported(),
            }

        return run
    if args.step == "build":

        def build() -> dict[str, Any]:
            started = time.time()
            run = build_project(mesh, args.project, say=print)  # raises unless it built
            outcome = {"status": "built", "seconds": time.time() - started,
                       "started_at": started, "finished_at": time.time()}
            return {
                "counts": run.counts(),
                "outcomes": {args.project: outcome},
                "dbt_imported": dbt_imported(),
            }

        return build
    raise SystemExit(f"unknown step {args.step}")  # pragma: no cover - argparse checks


def dbt_imported() -> bool:
    """Whether this process imported dbt (a run that skips every project never does)."""
    return any(name == "dbt" or name.startswith("dbt.") for name in sys.modules)


def run_step(args: argparse.Namespace) -> dict[str, Any]:
    """Run one step; return its figures: wall and CPU seconds of the operation, and detail."""
    work = _work(args)
    wall, cpu = time.perf_counter(), time.process_time()
    detail = work()
    return {
        "op_seconds": time.perf_counter() - wall,
        "op_cpu_seconds": time.process_time() - cpu,
        "detail": detail,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mesh.bench.step")
    parser.add_argument("step", choices=["floor", "publish", "sync", "parse", "validate", "mesh", "build"])
    parser.add_argument("--out", required=True, help="write the figures (JSON) here")
    parser.add_argument("--root", help="folder of the bench mesh.yml")
    parser.add_argument("--project", help="project of the mesh the step works on")
    parser.add_argument("--manifest", help="floor: the manifest to read")
    parser.add_argument("--sync", action="store_true", help="parse: sync first")
    parser.add_argument("--gc", action="store_true", help="floor: keep the garbage collector on")
    parser.add_argument("--variant", action="store_true", help="publish: an earlier build")
    parser.add_argument("--jobs", type=int, help="mesh: projects built at once")
    args = parser.parse_args(argv)
    os.environ.update(BASE_ENV)
    figures = run_step(args)
    figures["peak_rss_mb"] = peak_rss_mb()
    Path(args.out).write_bytes(orjson.dumps(figures))


if __name__ == "__main__":
    main()
