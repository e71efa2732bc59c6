"""What the store keeps of customers' mail: each mail read, and the addresses that bounced.

```
inbound_mails     one row per mail read (its Message-ID, or a digest of it when it has none):
                  sender, ticket, kind, what became of it and why; the loop check counts a
                  sender's mails about a ticket in the last hour from here
mail_bounces      an address a delivery failed to for good: the outbox sends nothing more to
                  it (`suppression`) until the ticket's customer address changes, a reply from
                  it shows it works again, or an operator clears it (`email bounces --clear`)
```
The mail server keeps whether a mail was processed (its flags and folders); these rows are
what the product learned from them, for the loop check, the outbox and `status`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from sync.notify.notifier import Outgoing
from sync.notify.outbox import EMAIL, OutboxRow
from sync.store.database import UTCDateTime
from sync.store.db import Base

# What became of a mail.
PUBLIC_COMMENT = "public_comment"
INTERNAL_NOTE = "internal_note"
REFUSED = "refused"
BOUNCE_NOTED = "bounce_noted"
NO_TICKET = "no_ticket"
FAILED = "failed"


class InboundMailRow(Base):
    """One mail read from the replies mailbox."""

    __tablename__ = "inbound_mails"
    __table_args__ = (sa.Index("ix_inbound_mails_sender_ticket", "sender", "ticket", "seen_at"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(sa.String(300), unique=True)
    sender: Mapped[str | None] = mapped_column(sa.String(320))
    ticket: Mapped[str | None] = mapped_column(sa.String(128))
    kind: Mapped[str] = mapped_column(sa.String(16))
    outcome: Mapped[str] = mapped_column(sa.String(32))
    reason: Mapped[str | None] = mapped_column(sa.Text)
    subject: Mapped[str | None] = mapped_column(sa.String(300))
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class MailBounceRow(Base):
    """An address a delivery failed to, permanently."""

    __tablename__ = "mail_bounces"

    address: Mapped[str] = mapped_column(sa.String(320), primary_key=True)
    ticket: Mapped[str | None] = mapped_column(sa.String(128))
    status: Mapped[str | None] = mapped_column(sa.String(32))
    diagnostic: Mapped[str | None] = mapped_column(sa.Text)
    message_id: Mapped[str | None] = mapped_column(sa.String(300))
    bounced_at: Mapped[datetime] = mapped_column(UTCDateTime())


@dataclass(frozen=True, slots=True)
class InboundMail:
    """A mail read, as `status` and the tests see it."""

    message_id: str
    sender: str | None
    ticket: str | None
    kind: str
    outcome: str
    reason: str | None
    seen_at: datetime
    settled_at: datetime | None


@dataclass(frozen=True, slots=True)
class Bounced:
    """An address mail is no longer sent to, and why."""

    address: str
    ticket: str | None
    status: str | None
    diagnostic: str | None
    bounced_at: datetime

    def reason(self) -> str:
        """The sentence the outbox records for a message it did not send."""
        why = " ".join(p for p in (self.status, self.diagnostic) if p)
        about = f" (ticket {self.ticket})" if self.ticket else ""
        return (
            f"{self.address} bounced on {self.bounced_at:%Y-%m-%d %H:%M} UTC{about}"
            + (f": {why[:300]}" if why else "")
            + "; no mail goes to it until the ticket's address changes or "
            "`escalation-sync email bounces --clear` lifts it"
        )


def _orm(session: Any) -> Session:
    orm = getattr(session, "orm", session)
    if not isinstance(orm, Session):
        raise TypeError("expected an SQLAlchemy Session or a StoreSession")
    return orm


def _upsert(orm: Session, model: type[Base], keys: list[str], values: dict[str, Any]) -> None:
    dialect = orm.get_bind().dialect.name
    update = {k: v for k, v in values.items() if k not in keys}
    if dialect == "postgresql":
        orm.execute(
            pg_insert(model)
            .values(**values)
            .on_conflict_do_update(index_elements=keys, set_=update)
        )
    elif dialect == "sqlite":
        orm.execute(
            sqlite_insert(model)
            .values(**values)
            .on_conflict_do_update(index_elements=keys, set_=update)
        )
    else:  # pragma: no cover - the store runs on SQLite and PostgreSQL
        orm.merge(model(**values))


def record_mail(
    session: Any,
    *,
    message_id: str,
    sender: str | None,
    ticket: str | None,
    kind: str,
    outcome: str,
    reason: str | None,
    subject: str | None,
    now: datetime,
    settled: bool,
) -> None:
    """Record (or update, when read again after a crash) what became of a mail."""
    orm = _orm(session)
    values: dict[str, Any] = {
        "message_id": message_id[:300],
        "sender": sender[:320] if sender else None,
        "ticket": ticket[:128] if ticket else None,
        "kind": kind,
        "outcome": outcome,
        "reason": (reason or "")[:2000] or None,
        "subject": (subject or "")[:300] or None,
        "seen_at": now,
        "settled_at": now if settled else None,
    }
    existing = orm.scalar(
        select(InboundMailRow.seen_at).where(InboundMailRow.message_id == values["message_id"])
    )
    if existing is not None:
        # The loop check counts a mail once, when it was first seen.
        values["seen_at"] = existing
    _upsert(orm, InboundMailRow, ["message_id"], values)


def earlier_mails(
    session: Any, sender: str, ticket: str, *, since: datetime, besides: str | None = None
) -> list[datetime]:
    """When `sender` sent earlier mails about `ticket` (since `since`), `besides` left out."""
    orm = _orm(session)
    query = select(InboundMailRow.seen_at).where(
        InboundMailRow.sender == sender,
        InboundMailRow.ticket == ticket,
        InboundMailRow.seen_at >= since,
    )
    if besides is not None:
        query = query.where(InboundMailRow.message_id != besides[:300])
    return list(orm.scalars(query))


def list_mails(session: Any, *, limit: int = 100) -> list[InboundMail]:
    """The newest mails read, newest first."""
    orm = _orm(session)
    rows = orm.scalars(select(InboundMailRow).order_by(InboundMailRow.seen_at.desc()).limit(limit))
    return [
        InboundMail(
            r.message_id, r.sender, r.ticket, r.kind, r.outcome, r.reason, r.seen_at, r.settled_at
        )
        for r in rows
    ]


def mail_counts(session: Any) -> dict[str, int]:
    """How many mails ended each way (public_comment, refused, ...)."""
    orm = _orm(session)
    query = select(InboundMailRow.outcome, func.count()).group_by(InboundMailRow.outcome)
    return {str(outcome): int(n) for outcome, n in orm.execute(query)}


def add_bounce(
    session: Any,
    *,
    address: str,
    ticket: str | None,
    status: str | None,
    diagnostic: str | None,
    message_id: str | None,
    now: datetime,
) -> None:
    """Stop mail to `address` (a later bounce of it refreshes the row)."""
    _upsert(
        _orm(session),
        MailBounceRow,
        ["address"],
        {
            "address": address.strip().lower()[:320],
            "ticket": ticket[:128] if ticket else None,
            "status": (status or "")[:32] or None,
            "diagnostic": (diagnostic or "")[:1000] or None,
            "message_id": (message_id or "")[:300] or None,
            "bounced_at": now,
        },
    )


def clear_bounce(session: Any, address: str) -> bool:
    """Send to `address` again; False when it was not stopped."""
    result = _orm(session).execute(
        delete(MailBounceRow).where(MailBounceRow.address == address.strip().lower())
    )
    return bool(getattr(result, "rowcount", 0))


def bounced(session: Any, addresses: Iterable[str]) -> dict[str, Bounced]:
    """The stopped addresses among `addresses` (compared in lower case), by address."""
    wanted = sorted({a.strip().lower() for a in addresses if a})
    if not wanted:
        return {}
    rows = _orm(session).scalars(select(MailBounceRow).where(MailBounceRow.address.in_(wanted)))
    return {r.address: _bounced(r) for r in rows}


def list_bounces(session: Any) -> list[Bounced]:
    """Every stopped address, newest first."""
    rows = _orm(session).scalars(select(MailBounceRow).order_by(MailBounceRow.bounced_at.desc()))
    return [_bounced(r) for r in rows]


def _bounced(row: MailBounceRow) -> Bounced:
    return Bounced(row.address, row.ticket, row.status, row.diagnostic, row.bounced_at)


def suppressed(session: Any, item: Outgoing) -> dict[str, str]:
    """The outbox's question before an e-mail goes out: which recipients are stopped, and why
    (`OutboxWorker(suppressed=...)`)."""
    if item.channel != EMAIL:
        return {}
    return {address: b.reason() for address, b in bounced(session, item.destination).items()}


def sent_addresses(session: Any, ticket: str, addresses: Sequence[str]) -> set[str]:
    """Which of `addresses` the product mailed about `ticket` (a bounce for any other address
    is not about a mail of ours)."""
    wanted = {a.strip().lower() for a in addresses if a}
    if not wanted:
        return set()
    query = select(OutboxRow.recipients).where(
        OutboxRow.channel == EMAIL, OutboxRow.ticket_ref == ticket
    )
    found: set[str] = set()
    for recipients in _orm(session).scalars(query):
        found.update(a for a in (str(r).strip().lower() for r in recipients or ()) if a in wanted)
    return found


def sent_ticket(session: Any, message_id: str) -> str | None:
    """The ticket an e-mail of ours with this Message-ID (or thread id) was about, if any."""
    orm = _orm(session)
    found = orm.scalar(
        select(OutboxRow.ticket_ref)
        .where(OutboxRow.channel == EMAIL, OutboxRow.message_id == message_id)
        .limit(1)
    )
    if found is None:
        found = orm.scalar(
            select(OutboxRow.ticket_ref)
            .where(OutboxRow.channel == EMAIL, OutboxRow.thread == message_id)
            .limit(1)
        )
    return str(found) if found is not None else None


def mailed_about(session: Any, ticket: str) -> bool:
    """Whether the product ever queued an e-mail about `ticket`."""
    orm = _orm(session)
    found = orm.scalar(
        select(OutboxRow.id)
        .where(OutboxRow.channel == EMAIL, OutboxRow.ticket_ref == ticket)
        .limit(1)
    )
    return found is not None


__all__ = [
    "BOUNCE_NOTED",
    "FAILED",
    "INTERNAL_NOTE",
    "NO_TICKET",
    "PUBLIC_COMMENT",
    "REFUSED",
    "Bounced",
    "InboundMail",
    "InboundMailRow",
    "MailBounceRow",
    "add_bounce",
    "bounced",
    "clear_bounce",
    "earlier_mails",
    "list_bounces",
    "list_mails",
    "mail_counts",
    "mailed_about",
    "record_mail",
    "sent_addresses",
    "sent_ticket",
    "suppressed",
]
