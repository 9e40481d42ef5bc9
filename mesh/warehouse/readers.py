"""Read what a project's warehouse holds, without dbt: relations, their columns, digests of their data.

The mesh asks the warehouse three questions of its own:
- which relations exist (a skipped project's relations must still be there);
- the columns of public nodes without an enforced contract (what consumers really get: the
  interface publishes them, the gate compares them);
- a digest of each public node's data, its **data version**: consumers rebuild when the data they
  read changed, and only then.

They are answered here, on a connection the mesh opens and closes itself, never through dbt: no
extra dbt invocation, and no DuckDB instance that outlives the file it opened. On DuckDB the
project's file is opened read-only (the live file, or the audit copy before it is swapped in), its
upstreams attached read-only under their names as the profile attaches them, so views over upstream
tables resolve. On Snowflake the project's role queries each database's information schema; digests
are `HASH_AGG(*)`.

A digest that cannot be computed (an emulator without HASH_AGG, a view over something the mesh
cannot attach) is None: its data version then changes with every build (conservative: consumers
rebuild), and the caller says so.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mesh.core.errors import MeshError
from mesh.project.config import Mesh
from mesh.warehouse.snowflake import Session, check_identifier, mesh_project_settings
from mesh.warehouse.wap import BUILD_DIR_VAR, profile_output, render_profile_value

Relation = tuple[str, str, str]  # (database, schema, identifier) as the manifest spells them
Column = tuple[str, str]  # (name, type as the warehouse reports it)


def key(relation: Relation) -> str:
    """`database.schema.identifier`, lower-cased: how relations are compared."""
    return ".".join(part.lower() for part in relation)


def _quoted(relation: Relation) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in relation)


class Reader(Protocol):
    """One open connection to a project's warehouse."""

    def relations(self, databases: Iterable[str]) -> set[str]:
        """`key()` of every table and view in these databases."""
        ...

    def columns(self, relations: Iterable[Relation]) -> dict[str, list[Column]]:
        """Columns of each relation in order, by `key()`; absent when the relation does not exist."""
        ...

    def digest(self, relation: Relation) -> str | None:
        """An order-independent digest of the relation's rows; None when it cannot be computed."""
        ...

    def source_versions(self, relations: Iterable[Relation]) -> dict[str, str | None]:
        """A version of each source relation's data (by `key()`), cheap where the warehouse
        keeps one; None where it cannot tell (then it counts as changed)."""
        ...


# --- DuckDB -----------------------------------------------------------------------------------------


@dataclass
class DuckDBReader:
    """The project's DuckDB file, opened read-only, its upstreams attached read-only."""

    path: Path
    attach: list[tuple[str, str]] = field(default_factory=list)  # (path, alias)
    connection: Any = None

    def open(self) -> DuckDBReader:
        import duckdb

        self.connection = duckdb.connect(str(self.path), read_only=True)
        for path, alias in self.attach:
            if not Path(path).is_file():
                continue  # an upstream not built yet: views over it cannot be digested
            name = alias.replace('"', '""')
            literal = path.replace("'", "''")
            with contextlib.suppress(duckdb.Error):
                self.connection.execute(f"ATTACH '{literal}' AS \"{name}\" (READ_ONLY)")
        return self

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def relations(self, databases: Iterable[str]) -> set[str]:
        wanted = {d.lower() for d in databases}
        rows = self.connection.execute(
            "select database_name, schema_name, table_name from duckdb_tables() union all "
            "select database_name, schema_name, view_name from duckdb_views() where not internal"
        ).fetchall()
        return {key(row) for row in rows if str(row[0]).lower() in wanted}

    def columns(self, relations: Iterable[Relation]) -> dict[str, list[Column]]:
        wanted = {key(r) for r in relations}
        if not wanted:
            return {}
        rows = self.connection.execute(
            "select database_name, schema_name, table_name, column_name, data_type "
            "from duckdb_columns() order by database_name, schema_name, table_name, column_index"
        ).fetchall()
        found: dict[str, list[Column]] = {}
        for database, schema, table, column, data_type in rows:
            relation = key((str(database), str(schema), str(table)))
            if relation in wanted:
                found.setdefault(relation, []).append((str(column), str(data_type)))
        return found

    def digest(self, relation: Relation) -> str | None:
        import duckdb

        try:
            row = self.connection.execute(
                f"select count(*), coalesce(sum(hash(t)::hugeint), 0) from {_quoted(relation)} as t"
            ).fetchone()
        except duckdb.Error:
            return None
        return None if row is None else f"{row[0]}:{row[1]}"

    def source_versions(self, relations: Iterable[Relation]) -> dict[str, str | None]:
        # DuckDB keeps no modification time per table: a digest of the rows (local files are small).
        return {key(r): self.digest(r) for r in relations}


# --- Snowflake --------------------------------------------------------------------------------------


@dataclass
class SnowflakeReader:
    """The project's databases, read as the project's own role."""

    session: Any

    def relations(self, databases: Iterable[str]) -> set[str]:

        present: set[str] = set()
        for database in sorted(set(databases)):
            schema = f"{check_identifier('database', database)}.information_schema"
            # Snowflake lists views among its tables too; the union also reads emulators that list
            # them only among views.
            rows = self.session.run(
                f"SELECT table_catalog, table_schema, table_name FROM {schema}.tables UNION "
                f"SELECT table_catalog, table_schema, table_name FROM {schema}.views",
                missing_ok=True,  # a dropped database: its relations are missing
            )
            present.update(key(tuple(str(p) for p in row)) for row in rows or [])  # type: ignore[arg-type]
        return present

    def columns(self, relations: Iterable[Relation]) -> dict[str, list[Column]]:

        wanted = {key(r) for r in relations}
        found: dict[str, list[Column]] = {}
        for database in sorted({r.split(".", 1)[0] for r in wanted}):
            schema = f"{check_identifier('database', database)}.information_schema"
            rows = self.session.run(
                f"SELECT table_catalog, table_schema, table_name, column_name, data_type "
                f"FROM {schema}.columns ORDER BY table_schema, table_name, ordinal_position",
                missing_ok=True,
            )
            for catalog, schema_name, table, column, data_type in rows or []:
                relation = key((str(catalog), str(schema_name), str(table)))
                if relation in wanted:
                    found.setdefault(relation, []).append((str(column), str(data_type)))
        return found

    def digest(self, relation: Relation) -> str | None:

        try:
            name = ".".join(check_identifier("identifier", part) for part in relation)
            rows = self.session.run(f"SELECT COUNT(*), HASH_AGG(*) FROM {name}")
        except MeshError:
            return None  # an emulator without HASH_AGG, a relation the role cannot read
        return None if not rows else f"{rows[0][0]}:{rows[0][1]}"

    def source_versions(self, relations: Iterable[Relation]) -> dict[str, str | None]:
        # Snowflake keeps LAST_ALTERED and ROW_COUNT per table in its metadata: no scan. A view has
        # neither for the data behind it: None (a producer reading a view rebuilds every run).

        wanted = {key(r): r for r in relations}
        found: dict[str, str | None] = dict.fromkeys(wanted)
        for database in sorted({r[0] for r in wanted.values()}):
            try:
                schema = f"{check_identifier('database', database)}.information_schema"
                rows = self.session.run(
                    f"SELECT table_catalog, table_schema, table_name, table_type, last_altered, row_count "
                    f"FROM {schema}.tables",
                    missing_ok=True,
                )
            except MeshError:
                continue
            for catalog, schema_name, table, kind, altered, count in rows or []:
                relation = key((str(catalog), str(schema_name), str(table)))
                if relation in found and "VIEW" not in str(kind).upper() and altered is not None:
                    found[relation] = f"{altered}:{count}"
        return found


# --- opening one ------------------------------------------------------------------------------------


def duckdb_file(mesh: Mesh, name: str, build_dir: str | None = None) -> Path | None:
    """The project's own DuckDB file: live, or under `build_dir` (an audit copy); None when the
    project's profile is not DuckDB."""

    out = profile_output(mesh, name, effective=False)
    if out.type != "duckdb":
        return None
    env = {k: v for k, v in os.environ.items() if k != BUILD_DIR_VAR}
    env.setdefault("MESH_WAREHOUSE_DIR", str(mesh.warehouse_dir))
    if build_dir is not None:
        env[BUILD_DIR_VAR] = build_dir
    path = Path(render_profile_value(str(out.output.get("path") or ""), env))
    return path if path.is_absolute() else (mesh.project(name).dir / path).resolve()


def _attachments(mesh: Mesh, name: str, build_dir: str | None = None) -> list[tuple[str, str]]:

    out = profile_output(mesh, name)
    env = {k: v for k, v in os.environ.items() if k != BUILD_DIR_VAR}
    env.setdefault("MESH_WAREHOUSE_DIR", str(mesh.warehouse_dir))
    if build_dir is not None:
        env[BUILD_DIR_VAR] = build_dir  # the project's other databases: their audit copies
    found = []
    for item in out.output.get("attach") or []:
        if not isinstance(item, dict) or not item.get("path"):
            continue
        path = Path(render_profile_value(str(item["path"]), env))
        if not path.is_absolute():
            path = (mesh.project(name).dir / path).resolve()
        alias = str(item.get("alias") or path.stem)
        found.append((str(path), alias))
    return found


@contextlib.contextmanager
def open_reader(mesh: Mesh, name: str, build_dir: str | None = None) -> Iterator[Reader | None]:
    """A reader of `name`'s warehouse (its audit copy when `build_dir` is given), closed on exit;
    None when it cannot be opened (no file yet, a lock held by a writer, no credentials)."""

    release_dbt_connections()
    out = profile_output(mesh, name)
    if out.type == "duckdb":
        import duckdb

        path = duckdb_file(mesh, name, build_dir)
        if path is None or not path.is_file():
            yield None
            return
        reader = DuckDBReader(path, _attachments(mesh, name, build_dir))
        try:
            reader.open()
        except duckdb.Error:
            reader.close()
            yield None
            return
        try:
            yield reader
        finally:
            reader.close()
        return
    if out.type == "snowflake":

        try:
            settings = mesh_project_settings(mesh, name, "dbt-mesh-warehouse")
            session = Session(settings, label="warehouse read").__enter__()
        except MeshError:
            yield None
            return
        try:
            yield SnowflakeReader(session)
        finally:
            session.close()
        return
    yield None


def release_dbt_connections() -> None:
    """Close the DuckDB instance dbt-duckdb keeps for later calls in this process, so no dbt call
    holds a file across an audit copy's creation, a swap, or the mesh's own read-only opening."""
    import sys

    module = sys.modules.get("dbt.adapters.duckdb.connections")
    manager = getattr(module, "DuckDBConnectionManager", None) if module is not None else None
    if manager is None:
        return
    with manager._LOCK:
        environment = manager._ENV
        manager._ENV = None
        if environment is not None:
            with contextlib.suppress(Exception):
                environment.close()


def catalog_of(columns: dict[str, list[Column]], nodes: dict[str, Relation]) -> dict[str, Any]:
    """A catalog.json-shaped document (`nodes.<uid>.columns.<name>.type/index`) for these nodes."""
    tables: dict[str, Any] = {}
    for uid, relation in nodes.items():
        found = columns.get(key(relation))
        if found is None:
            continue
        tables[uid] = {
            "columns": {
                name: {"name": name, "type": data_type, "index": index}
                for index, (name, data_type) in enumerate(found, 1)
            }
        }
    return {"nodes": tables, "errors": None}
