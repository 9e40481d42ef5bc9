"""infra/ checked against the providers' own schemas (mesh/infra_schema.py), and the variable
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
from pathlib import Path
from typing import Any

import orjson
import pytest

from mesh import infra_schema as schema
from mesh.errors import ConfigError

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


def validations(path: Path) -> dict[str, list[dict[str, str]]]:
    import hcl2
    from hcl2.utils import SerializationOptions

    options = SerializationOptions(
        strip_string_quotes=True, explicit_blocks=False, with_comments=False
    )
    data = hcl2.loads(path.read_text(), serialization_options=options)
    return {
        name: body.get("validation", [])
        for entry in data["variable"]
        for name, body in entry.items()
    }


def regex_of(condition: str) -> re.Pattern[str]:
    """The one regex literal of a `can(regex("…", var.x))` condition."""
    (literal,) = re.findall(r'regex\("((?:[^"\\]|\\.)*)"', condition)
    return re.compile(literal.replace("\\\\", "\\"))


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("acme-dbt-mesh-registry", True),
        ("a" * 51, True),
        ("a" * 52, False),  # "-access-logs" would make the log bucket 64 characters
        ("acme.dbt.mesh", False),  # the KMS alias alias/<bucket> allows no "."
        ("-acme", False),
        ("ab", False),
    ],
)
def test_root_bucket_name_validation(name: str, valid: bool) -> None:
    (shape, reserved) = validations(INFRA / "variables.tf")["registry_bucket_name"]
    ok = bool(regex_of(shape["condition"]).fullmatch(name)) and not regex_of(
        reserved["condition"]
    ).search(name)
    assert ok is valid
    if valid:
        assert len(f"{name}-access-logs") <= 63 and len(f"alias/{name}") <= 256


@pytest.mark.parametrize("name", ["xn--acme", "sthree-acme", "acme-s3alias", "acme--ol-s3"])
def test_root_bucket_name_refuses_names_s3_reserves(name: str) -> None:
    (_shape, reserved) = validations(INFRA / "variables.tf")["registry_bucket_name"]
    assert regex_of(reserved["condition"]).search(name)
    assert "S3 reserves them" in reserved["error_message"]


def test_module_bucket_name_refuses_a_dot_and_leaves_room_for_the_log_bucket() -> None:
    (shape, room) = validations(INFRA / "modules" / "registry_bucket" / "variables.tf")[
        "bucket_name"
    ]
    assert not regex_of(shape["condition"]).fullmatch("acme.registry")
    assert regex_of(shape["condition"]).fullmatch("a" * 63)
    assert room["condition"] == "${var.log_bucket_name != null || length(var.bucket_name) <= 51}"
    assert "-access-logs" in room["error_message"]


def test_projects_validations_refuse_what_plan_would() -> None:
    checks = validations(INFRA / "variables.tf")["projects"]
    by_message = {v["error_message"].split(":")[0]: v["condition"] for v in checks}
    public = by_message[
        "Every public_schema must be one of the project's schemas (default RAW, STAGING, MARTS)"
    ]
    assert "contains(p.schemas, coalesce(p.public_schema" in public
    role = by_message[
        'Every IAM role name "<name_prefix>-<project>-main" must fit in 64 characters'
    ]
    assert '${var.name_prefix}-${replace(name, "_", "-")}-main' in role and "<= 64" in role
    # With the longest name_prefix (31) a 27-character project fits; the "-main" role is the longer.
    assert len(f"{'p' * 31}-{'q' * 27}-main") == 64
    policies = validations(INFRA / "modules" / "registry_bucket" / "variables.tf")["projects"]
    assert any("-state-read" in v["condition"] and "<= 128" in v["condition"] for v in policies)
    # The root's 51-character bucket and 63-character project names fit the 128 of IAM policies.
    assert len(f"{'b' * 51}-{'p' * 63}-state-read") <= 128
