"""The published interface leaks nothing: no SQL, no private or protected node (model, seed or
snapshot), no profile, host, user, key, path or environment variable value.

Distinctive values are planted where a careless implementation would pick them up: credentials and
connection settings in the environment (SNOWFLAKE_*, AWS_*, DBT_ENV_CUSTOM_ENV_* that dbt copies into
its manifest metadata, a HOME and USER of their own), an env_var() rendered into the SQL of a public
and of a private model, canaries in private and protected models' SQL, descriptions and meta, and a
public seed whose columns come from the warehouse's catalog (`dbt docs generate`). The
producer is rebuilt by real dbt and published on the local target; then every byte of every
interface object in the registry (latest and history, not the project's own private state) is
searched. (Log redaction is tested in the prod rehearsal, tests/e2e.)
"""

from __future__ import annotations

import getpass
import os
import socket
from pathlib import Path

import orjson
import pytest

from mesh.project.config import load_mesh
from mesh.ui.cli import run_publish
from mesh.warehouse.runner import run_dbt

SECRETS = {
    "SNOWFLAKE_ACCOUNT": "leak-account-5d1c",
    "SNOWFLAKE_USER": "leak-user-8b02",
    "SNOWFLAKE_PASSWORD": "leak-password-a4e7",
    "SNOWFLAKE_PRIVATE_KEY_PATH": "/leak/keys/rsa-key-3f9a.p8",
    "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE": "leak-passphrase-c6d2",
    "SNOWFLAKE_HOST": "leak-host-91ab.example.com",
    "SNOWFLAKE_ROLE": "LEAK_ROLE_7E21",
    "AWS_ACCESS_KEY_ID": "AKIALEAKCANARY0042",
    "AWS_SECRET_ACCESS_KEY": "leak-aws-secret-0b3f",
    "DBT_ENV_CUSTOM_ENV_LEAK": "leak-custom-env-e5a0",
    "DBT_ENV_SECRET_LEAK": "leak-dbt-secret-22cd",
    "USER": "leakuser6c1f",
    "LOGNAME": "leakuser6c1f",
}
PRIVATE_CANARY = "private-canary-4e8b"
PROTECTED_CANARY = "protected-canary-19fd"
PUBLIC_SQL_CANARY = "public-sql-canary-b7a3"


def plant(root: Path) -> None:
    models = root / "dbt_up" / "models"
    (models / "marts" / "leaky_private.sql").write_text(
        f"-- {PRIVATE_CANARY} connected as {{{{ env_var('SNOWFLAKE_USER') }}}}\n"
        f"select '{PRIVATE_CANARY}' as secret, '{{{{ env_var('SNOWFLAKE_ACCOUNT') }}}}' as account\n"
    )
    (models / "marts" / "leaky_private.yml").write_text(
        "version: 2\nmodels:\n  - name: leaky_private\n"
        f"    description: \"{PRIVATE_CANARY} description\"\n"
        f"    config: {{group: orders, access: private, meta: {{owner: {PRIVATE_CANARY}}}}}\n"
    )
    scoring = models / "marts" / "customers" / "customer_scoring.sql"
    scoring.write_text(f"-- {PROTECTED_CANARY}\n" + scoring.read_text())
    public = models / "marts" / "orders" / "public_orders.sql"
    public.write_text(
        f"-- {PUBLIC_SQL_CANARY} built by {{{{ env_var('SNOWFLAKE_USER') }}}} "
        f"in {{{{ env_var('HOME') }}}}\n" + public.read_text()
    )
    seeds = root / "dbt_up" / "seeds"
    (seeds / "public_rates.csv").write_text("currency,rate\nEUR,1.0\nUSD,1.1\n")
    (seeds / "public_rates.yml").write_text(
        "version: 2\nseeds:\n  - name: public_rates\n    description: Exchange rates.\n"
        "    config: {access: public}\n"
    )
    # A seed cannot carry an enforced contract: this producer publishes uncontracted nodes.
    config = root / "mesh.yml"
    config.write_text(config.read_text().replace("require_contracts: true", "require_contracts: false"))
    docs = models / "marts" / "orders" / "public_orders.yml"
    # A change consumers can see, so that this build publishes a new version.
    docs.write_text(docs.read_text().replace("One row per order", "One row per order (rebuilt)", 1))


def test_published_interface_leaks_nothing(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = workspace.parent / "home-leak-0d4e"
    home.mkdir()
    for name, value in {**SECRETS, "HOME": str(home)}.items():
        monkeypatch.setenv(name, value)
    for name in ("MESH_PUBLISHER", "GITHUB_REPOSITORY", "GITHUB_WORKFLOW"):
        monkeypatch.delenv(name, raising=False)
    plant(workspace)
    mesh = load_mesh(workspace, "local")
    run_dbt(mesh, "dbt_up", ["build"])
    summary = run_publish(mesh, "dbt_up", False, None)
    assert ": published " in summary, summary

    full = orjson.loads((workspace / "dbt_up/target/manifest.json").read_bytes())
    full_text = orjson.dumps(full).decode()
    # The planted values really are in what dbt produced: the test would see a leak.
    for value in (PRIVATE_CANARY, PROTECTED_CANARY, PUBLIC_SQL_CANARY, SECRETS["SNOWFLAKE_USER"],
                  SECRETS["SNOWFLAKE_ACCOUNT"], str(home), str(workspace)):
        assert value in full_text, f"{value} was not planted"
    hidden = [
        uid for uid, node in full["nodes"].items()
        if node["resource_type"] in ("model", "seed", "snapshot")
        and (node.get("access") or node["config"].get("access")) != "public"
    ]
    assert "model.dbt_up.leaky_private" in hidden and "model.dbt_up.customer_scoring" in hidden
    assert "seed.dbt_up.raw_orders" in hidden
    latest = orjson.loads((workspace / "registry/dbt_up/local/latest/manifest.json").read_bytes())
    observed = [uid for uid, n in latest["nodes"].items() if any(c.get("contract") is False for c in n["columns"].values())]
    assert observed == ["seed.dbt_up.public_rates"]  # the warehouse was read, for it only

    env_dir = workspace / "registry" / "dbt_up" / "local"
    interfaces = [env_dir / "latest" / "manifest.json", *sorted((env_dir / "history").glob("*/manifest.json"))]
    assert len(interfaces) >= 3  # latest and at least two history entries
    forbidden = [
        *SECRETS.values(), str(home), str(workspace), str(mesh.warehouse_dir), str(Path.cwd()),
        PRIVATE_CANARY, PROTECTED_CANARY, PUBLIC_SQL_CANARY, *hidden,
        '"raw_code"', '"compiled_code"', '"compiled_path"', '"original_file_path"', '"root_path"',
        '"patch_path"', '"profile', '"threads"', '"env":{', '"env": {', "select ", "SELECT ",
        "leaky_private", ".duckdb",
    ]
    host, user = socket.gethostname(), getpass.getuser()
    forbidden += [v for v in (host, user) if len(v) >= 6 and v not in ("localhost",)]
    for path in interfaces:
        text = path.read_bytes().decode("utf-8")
        found = [value for value in forbidden if value in text]
        assert not found, f"{path.relative_to(workspace)} leaks {found}"
        doc = orjson.loads(text)
        assert set(doc["metadata"]) <= {
            "dbt_schema_version", "dbt_version", "generated_at", "invocation_id", "project_name",
            "adapter_type", "mesh",
        }
        assert doc["sources"] == {} and doc["macros"] == {}
        assert all(node["access"] == "public" for node in doc["nodes"].values())
        assert doc["metadata"]["mesh"]["publisher"] == "local"
    rates = orjson.loads(interfaces[0].read_bytes())["nodes"]["seed.dbt_up.public_rates"]
    assert {name: c["data_type"] for name, c in rates["columns"].items()} == {"currency": "varchar", "rate": "double"}
    assert os.environ["SNOWFLAKE_USER"] == SECRETS["SNOWFLAKE_USER"]
