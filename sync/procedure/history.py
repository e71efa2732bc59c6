"""Every decision that did something, kept in the store for `explain` and `report`.

The ledger holds where each escalation stands now; this table holds how it got there: each
recorded decision with an effect, its reasons and its actions in words. It is written in the
transaction that records the decision in the ledger, so the two never disagree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.orm import Mapped, Session, mapped_column

from escalation.decision import Decision
from escalation.history import PastDecision, past_decision, worth_keeping
from mapping.model import EscalationState
from sync.store.database import UTCDateTime
from sync.store.db import Base


class DecisionRow(Base):
    """One recorded decision about one ticket."""

    __tablename__ = "escalation_decisions"
    __table_args__ = (
        sa.Index("ix_escalation_decisions_ticket", "ticket_ref", "at"),
        sa.Index("ix_escalation_decisions_at", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    ticket_ref: Mapped[str] = mapped_column(sa.String(200))
    ticket_key: Mapped[str | None] = mapped_column(sa.String(200))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    state_before: Mapped[str] = mapped_column(sa.String(32))
    state: Mapped[str] = mapped_column(sa.String(32))
    level: Mapped[str | None] = mapped_column(sa.String(64))
    requested_by: Mapped[str | None] = mapped_column(sa.String(200))
    reason: Mapped[str | None] = mapped_column(sa.Text)
    approved_by: Mapped[str | None] = mapped_column(sa.String(400))
    category: Mapped[str | None] = mapped_column(sa.String(200))
    request_started: Mapped[bool] = mapped_column(sa.Boolean)
    activated: Mapped[bool] = mapped_column(sa.Boolean)
    released: Mapped[bool] = mapped_column(sa.Boolean)
    actions: Mapped[list[str]] = mapped_column(sa.JSON)
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON)


def keep(orm: Session, key: str, before: EscalationState, decision: Decision, at: datetime) -> None:
    """Add `decision` to the ticket's history when it did something."""
    if not worth_keeping(before, decision):
        return
    past = past_decision(key, before, decision, at)
    orm.add(
        DecisionRow(
            ticket_ref=key,
            ticket_key=past.ticket_key,
            at=at,
            state_before=before.value,
            state=past.state.value,
            level=past.level,
            requested_by=past.requested_by,
            reason=past.reason,
            approved_by=past.approved_by,
            category=past.category,
            request_started=past.request_started,
            activated=past.activated,
            released=past.released,
            actions=list(past.actions),
            reasons=[dict(r) for r in past.reasons],
        )
    )


def _past(row: DecisionRow) -> PastDecision:
    return PastDecision(
        ticket=row.ticket_ref,
        ticket_key=row.ticket_key,
        at=row.at,
        state_before=EscalationState(row.state_before),
        state=EscalationState(row.state),
        level=row.level,
        requested_by=row.requested_by,
        reason=row.reason,
        approved_by=row.approved_by,
        category=row.category,
        request_started=row.request_started,
        activated=row.activated,
        released=row.released,
        actions=tuple(row.actions or ()),
        reasons=tuple(row.reasons or ()),
    )


def _orm(session: Any) -> Session:
    orm = getattr(session, "orm", session)
    if not isinstance(orm, Session):
        raise TypeError(f"expected a SQLAlchemy Session or StoreSession, got {type(session)!r}")
    return orm


def decisions_of(session: Any, ticket_ref: str) -> list[PastDecision]:
    """A ticket's recorded decisions, oldest first."""
    rows = _orm(session).scalars(
        select(DecisionRow)
        .where(DecisionRow.ticket_ref == ticket_ref)
        .order_by(DecisionRow.at, DecisionRow.id)
    )
    return [_past(r) for r in rows]


def decisions_since(session: Any, since: datetime) -> list[PastDecision]:
    """Every decision of the tickets whose escalation was requested at or after `since`.

    A ticket's whole history is returned (an escalation requested in the period may have been
    decided on before it, by the gate), oldest first.
    """
    since = since if since.tzinfo is not None else since.replace(tzinfo=UTC)
    orm = _orm(session)
    tickets = select(DecisionRow.ticket_ref).where(
        DecisionRow.at >= since, DecisionRow.request_started.is_(True)
    )
    rows = orm.scalars(
        select(DecisionRow)
        .where(DecisionRow.ticket_ref.in_(tickets))
        .order_by(DecisionRow.at, DecisionRow.id)
    )
    return [_past(r) for r in rows]
