from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from mesh.core.errors import ConfigError, InvalidNameError
from mesh.project.config import MeshConfig, load_mesh, read_upstreams, validation_message

MESH_YML = """
version: 1
projects:
  core: {path: core}
  marketing: {path: marketing, upstreams_via: loom}
  finance: {path: finance}
targets:
  local: {registry: "file://reg", env: local}
  prod: {registry: "${REG_URL:-s3://bucket/prefix}", env: prod, upstream_env: {core: prod}}
"""


def make_mesh(root: Path, text: str = MESH_YML, deps: dict[str, list[str]] | None = None) -> Path:
    (root / "mesh.yml").write_text(text)
    deps = {"core": [], "marketing": ["core"], "finance": ["core", "marketing"]} if deps is None else deps
    for name, ups in deps.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "dbt_project.yml").write_text(f"name: {name}\n")
        if ups:
            body = "projects:\n" + "".join(f"  - name: {u}\n" for u in ups)
            (root / name / "dependencies.yml").write_text(body)
    return root


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("MESH_TARGET", "MESH_REGISTRY", "MESH_ENV", "REG_URL"):
        monkeypatch.delenv(var, raising=False)


def test_loads_projects_upstreams_and_build_order(tmp_path: Path) -> None:
    mesh = load_mesh(make_mesh(tmp_path))
    assert mesh.target_name == "local" and mesh.env == "local"
    assert mesh.project("finance").upstreams == ("core", "marketing")
    assert mesh.build_order() == ["core", "marketing", "finance"]
    assert mesh.consumers_of("core") == ["marketing", "finance"]
    assert mesh.registry.url == f"file://{tmp_path / 'reg'}"


def test_variable_expansion_default_and_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_mesh(tmp_path)
    assert load_mesh(tmp_path, "prod").target.registry == "s3://bucket/prefix"
    monkeypatch.setenv("REG_URL", "s3://other/p")
    assert load_mesh(tmp_path, "prod").target.registry == "s3://other/p"
    monkeypatch.setenv("MESH_REGISTRY", "s3://forced/x")
    monkeypatch.setenv("MESH_ENV", "staging")
    mesh = load_mesh(tmp_path, "prod")
    assert (mesh.target.registry, mesh.env) == ("s3://forced/x", "staging")
    assert mesh.upstream_env("core") == "prod" and mesh.upstream_env("marketing") == "staging"


def test_mesh_target_env_picks_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_mesh(tmp_path)
    monkeypatch.setenv("MESH_TARGET", "prod")
    assert load_mesh(tmp_path).target_name == "prod"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version: 1\nprojects: {}\ntargets: {}\n", "at least one project"),
        ("version: 2\nprojects: {a: {path: a}}\ntargets: {}\n", "version"),
        ("- just\n- a list\n", "expected a mapping"),
        ("version: 1\nprojects: {a: {path: a, colour: red}}\ntargets: {}\n", "unknown key 'colour'"),
        ("version: 1\nprojects: [\n", "mesh.yml:3:1: not valid YAML"),
        ("version: 1\nprojects: {a: {path: a}}\ntargets: {local: {registry: '${NOPE}', env: local}}\n", "NOPE is not set"),
        ("version: 1\nprojects: {'A B': {path: a}}\ntargets: {}\n", "invalid project name"),
        ("version: 1\nprojects: {a: {path: a}}\ntargets: {local: {registry: 'file://r', env: latest}}\n", "reserved"),
    ],
)
def test_bad_mesh_yml_is_one_line_error(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "mesh.yml").write_text(text)
    with pytest.raises((ConfigError, InvalidNameError)) as info:
        load_mesh(tmp_path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_target_and_project(tmp_path: Path) -> None:
    make_mesh(tmp_path)
    with pytest.raises(ConfigError, match="unknown target 'qa'"):
        load_mesh(tmp_path, "qa")
    with pytest.raises(ConfigError, match="unknown project 'nope'"):
        load_mesh(tmp_path).project("nope")


def test_cycle_and_undefined_upstream(tmp_path: Path) -> None:
    make_mesh(tmp_path, deps={"core": ["finance"], "marketing": ["core"], "finance": ["marketing"]})
    with pytest.raises(ConfigError, match="dependency cycle"):
        load_mesh(tmp_path).build_order()
    # A name no project of the mesh has: ignored, as dbt ignores it (another platform's names)...
    make_mesh(tmp_path, deps={"core": [], "marketing": ["ghost", "core"], "finance": []})
    marketing = load_mesh(tmp_path).project("marketing")
    assert marketing.upstreams == ("core",) and marketing.ignored_upstreams == ("ghost",)
    # ...unless the code reads it.
    (tmp_path / "marketing/models").mkdir()
    (tmp_path / "marketing/models/m.sql").write_text("select * from {{ ref('ghost', 'orders') }}\n")
    with pytest.raises(ConfigError, match=r"'ghost', which mesh\.yml does not define, and marketing's code reads it"):
        load_mesh(tmp_path).project("marketing")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("projects: {name: core}\n", "must be a list"),
        ("projects:\n  - core\n", "needs `name: <project>`"),
        ("projects:\n  - name: core\n  - name: core\n", "listed twice"),
        ("projects:\n  - name: ../x\n", "invalid project name"),
        ("projects: [\n", "not valid YAML"),
        ("[1, 2]\n", "expected a mapping"),
    ],
)
def test_bad_dependencies_yml(tmp_path: Path, body: str, message: str) -> None:
    (tmp_path / "dependencies.yml").write_text(body)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        read_upstreams(tmp_path)


def test_missing_mesh_yml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_mesh(tmp_path)


# --- where the problem is, and what was probably meant --------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # YAML syntax: file, line and column of ruamel's problem mark (1-based).
        ("version: 1\nprojects: [\n", "mesh.yml:3:1: not valid YAML: expected the node content"),
        ("version: 1\nprojects:\n\tcore: {path: core}\n", "mesh.yml:3:1: not valid YAML: found character '\\t'"),
        ("version: 1\nversion: 1\n", "mesh.yml:2:1: not valid YAML: found duplicate key \"version\""),
        ("version: 1\nprojects: {a: 'open\n", "mesh.yml:3:1: not valid YAML: found unexpected end of stream"),
        ("version: 1\nname: \x01\n", "mesh.yml:2:7: not valid YAML: unacceptable character #x0001"),
        # Unknown keys: the key path, its position and the closest valid key.
        (
            "version: 1\nprojects:\n  a: {path: a}\ntargets:\n  local: {registry: r, env: local}\nprojcts: {}\n",
            "mesh.yml:6:1: unknown key 'projcts' at the top level; did you mean 'projects'?",
        ),
        (
            "version: 1\nprojects:\n  a:\n    path: a\n    sync_scop: all\ntargets: {}\n",
            "mesh.yml:5:5: unknown key 'sync_scop' in projects.a; did you mean 'sync_scope'?",
        ),
        (
            "version: 1\nprojects:\n  a: {path: a}\ntargets:\n  local:\n    registry: r\n    env: local\n    wapp: false\n",
            "mesh.yml:8:5: unknown key 'wapp' in targets.local; did you mean 'wap'?",
        ),
        # Nothing close: the valid keys instead.
        (
            "version: 1\nprojects:\n  a: {path: a, colour: red}\ntargets: {}\n",
            "mesh.yml:3:16: unknown key 'colour' in projects.a (valid keys: path, upstreams_via,",
        ),
        # A misspelt required key is one problem, not also "missing path".
        ("version: 1\nprojects:\n  a: {pth: a}\ntargets: {}\n", "did you mean 'path'?"),
        # Other problems: key path and position; a union's members said together.
        (
            "version: 1\nprojects:\n  a: {path: a, upstreams_via: lom}\ntargets: {}\n",
            "mesh.yml:3:16: projects.a.upstreams_via: Input should be 'sources' or 'loom'; did you mean 'loom'?",
        ),
        (
            "version: 1\nprojects: {a: {path: a}}\ntargets:\n  local: {registry: r, env: local, upstream_env: 5}\n",
            "mesh.yml:4:36: targets.local.upstream_env: Input should be a valid string or a valid dictionary",
        ),
        (
            "version: 1\nprojects: {a: {path: a}}\ntargets:\n  local: {env: local}\n",
            "mesh.yml:4:3: missing required key 'registry' in targets.local",
        ),
        ("projects: {a: {path: a}}\ntargets: {}\n", "mesh.yml: missing required key 'version' at the top level"),
        (
            "version: 1\nprojects: {a: {path: a, colour: red, flavour: x}}\ntargets: {}\n",
            "(and 1 more problem)",
        ),
    ],
)
def test_errors_name_line_column_and_closest_key(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "mesh.yml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_mesh(tmp_path)
    assert message in str(info.value), str(info.value)
    assert str(info.value).startswith(str(tmp_path / "mesh.yml"))
    assert "\n" not in str(info.value)


def test_a_pydantic_error_without_a_match_names_no_suggestion(tmp_path: Path) -> None:
    (tmp_path / "mesh.yml").write_text("version: 1\nprojects:\n  a: {path: a, zzzz: 1}\ntargets: {}\n")
    with pytest.raises(ConfigError) as info:
        load_mesh(tmp_path)
    assert "did you mean" not in str(info.value) and "valid keys: path," in str(info.value)


def test_dependencies_yml_errors_name_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "dependencies.yml").write_text("projects:\n  - name: core\n  -: [\n")
    with pytest.raises(ConfigError) as info:
        read_upstreams(tmp_path)
    assert f"{tmp_path / 'dependencies.yml'}:3:3: not valid YAML: expected <block end>" in str(info.value)


def test_validation_message_reads_fields_from_the_model(tmp_path: Path) -> None:
    """The suggestion comes from the model's own fields (so a field added to a model is offered
    without touching the error path), and the position from the file pydantic's input came from."""
    path = tmp_path / "mesh.yml"
    path.write_text("version: 1\nprojects:\n  a: {path: a, loom_read: synced}\ntargets: {}\n")
    raw = {"version": 1, "projects": {"a": {"path": "a", "loom_read": "synced"}}, "targets": {}}
    with pytest.raises(ValidationError) as info:
        MeshConfig.model_validate(raw)
    message = validation_message(path, info.value, MeshConfig)
    assert message == f"{path}:3:16: unknown key 'loom_read' in projects.a; did you mean 'loom_reads'?"


def test_an_unknown_project_names_the_closest_one(tmp_path: Path) -> None:
    from tests.conftest import copy_template

    mesh = load_mesh(copy_template(tmp_path / "mesh"), "local")
    with pytest.raises(ConfigError, match=r"unknown project 'dbt_dwn'; did you mean 'dbt_down'\? \(mesh.yml defines dbt_down, dbt_down_loom, dbt_up\)"):
        mesh.project("dbt_dwn")
