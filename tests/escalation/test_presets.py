"""The shipped presets: each loads, names the procedure it encodes, and plays its story."""

from __future__ import annotations

import re
import tomllib
from datetime import datetime, timedelta
from typing import ClassVar

import pytest

import presets
from escalation.decide import decide
from escalation.decision import (
    AddLabel,
    AddNote,
    CloseFurtherRecords,
    CreateEngineeringRecord,
    CustomerEvent,
    EmailCustomer,
    EngineeringStatus,
    LedgerEntry,
    MoveStatus,
    NoteKind,
    NotifyManagement,
    PostLinks,
    SetPriority,
    ledger_key,
)
from escalation.memory import InMemoryLedger
from escalation.policy import load_policy
from mapping.model import (
    Comment,
    EscalationState,
    Level,
    Person,
    Priority,
    Ref,
    Status,
    System,
    Visibility,
)
from tests.conftest import PROCEDURES

S = EscalationState


def test_every_preset_loads():
    """Each preset file validates with load_policy."""
    names = presets.preset_names()
    assert len(names) == 5
    for name in names:
        path = presets.preset_path(name)
        with path.open("rb") as fh:
            load_policy(tomllib.load(fh), source=str(path))


def test_each_preset_names_one_procedure_and_all_are_covered():
    """Every header names a procedures file; together they cover all five, once each."""
    named: list[str] = []
    for name in presets.preset_names():
        header = presets.preset_path(name).read_text().split("[escalation]")[0]
        files = re.findall(r"procedures/(\d{3}_[0-9a-f]+\.txt)", header)
        assert len(files) == 1, name
        named.extend(files)
    assert len(set(named)) == 5
    assert set(named) == {p.name for p in PROCEDURES.glob("*.txt")}


def _plain(text: str) -> str:
    """Text with its whitespace collapsed and its apostrophes (and their mojibake) alike."""
    text = text.replace("\u00e2\u20ac\u2122", "'").replace("\u2019", "'")
    return re.sub(r"\s+", " ", text).strip()


def header_quotes(name: str) -> dict[str, list[str]]:
    """The procedure lines a preset's header quotes, under "Implements:" and "Does not
    implement:": each bullet's leading quotations."""
    header = presets.preset_path(name).read_text().split("[escalation]")[0]
    lines = [line.removeprefix("#").strip() for line in header.splitlines()]
    sections: dict[str, list[str]] = {"Implements:": [], "Does not implement:": []}
    current: list[str] | None = None
    bullets: list[list[str]] = []
    for line in lines:
        if line in sections:
            current = sections[line]
            continue
        if current is None:
            continue
        if line.startswith("- "):
            bullets.append([line[2:]])
            current.append("")
        elif bullets and line:
            bullets[-1].append(line)
        if bullets and current:
            current[-1] = " ".join(bullets[-1])
    quotes: dict[str, list[str]] = {}
    for title, items in sections.items():
        found: list[str] = []
        for item in items:
            # The quotations a bullet opens with, before the words that say what does it.
            lead = re.match(r'^(?:"[^"]+"(?:,\s*|\s+and\s+|\s*)?)+', item)
            found.extend(re.findall(r'"([^"]+)"', lead.group(0) if lead else ""))
        quotes[title] = found
    return quotes


@pytest.mark.parametrize("name", presets.preset_names())
def test_each_header_quotes_its_procedure_lines_done_and_not_done(name: str):
    """A preset's header lists, quoted, the procedure lines it implements and those it does
    not; every quotation is the procedure's own words (an ellipsis may shorten it), and each
    numbered step of the procedure is quoted in one list or the other."""
    header = presets.preset_path(name).read_text().split("[escalation]")[0]
    [file] = re.findall(r"procedures/(\d{3}_[0-9a-f]+\.txt)", header)
    procedure = _plain((PROCEDURES / file).read_text(encoding="utf-8", errors="replace"))
    quotes = header_quotes(name)
    assert quotes["Implements:"] and quotes["Does not implement:"], quotes
    for quote in quotes["Implements:"] + quotes["Does not implement:"]:
        at = 0
        for part in _plain(quote).split("..."):
            part = part.strip()
            found = procedure.find(part, at)
            assert found >= 0, f"{name}: not in {file}: {part!r}"
            at = found + len(part)
    quoted = " | ".join(_plain(q) for qs in quotes.values() for q in qs)
    raw = (PROCEDURES / file).read_text(encoding="utf-8", errors="replace")
    for step in re.findall(r"(?m)^\s*\d+\.\s+(.+)$", raw):
        assert _plain(step)[:40] in quoted, f"{name}: step not listed: {step!r}"


def test_unknown_preset_is_reported_with_the_choices():
    """Asking for a preset that does not exist names the ones that do."""
    with pytest.raises(FileNotFoundError, match="ds_ticket_limits"):
        presets.preset_path("nope")


# --- stories (decision level; the end-to-end versions run against the simulators) -----------------


class Story:
    """Plays a ticket through decide() and an in-memory ledger, one step at a time."""

    # When the running story starts (each story sets it): comments are stamped minutes after.
    t0: ClassVar[datetime]

    def __init__(self, preset: str, clock):
        self.policy = presets.load_preset(preset)
        self.ledger = InMemoryLedger()
        self.now = clock

    def step(self, ticket, minutes: int = 10, **kw):
        self.now = self.now + timedelta(minutes=minutes)
        key = ledger_key(ticket.ref)
        d = decide(
            ticket,
            self.ledger.view(key, self.now, self.policy, ticket),
            self.now,
            self.policy,
            **kw,
        )
        assert self.ledger.apply(key, d, self.now)
        return d


def note(d, kind):
    found = [a for a in d.actions if isinstance(a, AddNote) and a.kind is kind]
    assert found, (kind, d.actions)
    return found[0].body


def c(cid, body, who, vis=Visibility.INTERNAL, minute=0, now=None):
    return Comment(
        id=cid,
        body=body,
        author=who,
        visibility=vis,
        created=(now or Story.t0) + timedelta(minutes=minute),
    )


def test_story_sme_approval_csst(make_ticket, now):
    """CSST story: request, missing CSST note, SME rejects with action items, then approves."""
    Story.t0 = now
    st = Story("sme_approval_csst", now)
    eng = Person(id="engineer")
    sme = Person(id="sme.emea.2")
    base = make_ticket(
        labels=(),
        description="Package fails. Steps to reproduce: run job. "
        "Version 16.0. Troubleshooting: re-deployed.",
    )
    comments = [c("c1", "/escalate dump analysis needed", eng, minute=1)]
    d = st.step(base.model_copy(update={"comments": tuple(comments)}))
    assert d.state is S.INCOMPLETE and "CSST note" in note(d, NoteKind.NEEDS_INFORMATION)
    comments.append(c("c2", "CSST: summary, impact, repro, logs attached", eng, minute=15))
    d = st.step(base.model_copy(update={"comments": tuple(comments)}))
    assert d.state is S.PENDING_APPROVAL
    comments.append(c("c3", "/reject-escalation capture a memory dump first", sme, minute=25))
    d = st.step(base.model_copy(update={"comments": tuple(comments)}))
    assert d.state is S.REJECTED
    assert "capture a memory dump first" in note(d, NoteKind.REJECTION)
    comments += [
        c("c4", "/escalate dump captured", eng, minute=40),
        c("c5", "/approve-escalation go", sme, minute=45),
    ]
    d = st.step(base.model_copy(update={"comments": tuple(comments)}), minutes=60)
    assert d.state is S.APPROVED and d.level == "Regional Escalation"
    eng_rec = next(a for a in d.actions if isinstance(a, CreateEngineeringRecord))
    assert (eng_rec.project_or_table, eng_rec.queue) == ("ESC", "Escalation")
    assert AddLabel("ESCALATION") in d.actions and PostLinks() in d.actions
    assert not any(isinstance(a, SetPriority) for a in d.actions)


def test_story_ds_ticket_limits(make_ticket, make_comment, now):
    """DS story: only leads initiate; 3 a day, then a refusal naming the count; P1 on approval."""
    Story.t0 = now
    st = Story("ds_ticket_limits", now)
    lead = Person(id="lead.1")
    dev = Person(id="devsupport.1")
    desc = (
        "Payments to one biller fail since the 4.2 deploy; we cannot investigate further "
        "without Dev Support.\nContact: Dana Ops"
    )
    not_lead = make_ticket(
        9, labels=(), description=desc, comments=(c("x", "/escalate", Person(id="agent9")),)
    )
    d = st.step(not_lead)
    assert d.state is S.NONE and d.blocked
    states = []
    for n in range(1, 5):
        t = make_ticket(
            n,
            labels=(),
            description=desc,
            comments=(
                c(f"r{n}", "/escalate merchant outage", lead, minute=n),
                c(f"a{n}", "/approve-escalation", dev, minute=n + 1),
            ),
        )
        d = st.step(t, minutes=1)
        states.append(d.state)
        if n == 1:
            assert SetPriority(Priority.P1) in d.actions and AddLabel("ESCALATION") in d.actions
            assert not any(isinstance(a, EmailCustomer) for a in d.actions)
    assert states == [S.APPROVED] * 3 + [S.REFUSED]
    assert "max_per_day (3 escalations today, limit 3)" in note(d, NoteKind.REFUSAL)
    # The reporter's team alone talks to affected parties: engineering's public comment and
    # the resolution send the customer nothing.
    # The engine set the incident to P1 on approval.
    first = make_ticket(1, labels=(), description=desc, priority=Priority.P1)
    update = c("u1", "Root cause found.\n\n[escalation-sync origin=jira:DS-1:7]", dev, minute=30)
    update = update.model_copy(update={"visibility": Visibility.PUBLIC})
    d = st.step(first.model_copy(update={"comments": (update,)}), minutes=60)
    assert d.state is S.APPROVED and d.actions == ()
    d = st.step(first, engineering=EngineeringStatus(None, Status.RESOLVED, "Cache key fixed"))
    assert d.state is S.RESOLVED and d.releases
    assert "Cache key fixed" in note(d, NoteKind.RESOLUTION)
    assert not any(isinstance(a, EmailCustomer) for a in d.actions)
    low = make_ticket(
        7,
        labels=(),
        description=desc,
        impact=Level.LOW,
        comments=(c("r7", "/escalate one payer missed a notification", lead),),
    )
    d = st.step(low)
    assert d.state is S.REFUSED and "low-impact" in note(d, NoteKind.REFUSAL)


def test_story_l1_l2_l3_team_leader(make_ticket, now):
    """L1-L3 story: customer asks publicly; an SME takes L2; the vendor needs troubleshooting
    with outcomes and a Team Leader (not the Team Manager); closure."""
    Story.t0 = now
    st = Story("l1_l2_l3_team_leader", now)
    customer = Person(id="cust", email="carl@customer.example")
    sme = Person(id="sme.1")
    tl = Person(id="team.leader.1")
    tm = Person(id="team.manager")
    # No troubleshooting written and no attachment: neither is needed to reach L2.
    base = make_ticket(labels=(), description="Outlook crashes on start.", attachments=())
    comments = [
        c("c1", "/escalate please, this blocks us", customer, Visibility.PUBLIC, 1),
        c("c2", "/approve-escalation I approve myself", customer, Visibility.PUBLIC, 2),
    ]
    d = st.step(base.model_copy(update={"comments": tuple(comments)}))
    assert d.state is S.PENDING_APPROVAL and d.blocked
    assert "group smes, group team_leaders, group team_managers" in note(d, NoteKind.REQUEST)
    comments.append(c("c3", "/approve-escalation taking this on", sme, minute=20))
    d = st.step(base.model_copy(update={"comments": tuple(comments)}))
    assert d.state is S.APPROVED and d.level == "L2"
    assert (
        NotifyManagement("escalated", ("team.leaders@example.com", "team.manager@example.com"))
        in d.actions
    )
    comments.append(c("c4", "/escalate needs Microsoft", customer, Visibility.PUBLIC, 60))
    d = st.step(base.model_copy(update={"comments": tuple(comments)}), minutes=60)
    assert d.state is S.INCOMPLETE
    missing = note(d, NoteKind.NEEDS_INFORMATION)
    assert "troubleshooting steps performed" in missing and "Outcome" in missing
    comments.append(
        c("c5", "Troubleshooting: safe mode, new profile. Outcome: still crashes.", sme, minute=70)
    )
    d = st.step(base.model_copy(update={"comments": tuple(comments)}), minutes=20)
    assert d.state is S.PENDING_APPROVAL and "group team_leaders)" in note(d, NoteKind.REQUEST)
    comments.append(c("c6", "/approve-escalation", tm, minute=80))
    d = st.step(base.model_copy(update={"comments": tuple(comments)}))
    assert d.state is S.PENDING_APPROVAL and d.blocked
    comments.append(c("c7", "/approve-escalation send to vendor", tl, minute=90))
    d = st.step(base.model_copy(update={"comments": tuple(comments)}), minutes=20)
    assert d.state is S.APPROVED and d.level == "L3" and d.reservation is None
    assert "L2 -> L3" in note(d, NoteKind.APPROVAL)
    assert (
        next(a for a in d.actions if isinstance(a, CreateEngineeringRecord)).project_or_table
        == "VENDOR"
    )
    d = st.step(
        base.model_copy(update={"comments": tuple(comments)}),
        engineering=EngineeringStatus(None, Status.RESOLVED, "Vendor hotfix KB123"),
    )
    assert d.state is S.RESOLVED and d.releases
    assert EmailCustomer(CustomerEvent.RESOLVED_PLEASE_CONFIRM) in d.actions
    d = st.step(base.model_copy(update={"comments": tuple(comments), "status": Status.CLOSED}))
    assert d.state is S.CLOSED and EmailCustomer(CustomerEvent.CLOSED) in d.actions


# The RACI: CXP stakeholders (consulted) and the account's sponsor To, leadership (informed) CC.
CXP = "cxp.stakeholders@example.com"
SPONSOR = "sponsor@customer.example"
INFORMED = ("team.manager@example.com", "regional.leadership@example.com")


def test_story_fasttrack(make_ticket, now):
    """FastTrack story: field request, info gathering, architect approves, cadence, resolution."""
    Story.t0 = now
    st = Story("fasttrack_customer_escalation", now)
    fta = Person(id="architect.1")
    t = make_ticket(
        labels=(),
        priority=Priority.P2,
        custom_fields={"escalation_type": "Technical", "sponsor": SPONSOR},
        description="Mailbox migration stalled for 300 users.",
    )
    d = st.step(t)
    assert d.state is S.INCOMPLETE
    assert EmailCustomer(CustomerEvent.NEEDS_INFORMATION) in d.actions
    body = note(d, NoteKind.NEEDS_INFORMATION)
    assert "Deployment phase" in body and "Services impacted" in body
    t = t.model_copy(
        update={
            "description": t.description + "\nEscalation type: technical\n"
            "Date of occurrence: 2026-03-09\nServices impacted: Exchange Online"
            "\nDeployment phase: migration"
        }
    )
    assert st.step(t).state is S.PENDING_APPROVAL
    t = t.model_copy(update={"comments": (c("a", "/approve-escalation", fta, minute=90),)})
    d = st.step(t, minutes=60)
    assert d.state is S.APPROVED
    assert NotifyManagement("escalated", (CXP, SPONSOR), INFORMED) in d.actions
    d = st.step(t, minutes=25 * 60)
    assert d.actions == (EmailCustomer(CustomerEvent.PERIODIC_UPDATE),)
    d = st.step(t, engineering=EngineeringStatus(None, Status.RESOLVED, "Throttling lifted"))
    assert EmailCustomer(CustomerEvent.RESOLVED_PLEASE_CONFIRM) in d.actions
    assert NotifyManagement("resolved", (CXP, SPONSOR)) in d.actions


SOP_MANAGEMENT = ("engineering.manager@example.com", "support.lead@example.com")


def test_story_technical_support_sop(make_ticket, now):
    """SOP story: P1 asks a manager at once and tells management; hardware goes to HW; P3 needs
    L1 confirmation; an SLA near breach escalates to management; repeats trigger."""
    Story.t0 = now
    st = Story("technical_support_sop", now)
    p1 = make_ticket(
        1, labels=(), priority=Priority.P1, description="Production down", attachments=()
    )
    d = st.step(p1)
    # Immediate: requested with the information available, management told, a manager to approve.
    assert d.state is S.PENDING_APPROVAL and d.requested_by == "trigger:business_critical"
    assert NotifyManagement("requested", SOP_MANAGEMENT) in d.actions
    assert "Awaiting approval (group engineering_managers)" in note(d, NoteKind.REQUEST)
    assert not any(isinstance(a, CreateEngineeringRecord) for a in d.actions)
    lead = c("a1", "/approve-escalation", Person(id="software.lead"), minute=15)
    d = st.step(p1.model_copy(update={"comments": (lead,)}), minutes=15)
    assert d.state is S.PENDING_APPROVAL and d.blocked
    d = st.step(p1.model_copy(update={"comments": (lead,)}), minutes=20)
    assert NotifyManagement("approval_overdue", SOP_MANAGEMENT) in d.actions
    manager = c("a2", "/approve-escalation go", Person(id="engineering.manager"), minute=40)
    d = st.step(p1.model_copy(update={"comments": (lead, manager)}), minutes=5)
    assert d.state is S.APPROVED and d.level == "L2" and d.approved_by == "engineering.manager"
    assert NotifyManagement("escalated", SOP_MANAGEMENT) in d.actions
    assert EmailCustomer(CustomerEvent.ESCALATED) in d.actions
    hw = make_ticket(
        2,
        category="hardware",
        comments=(
            c("l1", "L1 confirmed: cannot resolve at L1", Person(id="eng"), minute=1),
            c("a", "/approve-escalation", Person(id="hardware.lead"), minute=2),
        ),
    )
    d = st.step(hw)
    assert d.state is S.APPROVED
    assert (
        next(a for a in d.actions if isinstance(a, CreateEngineeringRecord)).project_or_table
        == "HW"
    )
    assert not any(isinstance(a, NotifyManagement) for a in d.actions)
    p3 = make_ticket(3, priority=Priority.P3)
    d = st.step(p3)
    assert d.state is S.INCOMPLETE and "L1 confirmation" in note(d, NoteKind.NEEDS_INFORMATION)
    due = (st.now + timedelta(minutes=10, hours=3)).isoformat()
    sla = make_ticket(4, labels=(), priority=Priority.P4, custom_fields={"sla_due": due})
    d = st.step(sla)
    assert d.state is S.PENDING_APPROVAL and d.requested_by == "trigger:sla_imminent"
    assert NotifyManagement("requested", SOP_MANAGEMENT) in d.actions
    repeated = []
    for n in (5, 6, 7):
        t = make_ticket(
            n, labels=(), priority=Priority.P4, summary="Sensor offline", category="devices"
        )
        repeated.append(st.step(t).state)
    assert repeated == [S.NONE, S.NONE, S.PENDING_APPROVAL]


# --- the turns each procedure takes (decision level) --------------------------------------------


def follow_up(d):
    return [a.body for a in d.actions if isinstance(a, AddNote) and a.kind is NoteKind.FOLLOW_UP]


def test_turns_sme_approval_csst(make_ticket, now):
    """000: the task goes to the SR region's escalation team in the Escalation queue; nobody
    assigned 4 h later, the DMs and the TA are told (step 5)."""
    Story.t0 = now
    st = Story("sme_approval_csst", now)
    eng, sme = Person(id="engineer"), Person(id="sme.emea.1")
    t = make_ticket(
        labels=(),
        description="Steps to reproduce: run job. Version 16.0. Troubleshooting: redeployed.",
        custom_fields={"region": "EMEA"},
        comments=(
            c("n", "CSST: impact high", eng, minute=1),
            c("r", "/escalate dump analysis", eng, minute=2),
            c("a", "/approve-escalation", sme, minute=3),
        ),
    )
    d = st.step(t)
    record = next(a for a in d.actions if isinstance(a, CreateEngineeringRecord))
    assert dict(record.dispatch) == {"assignment_group": "Escalation EMEA", "queue": "Escalation"}
    eng_rec = EngineeringStatus(Ref(system=System.JIRA, id="1", key="ESC-1"), Status.NEW)
    d = st.step(t, minutes=60, engineering=eng_rec)
    assert d.actions == () and d.wake_at == st.now + timedelta(hours=3)
    d = st.step(t, minutes=180, engineering=eng_rec)
    assert "has not been assigned within 4 h" in follow_up(d)[0]
    assert (
        NotifyManagement(
            "unassigned",
            ("dm.apac@example.com", "dm.emea@example.com", "dm.amer@example.com", "ta@example.com"),
        )
        in d.actions
    )


def test_turns_ds_ticket_limits(make_ticket, now):
    """001: a priority lowered during the escalation is set back to Highest with a note; an
    engineering comment with an estimate matches the withhold pattern."""
    Story.t0 = now
    st = Story("ds_ticket_limits", now)
    lead, dev = Person(id="lead.1"), Person(id="devsupport.1")
    desc = (
        "Payments fail since 4.2; we cannot investigate further without Dev Support.\nContact: Dana"
    )
    t = make_ticket(
        labels=(),
        description=desc,
        comments=(
            c("r", "/escalate outage", lead, minute=1),
            c("a", "/approve-escalation", dev, minute=2),
        ),
    )
    assert SetPriority(Priority.P1) in st.step(t).actions
    lowered = t.model_copy(update={"priority": Priority.P3})
    d = st.step(lowered)
    assert SetPriority(Priority.P1) in d.actions
    assert "This escalation keeps P1, so the priority was set back." in note(d, NoteKind.PRIORITY)
    pattern = st.policy.customer_updates.withhold_pattern
    assert pattern is not None
    assert re.search(pattern, "ETA: fixed by Friday") and re.search(
        pattern, "should be done by tomorrow"
    )
    assert not re.search(pattern, "Root cause: an expired certificate")


def test_turns_l1_l2_l3_team_leader(make_ticket, now):
    """002: the customer asks for leadership at L3: a Team Manager approves, support leadership
    is told, no record is opened; at closure the vendor record is closed."""
    Story.t0 = now
    st = Story("l1_l2_l3_team_leader", now)
    customer, manager = Person(id="carla"), Person(id="team.manager")
    t = make_ticket(labels=())
    # Already escalated to the vendor (L3).
    st.ledger.entries[ledger_key(t.ref)] = LedgerEntry(
        state=S.APPROVED, level="L3", approved_at=now, requested_at=now
    )
    ask = c("q", "/escalate we want your leadership", customer, Visibility.PUBLIC, minute=5)
    d = st.step(t.model_copy(update={"comments": (ask,)}))
    assert d.state is S.PENDING_APPROVAL
    assert "Escalation to Leadership requested by carla" in note(d, NoteKind.REQUEST)
    ok = c("a", "/approve-escalation preparing the case", manager, minute=20)
    d = st.step(t.model_copy(update={"comments": (ask, ok)}), minutes=15)
    assert d.state is S.APPROVED and d.level == "Leadership"
    assert (
        NotifyManagement(
            "leadership",
            (
                "team.leaders@example.com",
                "team.manager@example.com",
                "support.leadership@example.com",
            ),
        )
        in d.actions
    )
    assert not any(isinstance(a, CreateEngineeringRecord) for a in d.actions)
    d = st.step(t, engineering=EngineeringStatus(None, Status.RESOLVED, "fixed by the vendor"))
    [further] = [a for a in d.actions if isinstance(a, CloseFurtherRecords)]
    assert further.mode == "close"


def test_turns_fasttrack(make_ticket, now):
    """003: resolved and asked for written confirmation: reminded after 72 h, never closed by
    the policy (closing waits for the confirmation)."""
    Story.t0 = now
    st = Story("fasttrack_customer_escalation", now)
    t = make_ticket(labels=(), status=Status.RESOLVED)
    st.ledger.entries[ledger_key(t.ref)] = LedgerEntry(
        state=S.RESOLVED, level="Architect", approved_at=now, requested_at=now, released_at=now
    )
    d = st.step(t, minutes=72 * 60)
    assert EmailCustomer(CustomerEvent.CONFIRMATION_REMINDER) in d.actions
    d = st.step(t, minutes=30 * 24 * 60)
    assert not any(isinstance(a, MoveStatus) for a in d.actions) and d.wake_at is None


def test_turns_technical_support_sop(make_ticket, now):
    """004: a repeat joins the escalation already open; engineering silent past the P3 window
    is followed up; a lowered priority waits for an approver."""
    Story.t0 = now
    st = Story("technical_support_sop", now)
    lead = Person(id="software.lead")
    first = make_ticket(
        1,
        summary="Sensor offline",
        comments=(
            c("l1", "L1 confirmed", Person(id="eng"), minute=1),
            c("a", "/approve-escalation", lead, minute=2),
        ),
    )
    d = st.step(first)
    assert d.state is S.APPROVED
    repeat = make_ticket(2, summary="Sensor offline")
    d = st.step(repeat)
    assert d.state is S.JOINED and "This ticket repeats INC0000001" in note(d, NoteKind.JOINED)
    silent = EngineeringStatus(Ref(system=System.JIRA, id="1", key="SW-1"), Status.IN_PROGRESS)
    d = st.step(first, minutes=24 * 60, engineering=silent)
    assert any("no response from engineering on SW-1 (L2) within 24 h" in b for b in follow_up(d))
    lowered = first.model_copy(update={"priority": Priority.P4})
    d = st.step(lowered, engineering=silent)
    assert SetPriority(Priority.P3) in d.actions and d.priority_asked is Priority.P4
