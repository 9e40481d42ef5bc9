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
WORKFLOWS = sorted(WORKFLOW_DIR.glob("*.yml"))
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
    assert {"dbt_up.yml", "dbt_down.yml", "dbt_down_loom.yml"} <= names


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
        [str(BIN / "zizmor"), "--offline", "--no-progress", str(WORKFLOW_DIR)],
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
        assert PINNED_USES.fullmatch(line), f"{path.name}: {line}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_no_expression_is_interpolated_into_a_run_script(path: Path) -> None:
    for step in steps(load(path)):
        script = step.get("run")
        if script is None:
            continue
        assert "${{" not in script, f"{path.name}: {step.get('name')}"
        assert "secrets." not in script, f"{path.name}: {step.get('name')}"
    # Secrets only ever appear as `env:` values.
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if "secrets." in line:
            assert re.match(r"^\s+[A-Z_]+: \$\{\{ secrets\.[A-Z_]+ \}\}$", line), (number, line)


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
    publish = load(WORKFLOW_DIR / "dbt_up.yml")["jobs"]["publish"]
    assert "pull-requests" not in publish["permissions"]


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


def test_producer_workflow_checks_on_pull_requests_and_publishes_from_main() -> None:
    workflow = load(WORKFLOW_DIR / "dbt_up.yml")
    assert {"pull_request", "push"} <= set(workflow["on"])
    assert workflow["on"]["push"]["branches"] == ["main"]
    check, publish = workflow["jobs"]["check"], workflow["jobs"]["publish"]
    check_runs = " ".join(s.get("run", "") for s in check["steps"])
    publish_runs = " ".join(s.get("run", "") for s in publish["steps"])
    assert ".venv/bin/invoke build --project dbt_up --target prod" in check_runs
    assert ".venv/bin/invoke check --project dbt_up --target prod" in check_runs
    assert "publish" not in check_runs
    assert ".venv/bin/invoke publish --project dbt_up --target prod" in publish_runs
    assert publish_runs.index("invoke build") < publish_runs.index("invoke publish")
    assert "make venv" in check_runs and "make venv" in publish_runs
    assert "DBT_UP_AWS_ROLE_PR" in str(check) and "DBT_UP_AWS_ROLE_MAIN" in str(publish)
    assert "refs/heads/main" in publish["if"]


def test_two_publishes_of_one_project_never_run_at_once() -> None:
    publish = load(WORKFLOW_DIR / "dbt_up.yml")["jobs"]["publish"]
    assert publish["concurrency"]["group"] == "dbt-mesh-publish-dbt_up"
    assert publish["concurrency"]["cancel-in-progress"] is False


@pytest.mark.parametrize("project", ["dbt_down", "dbt_down_loom"])
def test_consumer_workflows_sync_build_and_validate(project: str) -> None:
    workflow = load(WORKFLOW_DIR / f"{project}.yml")
    assert {"push", "pull_request", "schedule"} <= set(workflow["on"])
    assert workflow["on"]["schedule"][0]["cron"]
    (job,) = workflow["jobs"].values()
    runs = " ".join(s.get("run", "") for s in job["steps"])
    order = [
        f".venv/bin/invoke sync --project {project} --target prod",
        f"--project {project} --target prod",
        ".venv/bin/invoke validate",
        "--record-usage",
    ]
    for command in order:
        assert command in runs, command
    assert runs.index("invoke sync") < runs.index("invoke build") < runs.index("invoke validate")
    assert project in job["concurrency"]["group"]
    assert "publish" not in runs


@pytest.mark.parametrize("path", [p for p in WORKFLOWS if p.stem.startswith("dbt_")], ids=str)
def test_lineage_goes_to_the_step_summary(path: Path) -> None:
    runs = [s.get("run", "") for s in steps(load(path))]
    summaries = [r for r in runs if "invoke lineage --format mermaid" in r]
    assert summaries
    assert all('>> "$GITHUB_STEP_SUMMARY"' in r for r in summaries)


@pytest.mark.parametrize("path", [p for p in WORKFLOWS if p.stem.startswith("dbt_")], ids=str)
def test_the_private_key_is_written_from_env_to_a_private_file(path: Path) -> None:
    writers = [s for s in steps(load(path)) if "SNOWFLAKE_PRIVATE_KEY" in s.get("env", {})]
    assert writers
    for step in writers:
        assert step["env"]["SNOWFLAKE_PRIVATE_KEY"].startswith("${{ secrets.")
        assert "umask 077" in step["run"]
        assert '"$SNOWFLAKE_PRIVATE_KEY"' in step["run"]
    cleanups = [s for s in steps(load(path)) if "rm -f" in s.get("run", "")]
    assert cleanups and all(s["if"] == "always()" for s in cleanups)
