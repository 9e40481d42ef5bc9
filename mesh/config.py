"""Load and validate `mesh.yml`: the projects, how consumers read upstreams, and one registry per target.

Environment overrides, applied after `${VAR}` expansion: `MESH_TARGET` picks the target when the
caller does not, `MESH_REGISTRY` replaces the target's registry URL, `MESH_ENV` its env.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from mesh.errors import ConfigError, MeshError
from mesh.names import check_name
from mesh.registry import Registry, open_registry

CONFIG_FILE = "mesh.yml"
_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ProjectConfig(BaseModel):
    """One dbt project of the mesh."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="Folder of the dbt project, relative to mesh.yml")
    upstreams_via: Literal["sources", "loom"] = Field(
        "sources",
        description="How this project reads its upstreams: generated dbt sources or dbt-loom refs",
    )
    sync_scope: Literal["referenced", "all"] = Field(
        "referenced",
        description="Sync only the upstream models this project references (fast) or all of them",
    )
    loom_reads: Literal["synced", "registry"] = Field(
        "synced",
        description="dbt-loom reads the verified copy sync fetched, or the registry object itself",
    )
    profiles_dir: str | None = Field(
        None,
        description="The project's own dbt profiles folder, relative to mesh.yml "
        "(default: the mesh's profiles/)",
    )
    require_contracts: bool | None = Field(
        None, description="Refuse to publish a public node without an enforced contract "
        "(default: the mesh-wide setting)"
    )


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
    snowflake: dict[str, Any] | None = None

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


def read_yaml(path: Path, what: str) -> Any:
    """Parse a YAML file safely, turning every failure into a one-line ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} not found: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from exc
    try:
        return YAML(typ="safe", pure=True).load(text)
    except YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{what} {path} is not valid YAML: {first}") from exc


def _pydantic_message(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(part) for part in err["loc"]) or "(top level)"
    return f"{loc}: {err['msg']}"


@dataclass(frozen=True)
class Project:
    """A project of the mesh, resolved against the file system."""

    name: str
    dir: Path
    config: ProjectConfig
    upstreams: tuple[str, ...]

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
    def registry(self) -> Registry:
        return open_registry(self.target.registry, self.root)

    @property
    def warehouse_dir(self) -> Path:
        return self.root / "warehouse"

    @property
    def profiles_dir(self) -> Path:
        return self.root / "profiles"

    def requires_contracts(self, name: str) -> bool:
        """Whether `name` may publish only public nodes with enforced contracts (mesh.yml: per
        project, else mesh-wide)."""
        own = self.config.projects[name].require_contracts
        return self.config.require_contracts if own is None else own

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
                raise ConfigError(f"unknown project {name!r}: mesh.yml defines {known}")
            cfg = self.config.projects[name]
            directory = (self.root / cfg.path).resolve()
            if not (directory / "dbt_project.yml").is_file():
                raise ConfigError(f"project {name}: no dbt_project.yml in {directory}")
            upstreams = read_upstreams(directory)
            for upstream in upstreams:
                if upstream not in self.config.projects:
                    raise ConfigError(
                        f"{name}/dependencies.yml names upstream {upstream!r}, which mesh.yml "
                        "does not define"
                    )
                if upstream == name:
                    raise ConfigError(f"{name}/dependencies.yml lists the project itself")
            self._projects[name] = Project(name, directory, cfg, upstreams)
        return self._projects[name]

    def build_order(self) -> list[str]:
        """Every project, upstreams before their consumers (raises on a cycle)."""
        order: list[str] = []
        visiting: set[str] = set()

        def visit(name: str, chain: tuple[str, ...]) -> None:
            if name in order:
                return
            if name in visiting:
                raise ConfigError(f"dependency cycle: {' -> '.join((*chain, name))}")
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
        raise ConfigError(f"{path}: {_pydantic_message(exc)}") from exc
    name = target or os.environ.get("MESH_TARGET") or config.default_target
    if name not in config.targets:
        known = ", ".join(sorted(config.targets))
        raise ConfigError(f"unknown target {name!r}: mesh.yml defines {known}")
    overrides: dict[str, str] = {}
    if os.environ.get("MESH_REGISTRY"):
        overrides["registry"] = os.environ["MESH_REGISTRY"]
    if os.environ.get("MESH_ENV"):
        overrides["env"] = check_name("env", os.environ["MESH_ENV"])
    if overrides:
        config.targets[name] = config.targets[name].model_copy(update=overrides)
    return Mesh(root=root, config=config, target_name=name)
