"""The bad-input corpus (tests/corpus/*.yml), run through the real `mesh` console script and `invoke`.

Each case file names its input (setup steps applied to a copy of a small published and synced mesh),
the command (`mesh --root <mesh> ...`, or an invoke task pointed at the copy's registry through
MESH_REGISTRY), and the expected exit code and error fragment. Every case must:
- exit with its documented code (1: the checked thing failed, 2: bad input);
- print exactly one line on stderr, holding the fragment, and no traceback;
- write nothing: the registry and every project folder are byte-for-byte unchanged.
The 200 MB manifests are generated at test time and must fail fast and bounded in memory.
A fuzz test mutates a valid manifest at random and holds `mesh publish` to the same rules (or a
clean publish); its long variant runs under `invoke reliability`.

Setup steps: write {path, text | hex}, truncate {path, keep: fraction}, delete path, copy {from, to},
patch {path, set: {a/b/0/c: value}, unset: [a/b]}, copy_node {path, from, to, ...fields},
corrupt path (flip a byte), rehash path (rewrite its .sha256 file), generate {path, size_mb, kind}.
Command and paths may use {root}, {latest} (the published version) and {missing_version}.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from ruamel.yaml import YAML

from mesh.interface.publish import publish_project
from mesh.project.config import load_mesh
from mesh.run.pipeline import sync_project
from tests import factories
from tests.conftest import REPO
from tests.reliability import report, scale

CORPUS = REPO / "tests" / "corpus"
CASES = sorted(CORPUS.glob("*.yml"))
BIN = Path(sys.executable).parent
MISSING_VERSION = "20200101T000000.000000Z-00000000"
MESH_YML = """version: 1
projects:
  core: {path: core}
  app: {path: app}
  loomy: {path: loomy, upstreams_via: loom}
targets:
  local: {registry: "file://registry", env: local}
"""
# A failing case must fail fast: the 200 MB manifests included.
CASE_TIMEOUT_S = 60.0
MAX_SECONDS_200MB = 15.0
MAX_RSS_200MB_KB = 450_000  # the binary one is read whole once (~210 MB) before it is refused


@dataclass
class Outcome:
    exit: int
    stdout: str
    stderr: str
    changed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    max_rss_kb: int = 0


def load_case(path: Path) -> dict[str, Any]:
    data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and {"command", "setup", "expect", "description"} <= set(data), path
    return data


# --- the base mesh ------------------------------------------------------------------------------------


def write_build(project_dir: Path, doc: dict[str, Any]) -> None:
    target = project_dir / "target"
    target.mkdir(parents=True, exist_ok=True)
    (target / "manifest.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    (target / "run_results.json").write_bytes(orjson.dumps(factories.run_results(doc), option=orjson.OPT_INDENT_2))


def make_base(root: Path) -> str:
    """A producer `core` published once, a sources consumer `app` and a loom consumer `loomy`
    synced once. Returns the published version."""
    root.mkdir(parents=True)
    (root / "mesh.yml").write_text(MESH_YML)
    for name in ("core", "app", "loomy"):
        (root / name / "models").mkdir(parents=True)
        (root / name / "dbt_project.yml").write_text(f"name: {name}\n")
    for name in ("app", "loomy"):
        (root / name / "dependencies.yml").write_text("projects:\n  - name: core\n")
    (root / "app/models/a.sql").write_text("select * from {{ source('core', 'orders') }}\n")
    (root / "loomy/models/b.sql").write_text("select * from {{ ref('core', 'orders') }}\n")
    write_build(root / "core", factories.producer("core"))
    mesh = load_mesh(root, "local")
    version = publish_project(mesh, "core").version
    sync_project(mesh, "app")
    sync_project(mesh, "loomy")
    return version


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("corpus-base") / "mesh"
    return root, make_base(root)


# --- setup steps ------------------------------------------------------------------------------------


def _walk(doc: Any, parts: list[str]) -> tuple[Any, Any]:
    """(container, key) of a slash path, creating nothing."""
    for part in parts[:-1]:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    last = parts[-1]
    return doc, int(last) if isinstance(doc, list) else last


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def generate(path: Path, size_mb: int, kind: str) -> None:
    """A big manifest, written in blocks (never held in memory whole)."""
    target = size_mb << 20
    rng = random.Random(size_mb)
    with open(path, "wb") as handle:
        if kind == "binary":
            block = rng.randbytes(1 << 20)
            for _ in range(size_mb):
                handle.write(block)
            return
        assert kind == "unknown_schema", kind
        handle.write(
            b'{"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v99.json",'
            b' "project_name": "core"}, "nodes": {'
        )
        written, index = 0, 0
        node = orjson.loads(orjson.dumps(factories.model("core", "m")))
        while written < target:
            uid = f"model.core.m{index}"
            chunk = (b"," if index else b"") + orjson.dumps(uid) + b":" + orjson.dumps({**node, "unique_id": uid})
            handle.write(chunk)
            written += len(chunk)
            index += 1
        handle.write(b"}}")


def apply(step: dict[str, Any], root: Path, subst: dict[str, str]) -> None:
    ((kind, arg),) = step.items()

    def at(rel: str) -> Path:
        return root / rel.format(**subst)

    if kind == "write":
        path = at(arg["path"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes.fromhex(arg["hex"]) if "hex" in arg else arg["text"].encode("utf-8"))
    elif kind == "truncate":
        path = at(arg["path"])
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * float(arg["keep"]))])
    elif kind == "delete":
        path = at(arg)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    elif kind == "copy":
        shutil.copyfile(at(arg["from"]), at(arg["to"]))
    elif kind in ("patch", "copy_node"):
        path = at(arg["path"])
        doc = orjson.loads(path.read_bytes())
        if kind == "patch":
            for slash, value in (arg.get("set") or {}).items():
                container, key = _walk(doc, slash.split("/"))
                container[key] = value
            for slash in arg.get("unset") or []:
                container, key = _walk(doc, slash.split("/"))
                del container[key]
        else:
            node = dict(doc["nodes"][arg["from"]], unique_id=arg["to"])
            node.update({k: v for k, v in arg.items() if k not in ("path", "from", "to")})
            doc["nodes"][arg["to"]] = node
        path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    elif kind == "corrupt":
        path = at(arg)
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
    elif kind == "rehash":
        path = at(arg)
        path.with_name(path.name + ".sha256").write_text(sha256_file(path))
    elif kind == "generate":
        generate(at(arg["path"]), int(arg["size_mb"]), str(arg["kind"]))
    else:
        raise AssertionError(f"unknown setup step {kind!r}")


def snapshot(root: Path) -> dict[str, str]:
    """Every file (its hash), link (its target) and folder under root."""
    found: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = "link:" + os.readlink(path)
            elif path.is_dir():
                found[rel] = "dir"
            else:
                found[rel] = sha256_file(path)
    return found


def run(argv: list[str], env: dict[str, str], cwd: Path) -> Outcome:
    """Run a command: its exit code, output and duration."""
    started = time.monotonic()
    with subprocess.Popen(
        argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=CASE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
            raise AssertionError(f"{argv} did not finish in {CASE_TIMEOUT_S}s") from None
    return Outcome(proc.returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace"),
                   seconds=time.monotonic() - started)


def run_case(case: dict[str, Any], base: tuple[Path, str], work: Path) -> Outcome:
    base_root, version = base
    root = work / "mesh"
    shutil.copytree(base_root, root, symlinks=True)
    subst = {"root": str(root), "latest": version, "missing_version": MISSING_VERSION}
    for step in case["setup"] or []:
        apply(step, root, subst)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESH_")}
    env.update({"DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DO_NOT_TRACK": "1"})
    command = [str(part).format(**subst) for part in case["command"]]
    if case.get("runner", "mesh") == "invoke":
        env.update({"MESH_REGISTRY": f"file://{root / 'registry'}", "MESH_ENV": "local", "MESH_TARGET": "local"})
        argv, cwd = [str(BIN / "invoke"), *command], REPO
    else:
        argv, cwd = [str(BIN / "mesh"), "--root", str(root), *command], work
    env.update({str(k): str(v) for k, v in (case.get("env") or {}).items()})
    before = snapshot(root)
    measure = [sys.executable, "-c", _MEASURE, *argv]
    outcome = run(measure, env, cwd)
    # The measuring wrapper prints the child's peak RSS (KB) as its last stdout line.
    *lines, rss = outcome.stdout.rstrip("\n").split("\n")
    outcome.stdout, outcome.max_rss_kb = "\n".join(lines), int(rss)
    after = snapshot(root)
    outcome.changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    return outcome


# Runs argv as a child, passes its output and exit code through, then prints the child's peak RSS.
_MEASURE = """
import os, resource, subprocess, sys
code = subprocess.call(sys.argv[1:])
sys.stdout.flush()
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(code)
"""


@pytest.fixture(scope="module")
def outcomes(base: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Every case, two at a time (each is its own process)."""
    work = tmp_path_factory.mktemp("corpus")

    def one(path: Path) -> tuple[str, Outcome]:
        folder = work / path.stem
        folder.mkdir()
        try:
            return path.stem, run_case(load_case(path), base, folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)  # the 200 MB inputs go at once

    with ThreadPoolExecutor(2) as pool:
        found = dict(pool.map(one, CASES))
    failures = sum(
        o.exit != load_case(CORPUS / f"{name}.yml")["expect"]["exit"] or bool(o.changed) for name, o in found.items()
    )
    report("corpus", cases=len(found), corrupted=failures)
    return found


def test_corpus_is_big_enough_and_well_formed() -> None:
    assert len(CASES) >= 40
    for path in CASES:
        case = load_case(path)
        assert case["expect"]["exit"] in (1, 2), path
        assert case.get("runner", "mesh") in ("mesh", "invoke"), path
        assert "\n" not in case["description"], path


@pytest.mark.parametrize("name", [path.stem for path in CASES])
def test_bad_input_fails_cleanly_and_writes_nothing(outcomes: dict[str, Outcome], name: str) -> None:
    case = load_case(CORPUS / f"{name}.yml")
    outcome = outcomes[name]
    stderr = outcome.stderr.strip()
    assert "Traceback" not in outcome.stderr, outcome.stderr
    assert outcome.exit == case["expect"]["exit"], (outcome.exit, stderr)
    assert stderr.count("\n") == 0 and stderr, f"stderr is not one line: {outcome.stderr!r}"
    assert case["expect"]["stderr"] in stderr, stderr
    assert stderr.startswith("error: ")
    assert outcome.changed == [], f"{name} wrote {outcome.changed}"
    if "200mb" in name:
        assert outcome.seconds < MAX_SECONDS_200MB, outcome.seconds
        assert outcome.max_rss_kb < MAX_RSS_200MB_KB, outcome.max_rss_kb


def test_hand_broken_generated_loom_config_is_regenerated(base: tuple[Path, str], tmp_path: Path) -> None:
    """A dbt_loom.config.yml that sync generated and someone broke by hand is sync's own file:
    sync rewrites it (a team's own dbt_loom.config.yml, beside dbt_project.yml, is never read)."""
    root = tmp_path / "mesh"
    shutil.copytree(base[0], root, symlinks=True)
    config = root / "loomy" / ".mesh" / "dbt_loom.config.yml"
    good = config.read_bytes()
    config.write_bytes(good.splitlines(keepends=True)[0] + b"manifests: [\n  {{ broken")
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DO_NOT_TRACK": "1"}
    done = subprocess.run(
        [str(BIN / "mesh"), "--root", str(root), "sync", "--project", "loomy"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Update loomy/.mesh/dbt_loom.config.yml" in done.stdout
    assert config.read_bytes() == good


# --- fuzz: random damage to a valid manifest ------------------------------------------------------------


def mutate(data: bytes, rng: random.Random) -> bytes:
    how = rng.choice(["truncate", "flip", "delete_span", "duplicate_span", "insert_junk"])
    at = rng.randrange(len(data))
    if how == "truncate":
        return data[:at]
    if how == "flip":
        return data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1 :]
    span = rng.randint(1, 64)
    if how == "delete_span":
        return data[:at] + data[at + span :]
    if how == "duplicate_span":
        return data[:at] + data[at : at + span] + data[at:]
    return data[:at] + rng.randbytes(span) + data[at:]


def test_fuzzed_manifests_publish_or_fail_cleanly(base: tuple[Path, str], tmp_path: Path) -> None:
    cases = scale(6, 150)
    rng = random.Random(20261123)
    root = tmp_path / "mesh"
    shutil.copytree(base[0], root, symlinks=True)
    manifest = root / "core/target/manifest.json"
    original = manifest.read_bytes()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESH_")}
    env.update({"DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DO_NOT_TRACK": "1"})
    bad = 0
    problems: list[str] = []
    for index in range(cases):
        manifest.write_bytes(mutate(original, rng))
        registry_before = snapshot(root / "registry")
        done = subprocess.run(
            [str(BIN / "mesh"), "--root", str(root), "publish", "--project", "core"],
            capture_output=True, text=True, env=env, timeout=60, check=False,
        )
        stderr = done.stderr.strip()
        if done.returncode == 0:
            continue  # the damage hit something harmless (a description): a clean publish
        bad += 1
        if done.returncode not in (1, 2) or "\n" in stderr or not stderr.startswith("error: "):
            problems.append(f"case {index}: exit {done.returncode}: {done.stderr[-800:]}")
        if snapshot(root / "registry") != registry_before:
            problems.append(f"case {index}: a refused publish changed the registry")
    report("corpus: fuzz", cases=cases, faults=bad, corrupted=len(problems))
    assert not problems, "\n".join(problems[:5])
