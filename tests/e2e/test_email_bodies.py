"""What the customer and management mails say, read from the SMTP sink, end to end.

Counting messages says a mail went out; these tests read their text and HTML: the status the
decision moved the record to, the resolution engineering wrote, the missing items in plain
words, the priority, level, reason and people in management mail, and never an internal note.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from simulators.mail.sink import StoredMessage
from tests.e2e.conftest import (
    AGENT,
    COMPLETE_DESCRIPTION,
    CUSTOMER,
    CUSTOMER_EMAIL,
    SYNC_WORKFLOW,
    Harness,
    make_harness,
    preset_harness,
    step,
)

pytestmark = pytest.mark.e2e

ORIGIN = "[escalation-sync origin="


def _harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, preset: str | None) -> Harness:
    if preset is not None:
        return preset_harness(tmp_path, monkeypatch, preset)
    return make_harness(tmp_path, monkeypatch, escalation=True)


@pytest.fixture
def started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Harness]]:
    harnesses: list[Harness] = []
    try:
        yield harnesses
    finally:
        for h in harnesses:
            h.close()


def _start(
    started: list[Harness],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    preset: str | None = None,
    *,
    users: tuple[str, ...] = (),
    projects: tuple[str, ...] = (),
) -> Harness:
    h = _harness(tmp_path, monkeypatch, preset)
    started.append(h)
    for user in users:
        h.servicenow.add_user(
            user, name=user.replace(".", " ").title(), email=f"{user}@example.com"
        )
    for key in projects:
        h.jira.add_project(key, f"{key} engineering", workflow=SYNC_WORKFLOW)
    return h


def complete_incident(h: Harness, summary: str, *, urgency: str) -> str:
    """A high-impact incident that passes every completeness gate, with a log attached."""
    sys_id = h.incident(
        short_description=summary, description=COMPLETE_DESCRIPTION, impact="1", urgency=urgency
    )
    h.servicenow.attach(sys_id, "service.log", b"500 POST /pay\n" * 20, as_user=AGENT)
    return sys_id


def paired_key(h: Harness, sys_id: str) -> str:
    link = h.store.get_link("servicenow", sys_id)
    assert link is not None and link.side("jira").ticket_id
    return link.side("jira").ticket_id


def mails_to(h: Harness, address: str, event: str) -> list[StoredMessage]:
    """Messages to `address` for an outbox event (the X-Escalation-Sync-Event header)."""
    return [
        m
        for m in h.mail.messages()
        if address in m.rcpt_tos and dict(m.headers).get("X-Escalation-Sync-Event") == event
    ]


def text(message: StoredMessage) -> str:
    return (message.text or "").replace("\r\n", "\n")


def html(message: StoredMessage) -> str:
    return (message.html or "").replace("\r\n", "\n")


def assert_customer_safe(h: Harness, *internal: str) -> None:
    """No customer mail carries an origin marker or any of the internal texts."""
    customer = [m for m in h.mail.messages() if CUSTOMER_EMAIL in m.rcpt_tos]
    assert customer
    for m in customer:
        for part in (m.subject or "", text(m), html(m)):
            assert ORIGIN not in part
            for secret in internal:
                assert secret not in part, (m.subject, secret)


def test_resolution_mail_quotes_the_resolution_and_the_resolved_status(
    started: list[Harness], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example policy's story: the confirm mail quotes engineering's fix and says Resolved."""
    h = _start(started, tmp_path, monkeypatch, users=("sme.alice",))
    sys_id = complete_incident(h, "Checkout fails for all EU customers", urgency="1")
    h.servicenow.add_work_note(sys_id, "/escalate production down", as_user=AGENT)
    step(h, sys_id)
    h.servicenow.add_work_note(
        sys_id,
        "/approve-escalation reproduced in staging; engaging engineering",
        as_user="sme.alice",
    )
    step(h, sys_id)
    key = paired_key(h, sys_id)

    h.jira.transition(key, "In Progress")
    h.jira.comment(key, "Found it: a cache key collision since 4.2.0. A fix is being tested.")
    h.drain()
    [update] = mails_to(h, CUSTOMER_EMAIL, "public_update")
    assert "Found it: a cache key collision" in text(update)
    assert "Status:    In progress" in text(update)

    h.jira.comment(key, "Internal: regression from PR 4411, do not share.", public=False)
    h.drain()
    h.jira.comment(key, "Fixed in 4.2.1, deployed to production EU.")
    h.jira.transition(key, "Done")
    h.drain()
    step(h, sys_id)

    assert h.servicenow.incident(sys_id)["state"] == "6"
    [resolved] = mails_to(h, CUSTOMER_EMAIL, "resolved_please_confirm")
    body = text(resolved)
    assert "Fixed in 4.2.1, deployed to production EU." in body
    assert "Status:    Resolved" in body
    assert "cache key collision" not in body and "In progress" not in body
    assert "Fixed in 4.2.1, deployed to production EU." in html(resolved)
    assert ">Resolved</td>" in html(resolved)
    [escalated] = mails_to(h, "support-managers@example.com", "management:escalated")
    assert escalated.subject == (
        f"[{h.servicenow.incident(sys_id)['number']}] P1 escalation to L2: "
        "Checkout fails for all EU customers"
    )
    assert "Approved by:  sme.alice" in text(escalated)
    assert_customer_safe(h, "PR 4411", "reproduced in staging", "Escalation approved by")


def test_fasttrack_mails_needs_information_p2_management_and_resolution(
    started: list[Harness], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain missing items for the customer; P2 escalation and resolution mails for management."""
    h = _start(
        started,
        tmp_path,
        monkeypatch,
        "fasttrack_customer_escalation",
        users=("architect.1",),
        projects=("FTE",),
    )
    sys_id = h.incident(
        short_description="Mailbox migration stalled",
        description="Migration of 300 mailboxes stalled since Monday.",
        impact="1",
        urgency="2",
    )
    number = h.servicenow.incident(sys_id)["number"]
    h.servicenow.add_comment(sys_id, "/escalate we are blocked", as_user=CUSTOMER)
    step(h, sys_id)

    [needs] = mails_to(h, CUSTOMER_EMAIL, "needs_information")
    body = text(needs)
    for item in ("Escalation type (technical, business, process, other)", "Date of occurrence"):
        assert f"  - {item}\n" in body
    for item in ("Services impacted", "Deployment phase"):
        assert f"  - {item}\n" in body and f"<li>{item}</li>" in html(needs)
    assert "Issue description" not in body  # present, so not asked for
    for internal in ("not found", "description/comments", "is on hold", "incomplete"):
        assert internal not in body and internal not in html(needs)

    # The customer answers the mail (the gate reads comments as well as the description) and
    # the agent records the escalation type in its field.
    h.servicenow.add_comment(
        sys_id,
        "Occurred on 2026-03-09.\nServices impacted: Exchange Online\nDeployment phase: cut-over",
        as_user=CUSTOMER,
    )
    h.servicenow.update_incident(sys_id, {"u_escalation_type": "business"}, as_user=AGENT)
    step(h, sys_id)
    h.servicenow.add_work_note(sys_id, "/approve-escalation owning this", as_user="architect.1")
    step(h, sys_id)
    key = paired_key(h, sys_id)

    [escalated] = mails_to(h, "cxp.stakeholders@example.com", "management:escalated")
    assert escalated.subject == f"[{number}] P2 escalation to Architect: Mailbox migration stalled"
    body = text(escalated)
    assert body.startswith("A P2 ticket has been escalated to Architect.\n")
    assert "P1" not in body
    for line in (
        "Priority:     P2",
        "Level:        Architect",
        f"Requested by: {CUSTOMER}",
        "Approved by:  architect.1",
        "Reason:\nwe are blocked",
    ):
        assert line in body
    assert ">architect.1</td>" in html(escalated) and "we are blocked" in html(escalated)
    [told] = mails_to(h, CUSTOMER_EMAIL, "escalated")
    assert "at least every 24 hours" in text(told)

    h.jira.comment(key, "Found the stuck batch; working on it.")
    h.drain()
    h.jira.comment(key, "Root cause: tenant throttling override (internal only).", public=False)
    h.jira.transition(key, "Done")
    h.drain()
    step(h, sys_id)

    [resolved] = mails_to(h, "cxp.stakeholders@example.com", "management:resolved")
    assert resolved.subject == f"[{number}] P2 escalation resolved: Mailbox migration stalled"
    body = text(resolved)
    assert body.startswith(
        f"The P2 escalation at Architect has been resolved by engineering ({key})."
    )
    for line in ("Status:       Resolved", "Approved by:  architect.1", f"Engineering:  {key}"):
        assert line in body
    # Management may read the internal resolution; the customer may not.
    assert "Root cause: tenant throttling override" in body
    [confirm] = mails_to(h, CUSTOMER_EMAIL, "resolved_please_confirm")
    assert "Status:    Resolved" in text(confirm)
    # Engineering's last word was internal and the earlier public one is no resolution.
    assert "stuck batch" not in text(confirm)
    assert_customer_safe(h, "throttling override", "owning this", "Escalation approved by")


def test_overdue_approval_tells_management_who_waits_for_whom(
    started: list[Harness], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A P2 request waiting longer than its 4 h gets an approval-overdue mail, not a P1 one."""
    h = _start(started, tmp_path, monkeypatch, "technical_support_sop", projects=("SW",))
    requested = datetime.now(UTC) - timedelta(hours=5)
    h.engine.clock = lambda: requested
    sys_id = complete_incident(h, "Payments API slow for EU merchants", urgency="2")
    step(h, sys_id)
    assert not mails_to(h, "engineering.manager@example.com", "management:approval_overdue")

    h.engine.clock = lambda: datetime.now(UTC)
    step(h, sys_id)
    [overdue] = mails_to(h, "engineering.manager@example.com", "management:approval_overdue")
    number = h.servicenow.incident(sys_id)["number"]
    assert overdue.subject == (
        f"[{number}] Escalation approval overdue: Payments API slow for EU merchants"
    )
    body = text(overdue)
    assert body.startswith(
        "The request to escalate this P2 ticket to L2 is still waiting for approval after 5.0 "
        "hours; the policy allows 4 hours.\n"
    )
    for line in (
        "Priority:     P2",
        "Level:        L2",
        "Requested by: automatic (business critical trigger)",
        "Approvers:    group l2_leads, group engineering_managers",
        "Reason:\npriority P2",
    ):
        assert line in body
    assert "Approved by" not in body and "has been escalated" not in body
    assert "still waiting for approval" in html(overdue)
