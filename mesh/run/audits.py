"""Audits beyond dbt's tests: mesh.yml `audits:` of a project, a list of `{name, run}` shell
commands run after dbt's tests, against the audit copy, before the swap.

Each runs from the project's folder with the build's environment (what dbt's profile read to build
into the audit copy) plus:

    MESH_PROJECT         the project
    MESH_TARGET, MESH_ENV  the mesh target and its registry env
    MESH_DBT_TARGET      the dbt output the build used (`dbt ... --target "$MESH_DBT_TARGET"`)
    MESH_AUDIT_LOCATION  the audit copy: the DuckDB file, or the Snowflake audit database
    MESH_AUDIT_LIVE      `true` when the target has `wap: false`: the command reads live data,
                         and a failure can only block the publish

A non-zero exit (or running past `timeout_seconds`) fails the audit: the run stops there like a
failing dbt test, the audit copy is discarded, nothing is swapped or published. Each result (name,
passed, seconds, the last line it printed) is kept with the run: in the freshness record of the
build and, when the publish writes a history entry, in that entry (`registry.show` prints them).
Their whole output goes to the project's log.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from mesh.core.errors import AuditFailedError
from mesh.project.config import Mesh
from mesh.warehouse.readers import release_dbt_connections
from mesh.warehouse.wap import DuckDBAudit, SnowflakeAudit

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class AuditResult:
    name: str
    passed: bool
    seconds: float
    last_line: str
    exit_code: int | None  # None: stopped at its timeout

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "seconds": round(self.seconds, 2),
            "last_line": self.last_line,
        }

    def line(self) -> str:
        return f"{self.name} {'passed' if self.passed else 'FAILED'} {self.seconds:.1f}s"


def audit_location(audit: Any, mesh: Mesh, name: str) -> str:
    """Where the audits read: the audit copy, or (no write-audit-publish) the live build."""
    if isinstance(audit, DuckDBAudit):
        return str(audit.audit)
    if isinstance(audit, SnowflakeAudit):
        return audit.plan.audit_database
    return "live"


def run_audits(mesh: Mesh, name: str, audit: Any, build_env: dict[str, str]) -> list[AuditResult]:
    """Run the project's audits in order; stop at the first that fails, raising AuditFailedError
    naming it (with its exit code and last line)."""
    audits = mesh.config.projects[name].audits
    if not audits:
        return []
    release_dbt_connections()  # no DuckDB file of this process stays open while they read it
    project = mesh.project(name)
    env = {
        **os.environ,
        **build_env,
        "MESH_PROJECT": name,
        "MESH_TARGET": mesh.target_name,
        "MESH_ENV": mesh.env,
        "MESH_DBT_TARGET": str(mesh.dbt_target or ""),
        "MESH_AUDIT_LOCATION": audit_location(audit, mesh, name),
        "MESH_AUDIT_LIVE": "true" if audit is None else "false",
    }
    results: list[AuditResult] = []
    log = mesh.root / "logs" / f"{name}.log"  # the project's log of this run (mesh/run/scheduler.py)
    log.parent.mkdir(parents=True, exist_ok=True)
    for spec in audits:
        started = time.monotonic()
        with open(log, "a", encoding="utf-8") as stream:
            stream.write(f"\n=== audit {spec.name}: {spec.run}\n")
            stream.flush()
            try:
                done = subprocess.run(
                    ["/bin/sh", "-c", spec.run], cwd=project.dir, env=env, stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=spec.timeout_seconds,
                    check=False,
                )
                output, code = done.stdout.decode("utf-8", errors="replace"), done.returncode
            except subprocess.TimeoutExpired as exc:
                output = (exc.stdout or b"").decode("utf-8", errors="replace")
                code = None
            stream.write(output)
        lines = [_CONTROL.sub(" ", line).strip() for line in output.splitlines()]
        last = next((line for line in reversed(lines) if line), "")[:200]
        result = AuditResult(spec.name, code == 0, time.monotonic() - started, last, code)
        results.append(result)
        if not result.passed:
            why = f"exit {code}" if code is not None else f"stopped after {spec.timeout_seconds}s"
            said = f": {last}" if last else ""
            where = (
                "the live build (wap: false): the publish is blocked, the data was already written"
                if audit is None
                else "nothing was swapped or published"
            )
            raise AuditFailedError(f"audit {spec.name} of {name} failed ({why}{said}); {where}")
    return results
