"""Write-audit-publish on Snowflake, rehearsed on fakesnow's server as far as it goes.

Real dbt-snowflake builds dbt_up into the audit database through the profile's
DBT_UP_SNOWFLAKE_DATABASE (what `build_env` sets); the clone, the checks on the audit build's
manifest and the rewrite to production names run for real. fakesnow 0.12 stops short of promote:
it cannot parse SHOW GRANTS, GRANT/REVOKE, ALTER DATABASE … SWAP WITH or DROP DATABASE, and it
accepts CREATE DATABASE … CLONE but creates an empty database. `test_what_fakesnow_executes`
pins that list, so the README's "what only a real account proves" stays true.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from mesh.infra import emulate
from mesh.project.artifacts import extract_interface
from mesh.project.config import Mesh, load_mesh
from mesh.warehouse import snowflake as sf
from mesh.warehouse import snowflake_wap as wap
from mesh.warehouse.runner import run_dbt
from tests.conftest import copy_template

pytestmark = pytest.mark.slow

AUDIT = "DBT_UP_PROD__AUDIT"


@dataclass
class Rehearsal:
    root: Path
    mesh: Mesh
    plan: wap.WapPlan
    settings: sf.ConnectionSettings
    port: int

    def session(self) -> sf.Session:
        return sf.Session(self.settings, label="rehearsal")

    def manifest(self) -> dict[str, Any]:
        return dict(orjson.loads((self.root / "dbt_up/target/manifest.json").read_bytes()))


def _tables(session: sf.Session, database: str) -> set[str]:
    rows = session.run(
        f"SELECT TABLE_SCHEMA, TABLE_NAME FROM {database}.INFORMATION_SCHEMA.TABLES "
        "WHERE TABLE_SCHEMA <> 'INFORMATION_SCHEMA'"
    )
    return {f"{schema}.{name}" for schema, name in rows or []}


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rehearsal]:
    root = copy_template(tmp_path_factory.mktemp("wap") / "mesh")
    server = emulate.start_server("snowflake", emulate.fakesnow_argv, root / ".mesh/fakesnow.log")
    try:
        key = emulate.generate_key_pair(root / ".mesh/rsa_key.p8")
        emulate.create_databases(server.port, key, ["DBT_UP_PROD"])
        env = {
            "SNOWFLAKE_ACCOUNT": emulate.ACCOUNT,
            "SNOWFLAKE_USER": emulate.USER,
            "SNOWFLAKE_PRIVATE_KEY_PATH": str(key),
            "SNOWFLAKE_HOST": emulate.HOST,
            "SNOWFLAKE_PORT": str(server.port),
            "SNOWFLAKE_PROTOCOL": "http",
        }
        with pytest.MonkeyPatch.context() as mp:
            for name in list(os.environ):
                if name.startswith(("SNOWFLAKE_", "DBT_UP_", "MESH_")):
                    mp.delenv(name)
            for name, value in env.items():
                mp.setenv(name, value)
            mesh = load_mesh(root, "prod")
            plan = wap.plan_for(mesh, "dbt_up")
            settings = sf.project_connection_settings(
                sf.load_layout(root).projects["dbt_up"], query_tag="rehearsal"
            )
            yield Rehearsal(root, mesh, plan, settings, server.port)
    finally:
        emulate.stop_server(server)


@pytest.fixture(scope="module")
def audit_build(rehearsal: Rehearsal) -> dict[str, Any]:
    """prepare, then `dbt build` with build_env: the audit build's manifest."""
    assert wap.prepare(rehearsal.mesh, rehearsal.plan) == [
        f"CREATE DATABASE {AUDIT} CLONE DBT_UP_PROD"
    ]
    with pytest.MonkeyPatch.context() as mp:
        for name, value in wap.build_env(rehearsal.plan).items():
            mp.setenv(name, value)
        run = run_dbt(rehearsal.mesh, "dbt_up", ["build"])
    assert run.success and run.warnings == [], run.summary()
    return rehearsal.manifest()


def test_prepare_refuses_an_audit_copy_left_behind(
    rehearsal: Rehearsal, audit_build: dict[str, Any]
) -> None:
    with pytest.raises(wap.WapStateError, match=f"{AUDIT} exists already") as caught:
        wap.prepare(rehearsal.mesh, rehearsal.plan)
    assert "--step discard" in str(caught.value) and caught.value.exit_code == 1


def test_prepare_refuses_a_missing_production_database(rehearsal: Rehearsal) -> None:
    plan = wap.plan_for(rehearsal.mesh, "dbt_up", env={"DBT_UP_SNOWFLAKE_DATABASE": "NOPE_PROD"})
    with pytest.raises(wap.WapStateError, match="NOPE_PROD does not exist"):
        wap.prepare(rehearsal.mesh, plan)


def test_the_build_lands_in_the_audit_copy_only(
    rehearsal: Rehearsal, audit_build: dict[str, Any]
) -> None:
    with rehearsal.session() as session:
        built = _tables(session, AUDIT)
        assert {
            "MARTS.PUBLIC_ORDERS",
            "MARTS.CUSTOMER_SCORING",
            "FINANCE.PUBLIC_DAILY_REVENUE",
        } <= built
        assert _tables(session, "DBT_UP_PROD") == set()  # production untouched
    databases = {
        n["database"] for n in audit_build["nodes"].values() if n["resource_type"] != "test"
    }
    assert databases == {AUDIT}


def test_views_compile_without_the_database_and_pass_the_check(
    rehearsal: Rehearsal, audit_build: dict[str, Any]
) -> None:
    views = {
        uid: node["compiled_code"]
        for uid, node in audit_build["nodes"].items()
        if node["config"].get("materialized") == "view"
    }
    assert len(views) == 4
    for code in views.values():
        assert AUDIT.lower() not in code.lower()
    assert "from raw.raw_orders" in views["model.dbt_up.stg_orders"]
    wap.check_audit_manifest(rehearsal.plan, audit_build)
    with rehearsal.session() as session:
        session.run("USE DATABASE DBT_UP_PROD")  # another current database than the view's
        # On fakesnow (DuckDB) a view binds its names in its own database, as Snowflake does.
        assert session.run(f"SELECT COUNT(*) FROM {AUDIT}.STAGING.STG_ORDERS") == [(25,)]


def test_the_rewritten_interface_is_a_direct_builds(
    rehearsal: Rehearsal, audit_build: dict[str, Any], tmp_path: Path
) -> None:
    audit_nodes, audit_groups = extract_interface(wap.rewrite_manifest(audit_build, rehearsal.plan))
    direct_root = copy_template(tmp_path / "direct")
    run_dbt(load_mesh(direct_root, "prod"), "dbt_up", ["parse"])
    direct = orjson.loads((direct_root / "dbt_up/target/manifest.json").read_bytes())
    direct_nodes, direct_groups = extract_interface(direct)
    assert audit_nodes == direct_nodes and audit_groups == direct_groups
    assert {n["database"] for n in audit_nodes.values()} == {"DBT_UP_PROD"}
    relation = audit_nodes["model.dbt_up.public_orders"]["relation_name"]
    assert relation == "DBT_UP_PROD.marts.public_orders"


def test_without_the_macro_a_view_names_the_audit_copy_and_promote_refuses(
    rehearsal: Rehearsal, audit_build: dict[str, Any], tmp_path: Path
) -> None:
    root = copy_template(tmp_path / "nomacro")
    (root / "dbt_up/macros/mesh_refs.sql").unlink()
    mesh = load_mesh(root, "prod")
    with pytest.MonkeyPatch.context() as mp:
        for name, value in wap.build_env(rehearsal.plan).items():
            mp.setenv(name, value)
        assert run_dbt(mesh, "dbt_up", ["compile", "--select", "stg_orders"]).success
    manifest = orjson.loads((root / "dbt_up/target/manifest.json").read_bytes())
    assert (
        f"{AUDIT}.raw.raw_orders" in manifest["nodes"]["model.dbt_up.stg_orders"]["compiled_code"]
    )
    with pytest.raises(
        wap.WapRefusedError, match=r"view model\.dbt_up\.stg_orders reads "
    ) as caught:
        wap.promote(mesh, rehearsal.plan, manifest)
    assert "macros/mesh_refs.sql" in str(caught.value)


def test_production_changes_are_found_by_the_query_promote_runs(rehearsal: Rehearsal) -> None:
    """fakesnow reports LAST_ALTERED as 1970-01-01: a clone time before it makes every table of
    production one written after the clone, which is what promote refuses to swap away."""
    with rehearsal.session() as session:
        session.run("CREATE SCHEMA IF NOT EXISTS DBT_UP_PROD.RAW")
        session.run("CREATE TABLE IF NOT EXISTS DBT_UP_PROD.RAW.LOADED_BY_ELT AS SELECT 1 AS ID")
        before = datetime(1969, 12, 31, tzinfo=UTC)
        assert wap.production_changes(session, rehearsal.plan, before) == ["RAW.LOADED_BY_ELT"]
        assert wap.production_changes(session, rehearsal.plan, datetime.now(UTC)) == []
        session.run("DROP TABLE DBT_UP_PROD.RAW.LOADED_BY_ELT")


def test_promote_stops_where_fakesnow_stops_and_changes_nothing(
    rehearsal: Rehearsal, audit_build: dict[str, Any]
) -> None:
    with pytest.raises(sf.SnowflakeExecutionError) as caught:
        wap.promote(rehearsal.mesh, rehearsal.plan, audit_build)
    message = str(caught.value)
    assert message.startswith(
        "write-audit-publish of dbt_up failed on `SHOW GRANTS ON DATABASE DBT_UP_PROD`"
    )
    assert "\n" not in message
    with rehearsal.session() as session:
        assert "MARTS.PUBLIC_ORDERS" in _tables(session, AUDIT)
        assert _tables(session, "DBT_UP_PROD") == set()


def test_discard_stops_where_fakesnow_stops(
    rehearsal: Rehearsal, audit_build: dict[str, Any]
) -> None:
    with pytest.raises(
        sf.SnowflakeExecutionError, match="`DROP DATABASE IF EXISTS DBT_UP_PROD__AUDIT`"
    ):
        wap.discard(rehearsal.mesh, rehearsal.plan)


def test_what_fakesnow_executes(rehearsal: Rehearsal) -> None:
    """Each statement kind WAP and the grants use, as fakesnow 0.12 answers it. When fakesnow
    learns one, this fails: move it in the README from "only a real account" to "emulated"."""
    plan = rehearsal.plan
    statements = {
        "CREATE DATABASE WAP_SRC": True,
        "CREATE SCHEMA WAP_SRC.MARTS": True,
        "CREATE TABLE WAP_SRC.MARTS.T AS SELECT 1 AS ID": True,
        "CREATE DATABASE WAP_SRC__AUDIT CLONE WAP_SRC": True,  # accepted, but the copy is empty
        "CREATE TABLE WAP_SRC.MARTS.T2 CLONE WAP_SRC.MARTS.T": True,  # a table clone is a copy
        "SHOW DATABASES LIKE 'WAP_SRC%'": True,
        "SHOW GRANTS ON DATABASE WAP_SRC": False,
        "GRANT USAGE ON DATABASE WAP_SRC__AUDIT TO ROLE R": False,
        "GRANT SELECT ON TABLE WAP_SRC__AUDIT.MARTS.T TO ROLE R": False,
        "REVOKE SELECT ON TABLE WAP_SRC__AUDIT.MARTS.T FROM ROLE R": False,
        "ALTER DATABASE WAP_SRC SWAP WITH WAP_SRC__AUDIT": False,
        "ALTER SCHEMA WAP_SRC.MARTS SWAP WITH WAP_SRC__AUDIT.MARTS": False,
        "ALTER TABLE WAP_SRC.MARTS.T SWAP WITH WAP_SRC.MARTS.T2": False,
        "ALTER DATABASE WAP_SRC RENAME TO WAP_OLD": False,
        "DROP DATABASE IF EXISTS WAP_SRC__AUDIT": False,
    }
    answers = {}
    with rehearsal.session() as session:
        for statement in statements:
            try:
                session.run(statement)
                answers[statement] = True
            except sf.SnowflakeExecutionError as exc:
                assert "Parser Error" in str(exc), exc
                answers[statement] = False
        assert _tables(session, "WAP_SRC__AUDIT") == set()  # the "clone" holds nothing
    assert answers == statements
    assert plan.audit_database == AUDIT


def test_the_task_prints_every_step(rehearsal: Rehearsal, audit_build: dict[str, Any]) -> None:
    import subprocess
    import sys

    shutil.copy2(Path(__file__).resolve().parents[2] / "tasks_infra.py", rehearsal.root)
    (rehearsal.root / "dbt_up/target/manifest.json").write_bytes(orjson.dumps(audit_build))

    def task(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "invoke", "-c", "tasks_infra", "snowflake.wap", *args],
            cwd=rehearsal.root, capture_output=True, text=True, stdin=subprocess.DEVNULL,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        )  # fmt: skip

    env = task("--project", "dbt_up", "--step", "env")
    assert env.stdout.strip() == f"export DBT_UP_SNOWFLAKE_DATABASE={AUDIT}"
    promote = task("--project", "dbt_up", "--step", "promote", "--previous", "none", "--dry-run")
    assert promote.returncode == 0, promote.stderr
    lines = promote.stdout.splitlines()
    assert lines[-3:-1] == [
        f"ALTER DATABASE DBT_UP_PROD SWAP WITH {AUDIT};",
        f"DROP DATABASE {AUDIT};",
    ]
    selects = {line.split()[4] for line in lines if line.startswith("GRANT SELECT")}
    assert selects == {
        f"{AUDIT}.MARTS.PUBLIC_ORDERS", f"{AUDIT}.MARTS.ORDER_PAYMENTS",
        f"{AUDIT}.MARTS.PUBLIC_CUSTOMERS_V1", f"{AUDIT}.MARTS.PUBLIC_CUSTOMERS_V2",
        f"{AUDIT}.FINANCE.PUBLIC_DAILY_REVENUE",
    }  # fmt: skip
    assert not any("CUSTOMER_SCORING" in line for line in lines)


def test_a_project_writing_a_second_database_is_refused_before_anything_is_built(
    rehearsal: Rehearsal, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its `+database` would make dbt write that database live, outside the one clone WAP swaps."""
    from mesh.ui.cli import main

    spec = rehearsal.root / "dbt_up/dbt_project.yml"
    before = spec.read_text()
    with rehearsal.session() as session:
        databases = {row[1] for row in session.run("SHOW DATABASES") or []}
    try:
        spec.write_text(before.replace("    marts:\n", "    marts:\n      +database: dbt_up_gold\n"))
        code = main(["--root", str(rehearsal.root), "--target", "prod", "build", "--project", "dbt_up"])
        out = capsys.readouterr()
    finally:
        spec.write_text(before)
    assert code != 0
    assert (
        "dbt_up writes database DBT_UP_GOLD besides DBT_UP_PROD (its `database` configs): "
        "write-audit-publish on Snowflake clones and swaps one database per project"
    ) in out.out + out.err
    assert "nothing was built" in out.out + out.err
    with rehearsal.session() as session:
        assert {row[1] for row in session.run("SHOW DATABASES") or []} == databases
