"""Recovery from a damaged `latest`, on the folder and S3 backends (the contract suite's way).

The damage a user meets: the history entry `latest` points to is truncated (folder: the file
itself; S3: the history object and the `latest` copy, overwritten behind the registry's back with
their stored checksums kept). Then `registry.list` marks it, every reader fails with one line naming
`invoke registry.fsck --project P --repair` (exit 2, nothing written), fsck reports it (exit 1),
`fsck --repair` makes the newest intact version latest again as a new recorded entry by
compare-and-swap, sync works again, and a second fsck is clean. `registry.rollback` is the other way
out.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from mesh.consumer.validate import validate_manifest
from mesh.core.errors import ChecksumError
from mesh.core.names import new_version
from mesh.interface.publish import publish_project
from mesh.interface.retention import fsck_project
from mesh.interface.versions import diff_versions, record_rollback, rollback_project
from mesh.project.artifacts import build_interface, extract_interface
from mesh.project.config import Mesh, load_mesh
from mesh.registry import CorruptLatestError, commit_version, read_latest_or_damage
from mesh.registry.document import content_sha256, dump_interface, load_interface
from mesh.registry.file import FileRegistry
from mesh.registry.s3 import S3Registry
from mesh.run.pipeline import sync_project
from mesh.ui.lineage_graph import load_graph
from mesh.ui.report import registry_diff_lines, registry_list_lines, registry_show_lines
from tests import factories
from tests.conftest import REPO
from tests.servers import new_bucket

BIN = Path(sys.executable).parent
P, ENV = "core", "local"
T0 = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
FIX = f"invoke registry.fsck --project {P} --repair"
MESH_YML = """version: 1
projects:
  core: {{path: core}}
  app: {{path: app, upstreams_via: sources}}
targets:
  local: {{registry: "{url}", env: local}}
"""


def interface(i: int, project: str = P) -> tuple[str, bytes]:
    """Version i of `project`'s interface: each version adds a column to `orders` (not breaking)."""
    columns = {"id": "integer", "amount": "double", **{f"extra_{j}": "text" for j in range(i)}}
    built = (T0 + timedelta(hours=i)).isoformat().replace("+00:00", "Z")
    doc = factories.manifest(
        project,
        [factories.model(project, "orders", columns=columns), factories.model(project, "refunds")],
        generated_at=built,
    )
    nodes, groups = extract_interface(doc)
    sha = content_sha256(nodes, groups)
    version = new_version(sha, T0 + timedelta(hours=i, minutes=5))
    meta = {
        "format": 1, "version": version, "content_sha256": sha, "published_at": built,
        "built_at": built, "env": ENV, "dbt_version": "1.11.0", "git_sha": None,
        "publisher": "ci:test", "previous": None, "public_models": len(nodes),
    }
    return version, dump_interface(build_interface(doc, nodes, groups, meta))


def publish_versions(mesh: Mesh, count: int) -> list[str]:
    versions = []
    for i in range(count):
        version, body = interface(i)
        assert commit_version(mesh.registry, P, ENV, version, body, lambda _current: True)
        versions.append(version)
    return versions


def make_mesh(root: Path, url: str) -> Mesh:
    for name in ("core", "app"):
        (root / name / "models").mkdir(parents=True, exist_ok=True)
        (root / name / "dbt_project.yml").write_text(f"name: {name}\n")
    (root / "app" / "dependencies.yml").write_text("projects:\n  - name: core\n")
    (root / "app" / "models" / "a.sql").write_text("select * from {{ source('core', 'orders') }}")
    (root / "mesh.yml").write_text(MESH_YML.format(url=url))
    return load_mesh(root, "local")


def truncate(registry: Any, version: str, also_latest: bool = True) -> None:
    """Cut the bytes of history entry `version` in half behind the registry's back, keeping the
    stored checksum (folder: the file `latest` links to; S3: the object, and the `latest` copy)."""
    if isinstance(registry, FileRegistry):
        path = registry.root / P / ENV / "history" / version / "manifest.json"
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return
    assert isinstance(registry, S3Registry)
    base = f"{registry.prefix}/{P}/{ENV}"
    keys = [f"{base}/history/{version}/manifest.json"] + ([f"{base}/latest/manifest.json"] if also_latest else [])
    for key in keys:
        old = registry.client.get_object(Bucket=registry.bucket, Key=key)
        data = old["Body"].read()
        registry.client.put_object(
            Bucket=registry.bucket, Key=key, Body=data[: len(data) // 2], Metadata=old["Metadata"]
        )


def snapshot(mesh: Mesh) -> dict[str, Any]:
    """Every registry object and every file of the mesh folder: equal snapshots, nothing written."""
    found: dict[str, Any] = {}
    registry = mesh.registry
    if isinstance(registry, S3Registry):
        for page in registry.client.get_paginator("list_objects_v2").paginate(Bucket=registry.bucket):
            for item in page.get("Contents", []):
                found[f"s3:{item['Key']}"] = item["ETag"]
    for folder, dirs, files in os.walk(mesh.root.parent):
        for name in files + dirs:
            path = Path(folder) / name
            if path.is_symlink():
                found[str(path)] = os.readlink(path)
            elif path.is_file():
                found[str(path)] = path.read_bytes()
    return found


@pytest.fixture(params=["folder", "s3"])
def mesh(request: pytest.FixtureRequest, tmp_path: Path) -> Mesh:
    if request.param == "folder":
        return make_mesh(tmp_path / "mesh", f"file://{tmp_path / 'registry'}")
    request.getfixturevalue("s3_env")
    bucket = new_bucket(request.getfixturevalue("moto_s3"))
    return make_mesh(tmp_path / "mesh", f"s3://{bucket}/reg")


@pytest.fixture
def damaged(mesh: Mesh) -> tuple[Mesh, list[str]]:
    """Three versions; the one latest holds (the third) truncated."""
    versions = publish_versions(mesh, 3)
    truncate(mesh.registry, versions[2])
    return mesh, versions


def one_line_hint(exc: BaseException) -> str:
    message = str(exc)
    assert "\n" not in message and FIX in message, message
    return message


def test_list_marks_the_damaged_latest_and_shows_what_to_roll_back_to(damaged: tuple[Mesh, list[str]]) -> None:
    mesh, (v0, v1, v2) = damaged
    warnings: list[str] = []
    lines = registry_list_lines(mesh, P, warn=warnings.append)
    assert warnings == []
    assert lines[0].startswith(f"{P}/{ENV} in {mesh.registry.url}: 3 versions, newest first; latest {v2} is DAMAGED")
    assert FIX in lines[0]
    rows = lines[1:]
    assert [row.split()[0] for row in rows] == [v2, v1, v0]  # newest first
    assert rows[0].split()[1:3] == ["latest", "DAMAGED"]
    for row, i in ((rows[1], 1), (rows[2], 0)):
        published = (T0 + timedelta(hours=i)).isoformat().replace("+00:00", "Z")
        assert "DAMAGED" not in row and "latest" not in row.split(" published")[0]
        assert f"published {published} by ci:test, 2 public nodes" in row
    everything = registry_list_lines(mesh, None)
    assert everything[0].endswith("1 published project/env pair")
    assert f"latest {v2} DAMAGED" in everything[1] and FIX in everything[1]


def test_every_reader_fails_with_the_repair_hint_and_writes_nothing(damaged: tuple[Mesh, list[str]]) -> None:
    mesh, (_v0, _v1, v2) = damaged
    consumer = factories.manifest("app", [factories.model("app", "a", access="protected", depends_on=["model.core.orders"])])
    (mesh.root / "app" / "target").mkdir()
    (mesh.root / "app" / "target" / "manifest.json").write_bytes(orjson.dumps(consumer))
    build = factories.manifest(P, [factories.model(P, "orders")], generated_at="2027-01-01T00:00:00Z")
    (mesh.root / "core" / "target").mkdir()
    (mesh.root / "core" / "target" / "manifest.json").write_bytes(orjson.dumps(build))
    (mesh.root / "core" / "target" / "run_results.json").write_bytes(orjson.dumps(factories.run_results(build)))
    before = snapshot(mesh)
    readers = {
        "sync": lambda: sync_project(mesh, "app"),
        "validate": lambda: validate_manifest(mesh, mesh.root / "app" / "target" / "manifest.json"),
        "lineage": lambda: load_graph(mesh),
        "registry.show": lambda: registry_show_lines(mesh, P, None),
        "registry.diff": lambda: registry_diff_lines(mesh, P, None, None),
    }
    for what, read in readers.items():
        with pytest.raises(CorruptLatestError) as info:
            read()
        message = one_line_hint(info.value)
        assert f"latest of {P}/{ENV} ({v2}) is damaged" in message, what
        assert info.value.exit_code == 2
    assert snapshot(mesh) == before


def test_a_passing_build_publishes_over_a_damaged_latest(damaged: tuple[Mesh, list[str]]) -> None:
    """The producer's own passing build is the natural recovery: recorded, judged against the
    newest intact version, and consumers read the new latest."""
    mesh, (_v0, v1, v2) = damaged
    build = factories.manifest(P, [factories.model(P, "orders")], generated_at="2027-01-01T00:00:00Z")
    (mesh.root / "core" / "target").mkdir()
    (mesh.root / "core" / "target" / "manifest.json").write_bytes(orjson.dumps(build))
    (mesh.root / "core" / "target" / "run_results.json").write_bytes(orjson.dumps(factories.run_results(build)))
    result = publish_project(mesh, P)
    assert result.status == "published" and result.replaced_damaged == v2
    latest = mesh.registry.read_latest(P, ENV)
    assert latest is not None and latest.version == result.version
    meta = orjson.loads(latest.body)["metadata"]["mesh"]
    assert meta["replaces_damaged"] == v2 and meta["previous"] == v2
    assert fsck_project(mesh, P).ok or all(v1 not in line for line in fsck_project(mesh, P).found)


def test_fsck_reports_then_repair_recovers_by_a_recorded_publish(damaged: tuple[Mesh, list[str]]) -> None:
    mesh, (v0, v1, v2) = damaged
    registry = mesh.registry
    before = snapshot(mesh)
    found = fsck_project(mesh, P)
    assert not found.ok and found.remaining == found.found
    assert len(found.found) == 1 and found.found[0].startswith(f"latest {v2} is damaged: ")
    assert f"fsck {P}/{ENV} in {registry.url}: 1 problem" == found.lines()[0]
    error = str(found.error())
    assert error.startswith(f"fsck {P}/{ENV}: 1 problem remains; run `{FIX}` to make {v1} ")
    assert found.error().exit_code == 1
    assert snapshot(mesh) == before  # without --repair nothing is written

    repaired = fsck_project(mesh, P, repair=True)
    assert repaired.ok
    latest = registry.read_latest(P, ENV)
    assert latest is not None and latest.version not in (v0, v1, v2)
    assert repaired.actions == [
        f"latest is now {latest.version}, a new history entry holding {v1} (the newest intact "
        f"version, published {(T0 + timedelta(hours=1)).isoformat().replace('+00:00', 'Z')}); the "
        f"damaged {v2} stays in history, no longer latest"
    ]
    assert repaired.lines()[-2:] == [f"  repaired: {repaired.actions[0]}", "  repaired 1, 0 left for a human"]
    doc = load_interface(latest.body, "latest", P)
    meta = doc["metadata"]["mesh"]
    assert (meta["rollback_of"], meta["recovered_from"], meta["previous"]) == (v1, v2, v2)
    assert meta["reason"].startswith(f"recovery: latest {v2} was damaged (")
    assert doc["nodes"] == load_interface(registry.read_version(P, ENV, v1).body, "v1", P)["nodes"]
    assert registry.list_versions(P, ENV) == [v0, v1, v2, latest.version]  # the damaged one stays

    plan = sync_project(mesh, "app")  # readers work again
    assert plan.upstream_versions == {P: latest.version}
    listing = registry_list_lines(mesh, P)
    assert listing[0].endswith(f"newest first; latest {latest.version}")
    assert listing[1].split()[:2] == [latest.version, "latest"]
    assert f"rollback to {v1}, recovered from the damaged {v2}" in listing[1]
    assert listing[2].split()[:2] == [v2, "DAMAGED"]
    assert listing[2].endswith("its bytes do not match their stored SHA-256 checksum")
    diff = registry_diff_lines(mesh, P, None, None)  # the default `from` skips the damaged entry
    assert diff[:3] == [
        f"{P}/{ENV} {v1} -> {latest.version}: 0 changes, 0 breaking",
        f"  note: skipped damaged {v2} (see `invoke registry.fsck --project {P}`)",
        "  the interfaces are identical",
    ]

    again = fsck_project(mesh, P)
    assert again.ok and again.found == []
    assert again.lines() == [
        f"fsck {P}/{ENV} in {registry.url}: clean",
        f"  note: history entry {v2} is damaged; latest was recovered from it by {latest.version} "
        "(it stays for the record until `invoke registry.prune --project core --keep N` removes it)",
    ]
    assert fsck_project(mesh, P, repair=True).actions == []  # nothing more to do


def test_concurrent_repairs_move_latest_once(damaged: tuple[Mesh, list[str]]) -> None:
    """Four fsck --repair at once: one recovery becomes latest; the others find it done or lose
    the compare-and-swap on the damaged object's token and say so."""
    mesh, (_v0, v1, v2) = damaged
    results: list[Any] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def repair() -> None:
        start.wait()
        try:
            results.append(fsck_project(mesh, P, repair=True))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=repair) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    won = [a for r in results for a in r.actions if a.startswith("latest is now")]
    lost = [a for r in results for a in r.actions if a.startswith("nothing: latest")]
    assert len(won) == 1 and len(won) + len(lost) <= 4
    latest = mesh.registry.read_latest(P, ENV)
    assert latest is not None and latest.version in won[0]
    meta = load_interface(latest.body, "latest", P)["metadata"]["mesh"]
    assert (meta["rollback_of"], meta["recovered_from"]) == (v1, v2)
    assert fsck_project(mesh, P).ok


def test_recovery_never_replaces_a_latest_that_moved(damaged: tuple[Mesh, list[str]]) -> None:
    """The compare-and-swap holds for a damaged latest too: a recovery planned against the damaged
    object loses to whoever replaced it first, and leaves their latest alone."""
    mesh, (v0, v1, v2) = damaged
    stale = read_latest_or_damage(mesh.registry, P, ENV)
    assert stale is not None and stale.damaged and stale.version == v2
    first = rollback_project(mesh, P, v0, say=lambda _line: None)
    assert first.status == "published"
    assert record_rollback(mesh, P, v1, "late recovery", v2, replaces=stale) is None
    latest = mesh.registry.read_latest(P, ENV)
    assert latest is not None and latest.version == first.version


def test_rollback_replaces_a_damaged_latest_gated_against_the_newest_intact(damaged: tuple[Mesh, list[str]]) -> None:
    mesh, (v0, v1, v2) = damaged
    with pytest.raises(ChecksumError) as info:
        rollback_project(mesh, P, v2, say=lambda _line: None)
    assert "\n" not in str(info.value) and f"registry.list --project {P}" in str(info.value)
    said: list[str] = []
    result = rollback_project(mesh, P, v0, reason="bad release", say=said.append)
    assert said[0].startswith(f"latest {v2} of {P}/{ENV} is damaged (")
    assert said[0].endswith(f"the contract gate compares with {v1}, the newest intact version")
    assert any(f"against latest {v1}" in line for line in said)  # the gate's own report
    assert result.status == "published" and result.previous == v2
    meta = load_interface(mesh.registry.read_version(P, ENV, result.version).body, "r", P)["metadata"]["mesh"]
    assert (meta["rollback_of"], meta["recovered_from"], meta["reason"]) == (v0, v2, "bad release")
    assert mesh.registry.read_latest(P, ENV).version == result.version  # type: ignore[union-attr]
    assert fsck_project(mesh, P).ok


def test_s3_damaged_latest_copy_is_restored_from_its_intact_entry(s3_env: Any, moto_s3: str, tmp_path: Path) -> None:
    """On S3 `latest` is a copy: when only the copy is damaged, its own entry is the recovery."""
    mesh = make_mesh(tmp_path / "mesh", f"s3://{new_bucket(moto_s3)}/reg")
    registry = mesh.registry
    assert isinstance(registry, S3Registry)
    versions = publish_versions(mesh, 2)
    key = f"{registry.prefix}/{P}/{ENV}/latest/manifest.json"
    old = registry.client.get_object(Bucket=registry.bucket, Key=key)
    registry.client.put_object(Bucket=registry.bucket, Key=key, Body=b"{", Metadata=old["Metadata"])
    with pytest.raises(CorruptLatestError) as info:
        sync_project(mesh, "app")
    one_line_hint(info.value)
    row = registry_list_lines(mesh, P)[1]
    assert row.startswith(f"  {versions[1]}  latest DAMAGED  published ")
    assert row.endswith("only the copy in latest/ is damaged, this entry is intact")
    found = fsck_project(mesh, P)
    assert "restore latest from its intact history entry" in str(found.error())
    repaired = fsck_project(mesh, P, repair=True)
    assert repaired.ok and repaired.actions == [
        f"latest is {versions[1]} again, restored from its intact history entry (only the copy in "
        "latest/ was damaged)"
    ]
    assert registry.list_versions(P, ENV) == versions  # no new entry: latest is what was published
    assert registry.read_latest(P, ENV).body == registry.read_version(P, ENV, versions[1]).body  # type: ignore[union-attr]
    assert fsck_project(mesh, P).lines() == [f"fsck {P}/{ENV} in {registry.url}: clean"]


def test_s3_damaged_entry_of_an_intact_latest_is_recorded_again(s3_env: Any, moto_s3: str, tmp_path: Path) -> None:
    """The converse: the copy reads whole, its history entry does not. Readers keep working; fsck
    reports it and --repair records the intact copy again as a new entry."""
    mesh = make_mesh(tmp_path / "mesh", f"s3://{new_bucket(moto_s3)}/reg")
    versions = publish_versions(mesh, 2)
    truncate(mesh.registry, versions[1], also_latest=False)
    assert sync_project(mesh, "app").upstream_versions == {P: versions[1]}
    found = fsck_project(mesh, P)
    assert found.found[0].startswith(f"the history entry of latest {versions[1]} is damaged")
    assert "--repair` to record latest" in str(found.error())
    repaired = fsck_project(mesh, P, repair=True)
    latest = mesh.registry.read_latest(P, ENV)
    assert repaired.ok and latest is not None and latest.version not in versions
    meta = load_interface(latest.body, "latest", P)["metadata"]["mesh"]
    assert (meta["rollback_of"], meta["recovered_from"]) == (versions[1], versions[1])
    assert fsck_project(mesh, P).ok


def test_folder_latest_pointing_at_a_missing_entry_is_recovered(tmp_path: Path) -> None:
    mesh = make_mesh(tmp_path / "mesh", f"file://{tmp_path / 'registry'}")
    v0, v1 = publish_versions(mesh, 2)
    shutil.rmtree(tmp_path / "registry" / P / ENV / "history" / v1)
    assert mesh.registry.list_published() == [(P, ENV)]  # a dangling latest is still published
    with pytest.raises(CorruptLatestError) as info:
        registry_show_lines(mesh, P, None)
    assert "which is missing or incomplete" in one_line_hint(info.value)
    found = fsck_project(mesh, P)
    assert found.found == [f"latest {v1} is damaged: it points at history entry {v1}, which is missing or incomplete ({tmp_path / 'registry' / P / ENV / 'history' / v1 / 'manifest.json'})"]
    repaired = fsck_project(mesh, P, repair=True)
    assert repaired.ok and f"holding {v0}" in repaired.actions[0]
    assert fsck_project(mesh, P).lines() == [f"fsck {P}/{ENV} in {mesh.registry.url}: clean"]


def test_no_intact_version_to_recover_to_is_left_for_a_human(mesh: Mesh) -> None:
    (only,) = publish_versions(mesh, 1)
    truncate(mesh.registry, only)
    before = snapshot(mesh)
    result = fsck_project(mesh, P, repair=True)
    assert not result.ok and result.actions == []
    assert "no intact version older than the damaged latest" in str(result.error())
    assert "\n" not in str(result.error())
    assert snapshot(mesh) == before


def test_list_warns_when_the_registry_folder_does_not_exist(tmp_path: Path) -> None:
    mesh = make_mesh(tmp_path / "mesh", f"file://{tmp_path / 'nowhere'}")
    for project in (None, P):
        warnings: list[str] = []
        lines = registry_list_lines(mesh, project, warn=warnings.append)
        assert len(warnings) == 1 and str(tmp_path / "nowhere") in warnings[0]
        assert warnings[0].startswith("warning: registry folder") and "does not exist" in warnings[0]
        assert lines[0].endswith("0 published project/env pairs" if project is None else "0 versions: nothing published")
    publish_versions(mesh, 1)
    quiet: list[str] = []
    registry_list_lines(mesh, None, warn=quiet.append)
    assert quiet == []


def test_diff_after_the_first_publish_lists_the_first_version_as_added(mesh: Mesh) -> None:
    (first,) = publish_versions(mesh, 1)
    old, new, changes = diff_versions(mesh, P)
    assert (old, new) == (None, first)
    assert [(c.kind, c.unique_id) for c in changes] == [
        ("model_added", "model.core.orders"), ("model_added", "model.core.refunds")
    ]
    lines = registry_diff_lines(mesh, P, None, None)
    assert lines[0] == (
        f"{P}/{ENV} {first}: the first version, there is no earlier version to compare with; "
        "2 public nodes added"
    )
    assert len(lines) == 3 and all("model_added" in line for line in lines[1:])


def invoke(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """A task of the repository's surface, pointed at a test registry (mesh.yml's dbt_up)."""
    env = {**os.environ, "MESH_REGISTRY": url, "MESH_ENV": ENV, "MESH_TARGET": "local"}
    return subprocess.run(
        [str(BIN / "invoke"), *args], cwd=REPO, capture_output=True, text=True, env=env, timeout=180,
        check=False,
    )


def test_task_surface_walk_through(tmp_path: Path) -> None:
    """The README's Recovery walk-through, through `invoke` itself (folder registry)."""
    registry = FileRegistry(tmp_path / "registry")
    project = "dbt_up"  # a project of the repository's mesh.yml, which the tasks read
    versions = []
    for i in range(3):
        version, body = interface(i, project)
        assert commit_version(registry, project, ENV, version, body, lambda _current: True)
        versions.append(version)
    path = registry.root / project / ENV / "history" / versions[2] / "manifest.json"
    path.write_bytes(path.read_bytes()[:100])
    url = registry.url
    fix = f"invoke registry.fsck --project {project} --repair"

    shown = invoke(url, "registry.show", "--project", project)
    assert shown.returncode == 2 and shown.stdout == ""
    assert shown.stderr.count("\n") == 1 and fix in shown.stderr
    listing = invoke(url, "registry.list", "--project", project)
    assert listing.returncode == 0 and f"{versions[2]}  latest DAMAGED" in listing.stdout
    found = invoke(url, "registry.fsck", "--project", project)
    assert found.returncode == 1 and f"latest {versions[2]} is damaged" in found.stdout
    assert found.stderr.strip().startswith(f"error: fsck {project}/{ENV}: 1 problem remains; run `{fix}`")
    repaired = invoke(url, "registry.fsck", "--project", project, "--repair")
    assert repaired.returncode == 0, repaired.stderr
    assert "repaired: latest is now " in repaired.stdout and f"holding {versions[1]}" in repaired.stdout
    clean = invoke(url, "registry.fsck", "--project", project)
    assert clean.returncode == 0 and f"{project}/{ENV} in {url}: clean" in clean.stdout
    back = invoke(url, "registry.rollback", "--project", project, "--to", versions[0])
    assert back.returncode == 0, back.stderr
    assert f"{project}/{ENV} in {url}: rolled back to {versions[0]} as " in back.stdout
    assert "(2 public nodes), previous " in back.stdout
    again = invoke(url, "registry.rollback", "--project", project, "--to", versions[0])
    assert again.returncode == 0 and "nothing published" in again.stdout
    nowhere = invoke(f"file://{tmp_path / 'nowhere'}", "registry.list")
    assert nowhere.returncode == 0 and nowhere.stdout.strip().endswith("0 published project/env pairs")
    assert nowhere.stderr.startswith("warning: registry folder") and nowhere.stderr.count("\n") == 1

