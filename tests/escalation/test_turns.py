"""The turns real escalations take: withdrawal, re-requests, reopening, priority changes,
repeats joining one escalation, further records at closure, leadership, four eyes, updates
while a further level waits, stakeholders per RACI and withheld engineering comments."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from escalation.decide import decide
from escalation.decision import (
    AddNote,
    CloseFurtherRecords,
    CreateEngineeringRecord,
    CustomerEvent,
    EmailCustomer,
    EngineeringStatus,
    JoinEscalation,
    LedgerEntry,
    LedgerView,
    MoveStatus,
    NoteKind,
    NotifyManagement,
    OpenEscalation,
    RemoveLabel,
    SetPriority,
    ledger_key,
)
from escalation.memory import InMemoryLedger
from mapping.model import EscalationState, Person, Priority, Status, Visibility

S = EscalationState
MARK = "\n\n[escalation-sync origin=jira:ENG-1:{}]"


def notes(decision, kind=None):
    return [
        a.body
        for a in decision.actions
        if isinstance(a, AddNote) and (kind is None or a.kind is kind)
    ]


def pending(now, **kw):
    base = {
        "state": S.PENDING_APPROVAL,
        "level": "L1",
        "requested_at": now - timedelta(minutes=30),
        "requested_by": "eng1",
        "reason": "customer blocked",
        "notice_key": "request:x",
    }
    base.update(kw)
    return LedgerEntry(**base)


def active(now, **kw):
    base = {
        "state": S.APPROVED,
        "level": "L2",
        "approved_at": now - timedelta(hours=2),
        "requested_at": now - timedelta(hours=3),
        "notice_key": "approval:L2:x",
        "priority": Priority.P3,
    }
    base.update(kw)
    return LedgerEntry(**base)


# --- withdrawal ---------------------------------------------------------------------------------


def test_requester_withdraws_a_pending_request(make_ticket, make_comment, policy, now, people):
    """/withdraw-escalation by the requester ends the waiting request with a note; the label
    comes off so that adding it again asks again."""
    c = make_comment("w1", "/withdraw-escalation customer found a workaround", people.engineer)
    d = decide(make_ticket(comments=(c,)), LedgerView(entry=pending(now)), now, policy)
    assert d.state is S.WITHDRAWN
    [note] = notes(d, NoteKind.WITHDRAWAL)
    assert note.startswith("Escalation request to L2 withdrawn by Erin Engineer <erin@example.com>")
    assert "Reason: customer found a workaround." in note
    assert RemoveLabel("escalate") in d.actions


def test_withdraw_by_someone_else_is_not_taken(make_ticket, make_comment, make_policy, now):
    """Only the requester, the requesters named or the approvers may withdraw; others are told."""
    policy = make_policy(**{"request.command_from": {"users": ["eng1"]}})
    stranger = Person(id="zed", name="Zed")
    c = make_comment("w1", "/withdraw-escalation", stranger)
    d = decide(make_ticket(comments=(c,)), LedgerView(entry=pending(now)), now, policy)
    assert d.state is S.PENDING_APPROVAL
    [told] = notes(d, NoteKind.COMMAND_REFUSED)
    assert told.startswith('To Zed: your "/withdraw-escalation" command')


def test_withdraw_on_an_active_escalation_is_explained(make_ticket, make_comment, policy, now):
    """An active escalation is not withdrawn; its author is told how it ends instead."""
    c = make_comment("w1", "/withdraw-escalation")
    d = decide(make_ticket(comments=(c,)), LedgerView(entry=active(now)), now, policy)
    assert d.state is S.APPROVED
    [told] = notes(d, NoteKind.COMMAND_REFUSED)
    assert "an active escalation is not withdrawn" in told


def test_withdrawing_a_further_level_keeps_the_active_one(
    make_ticket, make_comment, policy, now, people
):
    """Withdrawing the L3 request of an active L2 escalation leaves L2 active."""
    entry = active(now, state=S.PENDING_APPROVAL, requested_by="eng1")
    c = make_comment("w1", "/withdraw-escalation not needed after all", people.engineer)
    d = decide(make_ticket(comments=(c,)), LedgerView(entry=entry), now, policy)
    assert d.state is S.APPROVED and d.level == "L2"
    [note] = notes(d, NoteKind.WITHDRAWAL)
    assert "Escalation request to L3 withdrawn" in note and "stays active at L2" in note
    assert not any(isinstance(a, RemoveLabel) for a in d.actions)


# --- asking again ----------------------------------------------------------------------------


def test_label_request_can_be_made_again_after_a_rejection(
    make_ticket, make_comment, policy, now, people
):
    """A rejection takes the request label off and says how to ask again; the label added
    again is a new request."""
    ledger = InMemoryLedger()
    t = make_ticket()
    key = ledger_key(t.ref)
    d = decide(t, ledger.view(key, now, policy, t), now, policy)
    assert d.state is S.PENDING_APPROVAL and ledger.apply(key, d, now)
    rejected = t.model_copy(
        update={"comments": (make_comment("r1", "/reject-escalation add the dump", people.alice),)}
    )
    later = now + timedelta(minutes=5)
    d = decide(rejected, ledger.view(key, later, policy, rejected), later, policy)
    assert d.state is S.REJECTED and RemoveLabel("escalate") in d.actions
    assert "add the label escalate again" in notes(d, NoteKind.REJECTION)[0]
    ledger.apply(key, d, later)
    unlabelled = rejected.model_copy(update={"labels": ()})
    d = decide(unlabelled, ledger.view(key, later, policy, unlabelled), later, policy)
    assert d.state is S.REJECTED and d.actions == ()
    ledger.apply(key, d, later)
    again = now + timedelta(hours=1)
    d = decide(rejected, ledger.view(key, again, policy, rejected), again, policy)
    assert d.state is S.PENDING_APPROVAL and d.request_started


def test_field_request_asks_once_per_value(make_ticket, make_comment, make_policy, now, people):
    """A requesting field value is consumed by its request; another value asks again."""
    policy = make_policy(
        **{
            "request.labels": [],
            "request.fields": [{"field": "custom_fields.escalation_type", "equals": []}],
        }
    )
    ledger = InMemoryLedger()
    t = make_ticket(labels=(), custom_fields={"escalation_type": "technical"})
    key = ledger_key(t.ref)
    d = decide(t, ledger.view(key, now, policy, t), now, policy)
    assert d.state is S.PENDING_APPROVAL
    ledger.apply(key, d, now)
    no = t.model_copy(update={"comments": (make_comment("r1", "/reject-escalation", people.sam),)})
    d = decide(no, ledger.view(key, now, policy, no), now, policy)
    assert d.state is S.REJECTED
    assert "set custom_fields.escalation_type to another value" in notes(d)[0]
    ledger.apply(key, d, now)
    d = decide(no, ledger.view(key, now, policy, no), now, policy)
    assert d.state is S.REJECTED and d.actions == ()
    other = no.model_copy(update={"custom_fields": {"escalation_type": "business"}})
    d = decide(other, ledger.view(key, now, policy, other), now, policy)
    assert d.state is S.PENDING_APPROVAL and d.request_started


# --- after the end -------------------------------------------------------------------------------


def test_record_reopened_after_resolution_requests_the_same_level(make_ticket, policy, now):
    """An incident seen resolved and then reopened starts a new request for the level the
    escalation had reached (L2 again, not L3)."""
    entry = LedgerEntry(
        state=S.RESOLVED,
        level="L2",
        requested_at=now - timedelta(days=2),
        approved_at=now - timedelta(days=2),
        released_at=now - timedelta(days=1),
    )
    resolved = make_ticket(labels=(), status=Status.RESOLVED)
    d = decide(resolved, LedgerView(entry=entry), now, policy)
    assert d.state is S.RESOLVED and d.actions == ()
    entry = replace(entry, processed_command_ids=frozenset(d.processed_command_ids))
    reopened = resolved.model_copy(update={"status": Status.IN_PROGRESS})
    d = decide(reopened, LedgerView(entry=entry), now, policy)
    assert d.state is S.PENDING_APPROVAL and d.request_started and d.level == "L1"
    assert d.request_reason == "the record was reopened (in_progress)"
    assert "Escalation to L2 requested" in notes(d, NoteKind.REQUEST)[0]


def test_record_reopened_with_note_only(make_ticket, make_policy, now):
    """With on_record_reopened = "note", reopening writes one note saying how to re-escalate."""
    policy = make_policy(reopen={"on_record_reopened": "note"})
    entry = LedgerEntry(state=S.CLOSED, level="L2", requested_at=now - timedelta(days=2))
    t = make_ticket(labels=(), status=Status.IN_PROGRESS)
    d = decide(t, LedgerView(entry=entry), now, policy)
    assert d.state is S.CLOSED
    [note] = notes(d, NoteKind.REOPENED)
    assert 'Write "/escalate" <reason> to escalate again.' in note
    entry = replace(entry, processed_command_ids=frozenset(d.processed_command_ids))
    assert decide(t, LedgerView(entry=entry), now, policy).actions == ()


def test_resolution_takes_the_request_label_off(make_ticket, policy, now):
    """When engineering resolves, the request label comes off so it can ask again later."""
    eng = EngineeringStatus(None, Status.RESOLVED, "fixed")
    d = decide(make_ticket(), LedgerView(entry=active(now)), now, policy, engineering=eng)
    assert d.state is S.RESOLVED and RemoveLabel("escalate") in d.actions


def test_further_level_records_are_told_at_closure(make_ticket, make_policy, now):
    """An escalation that reached L3 tells (or closes) the records of further levels when it
    ends; one that stayed at L2 has none."""
    eng = EngineeringStatus(None, Status.RESOLVED, "fixed")
    for mode in ("note", "close"):
        policy = make_policy(closure={"further_records": mode})
        entry = active(now, level="L3")
        d = decide(make_ticket(), LedgerView(entry=entry), now, policy, engineering=eng)
        [further] = [a for a in d.actions if isinstance(a, CloseFurtherRecords)]
        assert further.mode == mode and further.body.startswith("The escalation of INC0000001")
    d = decide(make_ticket(), LedgerView(entry=active(now)), now, policy, engineering=eng)
    assert not any(isinstance(a, CloseFurtherRecords) for a in d.actions)
    keep = make_policy(closure={"further_records": "keep"})
    d = decide(make_ticket(), LedgerView(entry=active(now, level="L3")), now, keep, engineering=eng)
    assert not any(isinstance(a, CloseFurtherRecords) for a in d.actions)


# --- priority changes -------------------------------------------------------------------------


def test_priority_lowered_is_kept_with_a_note(make_ticket, make_policy, now):
    """`keep`: the escalation's priority is set back and a note says so."""
    policy = make_policy(priority_change={"lowered": "keep"})
    entry = active(now, priority=Priority.P1)
    d = decide(make_ticket(priority=Priority.P3), LedgerView(entry=entry), now, policy)
    assert SetPriority(Priority.P1) in d.actions and d.priority is Priority.P1
    [note] = notes(d, NoteKind.PRIORITY)
    assert note.startswith("Priority lowered from P1 to P3 at ")
    assert note.endswith("This escalation keeps P1, so the priority was set back.")


def test_priority_raised_is_followed_with_a_note(make_ticket, policy, now):
    """`follow` (the default): the escalation takes the new priority, with a note."""
    d = decide(make_ticket(priority=Priority.P2), LedgerView(entry=active(now)), now, policy)
    assert d.priority is Priority.P2 and not any(isinstance(a, SetPriority) for a in d.actions)
    [note] = notes(d, NoteKind.PRIORITY)
    assert note.startswith("Priority raised from P3 to P2") and "takes P2" in note


def test_priority_change_asks_the_approver(make_ticket, make_comment, make_policy, now, people):
    """`ask`: set back until an approver of the level confirms with the approve command."""
    policy = make_policy(priority_change={"lowered": "ask"})
    entry = active(now, priority=Priority.P2)
    d = decide(make_ticket(priority=Priority.P4), LedgerView(entry=entry), now, policy)
    assert SetPriority(Priority.P2) in d.actions and d.priority_asked is Priority.P4
    [note] = notes(d, NoteKind.PRIORITY)
    assert "until an approver of L2 (alice, group sme) answers" in note
    entry = replace(entry, priority_asked=Priority.P4)
    ok = make_comment("a1", "/approve-escalation fine, it is contained", people.alice)
    d = decide(
        make_ticket(priority=Priority.P2, comments=(ok,)), LedgerView(entry=entry), now, policy
    )
    assert SetPriority(Priority.P4) in d.actions and d.priority is Priority.P4
    assert d.priority_asked is None
    assert notes(d, NoteKind.PRIORITY)[0].startswith("Priority change to P4 confirmed by Alice")


# --- one escalation for one issue ----------------------------------------------------------------


def test_repeat_joins_the_open_escalation(make_ticket, make_policy, now):
    """A second ticket of the same issue joins the first's escalation: no second request, a
    note, and a link to its engineering record; it follows it to the end."""
    policy = make_policy(duplicates={"join": True})
    ledger = InMemoryLedger()
    first = make_ticket(1, summary="Payments API returns HTTP 500")
    k1 = ledger_key(first.ref)
    d = decide(first, ledger.view(k1, now, policy, first), now, policy)
    ledger.apply(k1, d, now)
    ledger.entries[k1] = replace(
        ledger.entries[k1],
        state=S.APPROVED,
        level="L2",
        approved_at=now,
        engineering_ref="ENG-7",
    )
    second = make_ticket(2, summary="Payments API returns HTTP 500")
    k2 = ledger_key(second.ref)
    d = decide(second, ledger.view(k2, now, policy, second), now, policy)
    assert d.state is S.JOINED and d.joined_to == k1 and d.reservation is None
    assert JoinEscalation(k1, "INC0000001", "ENG-7") in d.actions
    [note] = notes(d, NoteKind.JOINED)
    assert note.startswith("This ticket repeats INC0000001, whose escalation is active")
    ledger.apply(k2, d, now)
    d = decide(second, ledger.view(k2, now, policy, second), now, policy)
    assert EmailCustomer(CustomerEvent.ESCALATED) in d.actions
    ledger.apply(k2, d, now)
    assert decide(second, ledger.view(k2, now, policy, second), now, policy).actions == ()
    ledger.entries[k1] = replace(ledger.entries[k1], state=S.RESOLVED, released_at=now)
    d = decide(second, ledger.view(k2, now, policy, second), now, policy)
    assert d.state is S.RESOLVED
    assert MoveStatus(Status.RESOLVED) in d.actions
    assert EmailCustomer(CustomerEvent.RESOLVED_PLEASE_CONFIRM) in d.actions


def test_linked_ticket_joins_by_its_link_field(make_ticket, make_policy, now):
    """A ticket whose link field names a ticket with an open escalation joins it."""
    policy = make_policy(
        duplicates={"join": True, "by_fingerprint": False, "link_field": "custom_fields.parent"}
    )
    primary = OpenEscalation("servicenow:sys1", pending(now, ticket_key="INC0000001"))
    t = make_ticket(2, summary="Something else", custom_fields={"parent": "INC0000001"})
    view = LedgerView(primary=primary)
    d = decide(t, view, now, policy)
    assert d.state is S.JOINED and d.joined_to == "servicenow:sys1"
    ledger = InMemoryLedger(entries={"servicenow:sys1": primary.entry})
    assert ledger.view("servicenow:sys2", now, policy, t).primary == primary


def test_joined_ticket_is_free_again_when_the_primary_is_rejected(make_ticket, make_policy, now):
    """The escalation a repeat joined was rejected: the repeat is told and may ask itself."""
    policy = make_policy(duplicates={"join": True})
    primary = OpenEscalation("servicenow:sys1", pending(now, state=S.REJECTED))
    entry = LedgerEntry(state=S.JOINED, joined_to="servicenow:sys1", requested_at=now)
    d = decide(make_ticket(2), LedgerView(entry=entry, primary=primary), now, policy)
    assert d.state is S.REJECTED and d.joined_to is None
    assert "ended without running (rejected)" in notes(d, NoteKind.JOINED)[0]


# --- leadership --------------------------------------------------------------------------------

LEADERSHIP = {
    "name": "Leadership",
    "kind": "leadership",
    "approvers": {"users": ["alice"]},
    "notify": ["leadership"],
}
ROLES = {
    "leadership": {"raci": ["I"], "emails": ["vp.support@example.com"]},
    "architect": {"raci": ["R", "A"], "emails": ["architect@example.com"]},
    "managers": {"raci": ["C"], "emails": ["ft.manager@example.com"]},
}


def test_request_at_the_top_technical_level_asks_leadership(
    make_ticket, make_comment, make_policy, policy_data, now, people
):
    """At the last technical level, /escalate asks the leadership level, not "highest level";
    its approval tells leadership and opens no engineering record."""
    policy = make_policy(levels=[*policy_data["levels"], LEADERSHIP], stakeholders={"roles": ROLES})
    entry = active(now, level="L3")
    ask = make_comment("c1", "/escalate the customer wants leadership", people.customer)
    d = decide(make_ticket(comments=(ask,)), LedgerView(entry=entry), now, policy)
    assert d.state is S.PENDING_APPROVAL
    assert "Escalation to Leadership requested" in notes(d, NoteKind.REQUEST)[0]
    entry = replace(entry, state=S.PENDING_APPROVAL, processed_command_ids=frozenset({"c1"}))
    ok = make_comment("c2", "/approve-escalation", people.alice, minutes=5)
    d = decide(make_ticket(comments=(ask, ok)), LedgerView(entry=entry), now, policy)
    assert d.state is S.APPROVED and d.level == "Leadership"
    assert not any(isinstance(a, CreateEngineeringRecord) for a in d.actions)
    assert NotifyManagement("leadership", ("vp.support@example.com",)) in d.actions


def test_leadership_command_skips_to_leadership(
    make_ticket, make_comment, make_policy, policy_data, now, people
):
    """The leadership command asks for leadership from L2 without going through L3."""
    policy = make_policy(
        levels=[*policy_data["levels"], LEADERSHIP],
        request={"labels": ["escalate"], "leadership_command": "/escalate-leadership"},
        stakeholders={"roles": ROLES},
    )
    ask = make_comment("c1", "/escalate-leadership customer executive asked", people.engineer)
    d = decide(make_ticket(comments=(ask,)), LedgerView(entry=active(now)), now, policy)
    assert d.state is S.PENDING_APPROVAL and d.target_level == "Leadership"
    assert "Escalation to Leadership requested" in notes(d, NoteKind.REQUEST)[0]


# --- people ------------------------------------------------------------------------------------


def test_four_eyes_refuses_the_requesters_own_approval(
    make_ticket, make_comment, make_policy, now, people
):
    """With four eyes, the requester's approval is not taken (and they are told why); another
    approver's is."""
    policy = make_policy(approval={"via": ["command"], "four_eyes": True})
    entry = pending(now, requested_by="alice")
    own = make_comment("a1", "/approve-escalation", people.alice)
    d = decide(make_ticket(comments=(own,)), LedgerView(entry=entry), now, policy)
    assert d.state is S.PENDING_APPROVAL
    assert "four eyes" in notes(d, NoteKind.COMMAND_REFUSED)[0]
    other = make_comment("a2", "/approve-escalation", people.sam)
    d = decide(make_ticket(comments=(other,)), LedgerView(entry=entry), now, policy)
    assert d.state is S.APPROVED


def test_stakeholders_told_per_raci_with_sponsor(make_ticket, make_comment, make_policy, now):
    """A notice goes To the consulted roles and the account's sponsor, CC the informed."""
    policy = make_policy(
        stakeholders={
            "roles": ROLES,
            "sponsor_field": "custom_fields.sponsor",
            "notices": [
                {
                    "events": ["escalated"],
                    "priorities": ["P1", "P2"],
                    "to": ["consulted", "sponsor"],
                    "cc": ["I", "managers"],
                }
            ],
        }
    )
    ok = make_comment("a1", "/approve-escalation", Person(id="alice"))
    sponsored = {"sponsor": "sponsor@customer.example"}
    t = make_ticket(priority=Priority.P2, comments=(ok,), custom_fields=sponsored)
    d = decide(t, LedgerView(entry=pending(now)), now, policy)
    [notice] = [a for a in d.actions if isinstance(a, NotifyManagement)]
    assert notice == NotifyManagement(
        "escalated",
        ("ft.manager@example.com", "sponsor@customer.example"),
        ("vp.support@example.com",),
    )
    low = t.model_copy(update={"priority": Priority.P4})
    d = decide(low, LedgerView(entry=pending(now)), now, policy)
    assert not any(isinstance(a, NotifyManagement) for a in d.actions)


def test_withheld_engineering_comment_is_not_mailed(make_ticket, make_comment, make_policy, now):
    """A public engineering comment matching withhold_pattern (an estimate) is not e-mailed."""
    policy = make_policy(customer_updates={"withhold_pattern": r"(?i)\beta\b|by (monday|friday)"})
    dev = Person(id="dev1", name="Dev")
    eta = make_comment("p1", "ETA: fixed by Friday" + MARK.format(1), dev, Visibility.PUBLIC, 90)
    d = decide(make_ticket(comments=(eta,)), LedgerView(entry=active(now)), now, policy)
    assert not any(isinstance(a, EmailCustomer) for a in d.actions)
    assert any(r.rule == "customer_updates.withhold" for r in d.reasons)
    news = make_comment("p2", "Root cause found" + MARK.format(2), dev, Visibility.PUBLIC, 95)
    d = decide(make_ticket(comments=(eta, news)), LedgerView(entry=active(now)), now, policy)
    assert EmailCustomer(CustomerEvent.PUBLIC_UPDATE, comment_id="p2") in d.actions


def test_public_updates_flow_while_a_further_level_waits(make_ticket, make_comment, policy, now):
    """An L2 engineer's public comment reaches the customer while the L3 request waits."""
    entry = active(now, state=S.PENDING_APPROVAL)
    dev = Person(id="dev1", name="Dev")
    news = make_comment("p1", "Workaround posted" + MARK.format(1), dev, Visibility.PUBLIC, 90)
    d = decide(make_ticket(comments=(news,)), LedgerView(entry=entry), now, policy)
    assert d.state is S.PENDING_APPROVAL
    assert EmailCustomer(CustomerEvent.PUBLIC_UPDATE, comment_id="p1") in d.actions


def test_routing_per_level_and_region(make_ticket, make_comment, make_policy, policy_data, now):
    """The level's queue and assignment group, replaced per region, go on the record."""
    levels = [dict(lv) for lv in policy_data["levels"]]
    levels[1].update(
        queue="Escalation",
        assignment_group="Escalation Global",
        regions={"EMEA": {"assignment_group": "Escalation EMEA", "component": "emea"}},
    )
    policy = make_policy(levels=levels, region_field="custom_fields.region")
    ok = make_comment("a1", "/approve-escalation", Person(id="alice"))
    t = make_ticket(comments=(ok,), custom_fields={"region": "emea"})
    d = decide(t, LedgerView(entry=pending(now)), now, policy)
    [record] = [a for a in d.actions if isinstance(a, CreateEngineeringRecord)]
    assert record.queue == "Escalation"
    assert dict(record.dispatch) == {
        "assignment_group": "Escalation EMEA",
        "component": "emea",
        "queue": "Escalation",
    }


def test_a_field_value_set_during_an_escalation_does_not_ask_again_after_it(
    make_ticket, make_comment, make_policy, now, people
):
    """A requesting field value that appeared while the escalation ran belongs to it: once the
    escalation is resolved, it starts nothing."""
    policy = make_policy(
        **{"request.fields": [{"field": "custom_fields.escalation_type"}], "request.labels": []}
    )
    ledger = InMemoryLedger()
    ask = make_comment("r1", "/escalate customer blocked", people.engineer)
    t = make_ticket(labels=(), comments=(ask,))
    key = ledger_key(t.ref)
    ledger.apply(key, decide(t, ledger.view(key, now, policy, t), now, policy), now)
    typed = t.model_copy(update={"custom_fields": {"escalation_type": "technical"}})
    ledger.apply(key, decide(typed, ledger.view(key, now, policy, typed), now, policy), now)
    ledger.entries[key] = replace(
        ledger.entries[key], state=S.RESOLVED, approved_at=now, released_at=now
    )
    d = decide(typed, ledger.view(key, now, policy, typed), now, policy)
    assert d.state is S.RESOLVED and not d.request_started


def test_an_engineering_comment_is_told_once_whatever_the_next_note(
    make_ticket, make_comment, policy, now, people
):
    """A public engineering comment told to the customer is not told again by a later
    decision whose own note moved the notice key on (a further-level approval)."""
    dev = Person(id="dev1", name="Dev")
    news = make_comment("p1", "Workaround posted" + MARK.format(1), dev, Visibility.PUBLIC, 60)
    entry = active(now, state=S.PENDING_APPROVAL, last_customer_update_at=None)
    d = decide(make_ticket(comments=(news,)), LedgerView(entry=entry), now, policy)
    assert EmailCustomer(CustomerEvent.PUBLIC_UPDATE, comment_id="p1") in d.actions
    entry = replace(
        entry,
        processed_command_ids=frozenset(d.processed_command_ids),
        notice_key="approval:L3:x",
        last_customer_update_at=news.created,
    )
    ok = make_comment("a1", "/approve-escalation", people.alice, minutes=61)
    d = decide(make_ticket(comments=(news, ok)), LedgerView(entry=entry), now, policy)
    assert d.level == "L3"
    assert not any(
        isinstance(a, EmailCustomer) and a.event is CustomerEvent.PUBLIC_UPDATE for a in d.actions
    )


def test_a_proactive_trigger_does_not_ask_again_after_the_escalation_ran(
    make_ticket, make_policy, now
):
    """A P1 resolved after a person's request is not asked for again by the P1 trigger."""
    policy = make_policy(triggers=[{"kind": "priority", "priorities": ["P1"]}])
    entry = active(now, state=S.RESOLVED, released_at=now)
    t = make_ticket(labels=(), priority=Priority.P1, status=Status.RESOLVED)
    d = decide(t, LedgerView(entry=entry), now, policy)
    assert d.state is S.RESOLVED and not d.request_started
