"""A consumer's own `sources:` for an upstream's public relations, adopted rather than replaced.

Real consumers often read their upstreams through sources they wrote themselves, under their own
names (`source('platform', 'orders')` for the project `dbt_platform`), with tests and descriptions of
their own. The mesh adopts such a source table when
- its relation (database, schema, identifier as the YAML writes them) is a public node's relation
  in an upstream's interface, or
- mesh.yml maps its source name to an upstream (`source_names: {platform: dbt_platform}`) and its
  identifier (or name) is the alias (or name) of one of that upstream's public nodes.

Sync then keeps it in step with the interface **in place**, through a round-trip YAML edit that
touches only what the mesh owns: the table's `identifier` when the producer renamed the relation,
each published column's `data_type`
(columns the interface has and the table does not list are added, with their type), and
`meta.mesh` (the upstream node's unique_id, so usage, validation, data versions and the lineage page
follow the edge). Tests, descriptions, comments, the source name and the team's own columns stay,
and so do the source's database and schema: they are often target-specific (a Snowflake database
name in a committed file), so the mesh never rewrites them; `validate` checks, after each build,
that the relation they render to is the one the upstream publishes, and says so when it is not.
A table whose upstream node is no longer published is refused, like any vanished public node.

Why in place and not a generated file beside it: dbt refuses two definitions of one source table,
and the team's tests and descriptions live on that definition; moving them into a generated file
would take them from the team. The edit is minimal and idempotent: a sync that changes nothing
writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from mesh.consumer.sync import _identifier, _identifier_type
from mesh.core.errors import SyncError
from mesh.core.yamlfile import RoundTrip
from mesh.project.artifacts import Json
from mesh.project.config import Project
from mesh.project.files import GENERATED_PREFIX, model_paths

_SKIPPED = {"target", "dbt_packages", "logs", ".mesh", "dbt_modules", "node_modules", ".git"}


@dataclass(frozen=True)
class AdoptedTable:
    """One table of a team's own source that reads an upstream public node."""

    path: Path
    source: str
    table: str
    upstream: str
    uid: str


def _yaml_files(project: Project) -> list[Path]:

    found: list[Path] = []
    for folder in model_paths(project):
        root = project.dir / folder
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            if path.suffix not in (".yml", ".yaml") or path.name.startswith(GENERATED_PREFIX):
                continue
            if any(part in _SKIPPED for part in path.relative_to(project.dir).parts):
                continue
            found.append(path)
    return found


def _literal(value: Any) -> str | None:
    """A YAML value as an identifier part, or None when it is absent or Jinja."""
    if not isinstance(value, str) or not value.strip() or "{{" in value or "{%" in value:
        return None
    return value.strip().strip('"').lower()


def _relation_index(interfaces: dict[str, Json]) -> dict[tuple[str, str, str], tuple[str, str]]:
    index: dict[tuple[str, str, str], tuple[str, str]] = {}
    for upstream, nodes in interfaces.items():
        for uid, node in nodes.items():
            key = tuple(str(node.get(k) or "").lower() for k in ("database", "schema", "alias"))
            index[key] = (upstream, uid)  # type: ignore[index]
    return index


def _by_alias(nodes: Json) -> dict[str, str]:
    """alias (and name, for an unversioned node or a latest version) -> unique_id."""
    found: dict[str, str] = {}
    for uid, node in nodes.items():
        found.setdefault(str(node.get("alias") or "").lower(), uid)
    for uid, node in nodes.items():
        version, latest = node.get("version"), node.get("latest_version")
        if version is None or str(version) == str(latest):
            found.setdefault(str(node.get("name") or "").lower(), uid)
    return found


def find_adopted(
    project: Project, interfaces: dict[str, Json], source_names: dict[str, str]
) -> list[AdoptedTable]:
    """Every table of the project's own sources that reads an upstream's public node."""
    index = _relation_index(interfaces)
    loader = YAML(typ="safe")
    found: list[AdoptedTable] = []
    for path in _yaml_files(project):
        try:
            doc = loader.load(path.read_text(encoding="utf-8"))
        except (YAMLError, OSError, UnicodeDecodeError):  # dbt reports a broken YAML file itself
            continue
        sources = doc.get("sources") if isinstance(doc, dict) else None
        for source in sources if isinstance(sources, list) else []:
            if not isinstance(source, dict) or not isinstance(source.get("name"), str):
                continue
            name = source["name"]
            if name in interfaces:
                continue  # named after the upstream itself: sync's generated sources serve it
            mapped = source_names.get(name)
            database, schema = _literal(source.get("database")), _literal(source.get("schema")) or name.lower()
            for table in source.get("tables") or []:
                if not isinstance(table, dict) or not isinstance(table.get("name"), str):
                    continue
                identifier = (_literal(table.get("identifier")) or table["name"]).lower()
                hit = index.get((database or "", schema, identifier)) if database else None
                if hit is None and mapped in interfaces:
                    uid = _by_alias(interfaces[mapped]).get(identifier)
                    if uid is None:
                        raise SyncError(
                            f"{path.relative_to(project.dir.parent)}: source {name}.{table['name']} "
                            f"(mapped to {mapped} in mesh.yml) reads {identifier}, which {mapped} does not "
                            "publish (removed, renamed or not public)"
                        )
                    hit = (mapped, uid)
                if hit is not None:
                    found.append(AdoptedTable(path, name, table["name"], hit[0], hit[1]))
    return found


def _meta_of(table: CommentedMap) -> CommentedMap:
    """Where the table keeps `meta`: top-level when it already has one there, else under config."""
    if isinstance(table.get("meta"), dict):
        return table["meta"]
    config = table.setdefault("config", CommentedMap())
    return config.setdefault("meta", CommentedMap())


def update_yaml(path: Path, adopted: Iterable[AdoptedTable], interfaces: dict[str, Json]) -> bytes | None:
    """The file's new content with each adopted table in step with its upstream node; None when
    nothing changes."""

    doc = RoundTrip(path, "sources file")
    before = doc.dump()
    wanted = {(a.source, a.table): a for a in adopted}
    for source in doc.doc.get("sources") or []:
        if not isinstance(source, CommentedMap):
            continue
        for table in source.get("tables") or []:
            adoption = wanted.get((source.get("name"), table.get("name"))) if isinstance(table, CommentedMap) else None
            if adoption is None:
                continue
            node = interfaces[adoption.upstream][adoption.uid]
            where = f"{adoption.uid}"
            database = _identifier(node.get("database"), f"database of {where}", adoption.upstream)
            schema = _identifier(node.get("schema"), f"schema of {where}", adoption.upstream)
            alias = _identifier(node.get("alias") or node.get("name"), f"alias of {where}", adoption.upstream)
            del database, schema  # the team's database and schema stay as written: see the module doc
            if (_literal(table.get("identifier")) or str(table["name"]).lower()) != alias.lower():
                table["identifier"] = alias
            columns = table.get("columns")
            if not isinstance(columns, list):
                columns = CommentedSeq()
                table["columns"] = columns
            listed = {str(c.get("name")).lower(): c for c in columns if isinstance(c, dict)}
            for name, column in (node.get("columns") or {}).items():
                data_type = column.get("data_type")
                entry = listed.get(str(name).lower())
                if entry is None:
                    entry = CommentedMap()
                    entry["name"] = _identifier(name, f"column of {where}", adoption.upstream)
                    columns.append(entry)
                if data_type and entry.get("data_type") != data_type:
                    entry["data_type"] = _identifier_type(data_type, where, adoption.upstream)
            mesh_meta = {"unique_id": adoption.uid, "upstream": adoption.upstream}
            meta = _meta_of(table)
            if dict(meta.get("mesh") or {}) != mesh_meta:
                meta["mesh"] = mesh_meta
    after = doc.dump()
    return None if after == before else after
