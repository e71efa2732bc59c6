"""Customer mail context: public comments only, the status and comment the decision reports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from escalation.decision import (
    Action,
    AddLabel,
    CustomerEvent,
    Decision,
    MoveStatus,
    SetPriority,
)
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
from sync.email_context import (
    DEFAULT_AUTHOR,
    as_decided,
    customer_context,
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
