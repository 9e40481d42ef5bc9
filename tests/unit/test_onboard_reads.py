"""What `add` reads from a project's own files rather than asking: how a consumer reads its
upstreams (from its code), which upstreams it reads (dependencies.yml, its code, its team's own
dbt_loom.config.yml), what its public models' contracts mean under `require_contracts`, and what a
target needs before the project can build on it. No dbt runs here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mesh.project.config import load_mesh
from mesh.project.profiles import check_profiles
from mesh.ui.onboard import add_project, plan_add
from mesh.warehouse.runner import EMPTY_LOOM_CONFIG, dbt_env
from tests.conftest import REPO, copy_template
from tests.unit.test_onboard import load, snapshot, write_project

BIN = Path(sys.executable).parent
TEAM_LOOM = (
    "# our CI downloads the upstream manifests first\n"
    "manifests:\n"
    "  - name: dbt_up\n"
    "    type: file\n"
    "    config:\n"
    "      path: manifests/dbt_up.json\n"
)
OWN_SOURCES = (
    "version: 2\n"
    "sources:\n"
    "  - name: orders_platform\n"
    "    database: dbt_up\n"
    "    schema: marts\n"
    "    tables:\n"
    "      - name: public_orders\n"
    "        columns:\n"
    "          - name: order_id\n"
    "            tests: [not_null]\n"
)
NO_SNOWFLAKE = {"PATH": "/usr/bin"}  # an environment without any SNOWFLAKE_* variable


@pytest.fixture
def template(tmp_path: Path) -> Path:
    return copy_template(tmp_path / "mesh")


def mesh_add(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "mesh"), "--root", str(root), "add", *args],
        cwd=root, capture_output=True, text=True, check=False, timeout=120,
    )


# --- the style, from the code -----------------------------------------------------------------------


def test_qualified_refs_mean_loom_and_name_the_upstream(template: Path) -> None:
    mart = write_project(template / "mart", "mart", files={"models/two.sql": "select * from {{ ref('dbt_up', 'public_orders') }}\n"})

    plan = add_project(template, mart)

    config = load_mesh(template, "local").config.projects["mart"]
    assert config.upstreams_via == "loom"
    assert "  Note: mart reads dbt_up (its code): declared in dependencies.yml" in plan.lines()
    assert (mart / "dependencies.yml").read_text().endswith("projects:\n  - name: dbt_up\n")
    assert load_mesh(template, "local").project("mart").upstreams == ("dbt_up",)
    check_profiles(load_mesh(template, "local"))


def test_sources_named_after_the_upstream_mean_generated_sources(template: Path) -> None:
    mart = write_project(
        template / "mart", "mart",
        files={"models/two.sql": "select * from {{ source(\"dbt_up\", 'public_orders') }}\n"},
    )

    plan = add_project(template, mart)

    assert load_mesh(template, "local").config.projects["mart"].upstreams_via == "sources"
    assert "  Note: mart reads dbt_up (its code): declared in dependencies.yml" in plan.lines()
    assert load_mesh(template, "local").project("mart").upstreams == ("dbt_up",)


def test_only_its_own_sources_yaml_means_sources_adopted_at_sync(template: Path) -> None:
    mart = write_project(
        template / "mart", "mart",
        files={
            "dependencies.yml": "projects:\n  - name: dbt_up\n",
            "models/sources.yml": OWN_SOURCES,
            "models/two.sql": "select * from {{ source('orders_platform', 'public_orders') }}\n",
        },
    )
    sources_before = (mart / "models/sources.yml").read_bytes()

    plan = add_project(template, mart)

    assert load_mesh(template, "local").config.projects["mart"].upstreams_via == "sources"
    assert (
        "  Note: mart reads dbt_up through its own sources: sync adopts the tables that point at "
        "their public relations (README: Add your project)"
    ) in plan.lines()
    assert (mart / "models/sources.yml").read_bytes() == sources_before


def test_only_a_team_dbt_loom_config_means_loom_and_names_the_upstream(template: Path) -> None:
    mart = write_project(
        template / "mart", "mart",
        files={"dbt_loom.config.yml": TEAM_LOOM, "models/two.sql": "select * from {{ ref('public_orders') }}\n"},
    )

    plan = add_project(template, mart)

    assert load_mesh(template, "local").config.projects["mart"].upstreams_via == "loom"
    assert "  Note: mart reads dbt_up (its own dbt_loom.config.yml): declared in dependencies.yml" in plan.lines()
    assert (mart / "dependencies.yml").read_text().endswith("projects:\n  - name: dbt_up\n")
    # the team's file is read for its names only: never edited, never git-ignored
    assert (mart / "dbt_loom.config.yml").read_text() == TEAM_LOOM
    assert "dbt_loom.config.yml" not in (mart / ".gitignore").read_text()
    # and never given to dbt-loom: the mesh's own config under .mesh/ is
    env = dbt_env(load_mesh(template, "local"), "mart")
    assert env["DBT_LOOM_CONFIG"] == str(mart / ".mesh/dbt_loom.config.yml")
    assert (mart / "dbt_loom.config.yml").read_text() == TEAM_LOOM


def test_a_team_dbt_loom_config_naming_no_mesh_project_adds_no_upstream(template: Path) -> None:
    loom = TEAM_LOOM.replace("name: dbt_up", "name: elsewhere")
    mart = write_project(template / "mart", "mart", files={"dbt_loom.config.yml": loom})

    plan = add_project(template, mart)

    assert load_mesh(template, "local").project("mart").upstreams == ()
    assert not (mart / "dependencies.yml").exists()
    assert not any("elsewhere" in line for line in plan.lines())


def test_a_producer_needs_no_via_and_ordinary_sources_and_packages_are_no_upstreams(template: Path) -> None:
    core = write_project(
        template / "core", "core", public=True,
        files={"models/two.sql": "select * from {{ source('raw', 'orders') }} join {{ ref('dbt_utils', 'spine') }}\n"},
    )

    plan = add_project(template, core)

    config = load_mesh(template, "local").config.projects["core"]
    assert config.upstreams_via == "sources" and "upstreams_via" not in load(template / "mesh.yml")["projects"]["core"]
    assert load_mesh(template, "local").project("core").upstreams == ()
    assert "  Update mesh.yml: register project core at core" in plan.lines()


def test_the_mesh_gives_a_non_loom_project_an_empty_dbt_loom_config(template: Path) -> None:
    """dbt-loom loads in every dbt call: an empty config keeps its behaviour (its patched access
    checks) while reading nothing; a missing one would change dbt's semantics."""
    mesh = load_mesh(template, "local")
    for name in ("dbt_up", "dbt_down"):
        env = dbt_env(mesh, name)
        path = template / name / ".mesh/dbt_loom.config.yml"
        assert env["DBT_LOOM_CONFIG"] == str(path)
        assert path.read_bytes() == EMPTY_LOOM_CONFIG


# --- refusals of the style: exit 2, one line, nothing written ------------------------------------


def _both(root: Path) -> list[str]:
    write_project(
        root / "mart", "mart",
        files={
            "models/a.sql": "select * from {{ ref('dbt_up', 'public_orders') }}\n",
            "models/b.sql": "select * from {{ source('dbt_up', 'public_customers') }}\n",
        },
    )
    return ["mart"]


def _neither(root: Path) -> list[str]:
    write_project(root / "mart", "mart", files={"dependencies.yml": "projects:\n  - name: dbt_up\n"})
    return ["mart"]


def _via_against_refs(root: Path) -> list[str]:
    write_project(
        root / "mart", "mart",
        files={
            "models/a.sql": "select * from {{ ref('dbt_up', 'public_orders') }}\n",
            "models/deep/b.sql": "select * from {{ ref('dbt_up', 'public_customers', v=2) }}\n",
        },
    )
    return ["mart", "--via", "sources"]


def _via_against_sources(root: Path) -> list[str]:
    write_project(root / "mart", "mart", files={"models/a.sql": "select * from {{ source('dbt_up', 'public_orders') }}\n"})
    return ["mart", "--via", "loom"]


def _via_against_the_code_of_a_copy(root: Path) -> list[str]:
    shutil.copytree(root / "dbt_down", root / "copy")
    text = (root / "copy/dbt_project.yml").read_text()
    (root / "copy/dbt_project.yml").write_text(text.replace("name: dbt_down", "name: copy", 1))
    return ["copy", "--via", "loom"]


REFUSALS = {
    "both": (_both, "mart's code shows both `ref('<upstream>', …)` and `source('<upstream>', …)` for dbt_up: say how it reads them with --via loom (dbt-loom refs) or --via sources (generated dbt sources)"),
    "neither": (_neither, "mart's code shows no reference to them for dbt_up: say how it reads them with --via loom"),
    "via_against_refs": (_via_against_refs, "mart reads dbt_up through generated sources, but its code says otherwise: mart/models/a.sql: ref('dbt_up', 'public_orders'); mart/models/deep/b.sql: ref('dbt_up', 'public_customers', v=2); these resolve only through dbt-loom (`upstreams_via: loom`): switch with `mesh set <project> --via loom`, or rewrite them"),
    "via_against_sources": (_via_against_sources, "mart reads dbt_up through dbt-loom, but its code says otherwise: mart/models/a.sql: source('dbt_up', 'public_orders'); these resolve only through generated sources"),
    "via_against_the_code_of_a_copy": (_via_against_the_code_of_a_copy, "copy reads dbt_up through dbt-loom, but its code says otherwise: copy/models/"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_style_refused_with_one_line_exit_2_and_nothing_written(template: Path, case: str) -> None:
    setup, fragment = REFUSALS[case]
    args = setup(template)
    before = snapshot(template)

    run = mesh_add(template, *args)

    assert run.returncode == 2, (run.stdout, run.stderr)
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("error: "), run.stderr
    assert fragment in run.stderr, run.stderr
    assert run.stdout == ""
    assert snapshot(template) == before


def test_a_mismatch_lists_every_file_and_reference(template: Path) -> None:
    _via_against_the_code_of_a_copy(template)
    from mesh.project.files import references_by_project

    run = mesh_add(template, "copy", "--via", "loom")

    found = references_by_project(template / "copy")["dbt_up"]
    assert len(found) == 7  # the template's sources consumer, SQL and YAML
    for ref in found:
        assert f"{ref.file.relative_to(template).as_posix()}: {ref.describe('dbt_up')}" in run.stderr
    assert run.returncode == 2 and "more)" not in run.stderr


def test_a_long_mismatch_names_eight_references_and_counts_the_rest(template: Path) -> None:
    files = {f"models/m{i:02}.sql": f"select * from {{{{ ref('dbt_up', 'public_orders') }}}} -- {i}\n" for i in range(11)}
    write_project(template / "mart", "mart", files=files)

    run = mesh_add(template, "mart", "--via", "sources")

    assert run.returncode == 2 and run.stderr.count("\n") == 1
    assert "mart/models/m07.sql: ref('dbt_up', 'public_orders') (and 3 more)" in run.stderr
    assert "m08.sql" not in run.stderr


# --- contracts, up front ----------------------------------------------------------------------------

TWO_PUBLIC = (
    "version: 2\nmodels:\n"
    "  - name: one\n    config:\n      access: public\n"
    "  - name: two\n    config:\n      access: public\n      contract: {enforced: true}\n"
    "    columns:\n      - name: id\n        data_type: integer\n"
    "  - name: three\n    access: public\n"
)


def _contracted_project(root: Path) -> Path:
    return write_project(
        root / "mart", "mart",
        files={"models/one.yml": TWO_PUBLIC, "models/two.sql": "select 1 as id\n", "models/three.sql": "select 1 as id\n"},
    )


def test_uncontracted_public_models_are_counted_before_the_first_build(template: Path) -> None:
    mart = _contracted_project(template)

    plan = add_project(template, mart)

    assert (
        "  Note: 2 of 3 public models of mart declare no enforced contract in their YAML: mesh.yml sets "
        "require_contracts, so publish will refuse them; add `contract: {enforced: true}` and each "
        "column's data_type, or add again with --allow-uncontracted (require_contracts: false for this project)"
    ) in plan.lines()
    assert "require_contracts" not in load(template / "mesh.yml")["projects"]["mart"]


def test_allow_uncontracted_writes_require_contracts_false_for_that_project(template: Path) -> None:
    _contracted_project(template)

    run = mesh_add(template, "mart", "--allow-uncontracted")

    assert run.returncode == 0, run.stderr
    assert "  Update mesh.yml: mart may publish public models without an enforced contract (require_contracts: false)" in run.stdout
    assert "publish will refuse them" not in run.stdout
    mesh = load_mesh(template, "local")
    assert mesh.config.projects["mart"].require_contracts is False
    assert mesh.config.require_contracts is True  # the others still must
    assert "require_contracts" not in load(template / "mesh.yml")["projects"]["dbt_up"]


def test_without_require_contracts_the_note_says_what_uncontracted_models_publish(tmp_path: Path) -> None:
    root = tmp_path / "mesh"
    shutil.copytree(REPO / "tests/fixtures/byo/skeleton", root)
    mart = _contracted_project(root)
    (mart / "dbt_project.yml").write_text((mart / "dbt_project.yml").read_text() + "models:\n  mart:\n    +contract: {enforced: true}\n")

    plan = add_project(root, mart)

    assert (
        "  Note: 2 of 3 public models of mart declare no enforced contract (folder-level `+contract` "
        "settings in dbt_project.yml may enforce some): they publish the columns the warehouse holds, "
        "and the gate judges their changes from the code and from what consumers read"
    ) in plan.lines()


# --- every target, checked before `next:` -----------------------------------------------------------


def test_the_variables_a_snowflake_target_needs_are_named(template: Path) -> None:
    mart = write_project(template / "mart", "mart")

    bare = plan_add(template, mart, environ=NO_SNOWFLAKE).lines()
    ready = plan_add(
        template, mart,
        environ={**NO_SNOWFLAKE, "SNOWFLAKE_ACCOUNT": "acme", "SNOWFLAKE_USER": "ci", "SNOWFLAKE_PRIVATE_KEY_PATH": "k.p8"},
    ).lines()

    assert "  Note: target prod needs SNOWFLAKE_ACCOUNT, SNOWFLAKE_PRIVATE_KEY_PATH, SNOWFLAKE_USER set before mart builds on it" in bare
    assert not any("needs SNOWFLAKE" in line for line in ready)


def test_the_variables_its_own_profile_needs_are_named_too(template: Path) -> None:
    own = (
        "mart:\n  target: local\n  outputs:\n    local:\n      type: duckdb\n"
        "      path: \"{{ env_var('MART_DIR') }}/mart.duckdb\"\n"
    )
    mart = write_project(template / "mart", "mart", files={"profiles.yml": own})

    lines = plan_add(template, mart, environ=NO_SNOWFLAKE).lines()

    assert "  Note: target local needs MART_DIR set before mart builds on it" in lines
