"""A producer that writes several databases (`+database: dbt_up_gold` on its marts), read by both
consumer styles: cold, unchanged and changed runs; write-audit-publish covers every file it writes;
no profile is edited by hand."""

from __future__ import annotations

from pathlib import Path

import duckdb
import orjson
import pytest

from mesh.core.errors import BuildFailedError, ConfigError
from mesh.project.config import load_mesh
from mesh.project.profiles import check_profiles
from mesh.run.pipeline import MeshRun, run_mesh
from tests.conftest import copy_template

pytestmark = pytest.mark.slow


def run(root: Path) -> MeshRun:
    return run_mesh(load_mesh(root, "local"), say=lambda _m: None)


def statuses(result: MeshRun) -> dict[str, str]:
    return {o.project: o.status for o in result.outcomes}


def gold_template(tmp: Path) -> Path:
    root = copy_template(tmp / "mesh")
    spec = root / "dbt_up/dbt_project.yml"
    text = spec.read_text()
    anchor = "    marts:\n      +materialized: table\n      +schema: marts\n"
    assert anchor in text
    spec.write_text(text.replace(anchor, anchor + "      +database: dbt_up_gold\n"))
    return root


def completed(root: Path, project: str, sql: str) -> object:
    with duckdb.connect(str(root / "warehouse" / f"{project}.duckdb"), read_only=True) as con:
        if project.startswith("dbt_down"):
            con.execute(f"attach '{root / 'warehouse/dbt_up_gold.duckdb'}' as dbt_up_gold (read_only)")
        return con.execute(sql).fetchone()[0]  # type: ignore[index]


def test_a_producer_writing_two_databases_across_three_runs(tmp_path: Path) -> None:
    root = gold_template(tmp_path)
    profiles_before = (root / "profiles/profiles.yml").read_bytes()

    cold = run(root)
    assert statuses(cold) == {"dbt_up": "built", "dbt_down": "built", "dbt_down_loom": "built"}
    latest = orjson.loads((root / "registry/dbt_up/local/latest/manifest.json").read_bytes())
    assert {n["database"] for n in latest["nodes"].values()} == {"dbt_up_gold"}
    assert (root / "warehouse/dbt_up_gold.duckdb").is_file()
    truth = completed(root, "dbt_up_gold", "select count(*) from marts.public_orders where status = 'completed'")
    for consumer in ("dbt_down", "dbt_down_loom"):
        assert completed(root, consumer, "select sum(completed_order_count) from marts.customer_orders") == truth
        manifest = orjson.loads((root / consumer / "target/manifest.json").read_bytes())
        relations = {
            n.get("relation_name") for n in {**manifest["nodes"], **manifest["sources"]}.values()
            if "public_orders" in str(n.get("relation_name"))
        }
        assert relations and all(str(r).startswith('"dbt_up_gold"') for r in relations), relations
    assert (root / "profiles/profiles.yml").read_bytes() == profiles_before  # nothing edited

    assert statuses(run(root)) == dict.fromkeys(("dbt_up", "dbt_down", "dbt_down_loom"), "skipped")

    seed = root / "dbt_up/seeds/raw_orders.csv"
    seed.write_text(seed.read_text().replace(",shipped", ",completed", 1))
    changed = run(root)
    assert statuses(changed) == dict.fromkeys(("dbt_up", "dbt_down", "dbt_down_loom"), "built")
    truth = completed(root, "dbt_up_gold", "select count(*) from marts.public_orders where status = 'completed'")
    for consumer in ("dbt_down", "dbt_down_loom"):
        assert completed(root, consumer, "select sum(completed_order_count) from marts.customer_orders") == truth

    # A failing test: every file the producer writes stays byte for byte as it was.
    files = [root / "warehouse/dbt_up.duckdb", root / "warehouse/dbt_up_gold.duckdb"]
    before = [f.read_bytes() for f in files]
    test = root / "dbt_up/tests/always_fails.sql"
    test.parent.mkdir(exist_ok=True)
    test.write_text("select 1 as failure from {{ ref('public_orders') }} limit 1\n")
    with pytest.raises(BuildFailedError):
        run(root)
    assert [f.read_bytes() for f in files] == before


def test_two_projects_writing_one_database_are_refused(tmp_path: Path) -> None:
    root = gold_template(tmp_path)
    spec = root / "dbt_down/dbt_project.yml"
    spec.write_text(spec.read_text().replace("      +schema: marts\n", "      +schema: marts\n      +database: dbt_up_gold\n", 1))
    with pytest.raises(ConfigError) as info:
        check_profiles(load_mesh(root, "local"))
    assert "dbt_up and dbt_down both write database dbt_up_gold" in str(info.value)
