"""Publishers race the real `publish_project` for rounds on one project/env while readers, dbt-loom's
own loader among them, read `latest` and watch history, on the folder and the S3 backend.

tests/unit/test_registry_concurrency.py races `commit_version` once; this races whole publishes
(audit, history, compare-and-swap) round after round, each publisher its own process with its own
build of distinct content, all builds of a round sharing one build time (so every one of them is
published and the version id decides which stays latest). Short: 8 publishers x 2 rounds (make
test); long: 32 x 10 (make reliability, MESH_RELIABILITY=long).

What must hold:
- no publish is lost: every publish ends in its own history entry holding exactly its build;
- `latest` ends at the newest publish, and that publisher was told it won;
- no reader (mesh's registry client, dbt-loom's ManifestLoader of type file / s3) ever gets a
  partial or mixed object: each `latest` read parses, its nodes hash to its own
  metadata.mesh.content_sha256, it equals the history entry of its version, and `latest` never
  goes back to an older build;
- no history entry changes after it is written (hashed when first listed, and at the end).
"""

from __future__ import annotations

import multiprocessing
import os
import time
import traceback
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from mesh.core.names import sha256_hex
from mesh.registry import Registry, open_registry
from tests import factories
from tests.faultproxy import FaultProxy
from tests.reliability import report, scale
from tests.servers import new_bucket, s3_environment

PUBLISHERS = scale(8, 32)
ROUNDS = scale(2, 10)
P, E = "core", "prod"
T0 = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
TIMEOUT_S = float(scale(120, 900))


def build_of(index: int, round_: int) -> dict[str, Any]:
    """Publisher `index`'s build in `round_`: distinct content, the round's build time."""
    built_at = (T0 + timedelta(minutes=round_)).isoformat().replace("+00:00", "Z")
    return factories.manifest(
        P,
        [
            factories.model(P, "stg_orders", access="private", schema="staging"),
            factories.model(
                P,
                "orders",
                description=f"publisher {index} round {round_}",
                depends_on=[f"model.{P}.stg_orders"],
            ),
            factories.model(P, "customers", columns={"id": "integer", f"c{index}_{round_}": "text"}),
        ],
        invocation=f"inv-{index}-{round_}",
        generated_at=built_at,
    )


def write_mesh(root: Path, registry_url: str) -> None:
    (root / P).mkdir(parents=True)
    (root / P / "dbt_project.yml").write_text(f"name: {P}\n")
    (root / "mesh.yml").write_text(
        "version: 1\n"
        f"projects:\n  {P}: {{path: {P}}}\n"
        f'targets:\n  local: {{registry: "{registry_url}", env: {E}}}\n'
    )


def write_build(root: Path, doc: dict[str, Any]) -> None:
    target = root / P / "target"
    target.mkdir(parents=True, exist_ok=True)
    (target / "manifest.json").write_bytes(orjson.dumps(doc))
    (target / "run_results.json").write_bytes(orjson.dumps(factories.run_results(doc)))


def canonical(doc: Any) -> str:
    return sha256_hex(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS))


def whole(doc: Any) -> tuple[str, str, str]:
    """(built_at, version, canonical hash) of an interface read as a whole; raises if it is partial
    or mixed (its nodes do not hash to its own content_sha256)."""
    from mesh.registry.document import content_sha256

    meta = doc["metadata"]["mesh"]
    if content_sha256(doc["nodes"], doc.get("groups") or {}) != meta["content_sha256"]:
        raise AssertionError(f"mixed object: nodes do not match content_sha256 of {meta['version']}")
    return str(meta["built_at"]), str(meta["version"]), canonical(doc)


# --- child processes ------------------------------------------------------------------------------


def publisher(root: str, index: int, start: Any, barrier: Any, results: Any) -> None:
    """Publish this publisher's build of every round, all publishers starting each round together."""
    try:
        from mesh.interface.publish import publish_project
        from mesh.project.config import load_mesh

        mesh = load_mesh(Path(root), "local")
        start.wait(TIMEOUT_S)
        for round_ in range(ROUNDS):
            write_build(Path(root), build_of(index, round_))
            barrier.wait(TIMEOUT_S)
            outcome = publish_project(mesh, P)
            results.put(("published", index, round_, outcome.version, outcome.status))
    except BaseException:
        results.put(("error", index, -1, traceback.format_exc(), ""))


def reader(kind: str, url: str, start: Any, stop: Any, results: Any) -> None:
    """Read `latest` until told to stop (`mesh`: the registry client; `loom`: dbt-loom's loader;
    `history`: list and hash every history entry once). Report what was seen, never raise."""
    seen: list[tuple[str, str, str]] = []  # (built_at, version, hash) of each change seen
    first_hash: dict[str, str] = {}
    problems: list[str] = []
    reads = 0
    try:
        registry = open_registry(url)
        loader: Any = None
        reference: Any = None
        LoomConfigurationError: Any = Exception
        if kind == "loom":
            from dbt_loom.config import LoomConfigurationError, ManifestReference
            from dbt_loom.manifests import ManifestLoader

            loader = ManifestLoader()
            if url.startswith("s3://"):
                bucket, _, prefix = url[len("s3://") :].partition("/")
                key = f"{prefix}/{P}/{E}/latest/manifest.json"
                reference = ManifestReference(
                    name=P, type="s3", config={"bucket_name": bucket, "object_name": key}
                )
            else:
                path = Path(url[len("file://") :]) / P / E / "latest" / "manifest.json"
                reference = ManifestReference(name=P, type="file", config={"path": str(path)})
        start.wait(TIMEOUT_S)
        while not stop.is_set():
            reads += 1
            try:
                if kind == "history":
                    for version in registry.list_versions(P, E):
                        if version not in first_hash:
                            body = registry.read_version(P, E, version).body
                            first_hash[version] = sha256_hex(body)
                    time.sleep(0.01)
                    continue
                if kind == "mesh":
                    entry = registry.read_latest(P, E)
                    if entry is None:
                        if seen:
                            problems.append("latest disappeared after it was published")
                        continue
                    doc = orjson.loads(entry.body)
                    if doc["metadata"]["mesh"]["version"] != entry.version:
                        problems.append(f"latest claims {entry.version}, its body another version")
                else:
                    try:
                        doc = loader.load(reference)
                    except (Exception, LoomConfigurationError) as exc:
                        # dbt-loom: LoomConfigurationError (a BaseException) for a missing file,
                        # a bare Exception for a missing S3 key.
                        if not seen and "does not exist" in str(exc):
                            continue  # nothing published yet
                        raise RuntimeError(f"dbt-loom: {exc}") from None
                found = whole(doc)
                if not seen or seen[-1] != found:
                    if seen and found[:2] < seen[-1][:2]:
                        problems.append(f"latest went back from {seen[-1][1]} to {found[1]}")
                    seen.append(found)
            except Exception as exc:
                problems.append(f"{kind} read {reads}: {type(exc).__name__}: {exc}"[:500])
    except BaseException:
        problems.append(traceback.format_exc())
        start.abort()  # do not leave the others waiting for a reader that is gone
    results.put(("read", kind, reads, (seen, first_hash, problems), ""))


# --- the race ---------------------------------------------------------------------------------------


def race(tmp_path: Path, url: str, registry: Registry, suite: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    roots = []
    for index in range(PUBLISHERS):
        root = tmp_path / f"publisher{index}"
        write_mesh(root, url)
        roots.append(root)
    kinds = ("mesh", "loom", "history")
    start = ctx.Barrier(PUBLISHERS + len(kinds))
    barrier = ctx.Barrier(PUBLISHERS)
    stop = ctx.Event()
    results = ctx.Queue()
    readers = [ctx.Process(target=reader, args=(k, url, start, stop, results)) for k in kinds]
    publishers = [
        ctx.Process(target=publisher, args=(str(root), i, start, barrier, results))
        for i, root in enumerate(roots)
    ]
    for proc in readers + publishers:
        proc.start()
    outcomes: list[tuple[Any, ...]] = []

    def count(kind: str) -> int:
        return sum(o[0] == kind for o in outcomes)

    try:
        deadline = time.monotonic() + TIMEOUT_S
        while count("published") < PUBLISHERS * ROUNDS and not count("error"):
            outcomes.append(results.get(timeout=max(1.0, deadline - time.monotonic())))
        time.sleep(0.3)  # let the readers see the final state too
        stop.set()
        while count("read") < len(readers):
            outcomes.append(results.get(timeout=60))
    finally:
        stop.set()
        barrier.abort()
        for proc in readers + publishers:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
                proc.join()

    errors_text = [o[3] for o in outcomes if o[0] == "error"]
    published = [o for o in outcomes if o[0] == "published"]
    reads = {o[1]: o for o in outcomes if o[0] == "read"}

    # Every publish in its own history entry, holding exactly its build.
    versions = registry.list_versions(P, E)
    by_version = {o[3]: (o[1], o[2]) for o in published}
    lost = len(set(by_version) - set(versions)) + (len(published) - len(by_version))
    extra = sorted(set(versions) - set(by_version))
    corrupted = 0
    final_hash: dict[str, str] = {}
    docs: dict[str, Any] = {}
    for version in versions:
        body = registry.read_version(P, E, version).body
        final_hash[version] = sha256_hex(body)
        doc = orjson.loads(body)
        docs[version] = doc
        if version in by_version:
            index, round_ = by_version[version]
            description = doc["nodes"][f"model.{P}.orders"]["description"]
            corrupted += description != f"publisher {index} round {round_}"
    # Readers: whole objects only, equal to the history entry of their version, never backwards.
    problems: list[str] = []
    for kind in ("mesh", "loom"):
        seen, _, reader_problems = reads[kind][3]
        problems += reader_problems
        for _built_at, version, digest in seen:
            if version not in docs or canonical(docs[version]) != digest:
                problems.append(f"{kind} saw a {version} that is not its history entry")
    _, first_hash, watcher_problems = reads["history"][3]
    problems += watcher_problems
    changed = [v for v, digest in first_hash.items() if final_hash.get(v) != digest]
    corrupted += len(problems) + len(changed)
    report(
        suite,
        cases=ROUNDS,
        publishes=len(published),
        lost=lost,
        corrupted=corrupted,
    )

    assert not errors_text, "\n".join(errors_text[:3])
    assert len(published) == PUBLISHERS * ROUNDS
    assert lost == 0 and not extra, (lost, extra)
    assert corrupted == 0, problems[:20] + changed[:5]
    assert {o[4] for o in published} <= {"published", "superseded"}
    newest = max(versions, key=lambda v: (docs[v]["metadata"]["mesh"]["built_at"], v))
    assert by_version[newest][1] == ROUNDS - 1
    latest = registry.read_latest(P, E)
    assert latest is not None and latest.version == newest
    assert sha256_hex(latest.body) == final_hash[newest]
    assert ("published", *by_version[newest], newest, "published") in published
    # The watchers really ran: both latest readers saw a version, and the history watcher hashed
    # every entry (how many distinct latests a reader catches depends on the machine's speed).
    assert len(reads["mesh"][3][0]) >= 1 and len(reads["loom"][3][0]) >= 1
    assert set(first_hash) == set(versions)
    assert len(first_hash) >= len(versions) // 2, (len(first_hash), len(versions))


def test_publishers_race_on_a_registry_folder(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    race(tmp_path, f"file://{root}", open_registry(f"file://{root}"), "race: folder")


def test_publishers_race_on_s3(
    moto_s3: str, fault_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bucket = new_bucket(moto_s3)
    # Children inherit this environment: every request, dbt-loom's too, goes through the proxy,
    # which makes moto's conditional writes atomic as S3's are (see tests/faultproxy.py).
    s3_environment(monkeypatch, fault_proxy.url, tmp_path / "aws")
    monkeypatch.setenv("MESH_S3_TIMEOUT", "30")
    url = f"s3://{bucket}/mesh"
    race(tmp_path, url, open_registry(url), "race: s3")
    assert fault_proxy.count("PUT", "/history/") == PUBLISHERS * ROUNDS
    assert os.environ["AWS_ENDPOINT_URL_S3"] == fault_proxy.url
