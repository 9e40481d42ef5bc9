"""The profile a project joins with: which outputs its own profiles.yml defines, the DuckDB and
Snowflake outputs the mesh writes for the targets it lacks (named after the project), the upstreams'
read-only attachments, and the profiles other projects already use."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from mesh.core.errors import ConfigError
from mesh.core.yamlfile import _block, _q, yaml_add, yaml_replace
from mesh.project.config import (
    TargetConfig,
)
from mesh.project.dbt_project import DbtProject
from mesh.project.profiles import (
    PROFILES_FILE,
    dbt_profile_name,
    read_profiles,
    shown,
)
from mesh.warehouse.outputs import OWN_FILE, UPSTREAM_FILE


def output_kinds(targets: Mapping[str, TargetConfig], profiles: Mapping[str, Any]) -> dict[str, str]:
    """Each dbt output a target builds with, and its adapter: the type the mesh's existing profiles
    give that output, else Snowflake for a target whose registry is S3, else DuckDB."""
    kinds: dict[str, str] = {}
    for name, target in targets.items():
        output = target.dbt_target or name
        if output in kinds:
            continue
        kind = None
        for profile in profiles.values():
            outputs = profile.get("outputs") if isinstance(profile, dict) else None
            spec = outputs.get(output) if isinstance(outputs, dict) else None
            if isinstance(spec, dict) and isinstance(spec.get("type"), str):
                kind = spec["type"].lower()
                break
        kind = kind or ("snowflake" if target.registry.startswith("s3://") else "duckdb")
        if kind not in ("duckdb", "snowflake"):
            raise ConfigError(
                f"target {name} builds with dbt output {output!r} of type {kind}: add can write "
                "DuckDB and Snowflake profiles only; pass --profiles-dir with your own profile"
            )
        kinds[output] = kind
    return kinds


def duckdb_output(project: str, upstreams: Sequence[str], schema: str = "main") -> CommentedMap:
    out = _block()
    out["type"] = "duckdb"
    out["path"] = _q(OWN_FILE % project)
    out["schema"] = schema
    out["threads"] = 4
    if upstreams:
        out["attach"] = CommentedSeq([attach_entry(u) for u in upstreams])
    return out


def attach_entry(upstream: str) -> CommentedMap:
    entry = _block()
    entry["path"] = _q(UPSTREAM_FILE % upstream)
    entry["alias"] = upstream
    entry["read_only"] = True
    return entry


def snowflake_names(project: str, output: str = "prod") -> dict[str, str]:
    upper = project.upper()
    return {
        "database": f"{upper}_{output.upper()}",
        "warehouse": f"{upper}_WH",
        "role": f"{upper}_ROLE",
    }


def snowflake_output(project: str, output: str) -> CommentedMap:
    """A Snowflake output like the mesh's own: every credential from the environment, key-pair
    auth, `<PROJECT>_SNOWFLAKE_*` overrides, optional host/port/protocol for an emulator."""
    env = project.upper()
    names = snowflake_names(project, output)
    out = _block()
    out["type"] = "snowflake"
    out["account"] = _q("{{ env_var('SNOWFLAKE_ACCOUNT') }}")
    out["user"] = _q(f"{{{{ env_var('{env}_SNOWFLAKE_USER', env_var('SNOWFLAKE_USER')) }}}}")
    out["private_key_path"] = _q(
        f"{{{{ env_var('{env}_SNOWFLAKE_PRIVATE_KEY_PATH', env_var('SNOWFLAKE_PRIVATE_KEY_PATH')) }}}}"
    )
    out["private_key_passphrase"] = _q("{{ env_var('SNOWFLAKE_PRIVATE_KEY_PASSPHRASE', '') }}")
    for key in ("role", "warehouse", "database"):
        out[key] = _q(f"{{{{ env_var('{env}_SNOWFLAKE_{key.upper()}', '{names[key]}') }}}}")
    out["schema"] = _q(f"{{{{ env_var('{env}_SNOWFLAKE_SCHEMA', 'MARTS') }}}}")
    out["host"] = _q("{{ env_var('SNOWFLAKE_HOST', '') }}")
    out["port"] = _q("{{ env_var('SNOWFLAKE_PORT', '443') | as_number }}")
    out["protocol"] = _q("{{ env_var('SNOWFLAKE_PROTOCOL', 'https') }}")
    out["threads"] = 4
    return out


def _defines(folder: Path, profile: str) -> bool:
    if not (folder / PROFILES_FILE).is_file():
        return False
    return profile in read_profiles(folder)


def _own_profiles(
    info: DbtProject,
    root: Path,
    profiles_dir: str | None,
    environ: Mapping[str, str],
    notes: list[str],
) -> Path | None:
    """The project's own profiles folder, if it keeps one; None when the mesh writes its profile."""
    if profiles_dir is not None:
        folder = Path(profiles_dir).expanduser().resolve()
        if not (folder / PROFILES_FILE).is_file():
            raise ConfigError(f"--profiles-dir {profiles_dir}: no {PROFILES_FILE} in {folder}")
        if not _defines(folder, info.profile):
            raise ConfigError(
                f"{folder / PROFILES_FILE} has no profile {info.profile!r} (the `profile:` of "
                f"{info.name}/dbt_project.yml): add it, or leave out --profiles-dir and let the "
                "mesh write one"
            )
        return folder
    if _defines(info.dir, info.profile):
        notes.append(
            f"{shown(info.dir / PROFILES_FILE, root)} defines profile {info.profile}: kept for the "
            "targets it defines (dbt's convention); the mesh adds outputs for those it lacks"
        )
        return info.dir
    env_dir = environ.get("DBT_PROFILES_DIR")
    if env_dir and _defines(Path(env_dir).expanduser().resolve(), info.profile):
        folder = Path(env_dir).expanduser().resolve()
        if folder.is_relative_to(root):
            notes.append(f"DBT_PROFILES_DIR ({shown(folder, root)}) defines profile {info.profile}: used")
            return folder
        notes.append(
            f"DBT_PROFILES_DIR defines profile {info.profile} outside the mesh folder: not used "
            "(mesh.yml names no folder outside the repository); pass --profiles-dir to use one"
        )
    return None


def _registered_profiles(
    root: Path, name: str, settings: Mapping[str, Any], profiles_dir: str | None
) -> Path | None:
    """A registered project's profiles folder (mesh.yml decides; add does not move it)."""
    registered = settings.get("profiles_dir")
    own = (root / str(registered)).resolve() if registered else None
    if profiles_dir is not None and Path(profiles_dir).expanduser().resolve() != own:
        raise ConfigError(
            f"{name} is already in the mesh: its profiles folder is set by mesh.yml "
            "(`profiles_dir:`), change it there"
        )
    return own


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    return copy.copy(node)


def own_schema(folder: Path, profile: str) -> str | None:
    """The schema the project's own profile builds into by default (its default target's output),
    when it is written literally: hand-written sources often name it (`schema: silver`), so the
    outputs the mesh adds keep it."""
    spec = read_profiles(folder).get(profile)
    if not isinstance(spec, dict):
        return None
    outputs = spec.get("outputs")
    if not isinstance(outputs, dict) or not outputs:
        return None
    default = spec.get("target") if isinstance(spec.get("target"), str) else next(iter(outputs))
    output = outputs.get(default)
    schema = output.get("schema") if isinstance(output, dict) else None
    if isinstance(schema, str) and schema and "{" not in schema and schema.replace("_", "").isalnum():
        return schema
    return None


def _outputs_of(folder: Path, profile: str) -> set[str]:
    spec = read_profiles(folder).get(profile)
    outputs = spec.get("outputs") if isinstance(spec, dict) else None
    return set(outputs) if isinstance(outputs, dict) else set()


def _profile_users(projects: Mapping[str, Any], root: Path, exclude: str) -> dict[str, str]:
    """Profile name -> the mesh project building with it from the mesh's profiles folder."""
    users: dict[str, str] = {}
    for other, settings in projects.items():
        if other == exclude or not isinstance(settings, dict) or settings.get("profiles_dir"):
            continue
        other_dir = (root / str(settings.get("path"))).resolve()
        if (other_dir / "dbt_project.yml").is_file():
            users.setdefault(dbt_profile_name(other_dir), other)
    return users


def _add_attaches(
    profiles: CommentedMap, profile: str, kinds: Mapping[str, str], upstreams: Sequence[str], name: str
) -> list[str]:
    """ATTACH each upstream a registered project's DuckDB outputs do not attach yet."""
    spec = profiles.get(profile)
    if not isinstance(spec, dict) or not isinstance(spec.get("outputs"), dict):
        raise ConfigError(
            f"project {name} builds with profile {profile!r}, which profiles/profiles.yml does not "
            "define: add it there"
        )
    reasons = []
    for output, kind in kinds.items():
        out = spec["outputs"].get(output)
        if kind != "duckdb" or not isinstance(out, CommentedMap):
            continue
        attaches = out.get("attach")
        entries = [a for a in attaches or [] if isinstance(a, dict)]
        have = {str(a.get("alias") or Path(str(a.get("path", ""))).stem) for a in entries}
        missing = [u for u in upstreams if u not in have]
        if not missing:
            continue
        if isinstance(attaches, CommentedSeq) and len(attaches):
            for upstream in missing:
                yaml_add(attaches, None, attach_entry(upstream))
        else:
            seq = CommentedSeq([attach_entry(u) for u in missing])
            if "attach" in out:  # `attach:` with nothing under it
                yaml_replace(out, "attach", seq)
            else:
                yaml_add(out, "attach", seq)
        reasons.append(f"profile {profile}, output {output}: attach {', '.join(missing)} read-only")
    return reasons
