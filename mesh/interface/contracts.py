"""Contracts across projects: diff two interfaces, judge each change by the model's compatibility
mode, and gate a change on the consumers it would break.

Categories and wording follow dbt-core's `ModelNode.same_contract` (plus what only a registry sees:
models, versions and access). Breaking under `backward`, the default:
- `model_removed`     Contracted model 'model.p.m' was deleted or renamed (or disabled)
- `access_changed`    a public model was made protected or private (it left the interface)
- `version_removed`   one version of a versioned model was removed; the others stay
- `contract_removed`  Contract enforcement was removed
- `column_removed`    Column was removed
- `data_type_changed` Column data_type changed (base type changed, or size/precision narrowed)
- `constraint_removed` Enforced column level / model level constraint was removed (only constraint
                      types the adapter enforces, and only while the old materialization enforced
                      constraints: table or incremental, as dbt-core)
- `materialization_changed` Materialization changed with enforced constraints (table -> view)
Never breaking (reported as notices): `model_added`, `version_added`, `column_added` (under
`backward`), `description_changed`, `contract_enforced`, `constraint_added`, `latest_version_changed`,
`deprecation_changed`, `relation_changed`, `compatibility_changed`, a materialization change that
drops no enforced constraint, and a widened size/precision (varchar(10) -> varchar(20)).
The contract decides what the producer promised, usage decides what breaks: a removed or retyped
column of a public model without an enforced contract (or one marked `"contract": false`, known only
from the catalog) is `usage_decides`: breaking when a consumer uses it, a notice otherwise.

Compatibility modes, per model version, from `meta.mesh.compatibility` (as in a Kafka schema
registry; named in the API sense: "backward compatible" = existing consumers keep working):
- `backward` (default): forbids removals and type changes: model/version removed or made
  non-public, contract enforcement removed, column removed, data_type changed or narrowed, enforced
  constraint removed, materialization change that drops enforced constraints. Columns may be added.
- `forward`: forbids what a strict consumer (one that reads every column, `select *`) cannot read:
  column added, data_type changed or widened; and, in every mode but `none`, removing the model, a
  version, its public access or its enforced contract (without a contract no mode means anything).
  Columns may be removed.
- `full`: both: any change to a column's presence or type is breaking.
- `none`: nothing is breaking; every change is still reported, as a notice.
A change is judged under the mode of the published (old) node and the mode of the new one: breaking
if either mode forbids it. So tightening a mode applies at once, and loosening it applies from the
publish after the one that declares it (the first publish with `none` is still judged as before).
Modes other than these four are refused (exit 2).

Versions: `ref('p', 'm')` without a version follows `latest_version`; `ref('p', 'm', v=N)` (and a
generated source table `m_vN`) is pinned. Each change names the audience it reaches: `all`
consumers of that unique_id, only `pinned` ones, or only `unpinned` ones (when `latest_version`
moves, or an unversioned model becomes versioned, the unpinned consumers of the old latest see the
diff between the old latest and the new one). Removing a version is breaking for whoever still uses
it; adding one is not, and consumers pinned to a version keep working when a new version ships.

The gate (`invoke check`, `invoke publish`): compare the working tree's (check) or last build's
(publish) interface with `latest`, then match breaking changes against the usage every consumer
recorded (mesh.interface.usage): a breaking change that hits a consumer's model and column fails with
BreakingChangeError (exit 1) and a table of who is hit; a breaking change nobody consumes passes
with a warning; `--allow-breaking --reason "..."` passes and records the reason in the published
history entry's `metadata.mesh`. Impact follows chains: a hit project that publishes recorded which
of its public columns the changed column feeds (column lineage); the consumers of those columns are
hit too, recursively, each hit with its path (`core.orders.amount → marketing.customer_value.
lifetime_amount → finance.ltv`). The report renders as text, JSON or markdown (a PR comment).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from mesh.core.errors import (
    BreakingChangeError,
    ChecksumError,
    ConfigError,
    ManifestError,
    NotFoundError,
)
from mesh.core.names import new_version
from mesh.core.surface import hint
from mesh.core.text import plural
from mesh.interface.publish import PublishResult, _publisher
from mesh.interface.retention import newest_intact, recovery_target
from mesh.interface.usage import ALL_COLUMNS, Feed, MeshUsage, Use, read_usage
from mesh.project.artifacts import Json
from mesh.project.config import Mesh
from mesh.registry import Entry, commit_version, read_latest_or_damage
from mesh.registry.document import dump_interface, load_interface
from mesh.registry.records import recorded_consumers

Say = Callable[[str], None]

# --- kinds ------------------------------------------------------------------------------------------

MODEL_REMOVED = "model_removed"
ACCESS_CHANGED = "access_changed"
VERSION_REMOVED = "version_removed"
CONTRACT_REMOVED = "contract_removed"
COLUMN_REMOVED = "column_removed"
DATA_TYPE_CHANGED = "data_type_changed"
CONSTRAINT_REMOVED = "constraint_removed"
MATERIALIZATION_CHANGED = "materialization_changed"
COLUMN_ADDED = "column_added"
MODEL_ADDED = "model_added"
VERSION_ADDED = "version_added"
DESCRIPTION_CHANGED = "description_changed"
CONTRACT_ENFORCED = "contract_enforced"
CONSTRAINT_ADDED = "constraint_added"
LATEST_VERSION_CHANGED = "latest_version_changed"
DEPRECATION_CHANGED = "deprecation_changed"
RELATION_CHANGED = "relation_changed"
COMPATIBILITY_CHANGED = "compatibility_changed"

# What a change does to consumers, the unit compatibility modes forbid.
_MODEL = "model"  # the model, a version, its access or its contract is gone
_REMOVAL = "removal"  # a column or a guarantee on it is gone
_CHANGE = "change"  # a column's base type changed
_NARROWING = "narrowing"  # same base type, smaller size/precision
_WIDENING = "widening"  # same base type, larger size/precision
_ADDITION = "addition"  # a column appeared

MODES = ("backward", "forward", "full", "none")
DEFAULT_MODE = "backward"
_FORBIDS: dict[str, frozenset[str]] = {
    "backward": frozenset({_MODEL, _REMOVAL, _CHANGE, _NARROWING}),
    "forward": frozenset({_MODEL, _ADDITION, _CHANGE, _WIDENING}),
    "full": frozenset({_MODEL, _REMOVAL, _CHANGE, _NARROWING, _WIDENING, _ADDITION}),
    "none": frozenset(),
}
# Constraint types each adapter enforces (dbt adapters' CONSTRAINT_SUPPORT); others: dbt's default.
_ENFORCED_CONSTRAINTS: dict[str, frozenset[str]] = {
    "duckdb": frozenset({"check", "not_null", "unique", "primary_key", "foreign_key"}),
    "postgres": frozenset({"check", "not_null", "unique", "primary_key", "foreign_key"}),
    "snowflake": frozenset({"not_null"}),
    "bigquery": frozenset({"not_null"}),
    "redshift": frozenset({"not_null"}),
}
_DEFAULT_ENFORCED = frozenset({"not_null", "foreign_key"})
_CONSTRAINING_MATERIALIZATIONS = ("table", "incremental")
# A foreign key's `to` as dbt's parse leaves it: ref('m'), ref('p', 'm', v=2), source('s', 't').
_TARGET_CALL_RE = re.compile(
    r"""(?P<kind>ref|source)\(\s*(?P<args>(?:['"][^'"]*['"]\s*,?\s*)+)(?:,?\s*(?:v|version)\s*=\s*['"]?(?P<version>[\w.]+)['"]?\s*)?\)"""
)
_ARG_RE = re.compile(r"""['"]([^'"]*)['"]""")
_UNPROMISED = " (no enforced contract: breaking if a consumer uses it)"

def breaking_hint() -> str:
    """What to do about a breaking change, naming the commands of the surface in use."""
    return (
        "to ship a breaking change, keep the current version for its consumers: add a model version "
        "(`versions:` with the change in the new one, `latest_version` left on the old one until "
        "consumers pin `ref(..., v=N)` or migrate), set `deprecation_date` on the old version so "
        f"{hint('validate')} warns its consumers, and remove it once "
        f"{hint('registry.consumers', '--project', 'P')} shows nobody uses it; or override with "
        '--allow-breaking --reason "..."'
    )


@dataclass(frozen=True)
class ContractChange:
    """One difference between two interfaces."""

    kind: str
    unique_id: str  # the published (old) unique_id consumers reference; the new one for additions
    column: str | None
    old: Any
    new: Any
    breaking: bool
    message: str
    mode: str = DEFAULT_MODE  # the compatibility mode(s) that judged it, "backward" or "full/none"
    audience: str = "all"  # which consumers of unique_id it reaches: all, pinned or unpinned
    effect: str | None = None  # what modes judge: model, removal, change, narrowing, widening, addition
    # No enforced contract promised this column: the change breaks only a consumer that uses it
    # (the gate decides, from usage).
    usage_decides: bool = False
    only: tuple[str, ...] | None = None  # the consumer projects it can hit at all (None: any)

    @property
    def model(self) -> str:
        """`name` or `name.vN`: the unique_id without `model.<project>.`."""
        return short_id(self.unique_id)

    @property
    def target(self) -> str:
        return f"{self.model}.{self.column}" if self.column else self.model

    def line(self) -> str:
        flag = "BREAKING" if self.breaking else "change"
        scope = "" if self.audience == "all" else f" [{self.audience} refs]"
        return f"{flag:8}  {self.kind:23} {self.target}{scope}: {self.message} ({self.mode})"

    def to_json(self) -> Json:
        return {
            "kind": self.kind,
            "unique_id": self.unique_id,
            "column": self.column,
            "old": self.old,
            "new": self.new,
            "breaking": self.breaking,
            "message": self.message,
            "mode": self.mode,
            "audience": self.audience,
            "usage_decides": self.usage_decides,
        }


def short_id(unique_id: str) -> str:
    """`model.p.name.v2` -> `name.v2`, `test.p.x` -> `test x`."""
    parts = unique_id.split(".")
    if parts[0] == "model" and len(parts) >= 3:
        return ".".join(parts[2:])
    if len(parts) >= 3:
        return f"{parts[0]} {'.'.join(parts[2:])}"
    return unique_id


# --- modes and types -------------------------------------------------------------------------------


def compatibility(node: Json) -> str:
    """A node's compatibility mode from `meta.mesh.compatibility` (default backward)."""
    meta = node.get("meta") or {}
    mesh_meta = meta.get("mesh") if isinstance(meta, dict) else None
    value = mesh_meta.get("compatibility") if isinstance(mesh_meta, dict) else None
    if value is None:
        return DEFAULT_MODE
    if value not in MODES:
        raise ManifestError(
            f"{node.get('unique_id')}: meta.mesh.compatibility is {value!r}; use one of {', '.join(MODES)}"
        )
    return str(value)


_TYPE_RE = re.compile(r"^(?P<base>[^(\[]+?)\s*(?:\((?P<args>[^)]*)\))?\s*(?P<array>\[\])?$")


def _split_type(data_type: str) -> tuple[str, list[int] | None, str]:
    text = " ".join(data_type.lower().split())
    match = _TYPE_RE.match(text)
    if not match:
        return text, None, ""
    args: list[int] | None = None
    if match.group("args") is not None:
        try:
            args = [int(a) for a in match.group("args").split(",") if a.strip()]
        except ValueError:
            return text, None, ""
    return match.group("base").strip(), args, match.group("array") or ""


def type_change(old: str | None, new: str | None) -> str | None:
    """None when equal, else `change`, `narrowing` or `widening` (size/precision only)."""
    if (old or "").strip().lower().replace(" ", "") == (new or "").strip().lower().replace(" ", ""):
        return None
    if not old or not new:
        return _CHANGE
    old_base, old_args, old_arr = _split_type(old)
    new_base, new_args, new_arr = _split_type(new)
    if old_base != new_base or old_arr != new_arr:
        return _CHANGE
    if old_args is None or new_args is None:
        # No size means unbounded (varchar): adding one narrows, dropping it widens.
        return _NARROWING if old_args is None else _WIDENING
    if old_base in ("decimal", "numeric", "number") and len(old_args) == len(new_args) == 2:
        # Digits left of the point and right of it must both not shrink.
        old_dims = [old_args[0] - old_args[1], old_args[1]]
        new_dims = [new_args[0] - new_args[1], new_args[1]]
    else:
        old_dims, new_dims = old_args, new_args
    if len(old_dims) != len(new_dims):
        return _CHANGE
    if all(n >= o for o, n in zip(old_dims, new_dims, strict=True)):
        return _WIDENING
    if all(n <= o for o, n in zip(old_dims, new_dims, strict=True)):
        return _NARROWING
    return _CHANGE


# --- the diff --------------------------------------------------------------------------------------


def _version(node: Json) -> str | None:
    value = node.get("version")
    return None if value is None or value == "" else str(value)


def _latest_uid(nodes: Json, name: str) -> str | None:
    """The unique_id an unpinned ref to `name` resolves to."""
    for uid, node in nodes.items():
        if node.get("name") != name:
            continue
        version = _version(node)
        if version is None:
            return uid
        latest = node.get("latest_version")
        if latest is None or str(latest) == version:
            return uid
    return None


def _enforced(node: Json) -> bool:
    return bool((node.get("contract") or {}).get("enforced") or ((node.get("config") or {}).get("contract") or {}).get("enforced"))


def _kind(uid: str) -> str:
    """`model`, `seed` or `snapshot`, from a unique_id."""
    return uid.partition(".")[0] or "model"


def _observed(column: Json) -> bool:
    """A column the producer's catalog observed on a node without an enforced contract."""
    return column.get("contract") is False


def _materialized(node: Json) -> str | None:
    value = (node.get("config") or {}).get("materialized")
    return None if value is None else str(value)


def _constraint_label(constraint: Json) -> str:
    return str(constraint.get("name") or constraint.get("type"))


class _Differ:
    """Collects the changes between two interfaces."""

    def __init__(self, adapter_type: str | None, manifest: Json | None) -> None:
        self.enforced_types = _ENFORCED_CONSTRAINTS.get(adapter_type or "", _DEFAULT_ENFORCED)
        self.manifest = manifest
        self.changes: list[ContractChange] = []

    def add(
        self,
        kind: str,
        uid: str,
        column: str | None,
        old: Any,
        new: Any,
        message: str,
        effect: str | None,
        modes: tuple[str, ...],
        audience: str = "all",
        usage_decides: bool = False,
    ) -> None:
        forbidden = effect is not None and any(effect in _FORBIDS[m] for m in modes)
        label = "/".join(dict.fromkeys(modes))
        self.changes.append(
            ContractChange(
                kind, uid, column, old, new, forbidden and not usage_decides, message, label, audience,
                effect, forbidden and usage_decides,
            )
        )

    def constraint_key(self, constraint: Any) -> tuple[Any, ...]:
        """A constraint in one form, however it was written: its type, name, expression, columns,
        and a foreign key's target as relation parts (`ref('m')`, `ref('m', v=2)`,
        `source('s', 't')` resolved through the manifest; `"db"."schema"."t"` unquoted), lower-cased.
        dbt's own warning switches (`warn_unenforced`, `warn_unsupported`) are no part of it."""
        if not isinstance(constraint, dict):
            return (repr(constraint),)
        expression = " ".join(str(constraint.get("expression") or "").split()) or None
        return (
            str(constraint.get("type") or "").lower(),
            constraint.get("name") or None,
            expression,
            tuple(str(c).lower() for c in constraint.get("columns") or []),
            self._target_parts(constraint.get("to")),
            tuple(str(c).lower() for c in constraint.get("to_columns") or []),
        )

    def _target_parts(self, target: Any) -> tuple[str, ...] | None:
        if target is None or target == "":
            return None
        text = str(target).strip()
        call = _TARGET_CALL_RE.fullmatch(text)
        if call is not None:
            node = self._resolve_target(call.group("kind"), [a for a in _ARG_RE.findall(call.group("args"))], call.group("version"))
            if node is not None:
                identifier = node.get("identifier") if call.group("kind") == "source" else node.get("alias")
                return tuple(str(p or "").lower() for p in (node.get("database"), node.get("schema"), identifier or node.get("name")))
            return (text.lower(),)
        return tuple(part.strip().strip('"').strip("`").lower() for part in text.split("."))

    def _resolve_target(self, kind: str, args: list[str], version: str | None) -> Json | None:
        manifest = self.manifest or {}
        if kind == "source" and len(args) == 2:
            for node in (manifest.get("sources") or {}).values():
                if node.get("source_name") == args[0] and node.get("name") == args[1]:
                    return dict(node)
            return None
        if kind != "ref" or not args:
            return None
        name = args[-1]
        package = args[0] if len(args) == 2 else None
        candidates = [
            n for n in (manifest.get("nodes") or {}).values()
            if n.get("name") == name and (package is None or n.get("package_name") == package)
            and n.get("resource_type") in ("model", "seed", "snapshot")
        ]
        wanted = version if version is not None else None
        for node in candidates:
            node_version = node.get("version")
            if wanted is not None and str(node_version) == wanted:
                return dict(node)
            if wanted is None and (node_version is None or str(node_version) == str(node.get("latest_version"))):
                return dict(node)
        return None

    def removed(self, uid: str, node: Json, new_nodes: Json, audience: str) -> None:
        modes = (compatibility(node),)
        deprecated = f" (deprecated since {node['deprecation_date']})" if node.get("deprecation_date") else ""
        # dbt-core's wording for a contracted model; a seed, snapshot or uncontracted model says what it is.
        what = "Contracted model" if _enforced(node) else f"Public {_kind(uid)}"
        if _version(node) is not None and _latest_uid(new_nodes, str(node.get("name"))) is not None:
            self.add(
                VERSION_REMOVED, uid, None, _version(node), None,
                f"Version {_version(node)} of contracted model '{node.get('name')}' was removed{deprecated}",
                _MODEL, modes, audience,
            )
            return
        full = self.manifest or {}
        current = (full.get("nodes") or {}).get(uid)
        disabled = (full.get("disabled") or {}).get(uid)
        if isinstance(current, dict):
            access = current.get("access") or (current.get("config") or {}).get("access")
            self.add(
                ACCESS_CHANGED, uid, None, "public", access,
                f"{_kind(uid).capitalize()} '{uid}' is no longer public (access: {access}): consumers cannot ref it{deprecated}",
                _MODEL, modes, audience,
            )
        elif disabled:
            self.add(MODEL_REMOVED, uid, None, "enabled", "disabled", f"{what} '{uid}' was disabled{deprecated}", _MODEL, modes, audience)
        else:
            self.add(MODEL_REMOVED, uid, None, uid, None, f"{what} '{uid}' was deleted or renamed{deprecated}", _MODEL, modes, audience)

    def compare(self, uid: str, old: Json, new: Json, audience: str) -> None:
        """Changes from `old` to `new`, reported on `uid` (the node consumers resolved)."""
        modes = (compatibility(old), compatibility(new))
        shown = f" (now {short_id(str(new['unique_id']))})" if new.get("unique_id") != uid else ""

        def add(
            kind: str, column: str | None, o: Any, n: Any, message: str, effect: str | None, by_usage: bool = False
        ) -> None:
            self.add(kind, uid, column, o, n, message + shown, effect, modes, audience, by_usage)

        old_enforced, new_enforced = _enforced(old), _enforced(new)
        if old_enforced and not new_enforced:
            add(CONTRACT_REMOVED, None, True, False, "Contract enforcement was removed: previously this model had an enforced contract; it no longer enforces it", _MODEL)
        elif new_enforced and not old_enforced:
            add(CONTRACT_ENFORCED, None, False, True, "Contract is now enforced", None)
        # dbt-core: column changes of a model whose contract was never enforced are no contract
        # change. Here the contract decides what the producer promised, usage decides what breaks: a
        # removed or retyped column of such a model is breaking for a consumer that uses it.
        judged = old_enforced or new_enforced
        constraining = _materialized(old) in _CONSTRAINING_MATERIALIZATIONS
        old_cols: Json = old.get("columns") or {}
        new_cols: Json = new.get("columns") or {}
        had_constraints = bool(old.get("constraints"))
        for name, col in old_cols.items():
            if col.get("constraints"):
                had_constraints = True
            other = new_cols.get(name)
            # A column the contract promised; `"contract": false` marks one only a catalog showed.
            promised = judged and col.get("contract") is not False and (other or {}).get("contract") is not False
            if other is None:
                add(
                    COLUMN_REMOVED, name, col.get("data_type"), None,
                    f"Column was removed: {name}{'' if promised else _UNPROMISED}", _REMOVAL, not promised,
                )
                continue
            change = type_change(col.get("data_type"), other.get("data_type"))
            if change is not None and (promised or (col.get("data_type") and other.get("data_type"))):
                # Unpromised, a type appearing or disappearing is not a change: it was not known.
                add(
                    DATA_TYPE_CHANGED, name, col.get("data_type"), other.get("data_type"),
                    f"Column data_type changed: {name} ({col.get('data_type')} -> {other.get('data_type')}, {change})"
                    f"{'' if promised else _UNPROMISED}",
                    change, not promised,
                )
            old_cons = list(col.get("constraints") or [])
            new_cons = list(other.get("constraints") or [])
            old_keys = [self.constraint_key(c) for c in old_cons]
            new_keys = [self.constraint_key(c) for c in new_cons]
            for constraint, key in zip(old_cons, old_keys, strict=True):
                if key in new_keys:
                    continue
                enforced = constraining and constraint.get("type") in self.enforced_types
                add(
                    CONSTRAINT_REMOVED, name, constraint, None,
                    f"{'Enforced c' if enforced else 'C'}olumn level constraint was removed: "
                    f"'{_constraint_label(constraint)}' constraint on column {name}",
                    _REMOVAL if enforced and promised else None,
                )
            for constraint, key in zip(new_cons, new_keys, strict=True):
                if key not in old_keys:
                    add(CONSTRAINT_ADDED, name, None, constraint, f"Column level constraint was added: '{_constraint_label(constraint)}' constraint on column {name}", None)
            if (col.get("description") or "") != (other.get("description") or ""):
                add(DESCRIPTION_CHANGED, name, col.get("description"), other.get("description"), f"Description of column {name} changed", None)
        observed_before = any(_observed(col) for col in old_cols.values())
        for name, col in new_cols.items():
            if name not in old_cols:
                seen = judged or (observed_before and _observed(col))
                add(COLUMN_ADDED, name, None, col.get("data_type"), f"Column was added: {name} ({col.get('data_type') or 'type known after the build'})", _ADDITION if seen else None)
        old_model_cons = list(old.get("constraints") or [])
        new_model_cons = list(new.get("constraints") or [])
        old_model_keys = [self.constraint_key(c) for c in old_model_cons]
        new_model_keys = [self.constraint_key(c) for c in new_model_cons]
        for constraint, key in zip(old_model_cons, old_model_keys, strict=True):
            if key not in new_model_keys:
                enforced = constraining and constraint.get("type") in self.enforced_types
                add(
                    CONSTRAINT_REMOVED, None, constraint, None,
                    f"{'Enforced m' if enforced else 'M'}odel level constraint was removed: "
                    f"'{_constraint_label(constraint)}' constraint on columns {constraint.get('columns') or []}",
                    _REMOVAL if enforced and judged else None,
                )
        for constraint, key in zip(new_model_cons, new_model_keys, strict=True):
            if key not in old_model_keys:
                add(CONSTRAINT_ADDED, None, None, constraint, f"Model level constraint was added: '{_constraint_label(constraint)}'", None)
        old_mat, new_mat = _materialized(old), _materialized(new)
        if old_mat != new_mat:
            drops = (
                old_enforced and constraining and new_mat not in _CONSTRAINING_MATERIALIZATIONS and had_constraints
            )
            add(
                MATERIALIZATION_CHANGED, None, old_mat, new_mat,
                f"Materialization changed{' with enforced constraints' if drops else ''}: {old_mat} -> {new_mat}",
                _REMOVAL if drops else None,
            )
        if (old.get("description") or "") != (new.get("description") or ""):
            add(DESCRIPTION_CHANGED, None, old.get("description"), new.get("description"), "Model description changed", None)
        if old.get("deprecation_date") != new.get("deprecation_date"):
            when = new.get("deprecation_date")
            add(
                DEPRECATION_CHANGED, None, old.get("deprecation_date"), when,
                f"deprecation_date set to {when}: consumers are warned, then fail validation after it" if when else "deprecation_date removed",
                None,
            )
        if (old.get("relation_name") or "") != (new.get("relation_name") or ""):
            add(RELATION_CHANGED, None, old.get("relation_name"), new.get("relation_name"), f"Relation changed: {old.get('relation_name')} -> {new.get('relation_name')} (consumers pick it up on their next sync/build)", None)
        if modes[0] != modes[1]:
            add(COMPATIBILITY_CHANGED, None, modes[0], modes[1], f"Compatibility mode changed: {modes[0]} -> {modes[1]} (judged under both until published)", None)


def diff_interfaces(
    old: Json, new: Json, *, adapter_type: str | None = None, manifest: Json | None = None
) -> list[ContractChange]:
    """The changes from interface nodes `old` (published) to `new`; empty when they are equal.

    `manifest`, the full new manifest if at hand, tells a removed model from one made non-public or
    disabled. `adapter_type` decides which constraint types count as enforced.
    """
    differ = _Differ(adapter_type, manifest)
    old_names = {str(n.get("name")) for n in old.values()}
    new_names = {str(n.get("name")) for n in new.values()}
    old_latest = {name: _latest_uid(old, name) for name in old_names}
    new_latest = {name: _latest_uid(new, name) for name in new_names}
    for uid in sorted(old):
        node = old[uid]
        name = str(node.get("name"))
        was_latest = old_latest.get(name) == uid
        moved = was_latest and name in new_latest and new_latest[name] not in (None, uid)
        if uid in new:
            # Unpinned consumers of a latest that moved see the new latest instead (below).
            differ.compare(uid, node, new[uid], "pinned" if moved else "all")
        elif _version(node) is None and name in new_names:
            pass  # became versioned: its (unpinned) consumers follow latest_version, below
        else:
            differ.removed(uid, node, new, "pinned" if moved else "all")
    for uid in sorted(new):
        if uid in old:
            continue
        node = new[uid]
        name = str(node.get("name"))
        if name in old_names and _version(node) is not None:
            differ.add(VERSION_ADDED, uid, None, None, _version(node), f"Version {_version(node)} of '{name}' was added", None, (compatibility(node),))
        else:
            differ.add(MODEL_ADDED, uid, None, None, uid, f"{_kind(uid).capitalize()} '{uid}' was added to the public interface", None, (compatibility(node),))
    for name in sorted(old_names & new_names):
        before, after = old_latest.get(name), new_latest.get(name)
        if before is None or after is None or before == after:
            continue
        was = _version(old[before])
        now = _version(new[after])
        differ.add(
            LATEST_VERSION_CHANGED, before, None, was, now,
            f"unpinned refs to '{name}' now resolve to {'v' + now if now else 'the unversioned model'} "
            f"(was {'v' + was if was else 'unversioned'})",
            None, (compatibility(old[before]),), "unpinned",
        )
        differ.compare(before, old[before], new[after], "unpinned")
    return sorted(differ.changes, key=lambda c: (c.unique_id, c.audience, c.kind, c.column or ""))


# --- consumers hit ---------------------------------------------------------------------------------

ARROW = " → "
CHECK_FORMATS = ("text", "json", "markdown")


@dataclass(frozen=True)
class Hit:
    """A breaking change that reaches one consumer node, directly or through the public columns of
    projects in between (`path`)."""

    change: ContractChange
    use: Use
    column: str  # the column of use.upstream_node hit, "*" (every column) or "(model)"
    path: tuple[str, ...] = ()  # `project.model.column` of each public column in between

    @property
    def hops(self) -> int:
        return len(self.path) + 1

    @property
    def model(self) -> str:
        return short_id(self.use.node)

    def route(self, origin: str) -> list[str]:
        """`core.orders.amount`, `marketing.customer_value.lifetime_amount`, `finance.ltv`."""
        return [origin, *self.path, f"{self.use.consumer}.{self.model}"]


@dataclass(frozen=True)
class Reach:
    """A public column of a consumer that publishes, derived from a changed column."""

    change: ContractChange
    feed: Feed
    path: tuple[str, ...]  # ending with this column


def _column_label(project: str, node: str, column: str) -> str:
    return f"{project}.{short_id(node)}.{column}"


def _reached_column(
    uid: str, column: str | None, audience: str, effect: str | None, item: Use | Feed
) -> str | None:
    """The column of `item` (a use of, or lineage from, an upstream node) that a change to `uid`'s
    `column` (None: the whole model; "*": every column) reaches; None if it reaches none."""
    if item.upstream_node != uid:
        return None
    if audience == "pinned" and not item.pinned:
        return None
    if audience == "unpinned" and item.pinned:
        return None
    if column is None:
        return "(model)"
    if effect == _ADDITION:
        # An added column only reaches a consumer that reads every column.
        return ALL_COLUMNS if item.all_columns else None
    if column == ALL_COLUMNS:
        return ALL_COLUMNS
    if item.uses_column(column):
        return column if column.lower() in item.columns else ALL_COLUMNS
    return None


def hits_of(change: ContractChange, uses: Iterable[Use]) -> list[Hit]:
    """The uses `change` reaches directly: same unique_id, right audience, and a column they read."""
    hits = []
    for use in uses:
        if change.only is not None and use.consumer not in change.only:
            continue
        column = _reached_column(change.unique_id, change.column, change.audience, change.effect, use)
        if column is not None:
            hits.append(Hit(change, use, column))
    return hits


def impact(change: ContractChange, uses: list[Use], lineage: list[Feed]) -> tuple[list[Hit], list[Reach]]:
    """Every consumer node `change` reaches: directly, then through each public column a hit project
    derives from the changed column (its recorded lineage) to the consumers of that column, and so
    on. Each public column is followed once, so stale records that form a cycle end."""
    hits = hits_of(change, uses)
    if change.only is not None:
        return hits, []  # only its direct readers are judged (a deprecation they fail on)
    feeds_from: dict[str, list[Feed]] = {}
    for feed in lineage:
        feeds_from.setdefault(feed.upstream_node, []).append(feed)
    uses_of: dict[str, list[Use]] = {}
    for use in uses:
        uses_of.setdefault(use.upstream_node, []).append(use)
    reached: list[Reach] = []
    seen: set[tuple[str, str]] = set()
    pending: deque[tuple[str, str | None, str, tuple[str, ...]]] = deque(
        [(change.unique_id, change.column, change.audience, ())]
    )
    while pending:  # breadth first: the shortest path to each public column is the one shown
        uid, column, audience, path = pending.popleft()
        for feed in feeds_from.get(uid, []):
            if _reached_column(uid, column, audience, change.effect, feed) is None:
                continue
            if (feed.node, feed.column) in seen:
                continue
            seen.add((feed.node, feed.column))
            step = (*path, _column_label(feed.project, feed.node, feed.column))
            reached.append(Reach(change, feed, step))
            for use in uses_of.get(feed.node, []):
                hit = _reached_column(feed.node, feed.column, "all", change.effect, use)
                if hit is not None:
                    hits.append(Hit(change, use, hit, step))
            pending.append((feed.node, feed.column, "all", step))
    return hits, reached


@dataclass(frozen=True)
class Impact:
    """What one breaking (or usage-decided) change reaches."""

    change: ContractChange
    hits: list[Hit]
    reached: list[Reach]


def _hit_order(hit: Hit) -> tuple[Any, ...]:
    return (hit.change.unique_id, hit.change.kind, hit.change.column or "", hit.hops, hit.use.consumer, hit.use.node, hit.path)


@dataclass
class GateResult:
    """What the contract gate found for one project."""

    project: str
    env: str
    against: str | None  # the latest version compared with; None on first publish
    changes: list[ContractChange] = field(default_factory=list)
    uses: list[Use] = field(default_factory=list)  # the recorded uses of this project's models
    allowed: bool = False
    reason: str | None = None
    impacts: list[Impact] = field(default_factory=list)
    without_lineage: list[str] = field(default_factory=list)  # records that predate column lineage
    assumed: dict[str, str] = field(default_factory=dict)  # consumer -> why its usage is unknown
    compared: str = ""  # what was compared with what, and where the columns came from
    remarks: list[str] = field(default_factory=list)  # past-due nodes still read, foreign meta keys
    unjudged: dict[str, str] = field(default_factory=dict)  # public node -> why its code was not read
    protected: bool = True  # an audit step judges, after the build, what the code could not tell

    @property
    def breaking(self) -> list[ContractChange]:
        return [c for c in self.changes if c.breaking]

    @property
    def hits(self) -> list[Hit]:
        found: dict[tuple[Any, ...], Hit] = {}
        for impact in self.impacts:
            if impact.change.breaking:
                for hit in impact.hits:  # a versioned node's unknown usage is pinned and unpinned
                    found.setdefault((id(hit.change), hit.use.consumer, hit.use.node, hit.column, hit.path), hit)
        return sorted(found.values(), key=_hit_order)

    @property
    def unconsumed(self) -> list[ContractChange]:
        """Breaking changes no registered consumer is hit by (they pass with a warning)."""
        return [i.change for i in self.impacts if i.change.breaking and not i.hits]

    @property
    def unread(self) -> list[Reach]:
        """Public columns derived from a breaking change that no consumer on record reads."""
        read = {(id(h.change), h.path) for h in self.hits}
        return [
            r for i in self.impacts if i.change.breaking for r in i.reached if (id(r.change), r.path) not in read
        ]

    @property
    def blocked(self) -> bool:
        return bool(self.hits) and not self.allowed

    def origin(self, change: ContractChange) -> str:
        return f"{self.project}.{change.target}"

    def route(self, hit: Hit) -> str:
        return ARROW.join(hit.route(self.origin(hit.change)))

    def hit_projects(self) -> list[str]:
        return sorted({h.use.consumer for h in self.hits})

    def _notes(self) -> list[str]:
        notes = list(self.remarks)
        for reach in self.unread:
            notes.append(
                f"{ARROW.join([self.origin(reach.change), *reach.path])}: public column of "
                f"{reach.feed.project}, no consumer on record reads it"
            )
        for name in sorted(set(self.without_lineage) & set(self.hit_projects())):
            notes.append(
                f"{name}'s usage record predates column lineage: what its public models pass on is not "
                f"followed until its next passing build records usage again"
            )
        return notes

    def _warnings(self) -> list[str]:
        warnings = [
            f"breaking change {c.kind} {c.target} has no registered consumer; passing" for c in self.unconsumed
        ]
        if self.hits and self.allowed:
            warnings.append(f"breaking change allowed (--allow-breaking): {self.reason}")
        return warnings

    def summary(self) -> str:
        if self.against is None:
            return f"check {self.project}/{self.env}: no published contract yet; nothing to compare"
        consumers = sorted({u.consumer for u in self.uses} - set(self.assumed))
        assumed = f"; usage unknown: {', '.join(sorted(self.assumed))}" if self.assumed else ""
        return (
            f"check {self.project}/{self.env} against latest {self.against}: {plural(len(self.changes), 'change')}, "
            f"{len(self.breaking)} breaking; consumers on record: {', '.join(consumers) or 'none'}{assumed}"
        )

    def judged_lines(self) -> list[str]:
        """What was compared, and each public node the gate could not judge from its code."""
        lines = [f"compared: {self.compared}"] if self.compared else []
        after = (
            "the audit step judges it after the build, before anything is swapped in"
            if self.protected
            else "nothing protects its consumers (wap: false: no audit step)"
        )
        for uid, why in sorted(self.unjudged.items()):
            lines.append(f"cannot judge {short_id(uid)} from code: {why}; {after}")
        for consumer, why in sorted(self.assumed.items()):
            lines.append(
                f"usage of {consumer} unknown ({why}): assumed to read everything; a passing build of "
                f"{consumer} records it ({hint('build', '--project', consumer, '--save-state')}, or "
                f"{hint('mesh')})"
            )
        return lines

    def change_names(self) -> list[str]:
        """Every change that hits nobody, named with its category: `column_added order_facts.x`,
        `column_removed (unused) orders.note`, `column_removed (breaking, unused) orders.id`."""
        hit = {id(i.change) for i in self.impacts if i.hits}
        names = []
        for change in self.changes:
            if id(change) in hit:
                continue  # in the table of hits
            tag = " (breaking, unused)" if change.breaking else " (unused)" if change.usage_decides else ""
            names.append(f"{change.kind}{tag} {change.target}")
        return names

    def hits_line(self) -> str:
        projects = self.hit_projects()
        chained = [h for h in self.hits if h.path]
        through = sorted({step.split(".")[0] for h in chained for step in h.path})
        via = (
            f"; {plural(len(chained), 'hit')} through public columns of {', '.join(through)}" if chained else ""
        )
        return f"breaking changes hit {plural(len(projects), 'consumer project')} ({', '.join(projects)}){via}:"

    def table(self) -> list[str]:
        rows = [
            (hit.change.kind + " " + hit.change.model, hit.use.consumer, hit.model, hit.column, self.route(hit))
            for hit in self.hits
        ]
        header = ("change", "consumer project", "consumer model", "column", "path")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        return ["  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in [header, *rows]]

    def lines(self) -> list[str]:
        if self.against is None:
            return [self.summary()]
        lines = [self.summary(), *(f"  {line}" for line in self.judged_lines())]
        lines += [f"  {c.line()}" for c in self.changes]
        if not self.changes:
            lines.append("  the interface is unchanged")
        if self.hits:
            lines.append(self.hits_line())
            lines += self.table()
        lines += [f"note: {note}" for note in self._notes()]
        lines += [f"WARNING: {warning}" for warning in self._warnings()]
        if self.blocked:
            lines.append(f"hint: {breaking_hint()}")
        return lines

    def to_json(self) -> Json:
        """The same content as `lines()`, for machines."""
        return {
            "project": self.project,
            "env": self.env,
            "against": self.against,
            "blocked": self.blocked,
            "allowed": self.allowed,
            "reason": self.reason,
            "consumers_on_record": sorted({u.consumer for u in self.uses} - set(self.assumed)),
            "compared": self.compared,
            "not_judged": [{"node": uid, "why": why} for uid, why in sorted(self.unjudged.items())],
            "protected_by_audit": self.protected,
            "usage_unknown": [{"consumer": c, "why": why} for c, why in sorted(self.assumed.items())],
            "changes": [c.to_json() for c in self.changes],
            "hits": [
                {
                    "change": {"kind": h.change.kind, "unique_id": h.change.unique_id, "column": h.change.column},
                    "consumer": h.use.consumer,
                    "node": h.use.node,
                    "model": h.model,
                    "column": h.column,
                    "via": h.use.via,
                    "pinned": h.use.pinned,
                    "hops": h.hops,
                    "path": h.route(self.origin(h.change)),
                }
                for h in self.hits
            ],
            "unread_public_columns": [
                {
                    "change": {"kind": r.change.kind, "unique_id": r.change.unique_id, "column": r.change.column},
                    "project": r.feed.project,
                    "node": r.feed.node,
                    "column": r.feed.column,
                    "path": [self.origin(r.change), *r.path],
                }
                for r in self.unread
            ],
            "unconsumed": [c.to_json() for c in self.unconsumed],
            "notes": self._notes(),
            "warnings": self._warnings(),
            "hint": breaking_hint() if self.blocked else None,
            "error": str(self.error()) if self.blocked else None,
        }

    def markdown(self) -> str:
        """The same content as `lines()`, as a pull-request comment."""
        title = f"Contract check for `{self.project}` ({self.env})"
        if self.against is None:
            verdict = "no published contract yet; nothing to compare"
        elif self.blocked:
            verdict = f"**blocked**: breaking changes hit {', '.join(self.hit_projects())}"
        elif self.hits:
            verdict = f"**allowed**: breaking changes hit {', '.join(self.hit_projects())} (--allow-breaking)"
        elif self.breaking:
            verdict = "**passes**: breaking changes, but no consumer on record uses them"
        else:
            verdict = "**passes**: no breaking change"
        out = [f"<!-- mesh check {self.project}/{self.env} -->", f"### {title}: {verdict}", "", self.summary(), ""]
        judged = self.judged_lines()
        if judged:
            out += [f"- {_cell(line)}" for line in judged] + [""]
        if self.changes:
            out += ["| | change | model / column | message | mode |", "|---|---|---|---|---|"]
            for c in self.changes:
                flag = "**BREAKING**" if c.breaking else "change"
                scope = "" if c.audience == "all" else f" ({c.audience} refs)"
                out.append(f"| {flag} | `{c.kind}` | `{c.target}`{scope} | {_cell(c.message)} | {c.mode} |")
            out.append("")
        if self.hits:
            out += [
                _cell(self.hits_line()),
                "",
                "| change | consumer project | consumer model | column | path |",
                "|---|---|---|---|---|",
            ]
            for h in self.hits:
                route = ARROW.join(f"`{step}`" for step in h.route(self.origin(h.change)))
                out.append(f"| `{h.change.kind}` `{h.change.model}` | {h.use.consumer} | `{h.model}` | `{h.column}` | {route} |")
            out.append("")
        out += [f"- note: {_cell(note)}" for note in self._notes()]
        out += [f"- **warning**: {_cell(warning)}" for warning in self._warnings()]
        if self.blocked:
            out += ["", f"**hint:** {_cell(breaking_hint())}"]
        return "\n".join(out).rstrip() + "\n"

    def render(self, fmt: str) -> str:
        """`text`, `json` or `markdown`."""
        if fmt == "json":
            import orjson

            return orjson.dumps(self.to_json(), option=orjson.OPT_INDENT_2).decode()
        if fmt == "markdown":
            return self.markdown()
        return "\n".join(self.lines())

    def error(self) -> BreakingChangeError:
        hits = self.hits

        def told(h: Hit) -> str:
            through = f" through {h.path[-1]}" if h.path else ""
            return f"{h.change.kind} {h.change.target} used by {h.use.consumer} model {h.model}{through} (column {h.column})"

        shown = "; ".join(told(h) for h in hits[:3])
        chained = sum(bool(h.path) for h in hits[3:])
        through = f", {chained} of them through public columns of other projects" if chained else ""
        more = f" (and {len(hits) - 3} more{through})" if len(hits) > 3 else ""
        projects = ", ".join(self.hit_projects())
        return BreakingChangeError(
            f"breaking change to {self.project}'s contract hits {projects}: {shown}{more}; ship it as a "
            f'new model version (and set deprecation_date on the old one), or pass --allow-breaking --reason "..."'
        )

    def meta(self) -> Json:
        """What a publish records in `metadata.mesh` about the gate."""
        doc: Json = {}
        if self.allowed and self.hits:
            doc["reason"] = self.reason
            doc["breaking_changes"] = [
                {
                    **i.change.to_json(),
                    "consumers": sorted({f"{h.use.consumer}:{h.model}" for h in i.hits}),
                    "paths": sorted({ARROW.join(h.route(self.origin(h.change))) for h in i.hits if h.path}),
                }
                for i in self.impacts
                if i.change.breaking
            ]
        elif self.breaking:
            doc["breaking_changes"] = [c.to_json() for c in self.breaking]
        named = self.change_names()
        if named:
            doc["changes"] = named
        if self.assumed:
            doc["usage_unknown"] = sorted(self.assumed)
        return doc


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell or list item."""
    return " ".join(text.split()).replace("|", "\\|")


def evaluate(
    project: str,
    env: str,
    against: str | None,
    changes: list[ContractChange],
    uses: list[Use],
    allow_breaking: bool = False,
    reason: str | None = None,
    lineage: list[Feed] | None = None,
    without_lineage: list[str] | None = None,
) -> GateResult:
    """Match changes with the consumers' recorded uses: of `project` directly, and (given the
    mesh's `lineage`) through the public columns of consumers that publish what they derive.

    A usage-decided change (a column of a model without an enforced contract) becomes breaking
    when it hits a consumer; unused it stays a notice.
    """
    if allow_breaking and not (reason or "").strip():
        raise ConfigError('--allow-breaking needs --reason "why this break is acceptable" (it is recorded)')
    feeds = list(lineage or [])
    judged: list[ContractChange] = []
    impacts: list[Impact] = []
    for change in changes:
        if change.breaking or change.usage_decides:
            hits, reached = impact(change, uses, feeds)
            if change.usage_decides and hits:
                change = replace(change, breaking=True)
                hits, reached = impact(change, uses, feeds)
            impacts.append(Impact(change, hits, reached))
        judged.append(change)
    relevant = [u for u in uses if u.upstream == project]
    return GateResult(
        project, env, against, judged, relevant, allow_breaking, (reason or "").strip() or None, impacts,
        sorted(without_lineage or []),
    )


def evaluate_usage(
    project: str,
    env: str,
    against: str | None,
    changes: list[ContractChange],
    usage: MeshUsage,
    allow_breaking: bool = False,
    reason: str | None = None,
) -> GateResult:
    """`evaluate` against every usage record of the mesh (uses, lineage, records without it, and
    the consumers whose usage is unknown, assumed to read everything: `gate_usage`)."""
    changes = _deprecations_that_fail(changes, usage)
    result = evaluate(
        project, env, against, changes, usage.uses, allow_breaking, reason, usage.lineage, usage.without_lineage
    )
    result.assumed = dict(usage.assumed)
    return result


def _past(date: Any, today: Any) -> bool:
    from datetime import date as date_type
    from datetime import datetime

    try:
        when = datetime.fromisoformat(str(date).replace("Z", "+00:00")).date()
    except ValueError:
        return False
    return isinstance(today, date_type) and when < today


def _deprecations_that_fail(changes: list[ContractChange], usage: MeshUsage) -> list[ContractChange]:
    """A deprecation_date set in the past on a node a consumer reads whose policy is `fail`
    (`deprecations: fail` in its mesh.yml, recorded with its usage) would fail that consumer's
    next validation: breaking for the consumers that use it (the gate decides from usage)."""
    from datetime import UTC, datetime

    today = datetime.now(UTC).date()
    strict = usage.strict
    if not strict:
        return changes
    judged = []
    for change in changes:
        if change.kind == DEPRECATION_CHANGED and change.new and _past(change.new, today):
            readers = {u.consumer for u in usage.uses if u.upstream_node == change.unique_id} & strict
            if readers:
                change = replace(
                    change, effect=_REMOVAL, usage_decides=True, only=tuple(sorted(readers)),
                    message=f"{change.message}; {', '.join(sorted(readers))} fail on past-due references (deprecations: fail)",
                )
        judged.append(change)
    return judged


def foreign_meta_notes(nodes: Json) -> list[str]:
    """A compatibility declared under another tool's meta key is not the mesh's: say so once per
    node, naming the key to use (`meta.mesh.compatibility`), instead of ignoring it silently."""
    notes = []
    for uid, node in sorted(nodes.items()):
        meta = node.get("meta")
        if not isinstance(meta, dict):
            continue
        found = [
            f"meta.{key}" if "compat" in str(key).lower() else f"meta.{key}.{inner}"
            for key, value in meta.items()
            if key != "mesh"
            for inner in ([None] if "compat" in str(key).lower() else (value if isinstance(value, dict) else {}))
            if inner is None or "compat" in str(inner).lower()
        ]
        if found:
            notes.append(
                f"{short_id(uid)} declares {', '.join(found)}, which the mesh does not read: its "
                f"compatibility mode is meta.mesh.compatibility ({', '.join(MODES)})"
            )
    return notes


def deprecation_notes(nodes: Json, uses: list[Use], today: Any = None) -> list[str]:
    """`public_customers.v1 deprecated since 2026-01-01, still read by dbt_down.stg_customers_v1`
    for each published node past its deprecation_date that a consumer on record reads."""
    from datetime import UTC, datetime

    today = today or datetime.now(UTC).date()
    notes = []
    for uid, node in sorted(nodes.items()):
        when = node.get("deprecation_date")
        if not when or not _past(when, today):
            continue
        readers = sorted({f"{u.consumer}.{short_id(u.node)}" for u in uses if u.upstream_node == uid})
        if readers:
            notes.append(
                f"{short_id(uid)} deprecated since {str(when)[:10]}, still read by {', '.join(readers[:5])}"
                + (f" (and {len(readers) - 5} more)" if len(readers) > 5 else "")
            )
    return notes


UNKNOWN_USAGE = "(usage unknown)"


def known_consumers(mesh: Mesh, producer: str) -> list[str]:
    """Every project the mesh knows reads `producer`: mesh.yml's (their dependencies.yml), and any
    whose last passing build recorded it as an upstream (its fingerprint record: consumers in other
    repositories)."""

    found = set(mesh.consumers_of(producer)) if producer in mesh.config.projects else set()
    found |= set(recorded_consumers(mesh.registry, mesh.env, producer))
    found.discard(producer)
    return sorted(found)


def gate_usage(mesh: Mesh, producer: str, published: Json) -> MeshUsage:
    """The usage the gate judges `producer`'s change by. It fails closed: a consumer the mesh knows
    reads `producer` but whose usage record is missing, unreadable or silent about `producer`
    counts as reading every column of every public node it could read (`published`)."""
    usage = read_usage(mesh)
    usage.strict |= {n for n in mesh.build_order() if mesh.deprecation_policy(n) == "fail"}
    for consumer in known_consumers(mesh, producer):
        if usage.covers(consumer, producer):
            continue
        usage.assumed[consumer] = usage.unreadable.get(consumer) or "no usage record of it"
        for uid in sorted(published):
            node = f"{_kind(uid)}.{consumer}.{UNKNOWN_USAGE}"
            versioned = published[uid].get("version") not in (None, "")
            for pinned in (False, True) if versioned else (False,):
                usage.uses.append(Use(consumer, node, producer, uid, "ref", pinned, (ALL_COLUMNS,)))
    return usage


# --- the mesh --------------------------------------------------------------------------------------


def _adapter(doc: Json | None) -> str | None:
    if doc is None:
        return None
    value = (doc.get("metadata") or {}).get("adapter_type")
    return None if value is None else str(value)


# --- registry views: diff between versions, rollback ----------------------------------------------


def _interface(mesh: Mesh, project: str, version: str) -> Json:
    entry = mesh.registry.read_version(project, mesh.env, version)
    return load_interface(entry.body, f"{project}/{mesh.env} {version}", project)


def diff_versions(
    mesh: Mesh, project: str, from_version: str | None = None, to_version: str | None = None
) -> tuple[str | None, str, list[ContractChange]]:
    """The contract diff between two history versions (default: the one before `to` -> latest).

    The default `from` skips damaged entries. When `to` is the first (intact) version and no `from`
    is given, there is nothing earlier to compare with: `from` comes back None and every public
    model of `to` is reported as added."""

    env = mesh.env
    if to_version is None:
        latest = mesh.registry.read_latest(project, env)
        if latest is None:
            raise NotFoundError(f"{project}/{env} has no latest in {mesh.registry.url}: publish it first")
        to_version = latest.version
    new = _interface(mesh, project, to_version)
    if from_version is None:

        # The one before `to`, skipping damaged entries (a recovery leaves one behind).
        earlier = newest_intact(mesh.registry, project, env, before=to_version)
        if earlier is None:
            changes = diff_interfaces({}, new["nodes"], adapter_type=_adapter(new))
            return None, to_version, changes
        from_version = earlier.version
    old = _interface(mesh, project, from_version)
    changes = diff_interfaces(old["nodes"], new["nodes"], adapter_type=_adapter(new) or _adapter(old))
    return from_version, to_version, changes


def _rollback_entry(
    doc: Json, to_version: str, previous: str | None, reason: str, recovered_from: str | None
) -> tuple[str, bytes]:
    """A new history entry (version, body) holding `doc`'s nodes unchanged, recorded as a
    rollback to `to_version` (and a recovery from the damaged `recovered_from`, if given)."""
    from datetime import UTC, datetime


    meta = doc["metadata"]["mesh"]
    now = datetime.now(UTC)
    version = new_version(str(meta["content_sha256"]), now)
    dropped = ("reason", "breaking_changes", "rollback_of", "recovered_from")
    recorded: Json = {
        **{k: v for k, v in meta.items() if k not in dropped},
        "version": version,
        "published_at": now.isoformat().replace("+00:00", "Z"),
        "publisher": _publisher(),
        "previous": previous,
        "rollback_of": to_version,
        "reason": reason,
    }
    if recovered_from is not None:
        recorded["recovered_from"] = recovered_from
    entry = {**doc, "metadata": {**doc["metadata"], "mesh": recorded}}
    return version, dump_interface(entry)


def record_rollback(
    mesh: Mesh,
    project: str,
    to_version: str,
    reason: str,
    recovered_from: str | None,
    replaces: Entry,
    source: Json | None = None,
) -> str | None:
    """Record `to_version`'s nodes (or `source`'s) as a new history entry and make it latest, only
    if latest still is `replaces` (compare-and-swap on its token, a damaged latest included).

    The recovery of `invoke registry.fsck --repair`; returns the new version, or None when latest
    moved meanwhile (the entry then stays in history only, as a publish that lost its race)."""

    registry, env = mesh.registry, mesh.env
    doc = source if source is not None else _interface(mesh, project, to_version)
    previous = replaces.version or None
    version, body = _rollback_entry(doc, to_version, previous, reason, recovered_from)

    def still_there(current: Entry | None) -> bool:
        return current is not None and current.token == replaces.token

    replaced = commit_version(registry, project, env, version, body, still_there, over_damaged=True)
    return version if replaced else None


def rollback_project(
    mesh: Mesh,
    project: str,
    to_version: str,
    reason: str | None = None,
    allow_breaking: bool = False,
    say: Say = print,
) -> Any:
    """Make history version `to_version` latest again, as a new recorded publish.

    The new history entry holds `to_version`'s nodes unchanged, with `metadata.mesh.rollback_of` and
    `reason`. It deliberately skips publish's "older build" rule (its build is older by design); the
    contract gate still runs against the current latest, since consumers may already use what the
    rollback removes, and again against whatever another publisher makes latest meanwhile.

    A damaged latest (one that does not read back whole) is replaced too, by the same
    compare-and-swap: the gate then compares with the newest intact version (what fsck would
    recover to) and says so, and the entry records `recovered_from` the damaged version. Returns a
    PublishResult.
    """

    registry, env = mesh.registry, mesh.env
    try:
        target = _interface(mesh, project, to_version)
    except ChecksumError as exc:
        raise ChecksumError(
            f"version {to_version} of {project}/{env} is damaged ({str(exc).split('; ')[0]}): roll "
            f"back to an intact one, see {hint('registry.list', '--project', project)}"
        ) from exc
    nodes: Json = target["nodes"]
    sha = str(target["metadata"]["mesh"]["content_sha256"])

    def gate(baseline: Json, baseline_version: str) -> None:
        changes = diff_interfaces(baseline["nodes"], nodes, adapter_type=_adapter(baseline))
        result = evaluate_usage(
            project, env, baseline_version, changes, read_usage(mesh), allow_breaking,
            reason or "rollback",
        )
        for line in result.lines():
            say(line)
        if result.blocked:
            raise result.error()

    latest = read_latest_or_damage(registry, project, env)
    recovered_from: str | None = None
    if latest is not None and latest.damaged:
        gone = latest.version or "(unknown version)"
        recovered_from = latest.version or None
        base = recovery_target(registry, project, env, latest)
        if base is None:
            say(
                f"latest {gone} of {project}/{env} is damaged ({latest.damaged}) and no older "
                "version is intact: the contract gate has nothing to compare with"
            )
        else:
            say(
                f"latest {gone} of {project}/{env} is damaged ({latest.damaged}); the contract "
                f"gate compares with {base.version}, the newest intact version"
            )
            gate(_interface(mesh, project, base.version), base.version)
    elif latest is not None:
        current = load_interface(latest.body, f"{project}/{env} latest", project)
        if current["metadata"]["mesh"].get("content_sha256") == sha:
            return PublishResult(project, env, "unchanged", latest.version, latest.version, len(nodes), registry.url)
        gate(current, latest.version)
    judged = {latest.token if latest is not None else None}

    def should_replace(current: Entry | None) -> bool:
        # No "is my build newer?" rule: a rollback replaces whatever latest holds. But another
        # publisher may have moved latest since the gate ran: judge the rollback against that too.
        if current is None or current.damaged or current.token in judged:
            return True
        judged.add(current.token)
        gate(load_interface(current.body, f"{project}/{env} latest", project), current.version)
        return True

    previous = (latest.version or None) if latest is not None else None
    why = (reason or "").strip() or f"rollback to {to_version}" + (
        f"; latest {recovered_from or '(unknown version)'} was damaged" if latest is not None and latest.damaged else ""
    )
    version, body = _rollback_entry(target, to_version, previous, why, recovered_from)
    commit_version(registry, project, env, version, body, should_replace, over_damaged=True)
    if latest is not None and latest.damaged:
        say(f"the damaged {latest.version or 'latest'} stays in history, no longer latest")
    return PublishResult(project, env, "published", version, previous, len(nodes), registry.url)
