"""Write-audit-publish for the data: build and test into an audit copy, swap it in only when it passed.

A failing model or test must never reach a consumer, and a consumer must never see a half-built set
of relations. So a project's build writes into an **audit location** and the relations consumers
read change all at once, only after every model and test passed and the contract gate agreed:

- DuckDB (local): the project's whole database file. The build writes
  `warehouse/.audit/<project>/<file>.duckdb`, a copy of the current file (incremental models and
  snapshots keep their history) with the same name, so the database name — and every relation the
  interface publishes — is unchanged. Promotion is `rename(2)` of the audit file over the live one:
  atomic; a consumer that has the old file open keeps reading the old, complete inode. A failed
  build leaves the live file byte-identical and keeps the audit copy for inspection until the next
  build.
- Snowflake (prod): the project's database is cloned zero-copy to `<DB>__AUDIT`, the build writes
  there (`<PROJECT>_SNOWFLAKE_DATABASE`), and `ALTER DATABASE … SWAP WITH` promotes it, grants
  carried over (SnowflakeAudit below, mesh/warehouse/snowflake_wap.py).

The profile decides where a project's own file lives; the audit build only sets MESH_BUILD_DIR,
which the mesh's profiles read (`{{ env_var('MESH_BUILD_DIR', env_var('MESH_WAREHOUSE_DIR', …)) }}`).
A profile that does not read it cannot be redirected: its build runs in place, with one warning.
`targets.<t>.wap: false` in mesh.yml turns the audit copy off (builds then write in place).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from mesh.core.errors import ConfigError
from mesh.core.surface import hint
from mesh.project.artifacts import load_manifest
from mesh.project.config import Mesh, read_yaml
from mesh.project.files import configured_databases
from mesh.project.profiles import profile_source
from mesh.registry import read_baseline
from mesh.registry.document import load_interface
from mesh.warehouse import snowflake_wap

AUDIT_DIR = ".audit"
BUILD_DIR_VAR = "MESH_BUILD_DIR"


class AuditBuild(Protocol):
    """Where a build writes until it passed, and how it becomes visible."""

    @property
    def description(self) -> str:
        """Where the audit build is, for humans."""
        ...

    def env(self) -> dict[str, str]:
        """Extra environment for every dbt call of the audit build."""
        ...

    def prepare(self) -> None:
        """Create the audit location (a copy of what is live)."""
        ...

    def promote(self) -> None:
        """Make the audit build visible to readers, atomically."""
        ...

    def discard(self) -> None:
        """Give up the audit build; what readers see stays as it was."""
        ...


def render_profile_value(value: str, env: dict[str, str] | None = None) -> str:
    """Render a profile string the way dbt does for `env_var()` (jinja2, which dbt ships)."""
    import jinja2

    environ = dict(os.environ if env is None else env)

    def env_var(name: str, default: str | None = None) -> str:
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        raise ConfigError(f"profile needs environment variable {name}, which is not set")

    try:
        return jinja2.Environment().from_string(value).render(env_var=env_var)
    except jinja2.TemplateError as exc:
        raise ConfigError(f"cannot render profile value {value!r}: {exc}") from exc


@dataclass(frozen=True)
class ProfileOutput:
    """The output of a project's dbt profile for the mesh's target (with the DuckDB databases the
    mesh attaches: mesh/warehouse/outputs.py), and where dbt reads it."""

    profile: str
    output: dict[str, Any]
    profiles_file: Path
    effective: bool = False  # the mesh added attachments: dbt reads .mesh/profiles/

    @property
    def type(self) -> str:
        return str(self.output.get("type") or "")


def profile_output(mesh: Mesh, name: str, effective: bool = True) -> ProfileOutput:
    """The output of the profile `name` builds with (mesh/project/profiles.py `profile_source`) for the
    target; with `effective`, the databases the mesh attaches included."""
    from mesh.warehouse.outputs import with_attachments

    source = profile_source(mesh, name)
    path = source.folder / "profiles.yml"
    profiles = read_yaml(path, "profiles.yml") if path.is_file() else {}
    entry = profiles.get(source.name) if isinstance(profiles, dict) else None
    outputs = entry.get("outputs") if isinstance(entry, dict) else None
    output = outputs.get(mesh.dbt_target) if isinstance(outputs, dict) else None
    if not isinstance(output, dict):
        raise ConfigError(
            f"{path} has no output {mesh.dbt_target!r} in profile {source.name!r} (used by {name}): "
            f"run {hint('project.add', str(mesh.project(name).dir))} to let the mesh write the outputs "
            "it lacks (a DuckDB file under the warehouse with each upstream attached read-only, or "
            "Snowflake from environment variables)"
        )
    if effective:
        added = with_attachments(mesh, name, output)
        if added is not None:
            from mesh.warehouse.outputs import effective_dir

            return ProfileOutput(source.name, added, effective_dir(mesh.project(name)) / "profiles.yml", True)
    return ProfileOutput(source.name, output, path)


def write_effective_profile(mesh: Mesh, name: str) -> tuple[Path, str]:
    """The profiles folder and profile name dbt runs `name` with: the project's (or the mesh's)
    as it is, or, when the mesh attaches databases of its own, a copy with them under
    `.mesh/profiles/` (rewritten only when it changes, so dbt's partial parsing holds)."""

    out = profile_output(mesh, name)
    if not out.effective:
        source = profile_source(mesh, name)
        return source.folder, source.name
    import io

    from ruamel.yaml import YAML

    stream = io.StringIO()
    writer = YAML(typ="safe", pure=True)
    writer.width = 4096
    writer.default_flow_style = False
    writer.dump({out.profile: {"target": mesh.dbt_target, "outputs": {mesh.dbt_target: out.output}}}, stream)
    body = stream.getvalue().encode()
    body = b"# Generated by the dbt mesh: the project's profile with the databases it attaches.\n" + body
    path = out.profiles_file
    try:
        current = path.read_bytes()
    except OSError:
        current = None
    if current != body:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    return path.parent, out.profile


@dataclass
class DuckDBAudit:
    """Every DuckDB file the project writes (its profile's, and one per other database it writes:
    mesh/warehouse/outputs.py), built as copies in an audit folder and renamed into place together.

    The renames cannot be one system call, so they are journaled: the audit folder holds a list of
    what replaces what before the first rename, and a run that finds a journal (a crash between
    two renames) finishes the swap before anything else: readers see all the old files or, once
    it is done, all the new ones."""

    live: Path
    audit_dir: Path
    extra: list[Path] = field(default_factory=list)  # the project's other databases' live files

    @property
    def files(self) -> list[Path]:
        return [self.live, *self.extra]

    @property
    def audit(self) -> Path:
        return self.audit_dir / self.live.name

    @property
    def journal(self) -> Path:
        return self.audit_dir / SWAP_JOURNAL

    @property
    def description(self) -> str:
        more = f" (and {len(self.extra)} more database{'s' if len(self.extra) != 1 else ''})" if self.extra else ""
        return f"audit copy {self.audit}{more}"

    def env(self) -> dict[str, str]:
        return {BUILD_DIR_VAR: str(self.audit_dir)}

    def prepare(self) -> None:
        finish_interrupted_swap(self.audit_dir)
        if self.audit_dir.exists():
            shutil.rmtree(self.audit_dir)
        self.audit_dir.mkdir(parents=True)
        for live in self.files:
            if live.exists():
                _checkpoint(live)  # fold a leftover write-ahead log in: copy one whole file
                shutil.copy2(live, self.audit_dir / live.name)

    def promote(self) -> None:
        if not self.audit.exists():
            raise ConfigError(f"the audit build wrote no {self.audit}: nothing to promote")
        moves = []
        for live in self.files:
            built = self.audit_dir / live.name
            if built.exists():
                _checkpoint(built)
                _fsync(built)
                moves.append((str(built), str(live)))
        if len(moves) > 1:
            self.journal.write_bytes(orjson.dumps(moves))
            _fsync(self.journal)
        for source, dest in moves:
            os.replace(source, dest)
            _fsync(Path(dest).parent)
        shutil.rmtree(self.audit_dir, ignore_errors=True)

    def discard(self) -> None:
        """Keep the failed audit copies for inspection; the next build replaces them."""


SWAP_JOURNAL = "swap.json"


def finish_interrupted_swap(audit_dir: Path) -> bool:
    """Finish the renames a crash interrupted (the journal lists them); True when there was one."""
    journal = audit_dir / SWAP_JOURNAL
    if not journal.is_file():
        return False
    for source, dest in orjson.loads(journal.read_bytes()):
        if Path(source).exists():
            os.replace(source, dest)
    shutil.rmtree(audit_dir, ignore_errors=True)
    return True


def _checkpoint(path: Path) -> None:
    wal = path.with_name(path.name + ".wal")
    if not wal.exists():
        return
    import duckdb

    with contextlib.closing(duckdb.connect(str(path))) as connection:
        connection.execute("CHECKPOINT")


def _fsync(path: Path) -> None:
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def audit_build(mesh: Mesh, name: str, say: Any = None) -> AuditBuild | None:
    """The audit location of `name`'s build on this target, or None to build in place."""
    if not mesh.target.wap:
        return None
    out = profile_output(mesh, name)
    if out.type == "duckdb":
        raw = str(out.output.get("path") or "")
        if BUILD_DIR_VAR not in raw:
            if say is not None:
                say(
                    f"warning: {name}'s profile {out.profile!r} writes {raw or ':memory:'} without "
                    f"{BUILD_DIR_VAR}: it builds in place (no audit copy)"
                )
            return None
        env = {k: v for k, v in os.environ.items() if k != BUILD_DIR_VAR}
        env.setdefault("MESH_WAREHOUSE_DIR", str(mesh.warehouse_dir))
        live = Path(render_profile_value(raw, env))
        if not live.is_absolute():
            live = (mesh.project(name).dir / live).resolve()
        from mesh.warehouse.outputs import own_database_files

        return DuckDBAudit(live, mesh.warehouse_dir / AUDIT_DIR / name, own_database_files(mesh, name, out.output))
    if out.type == "snowflake":
        plan = snowflake_wap.plan_for(mesh, name)
        snowflake_wap.refuse_other_databases(plan, configured_databases(mesh.project(name).dir))
        return SnowflakeAudit(mesh, name, plan)
    return None


@dataclass
class SnowflakeAudit:
    """The project's database, cloned (zero-copy) to `<DB>__AUDIT`, built there, then swapped in
    with `ALTER DATABASE … SWAP WITH` (mesh/warehouse/snowflake_wap.py). Promotion also re-grants what the
    database carried and the consumers' SELECT on exactly the published relations; afterwards the
    build's manifest is rewritten to production names, so what is published names production."""

    mesh: Mesh
    name: str
    plan: Any  # snowflake_wap.WapPlan

    @property
    def description(self) -> str:
        return f"audit database {self.plan.audit_database}"

    def env(self) -> dict[str, str]:

        return snowflake_wap.build_env(self.plan)

    def prepare(self) -> None:

        snowflake_wap.prepare(self.mesh, self.plan)

    def promote(self) -> None:

        path = self.mesh.project(self.name).target_dir / "manifest.json"
        manifest = load_manifest(path, project=self.name)

        entry, _damaged = read_baseline(self.mesh.registry, self.name, self.mesh.env)
        previous = None if entry is None else load_interface(entry.body, f"{self.name} latest", self.name)
        snowflake_wap.promote(self.mesh, self.plan, manifest, previous_interface=previous)
        snowflake_wap.rewrite_manifest_file(path, self.plan)

    def discard(self) -> None:

        snowflake_wap.discard(self.mesh, self.plan)
