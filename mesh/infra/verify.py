"""A proof kit for a real account: what the emulators cannot show, run in throwaway objects.

`invoke snowflake.verify` and `invoke infra.verify` run the mesh's own code paths (the grant
statements `snowflake.grants` and write-audit-publish run, the registry's conditional writes, the
IAM policy Terraform renders) against the account the usual settings point at, in objects they
create under a random name and always drop again, on failure and on Ctrl-C too. Each check prints
one line: PASS, FAIL with the reason, or "needs a real account" when the target is an emulator on
loopback (fakesnow has no roles, grants, SWAP or real CLONE; moto enforces neither bucket policies
nor IAM unless switched on server-wide), where everything else still runs.

Snowflake checks (as the role of SNOWFLAKE_ROLE, which must create databases and roles and grant
them, e.g. ACCOUNTADMIN, or SYSADMIN with SECURITYADMIN's grants):
a consumer role reads a published relation and is refused a protected one of the same schema;
per-relation SELECT and its revoke; a zero-copy clone holds the data and diverges from it; and
`ALTER DATABASE … SWAP WITH` with the database's grants carried the way write-audit-publish
carries them.

S3 and IAM checks (in a throwaway prefix of the registry bucket, with the caller's credentials):
history is create-only (If-None-Match), `latest` is compare-and-swap (If-Match), the bucket policy
refuses a history write without If-None-Match, and a role holding the publisher policy Terraform
renders for one project may write that project's prefix and is refused another project's.
"""

from __future__ import annotations

import contextlib
import functools
import json
import secrets
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from ipaddress import ip_address
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from mesh.core.errors import CheckFailedError, ConfigError, ConflictError, MeshError, RegistryError
from mesh.core.names import new_version, sha256_hex
from mesh.infra import rules
from mesh.infra import terraform as infra
from mesh.warehouse import snowflake as sf
from mesh.warehouse import snowflake_grants as sf_grants
from mesh.warehouse import snowflake_wap as wap
from mesh.warehouse.snowflake import SnowflakeExecutionError

if TYPE_CHECKING:
    from mesh.registry.s3 import S3Registry
    from mesh.warehouse.snowflake import ConnectionSettings, Session

PASS = "pass"
FAIL = "fail"
REAL_ONLY = "needs a real account"
CLEANUP_TIMEOUT_S = 120.0
ROLE_PROPAGATION_S = 60.0


class VerifyFailedError(CheckFailedError):
    """At least one check failed, or a throwaway object could not be dropped."""


class CheckError(Exception):
    """One check did not hold; the message says what was seen instead."""


@dataclass
class CheckResult:
    name: str
    status: str
    detail: str = ""

    def __str__(self) -> str:
        label = {PASS: "PASS", FAIL: "FAIL", REAL_ONLY: "SKIP"}[self.status]
        detail = f": {self.detail}" if self.detail else ""
        if self.status == REAL_ONLY:
            detail = f": {REAL_ONLY}{f' ({self.detail})' if self.detail else ''}"
        return f"{label}  {self.name}{detail}"


@dataclass
class Verification:
    """Runs checks in order, prints each, and undoes what they created (last first)."""

    what: str
    emulated: bool
    say: Callable[[str], None] = print
    results: list[CheckResult] = field(default_factory=list)
    _undo: list[tuple[str, Callable[[], object]]] = field(default_factory=list)

    def check(
        self, name: str, action: Callable[[], str | None], *, real_only: bool = False
    ) -> bool:
        """Run one check; True when it passed. `action` returns a detail or raises CheckError."""
        if real_only and self.emulated:
            return self._record(CheckResult(name, REAL_ONLY))
        try:
            detail = action() or ""
        except (CheckError, MeshError) as exc:
            return self._record(CheckResult(name, FAIL, str(exc)))
        return self._record(CheckResult(name, PASS, detail))

    def skip(self, name: str, why: str) -> None:
        self._record(CheckResult(name, REAL_ONLY if self.emulated else FAIL, why))

    def _record(self, result: CheckResult) -> bool:
        self.results.append(result)
        self.say(str(result))
        return result.status == PASS

    def on_cleanup(self, what: str, undo: Callable[[], object]) -> None:
        self._undo.append((what, undo))

    def cleanup(self) -> None:
        """Undo everything registered, last first; a failure is a failed check naming the object."""
        left = []
        while self._undo:
            what, undo = self._undo.pop()
            try:
                undo()
            except Exception as exc:  # every leftover must be named, whatever went wrong
                left.append(f"{what} ({' '.join(str(exc).split())[:200]})")
        if left:
            self._record(CheckResult("throwaway objects dropped", FAIL, "left: " + "; ".join(left)))
        else:
            self._record(CheckResult("throwaway objects dropped", PASS))

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == FAIL]

    def summary(self) -> str:
        counts = {
            status: sum(r.status == status for r in self.results)
            for status in (PASS, FAIL, REAL_ONLY)
        }
        text = f"{self.what}: {counts[PASS]} check(s) passed, {counts[FAIL]} failed"
        if counts[REAL_ONLY]:
            text += f", {counts[REAL_ONLY]} need a real account (this is an emulator)"
        return text

    def finish(self) -> str:
        """The summary line; raises VerifyFailedError (exit 1) naming the failed checks."""
        if self.failed:
            names = ", ".join(r.name for r in self.failed)
            raise VerifyFailedError(f"{self.summary()}: {names}")
        return self.summary()


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a CI runner cancelling) unwinds like Ctrl-C, so cleanup still runs."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: nothing to install
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(verification: Verification, steps: Callable[[Verification], None]) -> str:
    """Run `steps`, always clean up (on Ctrl-C and SIGTERM too), then summarise."""
    with _terminate_as_interrupt():
        try:
            steps(verification)
        except KeyboardInterrupt:
            verification.say("interrupted: dropping the throwaway objects")
            verification.cleanup()
            raise
        except BaseException:
            verification.cleanup()
            raise
        verification.cleanup()
    return verification.finish()


def is_loopback(host: str | None) -> bool:
    """Whether `host` names this machine: where the emulators run, never a real account."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def throwaway_id() -> str:
    return secrets.token_hex(4)


# --- Snowflake -----------------------------------------------------------------------------------


def _interface(
    database: str, schema: str, public: list[str], protected: list[str]
) -> dict[str, Any]:
    """A published interface as the registry holds it, for the grant code to read."""
    nodes = {}
    for name in [*public, *protected]:
        nodes[f"model.mesh_verify.{name.lower()}"] = {
            "resource_type": "model",
            "name": name.lower(),
            "database": database,
            "schema": schema,
            "alias": name,
            "access": "public" if name in public else "protected",
            "config": {"materialized": "table"},
        }
    return {"nodes": nodes}


def _refused(session: Session, statement: str) -> str:
    """The error Snowflake gives for `statement`; CheckError when it runs instead."""

    try:
        rows = session.run(statement)
    except SnowflakeExecutionError as exc:
        return str(exc).rsplit(": ", 1)[-1]
    raise CheckError(f"`{statement}` ran (returned {rows}) where it must be refused")


def _count(session: Session, table: str) -> int:
    rows = session.run(f"SELECT COUNT(*) FROM {table}") or []
    return int(rows[0][0]) if rows else -1


def verify_snowflake(
    settings: ConnectionSettings | None = None, *, say: Callable[[str], None] = print
) -> str:
    """Run the Snowflake checks; the summary line, or VerifyFailedError naming failed checks."""

    settings = settings or sf.connection_settings_from_env()
    emulated = is_loopback(settings.host)
    ident = throwaway_id().upper()
    database = f"MESH_VERIFY_{ident}"
    role = f"MESH_VERIFY_{ident}_CONSUMER"
    schema, public, protected = "MARTS", "PUBLIC_ORDERS", "CUSTOMER_SCORING"
    plan = wap.WapPlan(
        project="mesh_verify",
        database=database,
        audit_database=database + wap.AUDIT_SUFFIX,
        role=settings.role,
        public_schema=schema,
        consumer_roles=(role,),
    )
    interface = _interface(database, schema, [public], [protected])
    withdrawn = _interface(database, schema, [], [public, protected])
    where = f"{settings.host}:{settings.port}" if emulated else f"account {settings.account}"
    verification = Verification("snowflake.verify", emulated, say)
    say(f"snowflake.verify on {where} as {settings.user} ({settings.role}), in {database}")
    admin = sf.Session(replace(settings, query_tag="dbt-mesh-verify"), label="snowflake.verify")
    consumer: list[Session] = []

    def consumer_session() -> Session:
        if not consumer:
            consumer.append(
                sf.Session(
                    replace(settings, role=role, query_tag="dbt-mesh-verify"),
                    label=f"snowflake.verify as {role}",
                )
            )
        return consumer[0]

    def steps(v: Verification) -> None:
        def create() -> str:
            if emulated:
                # fakesnow cannot DROP DATABASE: drop what is inside, and say what stays.
                v.on_cleanup(
                    f"schema {database}.{schema}",
                    lambda: admin.run(f"DROP SCHEMA IF EXISTS {database}.{schema}"),
                )
                for table in (public, protected):
                    fqn = f"{database}.{schema}.{table}"
                    v.on_cleanup(
                        f"table {fqn}", functools.partial(admin.run, f"DROP TABLE IF EXISTS {fqn}")
                    )
            else:
                v.on_cleanup(
                    f"database {plan.audit_database}",
                    lambda: admin.run(f"DROP DATABASE IF EXISTS {plan.audit_database}"),
                )
                v.on_cleanup(
                    f"database {database}", lambda: admin.run(f"DROP DATABASE IF EXISTS {database}")
                )
            admin.run(f"CREATE DATABASE {database}")
            admin.run(f"CREATE SCHEMA {database}.{schema}")
            admin.run(f"CREATE TABLE {database}.{schema}.{public} AS SELECT 1 AS ID")
            admin.run(f"CREATE TABLE {database}.{schema}.{protected} AS SELECT 2 AS ID")
            if _count(admin, f"{database}.{schema}.{public}") != 1:
                raise CheckError(f"{database}.{schema}.{public} does not read back one row")
            return f"{database}.{schema} with {public} (public) and {protected} (protected)"

        if not v.check("throwaway database, schema and tables", create):
            return

        def consumer_role() -> str:
            v.on_cleanup(f"role {role}", lambda: admin.run(f"DROP ROLE IF EXISTS {role}"))
            admin.run(f"CREATE ROLE {role}")
            user = (admin.run("SELECT CURRENT_USER()") or [("",)])[0][0]
            warehouse = (admin.run("SELECT CURRENT_WAREHOUSE()") or [(None,)])[0][0]
            if not warehouse:
                raise CheckError(
                    f"{settings.user} has no default warehouse for the consumer to use"
                )
            admin.run(f'GRANT ROLE {role} TO USER "{user}"')
            admin.run(f"GRANT USAGE ON WAREHOUSE {warehouse} TO ROLE {role}")
            for statement in sf_grants.grants_for_interface(interface, [role], producer_database=database):
                admin.run(statement)
            return f"{role}, granted what `snowflake.grants` grants for the interface"

        role_ready = v.check(
            "consumer role with the interface's grants", consumer_role, real_only=True
        )

        def reads_public() -> str:
            rows = _count(consumer_session(), f"{database}.{schema}.{public}")
            if rows != 1:
                raise CheckError(f"{role} read {rows} row(s) of {public}, not 1")
            return f"{role} reads {database}.{schema}.{public}"

        def refused_protected() -> str:
            reason = _refused(
                consumer_session(), f"SELECT COUNT(*) FROM {database}.{schema}.{protected}"
            )
            return f"{role} refused {protected}: {reason}"

        def revoke() -> str:
            changes = sf_grants.grant_changes(interface, withdrawn, [role], producer_database=database)
            if not changes.revokes:
                raise CheckError("grant_changes revoked nothing for a withdrawn relation")
            for statement in changes.revokes:
                admin.run(statement)
            reason = _refused(
                consumer_session(), f"SELECT COUNT(*) FROM {database}.{schema}.{public}"
            )
            for statement in sf_grants.grants_for_interface(interface, [role], producer_database=database):
                admin.run(statement)  # published again, for the swap below
            if _count(consumer_session(), f"{database}.{schema}.{public}") != 1:
                raise CheckError(f"{public} is not readable again after its SELECT was re-granted")
            return f"{'; '.join(changes.revokes)} refused the next read ({reason}); granted again"

        def clone() -> str:
            for statement in wap.prepare_statements(plan):
                admin.run(statement)
            copied = _count(admin, f"{plan.audit_database}.{schema}.{public}")
            if copied != 1:
                raise CheckError(f"the clone holds {copied} row(s) of {public}, not 1")
            admin.run(f"INSERT INTO {plan.audit_database}.{schema}.{public} VALUES (3)")
            if _count(admin, f"{database}.{schema}.{public}") != 1:
                raise CheckError(f"a row written to the clone appeared in {database}")
            return (
                f"{plan.audit_database} holds the data; a write to it leaves {database} unchanged"
            )

        def swap() -> str:
            shown = admin.records(f"SHOW GRANTS ON DATABASE {database}")
            carried, shares = wap.carried_grants(plan, shown)
            if shares:
                raise CheckError(f"{database} is shared with {', '.join(shares)}")
            statements = [
                *carried,
                *wap.consumer_grant_statements(plan, interface, interface),
                wap.swap_statements(plan)[0],
            ]
            for statement in statements:
                admin.run(statement)
            rows = _count(consumer_session(), f"{database}.{schema}.{public}")
            if rows != 2:
                raise CheckError(
                    f"after the swap {role} reads {rows} row(s) of {public}, not the clone's 2"
                )
            _refused(consumer_session(), f"SELECT COUNT(*) FROM {database}.{schema}.{protected}")
            return (
                f"{role} reads the swapped-in copy ({len(carried)} database grant(s) carried) "
                f"and is still refused {protected}"
            )

        if role_ready or v.emulated:
            v.check("consumer reads a public relation", reads_public, real_only=True)
            v.check("consumer is refused a protected relation", refused_protected, real_only=True)
            v.check("per-relation SELECT revoked and granted again", revoke, real_only=True)
        else:
            for name in (
                "consumer reads a public relation",
                "consumer is refused a protected relation",
                "per-relation SELECT revoked and granted again",
            ):
                v.skip(name, "no consumer role")
        cloned = v.check("zero-copy clone", clone, real_only=True)
        if cloned or v.emulated:
            v.check("ALTER DATABASE … SWAP WITH carries the grants", swap, real_only=True)
        else:
            v.skip("ALTER DATABASE … SWAP WITH carries the grants", "no clone to swap in")

    try:
        return run(verification, steps)
    finally:
        for session in consumer:
            session.close()
        admin.close()
        if emulated:
            say(f"note: fakesnow cannot DROP DATABASE; the empty {database} stays until it stops")


# --- S3 and IAM ----------------------------------------------------------------------------------


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code") or "")


def publisher_policy(
    bucket: str, prefix: str, project: str, kms_key_arn: str, partition: str = "aws"
) -> dict[str, Any]:
    """The publisher policy infra/modules/registry_bucket renders for `project`, as IAM JSON.

    Read from the Terraform itself (data.aws_iam_policy_document.publisher), so the check proves
    what is deployed, not a copy of it.
    """

    tree = rules.load_hcl(infra.INFRA_DIR)
    docs = [d for d in tree.of_type("data", "aws_iam_policy_document") if d.name == "publisher"]
    if len(docs) != 1:
        raise ConfigError("infra/ has no single data.aws_iam_policy_document.publisher")
    values = {
        "${local.registry_arn}": f"arn:{partition}:s3:::{bucket}/{prefix}",
        "${each.key}": project,
        "${aws_kms_key.this.arn}": kms_key_arn,
    }

    def render(text: str) -> str:
        for name, value in values.items():
            text = text.replace(name, value)
        if "${" in text:
            raise ConfigError(f"cannot render {text!r} of the publisher policy")
        return text

    statements = []
    for statement in rules._statements(docs[0]):
        statements.append(
            {
                "Sid": statement.get("sid", ""),
                "Effect": statement.get("effect", "Allow"),
                "Action": [render(a) for a in statement.get("actions", [])],
                "Resource": [render(r) for r in statement.get("resources", [])],
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def _delete_prefix(client: Any, bucket: str, prefix: str) -> None:
    """Delete every object version and delete marker under `prefix` (versioned buckets too)."""
    deadline = time.monotonic() + CLEANUP_TIMEOUT_S
    paginator = client.get_paginator("list_object_versions")
    while time.monotonic() < deadline:
        doomed = []
        try:
            pages = list(paginator.paginate(Bucket=bucket, Prefix=prefix))
        except Exception as exc:
            if _code(exc) == "NoSuchBucket":
                return  # nothing was created
            raise
        for page in pages:
            for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                doomed.append({"Key": item["Key"], "VersionId": item["VersionId"]})
        if not doomed:
            return
        for start in range(0, len(doomed), 1000):
            answer = client.delete_objects(
                Bucket=bucket, Delete={"Objects": doomed[start : start + 1000], "Quiet": True}
            )
            errors = answer.get("Errors", [])
            if errors:
                first = errors[0]
                raise CheckError(
                    f"cannot delete {first.get('Key')}: {first.get('Code')} {first.get('Message', '')}"
                )
    raise CheckError(
        f"objects under s3://{bucket}/{prefix} were still listed after {CLEANUP_TIMEOUT_S:.0f} s"
    )


def verify_s3(registry: S3Registry, *, say: Callable[[str], None] = print) -> str:
    """Run the S3 and IAM checks in a throwaway prefix of `registry`'s bucket."""
    from botocore.exceptions import BotoCoreError, ClientError


    client = registry.client
    endpoint = str(client.meta.endpoint_url)
    emulated = is_loopback(urlparse(endpoint).hostname)
    ident = throwaway_id()
    project, other, env = f"verify_{ident}_a", f"verify_{ident}_b", "verify"
    base = f"{registry.prefix}/" if registry.prefix else ""
    verification = Verification("infra.verify", emulated, say)
    say(f"infra.verify on {endpoint}, in {registry.url}/{project}/ and /{other}/")
    body = json.dumps({"nodes": {}, "verify": ident}).encode()
    first, second = new_version(sha256_hex(body)), new_version(sha256_hex(body + b"\n"))

    def steps(v: Verification) -> None:
        for name in (project, other):
            v.on_cleanup(
                f"s3://{registry.bucket}/{base}{name}/",
                functools.partial(_delete_prefix, client, registry.bucket, f"{base}{name}/"),
            )

        def create_only() -> str:
            registry.create_version(project, env, first, body)
            try:
                registry.create_version(project, env, first, body + b" ")
            except RegistryError as exc:
                if "exists already" not in str(exc):
                    raise
                return "a second PUT of the same history key got 412 (If-None-Match: *)"
            raise CheckError("a second PUT of the same history key was accepted")

        def compare_and_swap() -> str:
            registry.create_version(project, env, second, body + b"\n")
            token = registry.swap_latest(project, env, first, body, None)
            fresh = registry.swap_latest(project, env, second, body + b"\n", token)
            try:
                registry.swap_latest(project, env, first, body, token)
            except ConflictError:
                entry = registry.read_latest(project, env)
                if entry is None or entry.version != second:
                    raise CheckError("a refused swap still changed latest") from None
                return f"a swap with the stale ETag {token} was refused (If-Match); {fresh} stays"
            raise CheckError("a swap with a stale ETag was accepted")

        def history_policy() -> str:
            key = f"{base}{project}/{env}/history/{first}/manifest.json"
            try:
                client.put_object(Bucket=registry.bucket, Key=key, Body=b"{}")
            except ClientError as exc:
                if _code(exc) == "AccessDenied":
                    return (
                        "an overwrite without If-None-Match got AccessDenied (DenyHistoryOverwrite)"
                    )
                raise CheckError(
                    f"an overwrite without If-None-Match failed with {_code(exc)}"
                ) from exc
            raise CheckError(
                "the bucket policy let a PUT without If-None-Match overwrite a history entry: is "
                "enforce_create_only_history on (infra/modules/registry_bucket)?"
            )

        def publisher_scope() -> str:
            import boto3

            session = boto3.session.Session()
            sts = session.client("sts", region_name=client.meta.region_name)
            iam = session.client("iam", region_name=client.meta.region_name)
            caller = sts.get_caller_identity()
            partition = caller["Arn"].split(":")[1]
            try:
                encryption = client.get_bucket_encryption(Bucket=registry.bucket)
                rule = encryption["ServerSideEncryptionConfiguration"]["Rules"][0]
                key = rule["ApplyServerSideEncryptionByDefault"].get("KMSMasterKeyID", "")
            except (ClientError, KeyError, IndexError):
                key = ""
            key = key if key.startswith("arn:") else "*"
            policy = publisher_policy(registry.bucket, registry.prefix, project, key, partition)
            name = f"mesh-verify-{ident}"
            trust = {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": f"arn:{partition}:iam::{caller['Account']}:root"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
            v.on_cleanup(f"IAM role {name}", lambda: iam.delete_role(RoleName=name))
            iam.create_role(
                RoleName=name,
                AssumeRolePolicyDocument=json.dumps(trust),
                Description="dbt mesh infra.verify: deleted when the run ends",
            )
            v.on_cleanup(
                f"inline policy of {name}",
                lambda: iam.delete_role_policy(RoleName=name, PolicyName="publisher"),
            )
            iam.put_role_policy(
                RoleName=name, PolicyName="publisher", PolicyDocument=json.dumps(policy)
            )
            role_arn = iam.get_role(RoleName=name)["Role"]["Arn"]
            deadline = time.monotonic() + ROLE_PROPAGATION_S
            while True:  # IAM is eventually consistent: a new role can be assumed after seconds
                try:
                    creds = sts.assume_role(RoleArn=role_arn, RoleSessionName=name)["Credentials"]
                    break
                except ClientError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(3)
            scoped = boto3.session.Session(
                aws_access_key_id=creds["AccessKeyId"],
                aws_secret_access_key=creds["SecretAccessKey"],
                aws_session_token=creds["SessionToken"],
            ).client("s3", region_name=client.meta.region_name, config=client.meta.config)
            own = f"{base}{project}/{env}/usage/manifest.json"
            foreign = f"{base}{other}/{env}/usage/manifest.json"
            deadline = time.monotonic() + ROLE_PROPAGATION_S
            while True:  # the inline policy propagates on its own clock too
                try:
                    scoped.put_object(Bucket=registry.bucket, Key=own, Body=b"{}")
                    break
                except ClientError as exc:
                    if _code(exc) != "AccessDenied" or time.monotonic() > deadline:
                        raise CheckError(
                            f"the publisher role cannot write its own prefix: {_code(exc)}"
                        ) from exc
                    time.sleep(3)
            try:
                scoped.put_object(Bucket=registry.bucket, Key=foreign, Body=b"{}")
            except ClientError as exc:
                if _code(exc) == "AccessDenied":
                    return f"{name} wrote {project}/ and got AccessDenied on {other}/"
                raise CheckError(
                    f"writing another project's prefix failed with {_code(exc)}"
                ) from exc
            raise CheckError(f"the publisher role of {project} wrote {other}'s prefix")

        def guarded(action: Callable[[], str]) -> Callable[[], str]:
            def wrapped() -> str:
                try:
                    return action()
                except (ClientError, BotoCoreError) as exc:
                    raise CheckError(" ".join(str(exc).split())) from exc

            return wrapped

        v.check("history is create-only (If-None-Match)", guarded(create_only))
        v.check("latest is compare-and-swap (If-Match)", guarded(compare_and_swap))
        v.check(
            "the bucket policy refuses a history write without If-None-Match",
            guarded(history_policy),
            real_only=True,
        )
        v.check(
            "a project's publisher role is refused another project's prefix",
            guarded(publisher_scope),
            real_only=True,
        )

    return run(verification, steps)
