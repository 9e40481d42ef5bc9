"""Joining an existing dbt project to the mesh (`mesh add`, `invoke project.add`), and the profile
check every build runs (no two projects write to one database).

Refusals go through the real console scripts: exit 2, one line on stderr, and every file of the mesh
byte-for-byte unchanged. No dbt runs here except where a test proves dbt did not run.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from ruamel.yaml import YAML

from mesh.core.errors import ConfigError
from mesh.project.config import load_mesh
from mesh.project.profiles import check_profiles, profile_source
from mesh.run.pipeline import build_project, run_mesh
from mesh.ui.onboard import add_project, plan_add
from mesh.warehouse.outputs import OWN_FILE, UPSTREAM_FILE
from tests.conftest import REPO, copy_template

BIN = Path(sys.executable).parent


def load(path: Path) -> dict:
    data = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def only_insertions(before: str, after: str) -> list[str]:
    """The lines `after` adds to `before`; fails if any line of `before` changed or went away."""
    matcher = difflib.SequenceMatcher(a=before.splitlines(), b=after.splitlines(), autojunk=False)
    added = []
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        assert op in ("equal", "insert"), (op, before.splitlines()[a0:a1], after.splitlines()[b0:b1])
        if op == "insert":
            added += after.splitlines()[b0:b1]
    return added


def write_project(
    folder: Path,
    name: str,
    profile: str | None = None,
    public: bool = False,
    files: dict[str, str] | None = None,
) -> Path:
    """A small dbt project as another team writes it."""
    folder.mkdir(parents=True)
    (folder / "dbt_project.yml").write_text(
        f"name: '{name}'\nversion: '1.0.0'\nprofile: '{profile or name}'\n\nmodel-paths: [\"models\"]\n"
    )
    (folder / "models").mkdir()
    (folder / "models" / "one.sql").write_text("select 1 as id\n")
    if public:
        (folder / "models" / "one.yml").write_text(
            "version: 2\nmodels:\n  - name: one\n    config:\n      access: public\n"
        )
    for rel, text in (files or {}).items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    return folder


def mesh_cli(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "mesh"), "--root", str(root), "add", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


@pytest.fixture
def template(tmp_path: Path) -> Path:
    """The template mesh (mesh.yml, profiles, dbt_up, dbt_down, dbt_down_loom), never built."""
    return copy_template(tmp_path / "mesh")


# --- what add writes ----------------------------------------------------------------------------


def test_add_producer_keeps_every_line_and_follows_the_existing_profiles(template: Path) -> None:
    before_mesh = (template / "mesh.yml").read_text()
    before_profiles = (template / "profiles/profiles.yml").read_text()
    write_project(template / "teams/orders_core", "orders_core", profile="shop", public=True)

    plan = add_project(template, template / "teams/orders_core")

    added = only_insertions(before_mesh, (template / "mesh.yml").read_text())
    assert added == [
        "  orders_core:",
        "    path: teams/orders_core",
        "    orders_core: {database: ORDERS_CORE_PROD, warehouse: ORDERS_CORE_WH, "
        "role: ORDERS_CORE_ROLE}",
    ]
    assert any(line.startswith("  Note: public_schema of orders_core left unset") for line in plan.lines())
    mesh = load_mesh(template, "local")
    assert mesh.config.projects["orders_core"].path == "teams/orders_core"
    assert mesh.project("orders_core").upstreams == ()
    assert mesh.build_order()[-1] == "orders_core"

    profiles_after = (template / "profiles/profiles.yml").read_text()
    only_insertions(before_profiles, profiles_after)
    profiles = load(template / "profiles/profiles.yml")
    # named after the project, not after its `profile: shop`: dbt gets `--profile orders_core`
    assert "shop" not in profiles
    shop = profiles["orders_core"]
    assert shop["target"] == "local"
    assert shop["outputs"]["local"] == {
        "type": "duckdb",
        "path": OWN_FILE % "orders_core",
        "schema": "main",
        "threads": 4,
    }
    # prod exactly like the existing projects' prod outputs, with this project's variables
    theirs = profiles["dbt_up"]["outputs"]["prod"]
    assert shop["outputs"]["prod"] == {
        key: value.replace("DBT_UP", "ORDERS_CORE") if isinstance(value, str) else value
        for key, value in theirs.items()
    }
    assert (template / "teams/orders_core/.gitignore").read_text().splitlines() == [
        "# generated by the dbt mesh",
        "target/",
        "logs/",
        "dbt_packages/",
        ".mesh/",
        "models/_mesh_*.yml",
    ]
    assert not (template / "teams/orders_core/dependencies.yml").exists()
    assert plan.lines()[0].startswith("add orders_core (dbt project orders_core, profile shop")
    check_profiles(load_mesh(template, "local"))
    check_profiles(load_mesh(template, "prod"))


def test_add_consumer_attaches_upstreams_and_keeps_packages(template: Path) -> None:
    deps = "# what we install\npackages:\n  - local: ../utils  # our macros\n"
    project = write_project(
        template / "mart", "mart", profile="mart_dwh", files={"dependencies.yml": deps}
    )
    (project / ".gitignore").write_text("/target\nnotes.txt")

    add_project(template, project, ["dbt_up", "dbt_down"], via="loom")

    assert (project / "dependencies.yml").read_text() == (
        deps + "\nprojects:\n  - name: dbt_up\n  - name: dbt_down\n"
    )
    mesh = load_mesh(template, "local")
    assert mesh.config.projects["mart"].upstreams_via == "loom"
    assert mesh.project("mart").upstreams == ("dbt_up", "dbt_down")
    profiles = load(template / "profiles/profiles.yml")
    assert "mart_dwh" not in profiles
    local = profiles["mart"]["outputs"]["local"]
    assert local["attach"] == [
        {"path": UPSTREAM_FILE % "dbt_up", "alias": "dbt_up", "read_only": True},
        {"path": UPSTREAM_FILE % "dbt_down", "alias": "dbt_down", "read_only": True},
    ]
    ignore = (project / ".gitignore").read_text()
    assert ignore.startswith("/target\nnotes.txt\n\n# generated by the dbt mesh\n")
    assert "target/" not in ignore.splitlines()  # `/target` already covers it
    assert "dbt_loom.config.yml" not in ignore.splitlines()  # the mesh writes its own under .mesh/
    check_profiles(load_mesh(template, "local"))


def test_upstreams_declared_in_dependencies_yml_are_read_from_there(template: Path) -> None:
    deps = "projects:\n- name: dbt_up   # the core team\n"
    project = write_project(template / "ads", "ads", files={"dependencies.yml": deps})

    plan = add_project(template, project, via="sources")  # no code reads dbt_up yet: say how

    assert (project / "dependencies.yml").read_text() == deps  # nothing to add there
    local = load(template / "profiles/profiles.yml")["ads"]["outputs"]["local"]
    assert [a["alias"] for a in local["attach"]] == ["dbt_up"]
    assert load_mesh(template, "local").config.projects["ads"].upstreams_via == "sources"
    assert any("reading dbt_up through generated dbt sources" in line for line in plan.lines())


def test_new_dependencies_yml_and_added_project_in_a_mesh_without_projects(tmp_path: Path) -> None:
    root = tmp_path / "mesh"
    shutil.copytree(REPO / "tests/fixtures/byo/skeleton", root)
    before = (root / "mesh.yml").read_text()
    core = write_project(root / "core", "core", public=True)
    app = write_project(root / "app", "app")

    add_project(root, core)
    add_project(root, app, ["core"], via="sources")

    after = (root / "mesh.yml").read_text()
    only_insertions(before, after)
    assert "\nprojects:\n  core:\n    path: core\n  app:\n    path: app\n    upstreams_via: sources\n\ntargets:" in after
    assert after.endswith(
        "\n\nsnowflake:\n  projects:\n"
        "    core: {database: CORE_PROD, warehouse: CORE_WH, role: CORE_ROLE}\n"
        "    app: {database: APP_PROD, warehouse: APP_WH, role: APP_ROLE}\n"
    )
    assert (app / "dependencies.yml").read_text().endswith("projects:\n  - name: core\n")
    profiles = load(root / "profiles/profiles.yml")
    assert set(profiles) == {"core", "app"}
    assert set(profiles["app"]["outputs"]) == {"local", "prod"}
    mesh = load_mesh(root, "local")
    assert mesh.build_order() == ["core", "app"]
    check_profiles(mesh)


def _snowflake_build(project: Path, schemas: dict[str, str]) -> None:
    """A target/manifest.json as a Snowflake build of the project leaves it: model -> schema."""
    from tests import factories

    doc = factories.manifest(
        project.name,
        [factories.model(project.name, name, schema=schema) for name, schema in schemas.items()]
        + [factories.model(project.name, "stg_hidden", access="protected", schema="RAW_STAGE")],
    )
    doc["metadata"]["adapter_type"] = "snowflake"
    (project / "target").mkdir()
    (project / "target/manifest.json").write_bytes(orjson.dumps(doc))


def test_public_schema_comes_from_where_a_snowflake_build_put_the_public_nodes(template: Path) -> None:
    one = write_project(template / "one", "one", public=True)
    _snowflake_build(one, {"orders": "staging", "customers": "staging"})
    several = write_project(template / "several", "several", public=True)
    _snowflake_build(several, {"orders": "marts", "revenue": "finance"})

    for project in (one, several):
        plan = add_project(template, project)
        assert not any("public_schema" in line and "Note" in line for line in plan.lines())

    ids = load(template / "mesh.yml")["snowflake"]["projects"]
    assert ids["one"]["public_schema"] == "STAGING"  # not a guessed MARTS; protected nodes left out
    assert ids["several"]["public_schema"] == ["FINANCE", "MARTS"]


def test_public_schema_is_left_unset_without_a_snowflake_build(template: Path) -> None:
    local = write_project(template / "local_only", "local_only", public=True)
    doc = {"metadata": {"adapter_type": "duckdb"}, "nodes": {}}
    (local / "target").mkdir()
    (local / "target/manifest.json").write_bytes(orjson.dumps(doc))

    plan = add_project(template, local)

    assert (
        "  Note: public_schema of local_only left unset: no Snowflake build of it to read where its "
        "public nodes live; consumers' grants follow each published relation (set "
        "snowflake.projects.local_only.public_schema in mesh.yml to keep them to one schema)"
    ) in plan.lines()
    assert "public_schema" not in load(template / "mesh.yml")["snowflake"]["projects"]["local_only"]


def test_dry_run_prints_sentences_and_writes_nothing(template: Path) -> None:
    write_project(template / "mart", "mart", profile="mart_dwh")
    before = snapshot(template)

    run = mesh_cli(template, "mart", "--upstream", "dbt_up", "--via", "sources", "--dry-run")

    assert run.returncode == 0, run.stderr
    assert snapshot(template) == before
    lines = run.stdout.splitlines()
    assert lines[0] == (
        "add mart (dbt project mart, profile mart_dwh: 1 model, 0 seeds): would write 4 files "
        "(dry run: nothing written)"
    )
    assert "  Create mart/dependencies.yml: declare upstream dbt_up (`projects:`, dbt's mesh dependencies)" in lines
    assert any(
        line.startswith("  Update profiles/profiles.yml: add profile mart: outputs local "
                        "(DuckDB warehouse/mart.duckdb, attaching dbt_up read-only)")
        for line in lines
    )
    assert "  Update mesh.yml: register project mart at mart, reading dbt_up through generated dbt sources" in lines
    # without --root: the mesh is found from the working folder, as for every other command
    here = subprocess.run(
        [str(BIN / "mesh"), "add", ".", "--upstream", "dbt_up", "--via", "sources", "--dry-run"],
        cwd=template / "mart", capture_output=True, text=True, check=False, timeout=120,
    )
    assert here.returncode == 0, here.stderr
    assert here.stdout == run.stdout
    assert snapshot(template) == before


# --- refusals: exit 2, one line, nothing written ----------------------------------------------------

Setup = Callable[[Path], list[str]]


def _copy_with_name(root: Path, src: str, dest: str, name: str) -> None:
    shutil.copytree(root / src, root / dest)
    text = (root / dest / "dbt_project.yml").read_text()
    (root / dest / "dbt_project.yml").write_text(text.replace(f"name: {src}", f"name: {name}", 1))


def _name_taken(root: Path) -> list[str]:
    shutil.copytree(root / "dbt_down", root / "copies/dbt_down")
    return ["copies/dbt_down"]


def _profile_named_after_it_in_use(root: Path) -> list[str]:
    """A profile written before profiles were named after projects (keyed by the dbt `profile:`)
    that a registered project still builds with: a newcomer named like it must not take it."""
    _copy_with_name(root, "dbt_up", "legacy", "legacy")
    text = (root / "legacy/dbt_project.yml").read_text()
    (root / "legacy/dbt_project.yml").write_text(text.replace("profile: dbt_up", "profile: newcomer", 1))
    profiles = (root / "profiles/profiles.yml").read_text()
    own = profiles[profiles.index("dbt_up:\n"):profiles.index("\ndbt_down:\n")]
    legacy = own.replace("dbt_up:\n", "newcomer:\n", 1).replace("dbt_up", "legacy").replace("DBT_UP", "LEGACY")
    (root / "profiles/profiles.yml").write_text(profiles + "\n" + legacy)
    text = (root / "mesh.yml").read_text()
    (root / "mesh.yml").write_text(text.replace("\ntargets:", "  legacy:\n    path: legacy\n\ntargets:", 1))
    check_profiles(load_mesh(root, "local"))  # legacy builds with profile newcomer
    write_project(root / "newcomer", "newcomer")
    return ["newcomer"]


def _warehouse_file_taken(root: Path) -> list[str]:
    own = (
        "thief:\n  target: local\n  outputs:\n    local:\n      type: duckdb\n"
        "      path: \"{{ env_var('MESH_WAREHOUSE_DIR', 'warehouse') }}/dbt_up.duckdb\"\n"
    )
    write_project(root / "thief", "thief", files={"profiles.yml": own})
    return ["thief"]


def _no_dbt_project(root: Path) -> list[str]:
    (root / "empty").mkdir()
    return ["empty"]


def _upstream_unknown(root: Path) -> list[str]:
    write_project(root / "mart", "mart")
    return ["mart", "--upstream", "nope"]


def _upstream_unknown_in_dependencies_and_read(root: Path) -> list[str]:
    write_project(
        root / "mart",
        "mart",
        files={
            "dependencies.yml": "projects:\n  - name: ghost\n",
            "models/from_ghost.sql": "select * from {{ ref('ghost', 'orders') }}\n",
        },
    )
    return ["mart"]


def _invalid_name(root: Path) -> list[str]:
    write_project(root / "shop", "Shop")
    return ["shop"]


def _reserved_name(root: Path) -> list[str]:
    write_project(root / "latest", "latest")
    return ["latest"]


def _bad_via(root: Path) -> list[str]:
    write_project(root / "mart", "mart")
    return ["mart", "--upstream", "dbt_up", "--via", "http"]


def _profiles_dir_without_profile(root: Path) -> list[str]:
    write_project(root / "mart", "mart", files={"conf/profiles.yml": "other:\n  outputs: {}\n"})
    return ["mart", "--profiles-dir", "mart/conf"]


def _nothing_to_add(root: Path) -> list[str]:
    return ["dbt_down"]


def _folder_under_other_name(root: Path) -> list[str]:
    text = (root / "dbt_down/dbt_project.yml").read_text()
    (root / "dbt_down/dbt_project.yml").write_text(text.replace("name: dbt_down", "name: renamed", 1))
    return ["dbt_down"]


def _cycle(root: Path) -> list[str]:
    return ["dbt_up", "--upstream", "dbt_down", "--via", "sources"]


def _via_change(root: Path) -> list[str]:
    return ["dbt_down", "--upstream", "dbt_up", "--via", "loom"]


def _self_upstream(root: Path) -> list[str]:
    return ["dbt_down", "--upstream", "dbt_down"]


def _not_a_folder(root: Path) -> list[str]:
    return ["missing/place"]


def _second_database_under_audited_snowflake(root: Path) -> list[str]:
    write_project(root / "layered", "layered", public=True)
    spec = root / "layered/dbt_project.yml"
    spec.write_text(spec.read_text() + "models:\n  layered:\n    +database: layered_gold\n")
    return ["layered"]


REFUSALS: dict[str, tuple[Setup, str]] = {
    "name_taken": (_name_taken, "a project named dbt_down is already in the mesh (path dbt_down)"),
    "profile_named_after_it_in_use": (_profile_named_after_it_in_use, "profile 'newcomer' of profiles/profiles.yml is the one project legacy builds with: the mesh names each project's profile after the project; rename the dbt project in newcomer/dbt_project.yml"),
    "warehouse_file_taken": (_warehouse_file_taken, "projects dbt_up (profile 'dbt_up', target local) and thief (profile 'thief', target local) both build into the DuckDB file warehouse/dbt_up.duckdb"),
    "no_dbt_project": (_no_dbt_project, "no dbt_project.yml in"),
    "not_a_folder": (_not_a_folder, "missing/place is not a folder"),
    "upstream_unknown": (_upstream_unknown, "upstream 'nope' is not in the mesh: add `nope: {}` under `projects:` in mesh.yml"),
    "upstream_unknown_in_dependencies_and_read": (_upstream_unknown_in_dependencies_and_read, "mart reads ghost (mart/models/from_ghost.sql: ref('ghost', 'orders')), which is not in the mesh"),
    "invalid_name": (_invalid_name, "invalid project name 'Shop'"),
    "reserved_name": (_reserved_name, "invalid project name 'latest': it is reserved"),
    "bad_via": (_bad_via, "unknown --via 'http'"),
    "profiles_dir_without_profile": (_profiles_dir_without_profile, "has no profile 'mart'"),
    "nothing_to_add": (_nothing_to_add, "dbt_down is already in the mesh (path dbt_down) with the upstreams it declares: nothing to add"),
    "folder_under_other_name": (_folder_under_other_name, "dbt_down is already in the mesh as project dbt_down"),
    "cycle": (_cycle, "would make a dependency cycle: dbt_up -> dbt_down -> dbt_up"),
    "via_change": (_via_change, "dbt_down already reads its upstreams through sources"),
    "self_upstream": (_self_upstream, "dbt_down cannot be its own upstream"),
    "second_database_under_audited_snowflake": (_second_database_under_audited_snowflake, "layered cannot build on target prod: its configs write layered_gold besides its own database, and write-audit-publish on Snowflake clones and swaps one database per project"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refused_with_one_line_exit_2_and_nothing_written(template: Path, case: str) -> None:
    setup, fragment = REFUSALS[case]
    args = setup(template)
    before = snapshot(template)

    run = mesh_cli(template, *args)

    assert run.returncode == 2, (run.stdout, run.stderr)
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("error: "), run.stderr
    assert fragment in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stdout == ""
    assert snapshot(template) == before


# --- profiles named after projects: what the removed refusals used to stop ----------------------


def test_a_copy_keeping_anothers_profile_name_joins_with_a_profile_of_its_own(template: Path) -> None:
    _copy_with_name(template, "dbt_down_loom", "copycat", "copycat")  # keeps profile: dbt_down_loom
    before = load(template / "profiles/profiles.yml")

    add_project(template, template / "copycat")  # no flags: style and upstream read from its code

    profiles = load(template / "profiles/profiles.yml")
    assert profiles["dbt_down_loom"] == before["dbt_down_loom"]  # that team's profile untouched
    assert profiles["copycat"]["outputs"]["local"]["path"] == OWN_FILE % "copycat"
    assert "COPYCAT_PROD" in profiles["copycat"]["outputs"]["prod"]["database"]
    mesh = load_mesh(template, "local")
    assert mesh.config.projects["copycat"].upstreams_via == "loom"
    assert mesh.project("copycat").upstreams == ("dbt_up",)
    assert profile_source(mesh, "copycat").name == "copycat"
    assert profile_source(mesh, "dbt_down_loom").name == "dbt_down_loom"
    check_profiles(mesh)
    check_profiles(load_mesh(template, "prod"))


def test_two_projects_both_saying_profile_snowflake_get_separate_profiles(template: Path) -> None:
    dbt_project_before = {}
    for name in ("sales", "finance"):
        folder = write_project(template / name, name, profile="snowflake")
        dbt_project_before[name] = (folder / "dbt_project.yml").read_bytes()
        add_project(template, folder)

    profiles = load(template / "profiles/profiles.yml")
    assert "snowflake" not in profiles
    assert profiles["sales"]["outputs"]["local"]["path"] == OWN_FILE % "sales"
    assert profiles["finance"]["outputs"]["local"]["path"] == OWN_FILE % "finance"
    assert "SALES_PROD" in profiles["sales"]["outputs"]["prod"]["database"]
    assert "FINANCE_PROD" in profiles["finance"]["outputs"]["prod"]["database"]
    for name, text in dbt_project_before.items():
        assert (template / name / "dbt_project.yml").read_bytes() == text  # `profile:` not edited
    mesh = load_mesh(template, "local")
    assert [profile_source(mesh, n).name for n in ("sales", "finance")] == ["sales", "finance"]
    check_profiles(mesh)
    check_profiles(load_mesh(template, "prod"))


def test_a_leftover_profile_under_the_projects_name_is_replaced_with_a_note(template: Path) -> None:
    with (template / "profiles/profiles.yml").open("a") as handle:
        handle.write("\nnewcomer:\n  target: local\n  outputs:\n    local: {type: duckdb, path: x.duckdb}\n")
    write_project(template / "newcomer", "newcomer", profile="orphan")

    plan = add_project(template, template / "newcomer")

    assert "  Note: profiles/profiles.yml held a profile newcomer no project builds with: replaced" in plan.lines()
    newcomer = load(template / "profiles/profiles.yml")["newcomer"]
    assert set(newcomer["outputs"]) == {"local", "prod"}
    assert newcomer["outputs"]["local"]["path"] == OWN_FILE % "newcomer"
    check_profiles(load_mesh(template, "local"))


def test_a_dependencies_yml_name_that_is_no_mesh_project_and_no_code_reads_is_a_note(template: Path) -> None:
    deps = "projects:\n  - name: ghost   # another platform's workspace\n  - name: dbt_up\n"
    mart = write_project(
        template / "mart", "mart",
        files={"dependencies.yml": deps, "models/two.sql": "select * from {{ source('dbt_up', 'public_orders') }}\n"},
    )

    plan = add_project(template, mart)

    assert (
        "  Note: dependencies.yml names ghost, which is no project of the mesh and which no node of "
        "mart reads: ignored (dbt ignores it too)"
    ) in plan.lines()
    assert (mart / "dependencies.yml").read_text() == deps
    mesh = load_mesh(template, "local")
    assert mesh.config.projects["mart"].upstreams_via == "sources"
    assert (mesh.project("mart").upstreams, mesh.project("mart").ignored_upstreams) == (("dbt_up",), ("ghost",))
    assert "ghost" not in (template / "mesh.yml").read_text()
    assert [a["alias"] for a in load(template / "profiles/profiles.yml")["mart"]["outputs"]["local"]["attach"]] == ["dbt_up"]


def test_invoke_project_add_is_the_same_call(template: Path) -> None:
    shutil.copy2(REPO / "tasks.py", template / "tasks.py")
    shutil.copy2(REPO / "tasks_infra.py", template / "tasks_infra.py")
    write_project(template / "mart", "mart", profile="mart_dwh")
    invoke = [str(BIN / "invoke"), "-r", str(template), "project.add"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*invoke, *args], cwd=template, capture_output=True, text=True, check=False, timeout=120)

    before = snapshot(template)
    bad = run("mart", "--upstream", "dbt_up", "--upstream", "ghost")
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "error: upstream 'ghost' is not in the mesh: add it first (`invoke project.add <its folder>`), then mart"
    )
    assert snapshot(template) == before

    ok = run("mart", "--upstream", "dbt_up", "--upstream", "dbt_down", "--via", "loom")
    assert ok.returncode == 0, ok.stderr
    assert "reading dbt_up, dbt_down through dbt-loom refs" in ok.stdout
    assert ok.stdout.rstrip().endswith("next: `invoke mesh` builds, tests and publishes it with the rest of the mesh")
    assert load_mesh(template, "local").project("mart").upstreams == ("dbt_up", "dbt_down")


# --- running add again, and an upstream that comes later --------------------------------------------


def test_rerun_adds_a_later_upstream_and_its_attach(template: Path) -> None:
    write_project(template / "late", "late", public=True)
    mart = write_project(template / "mart", "mart")
    add_project(template, mart, ["dbt_up"], via="sources")
    add_project(template, template / "late")  # a producer: changes nothing downstream
    assert load(template / "profiles/profiles.yml")["mart"]["outputs"]["local"]["attach"] == [
        {"path": UPSTREAM_FILE % "dbt_up", "alias": "dbt_up", "read_only": True}
    ]
    before_profiles = (template / "profiles/profiles.yml").read_text()

    plan = add_project(template, mart, ["late"])

    assert plan.lines()[0].startswith("update mart")
    added = only_insertions(before_profiles, (template / "profiles/profiles.yml").read_text())
    assert added == [
        f"        - path: \"{UPSTREAM_FILE % 'late'}\"",
        "          alias: late",
        "          read_only: true",
    ]
    assert load_mesh(template, "local").project("mart").upstreams == ("dbt_up", "late")
    check_profiles(load_mesh(template, "local"))


def test_an_upstream_declared_by_hand_without_attach_builds_and_add_writes_the_attach(template: Path) -> None:
    mart = write_project(template / "mart", "mart")
    add_project(template, mart)
    with (mart / "dependencies.yml").open("w") as handle:
        handle.write("projects:\n  - name: dbt_up\n")
    mesh = load_mesh(template, "local")
    check_profiles(mesh)  # not attached in the profile: every build attaches it (mesh/warehouse/outputs.py)
    from mesh.warehouse.outputs import with_attachments

    local = load(template / "profiles/profiles.yml")["mart"]["outputs"]["local"]
    assert "attach" not in local
    effective = with_attachments(mesh, "mart", local)
    assert effective is not None
    assert [(a["alias"], a["read_only"]) for a in effective["attach"]] == [("dbt_up", True)]

    plan = add_project(template, mart, via="sources")  # the upstream is in dependencies.yml

    assert "  Update profiles/profiles.yml: profile mart, output local: attach dbt_up read-only" in plan.lines()
    local = load(template / "profiles/profiles.yml")["mart"]["outputs"]["local"]
    assert local["attach"] == [{"path": UPSTREAM_FILE % "dbt_up", "alias": "dbt_up", "read_only": True}]
    assert with_attachments(load_mesh(template, "local"), "mart", local) is None
    check_profiles(load_mesh(template, "local"))


# --- the project's own profiles ---------------------------------------------------------------------

OWN = (
    "mart:\n  target: local\n  outputs:\n    local:\n      type: duckdb\n"
    "      path: \"{{ env_var('MESH_WAREHOUSE_DIR', 'warehouse') }}/mart.duckdb\"\n"
)


def test_profiles_yml_in_the_project_folder_serves_its_targets_and_the_mesh_the_others(template: Path) -> None:
    mart = write_project(template / "mart", "mart", files={"profiles.yml": OWN})
    profiles_before = (template / "profiles/profiles.yml").read_text()
    own_before = (mart / "profiles.yml").read_bytes()

    plan = add_project(template, mart)

    mesh = load_mesh(template, "local")
    assert mesh.config.projects["mart"].profiles_dir == "mart"
    assert mesh.profiles_dir_of("mart") == mart
    assert (mart / "profiles.yml").read_bytes() == own_before
    only_insertions(profiles_before, (template / "profiles/profiles.yml").read_text())
    written = load(template / "profiles/profiles.yml")["mart"]
    assert set(written["outputs"]) == {"prod"}  # only what its own profile lacks
    assert written["target"] == "prod"
    lines = plan.lines()
    assert any("mart/profiles.yml defines profile mart" in line for line in lines)
    assert "  Note: profile mart in mart/profiles.yml serves local; the mesh's profile mart serves prod" in lines
    assert any(line.startswith("  Update profiles/profiles.yml: add profile mart for the targets its own "
                               "profile mart lacks: outputs prod (Snowflake database MART_PROD") for line in lines)
    local, prod = profile_source(mesh, "mart", "local"), profile_source(mesh, "mart", "prod")
    assert (local.folder, local.name, local.own) == (mart, "mart", True)
    assert (prod.folder, prod.name, prod.own) == (template / "profiles", "mart", False)
    check_profiles(load_mesh(template, "local"))
    check_profiles(load_mesh(template, "prod"))


def test_profiles_dir_flag_and_dbt_profiles_dir(template: Path, tmp_path: Path) -> None:
    write_project(template / "mart", "mart", files={"conf/profiles.yml": OWN})
    plan = plan_add(template, template / "mart", profiles_dir=str(template / "mart/conf"))
    assert any("with its own profiles folder mart/conf" in line for line in plan.lines())

    inside = plan_add(template, template / "mart", environ={"DBT_PROFILES_DIR": str(template / "mart/conf")})
    assert any("DBT_PROFILES_DIR (mart/conf) defines profile mart: used" in line for line in inside.lines())

    outside = tmp_path / "home" / ".dbt"
    outside.mkdir(parents=True)
    (outside / "profiles.yml").write_text(OWN)
    plan = plan_add(template, template / "mart", environ={"DBT_PROFILES_DIR": str(outside)})
    lines = plan.lines()
    assert any("DBT_PROFILES_DIR defines profile mart outside the mesh folder: not used" in line for line in lines)
    assert any(line.startswith("  Update profiles/profiles.yml: add profile mart") for line in lines)
    assert str(outside) not in "\n".join(lines)


# --- the profile check every build runs ---------------------------------------------------------


def test_template_and_chain_pass_the_profile_check() -> None:
    for root in (REPO, REPO / "examples/chain"):
        mesh = load_mesh(root, "local")
        check_profiles(mesh)
    check_profiles(load_mesh(REPO, "prod"))


def test_a_copied_project_keeping_anothers_profile_is_refused_before_dbt_runs(template: Path) -> None:
    _copy_with_name(template, "dbt_down_loom", "dbt_copy", "dbt_copy")
    text = (template / "mesh.yml").read_text()  # registered by hand, not through add
    (template / "mesh.yml").write_text(
        text.replace("\ntargets:", "  dbt_copy:\n    path: dbt_copy\n    upstreams_via: loom\n\ntargets:", 1)
    )
    mesh = load_mesh(template, "local")
    expected = (
        "projects dbt_down_loom and dbt_copy both build with profile 'dbt_down_loom' of "
        "profiles/profiles.yml, so they would write to the same database"
    )
    with pytest.raises(ConfigError, match=re.escape(expected)):
        build_project(mesh, "dbt_copy", say=lambda _m: None)
    with pytest.raises(ConfigError, match=re.escape(expected)):
        run_mesh(load_mesh(template, "local"), say=lambda _m: None)
    for project in ("dbt_up", "dbt_down", "dbt_down_loom", "dbt_copy"):
        assert not (template / project / "target").exists()
        assert not (template / project / "logs").exists()
        assert not list((template / project).rglob("_mesh_*.yml"))
    assert not (template / "warehouse").exists()
    assert not (template / "registry").exists()


def test_two_projects_on_one_snowflake_database_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBT_DOWN_SNOWFLAKE_DATABASE", "dbt_up_prod")
    with pytest.raises(
        ConfigError,
        match=r"projects dbt_up \(profile 'dbt_up', target prod\) and dbt_down \(profile 'dbt_down', "
        r"target prod\) both build into the Snowflake database DBT_UP_PROD",
    ):
        check_profiles(load_mesh(REPO, "prod"))


def test_writable_attach_of_another_projects_file_is_refused(template: Path) -> None:
    path = template / "profiles/profiles.yml"
    text = path.read_text()
    path.write_text(text.replace("alias: dbt_up\n          read_only: true", "alias: dbt_up", 1))
    with pytest.raises(
        ConfigError,
        match=r"project dbt_down \(profile 'dbt_down', target local\) attaches the DuckDB file of "
        r"dbt_up \(warehouse/dbt_up.duckdb\) without `read_only: true`",
    ):
        check_profiles(load_mesh(template, "local"))


def test_attach_under_another_name_is_refused(template: Path) -> None:
    path = template / "profiles/profiles.yml"
    path.write_text(path.read_text().replace("alias: dbt_up", "alias: upstream", 1))
    with pytest.raises(ConfigError, match="attaches dbt_up's DuckDB file as 'upstream', but dbt_up's "
                       "relations name the database 'dbt_up'"):
        check_profiles(load_mesh(template, "local"))


def test_profile_paths_render_with_the_environment(template: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = template / "profiles/profiles.yml"
    path.write_text(
        path.read_text().replace(
            "{{ env_var('MESH_BUILD_DIR', env_var('MESH_WAREHOUSE_DIR', 'warehouse')) }}/dbt_down.duckdb",
            "{{ env_var('TEAM_FILE') }}",
        )
    )
    mesh = load_mesh(template, "local")
    monkeypatch.delenv("TEAM_FILE", raising=False)
    with pytest.raises(ConfigError, match="environment variable TEAM_FILE is not set"):
        check_profiles(mesh)
    monkeypatch.setenv("TEAM_FILE", str(template / "elsewhere/dbt_down.duckdb"))
    check_profiles(mesh)  # another folder: no clash
    # another folder, but the database name dbt_up: consumers attach both under one name
    monkeypatch.setenv("TEAM_FILE", str(template / "elsewhere/dbt_up.duckdb"))
    with pytest.raises(ConfigError, match="projects dbt_up and dbt_down both write database dbt_up"):
        check_profiles(mesh)
    monkeypatch.setenv("TEAM_FILE", str(template / "warehouse/dbt_up.duckdb"))
    with pytest.raises(ConfigError, match=r"projects dbt_up .* and dbt_down .* both build into the "
                       r"DuckDB file warehouse/dbt_up\.duckdb"):
        check_profiles(mesh)


def test_the_mesh_profile_is_found_by_project_name_whatever_profile_dbt_project_yml_says(template: Path) -> None:
    path = template / "dbt_down/dbt_project.yml"
    path.write_text(path.read_text().replace("profile: dbt_down", "profile: nowhere"))
    mesh = load_mesh(template, "local")
    source = profile_source(mesh, "dbt_down")
    assert (source.folder, source.name) == (template / "profiles", "dbt_down")
    check_profiles(mesh)


def test_a_profile_missing_from_profiles_yml_is_named(template: Path) -> None:
    path = template / "dbt_down/dbt_project.yml"
    path.write_text(path.read_text().replace("profile: dbt_down", "profile: nowhere"))
    profiles = template / "profiles/profiles.yml"
    text = profiles.read_text()
    profiles.write_text(text[:text.index("\ndbt_down:\n")] + text[text.index("\ndbt_down_loom:\n"):])
    with pytest.raises(ConfigError, match=r"project dbt_down builds with profile 'dbt_down', which .* "
                       r"does not define"):
        check_profiles(load_mesh(template, "local"))


def test_the_check_does_not_import_dbt(template: Path) -> None:
    code = (
        "import sys; from mesh.project.config import load_mesh; from mesh.project.profiles import check_profiles; "
        f"check_profiles(load_mesh({str(template)!r}, 'local')); print('dbt' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "False"


def test_add_is_not_blocked_by_an_unset_variable_of_another_project(
    template: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = template / "profiles/profiles.yml"
    path.write_text(
        path.read_text().replace(
            "{{ env_var('DBT_DOWN_SNOWFLAKE_DATABASE', 'DBT_DOWN_PROD') }}", "{{ env_var('DBT_DOWN_DB') }}"
        )
    )
    monkeypatch.delenv("DBT_DOWN_DB", raising=False)
    add_project(template, write_project(template / "mart", "mart"))  # a laptop without prod settings
    check_profiles(load_mesh(template, "local"))
    with pytest.raises(ConfigError, match="environment variable DBT_DOWN_DB is not set"):
        check_profiles(load_mesh(template, "prod"))  # every build checks its own target strictly


def test_a_project_outside_the_mesh_folder_gets_a_relative_path(template: Path, tmp_path: Path) -> None:
    outside = write_project(tmp_path / "team_repo" / "shop", "shop")
    add_project(template, outside, ["dbt_up"], via="sources")
    mesh = load_mesh(template, "local")
    assert mesh.config.projects["shop"].path == "../team_repo/shop"
    assert mesh.project("shop").dir == outside
    assert str(tmp_path) not in (template / "mesh.yml").read_text()
    check_profiles(mesh)


def test_a_second_database_is_said_at_add_and_accepted_without_write_audit_publish(
    template: Path,
) -> None:
    mesh_yml = template / "mesh.yml"
    mesh_yml.write_text(mesh_yml.read_text().replace("    upstream_env: prod\n", "    upstream_env: prod\n    wap: false\n", 1))
    write_project(template / "layered", "layered", public=True)
    spec = template / "layered/dbt_project.yml"
    spec.write_text(spec.read_text() + "models:\n  layered:\n    +database: layered_gold\n")

    run = mesh_cli(template, "layered", "--allow-uncontracted")

    assert run.returncode == 0, (run.stdout, run.stderr)
    assert (
        "layered writes layered_gold besides its own database: locally each is "
        "warehouse/<database>.duckdb"
    ) in run.stdout
    assert "layered" in load(mesh_yml)["projects"]


def test_outputs_the_mesh_adds_keep_the_schema_the_projects_own_profile_builds_into(template: Path) -> None:
    own = "shop:\n  target: dev\n  outputs:\n    dev: {type: duckdb, path: shop.duckdb, schema: silver}\n"
    shop = write_project(template / "shop", "shop", profile="shop", files={"profiles.yml": own})

    plan = add_project(template, shop)

    profiles = load(template / "profiles/profiles.yml")
    assert profiles["shop"]["outputs"]["local"]["schema"] == "silver"  # its sources name schema silver
    assert "  Note: the local output builds into schema silver, as the project's own profile does" in plan.lines()
    assert (shop / "profiles.yml").read_text() == own


def test_an_upstream_installed_as_a_local_package_is_named(template: Path) -> None:
    mart = write_project(
        template / "mart", "mart",
        files={
            "packages.yml": "packages:\n  - local: ../dbt_up\n",
            "models/two.sql": "select * from {{ ref('dbt_up', 'public_orders') }}\n",
        },
    )

    plan = add_project(template, mart, via="loom")

    assert (
        "  Note: packages.yml installs dbt_up (../dbt_up) as a package: its models would build "
        "inside mart too; the mesh reads dbt_up from its published interface, so remove that entry"
    ) in plan.lines(), plan.lines()
