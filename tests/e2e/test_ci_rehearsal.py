"""The main-branch workflow (.github/workflows/mesh.yml) rehearsed: its plan job, then one job per
planned project, level by level, each a separate process in a separate clone of one git repository,
sharing nothing but the registry (moto's S3 server on loopback) and the warehouse (a folder of
DuckDB files standing in for the Snowflake account the runners would share). Each job runs the
command its workflow step runs (`plan --format github`, `run --project P`) through the `mesh`
script; cold, unchanged and changed, with assertions on the data and on what was published.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import orjson
import pytest

from tests.conftest import copy_template
from tests.servers import AWS_ENV_TO_CLEAR, TEST_KEYS, TEST_REGION, admin_client, new_bucket

pytestmark = pytest.mark.slow
MESH = str(Path(sys.executable).parent / "mesh")
GIT = ["git", "-c", "user.name=CI", "-c", "user.email=ci@example.com"]


class Runners:
    """Fresh clones of `origin`, one per job, with the environment every runner shares."""

    def __init__(self, base: Path, origin: Path, env: dict[str, str]) -> None:
        self.base, self.origin, self.env, self.jobs = base, origin, env, 0

    def clone(self) -> Path:
        self.jobs += 1
        checkout = self.base / f"runner-{self.jobs}"
        subprocess.run([*GIT, "clone", "-q", str(self.origin), str(checkout)], check=True)
        return checkout

    def plan(self) -> list[list[str]]:
        out = subprocess.run(
            [MESH, "plan", "--format", "github", "--max-levels", "4"],
            cwd=self.clone(), env=self.env, capture_output=True, text=True, check=False, timeout=300,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        lines = dict(line.split("=", 1) for line in out.stdout.splitlines())
        levels = [orjson.loads(lines[f"level_{n}"]) for n in range(1, 5)]
        assert int(lines["projects"]) == sum(len(level) for level in levels)
        return [sorted(level) for level in levels if level]

    def run(self, levels: list[list[str]]) -> None:
        """Each level's jobs at once, each in its clone; a level starts when the last one passed."""
        for level in levels:
            jobs = [
                (name, subprocess.Popen(
                    [MESH, "run", "--project", name],
                    cwd=self.clone(), env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                ))
                for name in level
            ]
            for name, proc in jobs:
                out, _ = proc.communicate(timeout=900)
                assert proc.returncode == 0, f"job {name} failed:\n{out}"


@pytest.fixture
def runners(tmp_path: Path, moto_s3: str) -> Iterator[Runners]:
    origin = copy_template(tmp_path / "origin")
    subprocess.run([*GIT, "init", "-q", "-b", "main"], cwd=origin, check=True)
    subprocess.run([*GIT, "add", "-A"], cwd=origin, check=True)
    subprocess.run([*GIT, "commit", "-q", "-m", "the mesh"], cwd=origin, check=True)
    env = {k: v for k, v in os.environ.items() if k not in AWS_ENV_TO_CLEAR and not k.startswith("MESH_")}
    env.pop("GITHUB_REPOSITORY", None)
    env.update(
        AWS_ENDPOINT_URL_S3=moto_s3,
        AWS_DEFAULT_REGION=TEST_REGION,
        AWS_CONFIG_FILE=str(tmp_path / "aws-config-none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "aws-credentials-none"),
        AWS_EC2_METADATA_DISABLED="true",
        MESH_REGISTRY=f"s3://{new_bucket(moto_s3)}/mesh",
        MESH_WAREHOUSE_DIR=str(tmp_path / "warehouse"),
        **TEST_KEYS,
    )
    yield Runners(tmp_path, origin, env)
    shutil.rmtree(tmp_path / "warehouse", ignore_errors=True)


def credit_card_total(warehouse: Path) -> float:
    with duckdb.connect(str(warehouse / "dbt_down.duckdb"), read_only=True) as con:
        row = con.execute(
            "select net_amount from marts.payment_method_summary where payment_method = 'credit_card'"
        ).fetchone()
    assert row is not None
    return float(row[0])


def registry_object(runners: Runners, key: str) -> dict[str, object]:
    bucket, _, prefix = runners.env["MESH_REGISTRY"][len("s3://"):].partition("/")
    body = admin_client(runners.env["AWS_ENDPOINT_URL_S3"]).get_object(
        Bucket=bucket, Key=f"{prefix}/{key}"
    )["Body"].read()
    return dict(orjson.loads(body))


def published(runners: Runners) -> tuple[str, str]:
    """dbt_up's latest interface version, and the data version of its public payments."""
    latest = registry_object(runners, "dbt_up/local/latest/manifest.json")
    fresh = registry_object(runners, "dbt_up/local/freshness/manifest.json")
    nodes = fresh["nodes"]
    assert isinstance(nodes, dict) and isinstance(latest["metadata"], dict)
    return str(latest["metadata"]["mesh"]["version"]), str(nodes["model.dbt_up.public_order_payments"]["data_version"])


def test_planned_jobs_on_separate_runners_cold_unchanged_and_changed(runners: Runners) -> None:
    warehouse = Path(runners.env["MESH_WAREHOUSE_DIR"])

    cold = runners.plan()
    assert cold == [["dbt_up"], ["dbt_down", "dbt_down_loom"]]
    runners.run(cold)
    before = credit_card_total(warehouse)
    version, data = published(runners)

    assert runners.plan() == []  # a fresh clone of an unchanged repository: nothing to start

    seed = runners.origin / "dbt_up/seeds/raw_payments.csv"
    seed.write_text(seed.read_text().replace("\n1,1,credit_card,1000\n", "\n1,1,credit_card,1500\n", 1))
    subprocess.run([*GIT, "commit", "-q", "-am", "payment 1 was 15.00"], cwd=runners.origin, check=True)
    changed = runners.plan()
    assert changed == [["dbt_up"], ["dbt_down", "dbt_down_loom"]]
    runners.run(changed)
    assert credit_card_total(warehouse) == pytest.approx(before + 5.0)  # the consumer has the new data
    # the interface did not change, so its version stands; the data version of what moved did
    assert published(runners)[0] == version and published(runners)[1] != data

    assert runners.plan() == []
