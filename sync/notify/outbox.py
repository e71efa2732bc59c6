"""The outbox: what to tell people is recorded with the decision that caused it, then sent.

```
enqueue_drafts(session, notifier, notice, now)        (or `enqueue` for one e-mail)
    -> rows in `outbox`, inside the caller's transaction; the same (channel, key) again is a no-op
OutboxWorker(session_factory, notifiers).run_once() -> number of rows sent
    one row at a time:  pending --claim--> sending --send ok--> sent (what the transport did)
                           |--Retry--> pending (next_attempt_at = now + backoff) ... -> dead
                           |--DeadLetter--> dead (last_error says why, e.g. the bad address)
                           |--PauseSystem--> pending, no attempt spent; the channel is paused
                           |--every recipient stopped (an address bounced)--> dead, saying so
                           '--the process died, or the line broke after the hand-over-->
                               recovered: sent | pending | unknown (in doubt)
```

One row at a time. A transport like SMTP cannot say afterwards what it did, so the worker claims
a row only when it hands it over: a process killed in the middle of a batch leaves at most one
row in doubt, and the rest pending, to be sent once by the next worker.

Why there is an `unknown` state. Between "the transport accepted the message" and "the row says
sent" a process can die; then the row stays `sending`. Re-sending blindly could tell the
customer twice; giving up could drop the update. Every row carries an id derived from its key
(an e-mail's Message-ID) and stored before the send, so the next worker asks the notifier
whether it went out (`Notifier.was_sent`: Graph and EWS search Sent Items; a `CheckedSender`
can pair SMTP with an archive or the test sink): found -> `sent`, not found -> `pending` (sent
again, safely), cannot tell -> `unknown`, which `status` and /healthz show until an operator
settles it with `email resolve` after checking the relay's log. A claim is taken back as soon as
its process is gone (same host), else when its lease runs out. A connection that breaks after
the message was handed over (`errors.InDoubt`, e.g. SMTP's `DeliveryUncertain`) is treated the
same way as a crash.

Rows are per channel (`email`, a chat channel...): a notifier (`sync.notify.notifier`) says how
each is sent; a row of a channel no notifier is configured for waits.
"""

from __future__ import annotations

import hashlib
import os
import socket
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
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

import errors
from connectors.email import (
    EmailSender,
    EmailSettings,
    build_sender,
    make_message_id,
    thread_root_id,
)
from connectors.email_render import RenderedEmail
from connectors.errors import RateLimited
from escalation.wording import plural
from sync.notify.channels.email import EmailNotifier
from sync.notify.notifier import (
    MESSAGE,
    RESOURCE,
    Delivered,
    Draft,
    Notice,
    Notifier,
    Notifiers,
    Outgoing,
    created_key,
)
from sync.runtime.health import HealthBoard, reason_of
from sync.store.database import UTCDateTime, lease_owner, utcnow
from sync.store.db import Base

log = structlog.get_logger("escalation_sync.outbox")

PENDING = "pending"
SENDING = "sending"
SENT = "sent"
DEAD = "dead"
UNKNOWN = "unknown"
STATUSES = (PENDING, SENDING, SENT, DEAD, UNKNOWN)
EMAIL = "email"


class OutboxRow(Base):
    """One message (or resource) to send on a channel; `idempotency_key` is unique per channel
    ("ticket|event|version" for an update)."""

    __tablename__ = "outbox"
    __table_args__ = (sa.UniqueConstraint("channel", "idempotency_key"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(sa.String(32), server_default=EMAIL)
    kind: Mapped[str] = mapped_column(sa.String(16), server_default=MESSAGE)
    idempotency_key: Mapped[str] = mapped_column(sa.String(400))
    ticket_ref: Mapped[str] = mapped_column(sa.String(128), index=True)
    event: Mapped[str] = mapped_column(sa.String(64))
    recipients: Mapped[list[str]] = mapped_column(sa.JSON)
    subject: Mapped[str] = mapped_column(sa.Text)
    body_text: Mapped[str] = mapped_column(sa.Text)
    body_html: Mapped[str | None] = mapped_column(sa.Text)
    message_id: Mapped[str] = mapped_column(sa.String(300), unique=True)
    thread: Mapped[str | None] = mapped_column(sa.String(300), index=True)
    extra: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    status: Mapped[str] = mapped_column(sa.String(16), index=True)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    claim_token: Mapped[str | None] = mapped_column(sa.String(64))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    claimed_by: Mapped[str | None] = mapped_column(sa.String(200))
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    result_ref: Mapped[str | None] = mapped_column(sa.String(300))
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
    channel: str = EMAIL
    kind: str = MESSAGE
    result_ref: str | None = None


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
        channel=row.channel,
        kind=row.kind,
        result_ref=row.result_ref,
    )


def orm_session(session: Any) -> Session:
    """The ORM session of a StoreSession (its `.orm`), or the Session itself."""
    orm = getattr(session, "orm", session)
    if not isinstance(orm, Session):
        raise TypeError("enqueue needs an SQLAlchemy Session or a StoreSession")
    return orm


def row_id_for(channel: str, key: str) -> str:
    """The stable id of a row whose channel fixes none (an e-mail's is its Message-ID)."""
    digest = hashlib.sha256(f"{channel}|{key}".encode()).hexdigest()[:40]
    return f"{channel}:{digest}"


def enqueue_draft(
    session: Any,
    channel: str,
    draft: Draft,
    *,
    key: str,
    ticket: str,
    event: str,
    now: datetime,
) -> bool:
    """Record one draft in the caller's open transaction; False when (channel, key) was there.

    Nothing is validated here that could make the caller's transaction fail: a bad or missing
    destination is found by the worker and dead-letters the row with the reason.
    """
    orm = orm_session(session)
    values = {
        "channel": channel,
        "kind": draft.kind,
        "idempotency_key": key,
        "ticket_ref": ticket,
        "event": event,
        "recipients": [str(a) for a in draft.destination],
        "subject": draft.subject,
        "body_text": draft.text,
        "body_html": draft.html,
        "message_id": draft.message_id or row_id_for(channel, key),
        "thread": draft.thread,
        "extra": dict(draft.extra) or None,
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
        exists = orm.scalar(
            select(OutboxRow.id).where(
                OutboxRow.channel == channel, OutboxRow.idempotency_key == key
            )
        )
        if exists is not None:
            return False
        insert_stmt = sa.insert(OutboxRow).values(**values)
    # RETURNING tells "inserted" from "skipped" on every driver; rowcount does not.
    inserted = orm.execute(insert_stmt.returning(OutboxRow.id)).scalar_one_or_none()
    return inserted is not None


def enqueue_drafts(session: Any, notifier: Notifier, notice: Notice, *, now: datetime) -> int:
    """Compose `notice` on `notifier`'s channel and record its drafts; returns how many rows
    were new."""
    added = 0
    for draft in notifier.compose(notice):
        added += enqueue_draft(
            session,
            notifier.channel,
            draft,
            key=draft.key_for(notice),
            ticket=notice.ticket,
            event=notice.event,
            now=now,
        )
    return added


def notify(session: Any, notifiers: Iterable[Notifier], notice: Notice, *, now: datetime) -> int:
    """Record `notice` on every channel that carries it, in the caller's transaction."""
    return sum(enqueue_drafts(session, n, notice, now=now) for n in notifiers)


def enqueue(
    session: Any,
    key: OutboxKey,
    *,
    to: Sequence[str],
    rendered: RenderedEmail,
    id_domain: str,
    now: datetime,
) -> bool:
    """Record one rendered e-mail in the caller's open transaction; False when the key was
    already there."""
    draft = Draft(
        destination=tuple(to),
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        message_id=make_message_id(str(key), id_domain),
        thread=thread_root_id(key.ticket, id_domain),
    )
    return enqueue_draft(
        session, EMAIL, draft, key=str(key), ticket=key.ticket, event=key.event, now=now
    )


def list_entries(
    session: Any,
    *,
    status: str | None = None,
    ticket: str | None = None,
    channel: str | None = None,
    limit: int = 1000,
) -> list[OutboxEntry]:
    """Outbox rows, oldest first, optionally of one status, ticket or channel."""
    orm = orm_session(session)
    query = select(OutboxRow).order_by(OutboxRow.id).limit(limit)
    if status is not None:
        query = query.where(OutboxRow.status == status)
    if ticket is not None:
        query = query.where(OutboxRow.ticket_ref == ticket)
    if channel is not None:
        query = query.where(OutboxRow.channel == channel)
    return [_entry(r) for r in orm.scalars(query)]


def status_counts(session: Any, *, channel: str | None = None) -> dict[str, int]:
    """How many rows are in each status (every status present, zero when none)."""
    orm = orm_session(session)
    counts = dict.fromkeys(STATUSES, 0)
    query = select(OutboxRow.status, func.count()).group_by(OutboxRow.status)
    if channel is not None:
        query = query.where(OutboxRow.channel == channel)
    for status, n in orm.execute(query):
        counts[str(status)] = int(n)
    return counts


def in_doubt_counts(session: Any) -> dict[str, int]:
    """Rows in doubt (`unknown`) per channel: each waits for an operator."""
    orm = orm_session(session)
    query = (
        select(OutboxRow.channel, func.count())
        .where(OutboxRow.status == UNKNOWN)
        .group_by(OutboxRow.channel)
    )
    return {str(channel): int(n) for channel, n in orm.execute(query)}


def store_counts(store: Any) -> dict[str, int]:
    """`status_counts` in a transaction of its own, for `status` and the /metrics gauge."""
    with store.session() as session:
        return status_counts(session)


def store_in_doubt(store: Any) -> dict[str, int]:
    """`in_doubt_counts` in a transaction of its own, for /healthz."""
    with store.session() as session:
        return in_doubt_counts(session)


def last_sent_at(
    session: Any, ticket: str, events: Sequence[str], *, channel: str = EMAIL
) -> datetime | None:
    """When a message of one of `events` for `ticket` last went out (None if never)."""
    orm = orm_session(session)
    return orm.scalar(
        select(func.max(OutboxRow.sent_at)).where(
            OutboxRow.channel == channel,
            OutboxRow.ticket_ref == ticket,
            OutboxRow.event.in_(list(events)),
            OutboxRow.status == SENT,
        )
    )


def created_ref(session: Any, channel: str, key: str) -> str | None:
    """What the transport called the resource drafted under `key` (None until it exists)."""
    orm = orm_session(session)
    return orm.scalar(
        select(OutboxRow.result_ref).where(
            OutboxRow.channel == channel,
            OutboxRow.idempotency_key == key,
            OutboxRow.kind == RESOURCE,
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
    item: Outgoing
    attempts: int


class _Waiting(Exception):
    """The row is addressed to a resource that does not exist yet."""


SessionFactory = Callable[[], Session]
Suppressions = Callable[[Session, Outgoing], Mapping[str, str]]
"""(a session, a row about to be sent) -> {destination, lower case: why it gets nothing}: an
address mail bounced from for good (sync/replies), for one."""
WAIT_FOR_RESOURCE = timedelta(seconds=1)


def as_notifiers(target: Notifiers | Notifier | EmailSender) -> Notifiers:
    """The notifiers a worker sends through: a registry, one notifier, or an e-mail transport
    (which becomes the e-mail notifier)."""
    if isinstance(target, Notifiers):
        return target
    if isinstance(target, Notifier):
        return Notifiers([target])
    return Notifiers([EmailNotifier(target)])


class OutboxWorker:
    """Claims due rows one at a time, sends each and records the outcome; safe to run in
    several processes."""

    def __init__(
        self,
        session_factory: SessionFactory,
        notifiers: Notifiers | Notifier | EmailSender,
        *,
        clock: Callable[[], datetime] = utcnow,
        max_attempts: int = 8,
        base_delay: timedelta = timedelta(minutes=1),
        max_delay: timedelta = timedelta(hours=1),
        lease: timedelta = timedelta(minutes=10),
        batch_size: int = 50,
        health: HealthBoard | None = None,
        probe_interval: timedelta = timedelta(minutes=1),
        suppressed: Suppressions | None = None,
        resync: Callable[[str, str], None] | None = None,
    ) -> None:
        self._sessions = session_factory
        self._suppressed = suppressed
        self.notifiers = as_notifiers(notifiers)
        self._clock = clock
        self._max_attempts = max(1, max_attempts)
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._lease = lease
        self._batch_size = max(1, batch_size)
        self._health = health
        self._probe_interval = probe_interval
        self._owner = lease_owner()
        # Channels this worker leaves alone until the time given (paused: credentials refused).
        self._held: dict[str, datetime] = {}
        # Told (system, id) when a row naming a record in extra["resync"] settles: a chat room
        # made or refused, whose link or reason the record's next sync writes.
        self._resync = resync

    def run_once(self) -> int:
        """Recover interrupted sends, then send what is due, one row at a time (at most
        `batch_size`); returns the number sent."""
        self.recover()
        sent = 0
        for _ in range(self._batch_size):
            claimed = self._claim_next()
            if claimed is None:
                break
            sent += self._deliver(claimed)
        return sent

    # -- recovery

    def recover(self) -> int:
        """Settle rows left `sending` by a worker that died (or whose lease ran out); returns
        how many."""
        now = self._clock()
        with self._sessions() as orm, orm.begin():
            candidates = list(orm.scalars(select(OutboxRow).where(OutboxRow.status == SENDING)))
            stale = [
                (row.id, row.claim_token, _outgoing(row))
                for row in candidates
                if self._abandoned(row, now)
            ]
        settled = 0
        for row_id, token, item in stale:
            verdict, delivered = self._lookup(item)
            if verdict == "retry-later":
                continue
            values: dict[str, Any]
            if verdict == "sent":
                values = {
                    "status": SENT,
                    "sent_at": now,
                    "claim_token": None,
                    "result_ref": delivered.ref if delivered else None,
                    "last_error": "send was interrupted; the transport has the message",
                }
                if delivered is not None and delivered.details:
                    values["extra"] = _with_details(item, delivered)
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
                        f"{item.message_id} went out; check the relay log, then resolve it"
                    ),
                }
            with self._sessions() as orm, orm.begin():
                guard = (OutboxRow.id == row_id, OutboxRow.claim_token == token)
                result = orm.execute(update(OutboxRow).where(*guard).values(**values))
                settled += int(bool(getattr(result, "rowcount", 0)))
            log.warning(
                "outbox recovered interrupted send",
                outbox_id=row_id,
                channel=item.channel,
                verdict=verdict,
            )
            if verdict == "sent":
                self._settled(item)
        return settled

    def _abandoned(self, row: OutboxRow, now: datetime) -> bool:
        """Past its lease, or claimed by a process of this host that is gone."""
        if row.claimed_at is None or row.claimed_at <= now - self._lease:
            return True
        return _claimant_gone(row.claimed_by)

    def _lookup(self, item: Outgoing) -> tuple[str, Delivered | None]:
        notifier = self.notifiers.get(item.channel)
        if notifier is None:
            return "retry-later", None
        try:
            # A message to a resource is looked up where it went (the channel made, say).
            found = notifier.was_sent(self._resolved(item, ordered=False))
        except Exception as exc:
            if errors.action_of(exc) is errors.Action.RETRY:
                return "retry-later", None
            log.exception("sent lookup failed", outbox_id=item.id, channel=item.channel)
            return "cannot-tell", None
        if found is None:
            return "cannot-tell", None
        if found is False:
            return "not-sent", None
        return "sent", found

    # -- claiming

    def _open_channels(self, now: datetime) -> list[str]:
        """Channels with a notifier that are not held back by a pause."""
        open_ = []
        for channel in self.notifiers.channels:
            until = self._held.get(channel)
            paused = self._health.paused(channel) if self._health is not None else None
            if until is not None and paused is None and self._health is not None:
                # Resumed elsewhere (a configuration reload): no need to wait for the probe.
                self._held.pop(channel, None)
                until = None
            if until is None and paused is not None:
                # Paused by another process: wait one probe interval before trying.
                until = self._held.setdefault(channel, now + self._probe_interval)
            if until is not None and now < until:
                continue
            open_.append(channel)
        return open_

    def _claim_next(self) -> _Claimed | None:
        now = self._clock()
        channels = self._open_channels(now)
        if not channels:
            return None
        for _ in range(5):
            with self._sessions() as orm, orm.begin():
                row = orm.scalars(
                    select(OutboxRow)
                    .where(
                        OutboxRow.status == PENDING,
                        OutboxRow.next_attempt_at <= now,
                        OutboxRow.channel.in_(channels),
                    )
                    .order_by(OutboxRow.next_attempt_at, OutboxRow.id)
                    .limit(1)
                ).first()
                if row is None:
                    return None
                token = uuid.uuid4().hex
                # The status guard makes the claim exclusive when several workers race.
                result = orm.execute(
                    update(OutboxRow)
                    .where(OutboxRow.id == row.id, OutboxRow.status == PENDING)
                    .values(
                        status=SENDING, claim_token=token, claimed_at=now, claimed_by=self._owner
                    )
                    .execution_options(synchronize_session=False)
                )
                if getattr(result, "rowcount", 0) == 1:
                    return _Claimed(row.id, token, _outgoing(row), row.attempts)
        return None

    def _resolved(self, item: Outgoing, *, ordered: bool = True) -> Outgoing:
        """`item` with every `created(key)` destination replaced by what the transport called
        that resource; _Waiting until it exists, DeadLetter if it never will.

        `ordered`: the messages to one resource go out in the order they were recorded (a
        chat room reads like a story), so one waits while an earlier one is not done.
        """
        keys = [k for k in (created_key(d) for d in item.destination) if k is not None]
        if not keys:
            return item
        made: dict[str, str] = {}
        with self._sessions() as orm:
            if ordered and self._earlier_undone(orm, item):
                raise _Waiting("waiting for an earlier message to the same resource")
            for key in keys:
                row = orm.scalars(
                    select(OutboxRow).where(
                        OutboxRow.channel == item.channel, OutboxRow.idempotency_key == key
                    )
                ).first()
                if row is None or row.status == DEAD:
                    raise errors.DeadLetter(
                        f"addressed to {key!r}, which was "
                        + ("never drafted" if row is None else f"not created: {row.last_error}"),
                        system=item.channel,
                    )
                if row.status != SENT or not row.result_ref:
                    raise _Waiting(f"waiting for {key!r} to be created")
                made[key] = row.result_ref
        destination = tuple(made.get(created_key(d) or "", d) for d in item.destination)
        return Outgoing(**{**_fields(item), "destination": destination})

    def _earlier_undone(self, orm: Session, item: Outgoing) -> bool:
        """An earlier row of the channel to the same destination is still to be sent."""
        earlier = orm.scalars(
            select(OutboxRow.recipients).where(
                OutboxRow.channel == item.channel,
                OutboxRow.ticket_ref == item.ticket,
                OutboxRow.id < item.id,
                OutboxRow.kind == MESSAGE,
                OutboxRow.status.in_((PENDING, SENDING, UNKNOWN)),
            )
        )
        wanted = list(item.destination)
        return any(list(recipients or ()) == wanted for recipients in earlier)

    # -- sending

    def _stopped(self, item: Outgoing) -> tuple[Outgoing | None, str | None]:
        """`item` without the destinations that get nothing (an address that bounced), and
        why; None when no destination is left."""
        if self._suppressed is None:
            return item, None
        with self._sessions() as orm:
            stopped = self._suppressed(orm, item)
        if not stopped:
            return item, None
        left = tuple(d for d in item.destination if d.strip().lower() not in stopped)
        why = "not sent to " + "; ".join(stopped.values())
        if not left:
            return None, why
        return Outgoing(**{**_fields(item), "destination": left}), why

    def _deliver(self, claimed: _Claimed) -> int:
        item, stopped = self._stopped(claimed.item)
        if item is None:
            # Said once, on the row; not a failure of the channel.
            self._record(claimed, status=DEAD, claim_token=None, last_error=stopped)
            log.warning(
                "message not sent: its recipients are stopped",
                outbox_id=claimed.id,
                channel=claimed.item.channel,
                reason=stopped,
            )
            return 0
        notifier = self.notifiers.get(item.channel)
        error: Exception | None = None
        delivered: Delivered | None = None
        try:
            if notifier is None:
                raise _Waiting(f"no notifier configured for channel {item.channel!r}")
            delivered = notifier.send(self._resolved(item))
        except Exception as exc:
            error = exc
        now = self._clock()
        if isinstance(error, errors.InDoubt):
            # Same position as a crash after the hand-over: keep the claim, and let recovery
            # ask the transport once the lease has run out.
            self._record(
                claimed, attempts=claimed.attempts + 1, claimed_at=now, last_error=_reason(error)
            )
            self._told(item.channel, error)
            return 0
        values: dict[str, Any] = {"claim_token": None}
        action = errors.action_of(error) if error is not None else None
        if error is None:
            values.update(
                status=SENT,
                sent_at=now,
                last_error=stopped,
                result_ref=delivered.ref if delivered is not None else None,
            )
            if delivered is not None and delivered.details:
                values["extra"] = _with_details(item, delivered)
            self._answered(item.channel, now)
            if item.kind == RESOURCE or any(created_key(d) for d in item.destination):
                # What waited for this resource, or for this message to it, goes now.
                self._release_waiting(item, now)
        elif isinstance(error, _Waiting):
            # A resource is usually made within a pass or two; no attempt is spent waiting.
            values.update(
                status=PENDING, next_attempt_at=now + WAIT_FOR_RESOURCE, last_error=str(error)
            )
        elif action is errors.Action.PAUSE_SYSTEM:
            # Nothing spent: every message of the channel waits for its credentials.
            values.update(
                status=PENDING,
                next_attempt_at=now + self._probe_interval,
                last_error=_reason(error),
            )
            if self._pause(item.channel, error, now):
                # Said once: the record is told the room could not be made, and why.
                self._settled(item)
        elif isinstance(error, RateLimited) and error.retry_after is not None:
            # The vendor asked for a pause, the message did nothing wrong: no attempt spent,
            # and no longer than it asked for (a long wait is not sat out in the worker).
            values.update(
                status=PENDING,
                next_attempt_at=now + timedelta(seconds=max(error.retry_after, 0.0)),
                last_error=_reason(error),
            )
            self._told(item.channel, error, counts=False)
        elif action in (errors.Action.DEAD_LETTER, errors.Action.REFUSE, errors.Action.REJECT):
            values.update(status=DEAD, last_error=_reason(error), attempts=claimed.attempts + 1)
            self._told(item.channel, error, counts=False)
        else:
            attempts = claimed.attempts + 1
            if action is errors.Action.UNKNOWN:
                log.error("unexpected error sending", outbox_id=item.id, exc_info=error)
            else:
                self._told(item.channel, error)
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
        self._record(claimed, **values)
        if values.get("status") in (SENT, DEAD):
            self._settled(item)
        if values.get("status") == DEAD:
            log.warning(
                "message dead-lettered",
                outbox_id=item.id,
                channel=item.channel,
                reason=values.get("last_error"),
            )
        elif error is not None and not isinstance(error, _Waiting):
            log.info(
                "send failed; will retry",
                outbox_id=item.id,
                channel=item.channel,
                error=_reason(error),
            )
        return 1 if error is None else 0

    def _record(self, claimed: _Claimed, **values: Any) -> None:
        with self._sessions() as orm, orm.begin():
            orm.execute(
                update(OutboxRow)
                .where(OutboxRow.id == claimed.id, OutboxRow.claim_token == claimed.token)
                .values(**values)
            )

    def _release_waiting(self, item: Outgoing, now: datetime) -> None:
        """A resource was made (or a message to it sent): the messages of its ticket that
        waited for it go now, not after their wait."""
        with self._sessions() as orm, orm.begin():
            orm.execute(
                update(OutboxRow)
                .where(
                    OutboxRow.channel == item.channel,
                    OutboxRow.ticket_ref == item.ticket,
                    OutboxRow.kind == MESSAGE,
                    OutboxRow.status == PENDING,
                    OutboxRow.attempts == 0,
                    OutboxRow.next_attempt_at > now,
                )
                .values(next_attempt_at=now)
            )

    def _settled(self, item: Outgoing) -> None:
        """Tell the record a row names that the row settled (sent, dead, or held by a pause)."""
        record = str(item.extra.get("resync") or "")
        system, _, ident = record.partition(":")
        if self._resync is None or not ident:
            return
        try:
            self._resync(system, ident)
        except Exception as exc:
            log.warning("could not queue the record again", record=record, error=type(exc).__name__)

    # -- health

    def _answered(self, channel: str, now: datetime) -> None:
        held = self._held.pop(channel, None) is not None
        resumed = False
        if self._health is not None:
            self._health.succeeded(channel)
            resumed = self._health.paused(channel) is not None and self._health.resume(channel)
        if resumed:
            log.warning("channel resumed: it answers again", channel=channel)
        if held or resumed:
            # The channel answers again: what waited for it goes now, not after its backoff.
            with self._sessions() as orm, orm.begin():
                orm.execute(
                    update(OutboxRow)
                    .where(
                        OutboxRow.channel == channel,
                        OutboxRow.status == PENDING,
                        OutboxRow.next_attempt_at > now,
                    )
                    .values(next_attempt_at=now)
                )

    def _told(self, channel: str, error: BaseException, *, counts: bool = True) -> None:
        if self._health is not None:
            self._health.failed(channel, error, counts=counts)

    def _pause(self, channel: str, error: BaseException, now: datetime) -> bool:
        """Hold the channel; True when this is the pause's start (not a probe refused again)."""
        self._held[channel] = now + self._probe_interval
        self._told(channel, error)
        reason = reason_of(error)
        first = self._health.pause(channel, reason) if self._health is not None else True
        if first:
            log.error(
                "channel paused: authentication refused; its messages wait until it answers",
                channel=channel,
                reason=reason,
            )
        return first


def worker_for(
    engine: Engine,
    email: EmailSettings,
    *,
    http: requests.Session | None = None,
    **options: Any,
) -> OutboxWorker:
    """An outbox worker on the store's engine sending e-mail through the configured transport."""
    notifier = EmailNotifier.from_settings(email, build_sender(email, http))
    return OutboxWorker(sessionmaker(engine, expire_on_commit=False), notifier, **options)


def outbox_worker(engine: Engine, notifiers: Notifiers, **options: Any) -> OutboxWorker:
    """An outbox worker on the store's engine sending through every configured notifier."""
    return OutboxWorker(sessionmaker(engine, expire_on_commit=False), notifiers, **options)


def _outgoing(row: OutboxRow) -> Outgoing:
    return Outgoing(
        id=row.id,
        channel=row.channel,
        kind=row.kind,
        key=row.idempotency_key,
        ticket=row.ticket_ref,
        event=row.event,
        destination=tuple(row.recipients or ()),
        subject=row.subject,
        text=row.body_text,
        html=row.body_html,
        message_id=row.message_id,
        thread=row.thread,
        extra=dict(row.extra or {}),
    )


def _fields(item: Outgoing) -> dict[str, Any]:
    return {name: getattr(item, name) for name in Outgoing.__dataclass_fields__}


def _claimant_gone(claimed_by: str | None) -> bool:
    """True when the claim was taken by another process of this host that no longer runs."""
    if not claimed_by:
        return False
    host, _, rest = claimed_by.partition("|")
    pid_text = rest.split("|", 1)[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _with_details(item: Outgoing, delivered: Delivered) -> dict[str, Any]:
    """The row's extra with what the transport reported about it."""
    return {**dict(item.extra), "delivered": dict(delivered.details)}


def _reason(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"[:2000]
