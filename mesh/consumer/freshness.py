"""Freshness across projects: when was the upstream data a consumer reads last built?

The interface says what a producer publishes, not how old its data is; data changes without the
interface changing. So after every passing build a producer records, in its registry private object
`freshness` (beside `state` and `usage`, outside the interface and its content hash):

    {"format": 1, "project": "dbt_up", "env": "prod", "recorded_at": "2026-11-23T10:15:02Z",
     "build": {"invocation_id": "...", "generated_at": "..."},
     "nodes": {"model.dbt_up.public_orders": {"built_at": "2026-11-23T10:14:41.5Z",
                                              "data_version": "9f1c…", "data_basis": "content"}},
     "sources": {"source.dbt_up.raw.orders": {"max_loaded_at": "...", "status": "pass",
                                               "checked_at": "..."}}}

- `nodes`: every public node of the project's last build (target/manifest.json and
  target/run_results.json of the same dbt invocation); a node's `built_at` is when dbt finished
  executing it (the `completed_at` of its `execute` timing), else when the run ended
  (run_results' `generated_at`). A node the build did not run (a `--select`ed build) keeps what the
  previous record said. Its `data_version` changes when its data may have changed and only then: a
  hash of a digest of the relation's rows (`data_basis: content`; DuckDB `hash` of each row summed,
  Snowflake `HASH_AGG(*)`), read from what the build wrote before it was swapped in; where no
  digest can be taken (an emulator, a relation the mesh cannot read), a hash of the build that
  wrote it (`data_basis: build`: every build is new data). Consumers fingerprint the data versions
  of the upstream nodes their stored data is built from (mesh/run/fingerprint.py): new upstream data
  rebuilds exactly the consumers that store it.
- `sources`: the producer's own source freshness, when target/sources.json (`dbt source
  freshness`) was written after the build the previous record describes: it belongs to this build
  cycle (typically `dbt source freshness` runs just before `dbt build`). An older sources.json is
  ignored and the previous record's sources are kept, each with the time it was checked.

Consumers declare what they need on a model, in dbt's own shape, under `meta.mesh.consumer.freshness`
(`warn_after` / `error_after`: `{count: N, period: minute|hour|day}`), on the model or project-wide
through `+meta` in dbt_project.yml; `invoke validate` compares, for every upstream public model the
declaring model reads (directly or through its own project's models), the age of the upstream's
`built_at` with the declaration (see mesh.consumer.validate).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from mesh.core.errors import CheckFailedError, ConfigError, ManifestError
from mesh.core.surface import hint
from mesh.interface.publish import data_version
from mesh.project.artifacts import (
    PASSING_STATUSES,
    RUN_RESULTS_SCHEMAS,
    Json,
    load_manifest,
    public_node_ids,
)
from mesh.project.config import Mesh
from mesh.registry.document import check_schema, dump_json, load_json
from mesh.registry.record_schema import FreshnessRecord, check_record

FORMAT = 1
OBJECT = "freshness"
PERIODS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}
_SOURCES_SCHEMA = "https://schemas.getdbt.com/dbt/sources/v"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(value: object, what: str) -> datetime:
    """An ISO 8601 timestamp as an aware UTC datetime (dbt writes naive UTC times as well)."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} is not a timestamp: {value!r}")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"{what} is not an ISO 8601 timestamp: {value!r}") from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# --- recording ------------------------------------------------------------------------------------


def _built_at(result: Json, fallback: str) -> str:
    for timing in result.get("timing") or []:
        if isinstance(timing, dict) and timing.get("name") == "execute" and timing.get("completed_at"):
            return _iso(parse_time(timing["completed_at"], "execute completed_at"))
    return fallback


def _source_freshness(path: Path, after: datetime | None) -> Json | None:
    """The sources part of a record from `dbt source freshness`'s sources.json, or None when
    there is none or it was written before `after` (it then describes an earlier cycle)."""
    if not path.is_file():
        return None
    doc = load_json(path, "sources.json")
    schema = str((doc.get("metadata") or {}).get("dbt_schema_version") or "")
    if not schema.startswith(_SOURCES_SCHEMA):
        raise ManifestError(
            f"{path} is not a `dbt source freshness` result (dbt_schema_version {schema!r}): "
            "delete it or rerun `dbt source freshness`"
        )
    try:
        checked = parse_time(doc["metadata"].get("generated_at"), "generated_at")
    except ValueError as exc:
        raise ManifestError(f"{path}: {exc}") from exc
    if after is not None and checked <= after:
        return None
    sources: Json = {}
    for result in doc.get("results") or []:
        if not isinstance(result, dict) or not isinstance(result.get("unique_id"), str):
            raise ManifestError(f"{path} has a malformed result {result!r}: rerun `dbt source freshness`")
        sources[result["unique_id"]] = {
            "max_loaded_at": result.get("max_loaded_at"),
            "status": result.get("status"),
            "checked_at": _iso(checked),
        }
    return sources


def freshness_document(
    mesh: Mesh,
    project_name: str,
    previous: Json | None = None,
    data_versions: dict[str, tuple[str, str]] | None = None,
) -> Json | None:
    """The freshness record of `project_name`'s last build, or None when it has no public node
    (`data_versions`: uid -> (data version, basis) read from what the build wrote)."""
    project = mesh.project(project_name)
    manifest = load_manifest(project.target_dir / "manifest.json", project=project_name)
    public = public_node_ids(manifest)
    if not public:
        return None
    path = project.target_dir / "run_results.json"
    run = load_json(path, "run_results.json")
    check_schema(run, RUN_RESULTS_SCHEMAS, f"run_results {path}")
    invocation = manifest["metadata"].get("invocation_id")
    if run["metadata"].get("invocation_id") != invocation:
        raise CheckFailedError(
            f"{path} is not from the build that wrote manifest.json (invocation ids differ): "
            f"rebuild {project_name}, then record its freshness"
        )
    results = [r for r in run.get("results") or [] if isinstance(r, dict)]
    failed = [str(r.get("unique_id")) for r in results if r.get("status") not in PASSING_STATUSES]
    if failed:
        raise CheckFailedError(
            f"the last build of {project_name} did not pass ({', '.join(failed[:3])}): its data "
            "freshness is recorded after a passing build only"
        )
    try:
        ended = _iso(
            parse_time(
                run["metadata"].get("generated_at") or manifest["metadata"].get("generated_at"),
                "generated_at",
            )
        )
        by_id = {str(r.get("unique_id")): _built_at(r, ended) for r in results}
    except ValueError as exc:
        raise ManifestError(f"run_results {path}: {exc}") from exc
    earlier: Json = dict((previous or {}).get("nodes") or {})
    nodes: Json = {}
    for uid in sorted(public):
        if uid in by_id:
            version, basis = (data_versions or {}).get(uid) or _build_version(uid, str(invocation or ""))
            nodes[uid] = {"built_at": by_id[uid], "data_version": version, "data_basis": basis}
        elif uid in earlier:
            nodes[uid] = earlier[uid]  # not run by this (selected) build: its data is as before
    after = None  # sources.json written after the previous recorded build belongs to this cycle
    if previous is not None:
        build = previous.get("build")
        try:
            after = parse_time((build if isinstance(build, dict) else {}).get("generated_at"), "build")
        except ValueError:
            after = parse_time(previous["recorded_at"], "recorded_at")
    sources = _source_freshness(project.target_dir / "sources.json", after)
    if sources is None:
        sources = dict((previous or {}).get("sources") or {})
    return {
        "format": FORMAT,
        "project": project_name,
        "env": mesh.env,
        "recorded_at": _iso(datetime.now(UTC)),
        "build": {"invocation_id": invocation, "generated_at": ended},
        "nodes": nodes,
        "sources": sources,
    }


def _build_version(uid: str, invocation_id: str) -> tuple[str, str]:

    return data_version(uid, None, invocation_id)


def record_freshness(
    mesh: Mesh,
    project_name: str,
    data_versions: dict[str, tuple[str, str]] | None = None,
    audits: list[Json] | None = None,
) -> Json | None:
    """Write the `freshness` record of `project_name`'s last (passing) build to the registry, for
    the target's env; returns it, or None when the project has no public node (nothing recorded).

    Written after every passing build, whether the interface changed or not; never touches the
    interface (a separate object, outside its content hash)."""
    try:
        previous = read_freshness(mesh, project_name, env=mesh.env)
    except ManifestError:
        previous = None  # a malformed record is replaced, not carried over
    doc = freshness_document(mesh, project_name, previous, data_versions)
    if doc is None:
        return None
    if audits:
        doc["build"]["audits"] = audits  # what mesh.yml's audits said of this build
    mesh.registry.write_private(project_name, mesh.env, OBJECT, dump_json(doc))
    return doc


# --- reading --------------------------------------------------------------------------------------


def check_document(doc: Any, what: str) -> Json:
    """Refuse a freshness record that is not the documented shape (one line, exit 2)."""

    def bad(why: str) -> ManifestError:
        return ManifestError(
            f"{what} is malformed ({why}): its producer must record it again "
            f"({hint('build', '--project', 'P', '--save-state')} or {hint('mesh')})"
        )

    if not isinstance(doc, dict):
        raise bad("not a JSON object")
    if doc.get("format") != FORMAT:
        raise bad(f"format {doc.get('format')!r}, expected {FORMAT}")
    for key in ("project", "env", "recorded_at"):
        if not isinstance(doc.get(key), str):
            raise bad(f"`{key}` is missing or not a string")
    nodes = doc.get("nodes")
    if not isinstance(nodes, dict):
        raise bad("`nodes` is not an object")
    try:
        parse_time(doc["recorded_at"], "recorded_at")
        for uid, node in nodes.items():
            if not isinstance(node, dict):
                raise ValueError(f"node {uid} is not an object")
            parse_time(node.get("built_at"), f"built_at of {uid}")
            version = node.get("data_version")
            if version is not None and (not isinstance(version, str) or not re.fullmatch(r"[0-9a-f]{8,64}", version)):
                raise ValueError(f"data_version of {uid} is not a hex digest")
    except ValueError as exc:
        raise bad(str(exc)) from exc
    if not isinstance(doc.get("sources", {}), dict):
        raise bad("`sources` is not an object")
    return doc


def read_freshness(mesh: Mesh, upstream: str, env: str | None = None) -> Json | None:
    """The freshness record of `upstream` in the env consumers read (`mesh.upstream_env`), or None
    when its producer has recorded none; a malformed record raises ManifestError."""
    env = env or mesh.upstream_env(upstream)
    what = f"freshness record of {upstream}/{env}"
    body = mesh.registry.read_private(upstream, env, OBJECT)
    if body is None:
        return None
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ManifestError(
            f"{what} is malformed (not JSON: {exc}): its producer must record it again "
            f"({hint('build', '--project', 'P', '--save-state')} or {hint('mesh')})"
        ) from exc
    doc = check_document(doc, what)

    described = (doc.get("project"), doc.get("env"))
    if all(isinstance(part, str) for part in described) and described != (upstream, env):
        raise ManifestError(
            f"{what} is malformed (it describes {described[0]}/{described[1]}): its producer must "
            "record it again"
        )
    check_record(FreshnessRecord, doc, upstream, env, what)
    return doc


# --- what consumers declare -----------------------------------------------------------------------


@dataclass(frozen=True)
class Threshold:
    """`{count: N, period: P}` of a freshness declaration."""

    count: int
    period: str

    @property
    def delta(self) -> timedelta:
        return self.count * PERIODS[self.period]

    def __str__(self) -> str:
        return f"{self.count} {self.period}{'' if self.count == 1 else 's'}"


@dataclass(frozen=True)
class Requirement:
    """A consumer model's declared freshness: `warn_after` and/or `error_after`."""

    warn_after: Threshold | None
    error_after: Threshold | None


def _where(node: Json) -> str:
    """Where a model is declared, as dbt names it: its properties file, else its SQL file."""
    patch = str(node.get("patch_path") or "")
    return patch.split("://", 1)[-1] if patch else str(node.get("original_file_path") or "?")


def declared_freshness(node: Json) -> Requirement | None:
    """A model's `meta.mesh.consumer.freshness` (config.meta first, as dbt 1.10+ writes it), validated;
    None when it declares none. A bad declaration raises ConfigError naming the model and file."""
    found: Any = None
    for meta in ((node.get("config") or {}).get("meta"), node.get("meta")):
        mesh_meta = meta.get("mesh") if isinstance(meta, dict) else None
        if isinstance(mesh_meta, dict) and "freshness" in mesh_meta:
            found = mesh_meta["freshness"]
            break
    else:
        return None
    model = f"{node.get('resource_type', 'model')} {node.get('unique_id')} ({_where(node)})"

    def refuse(why: str) -> ConfigError:
        return ConfigError(
            f"{model}: meta.mesh.consumer.freshness {why}; declare it as dbt does, e.g. "
            "{warn_after: {count: 12, period: hour}, error_after: {count: 1, period: day}}"
        )

    if not isinstance(found, dict) or not found:
        raise refuse(f"is {found!r}, not a mapping with warn_after and/or error_after")
    unknown = sorted(set(found) - {"warn_after", "error_after"})
    if unknown:
        raise refuse(f"has unknown key(s) {', '.join(unknown)}")
    thresholds: dict[str, Threshold | None] = {"warn_after": None, "error_after": None}
    for key, value in found.items():
        if value is None:
            continue
        if not isinstance(value, dict) or set(value) - {"count", "period"}:
            raise refuse(f"{key} is {value!r}, not {{count: N, period: minute|hour|day}}")
        count, period = value.get("count"), value.get("period")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise refuse(f"{key}.count is {count!r}; use a positive whole number")
        if period not in PERIODS:
            raise refuse(f"{key}.period is {period!r}; use minute, hour or day")
        thresholds[key] = Threshold(count, str(period))
    if thresholds["warn_after"] is None and thresholds["error_after"] is None:
        raise refuse("sets neither warn_after nor error_after")
    return Requirement(thresholds["warn_after"], thresholds["error_after"])


def age_text(age: timedelta) -> str:
    """`3 days 2 hours`, `5 hours 12 minutes`, `42 minutes`, `under a minute`."""
    minutes = int(age.total_seconds() // 60)
    if minutes < 1:
        return "under a minute"
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = [(days, "day"), (hours, "hour"), (mins, "minute")]
    shown = [f"{n} {word}{'' if n == 1 else 's'}" for n, word in parts if n][:2]
    return " ".join(shown)

