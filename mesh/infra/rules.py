"""The infrastructure's own rules: the Terraform tree loaded as HCL and held to the rules checkov
does not know (public access, TLS, key rotation, read-only consumers, OIDC trust, grants from the
interface), what each Snowflake schema holds, and the SQL setup scripts' grants."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesh.core.errors import ConfigError, MeshError
from mesh.core.surface import hint
from mesh.registry.document import load_json
from mesh.warehouse.snowflake import (
    DEFAULT_LAYOUT,
    PRIVATE_SCHEMAS,
    MeshLayout,
    render_setup,
    unit_contexts,
)
from mesh.warehouse.snowflake_grants import GRANTABLE_TYPES, grant_statement_parts, node_access

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


