"""The registry commands both surfaces run (`invoke registry.*` and `mesh registry.*`).

Each takes the loaded mesh and the command's options, prints through `echo` and raises a MeshError
(its exit code is the command's) for what failed; the invoke task and the `mesh` subcommand only
parse their arguments and call these.
"""

from __future__ import annotations

from collections.abc import Callable

from mesh.core.errors import ConfigError
from mesh.project.config import Mesh

Echo = Callable[[str], None]

# The options of each command, as both surfaces show them (`--help`); `--target` is the surface's.
HELP: dict[str, dict[str, str]] = {
    "registry.list": {"project": "only this project's versions, newest first"},
    "registry.show": {
        "project": "the project to show",
        "version": "a history version (default: latest)",
    },
    "registry.diff": {
        "project": "the project to diff",
        "from": "older history version (default: the one before --to)",
        "to": "newer history version (default: latest)",
    },
    "registry.rollback": {
        "project": "the project to roll back",
        "to": "the history version to make latest again (see registry.list; works on a damaged latest)",
        "reason": "why (recorded in the new history entry)",
        "allow_breaking": "roll back even if consumers use what the rollback removes",
    },
    "registry.consumers": {"project": "the producer whose consumers to list"},
    "registry.fsck": {
        "project": "the project whose registry objects to check (in the target's env)",
        "repair": "remove leftovers of interrupted writes, and recover a damaged latest (the newest "
        "intact version becomes latest again, as a recorded publish); damaged entries are kept",
    },
    "registry.prune": {
        "project": "the project whose history to prune (in the target's env)",
        "keep": "how many of the newest versions to keep (at least 1)",
        "dry_run": "print what would be deleted, delete nothing",
    },
}


def registry_list(mesh: Mesh, project: str | None, echo: Echo = print) -> None:
    from mesh.ui.report import registry_list_lines

    echo("\n".join(registry_list_lines(mesh, project)))


def registry_show(mesh: Mesh, project: str, version: str | None, echo: Echo = print) -> None:
    from mesh.ui.report import registry_show_lines

    echo("\n".join(registry_show_lines(mesh, project, version)))


def registry_diff(
    mesh: Mesh, project: str, from_version: str | None, to_version: str | None, echo: Echo = print
) -> None:
    from mesh.ui.report import registry_diff_lines

    echo("\n".join(registry_diff_lines(mesh, project, from_version, to_version)))


def registry_rollback(
    mesh: Mesh,
    project: str,
    to: str,
    reason: str | None,
    allow_breaking: bool,
    echo: Echo = print,
) -> None:
    from mesh.core.text import plural
    from mesh.interface.versions import rollback_project

    result = rollback_project(mesh, project, to, reason, allow_breaking)
    where = f"{result.project}/{result.env} in {result.registry}"
    if result.status == "unchanged":
        echo(f"{where}: latest {result.version} already holds what {to} holds; nothing published")
    else:
        echo(
            f"{where}: rolled back to {to} as {result.version} "
            f"({plural(result.public_models, 'public node')}), previous {result.previous or 'none'}"
        )


def registry_consumers(mesh: Mesh, project: str, echo: Echo = print) -> None:
    from mesh.ui.report import consumers_lines

    echo("\n".join(consumers_lines(mesh, project)))


def registry_fsck(mesh: Mesh, project: str, repair: bool, echo: Echo = print) -> None:
    """Print what fsck found (and repaired); raise CheckFailedError when problems remain."""
    from mesh.interface.retention import fsck_project

    result = fsck_project(mesh, project, repair)
    echo("\n".join(result.lines()))
    if not result.ok:
        raise result.error()


def keep_count(value: str) -> int:
    """--keep: a whole number of versions."""
    if not str(value).strip().isdigit():
        raise ConfigError(f"--keep takes a whole number of versions, got {value!r}")
    return int(value)


def registry_prune(mesh: Mesh, project: str, keep: int, dry_run: bool, echo: Echo = print) -> None:
    from mesh.interface.retention import prune_project

    echo("\n".join(prune_project(mesh, project, keep, dry_run).lines()))


def registry_keygen(echo: Echo = print) -> None:
    """Print a new signing key pair: the private key for MESH_SIGNING_KEY, the public one for mesh.yml."""
    from mesh.registry.signing import SIGNING_KEY_ENV, generate_key

    private, public = generate_key()
    echo(f"{SIGNING_KEY_ENV}={private}")
    echo("# keep the line above secret (the producer's CI secret); give consumers the key below:")
    echo(f"#   projects: <producer>: signing: keys: [{public}]")
    echo(public)
