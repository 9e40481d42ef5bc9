"""`invoke registry.prune` / `registry.fsck` (mesh/interface/retention.py) on the folder and S3 backends.

Prune keeps the newest N, and never deletes `latest`, a version newer than `latest` (a publish in
flight), or a version a consumer may be pinned to (named in its sync lock or usage record, or newest
when its manifest was built); an unreadable pin record stops it. On S3 it sees past 1,000 entries.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from mesh.core.errors import ConfigError, RegistryError
from mesh.core.names import new_version, sha256_hex
from mesh.interface.retention import fsck_project, prune_project
from mesh.project.config import Mesh, load_mesh
from mesh.registry import commit_version
from mesh.registry.file import FileRegistry
from mesh.registry.s3 import S3Registry
from tests import factories
from tests.conftest import REPO
from tests.servers import new_bucket

BIN = Path(sys.executable).parent
P, ENV = "core", "local"
T0 = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
MESH_YML = """version: 1
projects:
  core: {{path: core}}
  app: {{path: app}}
targets:
  local: {{registry: "{url}", env: local}}
  prod: {{registry: "{url}", env: prod, upstream_env: local}}
"""


def vid(i: int) -> str:
    return new_version(sha256_hex(b"%d" % i), now=T0 + timedelta(hours=i))


def body(i: int, project: str = P) -> bytes:
    """Version i: a valid interface (fsck reads every entry against the registry schema)."""
    return factories.interface_body(project, vid(i))


def stamp(i: int, minutes: int = 30) -> str:
    """An ISO time `minutes` after version i was published."""
    return (T0 + timedelta(hours=i, minutes=minutes)).isoformat().replace("+00:00", "Z")


def make_mesh(root: Path, url: str) -> Mesh:
    for name in ("core", "app"):
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "dbt_project.yml").write_text(f"name: {name}\n")
    (root / "app" / "dependencies.yml").write_text("projects:\n  - name: core\n")
    (root / "mesh.yml").write_text(MESH_YML.format(url=url))
    return load_mesh(root, "local")


def publish_n(mesh: Mesh, count: int, latest_at: int | None = None) -> list[str]:
    """History 0..count-1; latest is `latest_at` (default the newest)."""
    registry = mesh.registry
    for i in range(count):
        registry.create_version(P, ENV, vid(i), body(i))
    target = count - 1 if latest_at is None else latest_at
    registry.swap_latest(P, ENV, vid(target), body(target), None)
    return [vid(i) for i in range(count)]


def usage(consumer: str, built_at: str, **extra: Any) -> bytes:
    return orjson.dumps(
        {
            "metadata": {"format": 1, "project_name": consumer, "manifest_generated_at": built_at, "recorded_at": built_at},
            "uses": [{"consumer": consumer, "node": f"model.{consumer}.a", "upstream": P, "upstream_node": f"model.{P}.orders", "via": "source", "pinned": False, "columns": ["id"]}],
            **extra,
        }
    )


@pytest.fixture(params=["folder", "s3"])
def mesh(request: pytest.FixtureRequest, tmp_path: Path) -> Mesh:
    if request.param == "folder":
        return make_mesh(tmp_path / "mesh", f"file://{tmp_path / 'registry'}")
    request.getfixturevalue("s3_env")
    bucket = new_bucket(request.getfixturevalue("moto_s3"))
    return make_mesh(tmp_path / "mesh", f"s3://{bucket}/reg")


def test_prune_keeps_latest_newest_in_flight_and_pinned(mesh: Mesh) -> None:
    versions = publish_n(mesh, 12, latest_at=9)  # 10 and 11: newer than latest (in flight)
    # app synced to v2 (its lock), built against v4 in env local (usage), and a consumer from
    # another repository names v6 in its usage record in env prod.
    lock = mesh.root / "app" / ".mesh" / "lock.json"
    lock.parent.mkdir(parents=True)
    lock.write_bytes(orjson.dumps({"upstreams": {P: {"env": ENV, "version": vid(2)}}}))
    mesh.registry.write_private("app", ENV, "usage", usage("app", stamp(4)))
    mesh.registry.write_private("elsewhere", "prod", "usage", usage("elsewhere", stamp(0), note=f"read {vid(6)}"))
    dry = prune_project(mesh, P, keep=2, dry_run=True)
    assert mesh.registry.list_versions(P, ENV) == versions  # a dry run deletes nothing
    result = prune_project(mesh, P, keep=2)
    assert result.deleted == dry.deleted
    # 3: the one before 4, in case 4 was still landing; 0: newest when `elsewhere` was built.
    kept = {vid(i) for i in (0, 2, 3, 4, 6, 9, 10, 11)}
    assert set(mesh.registry.list_versions(P, ENV)) == kept
    assert result.deleted == [vid(i) for i in (1, 5, 7, 8)]
    assert result.latest == vid(9) and set(result.newest) == {vid(10), vid(11)}
    assert set(result.pinned) == {vid(0), vid(2), vid(3), vid(4), vid(6)}
    assert "pinned by consumers" in result.lines()[0]
    assert prune_project(mesh, P, keep=2).deleted == []  # idempotent


@pytest.mark.parametrize("damage", ["lock", "usage"])
def test_prune_stops_when_a_pin_record_is_unreadable(mesh: Mesh, damage: str) -> None:
    versions = publish_n(mesh, 5)
    if damage == "lock":
        lock = mesh.root / "app" / ".mesh" / "lock.json"
        lock.parent.mkdir(parents=True)
        lock.write_bytes(b"{not json")
        error: type[Exception] = ConfigError
    else:
        mesh.registry.write_private("app", ENV, "usage", b"[1, 2]")
        error = ConfigError
    with pytest.raises(error) as info:
        prune_project(mesh, P, keep=1)
    assert "\n" not in str(info.value) and "then prune" in str(info.value)
    assert mesh.registry.list_versions(P, ENV) == versions


def test_prune_refuses_keep_below_one_and_history_without_latest(mesh: Mesh) -> None:
    with pytest.raises(ConfigError, match="at least 1"):
        prune_project(mesh, P, keep=0)
    mesh.registry.create_version(P, ENV, vid(0), body(0))
    with pytest.raises(RegistryError, match="no latest"):
        prune_project(mesh, P, keep=1)
    assert mesh.registry.list_versions(P, ENV) == [vid(0)]


def test_s3_prune_pages_past_one_thousand(s3_env: dict[str, str], moto_s3: str, tmp_path: Path) -> None:
    """1,003 entries (two listing pages): prune sees them all, in order, and removes the oldest."""
    bucket = new_bucket(moto_s3)
    mesh = make_mesh(tmp_path / "mesh", f"s3://{bucket}/reg")
    registry = mesh.registry
    assert isinstance(registry, S3Registry)
    count = 1003
    versions = [new_version(sha256_hex(b"%d" % i), now=T0 + timedelta(seconds=i)) for i in range(count)]
    history = f"{registry.prefix}/{P}/{ENV}/history"
    client = registry.client

    def put(version: str) -> None:  # raw puts: fast, and prune must not care who wrote them
        client.put_object(Bucket=bucket, Key=f"{history}/{version}/manifest.json", Body=b"{}")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, versions[:-1]))
    newest = orjson.dumps({"n": count})
    versions[-1] = new_version(sha256_hex(newest), now=T0 + timedelta(seconds=count))
    assert commit_version(registry, P, ENV, versions[-1], newest, lambda _: True)
    # app was built when versions[1] was newest: it and the one before stay.
    registry.write_private("app", ENV, "usage", usage("app", (T0 + timedelta(seconds=1.5)).isoformat()))
    result = prune_project(mesh, P, keep=998)
    assert result.deleted == versions[2:5]
    assert registry.list_versions(P, ENV) == versions[:2] + versions[5:]


def invoke(task: str, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """A task of the repository's surface, pointed at a test registry through MESH_REGISTRY."""
    env = {**os.environ, "MESH_REGISTRY": url, "MESH_ENV": "local", "MESH_TARGET": "local"}
    return subprocess.run(
        [str(BIN / "invoke"), task, *args], cwd=REPO, capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_tasks_prune_and_fsck(tmp_path: Path) -> None:
    registry = FileRegistry(tmp_path / "registry")
    project = "dbt_up"  # a project of the repository's mesh.yml, which the tasks read
    for i in range(4):
        registry.create_version(project, "local", vid(i), body(i, project))
    registry.swap_latest(project, "local", vid(3), body(3, project), None)
    (tmp_path / "registry" / project / "local" / "history" / ".tmp-x").mkdir()
    url = registry.url
    pruned = invoke("registry.prune", url, "--project", project, "--keep", "2")
    assert pruned.returncode == 0, pruned.stderr
    assert f"prune {project}/local" in pruned.stdout and "deleted 2" in pruned.stdout
    assert registry.list_versions(project, "local") == [vid(2), vid(3)]
    found = invoke("registry.fsck", url, "--project", project)
    assert found.returncode == 1 and "leftover of an interrupted write" in found.stdout
    assert found.stderr.strip().startswith("error: fsck dbt_up/local: 1 problem remains")
    assert invoke("registry.fsck", url, "--project", project, "--repair").returncode == 0
    clean = invoke("registry.fsck", url, "--project", project)
    assert clean.returncode == 0 and "clean" in clean.stdout
    bad = invoke("registry.prune", url, "--project", "../x", "--keep", "1")
    assert bad.returncode == 2 and "invalid project name" in bad.stderr


def test_fsck_project_reports_damage_it_cannot_repair(tmp_path: Path) -> None:
    mesh = make_mesh(tmp_path / "mesh", f"file://{tmp_path / 'registry'}")
    publish_n(mesh, 2)
    damaged = tmp_path / "registry" / P / ENV / "history" / vid(0) / "manifest.json"
    damaged.write_bytes(b"tampered")
    result = fsck_project(mesh, P, repair=True)
    assert not result.ok and len(result.remaining) == 1 and "damaged" in result.remaining[0]
    assert "1 left for a human" in result.lines()[-1]
    assert damaged.read_bytes() == b"tampered"  # never deleted automatically
