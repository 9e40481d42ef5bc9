"""infra/ checked against the providers' own schemas (mesh/infra/schemas.py), and the variable
validations that refuse what `terraform plan` would.

The schemas are the real ones: the pinned CDK for Terraform provider wheels, downloaded once into
the repository's cache (`.cache/provider-schemas`, shared with `invoke infra.lint`) and read from
there afterwards.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from mesh.core.errors import ConfigError
from mesh.infra import schemas as schema

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
AWS_ALL = "aws provider 5.5.0, 5.100.0, 6.25.0"


def invoke(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", "-c", "tasks_infra", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def tree(tmp_path: Path, main: str, *, aws: str = ">= 5.0, < 7.0") -> Path:
    """A one-module Terraform tree using the aws and snowflake providers."""
    root = tmp_path / "infra"
    root.mkdir()
    (root / "versions.tf").write_text(
        "terraform {\n  required_providers {\n"
        f'    aws = {{\n      source  = "hashicorp/aws"\n      version = "{aws}"\n    }}\n'
        '    snowflake = {\n      source  = "snowflakedb/snowflake"\n'
        '      version = ">= 2.0.0, < 3.0.0"\n    }\n  }\n}\n'
    )
    (root / "main.tf").write_text(main)
    return root


def problems(root: Path) -> list[str]:
    return [f"{where}: {message}" for where, message in schema.check_tree(root).problems]


# --- the real tree ---------------------------------------------------------------------------------


def test_infra_passes_against_every_allowed_pinned_version() -> None:
    result = schema.check_tree(INFRA)
    assert result.problems == []
    assert result.checked == {
        "hashicorp/aws": ["5.5.0", "5.100.0", "6.25.0"],
        "snowflakedb/snowflake": ["2.1.0", "2.11.0"],
    }
    notes = "\n".join(result.notes)
    assert "hashicorp/aws >= 5.0, < 7.0: checked 5.5.0, 5.100.0, 6.25.0" in notes
    assert "those below 5.5.0" in notes and "those after 6.25.0" in notes
    assert "allowed but without a package: 2.0.0, those after 2.11.0" in notes


def test_lint_fails_on_a_misspelled_and_a_missing_argument_naming_file_resource_argument(
    tmp_path: Path,
) -> None:
    copy = tmp_path / "infra"
    shutil.copytree(INFRA, copy, ignore=shutil.ignore_patterns(".terraform*"))
    main = copy / "modules" / "registry_bucket" / "main.tf"
    text = main.read_text()
    text = text.replace(
        '  versioning_configuration {\n    status = "Enabled"',
        '  versioning_configuration {\n    statuz = "Enabled"',
        1,
    )
    text = text.replace("  target_key_id = aws_kms_key.this.key_id\n", "")
    main.write_text(text)
    result = invoke("infra.lint", "--path", str(copy), "--skip-checkov")
    assert result.returncode == 1, result.stdout + result.stderr
    found = [line for line in result.stdout.splitlines() if line.startswith("[provider-schema]")]
    where = "infra/modules/registry_bucket/main.tf"
    assert found == [
        f"[provider-schema] {where}: aws_kms_alias.this: missing required argument "
        f'"target_key_id" ({AWS_ALL})',
        f"[provider-schema] {where}: aws_s3_bucket_versioning.this: unknown argument "
        f'"statuz" in block versioning_configuration ({AWS_ALL})',
        f"[provider-schema] {where}: aws_s3_bucket_versioning.this: missing required argument "
        f'"status" in block versioning_configuration ({AWS_ALL})',
    ]
    (error,) = result.stderr.strip().splitlines()
    assert "provider-schema" in error and "provider schemas: 3 finding(s)" in error


def test_a_module_call_is_held_to_the_module_variables(tmp_path: Path) -> None:
    copy = tmp_path / "infra"
    shutil.copytree(INFRA, copy, ignore=shutil.ignore_patterns(".terraform*"))
    main = copy / "main.tf"
    main.write_text(
        main.read_text().replace(
            "  bucket_name     = var.registry_bucket_name",
            "  bucket_nam      = var.registry_bucket_name",
        )
    )
    result = schema.check_tree(copy)
    assert result.problems == []
    where = "infra/main.tf: module.registry_bucket"
    assert result.module_calls == [
        (where, 'unknown argument "bucket_nam": ./modules/registry_bucket has no such variable'),
        (where, 'missing required argument "bucket_name" of ./modules/registry_bucket'),
    ]
    assert schema.check_tree(INFRA).module_calls == []


def test_infra_schemas_fills_the_cache_with_every_pin() -> None:
    result = invoke("infra.schemas")
    assert result.returncode == 0, result.stderr
    names = re.findall(
        r"^(cdktf-cdktf-provider-[a-z]+-[0-9.]+)\.v\d+\.json: \d+ KiB$", result.stdout, re.M
    )
    assert names == [
        "cdktf-cdktf-provider-aws-16.0.0",
        "cdktf-cdktf-provider-aws-20.1.0",
        "cdktf-cdktf-provider-aws-21.22.1",
        "cdktf-cdktf-provider-snowflake-15.0.0",
        "cdktf-cdktf-provider-snowflake-15.9.1",
    ]
    assert "infra.schemas: 5 schema(s) in" in result.stdout


# --- what the check refuses ------------------------------------------------------------------------


def test_blocks_arguments_and_literals_are_held_to_the_schema(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        """resource "aws_s3_bucket_versioning" "attr" {
  bucket                   = "b"
  versioning_configuration = { status = "Enabled" }
}

resource "aws_s3_bucket_versioning" "two" {
  bucket = "b"
  versioning_configuration {
    status = "Enabled"
  }
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket" "block" {
  bucket = "b"
  force_destroy {
  }
}

resource "aws_kms_key" "types" {
  enable_key_rotation     = "yes"
  deletion_window_in_days = "thirty"
  policy                  = ["not", "a", "string"]
  tags                    = ["not-a-map"]
}

resource "aws_s3_bucket_nope" "this" {
  bucket = "b"
}

data "aws_caller_identiti" "current" {}

resource "snowflake_warehouse" "this" {
  name         = "W"
  auto_suspend = var.seconds
  lifecycle {
    ignore_changes = [resource_monitr]
  }
}
""",
    )
    found = problems(root)  # resources of a file first, then its data sources
    sf = "snowflake provider 2.1.0, 2.11.0"
    m = "infra/main.tf"
    assert found == [
        f'{m}: aws_s3_bucket_versioning.attr: "versioning_configuration" is a block: write '
        f"versioning_configuration {{ … }}, not versioning_configuration = … (aws provider 5.100.0, 6.25.0)",
        f'{m}: aws_s3_bucket_versioning.two: "versioning_configuration" allows one block, found 2 ({AWS_ALL})',
        f'{m}: aws_s3_bucket.block: "force_destroy" is an argument, not a block: write force_destroy = … ({AWS_ALL})',
        f'{m}: aws_kms_key.types: argument "enable_key_rotation" must be true or false, not "yes" ({AWS_ALL})',
        f'{m}: aws_kms_key.types: argument "deletion_window_in_days" must be a number, not "thirty" ({AWS_ALL})',
        f'{m}: aws_kms_key.types: argument "policy" must be a string ({AWS_ALL})',
        f'{m}: aws_kms_key.types: argument "tags" must be a map ({AWS_ALL})',
        f'{m}: aws_s3_bucket_nope.this: unknown resource type "aws_s3_bucket_nope" ({AWS_ALL})',
        f'{m}: snowflake_warehouse.this: lifecycle ignore_changes names unknown argument "resource_monitr" ({sf})',
        f'{m}: data.aws_caller_identiti.current: unknown data source "aws_caller_identiti" ({AWS_ALL})',
    ]


def test_dynamic_blocks_and_meta_arguments(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        """data "aws_iam_policy_document" "this" {
  count = 1

  dynamic "statement" {
    for_each = [1]
    content {
      sid     = "ok"
      actionz = ["s3:GetObject"]
    }
  }

  dynamic "statment" {
    for_each = [1]
    content {}
  }
}

resource "aws_s3_bucket" "this" {
  for_each   = toset(["a"])
  provider   = aws.other
  bucket     = each.key
  depends_on = [data.aws_iam_policy_document.this]
  lifecycle {
    prevent_destroy = true
  }
}
""",
    )
    where = "infra/main.tf: data.aws_iam_policy_document.this"
    assert problems(root) == [
        f'{where}: unknown argument "actionz" in block statement ({AWS_ALL})',
        f'{where}: dynamic block "statment": no such nested block ({AWS_ALL})',
    ]


def test_only_pinned_versions_the_constraints_allow_are_checked(tmp_path: Path) -> None:
    root = tree(tmp_path, 'resource "aws_s3_bucket" "this" {\n  bucket = "b"\n}\n', aws="~> 5.0")
    result = schema.check_tree(root)
    assert result.problems == []
    assert result.checked == {"hashicorp/aws": ["5.5.0", "5.100.0"]}
    assert "hashicorp/aws: pinned 6.25.0 not checked, outside ~> 5.0" in result.notes


def test_a_constraint_no_pin_satisfies_is_a_finding(tmp_path: Path) -> None:
    root = tree(tmp_path, 'resource "aws_s3_bucket" "this" {\n  bucket = "b"\n}\n', aws=">= 7.0")
    (found,) = problems(root)
    assert found.startswith("infra: provider hashicorp/aws: none of the pinned versions")
    assert "is allowed by >= 7.0" in found


def test_a_provider_without_pins_is_a_finding(tmp_path: Path) -> None:
    root = tree(tmp_path, 'resource "random_id" "this" {\n  byte_length = 4\n}\n')
    assert problems(root) == [
        "infra: provider hashicorp/random: no package pinned in provider-schemas.toml"
    ]


@pytest.mark.parametrize(
    ("constraint", "allowed", "refused"),
    [
        (">= 5.0, < 7.0", ["5.0.0", "5.5.0", "6.25.0"], ["4.67.0", "7.0.0"]),
        ("~> 5.0", ["5.0.0", "5.100.0"], ["4.9.9", "6.0.0"]),
        ("~> 2.1.0", ["2.1.0", "2.1.9"], ["2.2.0", "2.0.9"]),
        ("~> 2", ["2.0.0", "2.11.0"], ["1.9.0", "3.0.0"]),
        ("2.1.0", ["2.1.0"], ["2.1.1"]),
        ("!= 2.5.0, >= 2.0.0", ["2.4.0", "2.6.0"], ["2.5.0", "1.0.0"]),
    ],
)
def test_terraform_version_constraints(
    constraint: str, allowed: list[str], refused: list[str]
) -> None:
    parsed = schema.Constraint(constraint)
    assert all(parsed.allows(schema.parse_version(v)) for v in allowed)
    assert not any(parsed.allows(schema.parse_version(v)) for v in refused)


def test_an_unreadable_constraint_is_bad_input() -> None:
    with pytest.raises(ConfigError, match="cannot read the version constraint"):
        schema.Constraint(">= five").allows((5, 0, 0))


# --- the pinned packages -----------------------------------------------------------------------------


def test_each_cached_schema_comes_from_its_pinned_provider_version() -> None:
    pins = schema.load_pins()
    for provider in pins.provider:
        for pin in provider.schemas:
            data: dict[str, Any] = orjson.loads(schema.ensure_schema(provider, pin).read_bytes())
            assert (data["source"], data["provider_version"]) == (
                provider.source,
                pin.provider_version,
            )
            assert data["package_version"] == pin.package_version
            assert data["resources"] and data["data_sources"]
    aws = schema.load_schema(schema.ensure_schema(pins.provider[0], pins.provider[0].schemas[-1]))
    versioning = aws["structs"][aws["resources"]["aws_s3_bucket_versioning"]]
    assert versioning["bucket"] == {"required": True, "type": "string"}
    nested = aws["structs"][versioning["versioning_configuration"]["nested"]]
    assert nested["status"]["required"] is True
    assert versioning["versioning_configuration"]["block"] is True


def test_a_pin_that_names_the_wrong_provider_version_is_refused(tmp_path: Path) -> None:
    pins = schema.load_pins()
    snowflake = pins.for_source("snowflakedb/snowflake")
    assert snowflake is not None
    wrong = snowflake.schemas[-1].model_copy(update={"provider_version": "2.10.0"})
    with pytest.raises(
        schema.ProviderSchemaError, match=r"generated from snowflakedb/snowflake 2\.11\.0, not"
    ):
        schema.ensure_schema(snowflake, wrong, tmp_path)
    assert not list(tmp_path.glob("*.json"))


def test_a_wheel_that_does_not_match_its_hash_is_refused(tmp_path: Path) -> None:
    pins = schema.load_pins()
    snowflake = pins.for_source("snowflakedb/snowflake")
    assert snowflake is not None
    forged = snowflake.schemas[0].model_copy(update={"sha256": "0" * 64})
    with pytest.raises(
        schema.ProviderSchemaError,
        match=r"cannot download cdktf-cdktf-provider-snowflake==15\.0\.0",
    ):
        schema.ensure_schema(snowflake, forged, tmp_path)


def test_a_bad_pins_file_is_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "provider-schemas.toml"
    bad.write_text(
        '[[provider]]\nsource = "hashicorp/aws"\npackage = "x"\npackaged = ["5.0.0", "6.0.0"]\n'
    )
    with pytest.raises(
        ConfigError, match=r"provider-schemas\.toml: provider\.0\.schema: Field required"
    ):
        schema.load_pins(bad)


# --- variable validations ---------------------------------------------------------------------------
#
# Evaluated, not just read: tests/tf_eval.py runs each validation's condition with Terraform's
# semantics on the inputs below (the venv's Terraform 1.0.3 cannot, and no newer one installs here).

ROOT_VARIABLES = INFRA / "variables.tf"
BUCKET_VARIABLES = INFRA / "modules" / "registry_bucket" / "variables.tf"
PUBLIC_SCHEMA = "Every public_schema must be one of the project's schemas"
BUCKET = "registry_bucket_name must be 3-51 characters"
RESERVED = "registry_bucket_name must not start with xn--"
ROLE = 'Every IAM role name "<name_prefix>-<project>-main" must fit in 64 characters'
PRIVATE = "public_schema must be an identifier other than RAW and STAGING"
UPSTREAM = "Every upstream must name another project of the mesh that has a public_schema"
LOG_ROOM = "bucket_name must be at most 51 characters when log_bucket_name is not set"
NO_DOT = "bucket_name must be 3-63 characters of a-z, 0-9 and '-'"
POLICY = 'Every IAM policy name "<bucket_name>-<project>-state-read" must fit in 128 characters'
MODULE_HEADS = (LOG_ROOM, NO_DOT, POLICY)


def root_inputs() -> dict[str, Any]:
    """What `invoke infra.plan` passes for the template's mesh.yml, plus the repository."""
    from mesh.infra.terraform import terraform_vars
    from mesh.warehouse.snowflake import load_layout

    return {**terraform_vars(load_layout(ROOT), "prod", env={}), "github_repository": "acme/mesh"}


def refused_by(path: Path, inputs: dict[str, Any]) -> list[str]:
    """The messages of the failing validations, cut to the start each test names."""
    from tests.tf_eval import refused

    heads = (PUBLIC_SCHEMA, BUCKET, RESERVED, ROLE, PRIVATE, UPSTREAM, *MODULE_HEADS)
    return [next((h for h in heads if m.startswith(h)), m) for m in refused(path, inputs)]


def with_project(inputs: dict[str, Any], name: str, **changes: Any) -> dict[str, Any]:
    projects = {**inputs["projects"], name: {**inputs["projects"].get(name, {}), **changes}}
    return {**inputs, "projects": projects}


def test_the_template_inputs_pass_every_validation() -> None:
    assert refused_by(ROOT_VARIABLES, root_inputs()) == []
    projects = {
        name: {"publishes": "public_schema" in p} for name, p in root_inputs()["projects"].items()
    }
    assert (
        refused_by(
            BUCKET_VARIABLES, {"bucket_name": "acme-dbt-mesh-registry", "projects": projects}
        )
        == []
    )


@pytest.mark.parametrize(
    ("case", "change", "expected"),
    [
        ("public schema outside schemas", lambda i: with_project(i, "dbt_up", public_schema="FINANCE"), [PUBLIC_SCHEMA]),
        ("public schema outside custom schemas", lambda i: with_project(i, "dbt_up", schemas=["RAW", "GOLD"]), [PUBLIC_SCHEMA]),
        ("public schema in custom schemas", lambda i: with_project(i, "dbt_up", schemas=["RAW", "GOLD"], public_schema="GOLD"), []),
        ("public schema STAGING", lambda i: with_project(i, "dbt_up", public_schema="STAGING"), [PRIVATE]),
        ("bucket with a dot", lambda i: {**i, "registry_bucket_name": "acme.dbt-mesh"}, [BUCKET]),
        ("bucket of 52", lambda i: {**i, "registry_bucket_name": "a" * 52}, [BUCKET]),
        ("bucket of 51", lambda i: {**i, "registry_bucket_name": "a" * 51}, []),
        ("bucket S3 reserves", lambda i: {**i, "registry_bucket_name": "xn--acme"}, [RESERVED]),
        ("role of 65", lambda i: with_project({**i, "name_prefix": "p" * 31}, "q" * 28, database="Q", warehouse="W", role="R"), [ROLE]),
        ("role of 64", lambda i: with_project({**i, "name_prefix": "p" * 31}, "q" * 27, database="Q", warehouse="W", role="R"), []),
        ("upstream that publishes nothing", lambda i: with_project(i, "dbt_down_loom", upstreams=["dbt_down"]), [UPSTREAM]),
    ],
)  # fmt: skip
def test_a_bad_input_is_refused_by_its_own_validation(
    case: str, change: Callable[[dict[str, Any]], dict[str, Any]], expected: list[str]
) -> None:
    assert refused_by(ROOT_VARIABLES, change(root_inputs())) == expected, case


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        ({"bucket_name": "a" * 52}, [LOG_ROOM]),
        ({"bucket_name": "a" * 63, "log_bucket_name": "acme-logs"}, []),
        ({"bucket_name": "acme.registry"}, [NO_DOT]),
        ({"bucket_name": "a" * 63, "log_bucket_name": "acme-logs", "projects": {"p" * 63: {"publishes": True}}},
         [POLICY]),
    ],
)  # fmt: skip
def test_the_registry_bucket_module_refuses_names_aws_would(
    inputs: dict[str, Any], expected: list[str]
) -> None:
    assert (
        refused_by(BUCKET_VARIABLES, {"projects": {"dbt_up": {"publishes": True}}, **inputs})
        == expected
    )


def test_the_evaluator_keeps_terraform_semantics() -> None:
    """Both sides of || are evaluated (a null in contains() is an error, as in Terraform), and an
    unknown construct is an error rather than a pass."""
    from tests.tf_eval import TfEvalError, evaluate

    scope = {"var": {"p": None, "l": ["A"]}}
    with pytest.raises(TfEvalError, match="must not be null"):
        evaluate("var.p == null || contains(var.l, var.p)", scope)
    assert evaluate('var.p == null || contains(var.l, coalesce(var.p, "-"))', scope) is True
    assert evaluate('alltrue([for k, v in {a = 1, b = 2} : v > 0 if k != "b"])', scope) is True
    assert evaluate('length("${upper("ab")}-${replace("a_b", "_", "-")}")', scope) == 6
    with pytest.raises(TfEvalError):
        evaluate("var.l[*]", scope)
