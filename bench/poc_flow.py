"""The original proof of concept's flow, reimplemented as the baseline `invoke bench` compares with.

DESIGN.md, "Its flow":

    cd dbt_up && dbt build && publish_manifest.py --local
    cd dbt_down_loom && dbt build                      (dbt-loom reads the full published manifest)
    cd dbt_down && sync_mesh.py --local && dbt build --defer --state state/dbt_up
    validate_lineage.py --all

Each `dbt build` is its own CLI process and each script its own Python process, as in the proof of
concept. `publish` copies the full `target/manifest.json` to `latest/` then `history/<timestamp>/`;
`sync` copies it to `state/dbt_up/` and writes `models/_mesh_dbt_up.yml` by joining strings,
dropping data types; `validate` passes when any `model.dbt_up.*` or `source.*.dbt_up.*` id is a
parent.

Two changes from the proof of concept, so that it builds today's template at all (neither makes it
slower): sources are grouped by each model's own schema (the proof of concept used the first public
model's schema for every table, which breaks `public_daily_revenue` in `finance`), and a versioned
model gets a table per version (`public_customers_v1`) plus its plain name for the latest one, and
an aliased model's table reads its alias.

Usage: `python bench/poc_flow.py run --root <copy of the template mesh>`; the other subcommands are
the proof of concept's scripts, which `run` calls as separate processes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

UPSTREAM = "dbt_up"
CONSUMERS = ("dbt_down_loom", "dbt_down")


def _registry_latest(registry: Path) -> Path:
    return registry / UPSTREAM / "local" / "latest" / "manifest.json"


def publish(project_dir: Path, registry: Path) -> None:
    """publish_manifest.py --local: the full manifest to latest/, then to history/<second>/."""
    manifest = project_dir / "target" / "manifest.json"
    doc = json.loads(manifest.read_text())
    if not any(n.get("access") == "public" for n in doc["nodes"].values()):
        print("warning: no public model in the manifest")
    latest = _registry_latest(registry)
    latest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(manifest, latest)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    history = registry / UPSTREAM / "local" / "history" / stamp / "manifest.json"
    history.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(manifest, history)


def sync(project_dir: Path, registry: Path) -> None:
    """sync_mesh.py --local: download the manifest to state/, write the sources YAML by hand."""
    state = project_dir / "state" / UPSTREAM / "manifest.json"
    state.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_registry_latest(registry), state)
    doc = json.loads(state.read_text())
    by_schema: dict[tuple[str, str], list[str]] = {}
    for node in doc["nodes"].values():
        if node.get("resource_type") != "model" or node.get("access") != "public":
            continue
        names = [node["name"]]
        if node.get("version") is not None:
            names = [f"{node['name']}_v{node['version']}"]
            if str(node["version"]) == str(node.get("latest_version")):
                names.append(node["name"])
        for name in names:
            by_schema.setdefault((node["database"], node["schema"]), []).append(
                f"      - name: {name}\n        identifier: {node['alias']}\n"
                f"        description: \"{node.get('description', '').strip()}\"\n"
            )
    text = "version: 2\n\nsources:\n"
    for (database, schema), tables in sorted(by_schema.items()):
        text += f"  - name: {UPSTREAM}\n    database: {database}\n    schema: {schema}\n"
        text += "    tables:\n"
        text += "".join(tables)
    (project_dir / "models" / f"_mesh_{UPSTREAM}.yml").write_text(text)


def validate(root: Path) -> int:
    """validate_lineage.py --all: any upstream id among the parents passes."""
    failed = 0
    for consumer in CONSUMERS:
        doc = json.loads((root / consumer / "target" / "manifest.json").read_text())
        parents = {p for ps in doc["parent_map"].values() for p in ps}
        ok = any(
            p.startswith(f"model.{UPSTREAM}.") or (p.startswith("source.") and f".{UPSTREAM}." in p)
            for p in parents
        )
        print(f"{consumer}: lineage {'OK' if ok else 'MISSING'}")
        failed += not ok
    return 1 if failed else 0


def prepare(root: Path) -> dict[str, str]:
    """The environment the flow's dbt runs see, its warehouse folder, and dbt_down_loom's
    dbt-loom config (committed in the proof of concept: dbt-loom reads the full published manifest)."""
    env = {
        **os.environ,
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DO_NOT_TRACK": "1",
        "MESH_WAREHOUSE_DIR": str(root / "warehouse"),
    }
    env.pop("DBT_LOOM_CONFIG", None)
    (root / "warehouse").mkdir(exist_ok=True)
    (root / "dbt_down_loom" / "dbt_loom.config.yml").write_text(
        f"manifests:\n  - name: {UPSTREAM}\n    type: file\n    config:\n"
        f"      path: {_registry_latest(root / 'registry')}\n"
    )
    return env


def run(root: Path) -> float:
    """The whole flow on a copy of the template mesh; returns its wall time in seconds."""
    root = root.resolve()
    bin_dir = Path(sys.executable).parent
    env = prepare(root)
    registry = root / "registry"
    dbt_args = ["--profiles-dir", str(root / "profiles"), "--target", "local"]
    script = [sys.executable, str(Path(__file__).resolve())]

    def call(args: list[str], cwd: Path) -> None:
        subprocess.run(args, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)

    started = time.perf_counter()
    call([str(bin_dir / "dbt"), "build", *dbt_args], root / UPSTREAM)
    call([*script, "publish", "--local", "--registry-path", str(registry)], root / UPSTREAM)
    call([str(bin_dir / "dbt"), "build", *dbt_args], root / "dbt_down_loom")
    call([*script, "sync", "--local", "--registry-path", str(registry)], root / "dbt_down")
    call(
        [str(bin_dir / "dbt"), "build", "--defer", "--state", f"state/{UPSTREAM}", *dbt_args],
        root / "dbt_down",
    )
    call([*script, "validate", "--all", "--root", str(root)], root)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["run", "publish", "sync", "validate"])
    parser.add_argument("--root", default=".", help="the template mesh copy (run, validate)")
    parser.add_argument("--local", action="store_true", help="the proof of concept's local mode")
    parser.add_argument("--all", action="store_true", help="validate every consumer")
    parser.add_argument("--registry-path", default="registry", help="local registry folder")
    parser.add_argument("--out", help="run: write {op_seconds, peak_rss_mb} as JSON here")
    args = parser.parse_args()
    if args.command == "publish":
        publish(Path.cwd(), Path(args.registry_path))
    elif args.command == "sync":
        sync(Path.cwd(), Path(args.registry_path))
    elif args.command == "validate":
        sys.exit(validate(Path(args.root)))
    else:
        seconds = run(Path(args.root))
        peak = max(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
        )
        cpu = sum(
            getattr(resource.getrusage(who), field)
            for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
            for field in ("ru_utime", "ru_stime")
        )
        figures = {"op_seconds": seconds, "op_cpu_seconds": cpu, "peak_rss_mb": peak / 1024.0}
        if args.out:
            Path(args.out).write_text(json.dumps(figures))
        print(f"proof-of-concept flow: {seconds:.1f}s")


if __name__ == "__main__":
    main()
