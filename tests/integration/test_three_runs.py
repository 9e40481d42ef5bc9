"""Three runs of every style, on real dbt builds: cold, unchanged, changed.

For each fixture mesh: a cold run builds everything; a second run with nothing changed skips every
project without starting dbt; then one-line changes, each with a row in its table saying what it
must rebuild and why, and what the data must then say. After every run the published columns of
every public node equal the columns of the relation that is live, and the consumers' data agrees
with the producers'.

Styles: the template (a contracted producer, both consumer styles, monorepo), the interface mesh
(an uncontracted table, a public seed, an incremental model, a snapshot, a versioned model), the
chain (a middle project that consumes and publishes), the views mesh (uncontracted public views, a
middle project passing them on with `select *`, tables built from views), and one repository per
team (each with its own mesh.yml, sharing a registry folder and a warehouse folder).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from mesh.config import load_mesh
from mesh.pipeline import MeshRun, run_mesh
from tests.conftest import REPO, copy_template

pytestmark = pytest.mark.slow
FIXTURES = REPO / "tests" / "fixtures"
IGNORED = shutil.ignore_patterns("target", "logs", ".mesh", "warehouse", "registry", "lineage", "dbt_packages")


def quiet(_line: str) -> None:
    """The tests read outcomes, not progress lines."""


def query(warehouse: Path, project: str, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(warehouse / f"{project}.duckdb"), read_only=True) as connection:
        return connection.execute(sql).fetchall()


def one(warehouse: Path, project: str, sql: str) -> Any:
    return query(warehouse, project, sql)[0][0]


def published_columns_are_live(registry: Path, warehouse: Path) -> None:
    """Every public node of every producer: the interface's columns are the live relation's, in
    name, and in type where the interface took them from the warehouse."""
    checked = 0
    for latest in sorted(registry.glob("*/*/latest/manifest.json")):
        project = latest.parts[-4]
        doc = orjson.loads(latest.read_bytes())
        for uid, node in doc["nodes"].items():
            if (node.get("config") or {}).get("materialized") == "ephemeral":
                continue
            rows = query(
                warehouse, project,
                "select column_name, data_type from duckdb_columns() where database_name = ? "
                "and schema_name = ? and table_name = ? order by column_index"
                .replace("?", "'{}'").format(node["database"], node["schema"], node["alias"]),
            )
            live = {name.lower(): str(kind).lower() for name, kind in rows}
            published = {name.lower(): col for name, col in node["columns"].items()}
            assert set(published) == set(live), (uid, sorted(published), sorted(live))
            for name, col in published.items():
                if col.get("contract") is False:
                    assert " ".join(str(col["data_type"]).split()) == live[name], (uid, name, col, live[name])
            checked += 1
    assert checked, "no public node was checked"


@dataclass
class Change:
    """A one-line change, what each project must do in the next run (built/skipped) and why, and
    what the data must say afterwards."""

    what: str
    edit: Callable[[Path], None]
    expect: dict[str, str]  # project -> "built" | "skipped"
    reasons: dict[str, str] = field(default_factory=dict)  # project -> part of why it built
    check: Callable[[Path], None] = lambda _root: None


def replace_in(path: str, old: str, new: str) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        file = root / path
        text = file.read_text()
        assert old in text, (path, old)
        file.write_text(text.replace(old, new, 1))

    return edit


def append_to(path: str, line: str) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        file = root / path
        file.write_text(file.read_text() + line + "\n")

    return edit


# --- the styles ---------------------------------------------------------------------------------


def template_consistent(root: Path) -> None:
    w = root / "warehouse"
    completed = one(w, "dbt_up", "select count(*) from marts.public_orders where status = 'completed'")
    for consumer in ("dbt_down", "dbt_down_loom"):
        assert one(w, consumer, "select sum(completed_order_count) from marts.customer_orders") == completed, consumer


TEMPLATE = [
    Change(
        "a shipped order completed in the producer's seed: its public data changed, its interface did not",
        replace_in("dbt_up/seeds/raw_orders.csv", ",shipped", ",completed"),
        {"dbt_up": "built", "dbt_down": "built", "dbt_down_loom": "built"},
        {"dbt_down": "upstream data changed: dbt_up.public_orders", "dbt_down_loom": "upstream data changed: dbt_up.public_orders"},
    ),
    Change(
        "a comment in a private model of the producer: its data did not change",
        append_to("dbt_up/models/staging/stg_orders.sql", "-- a comment"),
        {"dbt_up": "built", "dbt_down": "skipped", "dbt_down_loom": "skipped"},
        {"dbt_up": "changed"},
    ),
    Change(
        "a comment in each consumer: each rebuilds alone",
        lambda root: [append_to(f"{p}/models/marts/customer_orders.sql", "-- a comment")(root) for p in ("dbt_down", "dbt_down_loom")],
        {"dbt_up": "skipped", "dbt_down": "built", "dbt_down_loom": "built"},
    ),
]


def interface_consistent(root: Path) -> None:
    w = root / "warehouse"
    names = dict(query(w, "shop", "select code, name from raw.countries"))
    for consumer, table in (("ledger", "marts.ledger_orders"), ("report", "marts.report_orders")):
        rows = query(w, consumer, f"select distinct country_name from {table}")
        assert {r[0] for r in rows} <= set(names.values()), (consumer, rows)
    total = one(w, "shop", "select sum(amount) from marts.order_facts")
    assert one(w, "ledger", "select sum(amount) from marts.ledger_orders") == total
    assert one(w, "report", "select sum(amount) from marts.report_orders") == total


INTERFACE = [
    Change(
        "a country renamed in the public seed",
        replace_in("shop/seeds/countries.csv", "Germany", "Deutschland"),
        {"shop": "built", "ledger": "built", "report": "built"},
        {"ledger": "upstream data changed: shop.countries", "report": "upstream data changed: shop.countries"},
        lambda root: [
            assert_has(root, consumer, f"select count(*) from marts.{consumer}_orders where country_name = 'Deutschland'")
            for consumer in ("ledger", "report")
        ],
    ),
    Change(
        "a column added to the uncontracted public table",
        replace_in("shop/models/marts/order_facts.sql", "    status\n", "    status,\n    1 as probe_col\n"),
        {"shop": "built", "ledger": "built", "report": "built"},
        {"ledger": "upstream interface changed", "report": "upstream interface changed"},
    ),
]


def assert_has(root: Path, project: str, sql: str) -> None:
    assert one(root / "warehouse", project, sql) > 0, (project, sql)


def chain_consistent(root: Path) -> None:
    w = root / "warehouse"
    revenue = one(
        w, "core",
        "select sum(o.amount) from marts.orders o join marts.customers c using (customer_id) where o.status = 'completed'",
    )
    assert one(w, "finance", "select sum(revenue) from marts.monthly_revenue") == revenue


CHAIN = [
    Change(
        "an order's amount changed in core's seed: the middle project and finance follow",
        lambda root: _bump_first_amount(root / "core/seeds/raw_orders.csv"),
        {"core": "built", "marketing": "built", "finance": "built"},
        {"marketing": "upstream data changed: core.", "finance": "upstream data changed: core."},
    ),
]


def _bump_first_amount(path: Path) -> None:
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    column = header.index("amount")
    row = lines[1].split(",")
    row[column] = str(float(row[column]) + 1000)
    lines[1] = ",".join(row)
    path.write_text("\n".join(lines) + "\n")


def views_consistent(root: Path) -> None:
    w = root / "warehouse"
    factor = 3 if "* 3" in (root / "pricing/models/priced_products.sql").read_text() else 2
    total = one(w, "catalog", "select sum(price) from public.products") * factor
    assert one(w, "reports", "select list_total from marts.revenue") == total
    assert one(w, "reports", "select count(*) from marts.product_names") == one(w, "catalog", "select count(*) from public.products")


VIEWS = [
    Change(
        "a price changed in catalog's seed: it reaches reports' tables only through views",
        replace_in("catalog/seeds/raw_products.csv", "3,mug,7.25", "3,mug,9.25"),
        {"catalog": "built", "pricing": "built", "reports": "built"},
        {"pricing": "upstream data changed: catalog.products", "reports": "upstream data changed"},
    ),
    Change(
        "the middle project computes a column differently (price * 3): its interface is unchanged",
        replace_in("pricing/models/priced_products.sql", "price * 2", "price * 3"),
        {"catalog": "skipped", "pricing": "built", "reports": "built"},
        {"pricing": "changed", "reports": "upstream data changed: pricing.priced_products"},
    ),
]


def raw_consistent(root: Path) -> None:
    w = root / "warehouse"
    with duckdb.connect(str(w / "raw_db.duckdb"), read_only=True) as con:
        raw = con.execute("select sum(price) from main.products").fetchone()[0]  # type: ignore[index]
    # catalog's views read raw_db, which only its own profile attaches: the tables reports stored
    # through two projects of views must hold what the raw table holds now.
    assert one(w, "reports", "select list_total from marts.revenue") == raw * 2
    assert one(w, "reports", "select count(*) from marts.product_names") == one(w, "raw_db", "select count(*) from main.products")


def _raw_views(tmp: Path) -> Path:
    """The views mesh, with catalog reading a table loaded outside dbt (an attached raw database)
    instead of its seed: only a digest of the source's data can tell that it changed."""
    root = _copy(FIXTURES / "views_mesh")(tmp)
    (root / "warehouse").mkdir()
    with duckdb.connect(str(root / "warehouse/raw_db.duckdb")) as con:
        con.execute("create table main.products as select * from read_csv_auto(?)", [str(root / "catalog/seeds/raw_products.csv")])
    (root / "catalog/seeds/raw_products.csv").unlink()
    (root / "catalog/models/_sources.yml").write_text(
        "version: 2\n\nsources:\n  - name: raw\n    database: raw_db\n    schema: main\n    tables:\n      - name: products\n"
    )
    staging = root / "catalog/models/stg_products.sql"
    staging.write_text(staging.read_text().replace("{{ ref('raw_products') }}", "{{ source('raw', 'products') }}"))
    profiles = root / "profiles/profiles.yml"
    profiles.write_text(profiles.read_text().replace(
        "      path: \"{{ env_var('MESH_BUILD_DIR', env_var('MESH_WAREHOUSE_DIR', 'warehouse')) }}/catalog.duckdb\"\n      schema: main\n      threads: 4\n",
        "      path: \"{{ env_var('MESH_BUILD_DIR', env_var('MESH_WAREHOUSE_DIR', 'warehouse')) }}/catalog.duckdb\"\n      schema: main\n      threads: 4\n"
        "      attach:\n        - path: \"{{ env_var('MESH_WAREHOUSE_DIR', 'warehouse') }}/raw_db.duckdb\"\n          alias: raw_db\n          read_only: true\n",
        1,
    ))
    return root


def _load_more_raw(root: Path) -> None:
    with duckdb.connect(str(root / "warehouse/raw_db.duckdb")) as con:
        con.execute("insert into main.products values (5, 'spoon', 3.50)")


RAW = [
    Change(
        "a row loaded into the producer's raw source, outside dbt: no file of any project changed",
        _load_more_raw,
        {"catalog": "built", "pricing": "built", "reports": "built"},
        {"catalog": "source data changed: main.products", "reports": "upstream data changed"},
    ),
]


@dataclass
class Style:
    name: str
    prepare: Callable[[Path], Path]
    consistent: Callable[[Path], None]
    changes: list[Change]


def _copy(source: Path) -> Callable[[Path], Path]:
    def prepare(tmp: Path) -> Path:
        root = tmp / source.name
        shutil.copytree(source, root, ignore=IGNORED)
        return root

    return prepare


STYLES = [
    Style("template", lambda tmp: copy_template(tmp / "template"), template_consistent, TEMPLATE),
    Style("interface", _copy(FIXTURES / "interface_mesh"), interface_consistent, INTERFACE),
    Style("chain", _copy(REPO / "examples" / "chain"), chain_consistent, CHAIN),
    Style("views", _copy(FIXTURES / "views_mesh"), views_consistent, VIEWS),
    Style("raw", _raw_views, raw_consistent, RAW),
]


def run(root: Path) -> MeshRun:
    return run_mesh(load_mesh(root, "local"), say=quiet)


def statuses(result: MeshRun) -> dict[str, str]:
    return {o.project: o.status for o in result.outcomes}


def logs_of(root: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (root / "logs").glob("*.log")}


@pytest.mark.parametrize("style", STYLES, ids=[s.name for s in STYLES])
def test_cold_unchanged_and_changed_runs(style: Style, tmp_path: Path) -> None:
    root = style.prepare(tmp_path)
    projects = list(load_mesh(root, "local").build_order())

    cold = run(root)
    assert statuses(cold) == dict.fromkeys(projects, "built")
    published_columns_are_live(root / "registry", root / "warehouse")
    style.consistent(root)

    logs = logs_of(root)
    unchanged = run(root)
    assert statuses(unchanged) == dict.fromkeys(projects, "skipped")
    assert logs_of(root) == logs  # no worker started: no dbt log was even opened

    for change in style.changes:
        change.edit(root)
        result = run(root)
        assert statuses(result) == change.expect, change.what
        for project, reason in change.reasons.items():
            outcome = next(o for o in result.outcomes if o.project == project)
            assert reason in outcome.reason, (change.what, project, outcome.reason)
        published_columns_are_live(root / "registry", root / "warehouse")
        style.consistent(root)
        change.check(root)


# --- one repository per team -----------------------------------------------------------------------

MESH = str(Path(sys.executable).parent / "mesh")


def _team(base: Path, project: str, upstreams: list[str]) -> Path:
    from tests.integration.test_one_repository_per_team import team_repository

    return team_repository(base, project, upstreams)


def _mesh(repo: Path, env: dict[str, str], *args: str) -> str:
    out = subprocess.run([MESH, *args], cwd=repo, capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0, f"mesh {' '.join(args)}: {out.stdout}\n{out.stderr}"
    return out.stdout


def test_three_runs_in_repositories_per_team(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "MESH_REGISTRY": f"file://{tmp_path / 'registry'}",
        "MESH_WAREHOUSE_DIR": str(tmp_path / "warehouse"),
    }
    up = _team(tmp_path, "dbt_up", [])
    down = _team(tmp_path, "dbt_down", ["dbt_up"])
    _mesh(up, env, "add", ".")
    _mesh(down, env, "add", ".", "--via", "sources")
    w = tmp_path / "warehouse"

    def consistent() -> None:
        completed = one(w, "dbt_up", "select count(*) from marts.public_orders where status = 'completed'")
        assert one(w, "dbt_down", "select sum(completed_order_count) from marts.customer_orders") == completed

    # cold
    assert "1 built" in _mesh(up, env, "run")
    assert "1 built" in _mesh(down, env, "run")
    published_columns_are_live(tmp_path / "registry", w)
    consistent()
    # unchanged: both skip, twice in a row (the mesh's own output inside a project is no input)
    for _ in range(2):
        assert "1 skipped" in _mesh(up, env, "run")
        assert "1 skipped" in _mesh(down, env, "run")
    # changed: the producer's public data; the consumer's repository follows it on its next run
    replace_in("seeds/raw_orders.csv", ",shipped", ",completed")(up)
    assert "1 built" in _mesh(up, env, "run")
    out = _mesh(down, env, "run")
    assert "1 built" in out and "upstream data changed: dbt_up.public_orders" in out, out
    published_columns_are_live(tmp_path / "registry", w)
    consistent()
