""".github/workflows: schema-valid, zizmor-clean offline, pinned, least privilege, no inline secrets."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW_DIR = ROOT / ".github" / "workflows"
TEAM_DIR = ROOT / "examples" / "team-repository" / ".github" / "workflows"
# The monorepo's workflows, and those a team copies into its own repository.
WORKFLOWS = sorted(WORKFLOW_DIR.glob("*.yml")) + sorted(TEAM_DIR.glob("*.yml"))
LOCAL_WORKFLOW = re.compile(r"^\$/\.github/workflows/[\w.-]+\.yml$")
BIN = Path(sys.executable).parent
PINNED_USES = re.compile(r"^[\w.-]+/[\w.-]+(?:/[\w./-]+)?@[0-9a-f]{40} # v\d+(?:\.\d+){0,2}$")


def load(path: Path) -> dict[str, Any]:
    data = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), path.name
    return data


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def uses_lines(path: Path) -> list[str]:
    return [
        line.split("uses:", 1)[1].strip()
        for line in path.read_text(encoding="utf-8").splitlines()
        if re.match(r"^\s*(?:-\s+)?uses:", line)
    ]


def test_the_project_workflows_exist() -> None:
    names = {p.name for p in WORKFLOWS}
    assert {"dbt_up.yml", "dbt_down.yml", "dbt_down_loom.yml", "mesh.yml", "mesh-project.yml"} <= names
    assert {"producer.yml", "consumer.yml"} <= names


def test_workflows_match_the_github_schema() -> None:
    result = subprocess.run(
        [
            str(BIN / "check-jsonschema"),
            "--builtin-schema",
            "vendor.github-workflows",
            *map(str, WORKFLOWS),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_reports_no_finding_offline() -> None:
    result = subprocess.run(
        [str(BIN / "zizmor"), "--offline", "--no-progress", str(WORKFLOW_DIR), str(TEAM_DIR)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout + result.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit_with_its_version(path: Path) -> None:
    lines = uses_lines(path)
    assert lines
    for line in lines:
        assert PINNED_USES.fullmatch(line) or LOCAL_WORKFLOW.fullmatch(line), f"{path.name}: {line}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_no_expression_is_interpolated_into_a_run_script(path: Path) -> None:
    for step in steps(load(path)):
        script = step.get("run")
        if script is None:
            continue
        assert "${{" not in script, f"{path.name}: {step.get('name')}"
        assert "secrets." not in script, f"{path.name}: {step.get('name')}"
    # Secrets only ever appear as `env:` values (or the GitHub App key, as its action's input).
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if "secrets." in line:
            assert re.match(r"^\s+(?:[A-Z_]+|private-key): \$\{\{ secrets\.[A-Z_]+ \}\}$", line), (number, line)


# The one job allowed to write anything on GitHub: the producer's pull-request check comments.
COMMENTING_JOBS = {("dbt_up.yml", "check")}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_least_privilege_permissions(path: Path) -> None:
    workflow = load(path)
    assert workflow["permissions"] == {}
    for name, job in workflow["jobs"].items():
        permissions = dict(job["permissions"])
        if (path.name, name) in COMMENTING_JOBS:
            assert permissions.pop("pull-requests") == "write", name
        assert set(permissions) <= {"contents", "id-token"}, name
        assert permissions["contents"] == "read", name
        assert permissions.get("id-token", "write") == "write", name


def test_the_producer_check_is_posted_as_a_pull_request_comment() -> None:
    check = load(WORKFLOW_DIR / "dbt_up.yml")["jobs"]["check"]
    names = [s["name"] for s in check["steps"]]
    gate = next(s for s in check["steps"] if "invoke check" in s.get("run", ""))
    assert ".venv/bin/invoke check --project dbt_up --target prod --format markdown" in gate["run"]
    assert 'exit "$status"' in gate["run"]  # the job still fails when a consumer is hit
    assert "<!-- mesh check " in gate["run"]  # the report's marker line starts the comment
    comment = next(s for s in check["steps"] if "gh pr comment" in s.get("run", ""))
    assert names.index(gate["name"]) < names.index(comment["name"])
    # It runs after a failed check too, and not for forks (their token cannot comment).
    assert "!cancelled()" in comment["if"] and "head.repo.full_name == github.repository" in comment["if"]
    assert comment["env"]["GH_TOKEN"] == "${{ github.token }}"
    assert comment["env"]["REPORT"] == gate["env"]["REPORT"]
    assert "--body-file \"$REPORT\"" in comment["run"] and "--method PATCH" in comment["run"]
    assert set(load(WORKFLOW_DIR / "dbt_up.yml")["jobs"]) == {"check"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_checkouts_do_not_persist_credentials(path: Path) -> None:
    checkouts = [
        s for s in steps(load(path)) if str(s.get("uses", "")).startswith("actions/checkout@")
    ]
    assert checkouts
    for step in checkouts:
        assert step["with"]["persist-credentials"] is False


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_aws_access_is_through_oidc_only(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert "aws-access-key-id" not in text and "AWS_SECRET_ACCESS_KEY" not in text
    for step in steps(load(path)):
        if str(step.get("uses", "")).startswith("aws-actions/configure-aws-credentials@"):
            assert "role-to-assume" in step["with"]
            assert "vars." in step["with"]["role-to-assume"]


def test_per_project_workflows_check_pull_requests_only() -> None:
    for project in ("dbt_up", "dbt_down", "dbt_down_loom"):
        workflow = load(WORKFLOW_DIR / f"{project}.yml")
        assert set(workflow["on"]) == {"pull_request"}, project  # main runs in mesh.yml
        runs = " ".join(s.get("run", "") for s in steps(workflow))
        assert "publish" not in runs and "--save-state" not in runs and "--record-usage" not in runs
        assert "_AWS_ROLE_MAIN" not in str(workflow), project  # only the read-only role
    check = load(WORKFLOW_DIR / "dbt_up.yml")["jobs"]["check"]
    check_runs = " ".join(s.get("run", "") for s in check["steps"])
    assert ".venv/bin/invoke build --project dbt_up --target prod" in check_runs
    assert ".venv/bin/invoke check --project dbt_up --target prod" in check_runs
    assert "DBT_UP_AWS_ROLE_PR" in str(check)


@pytest.mark.parametrize("project", ["dbt_down", "dbt_down_loom"])
def test_consumer_pull_requests_sync_build_and_validate(project: str) -> None:
    (job,) = load(WORKFLOW_DIR / f"{project}.yml")["jobs"].values()
    runs = " ".join(s.get("run", "") for s in job["steps"])
    for command in (
        f".venv/bin/invoke sync --project {project} --target prod",
        f".venv/bin/invoke build --project {project} --target prod --select \"state:modified+\" --defer",
        f".venv/bin/invoke validate --project {project} --target prod",
    ):
        assert command in runs, command
    assert runs.index("invoke sync") < runs.index("invoke build") < runs.index("invoke validate")
    assert job["concurrency"]["cancel-in-progress"] is True


def test_main_runs_the_plan_then_one_job_per_project_level_by_level() -> None:
    workflow = load(WORKFLOW_DIR / "mesh.yml")
    assert {"push", "schedule", "workflow_dispatch"} == set(workflow["on"])
    assert workflow["on"]["push"]["branches"] == ["main"] and workflow["on"]["schedule"][0]["cron"]
    assert workflow["concurrency"]["cancel-in-progress"] is False
    jobs = workflow["jobs"]
    plan = jobs["plan"]
    planning = next(s for s in plan["steps"] if s.get("id") == "plan")
    assert '.venv/bin/invoke plan --target prod --format github --max-levels 4 >> "$GITHUB_OUTPUT"' in planning["run"]
    levels = sorted(name for name in jobs if name.startswith("level-"))
    assert levels == [f"level-{n}" for n in range(1, 5)]
    assert set(plan["outputs"]) == {f"level_{n}" for n in range(1, 5)}
    for n, name in enumerate(levels, start=1):
        job = jobs[name]
        before = ["plan"] if n == 1 else ["plan", f"level-{n - 1}"]
        assert job["needs"] == (before if n > 1 else "plan"), name
        assert job["if"] == f"needs.plan.outputs.level_{n} != '[]'"  # an empty level starts nothing
        assert job["strategy"]["matrix"]["project"] == f"${{{{ fromJSON(needs.plan.outputs.level_{n}) }}}}"
        assert job["strategy"]["fail-fast"] is False
        assert job["uses"] == "$/.github/workflows/mesh-project.yml"
        assert job["with"] == {"project": "${{ matrix.project }}"}


def test_each_planned_project_runs_as_the_mesh_runs_it_with_its_own_environment() -> None:
    workflow = load(WORKFLOW_DIR / "mesh-project.yml")
    assert workflow["on"]["workflow_call"]["inputs"]["project"]["required"] is True
    (job,) = workflow["jobs"].values()
    assert job["environment"] == "${{ inputs.project }}"  # its credentials, nobody else's
    assert job["concurrency"] == {
        "group": "dbt-mesh-publish-${{ inputs.project }}", "cancel-in-progress": False
    }
    build = next(s for s in job["steps"] if "invoke mesh" in s.get("run", ""))
    assert build["run"] == '.venv/bin/invoke mesh --target prod --project "$PROJECT"'
    assert build["env"]["PROJECT"] == "${{ inputs.project }}"


def test_team_repositories_dispatch_exactly_the_consumers_reached() -> None:
    producer = load(TEAM_DIR / "producer.yml")
    publish = producer["jobs"]["publish"]
    names = [s["name"] for s in publish["steps"]]
    runs = {s["name"]: s.get("run", "") for s in publish["steps"]}
    assert names.index("Note the version published before") < names.index("Build, test and publish")
    assert names.index("Build, test and publish") < names.index("List the consumers the publish reaches")
    assert 'mesh downstream "${args[@]}"' in runs["List the consumers the publish reaches"]
    assert 'args+=(--since "$BEFORE")' in runs["List the consumers the publish reaches"]
    token = next(s for s in publish["steps"] if "create-github-app-token" in str(s.get("uses")))
    assert token["with"]["repositories"] == "${{ steps.reached.outputs.names }}"
    assert token["with"]["permission-contents"] == "write"
    assert "event_type=mesh-upstream-published" in runs["Dispatch the consumers"]
    consumer = load(TEAM_DIR / "consumer.yml")
    assert consumer["on"]["repository_dispatch"]["types"] == ["mesh-upstream-published"]
    assert consumer["on"]["schedule"][0]["cron"]  # the nightly safety net stays
    (job,) = consumer["jobs"].values()
    assert any(s.get("run") == "mesh run --target prod" for s in job["steps"])


@pytest.mark.parametrize("path", [p for p in WORKFLOWS if p.stem.startswith("dbt_") or p.stem in ("mesh-project", "producer", "consumer")], ids=str)
def test_lineage_goes_to_the_step_summary(path: Path) -> None:
    runs = [s.get("run", "") for s in steps(load(path))]
    summaries = [r for r in runs if "lineage --format mermaid" in r]
    assert summaries
    assert all('>> "$GITHUB_STEP_SUMMARY"' in r for r in summaries)


@pytest.mark.parametrize("path", [p for p in WORKFLOWS if p.stem.startswith("dbt_") or p.stem in ("mesh-project", "producer", "consumer")], ids=str)
def test_the_private_key_is_written_from_env_to_a_private_file(path: Path) -> None:
    writers = [s for s in steps(load(path)) if "SNOWFLAKE_PRIVATE_KEY" in s.get("env", {})]
    assert writers
    for step in writers:
        assert step["env"]["SNOWFLAKE_PRIVATE_KEY"].startswith("${{ secrets.")
        assert "umask 077" in step["run"]
        assert '"$SNOWFLAKE_PRIVATE_KEY"' in step["run"]
    cleanups = [s for s in steps(load(path)) if "rm -f" in s.get("run", "")]
    assert cleanups and all(s["if"] == "always()" for s in cleanups)
