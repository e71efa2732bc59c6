"""A third ticket system shows up on every page of the console with no change to the console:
the help desk of tests/systems/helpdesk/, paired with Jira, is named by its registry title,
found by its own references and listed where the mapping puts it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from sync.config.settings import Settings, load_settings
from sync.procedure.ledger import LedgerRow
from sync.store.database import LinkSide, Store
from sync.systems import registry as systems
from tests.sync import pairs
from tests.sync.console.conftest import OPERATOR, console_section
from tests.sync.console.harness import Harness, sign_in
from tests.sync.console.seed import NOW
from tests.systems.helpdesk import SYSTEM as HELPDESK
from tests.systems.test_third_system import URL, config_text


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Help desk tickets paired with Jira issues, the console on; the help desk registered for
    the test only."""
    monkeypatch.setenv("ESCALATION_SYNC_JIRA__API_TOKEN", "jira-token-never-shown")
    monkeypatch.setenv("ESCALATION_SYNC_HELPDESK__API_KEY", "helpdesk-key-never-shown")
    registry = systems.registry()
    registry.register(HELPDESK)
    try:
        path = tmp_path / "config.toml"
        path.write_text(config_text(tmp_path / "state") + console_section())
        yield load_settings(path)
    finally:
        registry.unregister(HELPDESK.name)


def _seed(store: Store) -> int:
    """An active escalation of help desk ticket HD-1 (id t1), paired with DS-1; a write on each
    record; a dead letter of the ticket."""
    with store.session() as tx:
        tx.put_snapshot(
            "helpdesk",
            "t1",
            {
                "ref": {"system": "helpdesk", "id": "t1", "key": "HD-1", "url": f"{URL}/t1"},
                "summary": "Printer on fire",
                "status": "in_progress",
                "priority": "P2",
                "assignee": {"id": "u7", "name": "Hana Desk"},
            },
        )
        tx.put_snapshot(
            "jira",
            "DS-1",
            {
                "ref": {"system": "jira", "id": "10001", "key": "DS-1", "url": "https://j/DS-1"},
                "summary": "Printer on fire",
                "status": "in_progress",
            },
        )
        tx.put_link(LinkSide("helpdesk", "t1", "t1", "HD-1"), pairs.jira("DS-1", "10001"))
        tx.orm.add(
            LedgerRow(
                ticket_ref="helpdesk:t1",
                state="approved",
                level="L2",
                requested_at=NOW - timedelta(hours=2),
                requested_by="hana",
                approved_at=NOW - timedelta(hours=1),
                approved_by="sme.alice",
                processed_command_ids=[],
                engineering_ref="DS-1",
                updated_at=NOW - timedelta(hours=1),
            )
        )
        tx.audit("helpdesk", "t1", "state", "open", "working", reason="jira DS-1 changed")
        tx.audit("jira", "DS-1", "summary", None, "Printer on fire", reason="helpdesk created")
    return store.add_dead_letter(
        "helpdesk", "t1", {"system": "helpdesk", "ticket_id": "t1"}, "HTTP 409: locked", "Conflict"
    )


@pytest.fixture
def operator(settings: Settings, store: Store) -> Iterator[TestClient]:
    """An operator signed in to the console over the seeded store."""
    _seed(store)
    with Harness(settings, store, settings.console).client() as client:
        assert sign_in(client, *OPERATOR).status_code == 303
        yield client


def test_the_board_lists_the_help_desk_escalation(operator: TestClient) -> None:
    """The escalation is on the board by its `HD-` number with its Jira pair, and the find box
    offers the systems the mapping syncs, by title."""
    html = operator.get("/board").text
    active = html[html.index('id="active-h"') : html.index('id="recent-h"')]
    assert 'href="/tickets/helpdesk/t1"' in active and "HD-1" in active and "DS-1" in active
    assert 'placeholder="Help Desk or Jira ticket"' in html


def test_find_reads_the_help_desk_reference(operator: TestClient) -> None:
    """`HD-1` (the help desk claims it), `DS-1` (its pair) and `helpdesk:t1` open the pair."""
    for typed in ("HD-1", "DS-1", "helpdesk:t1"):
        answer = operator.get("/find", params={"q": typed})
        assert answer.headers["location"] == "/tickets/helpdesk/t1", typed


def test_the_ticket_page_names_both_systems(operator: TestClient) -> None:
    """Both records are shown under their systems' titles, with the timeline and the dead
    letter of each."""
    html = operator.get("/tickets/jira/DS-1").text
    assert 'Help Desk <span class="key">HD-1</span>' in html
    assert 'Jira <span class="key">DS-1</span>' in html
    assert "Open in Help Desk" in html
    # The help desk's writes are marked with a tone of their own, by its place in the registry.
    timeline = html[html.index('id="timeline-h"') : html.index('id="mail-h"')]
    assert '<span class="sys sys-2">Help Desk</span>' in timeline
    assert '<span class="sys sys-0">Jira</span>' in timeline
    dead = html[html.index('id="dead-h"') :]
    assert "Help Desk HD-1" in dead and "HTTP 409: locked" in dead


def test_health_lists_the_help_desk_first(operator: TestClient) -> None:
    """The help desk, where escalations are decided, is the first system on the health page;
    its dead letter is named by its number."""
    html = operator.get("/health").text
    cards = [html.index(f"<h2>{name}") for name in ("Help Desk", "Jira")]
    assert cards == sorted(cards)
    dead = html[html.index('id="dead-letters"') :]
    assert "Help Desk HD-1" in dead and 'href="/tickets/helpdesk/t1"' in dead


def test_configuration_shows_the_help_desk_section(operator: TestClient) -> None:
    """`[helpdesk]` is listed first under its title with its address; its key is hidden."""
    html = operator.get("/configuration").text
    section = html[html.index("[helpdesk]") : html.index("[jira]")]
    assert "Help Desk" in section and URL in section and "set (hidden)" in section
    assert "helpdesk-key-never-shown" not in html
