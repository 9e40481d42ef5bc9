"""The chain example mesh (core -> marketing -> finance, core -> finance) with real dbt runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from mesh.consumer.validate import validate_projects
from mesh.interface.usage import prune_usage, read_usage, record_usage
from mesh.project.config import load_mesh
from mesh.run.gate import check_project
from mesh.run.pipeline import MeshRun, build_project, run_mesh
from mesh.ui.report import consumers_lines
from tests.conftest import REPO

BIN = Path(sys.executable).parent

CHAIN = REPO / "examples" / "chain"
_IGNORED = shutil.ignore_patterns(
    "target", "logs", ".mesh", "dbt_packages", "_mesh_*.yml", "dbt_loom.config.yml", "warehouse", "registry", "lineage"
)


def _spaced(text: str) -> str:
    """A report's text with runs of spaces as one: columns are aligned to the longest name."""
    return re.sub(r" {2,}", " ", text)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, MeshRun]:
    """The chain mesh, copied and built once for this module."""
    root = tmp_path_factory.mktemp("chain") / "mesh"
    shutil.copytree(CHAIN, root, ignore=_IGNORED)
    return root, run_mesh(load_mesh(root, "local"), say=lambda _msg: None)


@pytest.fixture
def chain_copy(chain: tuple[Path, MeshRun], tmp_path: Path) -> Path:
    dest = tmp_path / "mesh"
    shutil.copytree(chain[0], dest, symlinks=True)
    return dest


def test_build_order_publishes_and_builds_warning_free(chain: tuple[Path, MeshRun]) -> None:
    root, run = chain
    assert load_mesh(root, "local").build_order() == ["core", "marketing", "finance"]
    assert [b.project for b in run.builds] == ["core", "marketing", "finance"]
    assert all(b.success and not b.warnings for b in run.builds), [b.warnings for b in run.builds]
    assert [(p.project, p.status) for p in run.publishes] == [("core", "published"), ("marketing", "published")]
    assert load_mesh(root, "local").consumers_of("core") == ["marketing", "finance"]


def test_both_upstreams_of_finance_are_validated(chain: tuple[Path, MeshRun]) -> None:
    root, _run = chain
    reports = {r.project: r for r in validate_projects(load_mesh(root, "local"), ["marketing", "finance"])}
    assert all(r.ok and not r.findings for r in reports.values())
    finance = reports["finance"]
    assert set(finance.upstream_versions) == {"core", "marketing"}
    assert {(e.upstream, e.upstream_node, e.via) for e in finance.edges} >= {
        ("core", "model.core.orders", "ref"),
        ("core", "model.core.customers", "ref"),
        ("marketing", "model.marketing.customer_segments", "ref"),
    }
    assert ("marketing", "model.marketing.customer_value", "ref") in {
        (e.upstream, e.upstream_node, e.via) for e in finance.edges
    }
    marketing = reports["marketing"]
    assert {(e.upstream, e.upstream_node, e.via) for e in marketing.edges} == {
        ("core", "model.core.customers", "source"),
        ("core", "model.core.orders", "source"),
    }


def test_consumers_of_each_producer_are_on_record(chain: tuple[Path, MeshRun]) -> None:
    mesh = load_mesh(chain[0], "local")
    core = "\n".join(consumers_lines(mesh, "core"))
    assert "finance monthly_revenue" in _spaced(core) and "marketing stg_core_customers" in _spaced(core)
    assert "country, customer_id, email" in core
    assert "derived downstream: 7 public columns of consumers that publish derive from core's columns" in core
    assert "    marketing.customer_value.lifetime_amount     <- orders: amount" in core
    marketing = "\n".join(consumers_lines(mesh, "marketing"))
    assert "finance revenue_by_segment ref unpinned customer_id, segment" in _spaced(marketing)


def test_marketing_records_which_core_columns_feed_its_public_columns(chain: tuple[Path, MeshRun]) -> None:
    usage = read_usage(load_mesh(chain[0], "local"))
    feeds = {(f.project, f.node, f.column, f.upstream_node, f.columns) for f in usage.lineage}
    assert feeds == {
        ("marketing", "model.marketing.customer_value", "customer_id", "model.core.orders", ("customer_id",)),
        ("marketing", "model.marketing.customer_value", "lifetime_amount", "model.core.orders", ("amount",)),
        ("marketing", "model.marketing.customer_segments", "customer_id", "model.core.customers", ("customer_id",)),
        ("marketing", "model.marketing.customer_segments", "email", "model.core.customers", ("email",)),
        ("marketing", "model.marketing.customer_segments", "country", "model.core.customers", ("country",)),
        # through marketing's own public customer_value, and a scalar subquery that reads it
        ("marketing", "model.marketing.customer_segments", "lifetime_value", "model.core.orders", ("amount",)),
        ("marketing", "model.marketing.customer_segments", "segment", "model.core.orders", ("amount",)),
    }  # order_count is count(*): no core column; signup_cohorts is not public
    assert usage.without_lineage == []


def _drop(root: Path, yml: str, column: str) -> None:
    path = root / yml
    text = path.read_text()
    start = text.index(f"      - name: {column}\n")
    ends = [e for e in (text.find("\n      - name: ", start + 1), text.find("\n\n", start)) if e != -1]
    end = min(ends) if ends else len(text) - 1
    path.write_text(text[:start] + text[end + 1 :])


def test_gate_on_core_catches_a_column_marketing_uses(chain_copy: Path) -> None:
    _drop(chain_copy, "core/models/marts/_marts.yml", "email")
    result = check_project(load_mesh(chain_copy, "local"), "core")
    assert result.blocked
    assert {(h.use.consumer, h.use.node, h.column) for h in result.hits} == {
        ("marketing", "model.marketing.stg_core_customers", "email")
    }
    assert "marketing model stg_core_customers (column email)" in str(result.error())


def test_gate_on_marketing_catches_a_column_finance_uses(chain_copy: Path) -> None:
    _drop(chain_copy, "marketing/models/marts/_marts.yml", "segment")
    _drop(chain_copy, "marketing/models/marts/_marts.yml", "country")
    result = check_project(load_mesh(chain_copy, "local"), "marketing")
    assert {(h.use.consumer, h.column) for h in result.hits} == {("finance", "segment")}
    assert [c.column for c in result.unconsumed] == ["country"]


AMOUNT_HITS = {
    ("marketing", "stg_core_orders", "amount", "core.orders.amount → marketing.stg_core_orders"),
    ("finance", "stg_orders", "amount", "core.orders.amount → finance.stg_orders"),
    ("finance", "monthly_revenue", "amount", "core.orders.amount → finance.monthly_revenue"),
    ("finance", "ltv", "lifetime_amount", "core.orders.amount → marketing.customer_value.lifetime_amount → finance.ltv"),
    (
        "finance", "revenue_by_segment", "segment",
        "core.orders.amount → marketing.customer_segments.segment → finance.revenue_by_segment",
    ),
}


def test_gate_on_core_follows_a_column_through_marketing_to_finance(chain_copy: Path) -> None:
    _drop(chain_copy, "core/models/marts/_marts.yml", "amount")
    result = check_project(load_mesh(chain_copy, "local"), "core")
    assert result.blocked
    assert {(h.use.consumer, h.model, h.column, result.route(h)) for h in result.hits} == AMOUNT_HITS
    text = result.render("text")
    print(text)  # the gate's output, shown with `pytest -s`
    assert "breaking changes hit 2 consumer projects (finance, marketing); 2 hits through public columns of marketing:" in text
    row = next(line for line in text.splitlines() if "finance.ltv" in line)
    assert row.split() == [
        "column_removed", "orders", "finance", "ltv", "lifetime_amount",
        "core.orders.amount", "→", "marketing.customer_value.lifetime_amount", "→", "finance.ltv",
    ]
    # Public, derived from amount, read by nobody: named as a note.
    assert (
        "note: core.orders.amount → marketing.customer_segments.lifetime_value: public column of marketing, "
        "no consumer on record reads it"
    ) in text
    # JSON and markdown carry the same hits.
    doc = orjson.loads(result.render("json"))
    assert {(h["consumer"], h["model"], h["column"], " → ".join(h["path"])) for h in doc["hits"]} == AMOUNT_HITS
    markdown = result.render("markdown")
    rows = [line.split(" | ") for line in markdown.splitlines() if line.startswith("| `column_removed` `orders`")]
    assert {
        (cells[1], cells[2].strip("`"), cells[3].strip("`"), cells[4].rstrip(" |").replace("`", "")) for cells in rows
    } == AMOUNT_HITS


def test_a_column_marketing_reads_but_passes_on_to_nothing_public_names_only_marketing(chain_copy: Path) -> None:
    _drop(chain_copy, "core/models/marts/_marts.yml", "signup_date")
    result = check_project(load_mesh(chain_copy, "local"), "core")
    assert result.blocked
    assert [(h.use.consumer, h.model, h.column, result.route(h)) for h in result.hits] == [
        ("marketing", "signup_cohorts", "signup_date", "core.customers.signup_date → marketing.signup_cohorts")
    ]
    assert not result.unread
    assert "finance" not in result.render("text").split("consumers on record")[1].split("\n", 1)[1]


def test_check_formats_and_exit_codes_through_the_mesh_command(chain_copy: Path) -> None:
    _drop(chain_copy, "core/models/marts/_marts.yml", "amount")
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DO_NOT_TRACK": "1"}

    def check(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "mesh"), "--root", str(chain_copy), "check", "--project", "core", *args],
            env=env, capture_output=True, text=True, timeout=300, check=False,
        )

    markdown = check("--format", "markdown")
    assert markdown.returncode == 1, markdown.stderr
    comment = markdown.stdout[markdown.stdout.index("<!-- mesh check core/local -->"):]
    assert "### Contract check for `core` (local): **blocked**: breaking changes hit finance, marketing" in comment
    assert (
        "| `column_removed` `orders` | finance | `ltv` | `lifetime_amount` | "
        "`core.orders.amount` → `marketing.customer_value.lifetime_amount` → `finance.ltv` |"
    ) in comment
    assert "error: breaking change to core's contract hits finance, marketing" in markdown.stderr
    as_json = check("--format", "json")
    assert as_json.returncode == 1
    doc = orjson.loads(as_json.stdout[as_json.stdout.index("{\n"):])
    assert doc["blocked"] and len(doc["hits"]) == len(AMOUNT_HITS)
    bad = check("--format", "html")
    assert bad.returncode == 2 and "invalid choice: 'html'" in bad.stderr


def test_a_removed_consumer_model_leaves_registry_consumers_after_the_next_build(chain_copy: Path) -> None:
    mesh = load_mesh(chain_copy, "local")
    assert "signup_cohorts" in "\n".join(consumers_lines(mesh, "core"))
    (chain_copy / "marketing/models/marts/signup_cohorts.sql").unlink()
    yml = chain_copy / "marketing/models/marts/_marts.yml"
    text = yml.read_text()
    yml.write_text(text[: text.index("\n  - name: signup_cohorts\n")] + "\n")
    build_project(mesh, "marketing", say=lambda _msg: None)
    assert prune_usage(mesh, "marketing") == 1
    core = "\n".join(consumers_lines(mesh, "core"))
    assert "signup_cohorts" not in core
    assert "marketing stg_core_customers" in _spaced(core)  # the rest of marketing's record stays
    assert prune_usage(mesh, "marketing") == 0
    # Recording usage again replaces the whole record: the model stays gone.
    record_usage(mesh, "marketing")
    assert "signup_cohorts" not in "\n".join(consumers_lines(mesh, "core"))
