"""Load and validate `mesh.yml`: the projects, how consumers read upstreams, and one registry per target.

Environment overrides, applied after `${VAR}` expansion: `MESH_TARGET` picks the target when the
caller does not, `MESH_REGISTRY` replaces the target's registry URL, `MESH_ENV` its env,
`MESH_WAP` / `MESH_GRANTS` (true|false) its write-audit-publish and grant-sync switches.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from mesh.core.errors import ConfigError, MeshError
from mesh.core.names import check_name, check_version
from mesh.core.suggest import closest, did_you_mean
from mesh.core.surface import hint
from mesh.registry import Registry, open_registry
from mesh.registry.signing import ProjectTrust, PublicKey, Trust

CONFIG_FILE = "mesh.yml"
_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class AuditConfig(BaseModel):
    """One audit beyond dbt's tests (mesh.yml `audits:`): a command run after them, against the
    audit copy, before the swap."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="How runs, records and `registry.show` name the audit",
    )
    run: str = Field(
        min_length=1,
        description="A shell command, run from the project's folder (Great Expectations, Soda, a "
        "SQL check, any script): a non-zero exit fails the audit",
    )
    timeout_seconds: int = Field(900, ge=1, le=86_400, description="Fail the audit after this long")


class SigningConfig(BaseModel):
    """The keys trusted for one project's registry objects (mesh.yml `signing:`, or a trust file)."""

    model_config = ConfigDict(extra="forbid")

    keys: list[str] = Field(
        description="Public keys (`ed25519:<base64>`, printed by the registry.keygen task); "
        "several while a key is rotated"
    )
    unsigned_until: str | None = Field(
        None,
        description="History published before the project signed, up to and including this "
        "version, is accepted unsigned (a decision recorded here)",
    )

    @field_validator("keys")
    @classmethod
    def _keys(cls, value: list[str]) -> list[str]:

        if not value:
            raise ValueError(f"list at least one key ({hint('registry.keygen')} prints one)")
        for key in value:
            try:
                PublicKey.parse(key)
            except MeshError as exc:
                raise ValueError(str(exc).removeprefix("mesh.yml: ")) from None
        return value

    @field_validator("unsigned_until")
    @classmethod
    def _unsigned_until(cls, value: str | None) -> str | None:

        if value is not None:
            try:
                check_version(value)
            except MeshError as exc:
                raise ValueError(str(exc)) from None
        return value


class TrustFile(BaseModel):
    """A trust file (mesh.yml `trust_file:`): signing keys by project, kept apart from mesh.yml,
    e.g. one file a platform team distributes to every repository."""

    model_config = ConfigDict(extra="forbid")

    projects: dict[str, SigningConfig]

    @field_validator("projects")
    @classmethod
    def _project_names(cls, value: dict[str, SigningConfig]) -> dict[str, SigningConfig]:
        for name in value:
            check_name("project", name)
        return value


class ProjectConfig(BaseModel):
    """One dbt project of the mesh."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = Field(
        None,
        description="Folder of the dbt project, relative to mesh.yml; none for a project built "
        "and published by another repository (this mesh only reads its interface)",
    )
    upstreams_via: Literal["sources", "loom"] = Field(
        "sources",
        description="How this project reads its upstreams: generated dbt sources or dbt-loom refs",
    )
    sync_scope: Literal["referenced", "all"] = Field(
        "referenced",
        description="Sync only the upstream models this project references (fast) or all of them",
    )
    loom_reads: Literal["synced"] = Field(
        "synced",
        description="dbt-loom reads the copy sync fetched and checked (the only choice: dbt-loom "
        "never reads the registry itself)",
    )
    profiles_dir: str | None = Field(
        None,
        description="The project's own dbt profiles folder, relative to mesh.yml "
        "(default: the mesh's profiles/)",
    )
    mesh_profile: bool = Field(
        False,
        description="Build with the profile the mesh writes for every target, even those the "
        "project's own profiles.yml defines",
    )
    require_contracts: bool | None = Field(
        None, description="Refuse to publish a public node without an enforced contract "
        "(default: the mesh-wide setting)"
    )
    source_names: dict[str, str] = Field(
        default_factory=dict,
        description="The project's own source names that read an upstream, mapped to that "
        "upstream (`{platform: dbt_platform}`): their tables are adopted and kept in step",
    )
    deprecations: Literal["warn", "fail"] | None = Field(
        None,
        description="A reference past its deprecation_date: a warning on every run (warn), or a "
        "failed validation (fail; producers' gates then refuse a change that would fail it) "
        "(default: the mesh-wide setting)",
    )
    unused_upstreams: Literal["warn", "error"] | None = Field(
        None,
        description="An upstream dependencies.yml declares but no node reads: a warning, or an "
        "error (default: the mesh-wide setting)",
    )
    audits: list[AuditConfig] = Field(
        default_factory=list,
        description="Commands run after dbt's tests against the audit copy, before the swap: a "
        "failing one blocks the swap and the publish like a failing test",
    )
    webhook_url: str | None = Field(
        None,
        pattern=r"^(https?://\S+)?$",
        description="Where breaking-change proposals, acknowledgements and publishes of this "
        "project are posted (Slack-compatible JSON); use `${VAR}` to keep the secret URL in the "
        "environment (empty: none)",
    )
    repository: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$",
        description="The GitHub repository (`owner/name`) whose CI builds the project: recorded "
        "with its usage, so a producer's workflow can dispatch it after a publish "
        "(default: GITHUB_REPOSITORY when it records)",
    )
    signing: SigningConfig | None = Field(
        None,
        description="The public keys this mesh trusts for the project's registry objects: with "
        "keys, an unsigned or wrongly signed interface, state or record of it is refused",
    )

    @field_validator("loom_reads", mode="before")
    @classmethod
    def _loom_reads(cls, value: Any) -> Any:
        if value == "registry":
            raise ValueError(
                "`loom_reads: registry` was removed: dbt-loom would read, at run time, an object "
                "the mesh never checked; dbt-loom reads the copy sync checked (delete the key)"
            )
        return value


class TargetConfig(BaseModel):
    """A deployment target: which registry, which env, which dbt profile output."""

    model_config = ConfigDict(extra="forbid")

    registry: str
    env: str
    dbt_target: str | None = None
    upstream_env: str | dict[str, str] | None = Field(
        None, description="The env consumers read upstreams from: one name, or one per upstream"
    )
    wap: bool = Field(
        True,
        description="Build and test into an audit copy and swap it in only when everything "
        "passed (write-audit-publish for the data)",
    )
    grants: bool = Field(
        True,
        description="On Snowflake, keep consumers' SELECT grants in step with each publish "
        "(exactly the published relations)",
    )

    @field_validator("env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        return check_name("env", value)


class MeshConfig(BaseModel):
    """The whole of mesh.yml."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1]
    projects: dict[str, ProjectConfig]
    targets: dict[str, TargetConfig]
    default_target: str = "local"
    require_contracts: bool = Field(
        False, description="Refuse to publish a public node without an enforced contract"
    )
    deprecations: Literal["warn", "fail"] = Field(
        "warn", description="A reference past its deprecation_date: warn on every run, or fail"
    )
    deprecation_warning_days: int = Field(
        30, ge=0, description="Warn about a coming deprecation_date this many days ahead"
    )
    unused_upstreams: Literal["warn", "error"] = Field(
        "warn", description="An upstream declared in dependencies.yml that no node reads"
    )
    snowflake: dict[str, Any] | None = None
    trust_file: str | None = Field(
        None,
        description="A YAML file, relative to mesh.yml, of signing keys by project (`projects: "
        "{name: {keys: [...], unsigned_until: ...}}`), beside or instead of `signing:` entries",
    )

    @field_validator("projects")
    @classmethod
    def _project_names(cls, value: dict[str, ProjectConfig]) -> dict[str, ProjectConfig]:
        for name in value:
            check_name("project", name)
        if not value:
            raise ValueError("at least one project is required")
        return value


def _expand(value: Any, where: str) -> Any:
    """Expand `${VAR}` and `${VAR:-default}` in every string of a parsed YAML tree."""
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(f"{where}: environment variable {name} is not set (used as ${{{name}}})")

        return _VAR_RE.sub(sub, value)
    if isinstance(value, dict):
        return {key: _expand(item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, list):
        return [_expand(item, where) for item in value]
    return value


# Parsed YAML by file, while the file stays the same (inode, size, modification time): a mesh run
# reads each project's profiles.yml and dbt_project.yml several times, and ruamel's parser costs
# about 0.2 s for the profiles of a 20-project mesh. Only files last modified more than a second
# ago are kept: file times tick in milliseconds, so a rewrite of the same size within one tick of
# the write before could otherwise go unseen.
_PARSED: dict[Path, tuple[tuple[int, int, int], Any]] = {}


def read_yaml(path: Path, what: str) -> Any:
    """Parse a YAML file safely, turning every failure into a one-line ConfigError that names the
    file, line and column (`path:line:column: not valid YAML: ...`). Returns a fresh copy: callers
    may change it."""
    try:
        stat = path.stat()
        key = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        cached = _PARSED.get(path)
        if cached is not None and cached[0] == key:
            return copy.deepcopy(cached[1])
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} not found: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from exc
    try:
        value = YAML(typ="safe", pure=True).load(text)
    except YAMLError as exc:
        raise ConfigError(yaml_error_message(path, text, exc)) from exc
    settled = time.time_ns() - stat.st_mtime_ns > 1_000_000_000
    if settled and len(text.encode("utf-8")) == stat.st_size:  # the text read is the text stat saw
        _PARSED[path] = (key, value)
    return copy.deepcopy(value)


# --- error messages: where in the file, and what was probably meant --------------------------------


def _line_column(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of a character offset."""
    before = text[:offset]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1


def yaml_error_message(path: Path, text: str, exc: YAMLError) -> str:
    """`path:line:column: not valid YAML: <problem>` from ruamel's marks (0-based), one line."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None)
    if mark is not None:
        where = f"{path}:{mark.line + 1}:{mark.column + 1}"
    elif isinstance(getattr(exc, "position", None), int):  # ReaderError: a character offset
        line, column = _line_column(text, exc.position)  # type: ignore[attr-defined]
        where = f"{path}:{line}:{column}"
    else:
        where = str(path)
    if not problem:
        problem = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and context != problem:
        if context_mark is not None and mark is not None and context_mark.line != mark.line:
            problem += f" ({context} from line {context_mark.line + 1})"
        else:
            problem += f" ({context})"
    return f"{where}: not valid YAML: {problem}"


def yaml_position(text: str, loc: tuple[Any, ...]) -> tuple[int, int] | None:
    """1-based (line, column) of the deepest key or item of `loc` found in the YAML `text`: the key
    itself when `loc` ends at a key. None when the text does not parse or `loc` starts nowhere."""
    try:
        node = YAML(typ="rt", pure=True).load(text)
    except (YAMLError, ValueError):
        return None
    found: tuple[int, int] | None = None
    for part in loc:
        if not _has(node, part):
            break
        lc = getattr(node, "lc", None)
        if lc is not None:
            line, column = lc.key(part) if isinstance(node, dict) else lc.item(part)
            if line is not None and column is not None:
                found = (int(line) + 1, int(column) + 1)
        node = node[part]
    return found


def _has(data: Any, part: Any) -> bool:
    """Whether `data[part]` names a key of a mapping or an item of a list."""
    if isinstance(data, dict):
        return part in data
    return isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)


def _data_path(data: Any, loc: tuple[Any, ...]) -> list[Any]:
    """The parts of a pydantic `loc` that name keys or items in `data` (drops union-member tags
    such as `str` or `dict[str,str]` that pydantic adds)."""
    parts: list[Any] = []
    for part in loc:
        if not _has(data, part):
            break
        data = data[part]
        parts.append(part)
    return parts


def _model_at(model: Any, parts: list[Any]) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping at `parts` below `model`, if there is one."""
    current: Any = model
    for part in parts:
        current = _mapping_type(current)
        if current is None:
            return None
        if isinstance(current, type) and issubclass(current, BaseModel):
            field_info = current.model_fields.get(str(part))
            current = field_info.annotation if field_info else None
        else:  # dict[str, X] or list[X]: the item type
            args = get_args(current)
            current = args[-1] if args else None
    current = _mapping_type(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _mapping_type(annotation: Any) -> Any:
    """A model, dict or list type out of `X | None` and similar unions."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = get_origin(annotation)
    if origin in (dict, list):
        return annotation
    for arg in get_args(annotation) if origin is not None else ():
        found = _mapping_type(arg)
        if found is not None:
            return found
    return None


def _dotted(parts: list[Any]) -> str:
    return ".".join(str(part) for part in parts)


def _error_identity(raw: Any, err: Any) -> tuple[Any, ...]:
    """Where a pydantic error points in the data (a missing key: its parent and the key), so that
    the errors a union adds for one value count once."""
    found = _data_path(raw, tuple(err["loc"])) if raw is not None else list(err["loc"])
    if err["type"] == "missing" and err["loc"]:
        return (*found, err["loc"][-1])
    return tuple(found)


def _pydantic_message(exc: ValidationError) -> str:
    """The first problem pydantic found, as `key.path: what is wrong` (no file to point into)."""
    err = exc.errors()[0]
    loc = ".".join(str(part) for part in err["loc"]) or "(top level)"
    return f"{loc}: {err['msg']}"


def validation_message(path: Path, exc: ValidationError, model: type[BaseModel]) -> str:
    """One line for the first problem pydantic found in a YAML file: `path:line:column:`, the key
    path, what is wrong and, for an unknown key or value, the closest valid one."""
    errors = exc.errors()
    # A misspelt key also makes its right spelling "missing": explain the misspelling first.
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = ""
    raw: Any = None
    with contextlib.suppress(YAMLError, ValueError):
        raw = YAML(typ="safe", pure=True).load(text) if text else None
    loc = tuple(err["loc"])
    parts = _data_path(raw, loc) if raw is not None else list(loc)
    same_problem = {_error_identity(raw, err)}
    if err["type"] == "extra_forbidden":
        key, parent = loc[-1], list(loc[:-1])
        owner = _model_at(model, parent)
        valid = list(owner.model_fields) if owner else []
        meant = closest(str(key), valid)
        if meant:
            hint = f"; did you mean {meant!r}?"
            same_problem.add((*parent, meant))  # "missing" only because it is misspelt
        else:
            hint = f" (valid keys: {', '.join(valid)})" if valid else ""
        where = f"in {_dotted(parent)}" if parent else "at the top level"
        what, position_of = f"unknown key {key!r} {where}{hint}", loc
    elif err["type"] == "missing":
        parent = parts if len(parts) < len(loc) else list(loc[:-1])
        where = f"in {_dotted(parent)}" if parent else "at the top level"
        what = f"missing required key {loc[-1]!r} {where}"
        position_of = tuple(parent)
    else:
        # A union reports one error per member at the same place: say them together.
        said = [e["msg"] for e in errors if _error_identity(raw, e) == _error_identity(raw, err)]
        what = f"{_dotted(parts) or 'top level'}: " + " or ".join(
            [said[0], *(m.removeprefix("Input should be ") for m in dict.fromkeys(said[1:]))]
        )
        expected, value = (err.get("ctx") or {}).get("expected"), err.get("input")
        if err["type"] == "literal_error" and isinstance(expected, str) and isinstance(value, str):
            what += did_you_mean(value, re.findall(r"'([^']*)'", expected))
        position_of = tuple(parts)
    others = len({_error_identity(raw, e) for e in errors} - same_problem)
    if others:
        what += f" (and {others} more problem{'s' if others > 1 else ''})"
    position = yaml_position(text, position_of) if text and position_of else None
    return f"{path}:{position[0]}:{position[1]}: {what}" if position else f"{path}: {what}"


@dataclass(frozen=True)
class Project:
    """A project of the mesh, resolved against the file system."""

    name: str
    dir: Path
    config: ProjectConfig
    upstreams: tuple[str, ...]
    ignored_upstreams: tuple[str, ...] = ()  # dependencies.yml names no project of the mesh has

    @property
    def target_dir(self) -> Path:
        return self.dir / "target"

    @property
    def mesh_dir(self) -> Path:
        """Where sync keeps what it fetched (git-ignored)."""
        return self.dir / ".mesh"


def read_upstreams(project_dir: Path) -> tuple[str, ...]:
    """The upstream projects a dbt project declares in dbt's own `dependencies.yml` (`projects:`)."""
    path = project_dir / "dependencies.yml"
    if not path.exists():
        return ()
    data = read_yaml(path, "dependencies.yml")
    if data is None:
        return ()
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with `projects:` and/or `packages:`")
    projects = data.get("projects") or []
    if not isinstance(projects, list):
        raise ConfigError(f"{path}: `projects:` must be a list of `- name: <project>` entries")
    names: list[str] = []
    for item in projects:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ConfigError(f"{path}: every `projects:` entry needs `name: <project>`, got {item!r}")
        try:
            names.append(check_name("project", item["name"]))
        except MeshError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: an upstream project is listed twice")
    return tuple(names)


@dataclass
class Mesh:
    """mesh.yml resolved for one target: the object every task works with."""

    root: Path
    config: MeshConfig
    target_name: str
    _projects: dict[str, Project] = field(default_factory=dict, repr=False)

    @property
    def target(self) -> TargetConfig:
        return self.config.targets[self.target_name]

    @property
    def env(self) -> str:
        return self.target.env

    @property
    def dbt_target(self) -> str:
        return self.target.dbt_target or self.target_name

    @cached_property
    def trust(self) -> Trust:
        """The signing keys this mesh trusts, by project (mesh.yml `signing:` and `trust_file:`)."""
        declared: dict[str, SigningConfig] = {
            name: cfg.signing for name, cfg in self.config.projects.items() if cfg.signing
        }
        if self.config.trust_file:
            path = self.root / self.config.trust_file
            raw = read_yaml(path, "trust file")
            try:
                extra = TrustFile.model_validate(_expand(raw, path.name) if raw else {"projects": {}})
            except ValidationError as exc:
                raise ConfigError(validation_message(path, exc, TrustFile)) from exc
            both = sorted(set(declared) & set(extra.projects))
            if both:
                raise ConfigError(
                    f"{path}: project {both[0]} has signing keys in mesh.yml as well: keep them in "
                    "one place"
                )
            declared.update(extra.projects)
        return Trust(
            {
                name: ProjectTrust(tuple(PublicKey.parse(k) for k in cfg.keys), cfg.unsigned_until)
                for name, cfg in declared.items()
            }
        )

    @cached_property
    def registry(self) -> Registry:
        return open_registry(self.target.registry, self.root, trust=self.trust)

    @property
    def warehouse_dir(self) -> Path:
        """The local warehouse: DuckDB files, one per project (MESH_WAREHOUSE_DIR, else
        warehouse/ beside mesh.yml). Projects in separate repositories share one by pointing
        MESH_WAREHOUSE_DIR at it, as they would share one Snowflake account."""
        override = os.environ.get("MESH_WAREHOUSE_DIR")
        return Path(override).resolve() if override else self.root / "warehouse"

    @property
    def profiles_dir(self) -> Path:
        return self.root / "profiles"

    def requires_contracts(self, name: str) -> bool:
        """Whether `name` may publish only public nodes with enforced contracts (mesh.yml: per
        project, else mesh-wide)."""
        own = self.config.projects[name].require_contracts
        return self.config.require_contracts if own is None else own

    def deprecation_policy(self, name: str) -> str:
        """`warn` or `fail`: what a reference of `name` past its deprecation_date does."""
        own = self.config.projects[name].deprecations if name in self.config.projects else None
        return own or self.config.deprecations

    def unused_upstream_policy(self, name: str) -> str:
        own = self.config.projects[name].unused_upstreams if name in self.config.projects else None
        return own or self.config.unused_upstreams

    def profiles_dir_of(self, name: str) -> Path:
        """The dbt profiles folder a project runs with: its own (`profiles_dir:`), else the mesh's."""
        own = self.config.projects[name].profiles_dir
        return (self.root / own).resolve() if own else self.profiles_dir

    def upstream_env(self, upstream: str) -> str:
        """The env of `upstream` this target's consumers read (prod -> prod, dev -> as configured)."""
        binding = self.target.upstream_env
        if binding is None:
            return self.env
        if isinstance(binding, str):
            return check_name("env", binding)
        return check_name("env", binding.get(upstream, self.env))

    def project(self, name: str) -> Project:
        if name not in self._projects:
            if name not in self.config.projects:
                known = ", ".join(sorted(self.config.projects))
                hint = did_you_mean(name, self.config.projects)
                raise ConfigError(f"unknown project {name!r}{hint} (mesh.yml defines {known})")
            cfg = self.config.projects[name]
            if cfg.path is None:
                raise ConfigError(
                    f"project {name} is not built here: mesh.yml gives it no path (another "
                    "repository builds and publishes it; this mesh reads its interface only)"
                )
            directory = (self.root / cfg.path).resolve()
            if not (directory / "dbt_project.yml").is_file():
                raise ConfigError(f"project {name}: no dbt_project.yml in {directory}")
            declared = read_upstreams(directory)
            unknown = tuple(u for u in declared if u not in self.config.projects)
            if unknown:
                # dbt ignores projects it does not know in dependencies.yml (another platform's
                # names, say); so does the mesh, unless the code reads one of them.
                from mesh.project.files import references_by_project

                read = [u for u in unknown if u in references_by_project(directory)]
                if read:
                    hint = did_you_mean(read[0], self.config.projects)
                    raise ConfigError(
                        f"{name}/dependencies.yml names upstream {read[0]!r}{hint}, which mesh.yml "
                        f"does not define, and {name}'s code reads it: add it to the mesh first"
                    )
            if name in declared:
                raise ConfigError(f"{name}/dependencies.yml lists the project itself")
            upstreams = tuple(u for u in declared if u not in unknown)
            self._projects[name] = Project(name, directory, cfg, upstreams, unknown)
        return self._projects[name]

    def is_local(self, name: str) -> bool:
        """Whether `name` is built here (mesh.yml gives it a path), not only read from the registry."""
        return self.config.projects[name].path is not None

    def build_order(self) -> list[str]:
        """Every project built here, upstreams before their consumers (raises on a cycle)."""
        order: list[str] = []
        visiting: set[str] = set()

        def visit(name: str, chain: tuple[str, ...]) -> None:
            if name in order:
                return
            if name in visiting:
                raise ConfigError(f"dependency cycle: {' -> '.join((*chain, name))}")
            if not self.is_local(name):
                return  # published by another repository: nothing to order here
            visiting.add(name)
            for upstream in self.project(name).upstreams:
                visit(upstream, (*chain, name))
            visiting.discard(name)
            order.append(name)

        for name in self.config.projects:
            visit(name, ())
        return order

    def consumers_of(self, upstream: str) -> list[str]:
        return [n for n in self.build_order() if upstream in self.project(n).upstreams]


def find_root(start: Path | None = None) -> Path:
    """The folder holding mesh.yml: `start` or its nearest parent."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder
    raise ConfigError(f"no {CONFIG_FILE} found in {here} or any parent folder")


def load_mesh(root: Path | None = None, target: str | None = None) -> Mesh:
    """Read mesh.yml under `root` (or the nearest one) and resolve it for `target`."""
    root = find_root(root) if root is None else Path(root).resolve()
    path = root / CONFIG_FILE
    raw = read_yaml(path, CONFIG_FILE)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with version, projects and targets")
    raw = _expand(raw, CONFIG_FILE)
    try:
        config = MeshConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(validation_message(path, exc, MeshConfig)) from exc
    name = target or os.environ.get("MESH_TARGET") or config.default_target
    if name not in config.targets:
        known = ", ".join(sorted(config.targets))
        raise ConfigError(f"unknown target {name!r}: mesh.yml defines {known}")
    overrides: dict[str, Any] = {}
    for knob in ("wap", "grants"):  # MESH_WAP / MESH_GRANTS: the emulator cannot do these
        value = os.environ.get(f"MESH_{knob.upper()}", "").strip().lower()
        if value:
            if value not in ("true", "false", "1", "0"):
                raise ConfigError(f"MESH_{knob.upper()} must be true or false, got {value!r}")
            overrides[knob] = value in ("true", "1")
    if os.environ.get("MESH_REGISTRY"):
        overrides["registry"] = os.environ["MESH_REGISTRY"]
    if os.environ.get("MESH_ENV"):
        overrides["env"] = check_name("env", os.environ["MESH_ENV"])
    if overrides:
        config.targets[name] = config.targets[name].model_copy(update=overrides)
    return Mesh(root=root, config=config, target_name=name)
