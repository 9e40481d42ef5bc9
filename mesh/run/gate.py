"""The contract gate around a producer's build: before it (`check_project`, also the pull-request
check `invoke check`), and before each publish (`publish_gate`). What a change is and who it hits
is mesh/interface/contracts.py's; this module gets the two interfaces to compare (the working
tree's, compiled and judged from its code, or the build's) and carries an allowed break from a
build to its publish."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mesh.core.errors import ConfigError, ManifestError
from mesh.interface.code_interface import compile_tree, tree_interface
from mesh.interface.contracts import Say, _adapter, diff_interfaces
from mesh.interface.impact import (
    GateResult,
    deprecation_notes,
    evaluate_usage,
    foreign_meta_notes,
    gate_usage,
)
from mesh.interface.proposals import change_key, negotiate
from mesh.interface.publish import refuse_uncontracted
from mesh.project.artifacts import Json, load_manifest, public_node_ids
from mesh.project.config import Mesh
from mesh.registry import read_baseline
from mesh.registry.document import load_interface
from mesh.run.pipeline import sync_project


def check_project(
    mesh: Mesh,
    name: str,
    allow_breaking: bool = False,
    reason: str | None = None,
    parse: bool = True,
    manifest_path: Path | None = None,
    build_dir: Path | None = None,
    protected: bool = True,
) -> GateResult:
    """The PR gate: would the working tree of `name` break a consumer of its published contract?

    Compiles the project's public nodes and their ancestors (`dbt compile` into `target/check/`, so
    the last build's artifacts stay for publish), builds the interface the tree would publish
    (columns from contracts, else from the code: mesh/interface/code_interface.py) and compares it with
    `latest`. Does not raise on a breaking change: callers print `lines()` and raise `error()` when
    `blocked`. `manifest_path`: a compile the caller made already (with `parse=False`);
    `build_dir`: the run's audit location, whose copy of the warehouse the compile read.
    `protected`: an audit step judges, after the build, what the code cannot tell (write-audit-
    publish); without it the report says that nothing protects those consumers. Refuses (exit 1),
    as publish would, a public node without an enforced contract where mesh.yml requires contracts.
    """

    if allow_breaking and not (reason or "").strip():
        raise ConfigError('--allow-breaking needs --reason "why this break is acceptable" (it is recorded)')
    entry, damaged = read_baseline(mesh.registry, name, mesh.env)
    if parse:
        if mesh.project(name).upstreams:

            sync_project(mesh, name)  # a change invalidates dbt's partial parsing
        manifest_path = compile_tree(mesh, name, build_dir)
    assert manifest_path is not None
    manifest = load_manifest(manifest_path, project=name)

    ids = public_node_ids(manifest)
    refuse_uncontracted(mesh, name, manifest, ids)
    if entry is None:
        return GateResult(name, mesh.env, None)
    latest = load_interface(entry.body, f"{name}/{mesh.env} latest", name)
    tree = tree_interface(mesh, name, manifest, ids, latest["nodes"], build_dir)
    changes = diff_interfaces(
        latest["nodes"], tree.nodes, adapter_type=_adapter(latest) or _adapter(manifest), manifest=manifest
    )
    usage = gate_usage(mesh, name, latest["nodes"])
    result = evaluate_usage(name, mesh.env, entry.version, changes, usage, allow_breaking, reason)
    settle(mesh, result)
    result.remarks = deprecation_notes(tree.nodes, usage.uses) + foreign_meta_notes(tree.nodes)
    against = f"latest {entry.version}" if damaged is None else f"{entry.version} (latest {damaged} is damaged)"
    result.compared = f"working tree vs {against}; {tree.counts()}"
    result.unjudged = dict(tree.unjudged)
    result.protected = protected
    return result


def settle(mesh: Mesh, result: GateResult) -> None:
    """Each consumer the breaking changes hit, against the producer's open proposals."""
    if not result.hits:
        return
    by_consumer: dict[str, set[str]] = {}
    for hit in result.hits:
        by_consumer.setdefault(hit.use.consumer, set()).add(
            change_key(hit.change.kind, hit.change.unique_id, hit.change.column)
        )
    result.negotiation = negotiate(mesh, result.project, by_consumer)


ALLOWED_FILE = "mesh_allowed.json"
# What the gate records in `metadata.mesh` (GateResult.meta); the run adds audits and data versions.
GATE_META_KEYS = ("reason", "breaking_changes", "changes", "usage_unknown", "proposals")


def remember_allowed_build(mesh: Mesh, name: str, reason: str) -> None:
    """A build allowed to break (`--allow-breaking --reason`) swapped its data in: its publish must
    carry the same decision, or the live relations would differ from the published interface."""
    target = mesh.project(name).target_dir
    manifest = load_manifest(target / "manifest.json", project=name)
    doc = {"invocation_id": manifest["metadata"].get("invocation_id"), "reason": reason}
    import orjson

    (target / ALLOWED_FILE).write_bytes(orjson.dumps(doc))


def allowed_build_reason(mesh: Mesh, name: str) -> str | None:
    """The reason a build of the current artifacts was allowed to break, if it was."""
    import orjson

    target = mesh.project(name).target_dir
    try:
        doc = orjson.loads((target / ALLOWED_FILE).read_bytes())
        manifest = load_manifest(target / "manifest.json", project=name)
    except (OSError, orjson.JSONDecodeError, ManifestError):
        return None
    if not isinstance(doc, dict) or doc.get("invocation_id") != manifest["metadata"].get("invocation_id"):
        return None
    reason = doc.get("reason")
    return str(reason) if isinstance(reason, str) and reason.strip() else None


def publish_gate(
    mesh: Mesh,
    name: str,
    allow_breaking: bool = False,
    reason: str | None = None,
    say: Say = print,
    record: Json | None = None,
) -> Callable[[Json | None, Json], None]:
    """A `publish_project` check: refuse a breaking change that hits a registered consumer.

    It runs before the first write and again after each lost compare-and-swap race. `record`, when
    given (pass the same dict as `extra_meta`), receives what the gate decided, so the reason and
    the breaking changes land in the history entry's `metadata.mesh`.
    """
    if allow_breaking and not (reason or "").strip():
        raise ConfigError('--allow-breaking needs --reason "why this break is acceptable" (it is recorded)')
    manifest_path = mesh.project(name).target_dir / "manifest.json"
    if not allow_breaking:
        carried = allowed_build_reason(mesh, name)
        if carried is not None:  # the build of these very artifacts was allowed to break: so is its publish
            allow_breaking, reason = True, f"{carried} (allowed when it was built)"

    def check(latest: Json | None, nodes: Json) -> None:
        if latest is None:
            return
        manifest = load_manifest(manifest_path, project=name)
        changes = diff_interfaces(
            latest["nodes"], nodes, adapter_type=_adapter(latest) or _adapter(manifest), manifest=manifest
        )
        version = str(latest["metadata"]["mesh"].get("version"))
        usage = gate_usage(mesh, name, latest["nodes"])
        result = evaluate_usage(name, mesh.env, version, changes, usage, allow_breaking, reason)
        settle(mesh, result)
        result.remarks = deprecation_notes(nodes, usage.uses) + foreign_meta_notes(nodes)
        result.compared = f"built interface vs latest {version}; columns from contracts and the warehouse"
        if result.breaking:
            for line in result.lines():
                say(line)
        if result.blocked:
            raise result.error()
        if record is not None:  # the gate's own keys, decided again on each attempt
            for key in GATE_META_KEYS:
                record.pop(key, None)
            record.update(result.meta())

    return check
