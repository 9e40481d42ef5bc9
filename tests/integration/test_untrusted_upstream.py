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
