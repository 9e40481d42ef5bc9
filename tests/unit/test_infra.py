"""infra/ and `invoke infra.*`: lint on the real tree and on weakened copies, fmt, HCL structure.

Everything runs the real tools: the pinned Terraform for fmt, checkov from its own venv (built from
requirements-checkov.txt on first use), python-hcl2 for structure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mesh.infra import rules as infra_rules
from mesh.infra import schema_rules
from mesh.infra import terraform as infra
from mesh.warehouse.snowflake import DEFAULT_LAYOUT, load_layout
from tests.parsed_template import parsed_template

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
FIXTURES = ROOT / "tests" / "fixtures" / "infra"
MODULES = sorted(p for p in (INFRA / "modules").iterdir() if p.is_dir())
MODULE_FILES = ("main.tf", "variables.tf", "outputs.tf", "versions.tf", "README.md")


def invoke(*args: str, stdin: Any = subprocess.DEVNULL, env: dict[str, str] | None = None):
    """Run `invoke -c tasks_infra ...` from the repository root, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "invoke", "-c", "tasks_infra", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        stdin=stdin,
        env=env,
    )


def fixture_specs() -> list[dict[str, Any]]:
    specs = []
    for path in sorted(FIXTURES.glob("*.json")):
        spec = json.loads(path.read_text(encoding="utf-8"))
        spec["name"] = path.stem
        specs.append(spec)
    return specs


SPECS = {spec["name"]: spec for spec in fixture_specs()}


def weakened_copy(tmp_path: Path, name: str) -> Path:
    """A copy of infra/ (or snowflake_sql/, per the fixture's `tree`) with its one weakening."""
    spec = SPECS[name]
    source = ROOT / spec.get("tree", "infra")
    tree = tmp_path / f"{source.name}-{name}"
    shutil.copytree(source, tree, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
    target = tree / spec["file"]
    text = target.read_text(encoding="utf-8")
    assert text.count(spec["old"]) == 1, (
        f"fixture {name}: its `old` text is gone from {spec['file']}"
    )
    target.write_text(text.replace(spec["old"], spec["new"]), encoding="utf-8")
    return tree


@pytest.fixture(scope="module")
def real_lint() -> subprocess.CompletedProcess[str]:
    """`invoke infra.lint` on the real tree, checkov included: run once for the module."""
    return invoke("infra.lint")


@pytest.fixture(scope="module")
def hcl() -> infra_rules.HclTree:
    return infra_rules.load_hcl(INFRA)


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template with dbt_up's manifest from `dbt parse`: MARTS holds customer_scoring."""
    return parsed_template(tmp_path_factory)


def lint_weakened(tmp_path: Path, name: str, project_root: Path) -> infra.LintReport:
    tree = weakened_copy(tmp_path, name)
    if SPECS[name].get("tree", "infra") == "snowflake_sql":
        return infra.lint(INFRA, sql_dir=tree, run_checkov=False, project_root=project_root)
    return infra.lint(tree, sql_dir=None, run_checkov=False, project_root=project_root)


# --- lint on the real tree and on weakened copies ------------------------------------------------


def test_lint_passes_on_the_real_tree(real_lint: subprocess.CompletedProcess[str]) -> None:
    assert real_lint.returncode == 0, real_lint.stdout + real_lint.stderr
    assert "infra.lint passed" in real_lint.stdout
    assert "fmt: ok" in real_lint.stdout
    assert "hcl rules: ok" in real_lint.stdout
    assert "sql: ok" in real_lint.stdout
    assert re.search(r"Failed checks: 0\b", real_lint.stdout), real_lint.stdout
    assert re.search(r"Passed checks: [1-9]\d*", real_lint.stdout)


def test_fixtures_cover_the_required_weakenings() -> None:
    assert {
        "public_access_block_off",
        "consumer_role_insert",
        "consumer_select_schema_wide",
        "sql_select_schema_wide",
    } <= set(SPECS)
    for spec in SPECS.values():
        assert spec["rules"], f"{spec['name']} names no rule it must trip"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_weakened_tree_fails_naming_the_rule(tmp_path: Path, name: str, parsed: Path) -> None:
    report = lint_weakened(tmp_path, name, parsed)
    assert not report.ok
    assert set(SPECS[name]["rules"]) <= set(report.rules()), report.findings
    # One weakening trips its own rules, not unrelated ones.
    assert set(report.rules()) == set(SPECS[name]["rules"]), report.findings
    # A schema-wide grant is refused naming what it would expose.
    for model in SPECS[name].get("models", []):
        assert all(f" {model} (" in f.message for f in report.findings), report.findings


@pytest.mark.parametrize("name", ["consumer_select_schema_wide", "sql_select_schema_wide"])
def test_schema_wide_grant_names_rule_model_and_fix(
    tmp_path: Path, parsed: Path, name: str
) -> None:
    report = lint_weakened(tmp_path, name, parsed)
    (rule,) = SPECS[name]["rules"]
    assert report.findings and {f.rule for f in report.findings} == {rule}
    for finding in report.findings:
        text = str(finding)
        assert text.startswith(f"[{rule}]")
        assert "DBT_UP_PROD.MARTS" in text
        assert "customer_scoring (protected)" in text
        assert "public_orders" not in text  # public models are not what the rule is about
        assert "invoke snowflake.grants" in text
    # ALL and FUTURE are each caught (for each consumer in the SQL: two roles).
    assert {"ALL" in str(f) for f in report.findings} == {True, False}


def test_schema_wide_grant_without_a_manifest_is_refused_as_unknown(
    tmp_path: Path, parsed: Path
) -> None:
    empty = tmp_path / "no-builds"
    empty.mkdir()
    report = lint_weakened(tmp_path, "consumer_select_schema_wide", empty)
    assert report.rules() == ["snowflake-consumer-schema-wide"]
    assert all(
        "unknown" in f.message and "dbt_up/target/manifest.json is missing" in f.message
        for f in report.findings
    )


def test_schema_wide_grant_on_a_schema_of_public_models_only_passes(
    tmp_path: Path, parsed: Path
) -> None:
    """The rule is about what a schema holds: FINANCE holds public_daily_revenue alone."""
    tree = weakened_copy(tmp_path, "sql_select_schema_wide")
    grants = tree / "05_consumer_grants.sql"
    grants.write_text(
        grants.read_text().replace(
            "IN SCHEMA {{ producer_database }}.{{ producer_public_schema }}",
            "IN SCHEMA {{ producer_database }}.FINANCE",
        )
    )
    contents = infra.schema_contents(DEFAULT_LAYOUT, parsed)
    assert contents.non_public("DBT_UP_PROD", "FINANCE") == []
    assert [n.name for n in contents.non_public("DBT_UP_PROD", "MARTS") or []] == [
        "customer_scoring"
    ]
    findings = infra.check_sql(tree, DEFAULT_LAYOUT, contents)
    # In the unit rendered for MARTS, FINANCE is not the schema granted: another rule's business.
    assert {f.rule for f in findings} == {"sql-consumer-public-only"}


@pytest.mark.parametrize(
    "name", ["public_access_block_off", "consumer_role_insert", "kms_rotation_off"]
)
def test_invoke_lint_path_fails_on_weakened_tree(tmp_path: Path, name: str) -> None:
    tree = weakened_copy(tmp_path, name)
    result = invoke("infra.lint", "--path", str(tree))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    error_lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(error_lines) == 1, result.stderr
    for rule in SPECS[name]["rules"]:
        assert rule in error_lines[0]
        assert f"[{rule}]" in result.stdout
    for check in SPECS[name]["checkov"]:
        assert f"checkov:{check}" in error_lines[0], output


def test_lint_refuses_a_path_that_is_not_a_folder(tmp_path: Path) -> None:
    result = invoke("infra.lint", "--path", str(tmp_path / "missing"), "--skip-checkov")
    assert result.returncode == 2
    assert "is not a folder" in result.stderr


# --- terraform fmt ---------------------------------------------------------------------------------


def test_fmt_check_passes_on_the_real_tree() -> None:
    assert infra.check_fmt(INFRA) == []


def test_fmt_check_names_an_unformatted_file(tmp_path: Path) -> None:
    tree = tmp_path / "infra"
    shutil.copytree(INFRA, tree)
    versions = tree / "modules" / "registry_bucket" / "versions.tf"
    versions.write_text(
        versions.read_text().replace("  required_version =", "required_version   =")
    )
    findings = infra.check_fmt(tree)
    assert [f.rule for f in findings] == ["terraform-fmt"]
    assert "versions.tf" in findings[0].where


def test_the_pinned_terraform_is_the_wrapper_binary() -> None:
    binary = infra.pinned_terraform()
    assert binary.is_file() and os.access(binary, os.X_OK)
    assert infra.terraform_version(binary) >= (1, 0, 0)


# --- HCL structure ---------------------------------------------------------------------------------


def _doc(tree: infra_rules.HclTree, name: str) -> infra_rules.Block:
    docs = [d for d in tree.of_type("data", "aws_iam_policy_document") if d.name == name]
    assert len(docs) == 1, name
    return docs[0]


def test_consumer_policy_grants_no_write_action(hcl: infra_rules.HclTree) -> None:
    actions = set()
    for statement in infra_rules._statements(_doc(hcl, "consumer_read")):
        assert statement.get("effect", "Allow") == "Allow"
        actions |= set(statement["actions"])
        for resource in statement.get("resources", []):
            assert "/state/" not in resource
    assert actions == {"s3:GetObject", "s3:ListBucket", "kms:Decrypt"}
    assert not any(re.search(r"Put|Delete|Write|Create|\*", a) for a in actions)


def test_consumer_policy_reads_latest_history_usage_freshness_and_proposals_only(
    hcl: infra_rules.HclTree,
) -> None:
    statements = infra_rules._statements(_doc(hcl, "consumer_read"))
    objects = next(s for s in statements if s.get("sid") == "ReadPublishedObjects")
    suffixes = sorted(r.split("}", 1)[1] for r in objects["resources"])
    assert suffixes == [
        "/*/acknowledgements/*",
        "/*/freshness/*",
        "/*/history/*/manifest.json",
        "/*/latest/manifest.json",
        "/*/proposals/*",
        "/*/usage/manifest.json",
    ]
    assert objects["actions"] == ["s3:GetObject"]


def test_the_plan_role_reads_fingerprints_besides_what_consumers_read(hcl: infra_rules.HclTree) -> None:
    doc = _doc(hcl, "plan_read")
    assert doc.body["source_policy_documents"] == ["${data.aws_iam_policy_document.consumer_read.json}"]
    (extra,) = infra_rules._statements(doc)
    assert extra["actions"] == ["s3:GetObject"]
    assert extra["resources"] == ["${local.registry_arn}/*/fingerprint/*"]


def test_project_state_policy_covers_its_own_fingerprint(hcl: infra_rules.HclTree) -> None:
    statements = infra_rules._statements(_doc(hcl, "project_state"))
    rw = next(s for s in statements if s.get("sid") == "ReadWriteOwnStateAndUsage")
    assert rw["resources"] == [
        "${local.registry_arn}/${each.key}/*/state/*",
        "${local.registry_arn}/${each.key}/*/usage/*",
        "${local.registry_arn}/${each.key}/*/fingerprint/*",
        "${local.registry_arn}/${each.key}/*/proposals/*",
        "${local.registry_arn}/${each.key}/*/acknowledgements/*",
    ]


def test_publisher_policy_is_scoped_to_its_own_prefix_and_never_deletes_history(
    hcl: infra_rules.HclTree,
) -> None:
    statements = infra_rules._statements(_doc(hcl, "publisher"))
    write = next(s for s in statements if s.get("sid") == "WriteOwnPrefix")
    assert write["resources"] == ["${local.registry_arn}/${each.key}/*"]
    deny = next(s for s in statements if s.get("effect") == "Deny")
    assert set(deny["actions"]) == {"s3:DeleteObject", "s3:DeleteObjectVersion"}
    assert deny["resources"] == ["${local.registry_arn}/${each.key}/*/history/*"]


def test_bucket_policy_denies_insecure_transport(hcl: infra_rules.HclTree) -> None:
    for name in ("bucket", "logs"):
        statements = infra_rules._statements(_doc(hcl, name))
        assert any(infra_rules._denies_insecure_transport(s) for s in statements), name
    assert infra_rules.rule_s3_tls_only(hcl) == []


def test_bucket_policy_refuses_history_writes_without_if_none_match(hcl: infra_rules.HclTree) -> None:
    statements = infra_rules._statements(_doc(hcl, "bucket"))
    deny = next(s for s in statements if s.get("sid") == "DenyHistoryOverwrite")
    assert deny["effect"] == "Deny" and deny["actions"] == ["s3:PutObject"]
    conditions = {c["variable"]: (c["test"], c["values"]) for c in deny["condition"]}
    assert conditions["s3:if-none-match"] == ("Null", ["true"])


def test_every_public_access_block_sets_all_four_flags(hcl: infra_rules.HclTree) -> None:
    blocks = hcl.of_type("resource", "aws_s3_bucket_public_access_block")
    buckets = hcl.of_type("resource", "aws_s3_bucket")
    assert len(blocks) == len(buckets) == 2
    for block in blocks:
        for flag in infra_rules.PUBLIC_ACCESS_FLAGS:
            assert block.body[flag] is True, (block.name, flag)


def test_registry_bucket_hardening(hcl: infra_rules.HclTree) -> None:
    assert infra_rules.rule_s3_acls_disabled(hcl) == []
    assert infra_rules.rule_s3_versioning(hcl) == []
    assert infra_rules.rule_kms_rotation(hcl) == []
    (sse,) = [
        b
        for b in hcl.of_type("resource", "aws_s3_bucket_server_side_encryption_configuration")
        if b.name == "this"
    ]
    default = sse.body["rule"][0]["apply_server_side_encryption_by_default"][0]
    assert default["sse_algorithm"] == "aws:kms"
    (lifecycle,) = [
        b
        for b in hcl.of_type("resource", "aws_s3_bucket_lifecycle_configuration")
        if b.name == "this"
    ]
    rule = lifecycle.body["rule"][0]
    assert "noncurrent_version_expiration" in rule
    assert "abort_incomplete_multipart_upload" in rule
    assert hcl.of_type("resource", "aws_s3_bucket_logging")


def test_consumer_roles_get_usage_and_select_only_never_on_private_layers(
    hcl: infra_rules.HclTree,
) -> None:
    grants = hcl.of_type("resource", "snowflake_grant_privileges_to_account_role")
    assert grants
    consumer = [g for g in grants if g.file.parent.name == "snowflake_consumer_grants"]
    # USAGE on the database and the public schema only: SELECT follows each publish, per relation.
    assert {g.name for g in consumer} == {"database_usage", "schema_usage"}
    assert all(g.body["privileges"] == ["USAGE"] for g in consumer)
    assert not any("on_schema_object" in g.body for g in grants)
    for grant in grants:
        if grant.name == "create_database":
            continue  # the project role's own privilege, checked below
        assert set(grant.body["privileges"]) <= {"USAGE", "SELECT"}, grant.address
        assert not grant.body.get("all_privileges") and not grant.body.get("with_grant_option")
        for target in infra_rules._grant_targets(grant):
            resolved = hcl.resolve(grant, target)
            assert not re.search(r"\b(RAW|STAGING)\b", resolved), (grant.address, resolved)
    assert infra_rules.rule_snowflake_consumer_grants(hcl) == []


def test_the_only_account_privilege_is_create_database_for_the_audit_clone(
    hcl: infra_rules.HclTree,
) -> None:
    grants = hcl.of_type("resource", "snowflake_grant_privileges_to_account_role")
    account = [g for g in grants if g.body.get("on_account")]
    (wap,) = account
    assert wap.file.parent.name == "snowflake_project"
    assert wap.body["privileges"] == ["CREATE DATABASE"]
    assert wap.body["account_role_name"] == "${snowflake_account_role.this.name}"
    assert wap.body["count"] == "${var.write_audit_publish ? 1 : 0}"
    assert infra_rules._is_own_wap_grant(wap)
    # The same privilege to any other role is a finding.
    forged = infra_rules.Block(
        wap.kind,
        wap.type,
        "x",
        {**wap.body, "account_role_name": "${var.consumer_role_name}"},
        wap.file,
    )
    assert not infra_rules._is_own_wap_grant(forged)


def test_public_schema_inputs_refuse_private_layers(hcl: infra_rules.HclTree) -> None:
    names = {
        v.name
        for v in hcl.variables
        if "public_schema" in v.name or "public_schema" in str(v.body.get("type"))
    }
    assert {"producer_public_schema", "projects"} <= names


def test_no_password_anywhere() -> None:
    assert infra_rules.rule_no_password(INFRA) == []
    for path in INFRA.rglob("*"):
        if path.is_file():
            assert "password" not in path.read_text(encoding="utf-8").lower(), path


def test_ci_roles_trust_github_oidc_for_this_repository_only(hcl: infra_rules.HclTree) -> None:
    assert infra_rules.rule_iam_oidc_trust(hcl) == []
    main = hcl.locals[INFRA]["github_subject_main"]
    pull_request = hcl.locals[INFRA]["github_subject_pull_request"]
    assert main == "repo:${var.github_repository}:ref:refs/heads/${var.github_main_branch}"
    assert pull_request == "repo:${var.github_repository}:pull_request"
    assert not hcl.of_type("resource", "aws_iam_access_key")
    assert not hcl.of_type("resource", "aws_iam_user")


def test_service_users_authenticate_with_a_key_pair(hcl: infra_rules.HclTree) -> None:
    (user,) = hcl.of_type("resource", "snowflake_service_user")
    assert user.body["rsa_public_key"] == "${var.service_user_rsa_public_key}"
    assert user.body["default_secondary_roles_option"] == "NONE"


def test_warehouses_are_xsmall_and_suspend_after_a_minute(hcl: infra_rules.HclTree) -> None:
    (warehouse,) = hcl.of_type("resource", "snowflake_warehouse")
    assert warehouse.body["auto_resume"] == "true"
    assert warehouse.body["initially_suspended"] is True
    variables = {v.name: v for v in hcl.variables if v.file.parent.name == "snowflake_warehouse"}
    assert variables["warehouse_size"].body["default"] == "XSMALL"
    assert variables["auto_suspend_seconds"].body["default"] == 60
    assert hcl.of_type("resource", "snowflake_resource_monitor")


# --- module conventions ----------------------------------------------------------------------------


@pytest.mark.parametrize("module", [INFRA, *MODULES], ids=lambda p: p.name)
def test_module_layout_and_conventions(module: Path) -> None:
    import hcl2
    from hcl2.utils import SerializationOptions

    for name in MODULE_FILES:
        assert (module / name).is_file(), f"{module.name}/{name} is missing"
    options = SerializationOptions(
        strip_string_quotes=True, explicit_blocks=False, with_comments=False
    )

    def load(name: str) -> dict[str, Any]:
        return hcl2.loads((module / name).read_text(), serialization_options=options)

    for entry in load("variables.tf").get("variable", []):
        for name, body in entry.items():
            assert body.get("type"), f"{module.name}: var.{name} has no type"
            assert body.get("description"), f"{module.name}: var.{name} has no description"
    outputs = [name for entry in load("outputs.tf").get("output", []) for name in entry]
    assert outputs
    for entry in load("outputs.tf").get("output", []):
        for name, body in entry.items():
            assert body.get("description"), f"{module.name}: output {name} has no description"
    # A resource type that appears once in a module is named `this`.
    types: dict[str, list[str]] = {}
    for entry in load("main.tf").get("resource", []):
        for type_, named in entry.items():
            types.setdefault(type_, []).extend(named)
    for type_, names in types.items():
        if len(names) == 1:
            assert names == ["this"], f"{module.name}: {type_}.{names[0]} should be named this"


def test_module_outputs_are_prefixed_by_resource() -> None:
    for module in MODULES:
        text = (module / "outputs.tf").read_text()
        names = re.findall(r'^output "([a-z0-9_]+)"', text, re.MULTILINE)
        prefixes = {
            "registry_bucket": ("s3_bucket_", "kms_", "iam_policy_"),
            "snowflake_warehouse": ("warehouse_", "resource_monitor_"),
            "snowflake_project": ("account_role_", "database_", "schema_", "service_user_"),
            "snowflake_consumer_grants": ("grant_",),
        }[module.name]
        for name in names:
            assert name.startswith(prefixes), f"{module.name}: output {name}"


def test_providers_are_pinned(hcl: infra_rules.HclTree) -> None:
    text = (INFRA / "versions.tf").read_text()
    # 1.9: validations that read other variables (the name-length limits of AWS).
    assert 'required_version = ">= 1.9.0"' in text
    assert re.search(r'source\s+=\s+"hashicorp/aws"\s+version\s+=\s+">= 5.0, < 7.0"', text)
    assert re.search(
        r'source\s+=\s+"snowflakedb/snowflake"\s+version\s+=\s+">= 2.0.0, < 3.0.0"', text
    )


def test_backend_example_locks_the_state() -> None:
    text = (INFRA / "examples" / "complete" / "backend.tf.example").read_text()
    assert 'backend "s3"' in text
    assert "use_lockfile = true" in text
    assert "dynamodb_table" in text


# --- checkov venv ----------------------------------------------------------------------------------


def test_checkov_requirements_are_an_exact_closure() -> None:
    lines = [
        line.strip()
        for line in infra.CHECKOV_REQUIREMENTS.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[A-Za-z0-9_.+-]+", line) for line in lines), lines
    names = {line.split("==")[0].lower() for line in lines}
    assert {"checkov", "boto3", "packaging", "networkx"} <= names


def test_checkov_venv_is_built_from_the_pins(real_lint: subprocess.CompletedProcess[str]) -> None:
    checkov = infra.ensure_checkov()
    stamp = infra.CHECKOV_VENV / ".requirements.sha256"
    assert checkov.is_file()
    import hashlib

    expected = hashlib.sha256(infra.CHECKOV_REQUIREMENTS.read_bytes()).hexdigest()
    assert stamp.read_text().strip() == expected


# --- plan / apply / destroy ------------------------------------------------------------------------


def test_terraform_vars_come_from_mesh_yml() -> None:
    layout = load_layout(ROOT) if (ROOT / "mesh.yml").is_file() else DEFAULT_LAYOUT
    variables = infra.terraform_vars(layout, "prod", env={})
    assert variables["registry_bucket_name"] == "acme-dbt-mesh-registry"
    assert variables["registry_prefix"] == "mesh"
    projects = variables["projects"]
    assert projects["dbt_up"] == {
        "database": "DBT_UP_PROD",
        "warehouse": "DBT_UP_WH",
        "role": "DBT_UP_ROLE",
        "public_schema": "MARTS",
        "upstreams": [],
    }
    assert projects["dbt_down"]["upstreams"] == ["dbt_up"]
    assert variables["write_audit_publish"] is True
    assert projects["dbt_down_loom"]["warehouse"] == "DBT_DOWN_WH"
    assert "public_schema" not in projects["dbt_down"]

    overridden = infra.terraform_vars(layout, "prod", env={"MESH_REGISTRY": "s3://other/a/b"})
    assert (overridden["registry_bucket_name"], overridden["registry_prefix"]) == ("other", "a/b")
    off = infra.MeshLayout(
        layout.projects, {**layout.targets, "prod": {**layout.targets["prod"], "wap": "False"}}
    )
    assert infra.terraform_vars(off, "prod", env={})["write_audit_publish"] is False


def test_terraform_vars_refuse_a_non_s3_target() -> None:
    with pytest.raises(infra.ConfigError, match="s3://"):
        infra.terraform_vars(DEFAULT_LAYOUT, "local", env={})
    with pytest.raises(infra.ConfigError, match=r"not in mesh\.yml"):
        infra.terraform_vars(DEFAULT_LAYOUT, "staging", env={})


def test_var_file_is_temporary_json() -> None:
    with infra.var_file({"a": 1}) as path:
        assert json.loads(path.read_text()) == {"a": 1}
        assert not path.is_relative_to(ROOT)
    assert not path.exists()


def test_terraform_commands_pass_the_var_file(tmp_path: Path) -> None:
    tfvars = tmp_path / "x.tfvars.json"
    plan = infra.terraform_commands("plan", INFRA, tfvars)
    assert plan[0][1:] == ["init", "-input=false"]
    assert f"-var-file={tfvars}" in plan[1] and plan[1][1] == "plan"
    destroy = infra.terraform_commands("destroy", INFRA, tfvars, auto_approve=True)
    assert destroy[1][-1] == "-auto-approve"


def test_plan_refuses_a_terraform_older_than_1_9() -> None:
    env = dict(os.environ, MESH_TERRAFORM=str(infra.pinned_terraform()))
    result = invoke("infra.plan", env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "too old" in result.stderr and ">= 1.9.0" in result.stderr


@pytest.mark.parametrize("task", ["infra.destroy", "infra.apply"])
def test_destructive_tasks_refuse_without_a_terminal_or_yes(task: str) -> None:
    result = invoke(task)
    assert result.returncode == 2
    assert "--yes" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def _task_help(task: str) -> str:
    return invoke(task, "--help").stdout


@pytest.mark.parametrize(
    "task", ["infra.lint", "infra.plan", "infra.apply", "infra.destroy", "infra.verify"]
)
def test_every_infra_task_documents_its_options(task: str) -> None:
    text = _task_help(task)
    assert "Docstring:" in text and "Options:" in text
    options_section = text.split("Options:", 1)[1]
    lines = [line for line in options_section.splitlines() if line.strip().startswith("-")]
    assert lines
    for line in lines:
        option, _, help_text = line.strip().partition("   ")
        assert help_text.strip(), f"{task} {option} has no help"


@pytest.mark.parametrize(
    ("scope", "text", "expected"),
    [
        (
            "in_schema",
            '"${var.producer_database_name}"."${var.producer_public_schema}"',
            [("DBT_UP_PROD", "MARTS")],
        ),
        ("in_schema", '"DBT_UP_PROD"."FINANCE"', [("DBT_UP_PROD", "FINANCE")]),
        ("in_schema", '"DBT_UP_PROD"."${var.any}"', [("DBT_UP_PROD", None)]),
        (
            "in_schema",
            '"${var.db}"."MARTS"',
            [("DBT_DOWN_LOOM_PROD", "MARTS"), ("DBT_DOWN_PROD", "MARTS"), ("DBT_UP_PROD", "MARTS")],
        ),
        ("in_database", '"DBT_UP_PROD"', [("DBT_UP_PROD", None)]),
        (
            "in_database",
            "${var.producer_database_name}",
            [("DBT_DOWN_LOOM_PROD", None), ("DBT_DOWN_PROD", None), ("DBT_UP_PROD", None)],
        ),
    ],
)
def test_a_terraform_reference_names_every_place_it_can(
    scope: str, text: str, expected: list[tuple[str, str | None]]
) -> None:
    """Variables resolve to what mesh.yml can give them; an unknown schema is every schema."""
    assert schema_rules._candidate_places(scope, text, DEFAULT_LAYOUT) == expected


def test_a_schema_wide_grant_on_a_whole_database_names_its_private_models(parsed: Path) -> None:
    contents = infra.schema_contents(DEFAULT_LAYOUT, parsed)
    exposed = contents.non_public("DBT_UP_PROD", None)
    assert exposed is not None
    names = {n.name for n in exposed}
    assert {"customer_scoring", "stg_orders", "int_order_payments", "raw_orders"} <= names
    assert not names & {"public_orders", "public_daily_revenue"}
    assert contents.non_public("DBT_DOWN_PROD", "MARTS") is None  # dbt_down was not parsed
