"""Column lineage of one SQL statement: which columns of which relations feed each output column.

`statement_lineage(sql, dialect, relations)` parses a compiled SELECT with sqlglot, qualifies it with
the known columns of `relations` and walks its scopes from the output inwards: through CTEs, derived
tables, aliases, `select *` / `t.*` and UNION branches (by position). An output column depends on the
columns its expression reads, including CASE conditions, window partitions and orderings, and every
column a scalar subquery in it reads (its WHERE included: the value comes from it). Filters, joins
and GROUP BY of the statement itself are not lineage: they decide which rows a model has, not what a
column holds (the project that reads such a column is still hit directly by the gate; see
mesh.interface.usage).

It is conservative where it cannot tell: `"*"` as a relation's column means every column of it may
feed the output column; an output named `"*"` stands for every output column of a `select *` over a
relation whose columns are unknown; a column it cannot attribute to one relation is counted for every
relation that may hold it; and SQL it cannot parse or qualify returns None (the caller then treats
every output column as fed by every column of every relation).
"""

from __future__ import annotations

from typing import Any

from mesh.interface.sql_columns import ALL_COLUMNS, RelationKey, qualified_tree, table_key

Deps = dict[RelationKey, set[str]]

_SQL_ERRORS: tuple[type[BaseException], ...] = (ValueError, KeyError, AttributeError, RecursionError, TypeError)


def _merge(into: Deps, more: Deps) -> Deps:
    for key, columns in more.items():
        into.setdefault(key, set()).update(columns)
    return into


def _branches(scope: Any) -> list[Any]:
    return list(getattr(scope, "set_operation_scopes", None) or getattr(scope, "union_scopes", None) or [])


class _Walker:
    """Resolves output columns of the scopes of one qualified statement, memoised per scope."""

    def __init__(self, relations: dict[RelationKey, list[str] | None]) -> None:
        from sqlglot import exp

        self.exp = exp
        self.relations = relations
        self.outputs_memo: dict[int, list[tuple[str, Any]]] = {}
        self.column_memo: dict[tuple[int, str], Deps] = {}
        self.subqueries: dict[int, Any] = {}

    # -- what a scope outputs ----------------------------------------------------------------------

    def outputs(self, scope: Any) -> list[tuple[str, Any]]:
        """(name, projection) per output column, in order; name "*" with the source for a star that
        cannot be expanded (a relation whose columns are unknown)."""
        memo = self.outputs_memo.get(id(scope))
        if memo is not None:
            return memo
        self.outputs_memo[id(scope)] = []  # a self-reference resolves to nothing rather than looping
        exp = self.exp
        found: list[tuple[str, Any]] = []
        branches = _branches(scope)
        if branches:
            first = self.outputs(branches[0])
            found = [(name, ("branches", scope, index)) for index, (name, _p) in enumerate(first)]
        elif isinstance(scope.expression, exp.Select):
            for sub in scope.subquery_scopes:
                self.subqueries[id(sub.expression)] = sub
            for projection in scope.expression.selects:
                if isinstance(projection, exp.Star):
                    for name in scope.selected_sources:
                        found += self.star_outputs(scope.sources.get(name))
                elif isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star):
                    found += self.star_outputs(_source_of(scope, projection.table))
                else:
                    found.append((projection.alias_or_name.lower(), ("expr", scope, projection)))
        self.outputs_memo[id(scope)] = found
        return found

    def star_outputs(self, source: Any) -> list[tuple[str, Any]]:
        exp = self.exp
        if isinstance(source, exp.Table):
            known = self.relations.get(table_key(source))
            if known:
                return [(c.lower(), ("table", source, c.lower())) for c in known]
            return [(ALL_COLUMNS, ("table", source, ALL_COLUMNS))]
        if source is not None and hasattr(source, "expression"):
            return [(name, ("scope", source, name)) for name, _p in self.outputs(source)]
        return []

    # -- what feeds an output ----------------------------------------------------------------------

    def deps_of_output(self, entry: Any) -> Deps:
        kind = entry[0]
        if kind == "expr":
            return self.expression(entry[1], entry[2])
        if kind == "table":
            return {table_key(entry[1]): {entry[2]}}
        if kind == "scope":
            name = entry[2]
            return self.everything(entry[1]) if name == ALL_COLUMNS else self.column(entry[1], name)
        # A set operation's column: the same position in every branch.
        _kind, scope, index = entry
        deps: Deps = {}
        for branch in _branches(scope):
            outputs = self.outputs(branch)
            if any(name == ALL_COLUMNS for name, _p in outputs) or index >= len(outputs):
                _merge(deps, self.everything(branch))
            else:
                _merge(deps, self.deps_of_output(outputs[index][1]))
        return deps

    def column(self, scope: Any, name: str) -> Deps:
        """What feeds output column `name` of `scope` (every column when it is not found)."""
        key = (id(scope), name)
        if key in self.column_memo:
            return self.column_memo[key]
        self.column_memo[key] = {}
        outputs = self.outputs(scope)
        matches = [entry for out, entry in outputs if out == name]
        stars = [entry for out, entry in outputs if out == ALL_COLUMNS]
        deps: Deps = {}
        if matches:
            for entry in matches:
                _merge(deps, self.deps_of_output(entry))
        elif stars:
            for entry in stars:
                if entry[0] == "table":
                    _merge(deps, {table_key(entry[1]): {name}})
                else:
                    _merge(deps, self.column(entry[1], name))
        else:
            deps = self.everything(scope)
        self.column_memo[key] = deps
        return deps

    def everything(self, scope: Any) -> Deps:
        """What feeds any output column of `scope`."""
        deps: Deps = {}
        for _name, entry in self.outputs(scope):
            _merge(deps, self.deps_of_output(entry))
        return deps

    def expression(self, scope: Any, node: Any) -> Deps:
        """Columns an expression of `scope` reads, through scalar subqueries too."""
        exp = self.exp
        deps: Deps = {}
        stack = [node]
        while stack:
            current = stack.pop()
            if isinstance(current, exp.Column):
                if isinstance(current.this, exp.Star):
                    source = _source_of(scope, current.table)
                    _merge(deps, self.whole_source(scope, source))
                else:
                    _merge(deps, self.reference(scope, current))
                continue
            if current is not node and isinstance(current, exp.Query):
                sub = self.subqueries.get(id(current)) or self.subqueries.get(id(current.this))
                if sub is not None:
                    _merge(deps, self.subquery(sub))
                    continue
            stack.extend(current.iter_expressions())
        return deps

    def subquery(self, scope: Any) -> Deps:
        """Everything a scalar / IN / EXISTS subquery reads: its value depends on all of it."""
        key = (id(scope), "\0subquery")
        if key in self.column_memo:
            return self.column_memo[key]
        self.column_memo[key] = {}
        deps = self.everything(scope)
        for branch in [scope, *_branches(scope)]:
            select = branch.expression
            if not isinstance(select, self.exp.Select):
                continue
            for sub in branch.subquery_scopes:
                self.subqueries[id(sub.expression)] = sub
            parts = [select.args.get(clause) for clause in ("where", "having", "qualify", "group", "order")]
            for join in select.args.get("joins") or []:
                parts += [join.args.get("on"), *(join.args.get("using") or [])]
            for part in parts:
                if part is not None:
                    _merge(deps, self.expression(branch, part))
        self.column_memo[key] = deps
        return deps

    def whole_source(self, scope: Any, source: Any) -> Deps:
        if isinstance(source, self.exp.Table):
            return {table_key(source): {ALL_COLUMNS}}
        if source is not None and hasattr(source, "expression"):
            return self.everything(source)
        return self.all_sources(scope)

    def all_sources(self, scope: Any) -> Deps:
        deps: Deps = {}
        for name in scope.selected_sources:
            _merge(deps, self.whole_source(scope, scope.sources.get(name)))
        return deps

    def reference(self, scope: Any, column: Any) -> Deps:
        """One column reference: its relation's column, or the derived table's output column."""
        name = column.name.lower()
        if column.table:
            source = _source_of(scope, column.table)
            if source is None:
                return self.all_sources(scope)
            return self.from_source(source, name)
        # Not attributed by qualify: any selected source that may hold it.
        deps: Deps = {}
        for alias in scope.selected_sources:
            source = scope.sources.get(alias)
            if isinstance(source, self.exp.Table):
                known = self.relations.get(table_key(source))
                if known is None or name in {c.lower() for c in known}:
                    _merge(deps, {table_key(source): {name}})
            elif source is not None and hasattr(source, "expression"):
                names = {out for out, _e in self.outputs(source)}
                if name in names or ALL_COLUMNS in names:
                    _merge(deps, self.column(source, name))
        return deps or self.all_sources(scope)

    def from_source(self, source: Any, name: str) -> Deps:
        if isinstance(source, self.exp.Table):
            return {table_key(source): {name}}
        if hasattr(source, "expression"):
            return self.column(source, name)
        return {}


def _source_of(scope: Any, name: str) -> Any:
    """The source an alias names in `scope` or, for a correlated reference, an enclosing scope."""
    while scope is not None:
        if name in scope.sources:
            return scope.sources[name]
        scope = scope.parent
    return None


def statement_lineage(
    sql: str, dialect: str | None, relations: dict[RelationKey, list[str] | None]
) -> dict[str, Deps] | None:
    """Output column (lower-cased; "*" for an unexpandable star) -> {relation: columns feeding it}.

    `relations` maps the relations the caller cares about to their known columns (None: unknown);
    deps on other relations are reported too (the caller ignores them). None when the SQL cannot be
    parsed or qualified.
    """
    import sqlglot
    from sqlglot.errors import SqlglotError
    from sqlglot.optimizer.scope import build_scope

    try:
        tree = sqlglot.parse_one(sql, dialect=dialect)
        if tree is None:
            return None
        root = build_scope(qualified_tree(tree, relations, dialect))
        if root is None:
            return None
        walker = _Walker(relations)
        result: dict[str, Deps] = {}
        for name, entry in walker.outputs(root):
            _merge(result.setdefault(name, {}), walker.deps_of_output(entry))
        return result
    except SqlglotError:
        return None
    except _SQL_ERRORS:
        return None
