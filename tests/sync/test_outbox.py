"""The email outbox: recorded with the decision, sent once, retried, dead-lettered, crash-safe."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy.orm import Session, sessionmaker

from connectors.email import (
    CheckedSender,
    Identity,
    OutgoingEmail,
    SmtpSender,
    SmtpSettings,
    make_message_id,
    thread_root_id,
)
from connectors.email_render import RenderedEmail
from connectors.errors import InvalidRequest, RateLimited, TransportFailed
from simulators.mail import MailSink
from sync.notify import outbox
from sync.notify.outbox import OutboxKey, OutboxWorker, backoff_delay, enqueue
from sync.store.database import Store
from tests.sync.store_backends import postgres_schema

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
DOMAIN = "example.com"
IDENTITY = Identity("support@example.com", "Acme Support")
RENDERED = RenderedEmail(
    subject="[INC0010001] Your request has been escalated",
    text="We escalated it.\n",
    html="<p>We escalated it.</p>\n",
)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so nothing in the worker catches it."""


class ScriptedSender:
    """Raises the queued errors in order, then succeeds; records what it was asked to send."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.sent: list[OutgoingEmail] = []

    def send(self, message: OutgoingEmail) -> str:
        if self.errors:
            raise self.errors.pop(0)
        self.sent.append(message)
        return message.message_id


@pytest.fixture(params=["sqlite", "postgresql"])
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / 'state.db'}"
        else:
            url = stack.enter_context(postgres_schema())
        store = Store.open(url)
        stack.callback(store.close)
        yield sessionmaker(store.db, expire_on_commit=False)


@pytest.fixture(scope="module")
def sink() -> Iterator[MailSink]:
    with MailSink() as running:
        yield running


@pytest.fixture()
def clean_sink(sink: MailSink) -> MailSink:
    sink.clear()
    return sink


def _smtp(sink: MailSink) -> SmtpSender:
    return SmtpSender(
        SmtpSettings(host="127.0.0.1", port=sink.smtp_port, security="none"), IDENTITY
    )


def _sink_lookup(sink: MailSink) -> CheckedSender:
    def lookup(message_id: str) -> bool:
        response = requests.get(
            f"{sink.api_url}/messages", params={"message_id": message_id}, timeout=5
        )
        response.raise_for_status()
        return bool(response.json())

    return CheckedSender(_smtp(sink), lookup)


def _enqueue(
    sessions: sessionmaker[Session],
    version: str = "1",
    to: tuple[str, ...] = ("customer@example.org",),
    event: str = "escalated",
) -> OutboxKey:
    key = OutboxKey("INC0010001", event, version)
    with sessions.begin() as session:
        enqueue(session, key, to=to, rendered=RENDERED, id_domain=DOMAIN, now=T0)
    return key


def _rows(sessions: sessionmaker[Session]) -> list[outbox.OutboxEntry]:
    with sessions() as session:
        return outbox.list_entries(session)


def test_enqueue_commits_with_the_callers_transaction(sessions: sessionmaker[Session]) -> None:
    """A row enqueued in a transaction that rolls back is gone; committed, it stays."""
    key = OutboxKey("INC0010001", "escalated", "1")
    with pytest.raises(RuntimeError), sessions.begin() as session:
        enqueue(session, key, to=("c@example.org",), rendered=RENDERED, id_domain=DOMAIN, now=T0)
        raise RuntimeError("the decision failed")
    assert _rows(sessions) == []
    _enqueue(sessions)
    [row] = _rows(sessions)
    assert row.status == outbox.PENDING
    assert row.message_id == make_message_id(str(key), DOMAIN)


def test_duplicate_key_is_a_no_op(sessions: sessionmaker[Session]) -> None:
    """The same (ticket, event, version) enqueued twice gives one row and reports False."""
    key = OutboxKey("INC0010001", "escalated", "1")
    results = []
    for _ in range(2):
        with sessions.begin() as session:
            results.append(
                enqueue(
                    session, key, to=("c@example.org",), rendered=RENDERED, id_domain=DOMAIN, now=T0
                )
            )
    assert results == [True, False]
    assert len(_rows(sessions)) == 1


def test_worker_sends_once_through_smtp(
    sessions: sessionmaker[Session], clean_sink: MailSink
) -> None:
    """A due row is sent with its Message-ID and thread headers, marked sent, never sent again."""
    key = _enqueue(sessions)
    worker = OutboxWorker(sessions, _smtp(clean_sink), clock=Clock())
    assert worker.run_once() == 1
    assert worker.run_once() == 0
    [message] = clean_sink.messages()
    headers = dict(message.headers)
    assert message.message_id == make_message_id(str(key), DOMAIN)
    assert headers["In-Reply-To"] == thread_root_id("INC0010001", DOMAIN)
    assert headers["X-Escalation-Sync-Ticket"] == "INC0010001"
    assert headers["X-Escalation-Sync-Event"] == "escalated"
    [row] = _rows(sessions)
    assert (row.status, row.sent_at, row.attempts) == (outbox.SENT, T0, 0)


def test_transient_failures_back_off_then_dead_letter(sessions: sessionmaker[Session]) -> None:
    """Each transient failure doubles the wait; after max_attempts the row is dead, with why."""
    _enqueue(sessions)
    clock = Clock()
    sender = ScriptedSender(*(TransportFailed("connection reset") for _ in range(4)))
    worker = OutboxWorker(
        sessions, sender, clock=clock, max_attempts=4, base_delay=timedelta(minutes=1)
    )
    waits = []
    for _ in range(3):
        assert worker.run_once() == 0
        [row] = _rows(sessions)
        assert row.status == outbox.PENDING
        waits.append(row.next_attempt_at - clock.now)
        assert worker.run_once() == 0  # not due yet: nothing is attempted
        clock.now = row.next_attempt_at
    assert waits == [timedelta(minutes=1), timedelta(minutes=2), timedelta(minutes=4)]
    worker.run_once()
    [row] = _rows(sessions)
    assert row.status == outbox.DEAD
    assert row.attempts == 4
    assert row.last_error == "gave up after 4 attempts: TransportFailed: connection reset"
    assert sender.sent == []


def test_retry_after_is_honoured(sessions: sessionmaker[Session]) -> None:
    """A rate-limit answer with retry_after postpones the row at least that long."""
    _enqueue(sessions)
    sender = ScriptedSender(RateLimited("throttled", retry_after=900))
    OutboxWorker(sessions, sender, clock=Clock()).run_once()
    [row] = _rows(sessions)
    assert row.next_attempt_at == T0 + timedelta(seconds=900)


def test_then_success_after_transient_failure(sessions: sessionmaker[Session]) -> None:
    """After a transient failure the row is sent on the next due run."""
    _enqueue(sessions)
    clock = Clock()
    sender = ScriptedSender(TransportFailed("timeout"))
    worker = OutboxWorker(sessions, sender, clock=clock)
    assert worker.run_once() == 0
    clock.advance(timedelta(minutes=1))
    assert worker.run_once() == 1
    assert len(sender.sent) == 1
    assert _rows(sessions)[0].status == outbox.SENT


@pytest.mark.parametrize(
    ("recipient", "reason"),
    [
        ("not an address", "invalid recipient address"),
        ("gone@example.org", "550"),
    ],
)
def test_bad_address_is_dead_lettered_with_the_reason(
    sessions: sessionmaker[Session], clean_sink: MailSink, recipient: str, reason: str
) -> None:
    """A malformed address, or one the server refuses with 5xx, ends dead with a clear reason."""
    clean_sink.refuse("gone@example.org", 550, "5.1.1 User unknown")
    _enqueue(sessions, to=(recipient,))
    _enqueue(sessions, version="2")  # a good message behind it still goes out
    assert OutboxWorker(sessions, _smtp(clean_sink), clock=Clock()).run_once() == 1
    bad, good = _rows(sessions)
    assert bad.status == outbox.DEAD and reason in (bad.last_error or "")
    assert "InvalidAddress" in (bad.last_error or "")
    assert good.status == outbox.SENT
    assert [m.rcpt_tos for m in clean_sink.messages()] == [["customer@example.org"]]


def test_permanent_error_is_not_retried(sessions: sessionmaker[Session]) -> None:
    """A PermanentError from the transport goes straight to dead."""
    _enqueue(sessions)
    sender = ScriptedSender(InvalidRequest("message refused: 554 spam"))
    OutboxWorker(sessions, sender, clock=Clock()).run_once()
    [row] = _rows(sessions)
    assert (row.status, row.attempts) == (outbox.DEAD, 1)
    assert row.last_error == "InvalidRequest: message refused: 554 spam"


def test_missing_recipient_is_dead_lettered(sessions: sessionmaker[Session]) -> None:
    """A ticket without a customer address gives a dead row saying so, not a crash."""
    _enqueue(sessions, to=())
    OutboxWorker(sessions, ScriptedSender(), clock=Clock()).run_once()
    [row] = _rows(sessions)
    assert row.status == outbox.DEAD and "no recipient" in (row.last_error or "")


class CrashAfterSend:
    """Sends for real, then 'dies' before the worker can record it."""

    def __init__(self, inner: CheckedSender | SmtpSender) -> None:
        self.inner = inner

    def send(self, message: OutgoingEmail) -> str:
        self.inner.send(message)
        raise Crash


class CrashBeforeSend:
    """'Dies' after the claim, before anything reaches the transport."""

    def send(self, message: OutgoingEmail) -> str:
        raise Crash


def test_crash_between_send_and_record_does_not_duplicate(
    sessions: sessionmaker[Session], clean_sink: MailSink
) -> None:
    """Crash after SMTP accepted the message: after restart the sink still has exactly one."""
    _enqueue(sessions)
    clock = Clock()
    lease = timedelta(minutes=10)
    with pytest.raises(Crash):
        OutboxWorker(
            sessions, CrashAfterSend(_sink_lookup(clean_sink)), clock=clock, lease=lease
        ).run_once()
    assert _rows(sessions)[0].status == outbox.SENDING
    assert len(clean_sink.messages()) == 1

    restarted = OutboxWorker(sessions, _sink_lookup(clean_sink), clock=clock, lease=lease)
    assert restarted.run_once() == 0  # inside the lease the claim is left alone
    clock.advance(lease + timedelta(seconds=1))
    restarted.run_once()
    restarted.run_once()
    assert len(clean_sink.messages()) == 1
    [row] = _rows(sessions)
    assert row.status == outbox.SENT
    assert "interrupted" in (row.last_error or "")


def test_crash_before_send_is_sent_after_restart(
    sessions: sessionmaker[Session], clean_sink: MailSink
) -> None:
    """Crash after the claim but before sending: the restart finds nothing sent and sends once."""
    _enqueue(sessions)
    clock = Clock()
    with pytest.raises(Crash):
        OutboxWorker(sessions, CrashBeforeSend(), clock=clock).run_once()
    clock.advance(timedelta(minutes=11))
    restarted = OutboxWorker(sessions, _sink_lookup(clean_sink), clock=clock)
    assert restarted.run_once() == 1
    assert restarted.run_once() == 0
    assert len(clean_sink.messages()) == 1
    assert _rows(sessions)[0].status == outbox.SENT


def test_crash_without_a_lookup_waits_for_an_operator(
    sessions: sessionmaker[Session], clean_sink: MailSink
) -> None:
    """Plain SMTP cannot tell: the row becomes unknown, is never re-sent blindly, then resolved."""
    _enqueue(sessions)
    clock = Clock()
    with pytest.raises(Crash):
        OutboxWorker(sessions, CrashAfterSend(_smtp(clean_sink)), clock=clock).run_once()
    clock.advance(timedelta(hours=1))
    worker = OutboxWorker(sessions, _smtp(clean_sink), clock=clock)
    assert worker.run_once() == 0
    [row] = _rows(sessions)
    assert row.status == outbox.UNKNOWN
    assert row.message_id in (row.last_error or "")
    assert len(clean_sink.messages()) == 1
    with sessions.begin() as session:
        assert outbox.resolve_unknown(session, row.id, sent=True, now=clock.now)
    worker.run_once()
    assert len(clean_sink.messages()) == 1
    assert _rows(sessions)[0].status == outbox.SENT


def test_requeue_dead_and_counts(sessions: sessionmaker[Session]) -> None:
    """A dead row can be requeued for a full set of attempts; counts and last_sent_at follow."""
    _enqueue(sessions)
    clock = Clock()
    OutboxWorker(sessions, ScriptedSender(InvalidRequest("bad")), clock=clock).run_once()
    with sessions() as session:
        assert outbox.status_counts(session)[outbox.DEAD] == 1
        assert outbox.last_sent_at(session, "INC0010001", ["escalated"]) is None
    with sessions.begin() as session:
        assert outbox.requeue_dead(session, _rows(sessions)[0].id, now=clock.now)
    assert OutboxWorker(sessions, ScriptedSender(), clock=clock).run_once() == 1
    with sessions() as session:
        assert outbox.status_counts(session) == {
            "pending": 0,
            "sending": 0,
            "sent": 1,
            "dead": 0,
            "unknown": 0,
        }
        assert outbox.last_sent_at(session, "INC0010001", ["escalated"]) == T0


def test_backoff_delay_is_capped() -> None:
    """The exponential delay stops at the maximum but never undercuts Retry-After."""
    base, cap = timedelta(minutes=1), timedelta(hours=1)
    assert backoff_delay(1, base=base, maximum=cap) == timedelta(minutes=1)
    assert backoff_delay(20, base=base, maximum=cap) == cap
    assert backoff_delay(1, base=base, maximum=cap, retry_after=7200) == timedelta(hours=2)


def test_worker_for_settings_sends_through_the_configured_transport(
    tmp_path: Path, clean_sink: MailSink
) -> None:
    """worker_for builds the transport from [email] settings and sends on the store's engine."""
    from connectors.email import EmailSettings

    store = Store.open(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        email = EmailSettings.model_validate(
            {
                "from_address": "support@example.com",
                "smtp": {"host": "127.0.0.1", "port": clean_sink.smtp_port, "security": "none"},
            }
        )
        with store.session() as tx:
            enqueue(
                tx,
                OutboxKey("INC0010001", "closed", "7"),
                to=("customer@example.org",),
                rendered=RENDERED,
                id_domain=email.id_domain,
                now=T0,
            )
        assert outbox.worker_for(store.db, email, clock=Clock()).run_once() == 1
        [message] = clean_sink.messages()
        assert dict(message.headers)["From"] == "Support <support@example.com>"
    finally:
        store.close()


@pytest.mark.parametrize(("found", "status"), [(True, outbox.SENT), (None, outbox.UNKNOWN)])
def test_uncertain_delivery_is_checked_not_resent(
    sessions: sessionmaker[Session], found: bool | None, status: str
) -> None:
    """A connection lost after the hand-over is settled like a crash: checked, never resent."""
    from connectors.email import DeliveryUncertain

    _enqueue(sessions)
    clock = Clock()
    flaky = ScriptedSender(DeliveryUncertain("connection lost after DATA"))
    checked = CheckedSender(flaky, lambda _mid: found)
    worker = OutboxWorker(sessions, checked, clock=clock)
    assert worker.run_once() == 0
    [row] = _rows(sessions)
    assert row.status == outbox.SENDING and "DeliveryUncertain" in (row.last_error or "")
    assert worker.run_once() == 0  # within the lease nothing happens
    clock.advance(timedelta(minutes=11))
    worker.run_once()
    assert _rows(sessions)[0].status == status
    assert flaky.sent == []
