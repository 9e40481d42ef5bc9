"""What a SQL statement reads, column by column: sqlglot over a node's compiled code, with the
relations it may read and their known columns. The usage records (mesh.interface.usage) and the
column lineage (mesh.interface.column_lineage) are built on it; sqlglot is imported here, inside the
functions, so a run that parses no SQL never loads it."""

from __future__ import annotations

from typing import Any

ALL_COLUMNS = "*"
# Adapter types whose sqlglot dialect has the same name; anything else parses as generic SQL.
_DIALECTS = frozenset(
    {"duckdb", "snowflake", "postgres", "redshift", "bigquery", "databricks", "spark", "trino", "athena"}
)
RelationKey = tuple[str, str, str]  # (database, schema, identifier), lower-cased


def dialect_of(adapter_type: str | None) -> str | None:
    """The sqlglot dialect for a dbt adapter type (None: generic SQL)."""
    return adapter_type if adapter_type in _DIALECTS else None


def relation_key(database: Any, schema: Any, identifier: Any) -> RelationKey:
    return (str(database or "").lower(), str(schema or "").lower(), str(identifier or "").lower())


def table_key(table: Any) -> RelationKey:
    return relation_key(table.catalog, table.db, table.name)


def _branches(scope: Any) -> list[Any]:
    """The branches of a UNION / INTERSECT / EXCEPT scope (the attribute's name varies by sqlglot)."""
    return list(getattr(scope, "set_operation_scopes", None) or getattr(scope, "union_scopes", None) or [])


def _star_reaches(scope: Any, targets: set[RelationKey], seen: set[int]) -> set[RelationKey]:
    """Upstream relations whose every column flows to this scope's output through a star."""
    from sqlglot import exp

    if id(scope) in seen:
        return set()
    seen.add(id(scope))
    found: set[RelationKey] = set()
    for branch in _branches(scope):
        found |= _star_reaches(branch, targets, seen)
    if not isinstance(scope.expression, exp.Select):
        return found
    for projection in scope.expression.selects:
        if isinstance(projection, exp.Star):
            names = list(scope.selected_sources)
        elif isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star):
            names = [projection.table]
        else:
            continue
        for name in names:
            source = scope.sources.get(name)
            if isinstance(source, exp.Table):
                if table_key(source) in targets:
                    found.add(table_key(source))
            elif source is not None:
                found |= _star_reaches(source, targets, seen)
    return found


def _source_of(scope: Any, name: str) -> Any:
    """The source an alias names in `scope` or, for a correlated subquery, an enclosing scope."""
    while scope is not None:
        if name in scope.sources:
            return scope.sources[name]
        scope = scope.parent
    return None


def _projection_of(node: Any, select: Any) -> Any:
    """The projection of `select` that `node` sits in, or None (WHERE, JOIN, GROUP BY, ...)."""
    child = node
    while child is not None and child.parent is not select:
        child = child.parent
    if child is not None and child.arg_key == "expressions":
        return child
    return None


def _collect_demanded(root: Any, mentioned: set[RelationKey], used: dict[RelationKey, set[str]]) -> None:
    """Walk scopes from the query's output inwards, passing down which output columns of each CTE
    or derived table are read (`None`: all of them), and collect what is read of each upstream
    relation: the columns in demanded projections and in every other clause."""
    from sqlglot import exp

    demand: dict[int, set[str] | None] = {id(root): None}

    def want(scope: Any, names: set[str] | None) -> None:
        current = demand.get(id(scope), set())
        if current is None or names is None:
            demand[id(scope)] = None
        else:
            demand[id(scope)] = current | names

    def read(scope: Any, source: Any, names: set[str] | None) -> None:
        if isinstance(source, exp.Table):
            key = table_key(source)
            if key in mentioned:
                used[key] |= {ALL_COLUMNS} if names is None else names
        elif source is not None and hasattr(source, "expression"):
            want(source, names)

    for scope in reversed(list(root.traverse())):
        wanted = demand.get(id(scope), set())
        for branch in _branches(scope):
            want(branch, None)  # union branches match by position: keep every projection
        for sub in scope.subquery_scopes:
            want(sub, None)
        select = scope.expression
        if not isinstance(select, exp.Select):
            continue
        demanded = {
            id(p)
            for p in select.selects
            if wanted is None
            or p.alias_or_name.lower() in wanted
            or (wanted and (isinstance(p, exp.Star) or isinstance(p.this, exp.Star)))
        }
        for column in scope.columns:
            projection = _projection_of(column, select)
            if projection is not None and id(projection) not in demanded:
                continue
            if column.table:
                read(scope, _source_of(scope, column.table), {column.name.lower()})
            else:
                # Not attributable to one relation: any source may provide it.
                for name in scope.selected_sources:
                    source = scope.sources.get(name)
                    read(scope, source, None if isinstance(source, exp.Table) else {column.name.lower()})
        for projection in select.selects:
            if id(projection) not in demanded:
                continue
            if isinstance(projection, exp.Star):
                names = list(scope.selected_sources)
            elif isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star):
                names = [projection.table]
            else:
                continue
            for name in names:
                # A star passes the demanded names (or everything) through to its sources.
                read(scope, scope.sources.get(name), None if wanted is None else set(wanted))


def qualified_tree(tree: Any, relations: dict[RelationKey, list[str] | None], dialect: str | None) -> Any:
    """`tree` with every column qualified by its relation (sqlglot's `qualify`), the known columns
    of `relations` given as the schema (lower-cased, types unknown)."""
    from sqlglot.optimizer.qualify import qualify

    schema: dict[str, Any] = {}
    for (database, schema_name, identifier), columns in relations.items():
        if columns:
            schema.setdefault(database, {}).setdefault(schema_name, {})[identifier] = {
                c.lower(): "unknown" for c in columns
            }
    return qualify(
        tree,
        schema=schema or None,
        dialect=dialect,
        validate_qualify_columns=False,
        quote_identifiers=False,
        identify=False,
    )


def columns_used(
    sql: str, dialect: str | None, relations: dict[RelationKey, list[str] | None]
) -> dict[RelationKey, set[str]]:
    """Columns `sql` reads from each relation in `relations` (known columns, or None if unknown).

    A relation maps to {"*"} when its use cannot be narrowed to named columns; relations the SQL
    does not mention are absent.
    """
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import SqlglotError
    from sqlglot.optimizer.scope import build_scope

    targets = set(relations)
    everything = {key: {ALL_COLUMNS} for key in relations}
    try:
        tree = sqlglot.parse_one(sql, dialect=dialect)
    except (SqlglotError, ValueError):
        return everything
    if tree is None:
        return everything
    mentioned = {table_key(t) for t in tree.find_all(exp.Table)} & targets
    if not mentioned:
        return {}
    used: dict[RelationKey, set[str]] = {key: set() for key in mentioned}
    try:
        root = build_scope(tree.copy())
        if root is not None:
            for key in _star_reaches(root, targets, set()):
                used[key].add(ALL_COLUMNS)
        scope = build_scope(qualified_tree(tree, relations, dialect))
        if scope is not None:
            _collect_demanded(scope, mentioned, used)
    except (SqlglotError, ValueError, KeyError, AttributeError, RecursionError):
        return {key: {ALL_COLUMNS} for key in mentioned}
    return {key: ({ALL_COLUMNS} if ALL_COLUMNS in cols else cols) for key, cols in used.items()}
