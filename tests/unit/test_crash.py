"""Kill the publishing process (SIGKILL) at every step of a publish, on the folder and S3 backends.

The publish is the real `mesh publish` console script, killed by the failpoints of mesh/core/failpoints.py
(MESH_FAILPOINT) or, on S3, by the test while a PUT is in flight (the fault proxy holds the request,
the test kills the client, the proxy then delivers it: the write lands after its writer died).
After each kill:
- `latest` is the previous version or the new one, complete (checksum, content hash, parseable by
  dbt-loom's own loader), never anything else;
- no orphan is mistaken for a version: every version `list_versions` names reads back verified;
- `invoke registry.fsck` reports leftovers (exit 1) and `--repair` removes them (exit 0);
- rerunning the publish converges: `latest` holds the new build in exactly one history entry (an
  interrupted commit is finished, not duplicated), and a further rerun changes nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from mesh.core.failpoints import NAMES
from mesh.interface.publish import publish_project
from mesh.project.config import Mesh, load_mesh
from mesh.registry import Registry
from mesh.registry.document import load_interface
from mesh.registry.file import FileRegistry
from mesh.ui.cli import run_publish
from tests import factories
from tests.conftest import REPO
from tests.faultproxy import Fault, FaultProxy
from tests.reliability import report, scale
from tests.servers import new_bucket, s3_environment

BIN = Path(sys.executable).parent
P, ENV = "core", "local"
REPEAT = scale(1, 4)
# Where a leftover is expected on the folder backend (S3 PUTs are atomic: never any).
LEAVES_LEFTOVER = {"registry.history.partial", "registry.history.uncommitted", "registry.latest.prepared"}
FOLDER_ONLY = {"registry.history.partial", "registry.history.uncommitted"}


@dataclass
class Setup:
    root: Path
    mesh: Mesh
    registry: Registry
    generation: int = 0

    def build(self) -> dict[str, Any]:
        """A new build of `core`, newer and different from every one before."""
        self.generation += 1
        doc = factories.producer(P)
        doc["metadata"]["generated_at"] = f"2026-11-23T10:{self.generation:02d}:00.000000Z"
        doc["metadata"]["invocation_id"] = f"inv-{self.generation}"
        doc["nodes"][f"model.{P}.orders"]["description"] = f"generation {self.generation}"
        target = self.root / P / "target"
        target.mkdir(parents=True, exist_ok=True)
        (target / "manifest.json").write_bytes(orjson.dumps(doc))
        (target / "run_results.json").write_bytes(orjson.dumps(factories.run_results(doc)))
        return doc


def make_setup(root: Path, registry_url: str) -> Setup:
    (root / P).mkdir(parents=True)
    (root / P / "dbt_project.yml").write_text(f"name: {P}\n")
    (root / "mesh.yml").write_text(
        f'version: 1\nprojects:\n  {P}: {{path: {P}}}\ntargets:\n  local: {{registry: "{registry_url}", env: {ENV}}}\n'
    )
    mesh = load_mesh(root, "local")
    return Setup(root, mesh, mesh.registry)


@pytest.fixture
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    if request.param == "folder":
        yield make_setup(tmp_path / "mesh", f"file://{tmp_path / 'registry'}")
    else:
        request.getfixturevalue("s3_env")
        bucket = new_bucket(request.getfixturevalue("moto_s3"))
        yield make_setup(tmp_path / "mesh", f"s3://{bucket}/crash")


def publish_cli(root: Path, failpoint: str | None = None, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DO_NOT_TRACK": "1", **extra}
    env.pop("MESH_FAILPOINT", None)
    if failpoint:
        env["MESH_FAILPOINT"] = failpoint
    return subprocess.run(
        [str(BIN / "mesh"), "--root", str(root), "publish", "--project", P],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )


def invoke_fsck(registry_url: str, repair: bool) -> subprocess.CompletedProcess[str]:
    """`invoke registry.fsck` of the repository's task surface, pointed at the test registry."""
    env = {**os.environ, "MESH_REGISTRY": registry_url, "MESH_ENV": ENV, "MESH_TARGET": "local"}
    args = [str(BIN / "invoke"), "registry.fsck", "--project", P] + (["--repair"] if repair else [])
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, env=env, timeout=120, check=False)


def content_sha(doc: dict[str, Any]) -> str:
    from mesh.project.artifacts import extract_interface
    from mesh.registry.document import content_sha256

    nodes, groups = extract_interface(doc)
    return content_sha256(nodes, groups)


def loom_reads_latest(setup: Setup) -> dict[str, Any] | None:
    """`latest` as dbt-loom's own loader reads it (None: nothing there)."""
    from dbt_loom.config import LoomConfigurationError, ManifestReference
    from dbt_loom.manifests import ManifestLoader

    registry = setup.registry
    if isinstance(registry, FileRegistry):
        config: dict[str, Any] = {"path": str(registry.latest_path(P, ENV))}
        kind = "file"
    else:
        config = {"bucket_name": registry.bucket, "object_name": f"{registry.prefix}/{P}/{ENV}/latest/manifest.json"}
        kind = "s3"
    try:
        return ManifestLoader().load(ManifestReference(name=P, type=kind, config=config))
    except (Exception, LoomConfigurationError) as exc:
        if "does not exist" in str(exc):
            return None
        raise


def check_after_crash(setup: Setup, previous: str, new_sha: str) -> tuple[str, int]:
    """The invariants right after a kill; returns what latest holds ('previous' or 'new') and how
    many problems were found (counted as corrupted by the reliability report)."""
    registry = setup.registry
    latest = registry.read_latest(P, ENV)
    assert latest is not None, "latest vanished"
    doc = load_interface(latest.body, "latest", P)  # checksum and content hash verified
    loom = loom_reads_latest(setup)
    assert loom is not None and loom == orjson.loads(latest.body)
    if latest.version == previous:
        state = "previous"
    else:
        assert doc["metadata"]["mesh"]["content_sha256"] == new_sha, "latest is neither old nor new"
        state = "new"
    for version in registry.list_versions(P, ENV):
        entry = registry.read_version(P, ENV, version)
        load_interface(entry.body, version, P)
    return state, 0


def converge(setup: Setup, new_sha: str) -> str:
    """Rerun the publish (as `mesh publish` does it, contract gate included) until nothing changes;
    return the version latest ends at."""
    first = run_publish(setup.mesh, P, False, None)
    assert ": published " in first or "interface unchanged" in first, first
    latest = setup.registry.read_latest(P, ENV)
    assert latest is not None
    again = run_publish(setup.mesh, P, False, None)
    assert f"interface unchanged since {latest.version}" in again, again
    doc = load_interface(latest.body, "latest", P)
    assert doc["metadata"]["mesh"]["content_sha256"] == new_sha
    same_build = [
        v for v in setup.registry.list_versions(P, ENV)
        if load_interface(setup.registry.read_version(P, ENV, v).body, v, P)["metadata"]["mesh"]["content_sha256"] == new_sha
    ]
    assert same_build == [latest.version], "the interrupted publish was duplicated, not finished"
    return latest.version


EXPECTED_STATE = {
    "publish.audited": "previous",
    "registry.history.partial": "previous",
    "registry.history.uncommitted": "previous",
    "registry.history.committed": "previous",
    "registry.latest.prepared": "previous",
    "registry.latest.swapped": "new",
}


# One atomic PUT on S3: there is no half-written history entry to kill it at.
CASES = [(b, p) for b in ("folder", "s3") for p in NAMES if b == "folder" or p not in FOLDER_ONLY]


@pytest.mark.parametrize(("setup", "point"), CASES, indirect=["setup"])
def test_publish_killed_at_each_step(setup: Setup, point: str) -> None:
    is_folder = isinstance(setup.registry, FileRegistry)
    assert set(EXPECTED_STATE) == set(NAMES)
    setup.build()
    publish_project(setup.mesh, P)
    kills = problems = 0
    for _ in range(REPEAT):
        previous = setup.registry.read_latest(P, ENV)
        assert previous is not None
        new_sha = content_sha(setup.build())
        crashed = publish_cli(setup.root, point)
        assert crashed.returncode == -signal.SIGKILL, (crashed.returncode, crashed.stderr)
        kills += 1
        state, found = check_after_crash(setup, previous.version, new_sha)
        problems += found
        assert state == EXPECTED_STATE[point]
        url = setup.registry.url
        if is_folder:
            before = invoke_fsck(url, repair=False)
            if point in LEAVES_LEFTOVER:
                assert before.returncode == 1 and "leftover of an interrupted write" in before.stdout, before
                assert before.stderr.strip().count("\n") == 0 and "--repair" in before.stderr
                repaired = invoke_fsck(url, repair=True)
                assert repaired.returncode == 0 and "repaired 1, 0 left" in repaired.stdout, repaired
            else:
                assert before.returncode == 0 and "clean" in before.stdout, before
        assert setup.registry.fsck(P, ENV, repair=False) == []
        converge(setup, new_sha)
    report(f"crash: {'folder' if is_folder else 's3'}", cases=REPEAT, faults=kills, corrupted=problems)


def test_rerun_without_repair_converges_and_leftovers_stay_invisible(tmp_path: Path) -> None:
    """Leftovers of a killed publish never block the next one and are never read as versions."""
    setup = make_setup(tmp_path / "mesh", f"file://{tmp_path / 'registry'}")
    setup.build()
    publish_project(setup.mesh, P)
    for point in ("registry.history.partial", "registry.history.uncommitted", "registry.latest.prepared"):
        new_sha = content_sha(setup.build())
        assert publish_cli(setup.root, point).returncode == -signal.SIGKILL
        converge(setup, new_sha)
    env_dir = tmp_path / "registry" / P / ENV
    leftovers = sorted(p.name.split("-")[0] for p in [*env_dir.glob(".latest-*"), *(env_dir / "history").glob(".tmp-*")])
    assert leftovers == [".latest", ".tmp", ".tmp"]
    versions = setup.registry.list_versions(P, ENV)
    assert len(versions) == 4 and all(not v.startswith(".") for v in versions)
    assert len(setup.registry.fsck(P, ENV, repair=True)) == 3
    assert setup.registry.fsck(P, ENV, repair=False) == []
    assert setup.registry.list_versions(P, ENV) == versions


@pytest.mark.parametrize("what", ["history", "latest"])
def test_s3_client_killed_while_its_put_is_in_flight(
    s3_env: dict[str, str], moto_s3: str, fault_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path, what: str,
) -> None:
    """The publisher dies while S3 holds its PUT; the PUT lands afterwards. History gets a complete
    entry or nothing, latest the old or the new object, and a rerun finishes the publish."""
    bucket = new_bucket(moto_s3)
    setup = make_setup(tmp_path / "mesh", f"s3://{bucket}/crash")
    setup.build()
    publish_project(setup.mesh, P)
    previous = setup.registry.read_latest(P, ENV)
    assert previous is not None
    new_sha = content_sha(setup.build())
    s3_environment(monkeypatch, fault_proxy.url, tmp_path / "aws")
    monkeypatch.setenv("MESH_S3_TIMEOUT", "30")
    held = fault_proxy.add(Fault("delay", method="PUT", path=f"/{what}/", delay_s=2.0))
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DO_NOT_TRACK": "1"}
    proc = subprocess.Popen(
        [str(BIN / "mesh"), "--root", str(setup.root), "publish", "--project", P],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while held.times != 0 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert held.times == 0, "the PUT never reached the proxy"
        proc.kill()  # SIGKILL, while the proxy holds the PUT
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    time.sleep(2.5)  # the proxy delivers the held PUT now
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_s3)
    state, problems = check_after_crash(setup, previous.version, new_sha)
    assert state == ("previous" if what == "history" else "new")
    assert setup.registry.fsck(P, ENV, repair=False) == []
    converge(setup, new_sha)
    report("crash: s3 in flight", cases=1, faults=1, corrupted=problems)
