"""The outbox sends one row at a time: a kill mid-batch leaves at most one message in doubt."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.orm import Session, sessionmaker

from connectors.email import Identity, OutgoingEmail, SmtpSender, SmtpSettings
from connectors.email_render import RenderedEmail
from simulators.mail import MailSink
from sync.notify import outbox
from sync.notify.outbox import OutboxKey, OutboxWorker, enqueue
from sync.store.database import Store, create_db_engine
from sync.store.db import Base
from sync.store.migrations import downgrade, upgrade
from tests.sync.store_backends import postgres_schema

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
DOMAIN = "example.com"
RENDERED = RenderedEmail(subject="[INC1] Escalated", text="We escalated it.\n", html="<p>We</p>")
OUR_TABLES = ("outbox", "system_health", "held_events")


class Crash(BaseException):
    """Stands for the process dying: nothing in the worker catches it."""


class DiesOnTheSixth:
    """Sends through SMTP; the sixth message is handed over and then the process 'dies'."""

    def __init__(self, inner: SmtpSender) -> None:
        self.inner = inner
        self.count = 0

    def send(self, message: OutgoingEmail) -> str:
        self.count += 1
        sent = self.inner.send(message)
        if self.count == 6:
            raise Crash
        return sent


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL on each backend (not yet migrated)."""
    with ExitStack() as stack:
        if request.param == "sqlite":
            yield f"sqlite:///{tmp_path / 'state.db'}"
        else:
            yield stack.enter_context(postgres_schema())


@pytest.fixture
def sessions(url: str) -> Iterator[sessionmaker[Session]]:
    store = Store.open(url)
    try:
        yield sessionmaker(store.db, expire_on_commit=False)
    finally:
        store.close()


@pytest.fixture(scope="module")
def sink() -> Iterator[MailSink]:
    with MailSink() as running:
        yield running


def smtp(sink: MailSink) -> SmtpSender:
    settings = SmtpSettings(host="127.0.0.1", port=sink.smtp_port, security="none")
    return SmtpSender(settings, Identity("support@example.com", "Support"))


def enqueue_batch(sessions: sessionmaker[Session], count: int = 20) -> None:
    with sessions.begin() as tx:
        for index in range(count):
            enqueue(
                tx,
                OutboxKey(f"INC{index:04d}", "escalated", "1"),
                to=(f"customer{index}@example.org",),
                rendered=RENDERED,
                id_domain=DOMAIN,
                now=T0,
            )


def statuses(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions() as tx:
        return {k: v for k, v in outbox.status_counts(tx).items() if v}


def test_a_crash_mid_batch_leaves_one_in_doubt_and_the_rest_are_sent_once(
    sessions: sessionmaker[Session], sink: MailSink
) -> None:
    """Twenty due, the worker dies while the sixth is handed over: five sent, one in doubt,
    fourteen never claimed; the next worker settles the one as unknown and sends fourteen."""
    sink.clear()
    enqueue_batch(sessions)
    clock = [T0]
    with pytest.raises(Crash):
        OutboxWorker(sessions, DiesOnTheSixth(smtp(sink)), clock=lambda: clock[0]).run_once()
    assert statuses(sessions) == {"sent": 5, "sending": 1, "pending": 14}
    clock[0] = T0 + timedelta(minutes=11)
    assert OutboxWorker(sessions, smtp(sink), clock=lambda: clock[0]).run_once() == 14
    assert statuses(sessions) == {"sent": 19, "unknown": 1}
    ids = [m.message_id for m in sink.messages()]
    assert len(ids) == 20 and len(set(ids)) == 20


def test_a_claim_of_a_process_that_is_gone_is_taken_back_at_once(
    sessions: sessionmaker[Session], sink: MailSink
) -> None:
    """A row claimed by a process of this host that no longer runs is settled without waiting
    for the lease (ten minutes by default)."""
    sink.clear()
    enqueue_batch(sessions, count=1)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    owner = f"{socket.gethostname()}|{int(gone.stdout)}|1"
    with sessions.begin() as tx:
        tx.execute(
            sa.update(outbox.OutboxRow).values(
                status=outbox.SENDING, claim_token="t", claimed_at=T0, claimed_by=owner
            )
        )
    worker = OutboxWorker(sessions, smtp(sink), clock=lambda: T0 + timedelta(seconds=5))
    assert worker.recover() == 1
    assert statuses(sessions) == {"unknown": 1}
    assert sink.messages() == []


def test_a_live_claim_inside_its_lease_is_left_alone(sessions: sessionmaker[Session]) -> None:
    """A claim of a running process (this one) is its owner's until the lease runs out."""
    enqueue_batch(sessions, count=1)
    with sessions.begin() as tx:
        tx.execute(
            sa.update(outbox.OutboxRow).values(
                status=outbox.SENDING,
                claim_token="t",
                claimed_at=T0,
                claimed_by=f"{socket.gethostname()}|1|1",
            )
        )
    worker = OutboxWorker(sessions, _Never(), clock=lambda: T0 + timedelta(minutes=1))
    assert worker.recover() == 0
    assert statuses(sessions) == {"sending": 1}


class _Never:
    """A transport that must not be called."""

    def send(self, message: OutgoingEmail) -> str:
        raise AssertionError("nothing should be sent")


def _email_row(conn: sa.Connection) -> None:
    conn.execute(
        sa.text(
            "INSERT INTO email_outbox (idempotency_key, ticket_ref, event, recipients, subject, "
            'body_text, body_html, message_id, in_reply_to, "references", status, attempts, '
            "next_attempt_at, created_at) VALUES ('INC1|escalated|1', 'INC1', 'escalated', "
            "'[\"c@example.org\"]', 's', 't', NULL, '<m1@example.com>', '<thread.1@example.com>',"
            " '<thread.1@example.com>', 'pending', 0, :now, :now)"
        ),
        {"now": T0.replace(tzinfo=None)},
    )


def test_the_migration_carries_existing_mail_as_the_email_channel(url: str) -> None:
    """A row of the e-mail outbox comes through as channel email, kind message, its thread
    kept; going back restores it as it was."""
    engine = create_db_engine(url)
    try:
        upgrade(engine, "0003_ledger")
        with engine.begin() as conn:
            _email_row(conn)
        upgrade(engine)
        with sessionmaker(engine)() as tx:
            [row] = tx.scalars(sa.select(outbox.OutboxRow)).all()
            assert (row.channel, row.kind, row.thread) == (
                "email",
                "message",
                "<thread.1@example.com>",
            )
            assert row.idempotency_key == "INC1|escalated|1" and row.status == "pending"
        downgrade(engine, "0003_ledger")
        with engine.connect() as conn:
            back = conn.execute(sa.text('SELECT in_reply_to, "references" FROM email_outbox')).one()
        assert tuple(back) == ("<thread.1@example.com>", "<thread.1@example.com>")
    finally:
        engine.dispose()


def test_the_migrations_match_the_outbox_and_health_models(url: str) -> None:
    """The hand-written migrations create the columns, keys and indexes the models declare."""
    store = Store.open(url)
    try:
        with store.db.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        store.close()
    ours: list[Any] = [d for d in diffs if any(t in repr(d) for t in OUR_TABLES)]
    assert ours == []
