"""Queue the periodic customer update of an escalated ticket when its cadence says it is due.

The outbox is the record of what the customer was told: the last customer mail queued for the
ticket (sent or still pending, dead ones excluded) restarts the cadence window. The update's
outbox key carries the slot it is due in, so calling this on every pass queues it once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from connectors.email import EmailSettings
from connectors.email_render import Renderer
from mapping.model import Ticket
from sync.cadence import CadenceDecision, periodic_update
from sync.email_context import customer_context, customer_recipients
from sync.outbox import DEAD, OutboxKey, OutboxRow, enqueue, orm_session

# Mail that tells the customer where things stand; each restarts the periodic window.
CUSTOMER_UPDATE_EVENTS: tuple[str, ...] = (
    "escalated",
    "needs_information",
    "public_update",
    "periodic_update",
    "resolved_please_confirm",
)


def last_customer_update_at(session: Any, ticket: str) -> datetime | None:
    """When the last customer update for `ticket` was queued (None if never)."""
    orm = orm_session(session)
    return orm.scalar(
        select(func.max(OutboxRow.created_at)).where(
            OutboxRow.ticket_ref == ticket,
            OutboxRow.event.in_(CUSTOMER_UPDATE_EVENTS),
            OutboxRow.status != DEAD,
        )
    )


def queue_periodic_update(
    session: Any,
    *,
    ticket: Ticket,
    escalated: bool,
    escalated_at: datetime | None,
    email: EmailSettings,
    renderer: Renderer,
    now: datetime,
    portal_url: str | None = None,
) -> CadenceDecision:
    """Decide with `sync.cadence` and, when due, queue the update in the caller's transaction."""
    key_name = ticket.ref.key or ticket.ref.id
    priority = ticket.priority.value if ticket.priority else None
    decision = periodic_update(
        priority=priority,
        escalated=escalated,
        escalated_at=escalated_at,
        last_public_update_at=last_customer_update_at(session, key_name),
        now=now,
        cadence=email.cadence,
    )
    if not decision.due or decision.slot is None:
        return decision
    interval = email.cadence.get(priority or "")
    context = customer_context(
        ticket, company=email.from_name, portal_url=portal_url, cadence=interval
    )
    enqueue(
        session,
        OutboxKey(key_name, "periodic_update", decision.slot),
        to=customer_recipients(ticket),
        rendered=renderer.render("periodic_update", context),
        id_domain=email.id_domain,
        now=now,
    )
    return decision
