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
from urllib.parse import quote

from connectors.email_render import CustomerContext, ManagementContext, PublicComment
from errors import DeadLetter
from escalation.decision import CustomerEvent, Decision, LedgerEntry, MoveStatus, SetPriority
from mapping.model import Comment, Person, Ticket, Visibility
from sync.pipeline.markers import strip_marker

# Who a comment is shown as when the system names no author (our own mirrored copies).
DEFAULT_AUTHOR = "Support"
# The engine records who approved every approval; none means the policy needed no approval.
NO_APPROVAL = "not required for this ticket"


class InternalContentRefused(DeadLetter):
    """A customer mail was asked to carry a comment that is not public: nothing is sent, and
    the event is parked with the reason rather than retried (it would be refused again)."""


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


# What the confirmation buttons put in the customer's answer: the default patterns of the
# policy's customer_replies read the first as a confirmation, the second as "not fixed".
CONFIRM_WORDS = "Yes, it is fixed."
NOT_FIXED_WORDS = "No, it is not fixed: "


def confirmation_links(reply_address: str, ticket_key: str, subject: str) -> tuple[str, str]:
    """`mailto:` links composing "yes, fixed" and "not fixed" answers to the replies mailbox;
    the subject names the ticket (`[INC0010001]`), so the answer is matched by it."""
    to = quote(reply_address, safe="@")
    about = f"Re: [{ticket_key}] {subject}"[:200]

    def link(words: str) -> str:
        return f"mailto:{to}?subject={quote(about, safe='')}&body={quote(words, safe='')}"

    return link(CONFIRM_WORDS), link(NOT_FIXED_WORDS)


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
    reply_address: str | None = None,
) -> CustomerContext:
    """The customer-safe view of `ticket`; `comment_id` names the public comment the mail is about.

    For `event` RESOLVED_PLEASE_CONFIRM the featured comment is `resolution`, engineering's
    resolution, which the caller passes only when it was written publicly; without one, none
    is featured (an earlier comment would read as the resolution). `portal_url` is where the
    customer can see the request (the agent's URL in `ticket.ref.url` is not used: customers
    cannot open it). `missing_information` lists what the completeness gate found missing, by
    name only. With `reply_address` (the mailbox customers' replies are read from), the
    resolved mail carries the confirmation buttons.
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
        **_buttons(ticket, event, reply_address),
    )


def _buttons(
    ticket: Ticket, event: CustomerEvent | None, reply_address: str | None
) -> dict[str, str]:
    if event is not CustomerEvent.RESOLVED_PLEASE_CONFIRM or not reply_address:
        return {}
    key = ticket.ref.key or ticket.ref.id
    confirm, not_fixed = confirmation_links(reply_address, key, "Resolved")
    return {"confirm_link": confirm, "not_fixed_link": not_fixed}


def management_context(
    ticket: Ticket,
    *,
    event: str,
    company: str,
    decision: Decision | None = None,
    entry: LedgerEntry | None = None,
    linked_ticket: str | None = None,
    level: str | None = None,
    approvers: str | None = None,
    waited_hours: float | None = None,
    allowed_hours: float | None = None,
    resolution: str | None = None,
    detail: str | None = None,
) -> ManagementContext:
    """A management notification's view: for internal readers, so level and people are shown.

    Level, reason, requester and approver come from `decision`, then from the ledger `entry`
    recorded with it, then from the ticket's escalation sub-record (which only some mappings
    fill). `level` overrides them (an overdue approval names the level asked for). An overdue
    approval has no approver: nobody has approved it yet.
    """
    esc = ticket.escalation
    d_level = decision.level if decision is not None else None
    d_reason = decision.request_reason if decision is not None else None
    d_requester = decision.requested_by if decision is not None else None
    d_approver = decision.approved_by if decision is not None else None
    e_level, e_reason, e_requester, e_approver = (
        (entry.level, entry.reason, entry.requested_by, entry.approved_by)
        if entry is not None
        else (None, None, None, None)
    )
    approver: str | None
    if event in ("approval_overdue", "requested"):
        approver = None  # nobody has approved it yet
    elif event == "escalated" and decision is not None:
        # This decision is the approval: an earlier level's approver in the ledger is not it.
        approver = d_approver or NO_APPROVAL
    else:
        approver = e_approver or d_approver or _name(esc.approver)
        if approver is None and entry is not None:
            approver = NO_APPROVAL
    return ManagementContext(
        ticket_key=ticket.ref.key or ticket.ref.id,
        summary=ticket.summary or "",
        status=ticket.status.value if ticket.status else "",
        priority=ticket.priority.value if ticket.priority else None,
        level=level or d_level or e_level or esc.level,
        reason=d_reason or e_reason or esc.reason,
        requested_by=requester_label(d_requester or e_requester) or _name(esc.requested_by),
        approver=approver,
        customer_name=_name(ticket.customer),
        ticket_url=_safe_url(ticket.ref.url),
        linked_ticket=linked_ticket,
        company=company,
        approvers=approvers,
        waited_hours=waited_hours,
        allowed_hours=allowed_hours,
        resolution=resolution,
        detail=detail,
    )


def requester_label(requested_by: str | None) -> str | None:
    """How the ledger's `requested_by` reads in a mail: a person, or what started it by itself.

    The engine records a person's user id, `trigger:<name>` for a proactive trigger and
    `priority:<P>` for a priority escalated on sight.
    """
    if not requested_by:
        return None
    kind, _, name = requested_by.partition(":")
    if kind == "trigger" and name:
        return f"automatic ({name.replace('_', ' ')} trigger)"
    if kind == "priority" and name:
        return f"automatic ({name} priority rule)"
    return requested_by


def customer_recipients(ticket: Ticket) -> tuple[str, ...]:
    """Where customer mail for `ticket` goes (empty when the ticket names no customer email)."""
    for person in (ticket.customer,):
        if person is not None and person.email:
            return (person.email,)
    return ()
