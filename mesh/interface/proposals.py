"""Negotiated breaking changes: a producer proposes the breaking change the gate found; each
consumer it hits acknowledges it (or migrates off what it reads); the gate then lets it through.

- `invoke propose --project P --reason … [--deadline YYYY-MM-DD]` records, under the producer's
  prefix (its private `proposals` object, which only ever grows: a proposal once written is never
  changed), the changes the gate found breaking, the consumers they hit and the column paths, the
  reason, the latest version it was judged against, and who proposed it (the CI identity).
- `invoke acknowledge --proposal ID --project C` records, under the consumer's own prefix (its
  `acknowledgements` object, so per-prefix IAM holds), that C accepts proposal ID; refused when the
  proposal does not hit C. Both objects are signed like every record when signing is on.
- The gate (`invoke check`, the build's gate, publish) passes a breaking change when every consumer
  it still hits acknowledged an open proposal of the producer covering every change that hits it.
  A consumer that migrated (its recorded usage no longer reads what changed) is not hit any more.
  Each consumer's status is shown in the check's text, JSON and pull-request comment.
  `--allow-breaking --reason` keeps working without a proposal.

A proposal is open while the latest it was judged against is still latest: the publish that ships
it closes it (and records it). Records are read as hostile input: one that does not validate counts
as absent, which can only keep the gate closed.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from mesh.core.errors import ConfigError, MeshError, NotFoundError
from mesh.core.surface import hint
from mesh.interface.notify import notify
from mesh.project.config import Mesh
from mesh.registry.document import dump_json
from mesh.registry.schema import ProjectName, Timestamp, VersionId

PROPOSALS = "proposals"
ACKNOWLEDGEMENTS = "acknowledgements"
FORMAT = 1

_Id = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Za-z0-9_.-]{1,120}$")]
_Text = Annotated[str, StringConstraints(strict=True, max_length=4000)]
_Short = Annotated[str, StringConstraints(strict=True, max_length=600)]


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class ChangeRef(_Model):
    kind: _Short
    unique_id: _Short
    column: _Short | None = None

    @property
    def key(self) -> str:
        return change_key(self.kind, self.unique_id, self.column)


class ProposalRecord(_Model):
    id: _Id
    project: ProjectName
    env: _Short
    against: VersionId
    reason: _Text
    deadline: _Short | None = None
    created_at: Timestamp
    by: _Short
    changes: Annotated[list[ChangeRef], Field(max_length=10_000)]
    consumers: Annotated[dict[ProjectName, list[_Short]], Field(max_length=10_000)]


class ProposalsDocument(_Model):
    format: int
    project: ProjectName
    proposals: Annotated[list[ProposalRecord], Field(max_length=100_000)]


class Acknowledgement(_Model):
    producer: ProjectName
    by: _Short
    at: Timestamp


class AcknowledgementsDocument(_Model):
    format: int
    project: ProjectName
    acknowledged: Annotated[dict[_Id, Acknowledgement], Field(max_length=100_000)]


def change_key(kind: str, unique_id: str, column: str | None) -> str:
    return f"{kind} {unique_id}{'.' + column if column else ''}"


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _identity() -> str:
    from mesh.interface.publish import _publisher

    return _publisher()


def read_proposals(mesh: Mesh, producer: str) -> list[ProposalRecord]:
    """The producer's proposals, oldest first; an unreadable or forged record counts as none."""
    try:
        body = mesh.registry.read_private(producer, mesh.env, PROPOSALS)
        if body is None:
            return []
        doc = ProposalsDocument.model_validate(orjson.loads(body))
    except (MeshError, ValueError):  # unreadable, forged or unsigned: fail closed
        return []
    if doc.project != producer:
        return []
    return [p for p in doc.proposals if p.project == producer and p.env == mesh.env]


def read_acknowledgements(mesh: Mesh, consumer: str) -> dict[str, Acknowledgement]:
    """Proposal id -> the consumer's acknowledgement; an unreadable record counts as none."""
    try:
        body = mesh.registry.read_private(consumer, mesh.env, ACKNOWLEDGEMENTS)
        if body is None:
            return {}
        doc = AcknowledgementsDocument.model_validate(orjson.loads(body))
    except (MeshError, ValueError):  # unreadable, forged or unsigned: fail closed
        return {}
    return dict(doc.acknowledged) if doc.project == consumer else {}


def open_proposals(mesh: Mesh, producer: str) -> list[ProposalRecord]:
    """Proposals judged against the producer's current latest (a publish since closes them)."""
    try:
        entry = mesh.registry.read_latest(producer, mesh.env)
    except MeshError:  # a damaged latest: no proposal can be judged open against it
        return []
    latest = entry.version if entry is not None else None
    return [p for p in read_proposals(mesh, producer) if p.against == latest]


@dataclass
class Negotiation:
    """Each hit consumer's standing against the producer's open proposals."""

    statuses: dict[str, str] = field(default_factory=dict)  # consumer -> status line
    agreed: dict[str, str] = field(default_factory=dict)  # consumer -> proposal id acknowledged
    migrated: list[str] = field(default_factory=list)  # named by a proposal, no longer hit
    hit: set[str] = field(default_factory=set)  # the consumers the breaking changes hit now

    @property
    def settled(self) -> bool:
        return bool(self.hit) and self.hit <= set(self.agreed)


def negotiate(mesh: Mesh, producer: str, hits_by_consumer: dict[str, set[str]]) -> Negotiation:
    """For each consumer and the change keys that hit it: the open proposal covering them all that
    it acknowledged, if any."""
    found = Negotiation(hit=set(hits_by_consumer))
    proposals = open_proposals(mesh, producer)
    today = date.today().isoformat()
    for consumer, keys in sorted(hits_by_consumer.items()):
        covering = [p for p in proposals if keys <= {c.key for c in p.changes} and consumer in p.consumers]
        if not covering:
            found.statuses[consumer] = "no open proposal covers what hits it"
            continue
        acks = read_acknowledgements(mesh, consumer)
        done = [p for p in covering if p.id in acks and acks[p.id].producer == producer]
        if done:
            found.agreed[consumer] = done[-1].id
            by = re.sub(r"[\x00-\x1f\x7f]", " ", acks[done[-1].id].by)  # registry text, shown
            found.statuses[consumer] = f"acknowledged {done[-1].id} ({by})"
        else:
            late = [p for p in covering if p.deadline and p.deadline < today]
            past = f"; its deadline {late[-1].deadline} passed: --allow-breaking may ship it" if late else ""
            found.statuses[consumer] = f"has not acknowledged {covering[-1].id}{past}"
    for proposal in proposals:
        for consumer in proposal.consumers:
            if consumer not in hits_by_consumer and consumer not in found.migrated:
                found.migrated.append(consumer)
                found.statuses.setdefault(consumer, f"migrated (named by {proposal.id}, no longer hit)")
    return found


def propose(
    mesh: Mesh,
    producer: str,
    reason: str,
    deadline: str | None,
    against: str,
    changes: list[tuple[str, str, str | None]],
    consumers: dict[str, list[str]],
) -> ProposalRecord:
    """Record a proposal under the producer's prefix (appended; earlier ones never change)."""
    if not reason.strip():
        raise ConfigError('propose needs --reason "why this break is needed" (consumers read it)')
    if deadline is not None:
        try:
            date.fromisoformat(deadline)
        except ValueError:
            raise ConfigError(f"--deadline {deadline!r} is not a date like 2027-01-31") from None
    if not changes or not consumers:
        raise ConfigError(f"nothing to propose: no breaking change of {producer} hits a consumer on record")
    created = _now()
    digest = hashlib.sha256(orjson.dumps([producer, against, created, changes])).hexdigest()[:8]
    record = ProposalRecord(
        id=f"{producer}-{created[:19].replace('-', '').replace(':', '')}-{digest}",
        project=producer, env=mesh.env, against=against, reason=reason.strip(), deadline=deadline,
        created_at=created, by=_identity(),
        changes=[ChangeRef(kind=k, unique_id=u, column=c) for k, u, c in changes],
        consumers={name: sorted(set(paths)) for name, paths in sorted(consumers.items())},
    )
    existing = read_proposals(mesh, producer)
    doc = {
        "format": FORMAT,
        "project": producer,
        "proposals": [p.model_dump() for p in existing] + [record.model_dump()],
    }
    mesh.registry.write_private(producer, mesh.env, PROPOSALS, dump_json(doc))
    notify(mesh, producer, f"{producer} proposes a breaking change ({record.id}): {record.reason}; "
           f"consumers hit: {', '.join(record.consumers)}; acknowledge with "
           f"{hint('acknowledge', '--proposal', record.id, '--project', '<consumer>')}", event="proposal")
    return record


def acknowledge(mesh: Mesh, proposal_id: str, consumer: str) -> ProposalRecord:
    """Record, under the consumer's own prefix, that it accepts `proposal_id`."""
    upstreams = mesh.project(consumer).upstreams if mesh.config.projects.get(consumer) else ()
    candidates = [p for up in upstreams for p in read_proposals(mesh, up) if p.id == proposal_id]
    if not candidates:
        if any(p.id == proposal_id for p in read_proposals(mesh, consumer)):
            raise ConfigError(
                f"proposal {proposal_id} is {consumer}'s own: the consumers it hits acknowledge it "
                f"({hint('acknowledge', '--proposal', proposal_id, '--project', '<consumer>')})"
            )
        raise NotFoundError(
            f"no proposal {proposal_id!r} of {consumer}'s upstreams ({', '.join(upstreams) or 'none'}) "
            f"in env {mesh.env}"
        )
    proposal = candidates[0]
    if proposal not in open_proposals(mesh, proposal.project):
        raise ConfigError(
            f"proposal {proposal_id} is closed: {proposal.project} published since it was made "
            f"against {proposal.against}; nothing to acknowledge"
        )
    if consumer not in proposal.consumers:
        raise ConfigError(
            f"proposal {proposal_id} does not hit {consumer} (it hits {', '.join(proposal.consumers)}): "
            "nothing to acknowledge"
        )
    acks = read_acknowledgements(mesh, consumer)
    acks[proposal_id] = Acknowledgement(producer=proposal.project, by=_identity(), at=_now())
    doc: dict[str, Any] = {
        "format": FORMAT,
        "project": consumer,
        "acknowledged": {k: v.model_dump() for k, v in sorted(acks.items())},
    }
    mesh.registry.write_private(consumer, mesh.env, ACKNOWLEDGEMENTS, dump_json(doc))
    notify(mesh, proposal.project, f"{consumer} acknowledged {proposal_id} of {proposal.project}",
           event="acknowledgement")
    return proposal
