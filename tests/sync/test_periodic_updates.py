"""Periodic customer updates queued from the cadence and the outbox's record of past mail."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors.email import EmailSettings
from connectors.email_render import Renderer
from mapping.model import Comment, Person, Priority, Ref, Status, System, Ticket, Visibility
from sync import outbox
from sync.email_context import customer_context
from sync.periodic_updates import queue_periodic_update
from sync.store import Store

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
EMAIL = EmailSettings.model_validate(
    {"from_address": "support@example.com", "cadence": {"P1": "4h", "P2": "1d"}}
)


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        yield opened
    finally:
        opened.close()


def _ticket(priority: Priority = Priority.P1) -> Ticket:
    return Ticket(
        ref=Ref(system=System.SERVICENOW, id="sys1", key="INC0010001"),
        summary="Checkout fails",
        status=Status.IN_PROGRESS,
        priority=priority,
        customer=Person(name="Chris", email="chris@example.org"),
        comments=(
            Comment(id="w1", body="SECRET work note", visibility=Visibility.INTERNAL),
            Comment(id="c1", body="Fix in progress.", visibility=Visibility.PUBLIC, created=T0),
        ),
    )


def _queue(store: Store, now: datetime, priority: Priority = Priority.P1) -> bool:
    with store.session() as tx:
        decision = queue_periodic_update(
            tx,
            ticket=_ticket(priority),
            escalated=True,
            escalated_at=T0,
            email=EMAIL,
            renderer=Renderer(),
            now=now,
        )
    return decision.due


def _rows(store: Store) -> list[outbox.OutboxEntry]:
    with store.session() as tx:
        return outbox.list_entries(tx)


def test_queued_once_per_slot(store: Store) -> None:
    """Due at +4h for a P1: queued once, however often the pass runs."""
    assert not _queue(store, T0 + timedelta(hours=3))
    assert _queue(store, T0 + timedelta(hours=4))
    assert not _queue(store, T0 + timedelta(hours=4, minutes=5))
    [row] = _rows(store)
    assert row.event == "periodic_update"
    assert (
        row.idempotency_key == f"INC0010001|periodic_update|{(T0 + timedelta(hours=4)).isoformat()}"
    )
    assert row.recipients == ("chris@example.org",)
    assert row.subject == "[INC0010001] Status update: Checkout fails"


def test_public_update_in_the_window_postpones_it(store: Store) -> None:
    """A public update queued at +3h moves the periodic update to +7h."""
    with store.session() as tx:
        outbox.enqueue(
            tx,
            outbox.OutboxKey("INC0010001", "public_update", "c9"),
            to=("chris@example.org",),
            rendered=Renderer().render(
                "public_update",
                customer_context(_ticket(), company="Acme"),
            ),
            id_domain="example.com",
            now=T0 + timedelta(hours=3),
        )
    assert not _queue(store, T0 + timedelta(hours=4))
    assert _queue(store, T0 + timedelta(hours=7))
    assert [r.event for r in _rows(store)] == ["public_update", "periodic_update"]


def test_periodic_update_carries_no_internal_note(store: Store) -> None:
    """The periodic mail shows the public comment and never the work note."""
    _queue(store, T0 + timedelta(hours=4))
    with store.session() as tx:
        row = tx.orm.get(outbox.OutboxRow, _rows(store)[0].id)
        assert row is not None
        assert "Fix in progress." in row.body_text and "SECRET" not in row.body_text
        assert "SECRET" not in (row.body_html or "")
        assert "within 4 hours" in row.body_text


def test_priority_without_cadence_gets_none(store: Store) -> None:
    """A P3 (no cadence configured) never gets a periodic update."""
    assert not _queue(store, T0 + timedelta(days=5), Priority.P3)
    assert _rows(store) == []
