"""The five preset stories end to end: each procedure played against the simulators.

Each story runs the daemon's engine with `policy_file` pointing at a preset, people acting in
the ServiceNow and Jira simulators, and asserts what the records and the customer end up with:
labels, priority, notes, links and e-mails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import presets
from tests.e2e.conftest import (
    AGENT,
    CUSTOMER,
    CUSTOMER_EMAIL,
    EXAMPLE_CONFIG,
    SYNC_WORKFLOW,
    Harness,
    make_harness,
)

pytestmark = pytest.mark.e2e


def preset_harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> Harness:
    """A harness whose configuration points policy_file at the preset `name`."""
    config = tmp_path / "config.toml"
    config.write_text(f'policy_file = "{presets.preset_path(name)}"\n' + EXAMPLE_CONFIG.read_text())
    return make_harness(tmp_path, monkeypatch, escalation=True, config=config)


@pytest.fixture
def story(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], Harness]]:
    """Start the harness for a preset by name; stopped after the test."""
    started: list[Harness] = []

    def start(name: str) -> Harness:
        started.append(preset_harness(tmp_path, monkeypatch, name))
        return started[-1]

    try:
        yield start
    finally:
        for h in started:
            h.close()


def people(h: Harness, *users: str) -> None:
    for user in users:
        h.servicenow.add_user(
            user, name=user.replace(".", " ").title(), email=f"{user}@example.com"
        )


def projects(h: Harness, *keys: str) -> None:
    for key in keys:
        h.jira.add_project(key, f"{key} engineering", workflow=SYNC_WORKFLOW)


def work_notes(h: Harness, sys_id: str) -> list[str]:
    return [r["value"] for r in h.snow_journal(sys_id) if r["element"] == "work_notes"]


def notes_with(h: Harness, sys_id: str, text: str) -> list[str]:
    return [n for n in work_notes(h, sys_id) if text in n]


def paired_key(h: Harness, sys_id: str) -> str | None:
    link = h.store.get_link("servicenow", sys_id)
    return link.jira_key if link is not None else None


def customer_mail(h: Harness) -> list[str]:
    return [m.subject or "" for m in h.mail.messages() if CUSTOMER_EMAIL in m.rcpt_tos]


def mail_to(h: Harness, address: str) -> list[str]:
    return [m.subject or "" for m in h.mail.messages() if address in m.rcpt_tos]


def step(h: Harness, sys_id: str) -> None:
    """Process the incident now, then let webhooks, the queue and the outbox settle."""
    h.sync("servicenow", sys_id)
    h.drain()


def jira_links(h: Harness, key: str) -> list[str]:
    return [link.body["object"]["url"] for link in h.jira.issue_record(key).links]


# --- 000: SME / TA approval of a CSST note -----------------------------------------------------


def test_sme_approval_csst_story(story: Callable[[str], Harness]) -> None:
    """CSST missing, then SME rejects with action items, then approves: task in ESC, linked."""
    h = story("sme_approval_csst")
    people(h, "sme.emea.2")
    projects(h, "ESC")
    sys_id = h.incident(
        short_description="SSIS package fails on deploy",
        description="Steps to reproduce: deploy the package and run it. Version 16.0.1. "
        "Troubleshooting: redeployed, checked permissions.",
    )
    h.servicenow.attach(sys_id, "ssis.log", b"error\n" * 20, as_user=AGENT)
    h.servicenow.add_work_note(sys_id, "/escalate dump analysis needed", as_user=AGENT)
    step(h, sys_id)
    [missing] = notes_with(h, sys_id, "is on hold: the ticket is incomplete")
    assert "- CSST note" in missing and "Steps to reproduce" not in missing
    assert paired_key(h, sys_id) is None

    h.servicenow.add_work_note(
        sys_id, "CSST: impact high, repro attached, logs attached", as_user=AGENT
    )
    step(h, sys_id)
    assert notes_with(h, sys_id, "Awaiting approval")

    h.servicenow.add_work_note(
        sys_id, "/reject-escalation capture a memory dump first", as_user="sme.emea.2"
    )
    step(h, sys_id)
    [rejection] = notes_with(h, sys_id, "rejected by")
    assert "sme.emea.2" in rejection or "Sme Emea 2" in rejection
    assert "Action items: capture a memory dump first" in rejection
    assert paired_key(h, sys_id) is None

    h.servicenow.add_work_note(sys_id, "/escalate dump captured", as_user=AGENT)
    h.servicenow.add_work_note(sys_id, "/approve-escalation dump reviewed", as_user="sme.emea.2")
    step(h, sys_id)
    [approval] = notes_with(h, sys_id, "Escalation approved by")
    assert "Engineer -> Regional Escalation" in approval and "dump reviewed" in approval
    key = paired_key(h, sys_id)
    assert key is not None and key.startswith("ESC-")
    issue = h.jira.issue(key)["fields"]
    assert "ESCALATION" in issue["labels"]
    assert issue["issuetype"]["name"] == "Task"
    # Escalation is not a severity change.
    assert h.servicenow.incident(sys_id)["priority"] == "3"
    assert any(sys_id in url for url in jira_links(h, key))
    assert notes_with(h, sys_id, key)
    assert len(customer_mail(h)) == 1


# --- 001: DS ticket limits ------------------------------------------------------------------


def test_ds_ticket_limits_story(story: Callable[[str], Harness]) -> None:
    """Leads escalate, Dev Support accepts: tag + Highest priority; the 4th of the day refused."""
    h = story("ds_ticket_limits")
    people(h, "lead.1", "devsupport.1")
    incidents = []
    for n in range(1, 5):
        sys_id = h.incident(
            short_description=f"Payments to biller {n} fail",
            description="Since the 4.2 deploy payments fail. We cannot investigate further "
            "without Dev Support.\nContact: Dana Ops",
        )
        h.servicenow.add_work_note(sys_id, "/escalate merchant outage", as_user="lead.1")
        h.servicenow.add_work_note(sys_id, "/approve-escalation", as_user="devsupport.1")
        step(h, sys_id)
        incidents.append(sys_id)
    for sys_id in incidents[:3]:
        key = paired_key(h, sys_id)
        assert key is not None and key.startswith("DS-")
        assert "ESCALATION" in h.jira.issue(key)["fields"]["labels"]
        assert h.jira.issue(key)["fields"]["priority"]["name"] == "Highest"
        assert h.servicenow.incident(sys_id)["priority"] == "1"
        assert notes_with(h, sys_id, "Escalation approved by")
    fourth = incidents[3]
    assert paired_key(h, fourth) is None
    [refusal] = notes_with(h, fourth, "Escalation refused")
    assert "max_per_day (3 escalations today, limit 3)" in refusal
    assert h.servicenow.incident(fourth)["priority"] == "3"
    # The reporter's team writes to affected parties: no customer e-mail from this policy.
    assert customer_mail(h) == []


def test_ds_only_leads_initiate(story: Callable[[str], Harness]) -> None:
    """An /escalate from someone outside the leads group starts nothing."""
    h = story("ds_ticket_limits")
    people(h, "devsupport.1")
    sys_id = h.incident(
        short_description="Refund stuck",
        description="We cannot investigate further.\nContact: Dana",
    )
    h.servicenow.add_work_note(sys_id, "/escalate please", as_user=AGENT)
    step(h, sys_id)
    assert work_notes(h, sys_id) == ["/escalate please"]
    assert paired_key(h, sys_id) is None


# --- 002: L1 -> L2 -> L3 with Team Leader approval ------------------------------------------


def test_l1_l2_l3_team_leader_story(story: Callable[[str], Harness]) -> None:
    """Customer asks publicly (allowed) and tries to approve (blocked); TL approves; closure."""
    h = story("l1_l2_l3_team_leader")
    people(h, "team.leader.1")
    projects(h, "L2")
    sys_id = h.incident(
        short_description="Outlook crashes on start",
        description="Troubleshooting: safe mode, new profile. Outcome: still crashes.",
    )
    h.servicenow.attach(sys_id, "crash.log", b"fault\n" * 10, as_user=AGENT)
    h.servicenow.add_comment(sys_id, "/escalate this blocks our sales team", as_user=CUSTOMER)
    step(h, sys_id)
    assert notes_with(h, sys_id, "Awaiting approval")

    h.servicenow.add_comment(sys_id, "/approve-escalation approved by me", as_user=CUSTOMER)
    step(h, sys_id)
    assert not notes_with(h, sys_id, "Escalation approved by")
    assert paired_key(h, sys_id) is None

    h.servicenow.add_work_note(
        sys_id, "/approve-escalation findings reviewed", as_user="team.leader.1"
    )
    step(h, sys_id)
    [approval] = notes_with(h, sys_id, "Escalation approved by")
    assert "L1 -> L2" in approval and "findings reviewed" in approval
    key = paired_key(h, sys_id)
    assert key is not None and key.startswith("L2-")
    assert "ESCALATION" in h.jira.issue(key)["fields"]["labels"]
    assert mail_to(h, "team.manager@example.com")
    assert len(customer_mail(h)) == 1

    h.jira.transition(key, "Done")
    step(h, sys_id)
    incident = h.servicenow.incident(sys_id)
    assert incident["state"] == "6"
    assert notes_with(h, sys_id, f"resolved {key}")
    assert len(customer_mail(h)) == 2


# --- 003: FastTrack customer escalation -------------------------------------------------------


def test_fasttrack_story(story: Callable[[str], Harness]) -> None:
    """Customer raises it; details requested by e-mail; architect approves; stakeholders told."""
    h = story("fasttrack_customer_escalation")
    people(h, "architect.1")
    projects(h, "FTE")
    sys_id = h.incident(
        short_description="Mailbox migration stalled",
        description="Migration of 300 mailboxes stalled since Monday.",
        impact="1",
        urgency="2",
    )
    h.servicenow.add_comment(sys_id, "/escalate we are blocked", as_user=CUSTOMER)
    step(h, sys_id)
    [missing] = notes_with(h, sys_id, "incomplete")
    assert "Services impacted" in missing and "Deployment phase" in missing
    assert len(customer_mail(h)) == 1

    h.servicenow.update_incident(
        sys_id,
        {
            "description": (
                "Migration of 300 mailboxes stalled since Monday.\nEscalation type: technical\n"
                "Date of occurrence: 2026-03-09\nServices impacted: Exchange Online\n"
                "Deployment phase: migration"
            )
        },
        as_user=AGENT,
    )
    step(h, sys_id)
    assert notes_with(h, sys_id, "Awaiting approval")

    h.servicenow.add_work_note(sys_id, "/approve-escalation owning this", as_user="architect.1")
    step(h, sys_id)
    key = paired_key(h, sys_id)
    assert key is not None and key.startswith("FTE-")
    assert mail_to(h, "cxp.stakeholders@example.com")
    assert len(customer_mail(h)) == 2

    h.jira.transition(key, "Done")
    step(h, sys_id)
    assert h.servicenow.incident(sys_id)["state"] == "6"
    assert len(mail_to(h, "cxp.stakeholders@example.com")) == 2
    assert len(customer_mail(h)) == 3


# --- 004: Technical support SOP ---------------------------------------------------------------


def test_technical_support_sop_story(story: Callable[[str], Harness]) -> None:
    """P1: immediate escalation without approval, management and customer told; closure."""
    h = story("technical_support_sop")
    projects(h, "SW")
    sys_id = h.incident(
        short_description="Production down: API returns 503", impact="1", urgency="1"
    )
    step(h, sys_id)
    [started] = notes_with(h, sys_id, "without approval")
    assert "L1 to L2" in started
    key = paired_key(h, sys_id)
    assert key is not None and key.startswith("SW-")
    assert "ESCALATION" in h.jira.issue(key)["fields"]["labels"]
    assert mail_to(h, "engineering.manager@example.com")
    assert len(customer_mail(h)) == 1

    h.jira.transition(key, "Done")
    step(h, sys_id)
    assert h.servicenow.incident(sys_id)["state"] == "6"
    assert notes_with(h, sys_id, f"resolved {key}")
    assert len(customer_mail(h)) == 2
