"""The interface a project's working tree would publish, known before any build: what the gate
compares with `latest`.

`dbt compile` of the project's public nodes and their ancestors gives the parsed nodes and their
compiled SQL. Each public node's columns then come from:
- its enforced contract (the YAML's columns and types: what dbt will enforce);
- otherwise its code (mesh/interface/code_columns.py: names, and types where the SQL states them);
- and where the code cannot tell, from nowhere: the node is reported as not judged, with why, and
  compared as if its columns had not changed. Under write-audit-publish the audit step judges it
  after the build from the warehouse, before anything is swapped in; without it (`wap: false`)
  nothing protects its consumers, and the run says so.

The compile never opens a file that readers use: in a run it reads the audit copy (a copy of the
live file, made before any dbt call of the run), in `invoke check` a scratch folder whose database
is empty; and the DuckDB instance it opened is closed before anything else touches the warehouse.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from mesh.core.errors import BuildFailedError, CannotJudgeError
from mesh.interface.code_columns import CodeColumns, published_spelling
from mesh.interface.sql_columns import dialect_of
from mesh.project.artifacts import (
    Json,
    extract_interface,
    interface_node,
    load_manifest,
    uncontracted_ids,
)
from mesh.project.config import Mesh
from mesh.registry.document import parse_json
from mesh.warehouse.packages import ensure_packages
from mesh.warehouse.readers import open_reader, release_dbt_connections
from mesh.warehouse.runner import run_dbt
from mesh.warehouse.wap import BUILD_DIR_VAR

# dbt's selector for what the gate needs compiled: public models (and public seeds/snapshots,
# which carry `access` as a config key) with every ancestor.
GATE_SELECT = ["+access:public", "+config.access:public", "+resource_type:snapshot"]
CHECK_DIR = "check"
SCRATCH_DIR = ".check"


@dataclass
class TreeInterface:
    """The working tree's interface nodes, and what each public node's columns were judged from."""

    nodes: Json
    groups: Json
    basis: dict[str, str] = field(default_factory=dict)  # uid -> contract | code | warehouse | ...
    unjudged: dict[str, str] = field(default_factory=dict)  # uid -> why its code could not be read

    def counts(self) -> str:
        """`columns from contract (3), code (1), not judged (1)`."""
        order = ("contract", "code", "warehouse", "declared", "not judged")
        found = {kind: sum(1 for b in self.basis.values() if b == kind) for kind in order}
        parts = [f"{kind} ({n})" for kind, n in found.items() if n]
        return "columns from " + ", ".join(parts) if parts else "no public node"


def compile_tree(mesh: Mesh, name: str, build_dir: Path | None = None) -> Path:
    """`dbt compile` of `name`'s public nodes and their ancestors into `target/check/`; returns its
    manifest's path. `build_dir`: where the project's own database lives for this compile (a run's
    audit copy); by default a scratch folder with an empty database, removed afterwards."""

    project = mesh.project(name)
    try:
        ensure_packages(mesh, name)  # a fresh checkout has no dbt_packages/ yet
    except BuildFailedError as exc:
        raise CannotJudgeError(f"could not judge {name}: {exc}") from exc
    target = project.target_dir / CHECK_DIR
    scratch = None
    if build_dir is None:
        scratch = mesh.warehouse_dir / SCRATCH_DIR / name
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        build_dir = scratch
    args = ["compile", "--select", *GATE_SELECT, "--no-populate-cache", "--target-path", str(target)]
    try:
        run_dbt(mesh, name, args, env={BUILD_DIR_VAR: str(build_dir)})
    except BuildFailedError as exc:
        raise CannotJudgeError(f"could not judge {name}: {exc}") from exc
    finally:
        release_dbt_connections()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return target / "manifest.json"


def _state_manifest(mesh: Mesh, name: str) -> Json | None:
    """The project's last published build (its private `state`), for unchanged compiled code."""
    body = mesh.registry.read_private(name, mesh.env, "state")
    return None if body is None else parse_json(body, f"{name}/{mesh.env} state")


def _warehouse_columns(mesh: Mesh, name: str, manifest: Json, build_dir: Path | None) -> dict[str, list[tuple[str, str]]]:

    relations = []
    for item in [*(manifest.get("nodes") or {}).values(), *(manifest.get("sources") or {}).values()]:
        if item.get("resource_type") not in ("model", "seed", "snapshot", "source"):
            continue
        identifier = item.get("identifier") if item.get("resource_type") == "source" else item.get("alias")
        parts = (item.get("database"), item.get("schema"), identifier or item.get("name"))
        if all(isinstance(p, str) and p for p in parts):
            relations.append((str(parts[0]), str(parts[1]), str(parts[2])))
    with open_reader(mesh, name, None if build_dir is None else str(build_dir)) as reader:
        return {} if reader is None else reader.columns(relations)


def tree_interface(
    mesh: Mesh,
    name: str,
    manifest: Json,
    ids: list[str],
    published: Json,
    build_dir: Path | None = None,
) -> TreeInterface:
    """The interface nodes of a compiled working tree (`published`: latest's nodes, whose type
    spellings the judged columns keep where they name the same type)."""
    nodes, groups = extract_interface(manifest, ids)
    tree = TreeInterface(nodes, groups)
    open_ids = set(uncontracted_ids(manifest, ids))
    for uid in ids:
        if uid not in open_ids:
            tree.basis[uid] = "contract"
    if not open_ids:
        return tree
    dialect = dialect_of((manifest.get("metadata") or {}).get("adapter_type"))
    judge = CodeColumns(
        manifest,
        _warehouse_columns(mesh, name, manifest, build_dir),
        previous=lambda: _state_manifest(mesh, name),
    )
    id_set = set(ids)
    for uid in sorted(open_ids):
        judged = judge.judge(uid)
        before = (published.get(uid) or {}).get("columns") or {}
        if judged.columns is None:
            tree.unjudged[uid] = judged.why
            tree.basis[uid] = "not judged"
            if before:
                nodes[uid]["columns"] = before  # compared as unchanged; the audit step judges it
            continue
        old_types = {str(n).lower(): (c or {}).get("data_type") for n, c in before.items()}
        # Unquoted names are case-insensitive (DuckDB keeps the case a column was first written
        # in, Snowflake upper-cases): a column the code spells `borough` is the published `Borough`.
        spelled = {str(n).lower(): str(n) for n in before}
        table = {
            "columns": {
                spelled.get(col.name.lower(), col.name): {
                    "name": spelled.get(col.name.lower(), col.name),
                    "type": published_spelling(col.data_type, old_types.get(col.name.lower()), dialect),
                    "index": index,
                }
                for index, col in enumerate(judged.columns, 1)
            }
        }
        nodes[uid] = interface_node(manifest["nodes"][uid], id_set, table)
        tree.basis[uid] = "code" if judged.source in ("code", "contract") else judged.source
    return tree


def load_compiled(path: Path, name: str) -> Json:
    return load_manifest(path, project=name)
