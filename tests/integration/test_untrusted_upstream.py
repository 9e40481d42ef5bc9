"""An upstream interface is untrusted input: a hostile one reaches real consumers and stays inert.

A crafted interface of `dbt_up` (valid checksums, written with FileRegistry.create_version and
swap_latest, as a compromised or careless producer could publish it) carries Jinja that would run a
query, raise a compiler error, log, read an environment variable or compute, YAML specials,
newlines, control characters and a very long string, in model and column descriptions, meta and
tags. Both real consumers of the template sync it (generated sources; dbt-loom) and real dbt parses
them. Nothing may execute: no compiler error, no log line, no table, no environment value, no
computed value; and the text arrives in the consumer's manifest literally (Jinja delimiters
broken apart, everything else as published).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from mesh.config import load_mesh
from mesh.dbt import run_dbt
from mesh.manifest import content_sha256, load_interface
from mesh.names import new_version
from mesh.pipeline import sync_project
from mesh.registry.file import FileRegistry

CANARY = "mesh-canary-7f3e91"  # the value of MESH_CANARY: must never reach a manifest
LONG = "0123456789abcdef" * 8192  # 128 KiB
JINJA = (
    "{{ run_query('create table main.pwned as select 1 as x') }} "
    "{{ exceptions.raise_compiler_error('PWNED by the upstream') }} "
    "{% do log('MESH_' ~ 'PWNED', info=True) %} "
    "{{ env_var('MESH_CANARY') }} {{ 'MESH_' ~ 'COMPUTED' }} {# hidden #} {%- raw %}x{% endraw -%}"
)
YAML_SPECIALS = (
    "key: value\n- item\n&anchor *alias !!python/object/apply:os.system ['touch /tmp/pwned']\n"
    "%YAML 1.1\n---\n...\n\"double\" 'single' # not a comment\ttab\r\nCRLF \u2028 \u00e9 \U0001f600 \x07bell"
)


def hostile(text: str) -> str:
    return f"{text} | {JINJA} | {YAML_SPECIALS}"


def inert(text: str) -> str:
    """`text` as sync writes it: every Jinja opening delimiter broken apart."""
    return text.replace("{{", "{ {").replace("{%", "{ %").replace("{#", "{ #")


def plant(node: dict[str, Any]) -> None:
    node["description"] = hostile("model") + LONG
    for name, column in node["columns"].items():
        column["description"] = hostile(f"column {name}")
    node["meta"] = {"owner": hostile("meta"), "nested": {"list": [JINJA, YAML_SPECIALS]}, JINJA: "key"}
    node["tags"] = [JINJA, "a: b", "- c", LONG[:1000]]


def publish_hostile(registry: FileRegistry) -> str:
    latest = registry.read_latest("dbt_up", "local")
    assert latest is not None
    doc = load_interface(latest.body, "latest", "dbt_up")
    for node in doc["nodes"].values():
        plant(node)
    sha = content_sha256(doc["nodes"], doc.get("groups") or {})
    version = new_version(sha)
    doc["metadata"]["mesh"].update({"version": version, "content_sha256": sha, "previous": latest.version})
    try:
        from mesh.manifest import dump_interface as dump
    except ImportError:  # pragma: no cover - the indented form before the registry form existed
        from mesh.manifest import dump_json as dump
    body = dump(doc)
    registry.create_version("dbt_up", "local", version, body)
    registry.swap_latest("dbt_up", "local", version, body, latest.token)
    return version


def tables(path: Path) -> set[str]:
    with duckdb.connect(str(path), read_only=True) as con:
        return {r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()}


def test_hostile_interface_is_inert_in_both_consumers(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESH_CANARY", CANARY)
    mesh = load_mesh(workspace, "local")
    registry = mesh.registry
    assert isinstance(registry, FileRegistry)
    version = publish_hostile(registry)
    warehouse = workspace / "warehouse"
    before = {p.name: tables(p) for p in warehouse.glob("*.duckdb")}

    for consumer in ("dbt_down", "dbt_down_loom"):
        plan = sync_project(mesh, consumer)
        assert plan.upstream_versions == {"dbt_up": version}
        log = workspace / consumer / "logs" / "dbt.log"
        log.unlink(missing_ok=True)
        run = run_dbt(mesh, consumer, ["parse", "--no-partial-parse"])  # raises on a compiler error
        assert run.success and not run.errors, run.errors
        assert "PWNED" not in " ".join(run.warnings)
        assert "MESH_PWNED" not in log.read_text(errors="replace")  # the `log` never ran

    # No side effect in any warehouse file.
    assert {p.name: tables(p) for p in warehouse.glob("*.duckdb")} == before
    assert not any("pwned" in t for ts in before.values() for t in ts)
    for consumer in ("dbt_down", "dbt_down_loom"):
        text = (workspace / consumer / "target" / "manifest.json").read_text()
        assert CANARY not in text  # env_var never rendered
        assert "MESH_COMPUTED" not in text  # the expression never ran

    # The text arrived literally: Jinja delimiters broken apart, everything else unchanged.
    down = orjson.loads((workspace / "dbt_down/target/manifest.json").read_bytes())
    source = down["sources"]["source.dbt_down.dbt_up.public_orders"]
    defused = inert(hostile("model"))
    # (dbt drops carriage returns from descriptions it reads; the generated YAML keeps them)
    assert source["description"] == (defused + LONG).replace("\r", "")
    assert "{{" not in source["description"] and "{%" not in source["description"]
    for name, column in source["columns"].items():
        assert column["description"] == inert(hostile(f"column {name}")).replace("\r", "")
    generated = (workspace / "dbt_down/models/_mesh_dbt_up.yml").read_text()
    assert "\\r\\n" in generated and "{{" not in generated and "{%" not in generated
    # dbt-loom: the synced copy dbt-loom reads holds the same inert text; the models resolve.
    synced = orjson.loads((workspace / "dbt_down_loom/.mesh/upstreams/dbt_up.json").read_bytes())
    node = synced["nodes"]["model.dbt_up.public_orders"]
    assert node["description"] == defused + LONG
    assert node["tags"][0] == inert(JINJA)
    loom = orjson.loads((workspace / "dbt_down_loom/target/manifest.json").read_bytes())
    assert "model.dbt_up.public_orders" in {p for ps in loom["parent_map"].values() for p in ps}
    assert not os.path.exists("/tmp/pwned")


# --- forged interfaces, batched through both real consumers ----------------------------------------

SECRET = "hunter2-canary-0b7d"  # MY_SECRET: must appear in no artifact and nowhere in the registry
INJECTED_DATABASE = (
    'dbt_up"."marts"."public_orders" cross join (select 1 as k where error(\'INJECTED_SQL_RAN\' || '
    "(select trim(content) from read_text('/etc/hostname'))) is null) /*"
)


def forge(registry: FileRegistry, change: Any) -> str:
    """A forged latest of dbt_up: its current interface with `change` applied, written with the
    standard library (orjson stops at 254 levels; a forger need not use it), checksums valid."""
    import json

    latest = registry.read_latest("dbt_up", "local")
    assert latest is not None
    doc = json.loads(registry.read_version("dbt_up", "local", registry.list_versions("dbt_up", "local")[0]).body)
    change(doc)

    def compact(value: Any) -> bytes:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    from mesh.names import sha256_hex
    from tests.factories import later_version

    version = later_version(latest.version)
    doc["metadata"]["mesh"].update(version=version, previous=latest.version)
    doc["metadata"]["mesh"]["content_sha256"] = sha256_hex(compact({"nodes": doc["nodes"], "groups": doc["groups"]}))
    body = compact(doc)
    registry.create_version("dbt_up", "local", version, body)
    registry.swap_latest("dbt_up", "local", version, body, latest.token)
    return version


def _orders(doc: dict[str, Any]) -> dict[str, Any]:
    node: dict[str, Any] = doc["nodes"]["model.dbt_up.public_orders"]
    return node


def _deep(doc: dict[str, Any]) -> None:
    meta: dict[str, Any] = {}
    inner = meta
    for _ in range(300):
        inner["a"] = {}
        inner = inner["a"]
    _orders(doc)["meta"] = meta


def _renamed(doc: dict[str, Any]) -> None:
    node = dict(_orders(doc))
    node["name"] = "public_orders_{{ log(env_var('MY_SECRET'), info=True) }}"
    node["unique_id"] = f"model.dbt_up.{node['name']}"
    doc["nodes"][node["unique_id"]] = node


FORGERIES: dict[str, tuple[Any, str]] = {
    # the issue's reproductions, then every other field that reaches generated code or SQL
    "SQL in database and relation_name": (
        lambda doc: _orders(doc).update(database=INJECTED_DATABASE, relation_name='"dbt_up"."marts"."*/ as z --"'),
        "node model.dbt_up.public_orders, field database",
    ),
    "Jinja in version": (
        lambda doc: doc["nodes"]["model.dbt_up.public_customers.v2"].update(version="2{{ env_var('MY_SECRET','none') }}"),
        "node model.dbt_up.public_customers.v2, field version",
    ),
    "Jinja in latest_version": (
        lambda doc: doc["nodes"]["model.dbt_up.public_customers.v2"].update(latest_version="2{{ log('x') }}"),
        "node model.dbt_up.public_customers.v2, field latest_version",
    ),
    "Jinja in a model name": (_renamed, "field name"),
    "SQL in a data type": (
        lambda doc: next(iter(_orders(doc)["columns"].values())).update(data_type="integer) as x from (select 1) --"),
        "data_type",
    ),
    "SQL in event_time": (
        lambda doc: _orders(doc)["config"].update(event_time="order_date) or (1=1"),
        "field config.event_time",
    ),
    "meta nested 300 deep": (_deep, "field meta: is nested deeper than 64 levels"),
    "a 30 MB description": (
        lambda doc: _orders(doc).update(description="x" * (30 << 20)),
        "field description",
    ),
}


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_forged_interfaces_are_refused_and_nothing_runs_in_either_consumer(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each forgery reaches `invoke build` of both real consumers: refused in one line naming
    node and field, no file of either consumer changed. Then a hostile-but-valid interface (Jinja
    and SQL in descriptions, meta and tags) is synced and really built by both consumers: no table,
    no file, no environment value, no log line comes of it."""
    from mesh.errors import MeshError
    from mesh.pipeline import build_project

    monkeypatch.setenv("MY_SECRET", SECRET)
    monkeypatch.setenv("MESH_CANARY", CANARY)
    canary_file = workspace / "canary-file.csv"
    mesh = load_mesh(workspace, "local")
    registry = mesh.registry
    assert isinstance(registry, FileRegistry)
    warehouse = workspace / "warehouse"
    tables_before = {p.name: tables(p) for p in warehouse.glob("*.duckdb")}
    for name, (change, field) in FORGERIES.items():
        version = forge(registry, change)
        for consumer in ("dbt_down", "dbt_down_loom"):
            before = files_of(workspace / consumer)
            with pytest.raises(MeshError) as refused:
                build_project(mesh, consumer, say=None)
            message = str(refused.value)
            assert "\n" not in message, name
            assert f"dbt_up/local latest {version}: " in message and field in message, (name, message)
            assert files_of(workspace / consumer) == before, name

    # Hostile text the schema keeps (it is text): defused, then really built.
    jinja = (
        f"{{{{ run_query(\"copy (select 1) to '{canary_file}'\") }}}} {{{{ env_var('MY_SECRET') }}}} "
        "{% do run_query('create table main.pwned as select 1 as x') %}"
    )

    def text(doc: dict[str, Any]) -> None:
        for node in doc["nodes"].values():
            node["description"] = f"{jinja} '; drop table x; --"
            node["meta"] = {"owner": jinja, jinja: [jinja]}
            node["tags"] = [jinja]
            for column in node["columns"].values():
                column["description"] = jinja

    version = forge(registry, text)
    for consumer in ("dbt_down", "dbt_down_loom"):
        run = build_project(mesh, consumer, say=None)
        assert run.success and not run.errors, run.errors
        lock = orjson.loads((workspace / consumer / ".mesh/lock.json").read_bytes())
        assert lock["upstreams"]["dbt_up"]["version"] == version
    assert not canary_file.exists()
    assert {p.name: tables(p) for p in warehouse.glob("*.duckdb")} == tables_before
    for path in workspace.rglob("*"):
        if path.is_file() and path.suffix not in (".duckdb", ".wal"):
            data = path.read_bytes()
            assert SECRET.encode() not in data and CANARY.encode() not in data, path
            if "registry" not in path.parts:  # the forged entries carry the payload, as text
                assert b"INJECTED_SQL_RAN" not in data, path
