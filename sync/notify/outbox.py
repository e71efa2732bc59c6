"""The email outbox: mail is recorded with the decision that caused it and sent by a worker.

```
enqueue(session, OutboxKey(ticket, event, version), to=..., rendered=..., id_domain=..., now=...)
    -> a row in `email_outbox`, inside the caller's transaction; the same key again is a no-op
OutboxWorker(session_factory, sender).run_once() -> number of messages sent
    pending --claim--> sending --send ok--> sent
                          |--transient--> pending (next_attempt_at = now + backoff) ... -> dead
                          |--permanent--> dead (last_error says why, e.g. the bad address)
                          '--worker died, or the connection broke after the hand-over-->
                              recovered after the lease: sent | pending | unknown
```

Why there is an `unknown` state. Between "the transport accepted the message" and "the row says
sent" a process can die; then the row stays `sending`. Re-sending blindly could mail the
customer twice; giving up could drop the update. Every message carries a Message-ID derived from
its idempotency key and stored before the send, so after the lease expires the worker asks the
transport whether that Message-ID went out, where the transport can answer (`SentLookup`: Graph
and EWS search Sent Items; a `CheckedSender` can pair SMTP with an archive or the test sink):
found -> `sent`, not found -> `pending` (sent again, safely), cannot tell -> `unknown`, which an
operator settles with `resolve_unknown` after checking the relay's log. Plain SMTP has no such
lookup, so a crash in that narrow window costs an operator decision, never a duplicate. A
connection that breaks after the message was handed over (`DeliveryUncertain`) is treated the
same way as a crash.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import requests
import sqlalchemy as sa
import structlog
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from connectors.email import (
    DeliveryUncertain,
    EmailSender,
    EmailSettings,
    InvalidAddress,
    OutgoingEmail,
    SentLookup,
    build_sender,
    make_message_id,
    thread_root_id,
    validate_address,
)
from connectors.email_render import RenderedEmail
from connectors.errors import PermanentError, RetryableError
from escalation.wording import plural
from sync.store.database import UTCDateTime, utcnow
from sync.store.db import Base

log = structlog.get_logger("escalation_sync.outbox")

PENDING = "pending"
SENDING = "sending"
SENT = "sent"
DEAD = "dead"
UNKNOWN = "unknown"
STATUSES = (PENDING, SENDING, SENT, DEAD, UNKNOWN)


class OutboxRow(Base):
    """One message to send; `idempotency_key` is "ticket|event|version"."""

    __tablename__ = "email_outbox"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(sa.String(400), unique=True)
    ticket_ref: Mapped[str] = mapped_column(sa.String(128), index=True)
    event: Mapped[str] = mapped_column(sa.String(64))
    recipients: Mapped[list[str]] = mapped_column(sa.JSON)
    cc: Mapped[list[str] | None] = mapped_column(sa.JSON)
    subject: Mapped[str] = mapped_column(sa.Text)
    body_text: Mapped[str] = mapped_column(sa.Text)
    body_html: Mapped[str | None] = mapped_column(sa.Text)
    message_id: Mapped[str] = mapped_column(sa.String(300), unique=True)
    in_reply_to: Mapped[str | None] = mapped_column(sa.String(300))
    references: Mapped[str | None] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(16), index=True)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    claim_token: Mapped[str | None] = mapped_column(sa.String(64))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


@dataclass(frozen=True, slots=True)
class OutboxKey:
    """What makes an update unique: the ticket, the event and the version that triggered it."""

    ticket: str
    event: str
    version: str

    def __str__(self) -> str:
        return f"{self.ticket}|{self.event}|{self.version}"


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A row of the outbox, detached from any session."""

    id: int
    idempotency_key: str
    ticket_ref: str
    event: str
    recipients: tuple[str, ...]
    subject: str
    message_id: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


def _entry(row: OutboxRow) -> OutboxEntry:
    return OutboxEntry(
        id=row.id,
        idempotency_key=row.idempotency_key,
        ticket_ref=row.ticket_ref,
        event=row.event,
        recipients=tuple(row.recipients or ()),
        subject=row.subject,
        message_id=row.message_id,
        status=row.status,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        created_at=row.created_at,
        sent_at=row.sent_at,
    )


def orm_session(session: Any) -> Session:
    """The ORM session of a StoreSession (its `.orm`), or the Session itself."""
    orm = getattr(session, "orm", session)
    if not isinstance(orm, Session):
        raise TypeError("enqueue needs an SQLAlchemy Session or a StoreSession")
    return orm


def enqueue(
    session: Any,
    key: OutboxKey,
    *,
    to: Sequence[str],
    rendered: RenderedEmail,
    id_domain: str,
    now: datetime,
    cc: Sequence[str] = (),
) -> bool:
    """Record a message in the caller's open transaction; False when the key was already there.

    Nothing is validated here that could make the caller's transaction fail: a bad or missing
    address is found by the worker and dead-letters the message with the reason.
    """
    orm = orm_session(session)
    root = thread_root_id(key.ticket, id_domain)
    values = {
        "idempotency_key": str(key),
        "ticket_ref": key.ticket,
        "event": key.event,
        "recipients": [str(a) for a in to],
        "cc": [str(a) for a in cc],
        "subject": rendered.subject,
        "body_text": rendered.text,
        "body_html": rendered.html,
        "message_id": make_message_id(str(key), id_domain),
        "in_reply_to": root,
        "references": root,
        "status": PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }
    dialect = orm.get_bind().dialect.name
    insert_stmt: Any
    if dialect == "sqlite":
        insert_stmt = sqlite_insert(OutboxRow).values(**values).on_conflict_do_nothing()
    elif dialect == "postgresql":
        insert_stmt = pg_insert(OutboxRow).values(**values).on_conflict_do_nothing()
    else:
        exists = orm.scalar(select(OutboxRow.id).where(OutboxRow.idempotency_key == str(key)))
        if exists is not None:
            return False
        insert_stmt = sa.insert(OutboxRow).values(**values)
    # RETURNING tells "inserted" from "skipped" on every driver; rowcount does not.
    inserted = orm.execute(insert_stmt.returning(OutboxRow.id)).scalar_one_or_none()
    return inserted is not None


def list_entries(
    session: Any, *, status: str | None = None, ticket: str | None = None, limit: int = 1000
) -> list[OutboxEntry]:
    """Outbox rows, oldest first, optionally of one status or one ticket."""
    orm = orm_session(session)
    query = select(OutboxRow).order_by(OutboxRow.id).limit(limit)
    if status is not None:
        query = query.where(OutboxRow.status == status)
    if ticket is not None:
        query = query.where(OutboxRow.ticket_ref == ticket)
    return [_entry(r) for r in orm.scalars(query)]


def status_counts(session: Any) -> dict[str, int]:
    """How many rows are in each status (every status present, zero when none)."""
    orm = orm_session(session)
    counts = dict.fromkeys(STATUSES, 0)
    for status, n in orm.execute(select(OutboxRow.status, func.count()).group_by(OutboxRow.status)):
        counts[str(status)] = int(n)
    return counts


def store_counts(store: Any) -> dict[str, int]:
    """`status_counts` in a transaction of its own, for `status` and the /metrics gauge."""
    with store.session() as session:
        return status_counts(session)


def last_sent_at(session: Any, ticket: str, events: Sequence[str]) -> datetime | None:
    """When a message of one of `events` for `ticket` last went out (None if never)."""
    orm = orm_session(session)
    return orm.scalar(
        select(func.max(OutboxRow.sent_at)).where(
            OutboxRow.ticket_ref == ticket,
            OutboxRow.event.in_(list(events)),
            OutboxRow.status == SENT,
        )
    )


def resolve_unknown(session: Any, row_id: int, *, sent: bool, now: datetime) -> bool:
    """Settle an `unknown` row after checking the relay: sent, or pending to send it again."""
    orm = orm_session(session)
    values: dict[str, Any]
    if sent:
        values = {"status": SENT, "sent_at": now, "claim_token": None}
    else:
        values = {"status": PENDING, "next_attempt_at": now, "claim_token": None}
    result = orm.execute(
        update(OutboxRow)
        .where(OutboxRow.id == row_id, OutboxRow.status == UNKNOWN)
        .values(**values)
    )
    return bool(getattr(result, "rowcount", 0))


def requeue_dead(session: Any, row_id: int, *, now: datetime) -> bool:
    """Give a dead message another full set of attempts (after the cause was fixed)."""
    orm = orm_session(session)
    result = orm.execute(
        update(OutboxRow)
        .where(OutboxRow.id == row_id, OutboxRow.status == DEAD)
        .values(status=PENDING, attempts=0, next_attempt_at=now, claim_token=None)
    )
    return bool(getattr(result, "rowcount", 0))


def backoff_delay(
    attempts: int,
    *,
    base: timedelta,
    maximum: timedelta,
    retry_after: float | None = None,
) -> timedelta:
    """Exponential delay after `attempts` failures, never shorter than the server asked for."""
    delay = min(maximum, base * (2 ** max(0, attempts - 1)))
    if retry_after is not None:
        delay = max(delay, timedelta(seconds=retry_after))
    return delay


@dataclass(frozen=True, slots=True)
class _Claimed:
    id: int
    token: str
    message: OutgoingEmail
    attempts: int


SessionFactory = Callable[[], Session]


class OutboxWorker:
    """Claims due rows, sends them and records the outcome; safe to run in several processes."""

    def __init__(
        self,
        session_factory: SessionFactory,
        sender: EmailSender,
        *,
        clock: Callable[[], datetime] = utcnow,
        max_attempts: int = 8,
        base_delay: timedelta = timedelta(minutes=1),
        max_delay: timedelta = timedelta(hours=1),
        lease: timedelta = timedelta(minutes=10),
        batch_size: int = 50,
    ) -> None:
        self._sessions = session_factory
        self._sender = sender
        self._clock = clock
        self._max_attempts = max(1, max_attempts)
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._lease = lease
        self._batch_size = batch_size

    def run_once(self) -> int:
        """Recover stale claims, then send what is due; returns the number of messages sent."""
        self.recover()
        sent = 0
        for claimed in self._claim():
            sent += self._deliver(claimed)
        return sent

    def recover(self) -> int:
        """Settle rows left `sending` past the lease by a worker that died; returns how many."""
        now = self._clock()
        with self._sessions() as orm, orm.begin():
            stale = list(
                orm.execute(
                    select(OutboxRow.id, OutboxRow.claim_token, OutboxRow.message_id).where(
                        OutboxRow.status == SENDING, OutboxRow.claimed_at <= now - self._lease
                    )
                )
            )
        settled = 0
        for row_id, token, message_id in stale:
            verdict = self._lookup(message_id)
            if verdict == "retry-later":
                continue
            with self._sessions() as orm, orm.begin():
                guard = (OutboxRow.id == row_id, OutboxRow.claim_token == token)
                values: dict[str, Any]
                if verdict == "sent":
                    values = {
                        "status": SENT,
                        "sent_at": now,
                        "claim_token": None,
                        "last_error": "send was interrupted; the transport has the message",
                    }
                elif verdict == "not-sent":
                    values = {
                        "status": PENDING,
                        "next_attempt_at": now,
                        "claim_token": None,
                        "last_error": "send was interrupted before the transport had it",
                    }
                else:
                    values = {
                        "status": UNKNOWN,
                        "claim_token": None,
                        "last_error": (
                            "send was interrupted and the transport cannot say whether "
                            f"{message_id} went out; check the relay log, then resolve it"
                        ),
                    }
                result = orm.execute(update(OutboxRow).where(*guard).values(**values))
                settled += int(bool(getattr(result, "rowcount", 0)))
            log.warning("outbox recovered interrupted send", outbox_id=row_id, verdict=verdict)
        return settled

    def _lookup(self, message_id: str) -> str:
        if not isinstance(self._sender, SentLookup):
            return "cannot-tell"
        try:
            found = self._sender.was_sent(message_id)
        except RetryableError:
            return "retry-later"
        except Exception:
            log.exception("sent-items lookup failed", message_id=message_id)
            return "cannot-tell"
        if found is None:
            return "cannot-tell"
        return "sent" if found else "not-sent"

    def _claim(self) -> list[_Claimed]:
        now = self._clock()
        claimed: list[_Claimed] = []
        with self._sessions() as orm, orm.begin():
            rows = orm.scalars(
                select(OutboxRow)
                .where(OutboxRow.status == PENDING, OutboxRow.next_attempt_at <= now)
                .order_by(OutboxRow.next_attempt_at, OutboxRow.id)
                .limit(self._batch_size)
            ).all()
            for row in rows:
                token = uuid.uuid4().hex
                # The status guard makes the claim exclusive when several workers race.
                result = orm.execute(
                    update(OutboxRow)
                    .where(OutboxRow.id == row.id, OutboxRow.status == PENDING)
                    .values(status=SENDING, claim_token=token, claimed_at=now)
                    .execution_options(synchronize_session=False)
                )
                if getattr(result, "rowcount", 0) != 1:
                    continue
                claimed.append(_Claimed(row.id, token, _message(row), row.attempts))
        return claimed

    def _deliver(self, claimed: _Claimed) -> int:
        error: Exception | None = None
        try:
            # Checked here too, so every transport dead-letters a bad address the same way.
            _check_recipients(claimed.message)
            self._sender.send(claimed.message)
        except Exception as exc:
            error = exc
        now = self._clock()
        values: dict[str, Any] = {"claim_token": None}
        if isinstance(error, DeliveryUncertain):
            # Same position as a crash after the hand-over: keep the claim, and let recovery
            # ask the transport once the lease has run out.
            with self._sessions() as orm, orm.begin():
                orm.execute(
                    update(OutboxRow)
                    .where(OutboxRow.id == claimed.id, OutboxRow.claim_token == claimed.token)
                    .values(
                        attempts=claimed.attempts + 1, claimed_at=now, last_error=_reason(error)
                    )
                )
            return 0
        if error is None:
            values.update(status=SENT, sent_at=now, last_error=None)
        elif isinstance(error, PermanentError):
            values.update(status=DEAD, last_error=_reason(error), attempts=claimed.attempts + 1)
        else:
            attempts = claimed.attempts + 1
            if not isinstance(error, RetryableError):
                log.error("unexpected error sending", outbox_id=claimed.id, exc_info=error)
            if attempts >= self._max_attempts:
                values.update(
                    status=DEAD,
                    attempts=attempts,
                    last_error=f"gave up after {plural(attempts, 'attempt')}: {_reason(error)}",
                )
            else:
                retry_after = getattr(error, "retry_after", None)
                delay = backoff_delay(
                    attempts,
                    base=self._base_delay,
                    maximum=self._max_delay,
                    retry_after=retry_after,
                )
                values.update(
                    status=PENDING,
                    attempts=attempts,
                    next_attempt_at=now + delay,
                    last_error=_reason(error),
                )
        with self._sessions() as orm, orm.begin():
            orm.execute(
                update(OutboxRow)
                .where(OutboxRow.id == claimed.id, OutboxRow.claim_token == claimed.token)
                .values(**values)
            )
        if values.get("status") == DEAD:
            log.warning(
                "email dead-lettered", outbox_id=claimed.id, reason=values.get("last_error")
            )
        elif error is not None:
            log.info("email send failed; will retry", outbox_id=claimed.id, error=_reason(error))
        return 1 if error is None else 0


def worker_for(
    engine: Engine,
    email: EmailSettings,
    *,
    http: requests.Session | None = None,
    **options: Any,
) -> OutboxWorker:
    """An outbox worker on the store's engine, sending through the configured transport."""
    return OutboxWorker(
        sessionmaker(engine, expire_on_commit=False), build_sender(email, http), **options
    )


def _message(row: OutboxRow) -> OutgoingEmail:
    return OutgoingEmail(
        to=tuple(row.recipients or ()),
        cc=tuple(row.cc or ()),
        subject=row.subject,
        text=row.body_text,
        html=row.body_html,
        message_id=row.message_id,
        in_reply_to=row.in_reply_to,
        references=tuple((row.references or "").split()),
        headers=(
            ("X-Escalation-Sync-Ticket", row.ticket_ref),
            ("X-Escalation-Sync-Event", row.event),
        ),
    )


def _check_recipients(message: OutgoingEmail) -> None:
    if not message.to:
        raise InvalidAddress("message has no recipient (the ticket names no customer email)")
    for address in (*message.to, *message.cc):
        validate_address(address)


def _reason(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"[:2000]
