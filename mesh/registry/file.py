"""Folder backend: the registry as a directory tree (local target, tests, shared network drives).

How the guarantees of `mesh.registry.base` are kept on a POSIX filesystem:
- a history entry is written into a hidden temporary folder and committed by renaming the folder
  into place; rename(2) of a folder onto an existing non-empty one fails, so history is create-only
  and a reader never sees a half-written entry (leftover `.tmp-*` folders are not versions);
- each object has a `manifest.json.sha256` sidecar, written before the commit, checked on read;
- `latest` is a symlink to `history/{version}`, replaced by `rename(2)` of a new link under an
  exclusive lock after comparing the current target with the caller's token: readers never lock.
  A link to anything but `history/{version}` of its own project and env is damage;
- a signature (mesh.registry.signing), when the writer has a key, is a `manifest.json.sig`
  sidecar written with the object; readers verify it against the keys the mesh trusts.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from mesh.errors import (
    ChecksumError,
    ConflictError,
    InvalidNameError,
    NotFoundError,
    RegistryError,
)
from mesh.failpoints import failpoint
from mesh.names import NAME_RE, RESERVED, VERSION_RE, check_name, check_version, sha256_hex
from mesh.registry.base import (
    MANIFEST,
    PRIVATE_OBJECTS,
    CorruptLatestError,
    Entry,
    damaged_entry_problem,
)
from mesh.registry.signing import INTERFACE, NO_TRUST, SIGNATURE_FILE, SignatureError, Trust, sign
from mesh.surface import hint

LOCK_TIMEOUT_S = 60.0


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileRegistry:
    """A registry rooted at a local folder."""

    def __init__(self, root: Path, trust: Trust = NO_TRUST) -> None:
        self.root = Path(root).absolute()
        self.url = f"file://{self.root}"
        self.trust = trust

    # --- paths ----------------------------------------------------------------------------------

    def _env_dir(self, project: str, env: str) -> Path:
        return self.root / check_name("project", project) / check_name("env", env)

    def latest_path(self, project: str, env: str) -> Path:
        """The path dbt-loom reads: `{root}/{project}/{env}/latest/manifest.json`."""
        return self._env_dir(project, env) / "latest" / MANIFEST

    @contextlib.contextmanager
    def _lock(self, env_dir: Path, shared: bool = False) -> Iterator[None]:
        env_dir.mkdir(parents=True, exist_ok=True)
        with open(env_dir / ".lock", "a+b") as handle:
            mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
            deadline = time.monotonic() + LOCK_TIMEOUT_S
            while True:
                try:
                    fcntl.flock(handle.fileno(), mode | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise RegistryError(
                            f"registry lock {env_dir / '.lock'} held for over {LOCK_TIMEOUT_S:.0f}s;"
                            f" is another publish stuck? retry, or run {hint('registry.fsck', '--project', env_dir.parent.name)}"
                        ) from None
                    time.sleep(0.01)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    # --- reading --------------------------------------------------------------------------------

    def _read_checked(self, path: Path, what: str) -> bytes:
        try:
            body = path.read_bytes()
            expected = (path.parent / f"{path.name}.sha256").read_text(encoding="ascii").strip()
        except FileNotFoundError as exc:
            raise NotFoundError(f"{what} not found at {path}") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise RegistryError(f"cannot read {what} at {path}: {exc}") from exc
        if sha256_hex(body) != expected:
            raise ChecksumError(
                f"{what} at {path} does not match its stored SHA-256 checksum; the object is "
                f"corrupt: republish it or run {hint('registry.fsck', '--project', 'P')}"
            )
        return body

    @staticmethod
    def _signature(path: Path) -> str | None:
        try:
            return (path.parent / SIGNATURE_FILE).read_text(encoding="ascii").strip() or None
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise RegistryError(f"cannot read the signature beside {path}: {exc}") from exc

    def read_version(self, project: str, env: str, version: str) -> Entry:
        check_version(version)
        path = self._env_dir(project, env) / "history" / version / MANIFEST
        if not path.parent.is_dir():
            raise NotFoundError(
                f"version {version} of {project}/{env} is not in the registry {self.url}; "
                f"see {hint('registry.list', '--project', project)}"
            )
        body = self._read_checked(path, f"{project}/{env} version {version}")
        self.trust.verify(INTERFACE, project, env, body, self._signature(path), version)
        return Entry(version, body)

    def read_latest(self, project: str, env: str) -> Entry | None:
        link = self._env_dir(project, env) / "latest"
        try:
            target = os.readlink(link)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RegistryError(f"{link} is not a symlink to a history entry: {exc}") from exc
        version = Path(target).name  # the compare-and-swap token, whatever state the entry is in
        path = self._env_dir(project, env) / "history" / version / MANIFEST
        if target != f"history/{version}":
            # What the mesh would read (history/<name>) is not what the link names: a reader of
            # the path itself (dbt-loom, a person) would see another file.
            raise CorruptLatestError(
                project, env, version if VERSION_RE.fullmatch(version) else None, version,
                f"{link} points at {target!r}, not at history/{version} of {project}/{env}",
            )
        try:
            entry = self.read_version(project, env, version)
        except SignatureError as exc:
            raise CorruptLatestError(project, env, version, version, str(exc).split("; ")[0]) from exc
        except InvalidNameError as exc:
            raise CorruptLatestError(
                project, env, None, version, f"{link} points at {target!r}, not a history entry"
            ) from exc
        except NotFoundError as exc:
            raise CorruptLatestError(
                project, env, version, version,
                f"it points at history entry {version}, which is missing or incomplete ({path})",
            ) from exc
        except ChecksumError as exc:
            raise CorruptLatestError(
                project, env, version, version, f"{path} does not match its stored SHA-256 checksum"
            ) from exc
        return Entry(version, entry.body, token=version)

    def list_versions(self, project: str, env: str) -> list[str]:
        history = self._env_dir(project, env) / "history"
        if not history.is_dir():
            return []
        return sorted(
            p.name
            for p in history.iterdir()
            if VERSION_RE.fullmatch(p.name) and (p / MANIFEST).is_file()
        )

    def list_published(self) -> list[tuple[str, str]]:
        found = []
        if not self.root.is_dir():
            return []
        for env_dir in self.root.glob("*/*/"):
            link = env_dir / "latest"
            # A dangling `latest` link (its entry is gone) is still published: fsck repairs it.
            if not (link.is_symlink() or (link / MANIFEST).is_file()):
                continue
            project, env = env_dir.parent.name, env_dir.name
            if NAME_RE.fullmatch(project) and NAME_RE.fullmatch(env):
                found.append((project, env))
        return sorted(found)

    def list_private(self, env: str, name: str) -> list[str]:
        if name not in PRIVATE_OBJECTS or not self.root.is_dir():
            return []
        found = []
        for path in self.root.glob(f"*/{env}/{PRIVATE_OBJECTS[name]}"):
            project = path.parent.parent.parent.name
            if NAME_RE.fullmatch(project) and project not in RESERVED:
                found.append(project)
        return sorted(found)

    # --- writing --------------------------------------------------------------------------------

    def create_version(self, project: str, env: str, version: str, body: bytes) -> None:
        check_version(version)
        history = self._env_dir(project, env) / "history"
        history.mkdir(parents=True, exist_ok=True)
        # Shared lock while the temporary folder exists: fsck --repair removes leftovers under the
        # exclusive lock, so it never takes an entry being written for one a crash left behind.
        with self._lock(self._env_dir(project, env), shared=True):
            tmp = history / f".tmp-{version}-{secrets.token_hex(4)}"
            tmp.mkdir()
            signature = sign(INTERFACE, project, env, body)
            try:
                _write_file(tmp / f"{MANIFEST}.sha256", sha256_hex(body).encode("ascii"))
                if signature:
                    _write_file(tmp / SIGNATURE_FILE, signature.encode("ascii"))
                failpoint("registry.history.partial")
                _write_file(tmp / MANIFEST, body)
                _fsync_dir(tmp)
                failpoint("registry.history.uncommitted")
                try:
                    os.rename(tmp, history / version)
                except OSError as exc:
                    if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                        raise RegistryError(
                            f"version {version} of {project}/{env} exists already; history is "
                            "create-only"
                        ) from exc
                    raise RegistryError(f"cannot commit {history / version}: {exc}") from exc
                _fsync_dir(history)
                failpoint("registry.history.committed")
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)

    def swap_latest(
        self, project: str, env: str, version: str, body: bytes, expected_token: str | None
    ) -> str:
        check_version(version)
        env_dir = self._env_dir(project, env)
        if not (env_dir / "history" / version / MANIFEST).is_file():
            raise NotFoundError(f"cannot point latest at {version}: it is not in history")
        link = env_dir / "latest"
        with self._lock(env_dir):
            try:
                current: str | None = Path(os.readlink(link)).name
            except FileNotFoundError:
                current = None
            if current != expected_token:
                raise ConflictError(
                    f"latest of {project}/{env} moved from {expected_token} to {current} while "
                    "publishing"
                )
            tmp = env_dir / f".latest-{secrets.token_hex(4)}"
            os.symlink(f"history/{version}", tmp)
            failpoint("registry.latest.prepared")
            os.replace(tmp, link)
            _fsync_dir(env_dir)
            failpoint("registry.latest.swapped")
        return version

    def _private_path(self, project: str, env: str, name: str) -> Path:
        if name not in PRIVATE_OBJECTS:
            raise RegistryError(f"unknown private object {name!r}")
        return self._env_dir(project, env) / PRIVATE_OBJECTS[name]

    def write_private(self, project: str, env: str, name: str, body: bytes) -> None:
        path = self._private_path(project, env, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        suffix = secrets.token_hex(4)
        tmp_body = path.parent / f".tmp-{suffix}"
        tmp_sum = path.parent / f".tmp-{suffix}.sha256"
        tmp_sig = path.parent / f".tmp-{suffix}.sig"
        signature = sign(name, project, env, body)
        with self._lock(self._env_dir(project, env)):
            try:
                _write_file(tmp_body, body)
                _write_file(tmp_sum, sha256_hex(body).encode("ascii"))
                if signature:
                    _write_file(tmp_sig, signature.encode("ascii"))
                    os.replace(tmp_sig, path.parent / SIGNATURE_FILE)
                else:  # never leave an earlier object's signature beside this one
                    (path.parent / SIGNATURE_FILE).unlink(missing_ok=True)
                os.replace(tmp_sum, path.parent / f"{path.name}.sha256")
                os.replace(tmp_body, path)
                _fsync_dir(path.parent)
            finally:
                for leftover in (tmp_body, tmp_sum, tmp_sig):
                    leftover.unlink(missing_ok=True)

    def read_private(self, project: str, env: str, name: str) -> bytes | None:
        path = self._private_path(project, env, name)
        if not path.exists():
            return None
        # Body, checksum and signature are files apart: read them under the writers' lock.
        with self._lock(self._env_dir(project, env), shared=True):
            body = self._read_checked(path, f"{project}/{env} {name}")
            signature = self._signature(path)
        self.trust.verify(name, project, env, body, signature)
        return body

    def delete_version(self, project: str, env: str, version: str) -> None:
        check_version(version)
        env_dir = self._env_dir(project, env)
        with self._lock(env_dir):
            latest = self.read_latest(project, env)
            if latest is not None and latest.version == version:
                raise RegistryError(f"refusing to delete {version}: it is latest of {project}/{env}")
            target = env_dir / "history" / version
            if not target.is_dir():
                raise NotFoundError(f"version {version} of {project}/{env} is not in the registry")
            # Rename out of the version namespace first, so a crash never leaves half a version.
            doomed = env_dir / "history" / f".tmp-deleted-{version}-{secrets.token_hex(4)}"
            os.rename(target, doomed)
            shutil.rmtree(doomed)

    def fsck(self, project: str, env: str, repair: bool) -> list[str]:
        env_dir = self._env_dir(project, env)
        problems: list[str] = []
        history = env_dir / "history"
        # Under the exclusive lock: every write in progress holds the lock (history entries a
        # shared one), so what is found here was left by a writer that died.
        with self._lock(env_dir) if env_dir.is_dir() else contextlib.nullcontext():
            leftovers = [p for p in history.glob(".tmp-*")] if history.is_dir() else []
            leftovers += list(env_dir.glob(".latest-*"))
            for rel in PRIVATE_OBJECTS.values():
                private_dir = (env_dir / rel).parent
                leftovers += list(private_dir.glob(".tmp-*")) if private_dir.is_dir() else []
            for path in leftovers:
                problems.append(f"leftover of an interrupted write: {path.relative_to(self.root)}")
                if repair:
                    if path.is_dir() and not path.is_symlink():
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink(missing_ok=True)
        for version in self.list_versions(project, env):
            try:
                self.read_version(project, env, version)
            except RegistryError as exc:
                problems.append(damaged_entry_problem(version, exc))
        link = env_dir / "latest"
        if link.is_symlink():
            target = os.readlink(link)
            if target != f"history/{Path(target).name}":
                problems.append(
                    f"latest is damaged: it points at {target!r}, not at history/{Path(target).name} "
                    f"of {project}/{env}"
                )
            elif not link.exists():
                problems.append(f"latest points at a missing history entry: {target}")
        return problems
