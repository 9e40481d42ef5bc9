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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mesh.core.errors import (
    ManifestError,
)
from mesh.core.surface import hint
from mesh.project.artifacts import Json

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
        f"{hint('registry.consumers', '--project', 'P')} shows nobody uses it; or negotiate it: "
        f"{hint('propose', '--project', 'P', '--reason', '...')}, then each consumer hit runs "
        f"{hint('acknowledge', '--proposal', 'ID', '--project', 'C')}; or override with "
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


# --- the mesh --------------------------------------------------------------------------------------


def _adapter(doc: Json | None) -> str | None:
    if doc is None:
        return None
    value = (doc.get("metadata") or {}).get("adapter_type")
    return None if value is None else str(value)


