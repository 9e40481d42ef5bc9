"""What an existing dbt project's own files say before the mesh knows it: its name, profile, paths,
models, contracts and packages, read from dbt_project.yml and its folders (no dbt)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesh.core.errors import ConfigError, MeshError
from mesh.core.names import check_name
from mesh.project.config import (
    read_upstreams,
    read_yaml,
)
from mesh.project.profiles import (
    dbt_profile_name,
)

_PUBLIC_RE = re.compile(r"""\+?access:\s*['"]?public\b""")

# --- what the project's files say -----------------------------------------------------------------


@dataclass(frozen=True)
class DbtProject:
    """An existing dbt project, as its own files describe it."""

    dir: Path
    name: str
    profile: str
    model_paths: tuple[str, ...]
    seed_paths: tuple[str, ...]
    snapshot_paths: tuple[str, ...]
    upstreams: tuple[str, ...]  # dependencies.yml `projects:`
    packages: int  # entries of `packages:` (dependencies.yml or packages.yml)
    packages_file: str | None
    models: int
    seeds: int
    snapshots: int
    public: bool  # declares `access: public` somewhere

    def describe(self) -> str:
        parts = [_count(self.models, "model"), _count(self.seeds, "seed")]
        if self.snapshots:
            parts.append(_count(self.snapshots, "snapshot"))
        if self.public:
            parts.append("public models")
        return f"dbt project {self.name}, profile {self.profile}: {', '.join(parts)}"


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _paths(data: Mapping[str, Any], key: str, default: str) -> tuple[str, ...]:
    value = data.get(key)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    return (default,)


def _files(base: Path, folders: Iterable[str], suffixes: set[str]) -> list[Path]:
    found: list[Path] = []
    for folder in folders:
        root = base / folder
        if root.is_dir():
            found += [
                p for p in sorted(root.rglob("*"))
                if p.suffix in suffixes and p.is_file() and not p.name.startswith("_mesh_")
            ]
    return found


def _count_packages(path: Path) -> int:
    if not path.is_file():
        return 0
    data = read_yaml(path, path.name)
    packages = data.get("packages") if isinstance(data, dict) else None
    return len(packages) if isinstance(packages, list) else 0


def read_dbt_project(directory: Path) -> DbtProject:
    """Read an existing dbt project's dbt_project.yml and dependency files."""
    path = directory / "dbt_project.yml"
    if not path.is_file():
        raise ConfigError(
            f"no dbt_project.yml in {directory}: give the folder of an existing dbt project"
        )
    data = read_yaml(path, "dbt_project.yml")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with name and profile")
    try:
        name = check_name("project", data.get("name"))
    except MeshError as exc:
        raise ConfigError(
            f"{path}: {exc} (the mesh names the project after its dbt `name:`)"
        ) from exc
    profile = dbt_profile_name(directory)
    models = _paths(data, "model-paths", "models")
    seeds = _paths(data, "seed-paths", "seeds")
    snapshots = _paths(data, "snapshot-paths", "snapshots")
    yml = [path, *_files(directory, models, {".yml", ".yaml"})]
    public = any(_PUBLIC_RE.search(p.read_text(encoding="utf-8", errors="replace")) for p in yml)
    deps = _count_packages(directory / "dependencies.yml")
    pkgs = _count_packages(directory / "packages.yml")
    return DbtProject(
        dir=directory,
        name=name,
        profile=profile,
        model_paths=models,
        seed_paths=seeds,
        snapshot_paths=snapshots,
        upstreams=read_upstreams(directory),
        packages=deps or pkgs,
        packages_file="dependencies.yml" if deps else "packages.yml" if pkgs else None,
        models=len(_files(directory, models, {".sql", ".py"})),
        seeds=len(_files(directory, seeds, {".csv"})),
        snapshots=len(_files(directory, snapshots, {".sql"})),
        public=public,
    )


