from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from mesh.errors import ChecksumError, ManifestError, PublishRefusedError
from mesh.manifest import (
    build_interface,
    check_run_results,
    content_sha256,
    dump_json,
    extract_interface,
    load_interface,
    load_manifest,
    public_node_ids,
)
from tests import factories


def write(path: Path, doc: object) -> Path:
    path.write_bytes(orjson.dumps(doc))
    return path


def test_interface_holds_exactly_public_models_without_sql() -> None:
    doc = factories.producer()
    nodes, groups = extract_interface(doc)
    assert sorted(nodes) == [
        "model.core.customers.v1",
        "model.core.customers.v2",
        "model.core.orders",
        "model.core.revenue",
    ]
    text = orjson.dumps(nodes).decode()
    assert "raw_code" not in text and "compiled_code" not in text and "select 1" not in text
    # depends_on trimmed to public nodes: orders' protected parent is gone, revenue keeps orders.
    assert nodes["model.core.orders"]["depends_on"]["nodes"] == []
    assert nodes["model.core.revenue"]["depends_on"]["nodes"] == ["model.core.orders"]
    assert nodes["model.core.revenue"]["alias"] == "daily_revenue"
    assert nodes["model.core.customers.v1"]["columns"]["name"]["data_type"] == "text"
    assert list(groups) == ["group.core.core"]


def test_foreign_package_public_models_are_not_republished() -> None:
    doc = factories.producer()
    foreign = factories.model("other", "theirs")
    doc["nodes"][foreign["unique_id"]] = foreign
    assert "model.other.theirs" not in public_node_ids(doc)


def test_content_hash_ignores_metadata_and_roundtrips() -> None:
    doc = factories.producer()
    nodes, groups = extract_interface(doc)
    sha = content_sha256(nodes, groups)
    body = dump_json(build_interface(doc, nodes, groups, {"version": "20261123T101502.123456Z-3f2a9c1e", "content_sha256": sha}))
    again = load_interface(body, "test", "core")
    assert again["nodes"] == nodes
    tampered = body.replace(b"\"revenue description\"", b"\"revenue descriptioN\"")
    with pytest.raises(ChecksumError):
        load_interface(tampered, "test", "core")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"   \n", "is empty"),
        (b'{"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json"', "not valid JSON"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"nodes": {}}', "no metadata.dbt_schema_version"),
        (b'{"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v99.json"}, "nodes": {}}', "incompatible schema"),
        (b'{"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json", "project_name": "other"}, "nodes": {}}', "belongs to project 'other'"),
        (b'{"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json", "project_name": "core"}}', "no `nodes` object"),
        (b'{"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json", "project_name": "core"}, "nodes": {"model.core.a": {"unique_id": "model.core.b"}}}', "malformed"),
    ],
)
def test_bad_manifests_are_one_line_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "manifest.json"
    path.write_bytes(content)
    with pytest.raises(ManifestError) as info:
        load_manifest(path, "core")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="not found"):
        load_manifest(tmp_path / "manifest.json")


def test_run_results_audit(tmp_path: Path) -> None:
    doc = factories.producer()
    ids = public_node_ids(doc)
    check_run_results(write(tmp_path / "rr.json", factories.run_results(doc)), doc, ids)
    with pytest.raises(PublishRefusedError, match="did not pass"):
        check_run_results(write(tmp_path / "rr.json", factories.run_results(doc, status="fail")), doc, ids)
    with pytest.raises(PublishRefusedError, match="did not run public model"):
        check_run_results(
            write(tmp_path / "rr.json", factories.run_results(doc, skip=("model.core.orders",))), doc, ids
        )
    other = factories.run_results(doc)
    other["metadata"]["invocation_id"] = "another-build"
    with pytest.raises(PublishRefusedError, match="invocation ids differ"):
        check_run_results(write(tmp_path / "rr.json", other), doc, ids)
    with pytest.raises(ManifestError, match=r"run_results\.json not found"):
        check_run_results(tmp_path / "none.json", doc, ids)
