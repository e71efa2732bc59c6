"""The five preset stories end to end: each procedure played against the simulators.

Each story runs the daemon's engine with `policy_file` pointing at a preset, people acting in
the ServiceNow and Jira simulators, and asserts what the records and the people end up with:
labels and priority on both sides, the work notes (who, level, reason), the links in both
records, and every e-mail sent (its event, recipients and subject).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    AGENT,
    CUSTOMER,
    CUSTOMER_EMAIL,
    SYNC_WORKFLOW,
    Harness,
    notes_with,
    preset_harness,
    step,
    work_notes,
)

pytestmark = pytest.mark.e2e

DOCUMENTED = (
    "Steps to reproduce: call the API twice. Version 4.2.1 in production. "
    "Troubleshooting: restarted the workers, cleared the cache."
)


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


def paired_key(h: Harness, sys_id: str) -> str | None:
    link = h.store.get_link("servicenow", sys_id)
    return link.side("jira").ticket_id if link is not None else None


def later(h: Harness, **delta: float) -> None:
    """From now on the engine (and its outbox) act as if `delta` had passed."""
    h.later(**delta)


@dataclass(frozen=True)
class Naming:
    """A subject that names the incident (its number, then its summary at the end), whatever
    the template's wording in between."""

    number: str
    summary: str

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, str)
            and other.startswith(f"[{self.number}] ")
            and other.endswith(self.summary)
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Mail:
    """An e-mail as the sink received it: the event it reports, who got it, its subject."""

    event: str
    to: tuple[str, ...]
    subject: str | Naming


def mails(h: Harness) -> list[Mail]:
    out = []
    for m in h.mail.messages():
        event = next(v for k, v in m.headers if k.lower() == "x-escalation-sync-event")
        out.append(Mail(event, tuple(sorted(m.rcpt_tos)), m.subject or ""))
    return out


def sent_since(h: Harness, seen: list[Mail]) -> list[Mail]:
    """E-mails sent after the `seen` ones, by event (one step may send several at once)."""
    return sorted(mails(h)[len(seen) :], key=lambda m: (m.event, m.to))


def to_customer(h: Harness, sys_id: str, event: str, text: str) -> Mail:
    """The customer's e-mail about the incident: `[number] text`."""
    number = h.servicenow.incident(sys_id)["number"]
    return Mail(event, (CUSTOMER_EMAIL,), f"[{number}] {text}")


def to_management(h: Harness, sys_id: str, event: str, to: tuple[str, ...]) -> Mail:
    """A management notice about the incident; its subject must name the incident."""
    incident = h.servicenow.incident(sys_id)
    naming = Naming(incident["number"], incident["short_description"])
    return Mail(f"management:{event}", tuple(sorted(to)), naming)


def labels(h: Harness, sys_id: str, key: str | None) -> tuple[list[str], list[str]]:
    """The incident's tags and the Jira issue's labels."""
    snow = [t for t in h.servicenow.incident(sys_id)["u_labels"].split(",") if t]
    jira = list(h.jira.issue(key)["fields"]["labels"]) if key else []
    return snow, jira


def priorities(h: Harness, sys_id: str, key: str) -> tuple[str, str]:
    """The incident's priority code and the Jira issue's priority name."""
    issue = h.jira.issue(key)["fields"]
    return h.servicenow.incident(sys_id)["priority"], issue["priority"]["name"]


def assert_linked(h: Harness, sys_id: str, key: str) -> None:
    """Each record shows the other: a remote link in Jira, a work note in ServiceNow."""
    assert [url for url in jira_links(h, key) if sys_id in url]
    [note] = notes_with(h, sys_id, f"Paired Jira record {key}:")
    assert f"/browse/{key}" in note


def assert_requested(
    h: Harness, sys_id: str, level: str, *, by: str, reason: str, approvers: str
) -> None:
    """The request work note: the level asked for, by whom (a person or a trigger), why, and
    who must approve."""
    [note] = notes_with(h, sys_id, f"Escalation to {level} requested by {by} at ")
    assert f"Reason: {reason}." in note
    assert f"Awaiting approval ({approvers})." in note


def assert_approved(
    h: Harness, sys_id: str, by: str, move: str, *, reason: str, note: str | None = None
) -> None:
    """The approval work note: the approver, the levels (`L1 -> L2`), the reason and, when
    given, the approver's own note."""
    [text] = [n for n in notes_with(h, sys_id, f"Escalation approved by {by} at ") if move in n]
    assert f": {move}.\nReason: {reason}" in text
    if note is not None:
        assert f"\nApprover note: {note}" in text


def jira_links(h: Harness, key: str) -> list[str]:
    return [link.body["object"]["url"] for link in h.jira.issue_record(key).links]


# --- 000: SME / TA approval of a CSST note -----------------------------------------------------


def test_sme_approval_csst_story(story: Callable[[str], Harness]) -> None:
    """CSST missing; an engineer's approval is not taken and they are told why; the SME
    rejects with action items, then approves: a task in the Escalation queue for the SR's
    region, linked both ways, no severity change; unassigned after 4 h the DMs and the TA are
    told, the assignment is noted on the SR; closure."""
    h = story("sme_approval_csst")
    people(h, "sme.emea.2")
    sys_id = h.incident(
        short_description="SSIS package fails on deploy",
        description="Steps to reproduce: deploy the package and run it. Version 16.0.1. "
        "Troubleshooting: redeployed, checked permissions.",
        u_region="EMEA",
    )
    h.servicenow.attach(sys_id, "ssis.log", b"error\n" * 20, as_user=AGENT)
    h.servicenow.add_work_note(sys_id, "/escalate dump analysis needed", as_user=AGENT)
    step(h, sys_id)
    [missing] = notes_with(h, sys_id, "is on hold: the ticket is incomplete")
    assert "Escalation to Regional Escalation" in missing
    assert "- CSST note" in missing and "Steps to reproduce" not in missing
    assert paired_key(h, sys_id) is None

    h.servicenow.add_work_note(
        sys_id, "CSST: impact high, repro attached, logs attached", as_user=AGENT
    )
    step(h, sys_id)
    assert_requested(
        h,
        sys_id,
        "Regional Escalation",
        by=AGENT,
        reason="dump analysis needed",
        approvers="group sme_apac, group sme_emea, group sme_amer, group technical_advisors",
    )

    # The engineer is no SME / TA: their approval transfers nothing, and they hear why.
    h.servicenow.add_work_note(sys_id, "/approve-escalation urgent", as_user=AGENT)
    step(h, sys_id)
    assert not notes_with(h, sys_id, "Escalation approved by")
    [told] = notes_with(h, sys_id, f'To {AGENT}: your "/approve-escalation" command')
    assert "is not among the approvers the policy names" in told

    h.servicenow.add_work_note(
        sys_id, "/reject-escalation capture a memory dump first", as_user="sme.emea.2"
    )
    step(h, sys_id)
    [rejection] = notes_with(h, sys_id, "rejected by")
    assert "Escalation to Regional Escalation rejected by sme.emea.2" in rejection
    assert "Action items: capture a memory dump first" in rejection
    assert paired_key(h, sys_id) is None

    h.servicenow.add_work_note(sys_id, "/escalate dump captured", as_user=AGENT)
    h.servicenow.add_work_note(sys_id, "/approve-escalation dump reviewed", as_user="sme.emea.2")
    step(h, sys_id)
    assert_approved(
        h,
        sys_id,
        "sme.emea.2",
        "Engineer -> Regional Escalation",
        reason="dump captured",
        note="dump reviewed",
    )
    key = paired_key(h, sys_id)
    assert key is not None and key.startswith("ESC-")
    issue = h.jira.issue(key)["fields"]
    assert issue["issuetype"]["name"] == "Task"
    assert issue["summary"].endswith("SSIS package fails on deploy")
    assert "Approved by: sme.emea.2" in issue["description"]
    # Dispatched to the Escalation queue and the SR's regional escalation team.
    assert issue["customfield_10050"] == "Escalation"
    assert issue["customfield_10051"] == "Escalation EMEA"
    assert labels(h, sys_id, key) == (["ESCALATION"], ["ESCALATION"])
    # Escalation is not a severity change.
    assert priorities(h, sys_id, key) == ("3", "Medium")
    assert_linked(h, sys_id, key)
    summary = "SSIS package fails on deploy"
    escalated = to_customer(h, sys_id, "escalated", f"Your request has been escalated: {summary}")
    assert mails(h) == [escalated]

    # Step 5: nobody takes the task; 4 h later, with nobody touching anything, the DMs and the
    # TA are told and the SR says so.
    later(h, hours=3)
    assert h.tick() == 0
    later(h, hours=4, minutes=1)
    assert h.tick() == 1
    [follow_up] = notes_with(h, sys_id, "Follow-up: escalation record")
    assert f"{key} (Regional Escalation) has not been assigned within 4 h" in follow_up
    dms = ("dm.amer@example.com", "dm.apac@example.com", "dm.emea@example.com", "ta@example.com")
    unassigned = to_management(h, sys_id, "unassigned", dms)
    assert sent_since(h, [escalated]) == [unassigned]
    assert h.tick() == 0
    dev = h.jira.add_user("acc-esc-1", "Krish Escalation", "krish@example.com")
    h.jira.edit(key, {"assignee": {"accountId": dev.account_id}})
    h.drain()
    [assigned] = notes_with(h, sys_id, f"Escalation record {key} (Regional Escalation) is assigned")
    assert "Krish Escalation <krish@example.com>" in assigned

    h.jira.comment(key, "Root cause: a missing connection manager; hotfix 16.0.2.")
    h.jira.transition(key, "Done")
    step(h, sys_id)
    assert h.servicenow.incident(sys_id)["state"] == "6"
    [resolution] = notes_with(h, sys_id, f"resolved {key}")
    assert "Engineering (Regional Escalation)" in resolution and "hotfix 16.0.2" in resolution
    assert mails(h) == [
        escalated,
        unassigned,
        to_customer(h, sys_id, "resolved_please_confirm", f"Resolved, please confirm: {summary}"),
    ]


# --- 001: DS ticket limits ------------------------------------------------------------------


def test_ds_ticket_limits_story(story: Callable[[str], Harness]) -> None:
    """Leads escalate, Dev Support accepts: tag + Highest priority, linked; the 4th of the day
    and a low-impact issue refused; the customer is never e-mailed, the finding written back."""
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
        assert labels(h, sys_id, key) == (["ESCALATION"], ["ESCALATION"])
        assert priorities(h, sys_id, key) == ("1", "Highest")
        assert_approved(
            h, sys_id, "devsupport.1", "Client-facing -> Dev Support", reason="merchant outage"
        )
        assert_linked(h, sys_id, key)
    # One escalation per assignee: Dev Support assigns the DS issues to its engineers.
    dev = h.jira.add_user("acc-dev-1", "Dev One", "dev.one@example.com")
    for n, sys_id in enumerate(incidents[:2]):
        ds_key = paired_key(h, sys_id)
        assert ds_key is not None
        h.jira.edit(ds_key, {"assignee": {"accountId": dev.account_id}})
        h.drain()
        step(h, sys_id)
        warned = notes_with(h, sys_id, "Limit max_active_per_assignee")
        if n == 0:
            assert warned == []
        else:
            [note] = warned
            assert note.startswith(
                "Limit max_active_per_assignee: Dev One <dev.one@example.com> already has "
                f"1 other active escalation, limit 1. Please assign {ds_key} to someone else."
            )
    fourth = incidents[3]
    assert paired_key(h, fourth) is None
    [refusal] = notes_with(h, fourth, "Escalation refused")
    assert "max_per_day (3 escalations today, limit 3)" in refusal
    assert h.servicenow.incident(fourth)["priority"] == "3"
    assert labels(h, fourth, None) == ([], [])

    low = h.incident(
        short_description="One payer did not receive a notification",
        description="A single payer reports a missing notification. We cannot investigate "
        "further without Dev Support.\nContact: Dana Ops",
        impact="3",
        urgency="3",
    )
    h.servicenow.add_work_note(low, "/escalate payer complaint", as_user="lead.1")
    step(h, low)
    [refusal] = notes_with(h, low, "Escalation refused")
    assert "low-impact issue (priority P5)" in refusal
    assert paired_key(h, low) is None

    first, key = incidents[0], paired_key(h, incidents[0])
    assert key is not None
    # "Move the ticket to the Highest priority": lowered on the incident, it is set back.
    h.servicenow.update_incident(first, {"impact": "2", "urgency": "2"}, as_user=AGENT)
    step(h, first)
    assert priorities(h, first, key) == ("1", "Highest")
    [kept] = notes_with(h, first, "Priority lowered from P1 to P3")
    assert "This escalation keeps P1, so the priority was set back." in kept
    # "Will not provide completion estimates": an estimate written publicly in the DS issue
    # reaches the incident as a work note only.
    h.jira.comment(key, "ETA: should be fixed by Friday.", public=True)
    h.drain()
    [estimate] = [r for r in h.snow_journal(first) if "ETA: should be fixed" in r["value"]]
    assert estimate["element"] == "work_notes"
    h.jira.comment(key, "Root cause: the biller's certificate expired; renewed.", public=True)
    h.drain()
    [finding] = [r for r in h.snow_journal(first) if "certificate expired" in r["value"]]
    assert finding["element"] == "comments"
    h.jira.transition(key, "Done")
    step(h, first)
    assert h.servicenow.incident(first)["state"] == "6"
    [resolution] = notes_with(h, first, f"resolved {key}")
    assert "certificate expired" in resolution
    # The reporter's team writes to affected parties: no e-mail from this policy at all.
    assert mails(h) == []


def test_ds_only_leads_initiate_with_a_reason(story: Callable[[str], Harness]) -> None:
    """An /escalate from someone outside the leads group starts nothing; a lead's bare one is
    answered with a note asking for the reason."""
    h = story("ds_ticket_limits")
    people(h, "lead.1", "devsupport.1")
    sys_id = h.incident(
        short_description="Refund stuck",
        description="We cannot investigate further.\nContact: Dana",
    )
    h.servicenow.add_work_note(sys_id, "/escalate please", as_user=AGENT)
    step(h, sys_id)
    [request, told] = work_notes(h, sys_id)
    assert request == "/escalate please"
    assert told.startswith(f'To {AGENT}: your "/escalate" command (written ')
    assert "its author beth.anglin is not among the requesters the policy names." in told
    h.servicenow.add_work_note(sys_id, "/escalate", as_user="lead.1")
    step(h, sys_id)
    [answer] = notes_with(h, sys_id, "not taken: say why")
    assert "by lead.1" in answer
    assert paired_key(h, sys_id) is None


# --- 002: L1 -> L2 -> L3 with Team Leader approval ------------------------------------------

LEADERS = ("team.leaders@example.com", "team.manager@example.com")


def test_l1_l2_l3_team_leader_story(story: Callable[[str], Harness]) -> None:
    """The customer asks publicly (allowed) and approves (blocked); an SME takes L2; the vendor
    escalation waits for troubleshooting with outcomes and a Team Leader, not the Team Manager."""
    h = story("l1_l2_l3_team_leader")
    people(h, "sme.1", "team.leader.1", "team.manager")
    summary = "Outlook crashes on start"
    sys_id = h.incident(short_description=summary, description="Outlook closes right away.")
    h.servicenow.add_comment(sys_id, "/escalate this blocks our sales team", as_user=CUSTOMER)
    step(h, sys_id)
    assert_requested(
        h,
        sys_id,
        "L2",
        by=CUSTOMER,
        reason="this blocks our sales team",
        approvers="group smes, group team_leaders, group team_managers",
    )

    h.servicenow.add_comment(sys_id, "/approve-escalation approved by me", as_user=CUSTOMER)
    step(h, sys_id)
    assert not notes_with(h, sys_id, "Escalation approved by")
    assert paired_key(h, sys_id) is None

    h.servicenow.add_work_note(sys_id, "/approve-escalation taking this on", as_user="sme.1")
    step(h, sys_id)
    assert_approved(h, sys_id, "sme.1", "L1 -> L2", reason="this blocks our sales team")
    key = paired_key(h, sys_id)
    assert key is not None and key.startswith("L2-")
    assert labels(h, sys_id, key) == (["ESCALATION"], ["ESCALATION"])
    assert priorities(h, sys_id, key) == ("3", "Medium")
    assert_linked(h, sys_id, key)
    leaders = to_management(h, sys_id, "escalated", LEADERS)
    escalated = to_customer(h, sys_id, "escalated", f"Your request has been escalated: {summary}")
    assert sent_since(h, []) == [escalated, leaders]

    # To the vendor: troubleshooting with outcomes first.
    h.servicenow.add_comment(sys_id, "/escalate we need Microsoft on this", as_user=CUSTOMER)
    step(h, sys_id)
    [missing] = notes_with(h, sys_id, "Escalation to L3 is on hold")
    assert "- L1/L2 troubleshooting steps performed" in missing
    assert "- Outcome of each troubleshooting step" in missing
    h.servicenow.add_work_note(
        sys_id, "Troubleshooting: safe mode, new profile. Outcome: still crashes.", as_user=AGENT
    )
    step(h, sys_id)
    assert_requested(
        h,
        sys_id,
        "L3",
        by=CUSTOMER,
        reason="we need Microsoft on this",
        approvers="group team_leaders",
    )
    # While the vendor escalation waits, the L2 engineer's update still reaches the customer.
    seen = mails(h)
    h.jira.comment(key, "Workaround: start Outlook with /safe until the fix.", public=True)
    h.drain()
    step(h, sys_id)
    [update] = sent_since(h, seen)
    assert (update.event, update.to) == ("public_update", (CUSTOMER_EMAIL,))
    h.servicenow.add_work_note(sys_id, "/approve-escalation", as_user="team.manager")
    step(h, sys_id)
    assert not notes_with(h, sys_id, "L2 -> L3")
    seen = mails(h)
    h.servicenow.add_work_note(
        sys_id, "/approve-escalation findings reviewed, send to vendor", as_user="team.leader.1"
    )
    step(h, sys_id)
    assert_approved(
        h,
        sys_id,
        "team.leader.1",
        "L2 -> L3",
        reason="we need Microsoft on this",
        note="findings reviewed, send to vendor",
    )
    assert sent_since(h, seen) == [escalated, leaders]
    # L3's own record in its target project, linked to both; the L2 record stays the pair.
    [opened] = notes_with(h, sys_id, "Escalated to L3: VENDOR-")
    vendor_key = opened.split("Escalated to L3: ", 1)[1].split(" ", 1)[0]
    vendor = h.jira.issue(vendor_key)["fields"]
    assert vendor["summary"].endswith(summary)
    assert "we need Microsoft on this" in str(vendor["description"])
    assert "ESCALATION" in vendor["labels"]
    assert [u for u in jira_links(h, vendor_key) if sys_id in u]
    assert [u for u in jira_links(h, vendor_key) if u.endswith(f"/browse/{key}")]
    assert [u for u in jira_links(h, key) if u.endswith(f"/browse/{vendor_key}")]
    assert paired_key(h, sys_id) == key
    step(h, sys_id)
    assert len(notes_with(h, sys_id, "Escalated to L3: VENDOR-")) == 1
    assert len(h.jira.state.issues) == 2

    # Leadership escalation, beyond the technical levels: the customer asks for it, a Team
    # Manager approves, support leadership gets the case; no record is opened for it.
    h.servicenow.add_comment(sys_id, "/escalate we want your leadership involved", as_user=CUSTOMER)
    step(h, sys_id)
    assert_requested(
        h,
        sys_id,
        "Leadership",
        by=CUSTOMER,
        reason="we want your leadership involved",
        approvers="group team_leaders, group team_managers",
    )
    seen = mails(h)
    h.servicenow.add_work_note(sys_id, "/approve-escalation case prepared", as_user="team.manager")
    step(h, sys_id)
    assert_approved(
        h,
        sys_id,
        "team.manager",
        "L3 -> Leadership",
        reason="we want your leadership involved",
        note="case prepared",
    )
    leadership = to_management(
        h, sys_id, "leadership", (*LEADERS, "support.leadership@example.com")
    )
    assert sent_since(h, seen) == [escalated, leadership]
    assert len(h.jira.state.issues) == 2

    seen = mails(h)
    h.jira.transition(key, "Done")
    step(h, sys_id)
    assert h.servicenow.incident(sys_id)["state"] == "6"
    assert notes_with(h, sys_id, f"resolved {key}")
    # The vendor record is resolved with the case, and says why.
    assert h.jira.issue(vendor_key)["fields"]["status"]["name"] == "Done"
    [closing] = [c for c in h.jira_comments(vendor_key) if "The escalation of" in str(c["body"])]
    assert "This record is resolved with it." in str(closing["body"])
    h.servicenow.update_incident(sys_id, {"state": "7"}, as_user=AGENT)
    step(h, sys_id)
    assert sent_since(h, seen) == [
        to_customer(h, sys_id, "closed", f"Closed: {summary}"),
        to_customer(h, sys_id, "resolved_please_confirm", f"Resolved, please confirm: {summary}"),
    ]


# --- 003: FastTrack customer escalation -------------------------------------------------------

# The RACI roles the preset names, and the customer account's sponsor.
RAISED = (
    "architects@example.com",
    "cxp.stakeholders@example.com",
    "ft.manager.frp@example.com",
    "ft.manager.health@example.com",
)
SPONSOR = "sponsor@customer.example"
INFORMED = ("regional.leadership@example.com", "team.manager@example.com")


def copied(h: Harness, event: str) -> str:
    """The Cc header of the one e-mail of `event`."""
    [message] = [
        m
        for m in h.mail.messages()
        if dict((k.lower(), v) for k, v in m.headers).get("x-escalation-sync-event") == event
    ]
    return dict((k.lower(), v) for k, v in message.headers).get("cc", "")


def test_fasttrack_story(story: Callable[[str], Harness]) -> None:
    """Customer raises it; details requested by e-mail; the architects and FastTrack Managers
    hear of the request; the architect approves; CXP stakeholders and the account's sponsor
    are told (P2), leadership in copy; the daily update comes by itself; resolution is told to
    the same people; the customer, silent for 72 h, is reminded to confirm; closure."""
    h = story("fasttrack_customer_escalation")
    people(h, "architect.1")
    summary = "Mailbox migration stalled"
    sys_id = h.incident(
        short_description=summary,
        description="Migration of 300 mailboxes stalled since Monday.",
        impact="1",
        urgency="2",
        u_sponsor=SPONSOR,
    )
    h.servicenow.add_comment(sys_id, "/escalate we are blocked", as_user=CUSTOMER)
    step(h, sys_id)
    [missing] = notes_with(h, sys_id, "incomplete")
    for item in ("Escalation type", "Date of occurrence", "Services impacted", "Deployment phase"):
        assert f"- {item}" in missing
    needs = to_customer(h, sys_id, "needs_information", f"We need more information: {summary}")
    assert mails(h) == [needs]

    h.servicenow.update_incident(
        sys_id,
        {
            "description": (
                "Migration of 300 mailboxes stalled since Monday.\n"
                "Date of occurrence: 2026-03-09\nServices impacted: Exchange Online\n"
                "Deployment phase: migration"
            ),
            "u_escalation_type": "technical,process",
        },
        as_user=AGENT,
    )
    step(h, sys_id)
    assert_requested(
        h, sys_id, "Architect", by=CUSTOMER, reason="we are blocked", approvers="group architects"
    )
    raised = to_management(h, sys_id, "requested", RAISED)
    assert sent_since(h, [needs]) == [raised]

    seen = mails(h)
    h.servicenow.add_work_note(sys_id, "/approve-escalation owning this", as_user="architect.1")
    step(h, sys_id)
    assert_approved(
        h,
        sys_id,
        "architect.1",
        "Engineer -> Architect",
        reason="we are blocked",
        note="owning this",
    )
    key = paired_key(h, sys_id)
    assert key is not None and key.startswith("FTE-")
    assert labels(h, sys_id, key) == (["ESCALATION"], ["ESCALATION"])
    assert priorities(h, sys_id, key) == ("2", "High")
    assert_linked(h, sys_id, key)
    escalated = to_customer(h, sys_id, "escalated", f"Your request has been escalated: {summary}")
    # To the CXP stakeholders and the sponsor, leadership in copy (envelope: all of them).
    stakeholders = to_management(
        h, sys_id, "escalated", ("cxp.stakeholders@example.com", SPONSOR, *INFORMED)
    )
    assert sent_since(h, seen) == [escalated, stakeholders]
    assert copied(h, "management:escalated") == ", ".join(INFORMED[::-1])

    # The agreed daily update goes out by itself.
    seen = mails(h)
    later(h, hours=25)
    h.tick()
    update = to_customer(h, sys_id, "periodic_update", f"Status update: {summary}")
    assert sent_since(h, seen) == [update]

    seen = mails(h)
    h.jira.transition(key, "Done")
    step(h, sys_id)
    assert h.servicenow.incident(sys_id)["state"] == "6"
    assert notes_with(h, sys_id, f"resolved {key}")
    assert sent_since(h, seen) == [
        to_management(h, sys_id, "resolved", ("cxp.stakeholders@example.com", SPONSOR)),
        to_customer(h, sys_id, "resolved_please_confirm", f"Resolved, please confirm: {summary}"),
    ]

    # Written confirmation is asked for: 72 h of silence bring a reminder, never a closing.
    seen = mails(h)
    later(h, hours=25 + 73)
    h.tick()
    reminder = to_customer(
        h, sys_id, "confirmation_reminder", f"Please confirm the resolution: {summary}"
    )
    assert sent_since(h, seen) == [reminder]
    assert notes_with(h, sys_id, "has not confirmed the resolution within 72 h")
    later(h, hours=25 + 500)
    h.tick()
    assert h.servicenow.incident(sys_id)["state"] == "6"

    seen = mails(h)
    h.servicenow.update_incident(sys_id, {"state": "7"}, as_user=AGENT)
    step(h, sys_id)
    assert sent_since(h, seen) == [to_customer(h, sys_id, "closed", f"Closed: {summary}")]


def test_fasttrack_escalation_type_field_raises_it(story: Callable[[str], Harness]) -> None:
    """An escalation type set on the incident (the account team's form) is a request."""
    h = story("fasttrack_customer_escalation")
    sys_id = h.incident(
        short_description="Tenant onboarding blocked",
        description="The tenant cannot be onboarded to the new region.",
        u_escalation_type="business",
    )
    outcome = h.sync("servicenow", sys_id)
    h.drain()
    assert outcome.decision is not None
    [field] = [r for r in outcome.decision.reasons if r.rule == "recognition.field[0]"]
    assert field.outcome == "pass" and "custom_fields.escalation_type is 'business'" in field.detail
    [missing] = notes_with(h, sys_id, "Escalation to Architect is on hold")
    assert "- Escalation type" not in missing and "- Services impacted" in missing


# --- 004: Technical support SOP ---------------------------------------------------------------

MANAGEMENT = ("engineering.manager@example.com", "support.lead@example.com")


def test_technical_support_sop_p1_story(story: Callable[[str], Harness]) -> None:
    """P1, the whole SOP: requested at once with management told; an L2 lead cannot approve
    (told why); management reminded after 30 minutes by the scheduler; a manager approves into
    SW; no engineering response in the P1 hour and nobody assigned in 4 h are followed up with
    nobody touching the ticket; the assignment is noted; a lowered priority waits for the
    approver; resolution; the silent customer is reminded after 48 h and the incident closed
    after 120 h; reopened, it is escalated again to the same team, whose record is reused."""
    h = story("technical_support_sop")
    people(h, "software.lead", "engineering.manager")
    summary = "Production down: API returns 503"
    sys_id = h.incident(short_description=summary, impact="1", urgency="1")
    step(h, sys_id)
    assert_requested(
        h,
        sys_id,
        "L2",
        by="trigger:business_critical",
        reason="priority P1",
        approvers="group engineering_managers",
    )
    assert paired_key(h, sys_id) is None
    requested = to_management(h, sys_id, "requested", MANAGEMENT)
    assert mails(h) == [requested]

    h.servicenow.add_work_note(sys_id, "/approve-escalation", as_user="software.lead")
    step(h, sys_id)
    assert paired_key(h, sys_id) is None
    assert notes_with(h, sys_id, 'To software.lead: your "/approve-escalation" command')
    later(h, minutes=20)
    assert h.tick() == 0
    later(h, minutes=45)
    assert h.tick() == 1
    [overdue_note] = notes_with(h, sys_id, "Approval overdue: the request for L2 has waited")
    assert "of the 0.5 h allowed" in overdue_note
    overdue = to_management(h, sys_id, "approval_overdue", MANAGEMENT)
    assert mails(h) == [requested, overdue]

    h.servicenow.add_work_note(
        sys_id, "/approve-escalation outage, go now", as_user="engineering.manager"
    )
    step(h, sys_id)
    assert_approved(
        h, sys_id, "engineering.manager", "L1 -> L2", reason="priority P1", note="outage, go now"
    )
    key = paired_key(h, sys_id)
    assert key is not None and key.startswith("SW-")
    assert h.jira.issue(key)["fields"]["issuetype"]["name"] == "Bug"
    assert labels(h, sys_id, key) == (["ESCALATION"], ["ESCALATION"])
    assert priorities(h, sys_id, key) == ("1", "Highest")
    assert_linked(h, sys_id, key)
    escalated = to_customer(h, sys_id, "escalated", f"Your request has been escalated: {summary}")
    told = to_management(h, sys_id, "escalated", MANAGEMENT)
    assert sent_since(h, [requested, overdue]) == [escalated, told]

    # Step 5, "follow up if no response within SLA": nobody touches anything.
    seen = mails(h)
    later(h, minutes=45 + 61)
    h.tick()
    assert notes_with(h, sys_id, f"Follow-up: no response from engineering on {key} (L2)")
    later(h, minutes=45 + 4 * 60 + 1)
    h.tick()
    assert notes_with(h, sys_id, f"Follow-up: escalation record {key} (L2) has not been assigned")
    assert sent_since(h, seen) == [
        to_management(h, sys_id, "no_response", MANAGEMENT),
        to_management(h, sys_id, "unassigned", MANAGEMENT),
    ]
    assert h.tick() == 0
    dev = h.jira.add_user("acc-sw-1", "Sam Software", "sam.software@example.com")
    h.jira.edit(key, {"assignee": {"accountId": dev.account_id}})
    h.drain()
    assert notes_with(h, sys_id, f"Escalation record {key} (L2) is assigned to Sam Software")

    # A lowered priority waits for an approver's word.
    h.servicenow.update_incident(sys_id, {"impact": "2", "urgency": "2"}, as_user=AGENT)
    step(h, sys_id)
    assert priorities(h, sys_id, key) == ("1", "Highest")
    [asked] = notes_with(h, sys_id, "Priority lowered from P1 to P3")
    assert "until an approver of L2" in asked
    h.servicenow.add_work_note(
        sys_id, "/approve-escalation contained, P3 is right", as_user="engineering.manager"
    )
    step(h, sys_id)
    assert priorities(h, sys_id, key) == ("3", "Medium")
    assert notes_with(h, sys_id, "Priority change to P3 confirmed by engineering.manager")

    seen = mails(h)
    h.jira.comment(key, "Fixed: the load balancer pool was drained; restored.")
    h.jira.transition(key, "Done")
    step(h, sys_id)
    assert h.servicenow.incident(sys_id)["state"] == "6"
    [resolution] = notes_with(h, sys_id, f"resolved {key}")
    assert "Engineering (L2)" in resolution and "load balancer pool" in resolution
    assert sent_since(h, seen) == [
        to_customer(h, sys_id, "resolved_please_confirm", f"Resolved, please confirm: {summary}")
    ]

    # §10: confirm with the customer, then close: a reminder, then the incident is closed.
    seen = mails(h)
    later(h, hours=4 + 49)
    h.tick()
    assert sent_since(h, seen) == [
        to_customer(h, sys_id, "confirmation_reminder", f"Please confirm the resolution: {summary}")
    ]
    later(h, hours=4 + 121)
    h.tick()
    assert h.servicenow.incident(sys_id)["state"] == "7"
    assert notes_with(h, sys_id, "the record moves to closed")

    # The fix did not hold: reopened, the incident asks L2 again (through the gate, as a P3
    # now), and L2's record is reused.
    h.servicenow.update_incident(sys_id, {"state": "2"}, as_user=AGENT)
    step(h, sys_id)
    [held] = notes_with(h, sys_id, "Escalation to L2 is on hold")
    assert "- L1 confirmation that the issue cannot be resolved at L1" in held
    h.servicenow.update_incident(sys_id, {"description": DOCUMENTED}, as_user=AGENT)
    h.servicenow.attach(sys_id, "lb.log", b"503\n" * 10, as_user=AGENT)
    h.servicenow.add_work_note(sys_id, "L1 confirmed: 503s are back after the fix", as_user=AGENT)
    step(h, sys_id)
    [again] = notes_with(h, sys_id, "Reason: the record was reopened (in_progress).")
    assert "Escalation to L2 requested" in again
    h.servicenow.add_work_note(sys_id, "/approve-escalation take it back", as_user="software.lead")
    step(h, sys_id)
    assert paired_key(h, sys_id) == key and len(h.jira.state.issues) == 1
    assert len(notes_with(h, sys_id, "Escalation approved by software.lead")) == 1


def test_technical_support_sop_sla_breach_story(story: Callable[[str], Harness]) -> None:
    """A P4 whose SLA is 5.5 h away asks nothing; nobody touches it, and when the SLA comes
    within 4 h the scheduler decides it again: it escalates by itself, management told at once;
    an L2 lead approves it into SW."""
    h = story("technical_support_sop")
    people(h, "software.lead")
    summary = "Report export times out"
    due = (datetime.now(UTC) + timedelta(hours=5, minutes=30)).strftime("%Y-%m-%d %H:%M:%S")
    sys_id = h.incident(
        short_description=summary,
        description=DOCUMENTED,
        impact="2",
        urgency="3",
        sla_due=due,
    )
    h.servicenow.attach(sys_id, "export.log", b"timeout\n" * 10, as_user=AGENT)
    step(h, sys_id)
    assert work_notes(h, sys_id) == [] and mails(h) == []
    later(h, hours=1)
    assert h.tick() == 0
    later(h, hours=1, minutes=31)
    assert h.tick() == 1
    assert_requested(
        h,
        sys_id,
        "L2",
        by="trigger:sla_imminent",
        reason="SLA breach within 4 h",
        approvers="group l2_leads, group engineering_managers",
    )
    requested = to_management(h, sys_id, "requested", MANAGEMENT)
    assert mails(h) == [requested]

    h.servicenow.add_work_note(sys_id, "/approve-escalation", as_user="software.lead")
    step(h, sys_id)
    assert_approved(h, sys_id, "software.lead", "L1 -> L2", reason="SLA breach within 4 h")
    key = paired_key(h, sys_id)
    assert key is not None and key.startswith("SW-")
    assert labels(h, sys_id, key) == (["ESCALATION"], ["ESCALATION"])
    assert priorities(h, sys_id, key) == ("4", "Low")
    assert_linked(h, sys_id, key)
    # P4: no management notice on approval, only the customer's.
    assert mails(h) == [
        requested,
        to_customer(h, sys_id, "escalated", f"Your request has been escalated: {summary}"),
    ]


def test_technical_support_sop_repeated_occurrence_story(
    story: Callable[[str], Harness],
) -> None:
    """The third incident with the same category and summary in 24 h escalates by itself; the
    hardware category goes to the Hardware team's project."""
    h = story("technical_support_sop")
    people(h, "hardware.lead")
    summary = "Sensor offline"
    incidents = []
    for _ in range(3):
        sys_id = h.incident(
            short_description=summary,
            description=DOCUMENTED,
            category="hardware",
            impact="2",
            urgency="3",
        )
        h.servicenow.attach(sys_id, "diag.txt", b"no signal\n", as_user=AGENT)
        step(h, sys_id)
        incidents.append(sys_id)
    first, second, third = incidents
    assert work_notes(h, first) == [] and work_notes(h, second) == []
    assert_requested(
        h,
        third,
        "L2",
        by="trigger:repeated_occurrence",
        reason="repeated occurrence (3 tickets in 24 h)",
        approvers="group l2_leads, group engineering_managers",
    )

    h.servicenow.add_work_note(third, "/approve-escalation same fault", as_user="hardware.lead")
    step(h, third)
    assert_approved(
        h,
        third,
        "hardware.lead",
        "L1 -> L2",
        reason="repeated occurrence (3 tickets in 24 h)",
        note="same fault",
    )
    key = paired_key(h, third)
    assert key is not None and key.startswith("HW-")
    assert labels(h, third, key) == (["ESCALATION"], ["ESCALATION"])
    assert_linked(h, third, key)
    escalated = to_customer(h, third, "escalated", f"Your request has been escalated: {summary}")
    assert mails(h) == [escalated]

    # A fourth report of the same fault joins that escalation: no second record, a note and a
    # link to the HW record; the customer hears it is escalated, and resolved with it.
    fourth = h.incident(
        short_description=summary, description=DOCUMENTED, category="hardware", impact="2"
    )
    h.servicenow.attach(fourth, "diag.txt", b"no signal\n", as_user=AGENT)
    step(h, fourth)
    [joined] = notes_with(h, fourth, "This ticket repeats ")
    assert f"whose escalation is active (engineering record {key})" in joined
    assert paired_key(h, fourth) is None and len(h.jira.state.issues) == 1
    assert [u for u in jira_links(h, key) if fourth in u]
    step(h, fourth)
    told = to_customer(h, fourth, "escalated", f"Your request has been escalated: {summary}")
    assert sent_since(h, [escalated]) == [told]
    h.jira.comment(key, "Firmware 2.1 fixes the sensor bus.")
    h.jira.transition(key, "Done")
    step(h, third)
    h.tick()
    step(h, fourth)
    assert h.servicenow.incident(fourth)["state"] == "6"
    assert notes_with(h, fourth, f"The escalation of {h.servicenow.incident(third)['number']}")
    confirm = [m.to for m in mails(h) if m.event == "resolved_please_confirm"]
    assert confirm == [(CUSTOMER_EMAIL,), (CUSTOMER_EMAIL,)]


def test_technical_support_sop_record_refused_announces_nothing(
    story: Callable[[str], Harness],
) -> None:
    """The hardware project is missing: the approved escalation is refused with Jira's reason,
    and nothing is announced (no tag, no e-mail, not active); once the project exists, an
    approver's approval carries it out."""
    h = story("technical_support_sop")
    people(h, "hardware.lead")
    del h.jira.state.projects["HW"]
    summary = "Thermal camera reboots"
    sys_id = h.incident(
        short_description=summary, description=DOCUMENTED, category="hardware", impact="2"
    )
    h.servicenow.attach(sys_id, "diag.txt", b"reboot loop\n", as_user=AGENT)
    h.servicenow.add_work_note(sys_id, "/escalate confirmed hardware fault", as_user=AGENT)
    h.servicenow.add_work_note(sys_id, "L1 confirmed", as_user=AGENT)
    h.servicenow.add_work_note(sys_id, "/approve-escalation", as_user="hardware.lead")
    step(h, sys_id)
    [refused] = notes_with(h, sys_id, "Escalation to L2 not carried out")
    assert "its engineering record could not be created in HW (jira)" in refused
    assert "project" in refused.lower()
    assert "Nothing was announced" in refused
    assert paired_key(h, sys_id) is None and h.jira.state.issues == {}
    assert labels(h, sys_id, None) == ([], [])
    assert mails(h) == []
    assert not notes_with(h, sys_id, "Escalation approved by")
    assert h.store.status_counts().dead_letters_pending == 0
    step(h, sys_id)
    assert len(notes_with(h, sys_id, "not carried out")) == 1

    h.jira.add_project("HW", "HW engineering", workflow=SYNC_WORKFLOW)
    h.servicenow.add_work_note(
        sys_id, "/approve-escalation project is back", as_user="hardware.lead"
    )
    step(h, sys_id)
    key = paired_key(h, sys_id)
    assert key is not None and key.startswith("HW-")
    assert labels(h, sys_id, key) == (["ESCALATION"], ["ESCALATION"])
    assert mails(h) == [
        to_customer(h, sys_id, "escalated", f"Your request has been escalated: {summary}")
    ]
