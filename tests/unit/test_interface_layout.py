"""The registry form of an interface (`dump_interface`) and reading it a node at a time
(`read_interface(lazy=True)`): same document, same checks as `load_interface`, any layout."""

from __future__ import annotations

import gc
from pathlib import Path

import orjson
import pytest

from mesh.errors import ChecksumError, ManifestError
from mesh.manifest import (
    NODE_SUMMARY_KEYS,
    build_interface,
    content_sha256,
    dump_interface,
    dump_json,
    extract_interface,
    load_interface,
    paused_gc,
    read_interface,
)
from tests import factories


def interface_doc(project: str = "core") -> dict:
    doc = factories.producer(project)
    nodes, groups = extract_interface(doc)
    meta = {"version": "20261123T101502.123456Z-3f2a9c1e", "content_sha256": content_sha256(nodes, groups)}
    return build_interface(doc, nodes, groups, meta)


def test_dump_interface_is_the_same_json_one_node_per_line() -> None:
    doc = interface_doc()
    body = dump_interface(doc)
    assert orjson.loads(body) == doc
    assert len(body) < len(dump_json(doc))
    lines = body.split(b"\n")
    assert b'"nodes":{' in lines[0] and len(lines) == len(doc["nodes"]) + 3
    assert load_interface(body, "test", "core")["nodes"] == doc["nodes"]


@pytest.mark.parametrize("dump", [dump_interface, dump_json], ids=["registry-form", "indented"])
def test_lazy_read_matches_load_interface(dump: object) -> None:
    doc = interface_doc()
    body = dump(doc)  # type: ignore[operator]
    full = load_interface(body, "test", "core")
    lazy = read_interface(body, "test", "core", lazy=True)
    assert (lazy.spans is not None) == (dump is dump_interface)  # other layouts: parsed whole
    assert sorted(lazy.doc["nodes"]) == sorted(full["nodes"])
    for uid, node in full["nodes"].items():
        assert lazy.node(uid) == node
        if lazy.spans is not None:
            assert set(lazy.doc["nodes"][uid]) == set(NODE_SUMMARY_KEYS)
    assert {k: v for k, v in lazy.doc.items() if k != "nodes"} == {
        k: v for k, v in full.items() if k != "nodes"
    }


def test_lazy_read_checks_the_content_hash_and_the_project() -> None:
    body = dump_interface(interface_doc())
    tampered = body.replace(b'"revenue description"', b'"revenue descriptioN"')
    assert tampered != body
    with pytest.raises(ChecksumError):
        read_interface(tampered, "test", "core", lazy=True)
    # A tampered relation is refused by the schema before the hash is computed.
    forged = body.replace(b'"daily_revenue"', b'"daily_revenuf"', 1)
    with pytest.raises(ManifestError, match=r"node model\.core\.revenue, field relation_name"):
        read_interface(forged, "test", "core", lazy=True)
    with pytest.raises(ManifestError, match="belongs to project"):
        read_interface(body, "test", "other", lazy=True)
    uid = sorted(interface_doc()["nodes"])[0]
    renamed = body.replace(f'"unique_id":"{uid}"'.encode(), b'"unique_id":"model.core.x"', 1)
    with pytest.raises(ManifestError, match=rf"node {uid}, field unique_id: 'model.core.x' does not match"):
        read_interface(renamed, "test", "core", lazy=True)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda b: b.replace(b'"nodes":{\n', b'"nodes":{\n\n', 1),  # a blank line
        lambda b: b[:-2] + b',"extra":1}\n',  # nodes no longer last
        lambda b: b.replace(b",\n", b",", 1),  # two nodes on one line
    ],
    ids=["blank-line", "not-last", "two-per-line"],
)
def test_other_layouts_fall_back_to_the_whole_parse(mangle: object) -> None:
    body = dump_interface(interface_doc())
    changed = mangle(body)  # type: ignore[operator]
    try:
        expected = load_interface(changed, "test", "core")
    except ManifestError as exc:
        with pytest.raises(type(exc)):
            read_interface(changed, "test", "core", lazy=True)
        return
    lazy = read_interface(changed, "test", "core", lazy=True)
    assert {uid: lazy.node(uid) for uid in lazy.doc["nodes"]} == expected["nodes"]


def test_unsorted_nodes_are_read_the_usual_way() -> None:
    doc = interface_doc()
    doc["nodes"] = dict(reversed(list(doc["nodes"].items())))
    lazy = read_interface(dump_interface(doc), "test", "core", lazy=True)
    assert lazy.spans is None and lazy.doc["nodes"] == doc["nodes"]


def test_paused_gc_restores_the_collector() -> None:
    assert gc.isenabled()
    with paused_gc():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()  # it was off before: stays off
    finally:
        gc.enable()


def test_reused_manifests_parses_an_unchanged_file_once(tmp_path: Path) -> None:
    from mesh.manifest import load_manifest, reused_manifests

    path = tmp_path / "manifest.json"
    path.write_bytes(orjson.dumps(factories.producer()))
    assert load_manifest(path) is not load_manifest(path)  # outside the block: parsed each time
    with reused_manifests():
        first = load_manifest(path, project="core")
        assert load_manifest(path) is first
        with pytest.raises(ManifestError, match="belongs to project"):
            load_manifest(path, project="other")  # checked on every call all the same
        doc = factories.producer()
        doc["metadata"]["invocation_id"] = "inv-2"
        path.write_bytes(orjson.dumps(doc) + b" ")  # a new build: parsed again
        assert load_manifest(path)["metadata"]["invocation_id"] == "inv-2"
    assert load_manifest(path) is not load_manifest(path)
