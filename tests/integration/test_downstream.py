"""`invoke downstream` on the built template: the consumers a producer's publish reaches, with the
repositories that build them, from the registry alone."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from mesh.consumer.downstream import downstream
from mesh.consumer.freshness import OBJECT
from mesh.interface.usage import record_usage
from mesh.project.config import load_mesh
from mesh.registry.document import dump_json
from mesh.ui.cli import main

pytestmark = pytest.mark.slow
REVENUE = "model.dbt_up.public_daily_revenue"


@pytest.fixture(autouse=True)
def recorded_without_a_repository(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The usage records as a consumer outside GitHub Actions writes them (this suite may run in it)."""
    monkeypatch.delenv("GITHUB_REPOSITORY", raising=False)
    mesh = load_mesh(workspace, "local")
    for consumer in ("dbt_down", "dbt_down_loom"):
        record_usage(mesh, consumer)


def reached(root: Path, since: str | None = None) -> dict[str, tuple[str | None, tuple[str, ...], tuple[str, ...]]]:
    found = downstream(load_mesh(root, "local"), "dbt_up", since)
    return {c.project: (c.repository, c.reasons, c.nodes) for c in found.consumers}


def test_every_consumer_with_the_repository_it_recorded(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = reached(workspace)
    assert set(found) == {"dbt_down", "dbt_down_loom"}
    assert found["dbt_down"][:2] == (None, ("reads dbt_up",)) and REVENUE in found["dbt_down"][2]

    mesh = load_mesh(workspace, "local")
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/dbt-down")  # what a consumer's CI records
    record_usage(mesh, "dbt_down")
    monkeypatch.setenv("GITHUB_REPOSITORY", "not a repository; curl evil")  # ignored, never recorded
    record_usage(mesh, "dbt_down_loom")
    found = reached(workspace)
    assert found["dbt_down"][0] == "acme/dbt-down" and found["dbt_down_loom"][0] is None
    doc = downstream(mesh, "dbt_up").to_json()
    assert doc["repositories"] == ["acme/dbt-down"]


def test_since_the_previous_version_only_consumers_of_what_changed(workspace: Path) -> None:
    mesh = load_mesh(workspace, "local")
    latest = mesh.registry.read_latest("dbt_up", "local")
    assert latest is not None
    assert reached(workspace, latest.version) == {}  # nothing changed since: nobody to trigger

    # every node rebuilt after that version, the same data but public_daily_revenue's
    body = mesh.registry.read_private("dbt_up", "local", OBJECT)
    assert body is not None
    fresh = orjson.loads(body)
    for node in fresh["nodes"].values():
        node["built_at"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    mesh.registry.write_private("dbt_up", "local", OBJECT, dump_json(fresh))
    assert reached(workspace, latest.version) == {}  # rebuilt alike: what they read did not move
    fresh["nodes"][REVENUE]["data_version"] = "0" * 16
    # and dbt_down stops using it
    mesh.registry.write_private("dbt_up", "local", OBJECT, dump_json(fresh))
    usage = orjson.loads(mesh.registry.read_private("dbt_down", "local", "usage") or b"")
    usage["uses"] = [u for u in usage["uses"] if u["upstream_node"] != REVENUE]
    mesh.registry.write_private("dbt_down", "local", "usage", dump_json(usage))
    assert reached(workspace, latest.version) == {
        "dbt_down_loom": (None, ("uses 1 changed node",), (REVENUE,)),
    }


def test_an_unreadable_record_is_reached_fail_closed(workspace: Path) -> None:
    mesh = load_mesh(workspace, "local")
    latest = mesh.registry.read_latest("dbt_up", "local")
    assert latest is not None
    mesh.registry.write_private("dbt_down", "local", "usage", b'{"forged": true}')
    found = reached(workspace, latest.version)
    assert list(found) == ["dbt_down"]
    assert found["dbt_down"][1][0].startswith("usage record unreadable")


def test_bad_input_is_one_line(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for args, fragment in (
        (["--since", "yesterday"], "--since 'yesterday' is not a version id"),
        (["--since", "20200101T000000.000000Z-0badc0de"], "dbt_up/local has no version 20200101T000000.000000Z-0badc0de"),
    ):
        code = main(["--root", str(workspace), "downstream", "--project", "dbt_up", *args])
        err = capsys.readouterr().err
        assert code != 0 and err.count("\n") == 1 and fragment in err, err
    assert main(["--root", str(workspace), "downstream", "--project", "dbt_up", "--format", "json"]) == 0
    doc = orjson.loads(capsys.readouterr().out)
    assert [c["project"] for c in doc["consumers"]] == ["dbt_down", "dbt_down_loom"]
