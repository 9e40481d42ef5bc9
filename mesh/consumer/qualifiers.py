"""Two-argument refs and sources whose first argument is almost an upstream's name.

`ref('dbt_upp', 'orders')` or `source('dbt_upp', 'orders')` in a consumer of `dbt_up` resolves
nowhere; sync never looks at it (it reads the references to its declared upstreams), and dbt fails
later with "depends on a node named 'orders' in package or project 'dbt_upp' which was not found".
Sync stops it first, with the closest project's name.

The first argument of a two-argument `ref` may also name the project itself, one of its packages or
a project of the mesh, and that of a `source` any source the project declares: none of those is a
misspelling. Only a name close to a project of the mesh (a tighter match than the one for mesh.yml
keys, so a package named like a project is not taken for a typo) and known to the project in no
other way is reported.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mesh.core.errors import SyncError
from mesh.core.suggest import closest
from mesh.project.config import Mesh, Project, read_yaml
from mesh.project.files import _JINJA_COMMENT_RE, _REF_RE, _SOURCE_RE, _YAML_NAME_RE, _project_files
from mesh.warehouse.packages import _declared_packages, _install_dir

# difflib's ratio between a qualifier and a project name: one slip in a name of six letters or
# more (`dbt_upp`, `dbt_dwn`), not `dbt_up_utils` for `dbt_up`.
CUTOFF = 0.8


@dataclass(frozen=True)
class Misspelt:
    """A reference whose qualifier is close to, but not, a project's name."""

    text: str  # `ref('dbt_upp', 'orders')`
    qualifier: str
    suggestion: str
    file: Path


def _package_names(project: Project) -> set[str]:
    """Names the project's packages go by: installed ones' dbt names, and from the spec the local
    package's dbt name, a hub package's last segment, a git repository's name."""

    names: set[str] = set()

    def dbt_name(folder: Path) -> None:
        spec = folder / "dbt_project.yml"
        if spec.is_file():
            with contextlib.suppress(Exception):
                data = read_yaml(spec, "dbt_project.yml")
                if isinstance(data, dict) and isinstance(data.get("name"), str):
                    names.add(data["name"])

    installed = _install_dir(project)
    if installed.is_dir():
        for folder in installed.iterdir():
            names.add(folder.name)
            dbt_name(folder)
    for item in _declared_packages(project):
        if not isinstance(item, dict):
            continue
        if isinstance(item.get("local"), str):
            dbt_name((project.dir / item["local"]).resolve())
        for key in ("package", "git", "tarball", "private"):
            value = item.get(key)
            if isinstance(value, str) and value:
                tail = value.rstrip("/").rsplit("/", 1)[-1]
                names.add(tail.removesuffix(".git").removesuffix(".tar.gz").replace("-", "_"))
    return names


def _source_names(project: Project) -> set[str]:
    """Every `- name:` of the project's YAML: its sources' names among them (a broad set: a name
    that is anything the project declares is not taken for a misspelt project)."""

    names: set[str] = set()
    for path in _project_files(project):
        if path.suffix in (".yml", ".yaml"):
            with contextlib.suppress(OSError, UnicodeDecodeError):
                names.update(_YAML_NAME_RE.findall(path.read_text(encoding="utf-8")))
    return names


def find_misspelt(project: Project, projects: Iterable[str]) -> list[Misspelt]:
    """The project's two-argument refs and sources whose qualifier is almost one of `projects`."""

    projects = set(projects)
    candidates = set(project.upstreams) | projects - {project.name}
    found: list[Misspelt] = []
    packages: set[str] | None = None
    sources: set[str] | None = None
    for path in _project_files(project):
        if path.suffix == ".md":  # docs show code, they do not run it
            continue
        try:
            text = _JINJA_COMMENT_RE.sub("", path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            continue
        hits = [("ref", m.group("pkg"), m.group(0)) for m in _REF_RE.finditer(text)]
        hits += [("source", m.group("src"), m.group(0)) for m in _SOURCE_RE.finditer(text)]
        for kind, qualifier, written in hits:
            if qualifier in projects or qualifier == project.name:
                continue
            suggestion = closest(qualifier, candidates, CUTOFF)
            if suggestion is None:
                continue
            if kind == "ref":
                packages = _package_names(project) if packages is None else packages
                if qualifier in packages:
                    continue
            else:
                sources = _source_names(project) if sources is None else sources
                if qualifier in sources:
                    continue
            found.append(Misspelt(" ".join(written.split()), qualifier, suggestion, path))
    return found


def check_qualifiers(mesh: Mesh, project: Project) -> None:
    """Raise SyncError for the first misspelt qualifier (and count the others)."""
    found = find_misspelt(project, mesh.config.projects)
    if not found:
        return
    first = found[0]
    where = f"{project.name}/{first.file.relative_to(project.dir)}"
    what = "upstream, package or project" if first.text.startswith("ref") else "upstream or source"
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    declared = "" if first.suggestion in project.upstreams else (
        f" ({first.suggestion} is not an upstream of {project.name}: add it to dependencies.yml)"
    )
    raise SyncError(
        f"{where}: {first.text} names no {what} of {project.name} called {first.qualifier!r}; "
        f"did you mean {first.suggestion!r}?{declared}{more}"
    )
