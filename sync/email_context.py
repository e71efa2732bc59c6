"""Build the template contexts from a canonical ticket, keeping internal content out.

The customer context is the one place canonical data crosses into customer mail. It copies the
summary, key, status, priority, the customer's name and the comments whose visibility is PUBLIC;
it never reads the description, internal notes / work notes, or the escalation sub-record
(requester, approver, reason). A caller asking to feature an internal comment gets an error
instead of a mail.

Mail is queued in the decision's transaction, before the engine writes the decision to the
record, so the ticket as read still has the old status: `as_decided` gives the ticket as the
decision leaves it, and the contexts are built from that.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.email_render import CustomerContext, ManagementContext, PublicComment
from escalation.decision import CustomerEvent, Decision, MoveStatus, SetPriority
from mapping.model import Comment, Person, Ticket, Visibility
from sync.markers import strip_marker

# Who a comment is shown as when the system names no author (our own mirrored copies).
DEFAULT_AUTHOR = "Support"


class InternalContentRefused(ValueError):
    """A customer mail was asked to carry a comment that is not public."""


def _name(person: Person | None) -> str | None:
    if person is None:
        return None
    return person.name or None


def _public(comment: Comment) -> PublicComment:
    # The origin marker is bookkeeping for the sync, not something a customer should read.
    return PublicComment(
        author=_name(comment.author) or DEFAULT_AUTHOR,
        body=strip_marker(comment.body),
        created=comment.created,
    )


def _order(comment: Comment) -> datetime:
    return comment.created or datetime.min.replace(tzinfo=UTC)


def public_comments(ticket: Ticket) -> tuple[Comment, ...]:
    """The ticket's public comments, oldest first; internal notes are dropped."""
    return tuple(
        sorted((c for c in ticket.comments if c.visibility is Visibility.PUBLIC), key=_order)
    )


def _safe_url(url: str | None) -> str | None:
    if url and url.startswith(("https://", "http://")):
        return url
    return None


def as_decided(ticket: Ticket, decision: Decision) -> Ticket:
    """`ticket` with the status and priority `decision` moves it to."""
    update: dict[str, Any] = {}
    for action in decision.actions:
        if isinstance(action, MoveStatus):
            update["status"] = action.status
        elif isinstance(action, SetPriority):
            update["priority"] = action.priority
    return ticket.model_copy(update=update) if update else ticket


def customer_context(
    ticket: Ticket,
    *,
    company: str,
    event: CustomerEvent | None = None,
    portal_url: str | None = None,
    comment_id: str | None = None,
    resolution: str | None = None,
    missing_information: Sequence[str] = (),
    cadence: timedelta | None = None,
) -> CustomerContext:
    """The customer-safe view of `ticket`; `comment_id` names the public comment the mail is about.

    For `event` RESOLVED_PLEASE_CONFIRM the featured comment is `resolution`, engineering's
    resolution, which the caller passes only when it was written publicly; without one, none
    is featured (an earlier comment would read as the resolution). `portal_url` is where the
    customer can see the request (the agent's URL in `ticket.ref.url` is not used: customers
    cannot open it). `missing_information` lists what the completeness gate found missing, by
    name only.
    """
    public = public_comments(ticket)
    latest: PublicComment | None = _public(public[-1]) if public else None
    if event is CustomerEvent.RESOLVED_PLEASE_CONFIRM:
        body = strip_marker(resolution or "").strip()
        latest = PublicComment(author=company or DEFAULT_AUTHOR, body=body) if body else None
    elif comment_id is not None:
        chosen = next((c for c in ticket.comments if c.id == comment_id), None)
        if chosen is None:
            raise LookupError(f"comment {comment_id!r} is not on {ticket.ref.key or ticket.ref.id}")
        if chosen.visibility is not Visibility.PUBLIC:
            raise InternalContentRefused(
                f"comment {comment_id!r} is internal and cannot be sent to the customer"
            )
        latest = _public(chosen)
    return CustomerContext(
        ticket_key=ticket.ref.key or ticket.ref.id,
        summary=ticket.summary or "",
        status=ticket.status.value if ticket.status else "",
        priority=ticket.priority.value if ticket.priority else None,
        customer_name=_name(ticket.customer),
        comments=tuple(_public(c) for c in public),
        latest_comment=latest,
        ticket_url=_safe_url(portal_url),
        company=company,
        missing_information=tuple(missing_information),
        next_update_hours=max(1, round(cadence.total_seconds() / 3600)) if cadence else None,
    )


def management_context(
    ticket: Ticket, *, company: str, linked_ticket: str | None = None
) -> ManagementContext:
    """The P1 notification view: for internal recipients, so level and reason are included."""
    esc = ticket.escalation
    return ManagementContext(
        ticket_key=ticket.ref.key or ticket.ref.id,
        summary=ticket.summary or "",
        status=ticket.status.value if ticket.status else "",
        priority=ticket.priority.value if ticket.priority else None,
        level=esc.level,
        reason=esc.reason,
        requested_by=_name(esc.requested_by),
        approver=_name(esc.approver),
        customer_name=_name(ticket.customer),
        ticket_url=_safe_url(ticket.ref.url),
        linked_ticket=linked_ticket,
        company=company,
    )


def customer_recipients(ticket: Ticket) -> tuple[str, ...]:
    """Where customer mail for `ticket` goes (empty when the ticket names no customer email)."""
    for person in (ticket.customer,):
        if person is not None and person.email:
            return (person.email,)
    return ()
