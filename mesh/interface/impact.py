"""Who a contract change reaches, and the gate's verdict: the consumers' models and columns each
breaking change hits (following column lineage through projects that publish), the report in text,
JSON or markdown, deprecations, and the usage the gate judges by (failing closed where a
consumer's usage is unknown)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from mesh.core.errors import (
    BreakingChangeError,
    ConfigError,
)
from mesh.core.surface import hint
from mesh.core.text import plural
from mesh.interface.contracts import (
    _ADDITION,
    _REMOVAL,
    DEPRECATION_CHANGED,
    MODES,
    ContractChange,
    _kind,
    breaking_hint,
    short_id,
)
from mesh.interface.usage import ALL_COLUMNS, Feed, MeshUsage, Use, read_usage
from mesh.project.artifacts import Json
from mesh.project.config import Mesh
from mesh.registry.records import recorded_consumers

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
    negotiation: Any = None  # mesh.interface.proposals.Negotiation, when breaking changes hit

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
    def agreed(self) -> bool:
        """Every consumer the breaking changes hit acknowledged a proposal covering them."""
        return bool(self.hits) and self.negotiation is not None and self.negotiation.settled

    @property
    def blocked(self) -> bool:
        return bool(self.hits) and not self.allowed and not self.agreed

    def negotiation_lines(self) -> list[str]:
        if self.negotiation is None or not self.negotiation.statuses:
            return []
        return [f"{consumer}: {status}" for consumer, status in sorted(self.negotiation.statuses.items())]

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

    def warning_lines(self) -> list[str]:
        warnings = [
            f"breaking change {c.kind} {c.target} has no registered consumer; passing" for c in self.unconsumed
        ]
        if self.hits and self.allowed:
            warnings.append(f"breaking change allowed (--allow-breaking): {self.reason}")
        elif self.agreed:
            ids = sorted(set(self.negotiation.agreed.values()))
            warnings.append(f"breaking change acknowledged by every consumer it hits ({', '.join(ids)})")
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
        negotiated = self.negotiation_lines()
        if negotiated:
            lines.append("proposals:")
            lines += [f"  {line}" for line in negotiated]
        lines += [f"note: {note}" for note in self._notes()]
        lines += [f"WARNING: {warning}" for warning in self.warning_lines()]
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
            "agreed": self.agreed,
            "consumer_status": dict(sorted(self.negotiation.statuses.items())) if self.negotiation else {},
            "notes": self._notes(),
            "warnings": self.warning_lines(),
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
        elif self.hits and self.agreed:
            verdict = f"**agreed**: breaking changes hit {', '.join(self.hit_projects())}, each acknowledged"
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
        negotiated = self.negotiation_lines()
        if negotiated:
            out += ["**Proposals**", ""] + [f"- {_cell(line)}" for line in negotiated] + [""]
        out += [f"- note: {_cell(note)}" for note in self._notes()]
        out += [f"- **warning**: {_cell(warning)}" for warning in self.warning_lines()]
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
        if (self.allowed or self.agreed) and self.hits:
            if self.agreed and not self.allowed:
                doc["proposals"] = dict(sorted(self.negotiation.agreed.items()))
            doc["reason"] = self.reason or "acknowledged by every consumer it hits"
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


