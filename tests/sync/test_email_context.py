"""Mail contexts: public comments only for customers, the decision's facts for management."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from escalation.decision import (
    Action,
    AddLabel,
    CustomerEvent,
    Decision,
    LedgerEntry,
    MoveStatus,
    SetPriority,
)
from inbound_mail import Verdict, read_confirmation
from mapping.model import (
    Comment,
    EscalationState,
    Person,
    Priority,
    Ref,
    Status,
    System,
    Ticket,
    Visibility,
)
from sync.procedure.email_context import (
    DEFAULT_AUTHOR,
    NO_APPROVAL,
    as_decided,
    customer_context,
    management_context,
    requester_label,
)


def test_origin_marker_is_not_shown_to_the_customer() -> None:
    """A mirrored engineering comment reaches the customer without its bookkeeping marker."""
    ticket = Ticket(
        ref=Ref(system=System.SERVICENOW, id="s1", key="INC0010001"),
        summary="Checkout fails",
        comments=(
            Comment(
                id="c1",
                body="Fix deployed.\n\n[escalation-sync origin=jira:DS-1:10001]",
                visibility=Visibility.PUBLIC,
            ),
            Comment(id="c2", body="internal detail", visibility=Visibility.INTERNAL),
        ),
    )
    context = customer_context(ticket, company="Example Support")
    assert [c.body for c in context.comments] == ["Fix deployed."]
    assert context.latest_comment is not None and context.latest_comment.body == "Fix deployed."


# --- the ticket as the decision leaves it --------------------------------------------------------

T0 = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)
ENGINEERING_UPDATE = Comment(
    id="c1",
    body="Found it: a cache key collision. A fix is being tested.\n\n"
    "[escalation-sync origin=jira:DS-1:10001]",
    visibility=Visibility.PUBLIC,
    created=T0,
)
CUSTOMER_REPLY = Comment(
    id="c2",
    body="Thanks, we are waiting.",
    visibility=Visibility.PUBLIC,
    author=Person(id="carla", name="Carla Customer"),
    created=T0 + timedelta(minutes=5),
)


def _ticket(**extra: Any) -> Ticket:
    data: dict[str, Any] = {
        "ref": Ref(system=System.SERVICENOW, id="s1", key="INC0010001", url="https://sn/inc"),
        "summary": "Checkout fails",
        "status": Status.IN_PROGRESS,
        "priority": Priority.P2,
        "customer": Person(name="Carla Customer", email="carla@example.org"),
        "comments": (ENGINEERING_UPDATE, CUSTOMER_REPLY),
        **extra,
    }
    return Ticket.model_validate(data)


def _decision(
    *actions: Action, state: EscalationState = EscalationState.APPROVED, **extra: Any
) -> Decision:
    extra.setdefault("level", "L2")
    return Decision(state=state, actions=actions, reasons=(), **extra)


def test_as_decided_takes_the_status_and_priority_the_decision_writes() -> None:
    """The record is written after the mail is queued: the mail shows what it will hold."""
    decision = _decision(MoveStatus(Status.RESOLVED), SetPriority(Priority.P1), AddLabel("X"))
    after = as_decided(_ticket(), decision)
    assert (after.status, after.priority) == (Status.RESOLVED, Priority.P1)
    assert after.labels == ()
    unchanged = _ticket()
    assert as_decided(unchanged, _decision(AddLabel("X"))) is unchanged


def test_resolved_mail_features_the_resolution_not_the_latest_comment() -> None:
    """The confirm mail quotes engineering's resolution, without a marker, and the new status."""
    ticket = as_decided(_ticket(), _decision(MoveStatus(Status.RESOLVED)))
    context = customer_context(
        ticket,
        company="Example Support",
        event=CustomerEvent.RESOLVED_PLEASE_CONFIRM,
        resolution="Fixed in 4.2.1.\n\n[escalation-sync origin=jira:DS-1:10009]",
    )
    assert context.status == "resolved"
    assert context.latest_comment is not None
    assert context.latest_comment.body == "Fixed in 4.2.1."
    assert context.latest_comment.author == "Example Support"


def test_resolved_mail_without_a_public_resolution_quotes_nothing() -> None:
    """No public resolution: an earlier comment would read as one, so none is featured."""
    context = customer_context(
        _ticket(), company="Example Support", event=CustomerEvent.RESOLVED_PLEASE_CONFIRM
    )
    assert context.latest_comment is None
    assert context.comments[0].body.startswith("Found it")


def test_public_update_features_the_comment_it_reports() -> None:
    """The engineering comment the decision names, even when the customer replied after it."""
    context = customer_context(
        _ticket(), company="Example Support", event=CustomerEvent.PUBLIC_UPDATE, comment_id="c1"
    )
    assert context.latest_comment is not None
    assert context.latest_comment.body == "Found it: a cache key collision. A fix is being tested."
    assert context.latest_comment.author == DEFAULT_AUTHOR


def test_management_context_for_an_escalation_reads_the_decision() -> None:
    """Level, reason, requester and approver of the approval decision, none from the ticket."""
    decision = _decision(
        requested_by="lee.l1", request_reason="production down", approved_by="sme.alice"
    )
    earlier = LedgerEntry(level="L1", reason="old", requested_by="x", approved_by="someone.else")
    ctx = management_context(
        _ticket(), event="escalated", company="Acme", decision=decision, entry=earlier
    )
    assert (ctx.priority, ctx.level, ctx.reason) == ("P2", "L2", "production down")
    assert (ctx.requested_by, ctx.approver) == ("lee.l1", "sme.alice")
    assert ctx.ticket_url == "https://sn/inc" and ctx.customer_name == "Carla Customer"


def test_management_context_for_an_escalation_without_approval_says_so() -> None:
    """An escalation the policy started without approval names no approver, and says why."""
    decision = _decision(requested_by="priority:P1", request_reason="P1 immediate escalation")
    ctx = management_context(_ticket(), event="escalated", company="Acme", decision=decision)
    assert ctx.approver == NO_APPROVAL
    assert ctx.requested_by == "automatic (P1 priority rule)"


def test_management_context_for_a_resolution_reads_the_ledger() -> None:
    """The resolving decision carries no approver; the ledger entry remembers who approved."""
    decision = _decision(
        state=EscalationState.RESOLVED, requested_by="lee.l1", request_reason="production down"
    )
    entry = LedgerEntry(
        level="L2", requested_by="lee.l1", reason="production down", approved_by="sme.alice"
    )
    ctx = management_context(
        as_decided(_ticket(), _decision(MoveStatus(Status.RESOLVED))),
        event="resolved",
        company="Acme",
        decision=decision,
        entry=entry,
        linked_ticket="DS-1",
        resolution="Fixed in 4.2.1",
    )
    assert (ctx.status, ctx.approver, ctx.linked_ticket) == ("resolved", "sme.alice", "DS-1")
    assert ctx.resolution == "Fixed in 4.2.1"


def test_management_context_for_an_overdue_approval_has_no_approver() -> None:
    """Nobody approved yet: the level asked for and who may approve are shown instead."""
    decision = _decision(
        state=EscalationState.PENDING_APPROVAL,
        level="L1",
        requested_by="trigger:business_critical",
        request_reason="priority P2",
    )
    entry = LedgerEntry(level="L2", approved_by="sme.alice")
    ctx = management_context(
        _ticket(),
        event="approval_overdue",
        company="Acme",
        decision=decision,
        entry=entry,
        level="L2",
        approvers="group sme",
        waited_hours=5.0,
        allowed_hours=4.0,
    )
    assert (ctx.level, ctx.approver, ctx.approvers) == ("L2", None, "group sme")
    assert ctx.requested_by == "automatic (business critical trigger)"
    assert (ctx.waited_hours, ctx.allowed_hours) == (5.0, 4.0)


@pytest.mark.parametrize(
    ("recorded", "shown"),
    [
        (None, None),
        ("lee.l1", "lee.l1"),
        ("557058:f58131cb-b67d", "557058:f58131cb-b67d"),
        ("trigger:sla_imminent", "automatic (sla imminent trigger)"),
        ("priority:P1", "automatic (P1 priority rule)"),
    ],
)
def test_requester_label(recorded: str | None, shown: str | None) -> None:
    """People stay as recorded (Jira account ids have colons); automatic requests say so."""
    assert requester_label(recorded) == shown


def test_the_confirmation_buttons_compose_an_answer_naming_the_ticket() -> None:
    """With a replies mailbox, the resolved mail's buttons are mailto: links to it whose
    subject names the ticket and whose body the default patterns read as the verdict; other
    mails and a configuration without a mailbox get none."""
    ticket = Ticket(ref=Ref(system=System.SERVICENOW, id="s1", key="INC0010001"), summary="x")
    ctx = customer_context(
        ticket,
        company="Acme",
        event=CustomerEvent.RESOLVED_PLEASE_CONFIRM,
        reply_address="replies@example.com",
    )
    assert ctx.confirm_link is not None and ctx.not_fixed_link is not None
    parts = urlsplit(ctx.confirm_link)
    assert (parts.scheme, parts.path) == ("mailto", "replies@example.com")
    query = parse_qs(parts.query)
    assert query["subject"] == ["Re: [INC0010001] Resolved"]
    assert read_confirmation(query["body"][0]).verdict is Verdict.CONFIRMED
    body = parse_qs(urlsplit(ctx.not_fixed_link).query)["body"][0]
    assert read_confirmation(body + "the export").verdict is Verdict.NOT_FIXED
    assert (
        customer_context(
            ticket, company="Acme", event=CustomerEvent.RESOLVED_PLEASE_CONFIRM
        ).confirm_link
        is None
    )
    assert (
        customer_context(
            ticket, company="Acme", event=CustomerEvent.ESCALATED, reply_address="r@example.com"
        ).confirm_link
        is None
    )
