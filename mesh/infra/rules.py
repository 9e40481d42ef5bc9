"""The infrastructure's own rules: the Terraform tree loaded as HCL and held to the rules checkov
does not know (public access, TLS, key rotation, read-only consumers, OIDC trust, grants from the
interface). What each Snowflake schema holds and the SQL setup scripts' grants are judged in
mesh.infra.schema_rules, which also runs all of them (`check_hcl`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesh.core.errors import MeshError
from mesh.warehouse.snowflake import (
    PRIVATE_SCHEMAS,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA_DIR = REPO_ROOT / "infra"
STACK_DIR = INFRA_DIR / "examples" / "complete"
SQL_DIR = REPO_ROOT / "snowflake_sql"
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


@dataclass(frozen=True)
class Finding:
    """One failed rule: its name, where, and why."""

    rule: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.where}: {self.message}"




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
