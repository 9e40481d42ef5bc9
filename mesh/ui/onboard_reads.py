"""What a project joining the mesh reads upstream, from its own files (`project.add`): the
upstreams it declares and references, and how it reads them (dbt-loom refs or sources); how many
public models it has without an enforced contract."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml.error import YAMLError

from mesh.core.errors import ConfigError, MeshError
from mesh.core.names import check_name
from mesh.core.surface import hint, team_repository
from mesh.project.config import CONFIG_FILE, read_yaml
from mesh.project.dbt_project import DbtProject, _files
from mesh.project.profiles import shown


def _add_upstream_first(upstream: str, name: str) -> str:
    """How to bring an upstream into the mesh before `name`: in a team's own repository (the
    `mesh` script) the upstream is usually built by another repository, which is an entry without
    a path in mesh.yml; in the repository of every project, its folder is added."""
    add = hint("project.add", "<its folder>")
    if team_repository():
        return (
            f"add `{upstream}: {{}}` under `projects:` in {CONFIG_FILE} when another repository "
            f"builds and publishes it (or {add} when its folder is here), then add {name}"
        )
    return f"add it first ({add}), then {name}"


def _team_loom_upstreams(directory: Path) -> list[str]:
    """The upstream names a team's own dbt_loom.config.yml lists (read, never given to dbt-loom)."""
    path = directory / "dbt_loom.config.yml"
    if not path.is_file():
        return []
    try:
        data = read_yaml(path, "dbt_loom.config.yml")
    except MeshError:
        return []
    manifests = data.get("manifests") if isinstance(data, dict) else None
    return [str(m["name"]) for m in manifests or [] if isinstance(m, dict) and isinstance(m.get("name"), str)]


@dataclass
class _Reads:
    """What a project reads of the mesh, from its own files."""

    upstreams: list[str]
    code: dict[str, list[Any]]  # upstream -> its two-argument refs and sources in the code
    loom_names: list[str]  # upstreams its own dbt_loom.config.yml lists


def _wanted_upstreams(
    info: DbtProject, given: Sequence[str], projects: Mapping[str, Any], root: Path, notes: list[str]
) -> _Reads:
    """Upstreams from what the project declares and uses: dependencies.yml's names that are mesh
    projects (other names are a note: dbt ignores them too, unless the code reads them), the
    mesh projects its code references (`ref('<p>', …)`, `source('<p>', …)`) and its own
    dbt_loom.config.yml names, and each --upstream (which must be in the mesh)."""
    from mesh.project.files import references_by_project

    code_all = references_by_project(info.dir)
    code = {k: v for k, v in code_all.items() if k in projects and k != info.name}
    loom_names = [n for n in _team_loom_upstreams(info.dir) if n in projects and n != info.name]
    wanted: list[str] = []
    for upstream in info.upstreams:
        if upstream in projects:
            wanted.append(upstream)
        elif upstream in code_all:
            first = code_all[upstream][0]
            raise ConfigError(
                f"{info.name} reads {upstream} ({shown(first.file, root)}: {first.describe(upstream)}), "
                f"which is not in the mesh: {_add_upstream_first(upstream, info.name)}"
            )
        else:
            notes.append(
                f"dependencies.yml names {upstream}, which is no project of the mesh and which no "
                f"node of {info.name} reads: ignored (dbt ignores it too)"
            )
    for upstream in [*code, *loom_names]:
        if upstream not in wanted:
            wanted.append(upstream)
            found = "its code" if upstream in code else "its own dbt_loom.config.yml"
            notes.append(f"{info.name} reads {upstream} ({found}): declared in dependencies.yml")
    for upstream in given:
        check_name("upstream project", upstream)
        if upstream == info.name:
            raise ConfigError(f"{info.name} cannot be its own upstream")
        if upstream not in projects:
            raise ConfigError(f"upstream {upstream!r} is not in the mesh: {_add_upstream_first(upstream, info.name)}")
        if upstream not in wanted:
            wanted.append(upstream)
    return _Reads(wanted, code, loom_names)


def _contract_counts(info: DbtProject) -> tuple[int, int, bool]:
    """(public models, those without an enforced contract in their YAML, whether dbt_project.yml
    sets `+contract` on folders: then some of those may be enforced after all)."""
    from ruamel.yaml import YAML as _YAML

    loader = _YAML(typ="safe")
    public = open_ = 0
    for path in _files(info.dir, info.model_paths, {".yml", ".yaml"}):
        try:
            doc = loader.load(path.read_text(encoding="utf-8"))
        except (YAMLError, UnicodeDecodeError):
            continue
        for model in (doc.get("models") if isinstance(doc, dict) else None) or []:
            if not isinstance(model, dict):
                continue
            config: dict[str, Any] = model["config"] if isinstance(model.get("config"), dict) else {}
            if (config.get("access") or model.get("access")) != "public":
                continue
            public += 1
            contract = config.get("contract") or model.get("contract") or {}
            if not (isinstance(contract, dict) and contract.get("enforced") is True):
                open_ += 1
    spec = (info.dir / "dbt_project.yml").read_text(encoding="utf-8", errors="replace")
    return public, open_, "+contract" in spec


def _has_own_sources(info: DbtProject) -> bool:
    return any(
        re.search(r"^sources\s*:", p.read_text(encoding="utf-8", errors="replace"), re.MULTILINE)
        for p in _files(info.dir, info.model_paths, {".yml", ".yaml"})
    )


def _style(info: DbtProject, reads: _Reads, via: str | None, root: Path, notes: list[str]) -> str:
    """How a consumer reads its upstreams, from its code: qualified refs mean dbt-loom, sources
    named after the upstream mean generated sources. `via` must agree with the code; a consumer
    whose code shows both, or neither, must say (a producer needs nothing)."""
    from mesh.consumer.sync import style_mismatch

    if via is not None:
        for upstream in reads.upstreams:
            mismatch = style_mismatch(reads.code.get(upstream, []), upstream, via, root)
            if mismatch is not None:
                raise ConfigError(f"{info.name} {mismatch}")
        return via
    if not reads.upstreams:
        return "sources"
    kinds = {r.kind for u in reads.upstreams for r in reads.code.get(u, [])}
    if kinds == {"ref"}:
        return "loom"
    if kinds == {"source"}:
        return "sources"
    if not kinds and reads.loom_names:
        return "loom"
    if not kinds and _has_own_sources(info):
        notes.append(
            f"{info.name} reads {', '.join(reads.upstreams)} through its own sources: sync adopts "
            "the tables that point at their public relations (README: Add your project)"
        )
        return "sources"
    what = "both `ref('<upstream>', …)` and `source('<upstream>', …)`" if kinds else "no reference to them"
    raise ConfigError(
        f"{info.name}'s code shows {what} for {', '.join(reads.upstreams)}: say how it reads them "
        "with --via loom (dbt-loom refs) or --via sources (generated dbt sources)"
    )
