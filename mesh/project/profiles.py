"""Two projects must never write to one database by accident: the profile check every build runs.

For each project of the mesh whose folder is here, read its `profile:` (dbt_project.yml) and its
profiles folder (`profiles_dir:` in mesh.yml, else the mesh's `profiles/`), resolve the profile's
output for the target as dbt would (Jinja `env_var()` rendered with the environment dbt gets, paths
relative to the project folder, where dbt runs) and refuse, naming both projects, when:
- two projects use the same profile of the same profiles folder;
- two projects build into the same DuckDB file, or into the same Snowflake database (the mesh gives
  every project its own database, warehouse and role: grants are per database);
- a project ATTACHes another project's DuckDB file without `read_only: true`;
- a consumer does not ATTACH an upstream it declares in dependencies.yml, or attaches it under
  another name than the upstream's database (its public relations would not resolve).
Only the profile strings the check needs are rendered, and dbt is not imported: the check is cheap
enough to run before every build. Files are compared as they are published: `MESH_BUILD_DIR` (where
write-audit-publish builds an audit copy) is left out.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from mesh.core.errors import ConfigError
from mesh.core.surface import hint
from mesh.project.config import Mesh, read_yaml
from mesh.project.files import (
    configured_databases,
    read_lock,
    scan_references,
    scan_unqualified_refs,
)

PROFILES_FILE = "profiles.yml"
# dbt's anonymous usage tracking would try to reach the internet on every call.
BASE_ENV = {"DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DO_NOT_TRACK": "1"}
# Keys of profiles.yml that are not profiles (dbt < 1.8 kept user settings there).
_NOT_PROFILES = frozenset({"config"})


class _Unset(Exception):
    """An env_var() without default names a variable that is not set."""


@dataclass(frozen=True)
class ProfileRef:
    """Which profile a project builds with: its `profile:` name and the folder holding profiles.yml."""

    project: str
    project_dir: Path
    profile: str
    profiles_dir: Path
    upstreams: tuple[str, ...] = ()


@dataclass(frozen=True)
class Attach:
    """One `attach:` entry of a DuckDB output, resolved."""

    file: Path
    alias: str
    read_only: bool


@dataclass
class Resolved:
    """A project's output for one target: what it writes and what it reads."""

    ref: ProfileRef
    target: str
    kind: str
    file: Path | None = None  # DuckDB: the project's own file
    database: str | None = None  # Snowflake: the project's database, upper-case
    attaches: list[Attach] = field(default_factory=list)


def shown(path: Path, base: Path) -> str:
    """`path` relative to `base` when it is inside, else as it is: for messages."""
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return str(path)


def dbt_profile_name(project_dir: Path) -> str:
    """The `profile:` a dbt project builds with, from its dbt_project.yml."""
    path = project_dir / "dbt_project.yml"
    data = read_yaml(path, "dbt_project.yml")
    profile = data.get("profile") if isinstance(data, dict) else None
    if not isinstance(profile, str) or not profile.strip():
        raise ConfigError(
            f"{path} has no `profile:`: name the dbt profile the project builds with "
            "(see README, Add your project)"
        )
    return profile.strip()


@dataclass(frozen=True)
class ProfileSource:
    """Where dbt finds a project's profile for one target: `--profiles-dir folder --profile name`."""

    folder: Path
    name: str
    own: bool  # the project's own profiles.yml (else the mesh's profiles/)


def _outputs(folder: Path, profile: str) -> set[str]:
    spec = read_profiles(folder).get(profile) if (folder / PROFILES_FILE).is_file() else None
    outputs = spec.get("outputs") if isinstance(spec, dict) else None
    return {str(k) for k in outputs} if isinstance(outputs, dict) else set()


def profile_source(mesh: Mesh, name: str, dbt_target: str | None = None) -> ProfileSource:
    """The profile `name` builds with on `dbt_target` (default: the mesh's). The project's own
    profiles folder (mesh.yml `profiles_dir`) serves every target its profile defines; the mesh's
    profiles/ serves the others, under a profile named after the project (so two projects that both
    say `profile: snowflake` never share one), or, for a profile the mesh wrote before, under the
    project's `profile:`. `mesh_profile: true` makes the mesh's profile serve every target. dbt gets
    the choice through `--profiles-dir` and `--profile`: nobody edits dbt_project.yml."""
    target = dbt_target or mesh.dbt_target
    project = mesh.project(name)
    declared = dbt_profile_name(project.dir)
    config = mesh.config.projects[name]
    own_dir = mesh.profiles_dir_of(name)
    if config.profiles_dir and not config.mesh_profile and target in _outputs(own_dir, declared):
        return ProfileSource(own_dir, declared, True)
    profiles = read_profiles(mesh.profiles_dir) if (mesh.profiles_dir / PROFILES_FILE).is_file() else {}
    if name in profiles:
        return ProfileSource(mesh.profiles_dir, name, False)
    if not config.profiles_dir and declared in profiles:
        return ProfileSource(mesh.profiles_dir, declared, False)
    if config.profiles_dir and not config.mesh_profile:
        return ProfileSource(own_dir, declared, True)  # its own, lacking this target: dbt says so
    return ProfileSource(mesh.profiles_dir, name, False)


def read_profiles(profiles_dir: Path) -> dict[str, Any]:
    """The profiles of `profiles_dir/profiles.yml` (an empty mapping when the file is empty)."""
    path = profiles_dir / PROFILES_FILE
    data = read_yaml(path, PROFILES_FILE)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of profile names to profiles")
    return {str(k): v for k, v in data.items() if k not in _NOT_PROFILES}


class Renderer:
    """Renders profile strings the way dbt does for what the check needs: `env_var()` and the
    `as_*` filters, with a given environment (dbt's profile context has nothing else of use here)."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = dict(environ)
        env = SandboxedEnvironment(undefined=StrictUndefined)
        env.globals["env_var"] = self._env_var
        for name in ("as_text", "as_bool", "as_number", "as_native"):
            env.filters[name] = lambda value: value
        self._jinja = env
        self._cache: dict[str, str] = {}

    def _env_var(self, name: str, default: str | None = None) -> str:
        if name in self.environ:
            return self.environ[name]
        if default is not None:
            return str(default)
        raise _Unset(name)

    def render(self, value: Any, where: str) -> str:
        text = str(value)
        if "{{" not in text and "{%" not in text:
            return text
        if text in self._cache:
            return self._cache[text]
        try:
            self._cache[text] = str(self._jinja.from_string(text).render()).strip()
        except _Unset as exc:
            raise ConfigError(
                f"{where}: environment variable {exc.args[0]} is not set (the profile reads it "
                "with env_var() and no default)"
            ) from exc
        except TemplateError as exc:
            raise ConfigError(f"{where}: cannot render {text!r}: {exc}") from exc
        return self._cache[text]


def _file(value: str, base: Path) -> Path | None:
    """A DuckDB path as a file on this machine, or None for an in-memory or remote database."""
    if not value or value.startswith(":") or "://" in value or value.startswith("md:"):
        return None
    path = Path(value).expanduser()
    return (path if path.is_absolute() else base / path).resolve()


def resolve_output(
    ref: ProfileRef,
    target: str,
    profiles: Mapping[str, Any],
    renderer: Renderer,
    missing_ok: bool = False,
) -> Resolved | None:
    """The output `target` of the project's profile, resolved; None when absent and `missing_ok`."""
    where_file = ref.profiles_dir / PROFILES_FILE
    profile = profiles.get(ref.profile)
    if not isinstance(profile, dict):
        raise ConfigError(
            f"project {ref.project} builds with profile {ref.profile!r}, which {where_file} does "
            f"not define: add it ({hint('project.add', '<its folder>')} writes one; see README, "
            "Add your project)"
        )
    outputs = profile.get("outputs")
    output = outputs.get(target) if isinstance(outputs, dict) else None
    if not isinstance(output, dict):
        if missing_ok:
            return None
        raise ConfigError(
            f"profile {ref.profile!r} of {where_file} (project {ref.project}) has no output "
            f"{target!r}: add one for the mesh target"
        )
    where = f"{where_file}: {ref.profile}.outputs.{target}"
    kind = renderer.render(output.get("type", ""), f"{where}.type").lower()
    resolved = Resolved(ref, target, kind)
    if kind == "duckdb":
        resolved.file = _file(renderer.render(output.get("path", ""), f"{where}.path"), ref.project_dir)
        attaches = output.get("attach") or []
        if not isinstance(attaches, list):
            raise ConfigError(f"{where}.attach must be a list")
        for index, item in enumerate(attaches):
            if not isinstance(item, dict) or "path" not in item:
                raise ConfigError(f"{where}.attach[{index}] needs a `path:`")
            file = _file(renderer.render(item["path"], f"{where}.attach[{index}].path"), ref.project_dir)
            if file is None:
                continue
            alias = renderer.render(item.get("alias") or file.stem, f"{where}.attach[{index}].alias")
            read_only = renderer.render(item.get("read_only", False), "").lower() in ("true", "1", "yes")
            resolved.attaches.append(Attach(file, alias, read_only))
    elif kind == "snowflake" and output.get("database") is not None:
        database = renderer.render(output["database"], f"{where}.database")
        # Unquoted Snowflake identifiers are case-insensitive; quoted ones are kept as written.
        quoted = database.startswith('"') and database.endswith('"')
        resolved.database = database if quoted else database.upper()
    return resolved


def _relation(res: Resolved) -> str:
    return f"profile {res.ref.profile!r}, target {res.target}"


def check_refs(
    refs: Iterable[ProfileRef],
    target: str,
    environ: Mapping[str, str],
    documents: Mapping[Path, Mapping[str, Any]] | None = None,
    root: Path | None = None,
    lenient: bool = False,
    reads: Callable[[str, str], bool] | None = None,
) -> list[Resolved]:
    """Resolve every project's output for `target` and raise ConfigError on the first conflict.

    `reads(project, upstream)`: whether the project's code reads that declared upstream at all; an
    upstream it never reads need not be attached (validation warns about it instead).

    `documents` replaces the profiles.yml read from disk for a folder (a change not written yet).
    `lenient` skips outputs that are absent or cannot be resolved here (an unset variable) instead
    of refusing: `add` checks what it can for every target; each build checks its target strictly."""
    refs = list(refs)
    base = root or Path.cwd()
    loaded: dict[Path, Mapping[str, Any]] = dict(documents or {})
    renderer = Renderer(environ)

    def profiles_of(folder: Path) -> Mapping[str, Any]:
        if folder not in loaded:
            loaded[folder] = read_profiles(folder)
        return loaded[folder]

    seen_profiles: dict[tuple[Path, str], ProfileRef] = {}
    for ref in refs:
        key = (ref.profiles_dir.resolve(), ref.profile)
        first = seen_profiles.get(key)
        if first is not None:
            raise ConfigError(
                f"projects {first.project} and {ref.project} both build with profile "
                f"{ref.profile!r} of {shown(ref.profiles_dir / PROFILES_FILE, base)}, so they would "
                f"write to the same database: give {ref.project} its own `profile:` in "
                f"{shown(ref.project_dir / 'dbt_project.yml', base)} and a profile of that name"
            )
        seen_profiles[key] = ref

    resolved: list[Resolved] = []
    for ref in refs:
        try:
            res = resolve_output(ref, target, profiles_of(ref.profiles_dir), renderer, lenient)
        except ConfigError:
            if not lenient:
                raise
            continue
        if res is not None:
            resolved.append(res)

    owners_file: dict[Path, Resolved] = {}
    owners_db: dict[str, Resolved] = {}
    for res in resolved:
        if res.file is not None:
            other = owners_file.get(res.file)
            if other is not None:
                raise ConfigError(
                    f"projects {other.ref.project} ({_relation(other)}) and {res.ref.project} "
                    f"({_relation(res)}) both build into the DuckDB file {shown(res.file, base)}: "
                    f"give {res.ref.project} its own file "
                    f"(the mesh's convention: warehouse/{res.ref.project}.duckdb)"
                )
            owners_file[res.file] = res
        if res.database is not None:
            other = owners_db.get(res.database)
            if other is not None:
                raise ConfigError(
                    f"projects {other.ref.project} ({_relation(other)}) and {res.ref.project} "
                    f"({_relation(res)}) both build into the Snowflake database {res.database}: "
                    f"give {res.ref.project} its own database ({res.ref.project.upper()}_SNOWFLAKE_DATABASE "
                    "or its profile)"
                )
            owners_db[res.database] = res

    by_project = {res.ref.project: res for res in resolved}
    for res in resolved:
        for attach in res.attaches:
            owner = owners_file.get(attach.file)
            if owner is not None and owner.ref.project != res.ref.project and not attach.read_only:
                raise ConfigError(
                    f"project {res.ref.project} ({_relation(res)}) attaches the DuckDB file of "
                    f"{owner.ref.project} ({shown(attach.file, base)}) without `read_only: true`: "
                    f"a build of {res.ref.project} could write {owner.ref.project}'s data"
                )
        for upstream in res.ref.upstreams:
            up = by_project.get(upstream)
            if up is None or up.file is None or res.kind != "duckdb":
                continue
            found = next((a for a in res.attaches if a.file == up.file), None)
            if found is None:
                continue  # the mesh attaches it itself (mesh/warehouse/outputs.py)
            fix = (
                f"attach {shown(up.file, base)} with `alias: {up.file.stem}` and `read_only: true` "
                f"in profile {res.ref.profile!r} ({hint('project.add', '<its folder>', '--upstream', upstream)} "
                "does it for a profile the mesh wrote)"
            )
            if found is None:
                raise ConfigError(
                    f"project {res.ref.project} reads {upstream} (dependencies.yml), but its "
                    f"{_relation(res)} does not attach {upstream}'s DuckDB file: {fix}"
                )
            if found.alias != up.file.stem:
                raise ConfigError(
                    f"project {res.ref.project} attaches {upstream}'s DuckDB file as "
                    f"{found.alias!r}, but {upstream}'s relations name the database "
                    f"{up.file.stem!r}: {fix}"
                )
    return resolved


def mesh_refs(mesh: Mesh, dbt_target: str | None = None) -> list[ProfileRef]:
    """Every project of the mesh whose folder is here, with the profile it builds with on
    `dbt_target` (default: the mesh's)."""
    refs = []
    for name, cfg in mesh.config.projects.items():
        if cfg.path is None:
            continue  # built by another repository
        directory = (mesh.root / cfg.path).resolve()
        if not (directory / "dbt_project.yml").is_file():
            continue  # another team's repository: it checks its own profile
        source = profile_source(mesh, name, dbt_target)
        refs.append(
            ProfileRef(
                project=name,
                project_dir=directory,
                profile=source.name,
                profiles_dir=source.folder,
                upstreams=mesh.project(name).upstreams,  # read once per Mesh
            )
        )
    return refs


def render_environ(mesh: Mesh, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment dbt renders the profiles with (mesh.warehouse.runner's), without MESH_BUILD_DIR."""
    environ = dict(os.environ if base is None else base)
    environ.update(BASE_ENV)
    environ["MESH_WAREHOUSE_DIR"] = str(mesh.warehouse_dir)
    environ.pop("MESH_BUILD_DIR", None)
    return environ


def check_profiles(mesh: Mesh, target: str | None = None) -> None:
    """Refuse (ConfigError, naming both projects) when two projects of the mesh would write to one
    database for the dbt target `target` (default: the mesh's), or a consumer's profile does not
    attach its upstreams read-only. Run before every build; no dbt import."""
    def reads(project: str, upstream: str) -> bool:

        found = mesh.project(project)
        lock = (read_lock(found) or {}).get("upstreams") or {}
        return bool(
            scan_references(found, upstream)
            or (lock.get(upstream) or {}).get("nodes")
            or scan_unqualified_refs(found)
        )

    resolved = check_refs(
        mesh_refs(mesh, target),
        target or mesh.dbt_target,
        render_environ(mesh),
        root=mesh.root,
        reads=reads,
    )
    _check_databases(mesh, resolved)


def _check_databases(mesh: Mesh, resolved: list[Resolved]) -> None:
    """No database may be written by two projects: each DuckDB project's own file and the other
    databases its configs name (mesh/warehouse/outputs.py) belong to it alone."""

    owners: dict[str, str] = {}
    for res in resolved:
        if res.kind != "duckdb" or res.file is None:
            continue
        names = [res.file.stem, *configured_databases(res.ref.project_dir)]
        for database in dict.fromkeys(n.lower() for n in names):
            other = owners.setdefault(database, res.ref.project)
            if other != res.ref.project:
                raise ConfigError(
                    f"projects {other} and {res.ref.project} both write database {database}: on DuckDB "
                    "a database is one file, so one would overwrite the other's; give one of them "
                    "another `+database` (or another profile path)"
                )
