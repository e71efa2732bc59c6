"""What the store keeps of customers' mail (on SQLite and PostgreSQL): the mails read, the
addresses that bounced, the outbox lookups, and the outbox skipping a stopped address."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.orm import sessionmaker

from connectors.email import OutgoingEmail, make_message_id, thread_root_id
from connectors.email_render import RenderedEmail
from sync.notify import outbox
from sync.notify.outbox import OutboxKey, OutboxWorker
from sync.replies import store as mails
from sync.store.database import Store
from sync.store.db import Base
from sync.store.migrations import downgrade, upgrade
from tests.sync.store_backends import postgres_schema

T0 = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
DOMAIN = "example.com"
RENDERED = RenderedEmail("[INC0010001] Update", "text\n", "<p>text</p>\n")
TABLES = {"inbound_mails", "mail_bounces", "outbox"}


class Sender:
    """Records what it was asked to send."""

    def __init__(self) -> None:
        self.sent: list[OutgoingEmail] = []

    def send(self, message: OutgoingEmail) -> str:
        self.sent.append(message)
        return message.message_id


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / 'state.db'}"
        else:
            url = stack.enter_context(postgres_schema())
        opened = Store.open(url)
        stack.callback(opened.close)
        yield opened


def _queue(store: Store, to: tuple[str, ...], version: str = "1") -> None:
    with store.session() as tx:
        outbox.enqueue(
            tx,
            OutboxKey("INC0010001", "public_update", version),
            to=to,
            rendered=RENDERED,
            id_domain=DOMAIN,
            now=T0,
        )


def test_the_migration_makes_the_declared_tables(store: Store) -> None:
    """0007_inbound_mail creates what the models declare (the outbox's thread index too), and
    steps back down cleanly."""
    with store.db.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(ctx, Base.metadata)
    ours = [d for d in diffs if any(t in repr(d) for t in TABLES)]
    assert ours == []
    downgrade(store.db, "0006_pairs")
    assert not {"inbound_mails", "mail_bounces"} & set(sa.inspect(store.db).get_table_names())
    upgrade(store.db)
    assert {"inbound_mails", "mail_bounces"} <= set(sa.inspect(store.db).get_table_names())


def test_a_mail_read_again_keeps_when_it_was_first_seen(store: Store) -> None:
    """Recording a mail again (after a crash) updates what became of it, not when it came: the
    loop check counts each mail once, from its first sight."""
    with store.session() as tx:
        mails.record_mail(
            tx,
            message_id="<a@x>",
            sender="c@x",
            ticket="INC1",
            kind="reply",
            outcome=mails.FAILED,
            reason="busy",
            subject="Re: x",
            now=T0,
            settled=False,
        )
    with store.session() as tx:
        mails.record_mail(
            tx,
            message_id="<a@x>",
            sender="c@x",
            ticket="INC1",
            kind="reply",
            outcome=mails.PUBLIC_COMMENT,
            reason="customer reply",
            subject="Re: x",
            now=T0 + timedelta(minutes=5),
            settled=True,
        )
    with store.reading() as tx:
        [row] = mails.list_mails(tx)
        assert (row.outcome, row.seen_at, row.settled_at) == (
            mails.PUBLIC_COMMENT,
            T0,
            T0 + timedelta(minutes=5),
        )
        assert mails.earlier_mails(tx, "c@x", "INC1", since=T0 - timedelta(hours=1)) == [T0]
        assert mails.earlier_mails(tx, "c@x", "INC1", since=T0, besides="<a@x>") == []
        assert mails.mail_counts(tx) == {mails.PUBLIC_COMMENT: 1}


def test_our_message_ids_and_threads_name_their_ticket(store: Store) -> None:
    """A reply's In-Reply-To (our Message-ID) or References (our thread id) names the ticket;
    anything else names none."""
    _queue(store, ("carla@customer.example",))
    key = str(OutboxKey("INC0010001", "public_update", "1"))
    with store.reading() as tx:
        assert mails.sent_ticket(tx, make_message_id(key, DOMAIN)) == "INC0010001"
        assert mails.sent_ticket(tx, thread_root_id("INC0010001", DOMAIN)) == "INC0010001"
        assert mails.sent_ticket(tx, "<someone-else@example.org>") is None
        assert mails.mailed_about(tx, "INC0010001")
        assert not mails.mailed_about(tx, "INC0099999")
        assert mails.sent_addresses(tx, "INC0010001", ["Carla@Customer.example", "x@y.z"]) == {
            "carla@customer.example"
        }


def test_a_stopped_address_gets_nothing_and_the_outbox_says_why(store: Store) -> None:
    """Mail to a bounced address is not sent (dead, with the reason); a message to it and
    another address goes to the other one only; clearing the bounce sends again."""
    with store.session() as tx:
        mails.add_bounce(
            tx,
            address="Carla@Customer.example",
            ticket="INC0010001",
            status="5.1.1",
            diagnostic="550 5.1.1 no such user",
            message_id="<dsn@mx>",
            now=T0,
        )
    _queue(store, ("carla@customer.example",), version="1")
    _queue(store, ("carla@customer.example", "boss@customer.example"), version="2")
    sender = Sender()
    sessions = sessionmaker(store.db, expire_on_commit=False)
    worker = OutboxWorker(sessions, sender, clock=lambda: T0, suppressed=mails.suppressed)
    assert worker.run_once() == 1
    assert [m.to for m in sender.sent] == [("boss@customer.example",)]
    with store.reading() as tx:
        rows = {r.idempotency_key.split("|")[2]: r for r in outbox.list_entries(tx)}
    assert rows["1"].status == outbox.DEAD
    assert rows["1"].last_error is not None
    assert "carla@customer.example bounced on 2026-12-05 09:00 UTC" in rows["1"].last_error
    assert "5.1.1" in rows["1"].last_error and "INC0010001" in rows["1"].last_error
    assert rows["2"].status == outbox.SENT
    assert rows["2"].last_error is not None and "not sent to carla@" in rows["2"].last_error
    with store.session() as tx:
        assert mails.clear_bounce(tx, "carla@customer.example")
        assert not mails.clear_bounce(tx, "carla@customer.example")
        assert mails.list_bounces(tx) == []
    _queue(store, ("carla@customer.example",), version="3")
    assert worker.run_once() == 1
    assert sender.sent[-1].to == ("carla@customer.example",)
