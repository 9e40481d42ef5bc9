from __future__ import annotations

from pathlib import Path

import pytest

from mesh.config import load_mesh, read_upstreams
from mesh.errors import ConfigError, InvalidNameError

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
        ("version: 1\nprojects: {a: {path: a, colour: red}}\ntargets: {}\n", "colour"),
        ("version: 1\nprojects: [\n", "not valid YAML"),
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
    make_mesh(tmp_path, deps={"core": [], "marketing": ["ghost"], "finance": []})
    with pytest.raises(ConfigError, match=r"'ghost', which mesh\.yml does not define"):
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
