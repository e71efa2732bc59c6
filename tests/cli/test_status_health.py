"""`status` tells each system's health, the events held for a paused one and mail in doubt."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from cli.app import build
from connectors.email_render import RenderedEmail
from connectors.errors import AuthFailed, ServerUnavailable
from sync.notify import outbox
from sync.runtime.health import HealthBoard, Held
from sync.store.database import Store

CONFIG = Path(__file__).resolve().parents[2] / "config.example.toml"
T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """The store of a temp state directory the example configuration points at."""
    for name in list(os.environ):
        if name.startswith("ESCALATION_SYNC_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ESCALATION_SYNC_STATE__DIR", str(tmp_path / "state"))
    opened = Store.for_state(tmp_path / "state")
    yield opened
    opened.close()


def status(*args: str) -> str:
    result = CliRunner().invoke(build(), ["status", *args, "--config", str(CONFIG)])
    assert result.exit_code == 0, result.output
    return result.output


def test_status_shows_a_paused_system_a_failing_one_and_mail_in_doubt(store: Store) -> None:
    """Jira paused with one event held, ServiceNow failing with the vendor's reason, one e-mail
    in doubt with the command that settles it; --json carries the same."""
    board = HealthBoard(store.db, clock=lambda: T0)
    board.failed("jira", AuthFailed("GET /rest/api/2/myself: HTTP 401", system="jira"))
    board.pause("jira", "AuthFailed: GET /rest/api/2/myself: HTTP 401")
    board.hold("jira", Held("servicenow", "s1"))
    board.failed("servicenow", ServerUnavailable("GET incident: HTTP 503", system="servicenow"))
    board.failed("servicenow", ServerUnavailable("GET incident: HTTP 502", system="servicenow"))
    with store.session() as tx:
        outbox.enqueue(
            tx,
            outbox.OutboxKey("INC1", "escalated", "1"),
            to=["carla@customer.example"],
            rendered=RenderedEmail("[INC1] Escalated", "t", "<p>t</p>"),
            id_domain="example.com",
            now=T0,
        )
        tx.orm.execute(sa.update(outbox.OutboxRow).values(status=outbox.UNKNOWN))
    text = " ".join(status().split())
    assert "PAUSED since 2026-12-04 09:00:00 UTC" in text
    assert "1 event waits for it" in text
    assert "2 failures in a row" in text
    assert "last error 2026-12-04 09:00:00 UTC" in text and "HTTP 502" in text
    assert "escalation-sync email resolve 1 --sent" in text
    data = json.loads(status("--json"))
    jira, snow = data["systems"]["jira"], data["systems"]["servicenow"]
    assert (jira["paused"], jira["events_waiting"], jira["up"]) == (True, 1, False)
    assert snow["consecutive_failures"] == 2
    assert snow["last_error"] == "ServerUnavailable: GET incident: HTTP 502"
    assert data["systems"]["email"]["last_success_at"] is None
    assert [row["ticket"] for row in data["in_doubt"]] == ["INC1"]
