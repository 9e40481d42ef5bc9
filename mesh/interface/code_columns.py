"""The columns of a public node without an enforced contract, judged from its code before any build.

A contract says what a model promises; a model without one promises what its SQL selects. So the
gate reads that SQL: the node's compiled code (`dbt compile` of the working tree), parsed with
sqlglot, its stars expanded with the columns of what it reads, walked down through the project's
own models to its seeds, sources and upstream public nodes:
- a model: its compiled SELECT, qualified (stars expanded) with the columns of its parents, each
  parent judged the same way; a parent whose SQL cannot be read is taken from the warehouse when
  its compiled code is what the last build ran (the project's published state);
- a model with an enforced contract, an upstream public node (dbt-loom) or a generated source: the
  columns and types they declare;
- a seed: the warehouse's columns, or the CSV header (types from `column_types`);
- a source: the warehouse's columns, or those its YAML declares;
- a snapshot: its SELECT plus dbt's snapshot columns.

A column's type is known only where the code states it: an explicit cast, or a column passed
through from a parent whose type is known. Any other expression (`price * 2`, `sum(x)`) has a name
but no judged type: dbt's adapter decides it at build time, and the audit step (after the build,
before the swap) compares the warehouse's type. Where the columns themselves cannot be told (a
`select *` over something unknown, SQL sqlglot cannot read, a python model), the node is not judged
from code and the report says why.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesh.core.errors import MeshError
from mesh.interface.sql_columns import dialect_of
from mesh.project.artifacts import Json, has_enforced_contract

Relation = tuple[str, str, str]

# sqlglot type names that name one warehouse type (DuckDB's VARCHAR is sqlglot's TEXT, and so on).
_FAMILIES = {
    "VARCHAR": "TEXT", "CHAR": "TEXT", "NCHAR": "TEXT", "NVARCHAR": "TEXT", "BPCHAR": "TEXT",
    "NAME": "TEXT", "DATETIME": "TIMESTAMP", "FLOAT": "FLOAT", "DOUBLE": "DOUBLE",
}
_SNAPSHOT_COLUMNS = ("dbt_scd_id", "dbt_updated_at", "dbt_valid_from", "dbt_valid_to")


@dataclass(frozen=True)
class Col:
    """One output column: its name, and its type where the code states it."""

    name: str
    data_type: str | None = None


@dataclass
class Judged:
    """A node's columns as its code says (None: cannot tell, `why` says why)."""

    columns: list[Col] | None
    why: str = ""
    source: str = "code"  # code | contract | warehouse | declared


def _key(database: Any, schema: Any, identifier: Any) -> Relation:
    return (str(database or "").lower(), str(schema or "").lower(), str(identifier or "").lower())


def _node_relation(node: Json) -> Relation:
    if node.get("resource_type") == "source":
        return _key(node.get("database"), node.get("schema"), node.get("identifier") or node.get("name"))
    return _key(node.get("database"), node.get("schema"), node.get("alias") or node.get("name"))


def canonical_type(data_type: str | None, dialect: str | None) -> tuple[str, tuple[str, ...]] | None:
    """A type as (family, explicit parameters), for comparing spellings (`integer` = `INT`,
    `varchar` = `TEXT`); None when it cannot be read."""
    if not data_type or not data_type.strip():
        return None
    from sqlglot import exp
    from sqlglot.errors import SqlglotError

    try:
        built = exp.DataType.build(data_type, dialect=dialect)
    except (SqlglotError, ValueError):
        return None
    name = built.this.name if hasattr(built.this, "name") else str(built.this)
    explicit = "(" in data_type
    params = tuple(e.sql() for e in built.expressions) if explicit else ()
    return _FAMILIES.get(name, name), params


def same_type(a: str | None, b: str | None, dialect: str | None) -> bool:
    """Whether two spellings name one type (parameters compared only where both give them)."""
    left, right = canonical_type(a, dialect), canonical_type(b, dialect)
    if left is None or right is None:
        return (a or "").strip().lower() == (b or "").strip().lower()
    if left[0] != right[0]:
        return False
    return not (left[1] and right[1]) or left[1] == right[1]


@dataclass
class CodeColumns:
    """Judges nodes of one compiled manifest, memoised (one instance per gate)."""

    manifest: Json
    warehouse: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # `a.b.c` -> columns
    previous: Callable[[], Json | None] = lambda: None  # the last build's manifest, when needed
    memo: dict[str, Judged] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.nodes: Json = self.manifest.get("nodes") or {}
        self.sources: Json = self.manifest.get("sources") or {}
        self.dialect = dialect_of((self.manifest.get("metadata") or {}).get("adapter_type"))
        self.by_relation: dict[Relation, str] = {}
        for uid, node in {**self.sources, **self.nodes}.items():
            if node.get("resource_type") in ("model", "seed", "snapshot", "source"):
                self.by_relation.setdefault(_node_relation(node), uid)
        self._previous: Json | None = None
        self._previous_loaded = False

    # -- helpers ---------------------------------------------------------------------------------

    def _warehouse(self, node: Json) -> list[Col] | None:
        found = self.warehouse.get(".".join(_node_relation(node)))
        return None if found is None else [Col(name, " ".join(t.lower().split())) for name, t in found]

    def _declared(self, node: Json, typed_only: bool = False) -> list[Col] | None:
        columns = node.get("columns") or {}
        if not columns:
            return None
        found = [
            Col(str(col.get("name") or name), (col.get("data_type") or None) if isinstance(col, dict) else None)
            for name, col in columns.items()
        ]
        if typed_only and any(c.data_type is None for c in found):
            return None
        return found

    def _unchanged(self, uid: str, node: Json) -> bool:
        """Whether the last build ran exactly this compiled code for `uid`."""
        if not self._previous_loaded:
            self._previous_loaded = True
            try:
                self._previous = self.previous()
            except MeshError:
                self._previous = None
        before = ((self._previous or {}).get("nodes") or {}).get(uid)
        code = node.get("compiled_code")
        return isinstance(before, dict) and isinstance(code, str) and before.get("compiled_code") == code

    # -- judging ---------------------------------------------------------------------------------

    def judge(self, uid: str) -> Judged:
        if uid in self.memo:
            return self.memo[uid]
        self.memo[uid] = Judged(None, f"{uid} reads itself")  # a cycle resolves to "cannot tell"
        result = self._judge(uid)
        self.memo[uid] = result
        return result

    def _judge(self, uid: str) -> Judged:
        node = self.nodes.get(uid) or self.sources.get(uid)
        if node is None:
            return Judged(None, f"{uid} is not in the manifest")
        kind = node.get("resource_type")
        own = node.get("package_name") == (self.manifest.get("metadata") or {}).get("project_name")
        if kind == "source":
            if own or not uid.startswith("source."):
                found = self._warehouse(node)
                if found is not None:
                    return Judged(found, source="warehouse")
            declared = self._declared(node)
            if declared is not None:
                return Judged(declared, source="declared")
            return Judged(None, f"source {uid} declares no columns and is not in the warehouse")
        if not own:  # an upstream's public node, injected by dbt-loom: its published columns
            declared = self._declared(node)
            return Judged(declared, source="declared") if declared else Judged(None, f"{uid} publishes no columns")
        if kind == "model" and has_enforced_contract(node):
            return Judged(self._declared(node) or [], source="contract")
        if kind == "seed":
            return self._seed(node)
        if node.get("language", "sql") != "sql":
            return self._fallback(uid, node, f"{uid} is a {node.get('language')} model")
        code = node.get("compiled_code")
        if not isinstance(code, str) or not code.strip():
            return self._fallback(uid, node, f"{uid} has no compiled SQL")
        judged = self._select(uid, node, code)
        if judged.columns is None:
            return self._fallback(uid, node, judged.why)
        if kind == "snapshot":
            config = node.get("config") or {}
            names = config.get("snapshot_meta_column_names") or {}
            seen = {c.name.lower() for c in judged.columns}
            for column in _SNAPSHOT_COLUMNS:
                name = str(names.get(column) or column)
                if name.lower() not in seen:
                    judged.columns.append(Col(name))
        return judged

    def _fallback(self, uid: str, node: Json, why: str) -> Judged:
        """A node whose code cannot be read: the warehouse's columns when it is unchanged."""
        found = self._warehouse(node)
        if found is not None and self._unchanged(uid, node):
            return Judged(found, source="warehouse")
        return Judged(None, why)

    def _seed(self, node: Json) -> Judged:
        found = self._warehouse(node)
        root = node.get("root_path")
        path = Path(str(root)) / str(node.get("original_file_path") or "") if root else None
        header: list[str] | None = None
        if path is not None and path.is_file():
            with open(path, newline="", encoding="utf-8-sig") as handle:
                header = next(csv.reader(handle), None)
        if header is None:
            return Judged(found, source="warehouse") if found is not None else Judged(None, f"seed {node.get('unique_id')} has no readable CSV")
        typed = {str(k).lower(): str(v) for k, v in ((node.get("config") or {}).get("column_types") or {}).items()}
        known = {c.name.lower(): c.data_type for c in found or []}
        columns = [Col(name, typed.get(name.lower()) or known.get(name.lower())) for name in header]
        return Judged(columns, source="code")

    def _select(self, uid: str, node: Json, code: str) -> Judged:
        import sqlglot
        from sqlglot import exp
        from sqlglot.errors import SqlglotError
        from sqlglot.optimizer.annotate_types import annotate_types
        from sqlglot.optimizer.qualify import qualify

        try:
            tree = sqlglot.parse_one(code, dialect=self.dialect)
        except (SqlglotError, ValueError) as exc:
            return Judged(None, f"sqlglot cannot parse {uid}: {' '.join(str(exc).split())[:120]}")
        if tree is None or not isinstance(tree, exp.Query):
            return Judged(None, f"{uid} is not a SELECT")
        ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
        schema: dict[str, Any] = {}
        for table in tree.find_all(exp.Table):
            relation = _key(table.catalog, table.db, table.name)
            if not table.db and relation[2] in ctes:
                continue
            parent = self.by_relation.get(relation)
            if parent is None:
                if not relation[2]:
                    return Judged(None, f"{uid} reads {' '.join(table.sql().split())[:80]}, whose columns are not known")
                return Judged(None, f"{uid} reads {'.'.join(p for p in relation if p)}, which is no node of the manifest")
            judged = self.judge(parent)
            if judged.columns is None:
                return Judged(None, judged.why)
            types = {c.name.lower(): (c.data_type or "unknown") for c in judged.columns}
            schema.setdefault(relation[0], {}).setdefault(relation[1], {})[relation[2]] = types
        try:
            qualified = qualify(
                tree, schema=schema or None, dialect=self.dialect, validate_qualify_columns=False,
                quote_identifiers=False, identify=False,
            )
            annotated = annotate_types(qualified, schema=schema or None, dialect=self.dialect)
        except (SqlglotError, ValueError, KeyError, AttributeError, RecursionError, TypeError) as exc:
            return Judged(None, f"sqlglot cannot qualify {uid}: {' '.join(str(exc).split())[:120]}")
        columns: list[Col] = []
        for projection in annotated.selects:
            if isinstance(projection, exp.Star) or (
                isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star)
            ):
                return Judged(None, f"{uid} selects * from a relation whose columns are not known")
            name = projection.alias_or_name
            if not name:
                return Judged(None, f"{uid} has an output column without a name")
            columns.append(Col(name, self._type_of(projection)))
        return Judged(columns)

    def _type_of(self, projection: Any) -> str | None:
        """The type the code states: an explicit cast, or a column passed through with a known type."""
        from sqlglot import exp

        inner = projection.unalias()
        while isinstance(inner, exp.Paren):
            inner = inner.this
        if not isinstance(inner, (exp.Cast, exp.TryCast, exp.Column)):
            return None
        data_type = inner.to if isinstance(inner, (exp.Cast, exp.TryCast)) else inner.type
        if data_type is None or data_type.is_type(exp.DataType.Type.UNKNOWN):
            return None
        if data_type.is_type(exp.DataType.Type.TEXT) and not data_type.expressions:
            return "varchar"  # DuckDB's and Snowflake's own name for it
        return str(data_type.sql(dialect=self.dialect)).lower()


def published_spelling(inferred: str | None, published: str | None, dialect: str | None) -> str | None:
    """The inferred type in the spelling the interface already uses, when both name one type."""
    if inferred is None:
        return None
    if published and same_type(inferred, published, dialect):
        return published
    return inferred
