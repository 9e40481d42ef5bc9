"""Negotiated breaking changes on the built template: refused, proposed, one consumer acknowledges,
the other migrates, the gate passes and the publish ships it; a webhook on loopback hears each step."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import orjson
import pytest

from mesh.interface.proposals import open_proposals
from mesh.project.config import load_mesh
from mesh.registry.document import dump_json
from mesh.ui.cli import main
from mesh.ui.report import registry_list_lines
from tests.integration.test_gate import ORDERS, drop_column

pytestmark = pytest.mark.slow
ORDERS_UID = "model.dbt_up.public_orders"


class Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, object]]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        Hook.received.append(orjson.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def webhook() -> Iterator[str]:
    Hook.received = []
    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook"
    finally:
        server.shutdown()
        server.server_close()


def run(workspace: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["--root", str(workspace), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_refused_proposed_acknowledged_migrated_then_shipped(
    workspace: Path, webhook: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DBT_UP_WEBHOOK_URL", webhook)
    mesh_yml = workspace / "mesh.yml"
    mesh_yml.write_text(
        mesh_yml.read_text().replace(
            "  dbt_up:\n    path: dbt_up\n", "  dbt_up:\n    path: dbt_up\n    webhook_url: ${DBT_UP_WEBHOOK_URL}\n", 1
        )
    )
    drop_column(workspace, ORDERS / "public_orders.yml", "payment_count", ORDERS / "public_orders.sql")

    code, _out, err = run(workspace, capsys, "check", "--project", "dbt_up")
    assert code == 1 and "hits dbt_down, dbt_down_loom" in err

    code, out, err = run(
        workspace, capsys, "propose", "--project", "dbt_up", "--reason", "payment_count moves to public_order_payments",
        "--deadline", "2099-01-31",
    )
    assert code == 0, err
    found = re.search(r"^proposed (\S+) against dbt_up/local latest (\S+): 1 breaking change, hitting dbt_down, dbt_down_loom", out, re.M)
    assert found, out
    proposal = found.group(1)
    mesh = load_mesh(workspace, "local")
    (recorded,) = open_proposals(mesh, "dbt_up")
    assert recorded.id == proposal and recorded.deadline == "2099-01-31"
    assert [(c.kind, c.unique_id, c.column) for c in recorded.changes] == [("column_removed", ORDERS_UID, "payment_count")]
    listed = "\n".join(registry_list_lines(mesh, "dbt_up"))
    assert f"open proposal {proposal}, deadline 2099-01-31" in listed and "acknowledged by 0 of 2" in listed

    code, out, err = run(workspace, capsys, "acknowledge", "--proposal", proposal, "--project", "dbt_down_loom")
    assert code == 0 and f"dbt_down_loom acknowledged {proposal} of dbt_up" in out, err
    code, out, err = run(workspace, capsys, "check", "--project", "dbt_up")
    assert code == 1  # dbt_down still reads payment_count and has not answered
    assert f"dbt_down: has not acknowledged {proposal}" in out
    assert f"dbt_down_loom: acknowledged {proposal}" in out

    # dbt_down migrates: its next recorded usage no longer reads payment_count
    usage = orjson.loads(mesh.registry.read_private("dbt_down", "local", "usage") or b"")
    for use in usage["uses"]:
        if use["upstream_node"] == ORDERS_UID:
            use["columns"] = [c for c in use["columns"] if c not in ("payment_count", "*")] or ["order_id"]
    mesh.registry.write_private("dbt_down", "local", "usage", dump_json(usage))

    code, out, err = run(workspace, capsys, "check", "--project", "dbt_up", "--format", "json")
    assert code == 0, out + err
    report = orjson.loads(out)
    assert report["blocked"] is False and report["agreed"] is True
    assert report["consumer_status"]["dbt_down"].startswith("migrated")
    assert report["consumer_status"]["dbt_down_loom"].startswith(f"acknowledged {proposal}")

    code, out, err = run(workspace, capsys, "run", "--project", "dbt_up")
    assert code == 0, out + err
    log = (workspace / "logs/dbt_up.log").read_text() + out
    assert "breaking column_removed public_orders.payment_count hits dbt_down_loom" in log, out
    assert f"dbt_down_loom: acknowledged {proposal}" in log
    latest = mesh.registry.read_latest("dbt_up", "local")
    assert latest is not None and latest.version != recorded.against
    meta = orjson.loads(latest.body)["metadata"]["mesh"]
    assert meta["proposals"] == {"dbt_down_loom": proposal}
    assert open_proposals(mesh, "dbt_up") == []  # the publish closed it

    code, _out, err = run(workspace, capsys, "acknowledge", "--proposal", proposal, "--project", "dbt_down")
    assert code == 2 and f"proposal {proposal} is closed" in err
    code, _out, err = run(workspace, capsys, "acknowledge", "--proposal", proposal, "--project", "dbt_up")
    assert code == 2 and f"proposal {proposal} is dbt_up's own" in err

    events = [e["event"] for e in Hook.received]
    assert events == ["proposal", "acknowledgement", "publish"], Hook.received
    assert proposal in str(Hook.received[0]["text"]) and f"shipping {proposal}" in str(Hook.received[2]["text"])


def test_a_consumer_the_proposal_does_not_hit_cannot_acknowledge_it(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    drop_column(workspace, ORDERS / "public_orders.yml", "payment_count", ORDERS / "public_orders.sql")
    code, out, err = run(workspace, capsys, "propose", "--project", "dbt_up", "--reason", "r")
    assert code == 0, err
    proposal = out.split()[1]
    mesh = load_mesh(workspace, "local")
    record = orjson.loads(mesh.registry.read_private("dbt_up", "local", "proposals") or b"")
    record["proposals"][0]["consumers"].pop("dbt_down")
    mesh.registry.write_private("dbt_up", "local", "proposals", dump_json(record))
    code, _out, err = run(workspace, capsys, "acknowledge", "--proposal", proposal, "--project", "dbt_down")
    assert code == 2 and err.count("\n") == 1 and "does not hit dbt_down" in err
    code, _out, err = run(workspace, capsys, "acknowledge", "--proposal", "dbt_up-nope", "--project", "dbt_down")
    assert code != 0 and err.count("\n") == 1 and "no proposal 'dbt_up-nope'" in err
    # a forged proposals object counts as none: the gate stays closed
    mesh.registry.write_private("dbt_up", "local", "proposals", b'{"format": 1, "project": "dbt_up", "proposals": "x"}')
    assert open_proposals(mesh, "dbt_up") == []
