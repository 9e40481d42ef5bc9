"""snowflake_sql/ and mesh/warehouse/snowflake.py: rendering, parsing, grants from an interface, settings.

The scripts are rendered and parsed with the real sqlglot; execution goes through the real
snowflake-connector-python, with key-pair auth, to fakesnow's server on loopback (it emulates the
database DDL; account-level DDL such as roles and warehouses only a real account proves).
"""

from __future__ import annotations

import copy
import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlglot
from sqlglot import exp

from mesh.core.errors import ConfigError, CredentialsError, MeshError
from mesh.infra import schema_rules
from mesh.infra import terraform as infra
from mesh.warehouse import snowflake as sf
from mesh.warehouse import snowflake_grants as sf_grants

ROOT = Path(__file__).resolve().parents[2]
SQL_DIR = ROOT / "snowflake_sql"
SCRIPTS = sorted(SQL_DIR.glob("[0-9][0-9]_*.sql"))


def invoke(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", "-c", "tasks_infra", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=env,
    )


def layouts() -> list[sf.MeshLayout]:
    found = [sf.DEFAULT_LAYOUT]
    if (ROOT / "mesh.yml").is_file():
        found.append(sf.load_layout(ROOT))
    return found


def sample_interface() -> dict[str, Any]:
    """A published interface as the producer writes it: public nodes only, Snowflake relations."""

    def node(name: str, materialized: str, **extra: Any) -> dict[str, Any]:
        return {
            "unique_id": f"model.dbt_up.{name}",
            "name": name,
            "resource_type": "model",
            "database": "DBT_UP_PROD",
            "schema": "MARTS",
            "alias": name,
            "relation_name": f"DBT_UP_PROD.MARTS.{name}",
            "access": "public",
            "version": None,
            "config": {"materialized": materialized},
            **extra,
        }

    nodes = {
        n["unique_id"]: n
        for n in (
            node("public_orders", "table"),
            node("public_customers", "view"),
            node("public_revenue", "incremental"),
        )
    }
    versioned = node("public_orders_v2", "table", version=2)
    versioned["unique_id"] = "model.dbt_up.public_orders.v2"
    nodes[versioned["unique_id"]] = versioned
    return {"metadata": {"project_name": "dbt_up"}, "nodes": nodes}


# --- the scripts render and parse ----------------------------------------------------------------


def test_the_numbered_scripts_exist() -> None:
    names = [p.name for p in SCRIPTS]
    for expected in (
        "01_warehouses.sql",
        "02_roles.sql",
        "03_databases.sql",
        "04_users.sql",
        "05_consumer_grants.sql",
        "07_write_audit_publish.sql",
    ):
        assert expected in names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_script_declares_its_unit_and_known_placeholders(script: Path) -> None:
    text = script.read_text()
    unit = sf.script_unit(text, script.name)
    known = set(sf.unit_contexts(unit, sf.DEFAULT_LAYOUT)[0][1])
    used = set(sf.PLACEHOLDER_RE.findall(text))
    assert used and used <= known, used - known


@pytest.mark.parametrize("layout", layouts(), ids=["default", "mesh.yml"][: len(layouts())])
def test_every_script_renders_and_parses_with_sqlglot(layout: sf.MeshLayout) -> None:
    rendered = sf.render_setup(layout, SQL_DIR)
    assert {r.name for r in rendered} == {p.name for p in SCRIPTS}
    for script in rendered:
        assert "{{" not in script.sql and "}}" not in script.sql
        expressions = sqlglot.parse(
            script.sql, read="snowflake", error_level=sqlglot.ErrorLevel.RAISE
        )
        assert [e for e in expressions if e is not None], script.name
    assert infra.check_sql(SQL_DIR, layout) == []


def test_rendering_covers_every_unit() -> None:
    rendered = sf.render_setup(sf.DEFAULT_LAYOUT, SQL_DIR)
    units = {(r.name, r.unit) for r in rendered}
    assert ("01_warehouses.sql", "DBT_UP_WH") in units
    assert ("01_warehouses.sql", "DBT_DOWN_WH") in units
    # The consumers share one warehouse, so it is created once.
    assert len([u for u in units if u[0] == "01_warehouses.sql"]) == 2
    assert {u for n, u in units if n == "03_databases.sql"} == {
        "dbt_up",
        "dbt_down",
        "dbt_down_loom",
    }
    # One unit per public schema of the producer (dbt_up names MARTS and FINANCE).
    assert {u for n, u in units if n == "05_consumer_grants.sql"} == {
        "dbt_down reads dbt_up",
        "dbt_down reads dbt_up (FINANCE)",
        "dbt_down_loom reads dbt_up",
        "dbt_down_loom reads dbt_up (FINANCE)",
    }
    without = sf.render_setup(sf.DEFAULT_LAYOUT, SQL_DIR, include_resource_monitors=False)
    assert "06_resource_monitors.sql" not in {r.name for r in without}
    assert {u for n, u in units if n == "07_write_audit_publish.sql"} == {
        "dbt_up",
        "dbt_down",
        "dbt_down_loom",
    }
    without = sf.render_setup(sf.DEFAULT_LAYOUT, SQL_DIR, include_wap=False)
    assert "07_write_audit_publish.sql" not in {r.name for r in without}


def test_the_wap_script_grants_create_database_to_the_project_role_only() -> None:
    scripts = [
        r
        for r in sf.render_setup(sf.DEFAULT_LAYOUT, SQL_DIR)
        if r.name == "07_write_audit_publish.sql"
    ]
    for script in scripts:
        statements, findings = schema_rules._sql_statements(script.sql, script.name)
        assert findings == []
        role = sf.DEFAULT_LAYOUT.projects[script.unit].role
        assert statements == [
            "USE ROLE SECURITYADMIN",
            f"GRANT CREATE DATABASE ON ACCOUNT TO ROLE {role}",
        ]


def test_scripts_are_idempotent() -> None:
    for script in sf.render_setup(sf.DEFAULT_LAYOUT, SQL_DIR):
        statements, _ = schema_rules._sql_statements(script.sql, script.name)
        for statement in statements:
            upper = " ".join(statement.split()).upper()
            assert not upper.startswith(("DROP", "DELETE", "TRUNCATE", "REVOKE"))
            if upper.startswith("CREATE"):
                assert "IF NOT EXISTS" in upper and "OR REPLACE" not in upper, statement


def test_consumer_grant_script_is_read_only_and_public_only() -> None:
    rendered = [
        r for r in sf.render_setup(sf.DEFAULT_LAYOUT, SQL_DIR) if r.name == "05_consumer_grants.sql"
    ]
    assert len(rendered) == 4  # two consumers, two public schemas (MARTS, FINANCE)
    schemas = set()
    for script in rendered:
        statements, findings = schema_rules._sql_statements(script.sql, script.name)
        assert findings == []
        grants = [s for s in statements if not s.upper().startswith("USE ROLE")]
        # USAGE on the database and the public schema; SELECT follows the interface, per relation.
        assert len(grants) == 2
        for statement in grants:
            parts = sf_grants.grant_statement_parts(statement)
            assert parts is not None, statement
            assert parts["privilege"] == "USAGE" and "bulk" not in parts
            assert "RAW" not in statement and "STAGING" not in statement
            assert parts.get("database", parts["schema_db"]) == "DBT_UP_PROD"
            schemas.add(parts["schema"])
    assert schemas == {"", "MARTS", "FINANCE"}


def test_sql_lint_catches_a_write_grant_to_a_consumer(tmp_path: Path) -> None:
    sql_dir = tmp_path / "snowflake_sql"
    sql_dir.mkdir()
    for script in SCRIPTS:
        (sql_dir / script.name).write_text(script.read_text())
    grants = sql_dir / "05_consumer_grants.sql"
    grants.write_text(
        grants.read_text() + "GRANT INSERT ON ALL TABLES IN SCHEMA {{ producer_database }}.RAW"
        " TO ROLE {{ consumer_role }};\n"
    )
    nothing_held = schema_rules.SchemaContents()
    rules = {f.rule for f in infra.check_sql(sql_dir, sf.DEFAULT_LAYOUT, nothing_held)}
    assert rules == {"sql-consumer-read-only"}
    grants.write_text(
        grants.read_text()
        .replace("GRANT INSERT", "GRANT SELECT")
        .replace(
            "SELECT ON ALL TABLES IN SCHEMA {{ producer_database }}.RAW",
            "SELECT ON ALL TABLES IN SCHEMA {{ producer_database }}.STAGING",
        )
    )
    rules = {f.rule for f in infra.check_sql(sql_dir, sf.DEFAULT_LAYOUT, nothing_held)}
    assert rules == {"sql-consumer-public-only"}


def test_sql_lint_catches_a_destructive_or_unparsable_script(tmp_path: Path) -> None:
    sql_dir = tmp_path / "snowflake_sql"
    sql_dir.mkdir()
    (sql_dir / "01_bad.sql").write_text(
        "-- mesh:render-per project\nDROP DATABASE {{ database }};\nCREATE ROLE {{ role }};\n"
    )
    rules = {f.rule for f in infra.check_sql(sql_dir, sf.DEFAULT_LAYOUT, schema_rules.SchemaContents())}
    assert "sql-idempotent" in rules
    (sql_dir / "01_bad.sql").write_text("-- mesh:render-per project\nSELECT (((;\n")
    rules = {f.rule for f in infra.check_sql(sql_dir, sf.DEFAULT_LAYOUT, schema_rules.SchemaContents())}
    assert rules == {"sql-parse"}


# --- identifiers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "X; DROP TABLE Y",
        "DBT UP",
        'DBT"UP',
        "DBT_UP_PROD.MARTS",
        "1DB",
        "",
        "DB--",
        "ÄRGER",
        "db\u200bup",
        None,
        42,
    ],
)
def test_unsafe_identifiers_are_rejected(value: object) -> None:
    with pytest.raises(sf.UnsafeIdentifierError):
        sf.check_identifier("database", value)
    with pytest.raises(ConfigError):
        sf.render_template("USE DATABASE {{ database }};", {"database": value})  # type: ignore[dict-item]


def test_identifiers_are_upper_cased_as_snowflake_resolves_them() -> None:
    assert sf.check_identifier("alias", "public_orders") == "PUBLIC_ORDERS"
    assert sf.check_identifier("role", "DBT_UP_ROLE") == "DBT_UP_ROLE"
    assert sf.check_identifier("name", "_A$1") == "_A$1"


def test_unknown_placeholder_is_an_error() -> None:
    with pytest.raises(sf.SqlTemplateError, match="unknown placeholder"):
        sf.render_template("USE ROLE {{ nope }};", {"role": "R"})
    with pytest.raises(sf.SqlTemplateError, match="render-per"):
        sf.script_unit("CREATE ROLE X;", "x.sql")


def test_layout_refuses_a_private_public_schema(tmp_path: Path) -> None:
    (tmp_path / "mesh.yml").write_text(
        "version: 1\nprojects:\n  dbt_up: {path: dbt_up}\n"
        "snowflake:\n  projects:\n"
        "    dbt_up: {database: DBT_UP_PROD, warehouse: DBT_UP_WH, role: DBT_UP_ROLE,"
        " public_schema: STAGING}\n"
    )
    with pytest.raises(ConfigError, match="private layer"):
        sf.load_layout(tmp_path)


def test_layout_reads_upstreams_from_dependencies_yml(tmp_path: Path) -> None:
    (tmp_path / "mesh.yml").write_text(
        "version: 1\nprojects:\n  dbt_up: {path: dbt_up}\n  dbt_down: {path: dbt_down}\n"
        "snowflake:\n  projects:\n"
        "    dbt_up: {database: DBT_UP_PROD, warehouse: DBT_UP_WH, role: DBT_UP_ROLE,"
        " public_schema: MARTS}\n"
        "    dbt_down: {database: dbt_down_prod, warehouse: DBT_DOWN_WH, role: DBT_DOWN_ROLE}\n"
    )
    (tmp_path / "dbt_down").mkdir()
    (tmp_path / "dbt_down" / "dependencies.yml").write_text("projects:\n  - name: dbt_up\n")
    layout = sf.load_layout(tmp_path)
    assert layout.projects["dbt_down"].upstreams == ("dbt_up",)
    assert layout.projects["dbt_down"].database == "DBT_DOWN_PROD"
    assert [p.name for p in layout.consumers_of("dbt_up")] == ["dbt_down"]

    (tmp_path / "dbt_down" / "dependencies.yml").write_text("projects:\n  - name: dbt_side\n")
    with pytest.raises(ConfigError, match=r"not in mesh\.yml"):
        sf.load_layout(tmp_path)


def test_layout_refuses_an_injected_identifier(tmp_path: Path) -> None:
    (tmp_path / "mesh.yml").write_text(
        "version: 1\nprojects:\n  dbt_up: {path: dbt_up}\n"
        "snowflake:\n  projects:\n"
        "    dbt_up: {database: 'X; DROP DATABASE Y', warehouse: W, role: R}\n"
    )
    with pytest.raises(sf.UnsafeIdentifierError):
        sf.load_layout(tmp_path)


# --- grants from the interface -------------------------------------------------------------------


def test_grants_for_interface_grant_exactly_the_public_relations() -> None:
    statements = sf_grants.grants_for_interface(
        sample_interface(), ["DBT_DOWN_ROLE", "DBT_DOWN_LOOM_ROLE"], producer_database="DBT_UP_PROD"
    )
    per_role = [
        "GRANT USAGE ON DATABASE DBT_UP_PROD TO ROLE {r}",
        "GRANT USAGE ON SCHEMA DBT_UP_PROD.MARTS TO ROLE {r}",
        "GRANT SELECT ON VIEW DBT_UP_PROD.MARTS.PUBLIC_CUSTOMERS TO ROLE {r}",
        "GRANT SELECT ON TABLE DBT_UP_PROD.MARTS.PUBLIC_ORDERS TO ROLE {r}",
        "GRANT SELECT ON TABLE DBT_UP_PROD.MARTS.PUBLIC_ORDERS_V2 TO ROLE {r}",
        "GRANT SELECT ON TABLE DBT_UP_PROD.MARTS.PUBLIC_REVENUE TO ROLE {r}",
    ]
    expected = [s.format(r="DBT_DOWN_LOOM_ROLE") for s in per_role] + [
        s.format(r="DBT_DOWN_ROLE") for s in per_role
    ]
    assert statements == expected


def test_interface_grants_are_read_only_and_parse_as_grants() -> None:
    for statement in sf_grants.grants_for_interface(sample_interface(), ["DBT_DOWN_ROLE"]):
        parts = sf_grants.grant_statement_parts(statement)
        assert parts is not None and parts["privilege"] in {"USAGE", "SELECT"}
        assert parts["schema"] in {"", "MARTS"}
        assert "RAW" not in statement and "STAGING" not in statement
        (expression,) = sqlglot.parse(statement, read="snowflake")
        assert isinstance(expression, exp.Grant), statement


def test_materialization_from_a_top_level_field() -> None:
    interface = sample_interface()
    node = interface["nodes"]["model.dbt_up.public_orders"]
    del node["config"]
    node["materialized"] = "view"
    statements = sf_grants.grants_for_interface(interface, ["R"])
    assert "GRANT SELECT ON VIEW DBT_UP_PROD.MARTS.PUBLIC_ORDERS TO ROLE R" in statements


def test_non_public_nodes_tests_and_ephemeral_models_get_nothing() -> None:
    interface = sample_interface()
    nodes = interface["nodes"]
    public = nodes["model.dbt_up.public_orders"]
    nodes["model.dbt_up.stg_orders"] = {
        **public, "name": "stg_orders", "alias": "stg_orders", "schema": "STAGING",
        "access": "protected",
    }  # fmt: skip
    nodes["model.dbt_up.customer_scoring"] = {
        **public, "name": "customer_scoring", "alias": "customer_scoring", "access": "protected",
    }  # fmt: skip
    nodes["seed.dbt_up.countries"] = {
        **public, "resource_type": "seed", "alias": "countries", "access": None,
    }  # fmt: skip
    nodes["test.dbt_up.not_null_x"] = {**public, "resource_type": "test", "alias": "not_null_x"}
    nodes["model.dbt_up.inline"] = {
        **public, "alias": "inline", "config": {"materialized": "ephemeral"},
    }  # fmt: skip
    statements = sf_grants.grants_for_interface(interface, ["R"])
    for name in ("STG_ORDERS", "CUSTOMER_SCORING", "COUNTRIES", "NOT_NULL_X", "INLINE", "STAGING"):
        assert not any(name in s for s in statements), name


def test_public_seeds_and_snapshots_are_granted_like_models() -> None:
    interface = sample_interface()
    public = interface["nodes"]["model.dbt_up.public_orders"]
    interface["nodes"]["seed.dbt_up.countries"] = {
        **public, "unique_id": "seed.dbt_up.countries", "resource_type": "seed",
        "name": "countries", "alias": "countries", "config": {"materialized": "seed"},
    }  # fmt: skip
    interface["nodes"]["snapshot.dbt_up.orders_history"] = {
        **public, "unique_id": "snapshot.dbt_up.orders_history", "resource_type": "snapshot",
        "name": "orders_history", "alias": "orders_history", "schema": "SNAPSHOTS",
        "config": {"materialized": "snapshot", "access": "public"}, "access": None,
    }  # fmt: skip
    statements = sf_grants.grants_for_interface(interface, ["R"])
    assert "GRANT SELECT ON TABLE DBT_UP_PROD.MARTS.COUNTRIES TO ROLE R" in statements
    assert "GRANT SELECT ON TABLE DBT_UP_PROD.SNAPSHOTS.ORDERS_HISTORY TO ROLE R" in statements
    assert "GRANT USAGE ON SCHEMA DBT_UP_PROD.SNAPSHOTS TO ROLE R" in statements


@pytest.mark.parametrize("schema", ["RAW", "STAGING", "raw"])
def test_a_public_node_in_a_private_layer_is_refused(schema: str) -> None:
    interface = sample_interface()
    interface["nodes"]["model.dbt_up.public_orders"]["schema"] = schema
    with pytest.raises(sf.InterfaceGrantError, match="private layer"):
        sf_grants.grants_for_interface(interface, ["R"])


def test_a_node_outside_the_producer_database_is_refused() -> None:
    """An interface cannot make the producer grant another project's relations."""
    interface = sample_interface()
    interface["nodes"]["model.dbt_up.public_orders"]["database"] = "DBT_DOWN_PROD"
    assert sf_grants.grants_for_interface(interface, ["R"])
    with pytest.raises(sf.InterfaceGrantError, match="not in the producer's database DBT_UP_PROD"):
        sf_grants.grants_for_interface(interface, ["R"], producer_database="DBT_UP_PROD")


def test_public_models_in_several_schemas_get_usage_on_each() -> None:
    interface = sample_interface()
    interface["nodes"]["model.dbt_up.public_revenue"]["schema"] = "finance"
    statements = sf_grants.grants_for_interface(interface, ["R"], producer_database="DBT_UP_PROD")
    assert "GRANT USAGE ON SCHEMA DBT_UP_PROD.FINANCE TO ROLE R" in statements
    assert "GRANT USAGE ON SCHEMA DBT_UP_PROD.MARTS TO ROLE R" in statements
    assert "GRANT SELECT ON TABLE DBT_UP_PROD.FINANCE.PUBLIC_REVENUE TO ROLE R" in statements


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("alias", "orders TO ROLE ACCOUNTADMIN; GRANT ALL ON ACCOUNT"),
        ("alias", 'orders"; DROP TABLE x; --'),
        ("database", "DBT_UP_PROD.MARTS"),
        ("schema", "MARTS TO ROLE PUBLIC --"),
        ("database", None),
    ],
)
def test_a_malicious_interface_cannot_inject_sql(field: str, value: object) -> None:
    interface = sample_interface()
    interface["nodes"]["model.dbt_up.public_orders"][field] = value
    with pytest.raises(sf.InterfaceGrantError):
        sf_grants.grants_for_interface(interface, ["DBT_DOWN_ROLE"])


def test_bad_roles_and_shapes_are_refused() -> None:
    with pytest.raises(sf.UnsafeIdentifierError):
        sf_grants.grants_for_interface(sample_interface(), ["DBT_DOWN_ROLE; GRANT"])
    with pytest.raises(sf.InterfaceGrantError, match="nodes"):
        sf_grants.grants_for_interface({"metadata": {}}, ["R"])
    with pytest.raises(sf.InterfaceGrantError):
        sf_grants.grants_for_interface({"nodes": {"a": "b"}}, ["R"])


def test_the_grant_pattern_refuses_everything_but_reads() -> None:
    for statement in (
        "GRANT INSERT ON TABLE A.B.C TO ROLE R",
        "GRANT SELECT ON TABLE A.B.C TO ROLE R WITH GRANT OPTION",
        "GRANT OWNERSHIP ON SCHEMA A.B TO ROLE R",
        "GRANT ALL ON DATABASE A TO ROLE R",
        "GRANT SELECT ON TABLE A.B.C TO USER U",
        "GRANT USAGE ON DATABASE A TO ROLE R; DROP DATABASE A",
    ):
        assert sf_grants.grant_statement_parts(statement) is None, statement


# --- tasks: dry runs and settings ----------------------------------------------------------------


def test_setup_dry_run_prints_the_rendered_sql() -> None:
    result = invoke("snowflake.setup", "--dry-run", env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "CREATE WAREHOUSE IF NOT EXISTS DBT_UP_WH" in out
    assert "CREATE ROLE IF NOT EXISTS DBT_DOWN_LOOM_ROLE" in out
    assert "CREATE SCHEMA IF NOT EXISTS DBT_UP_PROD.STAGING" in out
    assert "CREATE USER IF NOT EXISTS DBT_DOWN_CI_USER" in out
    assert "GRANT USAGE ON SCHEMA DBT_UP_PROD.MARTS TO ROLE DBT_DOWN_ROLE" in out
    assert "{{" not in out
    assert "nothing executed" in out.splitlines()[-1]


def test_grants_dry_run_reads_an_interface_file(tmp_path: Path) -> None:
    path = tmp_path / "interface.json"
    path.write_text(json.dumps(sample_interface()))
    result = invoke(
        "snowflake.grants", "--project", "dbt_up", "--interface", str(path), "--dry-run",
        env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "GRANT SELECT ON TABLE DBT_UP_PROD.MARTS.PUBLIC_ORDERS TO ROLE DBT_DOWN_ROLE;" in lines
    assert (
        "GRANT SELECT ON VIEW DBT_UP_PROD.MARTS.PUBLIC_CUSTOMERS TO ROLE DBT_DOWN_LOOM_ROLE;"
        in lines
    )
    assert len([line for line in lines if line.startswith("GRANT ")]) == 12


def test_grants_refuses_a_malicious_interface_file(tmp_path: Path) -> None:
    interface = sample_interface()
    interface["nodes"]["model.dbt_up.public_orders"]["alias"] = "x TO ROLE ACCOUNTADMIN; --"
    path = tmp_path / "interface.json"
    path.write_text(json.dumps(interface))
    result = invoke(
        "snowflake.grants", "--project", "dbt_up", "--interface", str(path), "--dry-run"
    )
    assert result.returncode == 2
    assert "GRANT" not in result.stdout
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({}, "SNOWFLAKE_ACCOUNT"),
        ({"SNOWFLAKE_ACCOUNT": "acme-prod"}, "SNOWFLAKE_USER"),
        ({"SNOWFLAKE_ACCOUNT": "acme-prod", "SNOWFLAKE_USER": "U"}, "SNOWFLAKE_PRIVATE_KEY_PATH"),
    ],
)
def test_missing_env_var_is_named_before_connecting(env: dict[str, str], missing: str) -> None:
    with pytest.raises(sf.SnowflakeSettingsError, match=missing) as caught:
        sf.connection_settings_from_env(env)
    assert isinstance(caught.value, CredentialsError)
    assert "\n" not in str(caught.value)


def test_setup_without_credentials_fails_in_one_line_naming_the_variable() -> None:
    result = invoke("snowflake.setup", env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "SNOWFLAKE_ACCOUNT" in line


def test_settings_read_optional_connection_variables(tmp_path: Path) -> None:
    key = tmp_path / "key.p8"
    key.write_text("not checked here")
    env = {
        "SNOWFLAKE_ACCOUNT": "acme-prod",
        "SNOWFLAKE_USER": "SETUP_USER",
        "SNOWFLAKE_PRIVATE_KEY_PATH": str(key),
        "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE": "s3cret",
        "SNOWFLAKE_HOST": "127.0.0.1",
        "SNOWFLAKE_PORT": "8080",
        "SNOWFLAKE_PROTOCOL": "http",
    }
    settings = sf.connection_settings_from_env(env)
    assert settings.role == "SYSADMIN"
    kwargs = settings.connect_kwargs()
    assert kwargs["authenticator"] == "SNOWFLAKE_JWT"
    assert kwargs["private_key_file"] == str(key)
    assert kwargs["private_key_file_pwd"] == "s3cret"
    assert (kwargs["host"], kwargs["port"], kwargs["protocol"]) == ("127.0.0.1", 8080, "http")
    assert "s3cret" not in repr(settings)
    assert sf.connection_settings_from_env({**env, "SNOWFLAKE_ROLE": "securityadmin"}).role == (
        "SECURITYADMIN"
    )
    for name, value in (("SNOWFLAKE_PORT", "http"), ("SNOWFLAKE_PROTOCOL", "ftp")):
        with pytest.raises(sf.SnowflakeSettingsError, match=name):
            sf.connection_settings_from_env({**env, name: value})
    with pytest.raises(sf.UnsafeIdentifierError):
        sf.connection_settings_from_env({**env, "SNOWFLAKE_ROLE": "SYSADMIN; DROP"})


def test_errors_are_mesh_errors_with_exit_codes() -> None:
    assert issubclass(sf.UnsafeIdentifierError, ConfigError)
    assert issubclass(sf.SnowflakeSettingsError, MeshError)
    assert sf.SnowflakeSettingsError("x").exit_code == 2
    assert sf.SnowflakeExecutionError("x").exit_code == 1


# --- execution through the connector, against fakesnow's server -----------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def fakesnow_port() -> Iterator[int]:
    port = _free_port()
    binary = Path(sys.executable).parent / "fakesnow"
    proc = subprocess.Popen(
        [str(binary), "-s", "--host", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None, "fakesnow exited"
            time.sleep(0.2)
        else:
            pytest.fail("fakesnow did not start within 30 s")
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _key_file(tmp_path: Path, passphrase: str | None) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    path = tmp_path / "setup_key.p8"
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    path.chmod(0o600)
    return path


def _settings(tmp_path: Path, port: int, passphrase: str | None = None) -> sf.ConnectionSettings:
    env = {
        "SNOWFLAKE_ACCOUNT": "fakesnow",
        "SNOWFLAKE_USER": "SETUP_USER",
        "SNOWFLAKE_PRIVATE_KEY_PATH": str(_key_file(tmp_path, passphrase)),
        "SNOWFLAKE_HOST": "127.0.0.1",
        "SNOWFLAKE_PORT": str(port),
        "SNOWFLAKE_PROTOCOL": "http",
    }
    if passphrase:
        env["SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"] = passphrase
    return sf.connection_settings_from_env(env)


def _database_part(project: str) -> sf.RenderedScript:
    """The part of 03_databases.sql the emulator models: the database and its schemas."""
    (script,) = [
        r
        for r in sf.render_setup(sf.DEFAULT_LAYOUT, SQL_DIR)
        if r.name == "03_databases.sql" and r.unit == project
    ]
    head = script.sql.split("-- Re-granting ownership", 1)[0]
    return sf.RenderedScript(script.name, script.unit, head)


@pytest.mark.parametrize("passphrase", [None, "correct horse"])
def test_execute_runs_scripts_with_key_pair_auth(
    tmp_path: Path, fakesnow_port: int, passphrase: str | None
) -> None:
    settings = _settings(tmp_path, fakesnow_port, passphrase)
    scripts = [_database_part("dbt_up"), _database_part("dbt_up")]  # twice: idempotent
    echoed: list[str] = []
    count = sf.execute(scripts, settings, echo=echoed.append)
    assert count == 2 * 5  # USE ROLE, CREATE DATABASE, three CREATE SCHEMA
    assert echoed == ["03_databases.sql (dbt_up)", "03_databases.sql (dbt_up)"]


def test_execute_stops_at_the_first_rejected_statement(tmp_path: Path, fakesnow_port: int) -> None:
    settings = _settings(tmp_path, fakesnow_port)
    bad = sf.RenderedScript("99_bad.sql", "dbt_up", "CREATE DATABASE IF NOT EXISTS X;\nNOT SQL;\n")
    with pytest.raises(
        sf.SnowflakeExecutionError, match=r"99_bad\.sql \(dbt_up\) failed"
    ) as caught:
        sf.execute([bad, _database_part("dbt_down")], settings)
    assert caught.value.exit_code == 1


def test_a_wrong_passphrase_fails_in_one_line(tmp_path: Path, fakesnow_port: int) -> None:
    settings = _settings(tmp_path, fakesnow_port, "right")
    wrong = sf.ConnectionSettings(
        account=settings.account,
        user=settings.user,
        private_key_path=settings.private_key_path,
        role=settings.role,
        private_key_passphrase="wrong",
        host=settings.host,
        port=settings.port,
        protocol=settings.protocol,
    )
    with pytest.raises(sf.SnowflakeExecutionError, match="cannot connect") as caught:
        sf.execute([_database_part("dbt_up")], wrong)
    assert "\n" not in str(caught.value) and "wrong" not in str(caught.value)


def test_setup_can_leave_out_the_schema_wide_grants() -> None:
    result = invoke(
        "snowflake.setup", "--dry-run", "--skip-consumer-grants", "--skip-resource-monitors",
        env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "05_consumer_grants.sql" not in result.stdout
    assert "06_resource_monitors.sql" not in result.stdout
    assert "04_users.sql" in result.stdout


# --- grants follow every publish: revoke what is no longer published -----------------------------


def _without(interface: dict[str, Any], *unique_ids: str) -> dict[str, Any]:
    """A copy of `interface` without the given nodes (sharing nothing with it)."""
    nodes = {k: copy.deepcopy(v) for k, v in interface["nodes"].items() if k not in unique_ids}
    return {**interface, "nodes": nodes}


def test_grant_changes_revoke_what_is_no_longer_published() -> None:
    previous = sample_interface()
    new = _without(previous, "model.dbt_up.public_revenue")
    new["nodes"]["model.dbt_up.public_orders"]["access"] = "protected"  # public -> protected
    changes = sf_grants.grant_changes(previous, new, ["DBT_DOWN_ROLE"], producer_database="DBT_UP_PROD")
    assert changes.revokes == [
        "REVOKE SELECT ON TABLE DBT_UP_PROD.MARTS.PUBLIC_ORDERS FROM ROLE DBT_DOWN_ROLE",
        "REVOKE SELECT ON TABLE DBT_UP_PROD.MARTS.PUBLIC_REVENUE FROM ROLE DBT_DOWN_ROLE",
    ]
    # Every relation still published is granted again: dbt's CREATE OR REPLACE drops grants.
    assert changes.grants == [
        "GRANT USAGE ON DATABASE DBT_UP_PROD TO ROLE DBT_DOWN_ROLE",
        "GRANT USAGE ON SCHEMA DBT_UP_PROD.MARTS TO ROLE DBT_DOWN_ROLE",
        "GRANT SELECT ON VIEW DBT_UP_PROD.MARTS.PUBLIC_CUSTOMERS TO ROLE DBT_DOWN_ROLE",
        "GRANT SELECT ON TABLE DBT_UP_PROD.MARTS.PUBLIC_ORDERS_V2 TO ROLE DBT_DOWN_ROLE",
    ]
    assert changes.statements == changes.revokes + changes.grants
    for statement in changes.revokes:
        (expression,) = sqlglot.parse(statement, read="snowflake")
        assert isinstance(expression, exp.Revoke), statement


def test_grant_changes_add_a_new_public_model_and_follow_a_kind_change() -> None:
    previous = sample_interface()
    new = sample_interface()
    added = dict(new["nodes"]["model.dbt_up.public_orders"], name="fresh", alias="fresh")
    new["nodes"]["model.dbt_up.fresh"] = {**added, "unique_id": "model.dbt_up.fresh"}
    new["nodes"]["model.dbt_up.public_orders"]["config"] = {"materialized": "view"}
    changes = sf_grants.grant_changes(previous, new, ["R"])
    assert changes.revokes == []  # same relation, now a view: nothing to take back
    assert "GRANT SELECT ON TABLE DBT_UP_PROD.MARTS.FRESH TO ROLE R" in changes.grants
    assert "GRANT SELECT ON VIEW DBT_UP_PROD.MARTS.PUBLIC_ORDERS TO ROLE R" in changes.grants


def test_grant_changes_against_the_whole_history_cover_a_missed_sync() -> None:
    v1 = sample_interface()
    v2 = _without(v1, "model.dbt_up.public_revenue")  # its grant sync never ran
    v3 = _without(v2, "model.dbt_up.public_customers")
    against_v2 = sf_grants.grant_changes(v2, v3, ["R"])
    assert [r.split()[4] for r in against_v2.revokes] == ["DBT_UP_PROD.MARTS.PUBLIC_CUSTOMERS"]
    against_history = sf_grants.grant_changes([v1, v2], v3, ["R"])
    assert [r.split()[4] for r in against_history.revokes] == [
        "DBT_UP_PROD.MARTS.PUBLIC_CUSTOMERS",
        "DBT_UP_PROD.MARTS.PUBLIC_REVENUE",
    ]
    assert sf_grants.grant_changes(None, v3, ["R"]).revokes == []


def test_grant_changes_render_against_the_audit_database() -> None:
    previous = sample_interface()
    new = _without(previous, "model.dbt_up.public_revenue")
    changes = sf_grants.grant_changes(previous, new, ["R"], database="DBT_UP_PROD__AUDIT")
    assert all(" DBT_UP_PROD__AUDIT" in s for s in changes.statements)
    assert not any(
        " DBT_UP_PROD." in s or s.endswith(" DBT_UP_PROD TO ROLE R") for s in changes.statements
    )


def test_a_malicious_previous_interface_cannot_inject_a_revoke() -> None:
    previous = sample_interface()
    previous["nodes"]["model.dbt_up.public_revenue"]["alias"] = "x FROM ROLE R; DROP DATABASE Y"
    with pytest.raises(sf.InterfaceGrantError, match="previous interface #1"):
        sf_grants.grant_changes(previous, sample_interface(), ["R"])


def test_sync_grants_dry_run_uses_the_consumers_of_mesh_yml() -> None:
    previous = sample_interface()
    new = _without(previous, "model.dbt_up.public_revenue")
    statements = sf_grants.sync_grants(sf.DEFAULT_LAYOUT, "dbt_up", previous, new, dry_run=True)
    assert statements[:2] == [
        "REVOKE SELECT ON TABLE DBT_UP_PROD.MARTS.PUBLIC_REVENUE FROM ROLE DBT_DOWN_LOOM_ROLE",
        "REVOKE SELECT ON TABLE DBT_UP_PROD.MARTS.PUBLIC_REVENUE FROM ROLE DBT_DOWN_ROLE",
    ]
    assert len([s for s in statements if s.startswith("GRANT SELECT")]) == 2 * 3
    # A project nobody reads gets nothing; an unknown one is refused.
    assert sf_grants.sync_grants(sf.DEFAULT_LAYOUT, "dbt_down", None, {"nodes": {}}, dry_run=True) == []
    with pytest.raises(ConfigError, match=r"not in mesh\.yml"):
        sf_grants.sync_grants(sf.DEFAULT_LAYOUT, "nope", None, new, dry_run=True)


def test_sync_grants_refuses_relations_of_another_database() -> None:
    new = sample_interface()
    new["nodes"]["model.dbt_up.public_orders"]["database"] = "DBT_DOWN_PROD"
    with pytest.raises(sf.InterfaceGrantError, match="DBT_DOWN_PROD"):
        sf_grants.sync_grants(sf.DEFAULT_LAYOUT, "dbt_up", None, new, dry_run=True)


def test_the_grant_pattern_knows_bulk_grants_and_revokes() -> None:
    bulk = sf_grants.grant_statement_parts("GRANT SELECT ON FUTURE TABLES IN SCHEMA A.B TO ROLE R")
    assert bulk is not None and (bulk["bulk"], bulk["schema_db"], bulk["schema"]) == (
        "FUTURE", "A", "B",
    )  # fmt: skip
    whole = sf_grants.grant_statement_parts("GRANT SELECT ON ALL VIEWS IN DATABASE A TO ROLE R")
    assert whole is not None and (whole["bulk"], whole["bulk_database"]) == ("ALL", "A")
    assert sf_grants.REVOKE_RE.fullmatch("REVOKE SELECT ON VIEW A.B.C FROM ROLE R")
    assert not sf_grants.REVOKE_RE.fullmatch("REVOKE SELECT ON VIEW A.B.C FROM ROLE R CASCADE")


def test_grants_dry_run_prints_revokes_against_a_previous_file(tmp_path: Path) -> None:
    previous = tmp_path / "previous.json"
    previous.write_text(json.dumps(sample_interface()))
    new = tmp_path / "new.json"
    new.write_text(json.dumps(_without(sample_interface(), "model.dbt_up.public_revenue")))
    result = invoke(
        "snowflake.grants", "--project", "dbt_up", "--interface", str(new),
        "--previous", str(previous), "--dry-run", env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    revokes = [line for line in lines if line.startswith("REVOKE ")]
    assert revokes == [
        "REVOKE SELECT ON TABLE DBT_UP_PROD.MARTS.PUBLIC_REVENUE FROM ROLE DBT_DOWN_LOOM_ROLE;",
        "REVOKE SELECT ON TABLE DBT_UP_PROD.MARTS.PUBLIC_REVENUE FROM ROLE DBT_DOWN_ROLE;",
    ]
    assert lines.index(revokes[-1]) < min(i for i, x in enumerate(lines) if x.startswith("GRANT"))
    assert "2 revoke(s), 10 grant(s)" in lines[-1]


def _registry_root(tmp_path: Path) -> Path:
    """A template copy that runs the repo's tasks_infra.py, with a local registry."""
    from tests.conftest import copy_template

    root = copy_template(tmp_path / "mesh")
    shutil.copy2(ROOT / "tasks_infra.py", root / "tasks_infra.py")
    return root


def _registry_node(node: dict[str, Any]) -> dict[str, Any]:
    """A `sample_interface` node as a publish writes it (every field of the interface schema)."""
    from mesh.project.artifacts import interface_node
    from tests.factories import model

    version = node.get("version")
    full = model(
        "dbt_up", node["unique_id"].split(".")[2], version=version, latest_version=version,
        schema=node["schema"], alias=node["alias"], materialized=node["config"]["materialized"],
    )
    full.update(database=node["database"], relation_name=node["relation_name"])
    return interface_node(full, set())


def _publish(root: Path, interfaces: list[dict[str, Any]]) -> list[str]:
    """Publish each interface in turn to the local target's registry; return the versions."""
    from datetime import UTC, datetime

    from mesh.core.names import new_version
    from mesh.project.artifacts import build_interface
    from mesh.registry import commit_version, open_registry
    from mesh.registry.document import content_sha256, dump_interface
    from tests.factories import manifest

    registry = open_registry("file://registry", root)
    versions = []
    for number, interface in enumerate(interfaces):
        nodes = {uid: _registry_node(node) for uid, node in interface["nodes"].items()}
        sha = content_sha256(nodes, {})
        version = new_version(sha, datetime(2026, 1, 1, 0, 0, number, tzinfo=UTC))
        meta = {"version": version, "content_sha256": sha, "env": "local"}
        body = dump_interface(build_interface(manifest("dbt_up", []), nodes, {}, meta))
        assert commit_version(registry, "dbt_up", "local", version, body, lambda _entry: True)
        versions.append(version)
    return versions


def _task(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", "-c", "tasks_infra", *args],
        cwd=root, capture_output=True, text=True, stdin=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def test_grants_revoke_against_the_registry_history(tmp_path: Path) -> None:
    root = _registry_root(tmp_path)
    v1 = sample_interface()
    v2 = _without(v1, "model.dbt_up.public_revenue")
    v3 = _without(v2, "model.dbt_up.public_customers")
    versions = _publish(root, [v1, v2, v3])
    history = _task(
        root, "snowflake.grants", "--project", "dbt_up", "--target", "local", "--dry-run"
    )
    assert history.returncode == 0, history.stderr
    revoked = {line.split()[4] for line in history.stdout.splitlines() if line.startswith("REVOKE")}
    assert revoked == {"DBT_UP_PROD.MARTS.PUBLIC_REVENUE", "DBT_UP_PROD.MARTS.PUBLIC_CUSTOMERS"}
    assert "against 2 earlier version(s)" in history.stdout
    one = _task(
        root, "snowflake.grants", "--project", "dbt_up", "--target", "local",
        "--previous", versions[1], "--dry-run",
    )  # fmt: skip
    assert one.returncode == 0, one.stderr
    revoked = {line.split()[4] for line in one.stdout.splitlines() if line.startswith("REVOKE")}
    assert revoked == {"DBT_UP_PROD.MARTS.PUBLIC_CUSTOMERS"}
    granted = [line for line in one.stdout.splitlines() if line.startswith("GRANT SELECT")]
    assert len(granted) == 2 * 2  # public_orders and public_orders_v2, for both consumers
    bad = _task(
        root, "snowflake.grants", "--project", "dbt_up", "--target", "local",
        "--previous", "yesterday", "--dry-run",
    )  # fmt: skip
    assert bad.returncode == 2 and "invalid version" in bad.stderr
    assert "GRANT" not in bad.stdout and len(bad.stderr.strip().splitlines()) == 1


def test_grants_without_a_published_interface_say_what_to_run(tmp_path: Path) -> None:
    root = _registry_root(tmp_path)
    result = _task(
        root, "snowflake.grants", "--project", "dbt_up", "--target", "local", "--dry-run"
    )
    assert result.returncode == 2
    assert "invoke publish --project dbt_up --target local" in result.stderr


def test_project_settings_read_the_project_variables_as_the_profile_does(tmp_path: Path) -> None:
    key = tmp_path / "key.p8"
    key.write_text("not checked here")
    own = tmp_path / "own.p8"
    own.write_text("not checked here")
    env = {
        "SNOWFLAKE_ACCOUNT": "acme-prod",
        "SNOWFLAKE_USER": "ADMIN",
        "SNOWFLAKE_PRIVATE_KEY_PATH": str(key),
        "SNOWFLAKE_ROLE": "SYSADMIN",
    }
    project = sf.DEFAULT_LAYOUT.projects["dbt_up"]
    settings = sf.project_connection_settings(project, env, query_tag="t")
    assert (settings.user, settings.role, settings.private_key_path) == (
        "ADMIN",
        "DBT_UP_ROLE",
        key,
    )
    assert settings.connect_kwargs()["session_parameters"] == {"QUERY_TAG": "t"}
    env.update(
        DBT_UP_SNOWFLAKE_USER="DBT_UP_CI_USER",
        DBT_UP_SNOWFLAKE_PRIVATE_KEY_PATH=str(own),
        DBT_UP_SNOWFLAKE_ROLE="other_role",
    )
    settings = sf.project_connection_settings(project, env)
    assert (settings.user, settings.role, settings.private_key_path) == (
        "DBT_UP_CI_USER", "OTHER_ROLE", own,
    )  # fmt: skip
    with pytest.raises(sf.SnowflakeSettingsError, match="SNOWFLAKE_ACCOUNT"):
        sf.project_connection_settings(project, {})


def test_a_revoke_on_a_dropped_relation_is_skipped_on_the_server(
    tmp_path: Path, fakesnow_port: int
) -> None:
    """errno 2003 (does not exist) comes from the server; fakesnow cannot parse GRANT/REVOKE."""
    settings = _settings(tmp_path, fakesnow_port)
    with sf.Session(settings, label="grants") as session:
        assert session.run("SELECT 1") == [(1,)]
        assert session.run("SELECT * FROM NOPE_DB.MARTS.GONE", missing_ok=True) is None
        with pytest.raises(sf.SnowflakeExecutionError, match="grants failed on `SELECT"):
            session.run("SELECT * FROM NOPE_DB.MARTS.GONE")


def test_grant_statements_fakesnow_refuses_fail_in_one_line(
    tmp_path: Path, fakesnow_port: int
) -> None:
    settings = _settings(tmp_path, fakesnow_port)
    statements = sf_grants.grant_changes(None, sample_interface(), ["R"]).statements
    with pytest.raises(sf.SnowflakeExecutionError) as caught:
        sf_grants.run_grant_statements(statements, settings)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(
        "grants failed on `GRANT USAGE ON DATABASE DBT_UP_PROD TO ROLE R`"
    )
    assert caught.value.exit_code == 1


@pytest.mark.parametrize("task", ["snowflake.setup", "snowflake.grants", "snowflake.wap"])
def test_every_snowflake_task_documents_its_options(task: str) -> None:
    text = invoke("--help", task).stdout
    assert "Docstring:" in text and "Options:" in text
    section = text.split("Options:", 1)[1]
    lines = [line for line in section.splitlines() if line.strip().startswith("-")]
    assert lines
    for line in lines:
        option, _, help_text = line.strip().partition("   ")
        assert help_text.strip(), f"{task} {option} has no help"


def test_wap_task_dry_runs_and_refuses_bad_input() -> None:
    env = {"PATH": "/usr/bin:/bin"}
    prepare = invoke(
        "snowflake.wap", "--project", "dbt_up", "--step", "prepare", "--dry-run", env=env
    )
    assert prepare.returncode == 0, prepare.stderr
    assert prepare.stdout.splitlines()[0] == "CREATE DATABASE DBT_UP_PROD__AUDIT CLONE DBT_UP_PROD;"
    discard = invoke(
        "snowflake.wap", "--project", "dbt_up", "--step", "discard", "--dry-run", env=env
    )
    assert discard.stdout.splitlines()[0] == "DROP DATABASE IF EXISTS DBT_UP_PROD__AUDIT;"
    for args, needle in (
        (("--project", "dbt_up", "--step", "swap"), "--step must be one of"),
        (("--project", "nope", "--step", "env"), "not in mesh.yml"),
    ):
        result = invoke("snowflake.wap", *args, env=env)
        assert result.returncode == 2 and needle in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""
