"""End to end: the example policy's escalation carried out by the engine against the simulators."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.conftest import AGENT, CUSTOMER_EMAIL, Harness

pytestmark = pytest.mark.e2e

COMPLETE = (
    "Checkout fails after login. Steps to reproduce: log in, add to cart, pay. "
    "Environment: prod EU, version: 4.2. Troubleshooting: cleared cache, other browser."
)


@pytest.fixture
def harness_options() -> dict[str, Any]:
    return {"escalation": True, "echo_filter": True}


def test_approved_escalation_creates_links_tags_and_mails(harness: Harness) -> None:
    """Request, SME approval: ESCALATION tag, Jira issue with context, links, customer e-mail."""
    harness.servicenow.add_user("sme.alice", name="Alice SME", password="pw")
    sys_id = harness.incident(
        short_description="Checkout fails for EU customers", description=COMPLETE
    )
    harness.servicenow.attach(sys_id, "checkout.har", b"{}" * 20, as_user=AGENT)
    harness.servicenow.add_work_note(sys_id, "/escalate customer blocked", as_user=AGENT)
    harness.drain()
    assert harness.store.get_link("servicenow", sys_id) is None  # waiting for approval
    harness.servicenow.add_work_note(sys_id, "/approve-escalation go ahead", as_user="sme.alice")
    harness.drain()
    link = harness.store.get_link("servicenow", sys_id)
    assert link is not None
    issue = harness.jira.issue(link.side("jira").ticket_id)["fields"]
    assert "ESCALATION" in issue["labels"]
    assert [a["filename"] for a in issue["attachment"]] == ["checkout.har"]
    notes = harness.snow_journal_text(sys_id)
    assert link.side("jira").ticket_id in notes  # the link to the engineering record
    sent = [m for m in harness.mail.messages() if CUSTOMER_EMAIL in m.rcpt_tos]
    assert len(sent) == 1
    # Processing again changes nothing.
    harness.reset_stats()
    harness.queue.enqueue_ticket("servicenow", sys_id)
    harness.drain()
    assert harness.writes() == 0


def test_engineering_resolution_closes_the_escalation(harness: Harness) -> None:
    """Engineering resolves in Jira: the incident gets the notes, moves to resolved, mail goes."""
    harness.servicenow.add_user("sme.alice", name="Alice SME", password="pw")
    sys_id = harness.incident(
        short_description="Checkout fails for EU customers", description=COMPLETE
    )
    harness.servicenow.attach(sys_id, "checkout.har", b"{}" * 20, as_user=AGENT)
    harness.servicenow.add_work_note(sys_id, "/escalate customer blocked", as_user=AGENT)
    harness.drain()
    harness.servicenow.add_work_note(sys_id, "/approve-escalation go ahead", as_user="sme.alice")
    harness.drain()
    link = harness.store.get_link("servicenow", sys_id)
    assert link is not None
    harness.jira.comment(
        link.side("jira").ticket_id, "Root cause: expired EU certificate, renewed", public=False
    )
    harness.jira.transition(link.side("jira").ticket_id, "Done")
    harness.drain()
    assert harness.servicenow.incident(sys_id)["state"] == "6"
    assert "Resolution: Root cause: expired EU certificate" in harness.snow_journal_text(sys_id)
    events = [m.subject or "" for m in harness.mail.messages() if CUSTOMER_EMAIL in m.rcpt_tos]
    assert len(events) == 2


def test_crash_after_the_decision_is_recorded_still_carries_it_out(harness: Harness) -> None:
    """Killed after the approval is recorded but before the records are written: the retry
    creates the engineering record once and writes the approval note once."""
    harness.servicenow.add_user("sme.alice", name="Alice SME", password="pw")
    sys_id = harness.incident(
        short_description="Checkout fails for EU customers", description=COMPLETE
    )
    harness.servicenow.attach(sys_id, "checkout.har", b"{}" * 20, as_user=AGENT)
    harness.servicenow.add_work_note(sys_id, "/escalate customer blocked", as_user=AGENT)
    harness.drain()
    crashed: list[str] = []

    def die_once(what: str) -> None:
        if not crashed:
            crashed.append(what)
            raise RuntimeError("worker killed")

    harness.engine.after_write = die_once
    harness.servicenow.add_work_note(sys_id, "/approve-escalation go ahead", as_user="sme.alice")
    harness.drain()
    assert crashed
    assert len(harness.jira.keys()) == 1
    journal = harness.snow_journal_text(sys_id)
    assert journal.count("origin=servicenow:" + sys_id + ":approval-") == 1
    sent = [m for m in harness.mail.messages() if CUSTOMER_EMAIL in m.rcpt_tos]
    assert len(sent) == 1


def test_explain_after_the_fact_and_report(harness: Harness, tmp_path: Any) -> None:
    """After a refusal and an approval, `explain INC` lists each past decision with its
    reasons, counts the ticket itself and reads the engineering record now; `report` counts
    the escalation with its time to approve."""
    from typer.testing import CliRunner

    from cli.app import build

    harness.servicenow.add_user("sme.alice", name="Alice SME", password="pw")
    sys_id = harness.incident(
        short_description="Checkout fails for EU customers", description=COMPLETE
    )
    harness.servicenow.attach(sys_id, "checkout.har", b"{}" * 20, as_user=AGENT)
    harness.servicenow.add_work_note(sys_id, "/escalate customer blocked", as_user=AGENT)
    harness.drain()
    harness.servicenow.add_work_note(sys_id, "/approve-escalation myself", as_user=AGENT)
    harness.drain()
    harness.servicenow.add_work_note(sys_id, "/approve-escalation go ahead", as_user="sme.alice")
    harness.drain()
    link = harness.store.get_link("servicenow", sys_id)
    assert link is not None
    number = harness.servicenow.incident(sys_id)["number"]
    result = CliRunner().invoke(build(), ["explain", number])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "state: approved since " in out
    assert "counts (this ticket included): 1 escalated today, 1 active" in out
    assert f"engineering record: {link.side('jira').ticket_id} is new (read now)" in out
    history = out.split("history:\n", 1)[1].split("\n\nrules now:", 1)[0]
    assert "none -> pending_approval  (level L1)" in history
    assert "BLOCKED command.approve: /approve-escalation in comment" in history
    assert "its author beth.anglin is not among the approvers" in history
    assert "pending_approval -> approved  (level L2)" in history
    assert "-> create or link the L2 record in jira DS" in history
    result = CliRunner().invoke(build(), ["report", "--since", "2020-01-01", "-f", "csv"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].startswith("total,all,1,1,0,0,0,1,")


def test_export_from_the_live_systems_feeds_policy_simulate(
    harness: Harness, tmp_path: Any
) -> None:
    """`policy export` writes the incidents (and their engineering records' status) as the
    JSONL `policy simulate` reads; simulating them under the same policy escalates the one
    that was escalated, and a stricter policy would have refused it."""
    from typer.testing import CliRunner

    from cli.app import build

    harness.servicenow.add_user("sme.alice", name="Alice SME", password="pw")
    sys_id = harness.incident(short_description="Checkout fails for EU", description=COMPLETE)
    harness.servicenow.attach(sys_id, "checkout.har", b"{}" * 20, as_user=AGENT)
    harness.servicenow.add_work_note(sys_id, "/escalate customer blocked", as_user=AGENT)
    harness.servicenow.add_work_note(sys_id, "/approve-escalation go ahead", as_user="sme.alice")
    harness.drain()
    harness.incident(short_description="Printer jam", description="paper stuck")
    out = tmp_path / "tickets.jsonl"
    result = CliRunner().invoke(
        build(), ["policy", "export", "--since", "2020-01-01", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("wrote ") and str(out) in result.stdout
    result = CliRunner().invoke(build(), ["policy", "simulate", "-t", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["tickets"] == 2 and report["totals"]["escalated"] == 1
    # Under the DS procedure only leads may ask: the same tickets escalate nothing.
    result = CliRunner().invoke(
        build(), ["policy", "simulate", "-t", str(out), "-p", "ds_ticket_limits", "--json"]
    )
    assert result.exit_code == 0, result.output
    strict = json.loads(result.stdout)
    assert strict["totals"]["escalated"] == 0
    assert strict["blocked_commands"]["command.request"] == 1
