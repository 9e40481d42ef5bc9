"""dbt packages: run `dbt deps` before a project's first build and whenever its package spec changes.

`dbt_packages/` is generated: before `dbt deps` runs again it is emptied, so a package the spec no
longer lists leaves with it. A team that commits its `dbt_packages/` (vendoring, offline builds)
keeps it as committed: the mesh never runs `dbt deps` over a folder git tracks.

The spec is `packages.yml`, the `packages:` of `dependencies.yml` and `package-lock.yml`; their hash
after the last successful `dbt deps` is kept in the project's `.mesh/packages.sha256`. A project
without package dependencies never runs `dbt deps`.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from mesh.core.errors import BuildFailedError
from mesh.project.config import Mesh, Project, read_yaml
from mesh.warehouse.runner import run_dbt

SPEC_FILES = ("packages.yml", "dependencies.yml", "package-lock.yml")
STAMP = "packages.sha256"


def _declared_packages(project: Project) -> list[object]:
    declared: list[object] = []
    for name in ("packages.yml", "dependencies.yml"):
        path = project.dir / name
        if path.is_file():
            data = read_yaml(path, name)
            if isinstance(data, dict) and isinstance(data.get("packages"), list):
                declared.extend(data["packages"])
    return declared


def spec_hash(project: Project) -> str | None:
    """Hash of the package spec, or None when the project declares no package."""
    if not _declared_packages(project):
        return None
    digest = hashlib.sha256()
    for name in SPEC_FILES:
        path = project.dir / name
        digest.update(name.encode() + b"\0")
        digest.update(path.read_bytes() if path.is_file() else b"<none>")
        digest.update(b"\0")
    return digest.hexdigest()


def _install_dir(project: Project) -> Path:
    data = read_yaml(project.dir / "dbt_project.yml", "dbt_project.yml") or {}
    folder = data.get("packages-install-path") if isinstance(data, dict) else None
    return project.dir / (str(folder) if folder else "dbt_packages")


def needs_deps(project: Project) -> bool:
    """Whether `dbt deps` must run before the next build."""
    wanted = spec_hash(project)
    if wanted is None:
        return False
    stamp = project.mesh_dir / STAMP
    recorded = stamp.read_text().strip() if stamp.is_file() else ""
    return recorded != wanted or not _install_dir(project).is_dir()


def _package_names(project: Project) -> list[str]:
    names = []
    for item in _declared_packages(project):
        if isinstance(item, dict):
            for key in ("package", "git", "local", "tarball", "private"):
                if isinstance(item.get(key), str):
                    names.append(str(item[key]))
                    break
    return names


def _committed(folder: Path) -> bool:
    """Whether git tracks files in `folder` (a vendored dbt_packages/)."""
    import subprocess

    if not folder.is_dir():
        return False
    try:
        out = subprocess.run(
            ["git", "-C", str(folder), "ls-files", "--", "."], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and bool(out.stdout.strip())


def ensure_packages(mesh: Mesh, name: str) -> bool:
    """Run `dbt deps` for `name` when needed; True when it ran. Fails with one line naming the
    packages and how to vendor one that cannot be fetched."""

    project = mesh.project(name)
    if not needs_deps(project):
        return False
    install = _install_dir(project)
    if _committed(install):
        return False  # the team vendors its packages in git: `dbt deps` would replace them
    if install.is_dir():
        shutil.rmtree(install)  # generated: a package the spec no longer lists leaves with it
    run = run_dbt(mesh, name, ["deps"], raise_on_failure=False)
    if not run.success:
        packages = ", ".join(_package_names(project)) or "its packages"
        where = f"; full log: {run.log}" if run.log else ""
        raise BuildFailedError(
            f"dbt deps failed for {name} ({packages}): {run.cause()}; a package that cannot be "
            "fetched here can be vendored: copy it into the repository and list it in "
            f"packages.yml as `- local: <path>`{where}"
        )
    stamp = project.mesh_dir / STAMP
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text((spec_hash(project) or "") + "\n")
    return True

