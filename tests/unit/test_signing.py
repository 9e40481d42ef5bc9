"""Signatures on registry objects, on both backends (a folder, and S3 through a real moto server).

A producer signs what it stores (MESH_SIGNING_KEY); a reader holding keys for that project refuses
an unsigned object, one signed by a key it does not trust, and one whose bytes changed after
signing, however valid its checksum. Several keys verify while a key rotates; history published
before signing is accepted only up to the version mesh.yml records. Rollbacks and repairs are
signed like publishes, and a forged interface never reaches a consumer's files.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from mesh.core.errors import ConfigError
from mesh.core.names import new_version, sha256_hex
from mesh.project.config import load_mesh
from mesh.registry import CorruptLatestError, commit_version
from mesh.registry.document import content_sha256, dump_interface
from mesh.registry.file import FileRegistry
from mesh.registry.s3 import S3Registry
from mesh.registry.signing import (
    SIGNING_KEY_ENV,
    ProjectTrust,
    PublicKey,
    SignatureError,
    Trust,
    generate_key,
    message,
    sign,
)
from tests import factories
from tests.servers import new_bucket

P, E = "core", "prod"
KEY, PUBLIC = generate_key()
OTHER_KEY, OTHER_PUBLIC = generate_key()


def version(i: int) -> str:
    return new_version(sha256_hex(b"%d" % i), now=factories_time(i))


def factories_time(i: int) -> Any:
    from datetime import UTC, datetime, timedelta

    return datetime(2026, 11, 23, 10, tzinfo=UTC) + timedelta(minutes=i)


def body(i: int) -> bytes:
    return factories.interface_body(P, version(i), env=E)


def trusting(*keys: str, unsigned_until: str | None = None) -> Trust:
    return Trust({P: ProjectTrust(tuple(PublicKey.parse(k) for k in keys), unsigned_until)})


Opener = Callable[[Trust], Any]


@pytest.fixture(params=["folder", "s3"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Opens the same storage with the given trust (a writer needs none, a reader its keys)."""
    if request.param == "folder":
        return lambda trust: FileRegistry(tmp_path / "registry", trust=trust)
    request.getfixturevalue("s3_env")
    bucket = new_bucket(request.getfixturevalue("moto_s3"))
    return lambda trust: S3Registry(bucket, "mesh", trust=trust)


def publish(registry: Any, i: int, key: str | None, monkeypatch: pytest.MonkeyPatch) -> str:
    """Commit version i as latest, signed with `key` (None: unsigned)."""
    if key:
        monkeypatch.setenv(SIGNING_KEY_ENV, key)
    else:
        monkeypatch.delenv(SIGNING_KEY_ENV, raising=False)
    assert commit_version(registry, P, E, version(i), body(i), lambda _entry: True)
    return version(i)


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text
    return text


def test_signed_objects_verify_and_forgeries_are_refused(opener: Opener, monkeypatch: pytest.MonkeyPatch) -> None:
    writer, reader = opener(Trust()), opener(trusting(PUBLIC))
    v0 = publish(writer, 0, KEY, monkeypatch)
    writer.write_private(P, E, "usage", b'{"usage": 1}')
    latest = reader.read_latest(P, E)
    assert latest is not None and latest.version == v0 and latest.body == body(0)
    assert reader.read_version(P, E, v0).body == body(0)
    assert reader.read_private(P, E, "usage") == b'{"usage": 1}'

    # Anyone who can write the prefix, without the key: valid checksums, no signature.
    v1 = publish(writer, 1, None, monkeypatch)
    with pytest.raises(CorruptLatestError) as refused:
        reader.read_latest(P, E)
    assert f"{P}/{E} interface {v1} is not signed" in one_line(refused.value)
    with pytest.raises(SignatureError, match=r"is not signed, but mesh\.yml trusts only objects of core"):
        reader.read_version(P, E, v1)
    writer.write_private(P, E, "usage", b'{"forged": 1}')
    with pytest.raises(SignatureError, match=r"core/prod usage is not signed"):
        reader.read_private(P, E, "usage")

    # Signed, but by a key the reader does not trust.
    v2 = publish(writer, 2, OTHER_KEY, monkeypatch)
    with pytest.raises(SignatureError) as refused:
        reader.read_version(P, E, v2)
    assert f"signed by key {PublicKey.parse(OTHER_PUBLIC).key_id!r}, which mesh.yml does not trust" in one_line(refused.value)
    # A reader without keys for the project reads everything, as before signing existed.
    assert opener(Trust()).read_version(P, E, v2).body == body(2)


def test_bytes_changed_after_signing_do_not_verify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer, reader = FileRegistry(tmp_path / "r"), FileRegistry(tmp_path / "r", trust=trusting(PUBLIC))
    v0 = publish(writer, 0, KEY, monkeypatch)
    entry = tmp_path / "r" / P / E / "history" / v0
    forged = body(0).replace(b"orders description", b"orders descriptioN")
    (entry / "manifest.json").write_bytes(forged)
    (entry / "manifest.json.sha256").write_text(sha256_hex(forged))  # a valid checksum
    with pytest.raises(SignatureError, match=r"its signature by key \w+ does not verify"):
        reader.read_version(P, E, v0)


def test_a_signature_binds_project_env_and_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A signed object moved to another env, or another kind of object, does not verify."""
    root = tmp_path / "r"
    writer, reader = FileRegistry(root), FileRegistry(root, trust=trusting(PUBLIC))
    monkeypatch.setenv(SIGNING_KEY_ENV, KEY)
    writer.write_private(P, E, "state", b'{"state": 1}')
    for env, name in (("staging", "state"), (E, "usage")):
        target = root / P / env / name
        target.mkdir(parents=True, exist_ok=True)
        for file in ("manifest.json", "manifest.json.sha256", "manifest.json.sig"):
            shutil.copy2(root / P / E / "state" / file, target / file)
        with pytest.raises(SignatureError, match="does not verify"):
            reader.read_private(P, env, name)
    assert message("state", P, E, b"x") != message("usage", P, E, b"x") != message("state", "app", E, b"x")


def test_rotation_accepts_every_listed_key(opener: Opener, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = opener(Trust())
    old = publish(writer, 0, OTHER_KEY, monkeypatch)
    new = publish(writer, 1, KEY, monkeypatch)
    both = opener(trusting(OTHER_PUBLIC, PUBLIC))
    assert both.read_version(P, E, old).body == body(0)
    assert both.read_version(P, E, new).body == body(1)
    assert both.read_latest(P, E).version == new
    retired = opener(trusting(PUBLIC))  # the old key is dropped once rotation is over
    with pytest.raises(SignatureError, match="does not trust"):
        retired.read_version(P, E, old)


def test_unsigned_history_is_accepted_only_up_to_the_recorded_version(
    opener: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = opener(Trust())
    before = publish(writer, 0, None, monkeypatch)
    after = publish(writer, 1, None, monkeypatch)
    writer.write_private(P, E, "state", b"{}")
    reader = opener(trusting(PUBLIC, unsigned_until=before))
    assert reader.read_version(P, E, before).body == body(0)
    with pytest.raises(SignatureError, match="is not signed"):
        reader.read_version(P, E, after)
    with pytest.raises(SignatureError, match="is not signed"):
        reader.read_private(P, E, "state")  # private objects are rewritten every build: never


def test_an_unsigned_write_leaves_no_earlier_signature_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "r"
    writer, reader = FileRegistry(root), FileRegistry(root, trust=trusting(PUBLIC))
    monkeypatch.setenv(SIGNING_KEY_ENV, KEY)
    writer.write_private(P, E, "usage", b"signed")
    monkeypatch.delenv(SIGNING_KEY_ENV)
    writer.write_private(P, E, "usage", b"unsigned")
    assert not (root / P / E / "usage" / "manifest.json.sig").exists()
    with pytest.raises(SignatureError, match="is not signed"):
        reader.read_private(P, E, "usage")


def test_keys_are_checked_where_they_are_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"is not `ed25519:<base64>`"):
        PublicKey.parse("ssh-ed25519 AAAA")
    with pytest.raises(ConfigError, match="is not 32 bytes of base64"):
        PublicKey.parse("ed25519:AAAA")
    monkeypatch.setenv(SIGNING_KEY_ENV, "ed25519-private:not-a-key")
    with pytest.raises(ConfigError, match=rf"{SIGNING_KEY_ENV} is not an Ed25519 private key"):
        sign("interface", P, E, b"x")
    monkeypatch.delenv(SIGNING_KEY_ENV)
    assert sign("interface", P, E, b"x") is None
    # A PKCS#8 PEM works too (keys made with openssl).
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    monkeypatch.setenv(SIGNING_KEY_ENV, pem.decode())
    assert str(sign("interface", P, E, b"x")).startswith("ed25519:")


# --- the mesh: mesh.yml, rollbacks and repairs, and a consumer -------------------------------------

MESH_YML = """version: 1
projects:
  core:
    path: core
{signing}  app: {{path: app}}
targets:
  local: {{registry: "file://registry", env: local}}
{extra}"""


def make_mesh(root: Path, signing: str = "", extra: str = "") -> Any:
    for name in ("core", "app"):
        (root / name / "models").mkdir(parents=True, exist_ok=True)
        (root / name / "dbt_project.yml").write_text(f"name: {name}\n")
    (root / "app" / "dependencies.yml").write_text("projects:\n  - name: core\n")
    (root / "app/models/a.sql").write_text("select * from {{ source('core', 'orders') }}")
    (root / "mesh.yml").write_text(MESH_YML.format(signing=signing, extra=extra))
    target = root / "core" / "target"
    target.mkdir(exist_ok=True)
    doc = factories.producer()
    (target / "manifest.json").write_bytes(orjson.dumps(doc))
    (target / "run_results.json").write_bytes(orjson.dumps(factories.run_results(doc)))
    return load_mesh(root, "local")


def signed_by(*keys: str, until: str | None = None) -> str:
    listed = ", ".join(keys)
    return f"    signing: {{keys: [{listed}]{f', unsigned_until: {until!r}' if until else ''}}}\n"


def test_mesh_yml_and_a_trust_file_name_the_keys(tmp_path: Path) -> None:
    mesh = make_mesh(tmp_path / "a", signing=signed_by(PUBLIC, OTHER_PUBLIC))
    assert [k.text for k in mesh.trust.projects["core"].keys] == [PUBLIC, OTHER_PUBLIC]
    assert mesh.registry.trust is mesh.trust
    root = tmp_path / "b"
    make_mesh(root, extra="trust_file: trust.yml\n")
    (root / "trust.yml").write_text(f"projects:\n  core: {{keys: [{PUBLIC}]}}\n  elsewhere: {{keys: [{OTHER_PUBLIC}]}}\n")
    mesh = load_mesh(root, "local")
    assert set(mesh.trust.projects) == {"core", "elsewhere"}  # consumers in other repositories too
    with pytest.raises(ConfigError) as refused:
        make_mesh(tmp_path / "c", signing="    signing: {keys: ['ed25519:short']}\n")
    assert "projects.core.signing.keys" in one_line(refused.value) and "32 bytes" in str(refused.value)
    with pytest.raises(ConfigError, match="invalid version 'yesterday'"):
        make_mesh(tmp_path / "d", signing=signed_by(PUBLIC, until="yesterday"))


def test_loom_reads_registry_is_refused_with_the_reason(tmp_path: Path) -> None:
    root = tmp_path / "m"
    make_mesh(root)
    text = (root / "mesh.yml").read_text().replace("app: {path: app}", "app: {path: app, loom_reads: registry}")
    (root / "mesh.yml").write_text(text)
    with pytest.raises(ConfigError) as refused:
        load_mesh(root, "local")
    assert "`loom_reads: registry` was removed" in one_line(refused.value)


def test_a_forged_interface_never_reaches_a_consumer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mesh.interface.publish import publish_project
    from mesh.run.pipeline import sync_project

    root = tmp_path / "m"
    mesh = make_mesh(root, signing=signed_by(PUBLIC))
    monkeypatch.setenv(SIGNING_KEY_ENV, KEY)
    published = publish_project(mesh, "core")
    sync_project(mesh, "app")
    # The attacker: write access to the prefix, no key. Valid checksum and content hash.
    monkeypatch.delenv(SIGNING_KEY_ENV)
    latest = mesh.registry.read_latest("core", "local")
    doc = orjson.loads(latest.body)
    doc["nodes"]["model.core.orders"]["description"] = "forged"
    doc["metadata"]["mesh"]["version"] = forged = factories.later_version(published.version)
    doc["metadata"]["mesh"]["content_sha256"] = content_sha256(doc["nodes"], doc["groups"])
    forged_body = dump_interface(doc)
    writer = FileRegistry(root / "registry")
    writer.create_version("core", "local", forged, forged_body)
    writer.swap_latest("core", "local", forged, forged_body, latest.token)
    before = {p: p.read_bytes() for p in (root / "app").rglob("*") if p.is_file()}
    with pytest.raises(CorruptLatestError) as refused:
        sync_project(mesh, "app")
    assert f"core/local interface {forged} is not signed" in one_line(refused.value)
    assert {p: p.read_bytes() for p in (root / "app").rglob("*") if p.is_file()} == before

    # The producer repairs with its key: the repair is a new entry, signed like a publish.
    from mesh.interface.retention import fsck_project

    monkeypatch.setenv(SIGNING_KEY_ENV, KEY)
    repaired = fsck_project(mesh, "core", repair=True)
    assert any("not signed" in line for line in repaired.found)
    now = mesh.registry.read_latest("core", "local")  # verifies against the trusted key
    assert now is not None and now.version not in (forged, published.version)
    assert orjson.loads(now.body)["metadata"]["mesh"]["rollback_of"] == published.version
    assert (root / "registry/core/local/history" / now.version / "manifest.json.sig").is_file()
    sync_project(mesh, "app")  # the consumer reads the repaired, signed latest

    # A rollback is signed like a publish too.
    from mesh.interface.versions import rollback_project

    result = rollback_project(mesh, "core", published.version, reason="test", say=lambda _line: None)
    assert mesh.registry.read_latest("core", "local").version == result.version
    assert (root / "registry/core/local/history" / result.version / "manifest.json.sig").is_file()
    assert os.environ[SIGNING_KEY_ENV] == KEY
