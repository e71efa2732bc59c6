"""decide(): every recognition rule, trigger, gate, approval path, limit and transition."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from escalation.decide import decide, fingerprint
from escalation.decide.commands import unread_commands
from escalation.decision import (
    AddLabel,
    AddNote,
    CreateEngineeringRecord,
    CustomerEvent,
    EmailCustomer,
    EngineeringStatus,
    FingerprintSighting,
    LedgerEntry,
    LedgerView,
    MoveStatus,
    NoteKind,
    NotifyManagement,
    PostLinks,
    ReleaseEscalation,
    RemoveLabel,
    SetLevel,
    SetPriority,
    decision_to_dict,
    ledger_key,
)
from escalation.memory import InMemoryLedger
from mapping.model import (
    Attachment,
    Escalation,
    EscalationState,
    Level,
    Person,
    Priority,
    Ref,
    Status,
    System,
    Visibility,
)

S = EscalationState
EMPTY = LedgerView()


def notes(decision, kind=None):
    return [
        a for a in decision.actions if isinstance(a, AddNote) and (kind is None or a.kind == kind)
    ]


def told(decision):
    """The internal notes telling authors why their command was not taken."""
    return [a.body for a in notes(decision, NoteKind.COMMAND_REFUSED)]


def only_told(decision):
    """True when the decision's only actions are notes to authors of refused commands."""
    return all(
        isinstance(a, AddNote)
        and a.kind is NoteKind.COMMAND_REFUSED
        and a.visibility is Visibility.INTERNAL
        for a in decision.actions
    ) and bool(decision.actions)


def reason(decision, rule):
    found = [r for r in decision.reasons if r.rule == rule]
    assert found, f"no reason {rule!r} in {[r.rule for r in decision.reasons]}"
    return found[-1]


def pending_entry(**kw: Any) -> LedgerEntry:
    base: dict[str, Any] = {
        "state": S.PENDING_APPROVAL,
        "level": "L1",
        "requested_at": None,
        "reason": "label escalate",
        "notice_key": "request:x",
    }
    base.update(kw)
    return LedgerEntry(**base)


# --- recognition --------------------------------------------------------------------------------


def test_no_signal_no_change(make_ticket, policy, now):
    """A ticket without a request label, field, command or trigger stays un-escalated."""
    d = decide(make_ticket(labels=()), EMPTY, now, policy)
    assert d.state is S.NONE and d.actions == ()
    assert reason(d, "recognition.label").outcome == "fail"


def test_label_request_with_complete_ticket_awaits_approval(make_ticket, policy, now):
    """A request label on a complete ticket moves it to pending approval with one request note."""
    d = decide(make_ticket(), EMPTY, now, policy)
    assert d.state is S.PENDING_APPROVAL
    assert d.request_started
    [note] = notes(d)
    assert note.kind is NoteKind.REQUEST and note.visibility is Visibility.INTERNAL
    assert "Awaiting approval" in note.body and "group sme" in note.body
    assert all(r.outcome == "pass" for r in d.reasons if r.rule.startswith("gate."))
    assert reason(d, "limit.max_per_day").compared == {"count": 0, "limit": 3}


def test_field_value_request(make_ticket, make_policy, now):
    """A configured field value (case-insensitive) is a request; another value is not."""
    policy = make_policy(
        **{
            "request.labels": [],
            "request.fields": [{"field": "custom_fields.escalate", "equals": ["Yes"]}],
        }
    )
    yes = make_ticket(labels=(), custom_fields={"escalate": "yes"})
    no = make_ticket(labels=(), custom_fields={"escalate": "no"})
    assert decide(yes, EMPTY, now, policy).state is S.PENDING_APPROVAL
    d = decide(no, EMPTY, now, policy)
    assert d.state is S.NONE
    assert reason(d, "recognition.field[0]").outcome == "fail"


def test_field_request_without_equals_matches_any_value(make_ticket, make_policy, now):
    """A field condition without `equals` matches any non-empty value."""
    policy = make_policy(**{"request.fields": [{"field": "custom_fields.reason"}]})
    t = make_ticket(labels=(), custom_fields={"reason": "customer asked"})
    assert decide(t, EMPTY, now, policy).state is S.PENDING_APPROVAL


def test_command_request_in_internal_note(make_ticket, make_comment, policy, now, people):
    """`/escalate <reason>` in an internal note requests escalation with that reason."""
    t = make_ticket(
        labels=(), comments=(make_comment("c1", "/escalate customer blocked", people.engineer),)
    )
    d = decide(t, EMPTY, now, policy)
    assert d.state is S.PENDING_APPROVAL
    assert d.request_reason == "customer blocked" and d.requested_by == "eng1"
    assert d.processed_command_ids == ("c1",)


def test_command_request_in_public_comment_is_blocked(
    make_ticket, make_comment, policy, now, people
):
    """A customer's public `/escalate` is refused with a blocked reason (internal notes only)."""
    c = make_comment("c1", "/escalate now please", people.customer, Visibility.PUBLIC)
    d = decide(make_ticket(labels=(), comments=(c,)), EMPTY, now, policy)
    assert d.state is S.NONE and only_told(d)
    [note] = told(d)
    assert note.startswith('To Carl Customer <carl@customer.example>: your "/escalate" command')
    assert "accepts it only in internal comments" in note
    r = reason(d, "command.request")
    assert r.outcome == "blocked" and "public" in r.detail
    assert d.processed_command_ids == ("c1",)


def test_command_request_restricted_to_named_requesters(
    make_ticket, make_comment, make_policy, now, people
):
    """With command_from set, only those authors may request; others are blocked."""
    policy = make_policy(**{"request.command_from": {"users": ["alice"]}})
    other = make_ticket(labels=(), comments=(make_comment("c1", "/escalate", people.engineer),))
    d = decide(other, EMPTY, now, policy)
    assert d.state is S.NONE and reason(d, "command.request").outcome == "blocked"
    mine = make_ticket(labels=(), comments=(make_comment("c1", "/escalate", people.alice),))
    assert decide(mine, EMPTY, now, policy).state is S.PENDING_APPROVAL


def test_command_word_must_stand_alone(make_ticket, make_comment, policy, now):
    """`/escalated` or `x/escalate` is not the command."""
    t = make_ticket(labels=(), comments=(make_comment("c1", "we /escalated it; see a/escalate"),))
    d = decide(t, EMPTY, now, policy)
    assert d.state is S.NONE and d.processed_command_ids == ()


# --- proactive triggers -------------------------------------------------------------------------


def test_priority_trigger(make_ticket, make_policy, now):
    """A priority trigger requests escalation for the listed priorities only."""
    policy = make_policy(triggers=[{"kind": "priority", "priorities": ["P1", "P2"]}])
    assert decide(make_ticket(labels=(), priority=Priority.P2), EMPTY, now, policy).state is (
        S.PENDING_APPROVAL
    )
    d = decide(make_ticket(labels=(), priority=Priority.P3), EMPTY, now, policy)
    assert d.state is S.NONE and reason(d, "trigger.priority").outcome == "fail"


@pytest.mark.parametrize(
    ("hours_left", "fires"), [(5.0, False), (4.0, True), (1.0, True), (-2.0, True)]
)
def test_sla_trigger_boundary(make_ticket, make_policy, now, hours_left, fires):
    """The SLA trigger fires when the due time is within N hours, including after a breach."""
    policy = make_policy(
        triggers=[{"kind": "sla", "field": "custom_fields.sla_due", "within_hours": 4}]
    )
    due = (now + timedelta(hours=hours_left)).isoformat()
    d = decide(make_ticket(labels=(), custom_fields={"sla_due": due}), EMPTY, now, policy)
    assert (d.state is S.PENDING_APPROVAL) is fires
    assert reason(d, "trigger.sla").compared["hours_left"] == hours_left


def test_sla_trigger_without_due_time(make_ticket, make_policy, now):
    """No due time means the SLA trigger does not fire (and says why)."""
    policy = make_policy(
        triggers=[{"kind": "sla", "field": "custom_fields.sla_due", "within_hours": 4}]
    )
    d = decide(make_ticket(labels=()), EMPTY, now, policy)
    assert d.state is S.NONE and "no SLA due time" in reason(d, "trigger.sla").detail


def test_repeated_occurrence_trigger_counts_within_window(make_ticket, make_policy, now):
    """K tickets with one fingerprint inside the window trigger; older sightings do not count."""
    policy = make_policy(triggers=[{"kind": "repeated", "count": 3, "window_hours": 24}])
    t = make_ticket(5, labels=(), summary="Checkout fails", category="software")
    fp = fingerprint(t, policy)
    assert fp is not None
    inside = FingerprintSighting(fp, "servicenow:sys1", now - timedelta(hours=2))
    inside2 = FingerprintSighting(fp, "servicenow:sys2", now - timedelta(hours=23))
    outside = FingerprintSighting(fp, "servicenow:sys3", now - timedelta(hours=25))
    d = decide(t, LedgerView(recent_fingerprints=(inside, outside)), now, policy)
    assert d.state is S.NONE and reason(d, "trigger.repeated").compared["count"] == 2
    d = decide(t, LedgerView(recent_fingerprints=(inside, inside2)), now, policy)
    assert d.state is not S.NONE and reason(d, "trigger.repeated").compared["count"] == 3


def test_fingerprint_ignores_case_and_spacing(make_ticket, policy):
    """Two tickets differing only in case and spacing share a fingerprint."""
    a = make_ticket(1, summary="Checkout  FAILS ", category="Software")
    b = make_ticket(2, summary="checkout fails", category="software")
    assert fingerprint(a, policy) == fingerprint(b, policy)


def test_category_trigger(make_ticket, make_policy, now):
    """A security or data-impact category triggers escalation."""
    policy = make_policy(triggers=[{"kind": "category", "categories": ["Security", "data"]}])
    assert decide(make_ticket(labels=(), category="security"), EMPTY, now, policy).state is (
        S.PENDING_APPROVAL
    )
    assert decide(make_ticket(labels=(), category="billing"), EMPTY, now, policy).state is S.NONE


def test_p1_immediate_without_approval_notifies_management(make_ticket, make_policy, now):
    """P1 handling: requested automatically, no approval, gate skipped, management notified."""
    policy = make_policy(
        priorities={
            "P1": {
                "auto_request": True,
                "approval_required": False,
                "gate_required": False,
                "notify_management": True,
            }
        }
    )
    t = make_ticket(labels=(), priority=Priority.P1, description="", attachments=())
    d = decide(t, EMPTY, now, policy)
    assert d.state is S.APPROVED and d.level == "L2"
    assert NotifyManagement("escalated", ("managers@example.com",)) in d.actions
    assert "without approval" in notes(d, NoteKind.APPROVAL)[0].body
    assert d.reservation is not None


def test_management_trigger_notifies_when_the_request_starts(make_ticket, make_policy, now):
    """A trigger marked notify_management tells management at once, before any approval."""
    policy = make_policy(
        triggers=[
            {
                "kind": "sla",
                "name": "sla_near",
                "field": "custom_fields.sla_due",
                "within_hours": 4,
                "notify_management": True,
            },
            {"kind": "category", "categories": ["security"]},
        ]
    )
    due = (now + timedelta(hours=1)).isoformat()
    d = decide(make_ticket(labels=(), custom_fields={"sla_due": due}), EMPTY, now, policy)
    assert d.state is S.PENDING_APPROVAL
    assert NotifyManagement("requested", ("managers@example.com",)) in d.actions
    assert reason(d, "trigger.sla_near.notify_management").outcome == "pass"
    # The same request, decided again, does not tell management twice.
    entry = pending_entry(requested_at=now, requested_by="trigger:sla_near")
    again = decide(make_ticket(labels=()), LedgerView(entry=entry), now, policy)
    assert not any(isinstance(a, NotifyManagement) for a in again.actions)
    # A trigger without the switch starts a request and nothing more.
    d = decide(make_ticket(labels=(), category="security"), EMPTY, now, policy)
    assert d.state is S.PENDING_APPROVAL
    assert not any(isinstance(a, NotifyManagement) for a in d.actions)


def test_priority_approvers_replace_the_levels(make_ticket, make_comment, make_policy, now, people):
    """A priority's approvers decide tickets of that priority; the level's approvers do not."""
    policy = make_policy(priorities={"P1": {"approvers": {"users": ["sam"]}}})
    entry = pending_entry(requested_at=now - timedelta(hours=1))
    by_alice = make_comment("c1", "/approve-escalation", people.alice, minutes=30)
    d = decide(
        make_ticket(priority=Priority.P1, comments=(by_alice,)),
        LedgerView(entry=entry),
        now,
        policy,
    )
    assert d.state is S.PENDING_APPROVAL and d.blocked
    by_sam = make_comment("c2", "/approve-escalation", Person(id="sam"), minutes=31)
    d = decide(
        make_ticket(priority=Priority.P1, comments=(by_sam,)), LedgerView(entry=entry), now, policy
    )
    assert d.state is S.APPROVED and d.approved_by == "sam"
    # Other priorities keep the level's approvers.
    d = decide(
        make_ticket(priority=Priority.P3, comments=(by_alice,)),
        LedgerView(entry=entry),
        now,
        policy,
    )
    assert d.state is S.APPROVED and d.approved_by == "alice"


def test_pending_note_names_the_priority_approvers(make_ticket, make_policy, now):
    """The request note says who must approve: the priority's approvers when it names them."""
    policy = make_policy(priorities={"P2": {"approvers": {"groups": ["sme"]}}})
    d = decide(make_ticket(priority=Priority.P2), EMPTY, now, policy)
    assert "Awaiting approval (group sme)" in notes(d, NoteKind.REQUEST)[0].body


# --- completeness gate --------------------------------------------------------------------------


def test_gate_item_scoped_to_a_level(make_ticket, make_comment, make_policy, now, people):
    """An item with `levels` is required only when escalating to one of those levels."""
    items = [
        {"check": "field", "name": "summary", "field": "summary"},
        {
            "check": "text",
            "name": "outcome",
            "description": "Outcome of troubleshooting",
            "pattern": "(?i)outcome",
            "levels": ["L3"],
        },
    ]
    policy = make_policy(**{"gate.items": items})
    d = decide(make_ticket(), EMPTY, now, policy)
    assert d.state is S.PENDING_APPROVAL
    assert not any(r.rule == "gate.outcome" for r in d.reasons)
    at_l2 = _active_entry(now)
    further = make_comment("c1", "/escalate needs the core team", people.engineer, minutes=30)
    d = decide(make_ticket(comments=(further,)), LedgerView(entry=at_l2), now, policy)
    assert d.state is S.INCOMPLETE and reason(d, "gate.outcome").outcome == "fail"
    assert "Outcome of troubleshooting" in notes(d, NoteKind.NEEDS_INFORMATION)[0].body


def test_incomplete_ticket_gets_one_note_listing_what_is_missing(make_ticket, policy, now):
    """Missing items are listed in one internal note and the ticket is not escalated."""
    t = make_ticket(description="It is broken.", attachments=(), summary="Broken")
    d = decide(t, EMPTY, now, policy)
    assert d.state is S.INCOMPLETE
    [note] = notes(d)
    assert note.kind is NoteKind.NEEDS_INFORMATION and note.visibility is Visibility.INTERNAL
    for missing in (
        "Clear issue summary",
        "Steps to reproduce",
        "Logs or screenshots",
        "Environment and version",
        "Troubleshooting done",
        "A named contact",
    ):
        assert f"- {missing}" in note.body
    assert not any(isinstance(a, CreateEngineeringRecord | AddLabel) for a in d.actions)
    assert d.reservation is None


def test_incomplete_note_not_repeated_while_nothing_changes(make_ticket, policy, now):
    """Re-deciding an unchanged incomplete ticket writes no second note."""
    ledger = InMemoryLedger()
    t = make_ticket(attachments=())
    key = ledger_key(t.ref)
    first = decide(t, ledger.view(key, now, policy), now, policy)
    ledger.apply(key, first, now)
    again = decide(t, ledger.view(key, now, policy), now + timedelta(minutes=5), policy)
    assert again.state is S.INCOMPLETE and again.actions == ()


def test_gate_reevaluated_when_ticket_is_completed(make_ticket, policy, now):
    """Once the missing attachment is added the request proceeds to approval."""
    ledger = InMemoryLedger()
    t = make_ticket(attachments=())
    key = ledger_key(t.ref)
    ledger.apply(key, decide(t, ledger.view(key, now, policy), now, policy), now)
    later = now + timedelta(hours=1)
    d = decide(make_ticket(), ledger.view(key, later, policy), later, policy)
    assert d.state is S.PENDING_APPROVAL and notes(d, NoteKind.REQUEST)


def test_our_own_needs_information_note_is_no_evidence(make_ticket, make_comment, policy, now):
    """The note listing what is missing, read back, neither completes the gate nor repeats."""
    ledger = InMemoryLedger()
    t = make_ticket(description="It is broken.", attachments=())
    key = ledger_key(t.ref)
    first = decide(t, ledger.view(key, now, policy), now, policy)
    ledger.apply(key, first, now)
    [note] = notes(first, NoteKind.NEEDS_INFORMATION)
    ours = make_comment(
        "n1", f"{note.body}\n\n[escalation-sync origin=servicenow:{t.ref.id}:needs-1]"
    )
    again = decide(
        t.model_copy(update={"comments": (ours,)}), ledger.view(key, now, policy), now, policy
    )
    assert again.state is S.INCOMPLETE and again.actions == ()


def test_comment_mirrored_from_jira_counts_as_evidence(make_ticket, make_comment, policy, now):
    """A person's comment mirrored from the other system may complete the gate."""
    mirrored = make_comment(
        "m1", "Steps to reproduce: call /pay twice.\n\n[escalation-sync origin=jira:ENG-1:10001]"
    )
    full = make_ticket().description or ""
    t = make_ticket(description=full.replace("Steps to reproduce", "How"))
    assert decide(t, EMPTY, now, policy).state is S.INCOMPLETE
    d = decide(t.model_copy(update={"comments": (mirrored,)}), EMPTY, now, policy)
    assert d.state is not S.INCOMPLETE


def test_gate_note_changes_when_missing_set_changes(make_ticket, policy, now):
    """A different set of missing items is worth a new note."""
    ledger = InMemoryLedger()
    t = make_ticket(attachments=())
    key = ledger_key(t.ref)
    ledger.apply(key, decide(t, ledger.view(key, now, policy), now, policy), now)
    worse = make_ticket(attachments=(), description="Steps to reproduce: x. version 1")
    d = decide(worse, ledger.view(key, now, policy), now, policy)
    [note] = notes(d, NoteKind.NEEDS_INFORMATION)
    assert "Troubleshooting done" in note.body and "Steps to reproduce" not in note.body


@pytest.mark.parametrize(
    ("item", "ok_fields", "bad_fields"),
    [
        (
            {"check": "field", "name": "env", "field": "custom_fields.env"},
            {"custom_fields": {"env": "prod"}},
            {"custom_fields": {"env": ""}},
        ),
        (
            {
                "check": "text",
                "name": "steps",
                "pattern": "(?i)repro",
                "search": ["internal_comments"],
            },
            {"comments": "internal"},
            {"comments": "public"},
        ),
        (
            {"check": "attachment", "name": "shots", "filename": "\\.png$", "min_count": 2},
            {"attachments": ("a.png", "b.png")},
            {"attachments": ("a.png", "b.log")},
        ),
        (
            {"check": "contact", "name": "contact", "field": "customer", "pattern": None},
            {"customer": Person(name="Dana")},
            {"customer": None},
        ),
    ],
)
def test_each_gate_check_kind(
    make_ticket, make_comment, make_policy, now, item, ok_fields, bad_fields
):
    """Each way of recognising an item (field, text, attachment, contact) passes and fails."""
    policy = make_policy(**{"gate.items": [item]})

    def build(spec):
        kw = dict(spec)
        if "comments" in kw:
            vis = Visibility.INTERNAL if kw.pop("comments") == "internal" else Visibility.PUBLIC
            kw["comments"] = (make_comment("k", "Repro: click twice", visibility=vis),)
        if "attachments" in kw:
            kw["attachments"] = tuple(
                Attachment(id=str(i), filename=n) for i, n in enumerate(kw["attachments"])
            )
        return make_ticket(**kw)

    assert decide(build(ok_fields), EMPTY, now, policy).state is S.PENDING_APPROVAL
    d = decide(build(bad_fields), EMPTY, now, policy)
    assert d.state is S.INCOMPLETE
    assert reason(d, f"gate.{item['name']}").outcome == "fail"


def test_gate_email_to_customer_when_configured(make_ticket, make_policy, now):
    """With gate.email_customer the customer is asked for the missing information once."""
    policy = make_policy(**{"gate.email_customer": True})
    d = decide(make_ticket(attachments=()), EMPTY, now, policy)
    assert EmailCustomer(CustomerEvent.NEEDS_INFORMATION) in d.actions


def test_priority_specific_gate_item(make_ticket, make_policy, now):
    """An item listed in a priority's extra_gate_items is required for that priority only."""
    items = [
        {
            "check": "text",
            "name": "l1_confirmed",
            "description": "L1 confirmation",
            "pattern": "(?i)L1 confirmed",
        }
    ]
    policy = make_policy(
        **{"gate.items": items, "priorities": {"P3": {"extra_gate_items": ["l1_confirmed"]}}}
    )
    assert decide(make_ticket(priority=Priority.P3), EMPTY, now, policy).state is S.INCOMPLETE
    assert decide(make_ticket(priority=Priority.P4), EMPTY, now, policy).state is (
        S.PENDING_APPROVAL
    )


def test_gate_can_be_disabled(make_ticket, make_policy, now):
    """With the gate disabled an empty ticket goes straight to approval."""
    policy = make_policy(**{"gate.enabled": False})
    t = make_ticket(description="", attachments=())
    assert decide(t, EMPTY, now, policy).state is S.PENDING_APPROVAL


# --- approval -----------------------------------------------------------------------------------


def test_approval_by_named_approver_runs_the_approval_actions(
    make_ticket, make_comment, policy, now, people
):
    """An approver's internal `/approve-escalation` approves, with every configured action."""
    c = make_comment("c9", "/approve-escalation looks like a real defect", people.alice, minutes=30)
    t = make_ticket(comments=(c,))
    d = decide(
        t, LedgerView(entry=pending_entry(requested_at=now - timedelta(hours=1))), now, policy
    )
    assert d.state is S.APPROVED and d.level == "L2" and d.approved_by == "alice"
    [note] = notes(d, NoteKind.APPROVAL)
    assert "Alice Approver <alice@example.com>" in note.body
    assert "2026-03-10 10:00 UTC" in note.body and "L1 -> L2" in note.body
    assert "Reason: label escalate" in note.body and "looks like a real defect" in note.body
    assert AddLabel("ESCALATION") in d.actions
    assert SetLevel("L2") in d.actions
    assert PostLinks() in d.actions
    assert EmailCustomer(CustomerEvent.ESCALATED) in d.actions
    [eng] = [a for a in d.actions if isinstance(a, CreateEngineeringRecord)]
    assert (eng.target_system, eng.project_or_table, eng.issue_type) == (System.JIRA, "ENG", "Bug")
    assert eng.summary.startswith("[INC0000001]") and "Approved by: Alice" in eng.description
    # Escalation is not a severity change.
    assert not any(isinstance(a, SetPriority) for a in d.actions)
    assert d.reservation is not None and d.reservation.max_active == 5


def test_approval_by_group_member_matched_by_email(make_ticket, make_comment, policy, now, people):
    """A member of an approver group (listed by email) may approve."""
    c = make_comment("c9", "/approve-escalation", people.sam)
    d = decide(make_ticket(comments=(c,)), LedgerView(entry=pending_entry()), now, policy)
    assert d.state is S.APPROVED


def test_customer_public_approve_changes_nothing(make_ticket, make_comment, policy, now, people):
    """A customer's public comment with /approve-escalation approves nothing and is blocked."""
    c = make_comment(
        "c9", "/approve-escalation I am the boss here", people.customer, Visibility.PUBLIC
    )
    entry = pending_entry()
    d = decide(make_ticket(comments=(c,)), LedgerView(entry=entry), now, policy)
    assert d.state is S.PENDING_APPROVAL and only_told(d) and d.reservation is None
    r = reason(d, "command.approve")
    assert r.outcome == "blocked" and "public" in r.detail
    assert [x.outcome for x in d.reasons if x.rule == "approval"] == []


def test_approver_in_public_comment_is_still_refused(
    make_ticket, make_comment, policy, now, people
):
    """Even a named approver cannot approve from a public comment (place is enforced too)."""
    c = make_comment("c9", "/approve-escalation", people.alice, Visibility.PUBLIC)
    d = decide(make_ticket(comments=(c,)), LedgerView(entry=pending_entry()), now, policy)
    assert d.state is S.PENDING_APPROVAL and reason(d, "command.approve").outcome == "blocked"


def test_name_typed_in_text_is_not_identity(make_ticket, make_comment, policy, now, people):
    """An internal note by a non-approver claiming to be an approver approves nothing."""
    c = make_comment(
        "c9", "/approve-escalation on behalf of alice (Alice Approver)", people.engineer
    )
    d = decide(make_ticket(comments=(c,)), LedgerView(entry=pending_entry()), now, policy)
    assert d.state is S.PENDING_APPROVAL and only_told(d)
    assert "is not among the approvers the policy names" in told(d)[0]
    assert "not among the approvers" in reason(d, "command.approve").detail


def test_comment_without_author_cannot_approve(make_ticket, make_comment, policy, now):
    """A comment whose author the system did not report is never an approver."""
    c = make_comment("c9", "/approve-escalation", None)
    d = decide(make_ticket(comments=(c,)), LedgerView(entry=pending_entry()), now, policy)
    assert d.state is S.PENDING_APPROVAL and reason(d, "command.approve").outcome == "blocked"


def test_processed_command_is_not_honoured_twice(make_ticket, make_comment, policy, now, people):
    """An approval already consumed (its id in the ledger) is not played again."""
    c = make_comment("c9", "/approve-escalation", people.alice)
    entry = pending_entry(processed_command_ids=frozenset({"c9"}))
    d = decide(make_ticket(comments=(c,)), LedgerView(entry=entry), now, policy)
    assert d.state is S.PENDING_APPROVAL and d.actions == ()
    assert reason(d, "commands.already_processed").compared == {"comments": 1}


def test_rejection_writes_action_items(make_ticket, make_comment, policy, now, people):
    """`/reject-escalation <items>` rejects and notes approver, time, level and action items."""
    c = make_comment("c9", "/reject-escalation collect a HAR file and retry on 4.2.2", people.sam)
    d = decide(make_ticket(comments=(c,)), LedgerView(entry=pending_entry()), now, policy)
    assert d.state is S.REJECTED
    [note] = notes(d, NoteKind.REJECTION)
    assert "Sam SME <sam@example.com>" in note.body and "L2" in note.body
    assert "Action items: collect a HAR file and retry on 4.2.2" in note.body
    assert "2026-03-10 10:00 UTC" in note.body


def test_new_request_after_rejection_restarts(make_ticket, make_comment, policy, now, people):
    """After a rejection (which took the label off) a new /escalate starts over."""
    entry = LedgerEntry(state=S.REJECTED, level="L1", processed_command_ids=frozenset({"c1"}))
    d = decide(make_ticket(labels=()), LedgerView(entry=entry), now, policy)
    assert d.state is S.REJECTED and d.actions == ()
    again = make_ticket(
        labels=(), comments=(make_comment("c2", "/escalate done the action items"),)
    )
    d = decide(again, LedgerView(entry=entry), now, policy)
    assert d.state is S.PENDING_APPROVAL and d.request_started


def test_request_and_approval_in_one_pass_play_in_time_order(
    make_ticket, make_comment, policy, now, people
):
    """A request and its approval read together are applied in the order they were written."""
    comments = (
        make_comment("c2", "/approve-escalation ok", people.alice, minutes=20),
        make_comment("c1", "/escalate customer down", people.engineer, minutes=10),
    )
    d = decide(make_ticket(labels=(), comments=comments), EMPTY, now, policy)
    assert d.state is S.APPROVED and d.processed_command_ids == ("c1", "c2")


def test_approval_before_request_is_ignored(make_ticket, make_comment, policy, now, people):
    """An approval written before anything awaited approval is consumed without effect."""
    c = make_comment("c1", "/approve-escalation", people.alice)
    d = decide(make_ticket(labels=(), comments=(c,)), EMPTY, now, policy)
    assert d.state is S.NONE and only_told(d)
    assert "nothing awaits approval" in told(d)[0]
    assert "nothing awaits approval" in reason(d, "command.approve").detail


def test_approval_by_field(make_ticket, make_policy, now):
    """Approval through a field value; a rejected value rejects."""
    policy = make_policy(approval={"via": ["field"], "field": "custom_fields.approval"})
    entry = pending_entry(requested_at=now - timedelta(hours=1))
    ok = make_ticket(custom_fields={"approval": "Approved"})
    d = decide(ok, LedgerView(entry=entry), now, policy)
    assert d.state is S.APPROVED and d.approved_by == "custom_fields.approval set to 'Approved'"
    no = make_ticket(custom_fields={"approval": "rejected"})
    assert decide(no, LedgerView(entry=entry), now, policy).state is S.REJECTED


def test_stale_field_value_does_not_decide_a_new_request(make_ticket, make_policy, now):
    """A field value consumed for an earlier request is not read again for the next one."""
    policy = make_policy(approval={"via": ["field"], "field": "custom_fields.approval"})
    ledger = InMemoryLedger()
    t = make_ticket(custom_fields={"approval": "rejected"})
    key = ledger_key(t.ref)
    first = decide(t, ledger.view(key, now, policy), now, policy)
    ledger.apply(key, first, now)
    assert first.state is S.REJECTED


def test_commands_refused_when_policy_uses_field_approval(
    make_ticket, make_comment, make_policy, now, people
):
    """When approval is by field only, an approval command is blocked even from an approver."""
    policy = make_policy(approval={"via": ["field"], "field": "custom_fields.approval"})
    c = make_comment("c9", "/approve-escalation", people.alice)
    d = decide(make_ticket(comments=(c,)), LedgerView(entry=pending_entry()), now, policy)
    assert d.state is S.PENDING_APPROVAL and reason(d, "command.approve").outcome == "blocked"


def test_approval_by_transition(make_ticket, make_policy, now, people):
    """A workflow transition (mapped to escalation.state) approves, unless by a non-approver."""
    policy = make_policy(approval={"via": ["transition"]})
    by_alice = make_ticket(escalation=Escalation(state=S.APPROVED, approver=people.alice))
    assert decide(by_alice, LedgerView(entry=pending_entry()), now, policy).state is S.APPROVED
    by_eng = make_ticket(escalation=Escalation(state=S.APPROVED, approver=people.engineer))
    d = decide(by_eng, LedgerView(entry=pending_entry()), now, policy)
    assert d.state is S.PENDING_APPROVAL
    assert reason(d, "approval.transition").outcome == "blocked"


def test_approval_overdue_notifies_management_once(make_ticket, make_policy, now):
    """P2 'within SLA': approval waiting longer than allowed notifies management once."""
    policy = make_policy(priorities={"P2": {"approval_within_hours": 2}})
    entry = pending_entry(requested_at=now - timedelta(hours=3))
    t = make_ticket(priority=Priority.P2)
    d = decide(t, LedgerView(entry=entry), now, policy)
    assert NotifyManagement("approval_overdue", ("managers@example.com",)) in d.actions
    [note] = notes(d, NoteKind.FOLLOW_UP)
    assert note.body.startswith("Approval overdue: the request for L2 has waited 3.0 h of the 2 h")
    seen = replace(entry, processed_command_ids=frozenset(d.processed_command_ids))
    again = decide(t, LedgerView(entry=seen), now, policy)
    assert again.actions == ()


# --- approval actions configuration ------------------------------------------------------------


def _approve(make_ticket, make_comment, policy, now, people, **ticket):
    c = make_comment("c9", "/approve-escalation", people.alice)
    return decide(
        make_ticket(comments=(c,), **ticket), LedgerView(entry=pending_entry()), now, policy
    )


def test_priority_set_when_configured(make_ticket, make_comment, make_policy, now, people):
    """on_approval.set_priority moves the record to that priority (DS: Highest)."""
    policy = make_policy(on_approval={"set_priority": "P1"})
    d = _approve(make_ticket, make_comment, policy, now, people)
    assert SetPriority(Priority.P1) in d.actions


def test_priority_bump_stops_at_p1(make_ticket, make_comment, make_policy, now, people):
    """priority_bump raises by N steps and never past P1."""
    policy = make_policy(on_approval={"priority_bump": 2})
    d = _approve(make_ticket, make_comment, policy, now, people, priority=Priority.P4)
    assert SetPriority(Priority.P2) in d.actions
    d = _approve(make_ticket, make_comment, policy, now, people, priority=Priority.P2)
    assert SetPriority(Priority.P1) in d.actions


def test_approval_actions_can_be_switched_off(make_ticket, make_comment, make_policy, now, people):
    """Tag, level, engineering record, links and email are each optional."""
    policy = make_policy(
        on_approval={
            "tag": None,
            "set_level": False,
            "create_engineering_record": False,
            "email_customer": False,
            "notify_management": True,
            "status": "in_progress",
        }
    )
    d = _approve(make_ticket, make_comment, policy, now, people, status=Status.NEW)
    kinds = {type(a) for a in d.actions}
    assert kinds == {AddNote, NotifyManagement, MoveStatus}
    assert MoveStatus(Status.IN_PROGRESS) in d.actions


def test_request_labels_removed_on_approval(make_ticket, make_comment, make_policy, now, people):
    """remove_labels_on_approval swaps the request label for the escalation tag."""
    policy = make_policy(**{"request.remove_labels_on_approval": True})
    d = _approve(make_ticket, make_comment, policy, now, people)
    assert RemoveLabel("escalate") in d.actions and AddLabel("ESCALATION") in d.actions


def test_tag_not_added_twice(make_ticket, make_comment, policy, now, people):
    """A ticket already carrying the tag gets no AddLabel."""
    d = _approve(make_ticket, make_comment, policy, now, people, labels=("escalate", "escalation"))
    assert not any(isinstance(a, AddLabel) for a in d.actions)


# --- limits ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "view_at_limit", "count"),
    [
        ("max_per_day", LedgerView(escalations_today=3), 3),
        ("max_active", LedgerView(active_count=5), 5),
        ("max_active_per_assignee", LedgerView(active_by_assignee={"agent1": 1}), 1),
    ],
)
def test_limit_refusal_names_limit_and_count(
    make_ticket, make_comment, policy, now, people, limit, view_at_limit, count
):
    """At a limit the approval is refused; the note names the limit and its current count."""
    c = make_comment("c9", "/approve-escalation", people.alice)
    view = replace(view_at_limit, entry=pending_entry())
    d = decide(make_ticket(comments=(c,)), view, now, policy)
    assert d.state is S.REFUSED and d.reservation is None
    [note] = notes(d, NoteKind.REFUSAL)
    assert limit in note.body and f"({count} " in note.body
    assert reason(d, f"limit.{limit}").outcome == "fail"
    assert not any(isinstance(a, AddLabel | CreateEngineeringRecord) for a in d.actions)


def test_per_day_boundary_third_accepted_fourth_refused(
    make_ticket, make_comment, policy, now, people
):
    """With max_per_day 3, the 3rd escalation of the day is accepted and the 4th refused."""
    ledger = InMemoryLedger()
    outcomes = []
    for n in range(1, 5):
        t = make_ticket(
            n,
            labels=(),
            comments=(
                make_comment(f"r{n}", "/escalate x", people.engineer, minutes=n),
                make_comment(f"a{n}", "/approve-escalation", people.alice, minutes=n + 1),
            ),
        )
        key = ledger_key(t.ref)
        at = now + timedelta(minutes=n)
        d = decide(t, ledger.view(key, at, policy), at, policy)
        assert ledger.apply(key, d, at)
        outcomes.append(d)
    assert [d.state for d in outcomes] == [S.APPROVED] * 3 + [S.REFUSED]
    note = notes(outcomes[3], NoteKind.REFUSAL)[0].body
    assert "max_per_day (3 escalations today, limit 3)" in note


def test_per_day_count_resets_at_policy_midnight(
    make_ticket, make_comment, make_policy, now, people
):
    """The per-day count is taken from the start of the policy's day in its time zone."""
    policy = make_policy(timezone="America/New_York", limits={"max_per_day": 1})
    ledger = InMemoryLedger()
    first_at = now.replace(hour=3)  # 22:00 the previous evening in New York
    second_at = now.replace(hour=6)  # 01:00 the next day in New York
    for n, at in ((1, first_at), (2, second_at)):
        t = make_ticket(
            n,
            labels=(),
            comments=(
                make_comment(f"r{n}", "/escalate", people.engineer),
                make_comment(f"a{n}", "/approve-escalation", people.alice, minutes=1),
            ),
        )
        key = ledger_key(t.ref)
        d = decide(t, ledger.view(key, at, policy), at, policy)
        assert d.state is S.APPROVED, n
        ledger.apply(key, d, at)


def test_active_boundary_fifth_accepted_sixth_refused(
    make_ticket, make_comment, policy, now, people
):
    """With max_active 5, four active escalations allow a fifth; five refuse the sixth."""
    c = make_comment("c9", "/approve-escalation", people.alice)
    t = make_ticket(comments=(c,))
    ok = decide(t, LedgerView(active_count=4, entry=pending_entry()), now, policy)
    assert ok.state is S.APPROVED
    no = decide(t, LedgerView(active_count=5, entry=pending_entry()), now, policy)
    assert "max_active (5 active escalations, limit 5)" in notes(no, NoteKind.REFUSAL)[0].body


def test_per_assignee_limit_counts_only_that_assignee(
    make_ticket, make_comment, policy, now, people
):
    """Another assignee's active escalation does not block this one."""
    c = make_comment("c9", "/approve-escalation", people.alice)
    view = LedgerView(active_by_assignee={"agent2": 1}, entry=pending_entry())
    assert decide(make_ticket(comments=(c,)), view, now, policy).state is S.APPROVED


def test_engineering_assignee_mode_does_not_count_the_itsm_assignee(
    make_ticket, make_comment, make_policy, now, people
):
    """Counting engineering's assignee, the ITSM assignee's active escalation blocks nothing."""
    policy = make_policy(**{"limits.assignee_of": "engineering"})
    c = make_comment("c9", "/approve-escalation", people.alice)
    view = LedgerView(active_by_assignee={"agent1": 1}, entry=pending_entry())
    d = decide(make_ticket(comments=(c,)), view, now, policy)
    assert d.state is S.APPROVED and d.reservation is not None
    assert d.reservation.assignee is None


def _assigned(key: str, name: str) -> EngineeringStatus:
    return EngineeringStatus(
        Ref(system=System.JIRA, id="100", key=key),
        Status.IN_PROGRESS,
        assignee=Person(id=f"acc-{name}", name=name),
    )


def test_engineer_over_the_limit_gets_a_note_when_assigned(make_ticket, make_policy, now):
    """Engineering assigns someone with an active escalation: the note names limit and count."""
    policy = make_policy(**{"limits.assignee_of": "engineering"})
    view = LedgerView(entry=_active_entry(now, assignee=None), active_by_assignee={"acc-Bob": 1})
    d = decide(make_ticket(), view, now, policy, engineering=_assigned("DS-5", "Bob"))
    assert d.state is S.APPROVED and d.assignee == "acc-Bob"
    [note] = notes(d, NoteKind.LIMIT_WARNING)
    assert "max_active_per_assignee: Bob already has 1 other active escalation, limit 1" in (
        note.body
    )
    assert "assign DS-5 to someone else" in note.body
    assert reason(d, "limit.max_active_per_assignee").outcome == "fail"
    # Recorded under Bob, the next decision does not repeat the note.
    seen = LedgerView(
        entry=_active_entry(now, assignee="acc-Bob"), active_by_assignee={"acc-Bob": 1}
    )
    again = decide(make_ticket(), seen, now, policy, engineering=_assigned("DS-5", "Bob"))
    assert notes(again, NoteKind.LIMIT_WARNING) == []


def test_engineer_under_the_limit_is_recorded_without_a_note(make_ticket, make_policy, now):
    """An engineer with no other active escalation passes; the ledger counts them from now."""
    policy = make_policy(**{"limits.assignee_of": "engineering"})
    view = LedgerView(entry=_active_entry(now, assignee=None), active_by_assignee={"acc-Eve": 1})
    d = decide(make_ticket(), view, now, policy, engineering=_assigned("DS-5", "Bob"))
    assert d.assignee == "acc-Bob" and notes(d, NoteKind.LIMIT_WARNING) == []
    assert reason(d, "limit.max_active_per_assignee").outcome == "pass"


def test_refused_by_limit_can_be_approved_again_later(
    make_ticket, make_comment, policy, now, people
):
    """After a limit refusal, a fresh approval once a slot is free activates the escalation."""
    entry = pending_entry(
        state=S.REFUSED,
        notice_key="refused:max_active@x",
        requested_at=now - timedelta(hours=2),
        processed_command_ids=frozenset({"c9"}),
    )
    c2 = make_comment("c10", "/approve-escalation retry", people.alice, minutes=50)
    t = make_ticket(comments=(make_comment("c9", "/approve-escalation", people.alice), c2))
    d = decide(t, LedgerView(active_count=4, entry=entry), now, policy)
    assert d.state is S.APPROVED


def test_refused_low_impact(make_ticket, make_policy, now):
    """A low-impact ticket is refused at request time with the reason."""
    policy = make_policy(limits={"low_impact": {"priorities": ["P5"], "impacts": ["low"]}})
    d = decide(make_ticket(impact=Level.LOW), EMPTY, now, policy)
    assert d.state is S.REFUSED
    assert "low-impact issue (impact low)" in notes(d, NoteKind.REFUSAL)[0].body
    assert decide(make_ticket(impact=Level.HIGH), EMPTY, now, policy).state is S.PENDING_APPROVAL


def test_refusal_at_top_level(make_ticket, make_comment, policy, now):
    """A ticket already at the highest level cannot be escalated further."""
    entry = LedgerEntry(state=S.REJECTED, level="L3")
    t = make_ticket(comments=(make_comment("c1", "/escalate"),))
    d = decide(t, LedgerView(entry=entry), now, policy)
    assert d.state is S.REFUSED and "highest level" in notes(d)[0].body


def test_limit_preview_while_pending(make_ticket, policy, now):
    """While pending, the trace shows what the limits would say if approved now."""
    d = decide(make_ticket(), LedgerView(escalations_today=3, entry=pending_entry()), now, policy)
    r = reason(d, "limit.max_per_day")
    assert r.outcome == "info" and "would be refused" in r.detail


# --- further escalation, closure, cadence --------------------------------------------------------


def _active_entry(now, **kw):
    base = {
        "state": S.APPROVED,
        "level": "L2",
        "approved_at": now - timedelta(days=1),
        "requested_at": now - timedelta(days=1),
        "notice_key": "approval:L2:x",
        "assignee": "agent1",
    }
    base.update(kw)
    return LedgerEntry(**base)


def test_further_escalation_keeps_its_slot(make_ticket, make_comment, policy, now, people):
    """L2 -> L3 on an active escalation is approved without new limit checks or reservation."""
    comments = (
        make_comment("c1", "/escalate need core team", people.engineer),
        make_comment("c2", "/approve-escalation", people.alice, minutes=1),
    )
    view = LedgerView(escalations_today=3, active_count=5, entry=_active_entry(now))
    d = decide(make_ticket(comments=comments), view, now, policy)
    assert d.state is S.APPROVED and d.level == "L3" and d.reservation is None
    [eng] = [a for a in d.actions if isinstance(a, CreateEngineeringRecord)]
    assert eng.project_or_table == "CORE"


def test_engineering_resolved_closes_the_loop(make_ticket, policy, now):
    """Engineering resolved: resolution note, ITSM resolved, customer asked to confirm, released."""
    eng = EngineeringStatus(
        Ref(system=System.JIRA, id="100", key="ENG-7"),
        Status.RESOLVED,
        "Fixed retry handling in 4.2.2",
    )
    t = make_ticket(status=Status.IN_PROGRESS, labels=("ESCALATION",))
    d = decide(t, LedgerView(entry=_active_entry(now)), now, policy, engineering=eng)
    assert d.state is S.RESOLVED
    [note] = notes(d, NoteKind.RESOLUTION)
    assert "ENG-7" in note.body and "Fixed retry handling in 4.2.2" in note.body
    assert MoveStatus(Status.RESOLVED) in d.actions
    assert EmailCustomer(CustomerEvent.RESOLVED_PLEASE_CONFIRM) in d.actions
    assert ReleaseEscalation() in d.actions and d.releases
    assert not any(isinstance(a, RemoveLabel) for a in d.actions)


def test_engineering_still_open_keeps_escalation_active(make_ticket, policy, now):
    """An open engineering record changes nothing."""
    eng = EngineeringStatus(None, Status.IN_PROGRESS)
    d = decide(make_ticket(), LedgerView(entry=_active_entry(now)), now, policy, engineering=eng)
    assert d.state is S.APPROVED and d.actions == ()


def test_closure_options(make_ticket, make_policy, now):
    """Closure can move to another status, notify management and remove the tag."""
    policy = make_policy(
        closure={
            "move_to": "on_hold",
            "notify_management": True,
            "remove_tag": True,
            "ask_customer_to_confirm": False,
        }
    )
    eng = EngineeringStatus(None, Status.CLOSED, None)
    t = make_ticket(labels=("ESCALATION",))
    d = decide(t, LedgerView(entry=_active_entry(now)), now, policy, engineering=eng)
    assert MoveStatus(Status.ON_HOLD) in d.actions
    assert NotifyManagement("resolved", ("managers@example.com",)) in d.actions
    assert RemoveLabel("ESCALATION") in d.actions
    assert not any(isinstance(a, EmailCustomer) for a in d.actions)
    assert "no resolution notes" in notes(d, NoteKind.RESOLUTION)[0].body


def test_itsm_closed_while_active_releases(make_ticket, policy, now):
    """Closing the ITSM record while escalated closes the escalation and frees its slot."""
    d = decide(
        make_ticket(status=Status.CANCELLED), LedgerView(entry=_active_entry(now)), now, policy
    )
    assert d.state is S.CLOSED and d.releases


def test_resolved_then_itsm_closed(make_ticket, make_policy, now):
    """After resolution, the customer's confirmation (record closed) closes the escalation."""
    policy = make_policy(closure={"email_customer_on_close": True})
    entry = _active_entry(now, state=S.RESOLVED, released_at=now)
    d = decide(make_ticket(status=Status.CLOSED), LedgerView(entry=entry), now, policy)
    assert d.state is S.CLOSED and d.actions == (EmailCustomer(CustomerEvent.CLOSED),)


def test_pending_request_lapses_when_record_closed(make_ticket, policy, now):
    """A request still awaiting approval lapses when the ITSM record is closed."""
    d = decide(make_ticket(status=Status.CLOSED), LedgerView(entry=pending_entry()), now, policy)
    assert d.state is S.CLOSED and d.actions == (RemoveLabel("escalate"),)


def test_commands_after_closure_are_refused_when_no_new_request_is_allowed(
    make_ticket, make_comment, make_policy, now, people
):
    """With reopen.allowed off, commands on a finished escalation are consumed with a note."""
    policy = make_policy(reopen={"allowed": False})
    entry = LedgerEntry(state=S.CLOSED, level="L2")
    t = make_ticket(
        labels=(),
        status=Status.CLOSED,
        comments=(make_comment("c1", "/escalate again", people.engineer),),
    )
    d = decide(t, LedgerView(entry=entry), now, policy)
    assert d.state is S.CLOSED and only_told(d) and d.processed_command_ids == ("c1",)
    assert "takes no new request after it" in told(d)[0]


def test_re_escalation_after_closure_asks_for_the_same_level(
    make_ticket, make_comment, policy, now, people
):
    """A new /escalate after the escalation closed asks again for the level it had reached."""
    entry = LedgerEntry(state=S.CLOSED, level="L2", requested_at=now - timedelta(days=3))
    t = make_ticket(
        labels=(),
        status=Status.IN_PROGRESS,
        comments=(make_comment("c1", "/escalate the fix did not hold", people.engineer),),
    )
    d = decide(t, LedgerView(entry=entry), now, policy)
    assert d.state is S.PENDING_APPROVAL and d.request_started and d.level == "L1"
    assert "Escalation to L2 requested" in notes(d, NoteKind.REQUEST)[0].body


def test_customer_update_cadence(make_ticket, make_policy, now):
    """With a cadence, an active escalation emails the customer when an update is due."""
    policy = make_policy(customer_updates={"cadence_hours": 24})
    due = _active_entry(now, last_customer_update_at=now - timedelta(hours=25))
    d = decide(make_ticket(), LedgerView(entry=due), now, policy)
    assert d.actions == (EmailCustomer(CustomerEvent.PERIODIC_UPDATE),)
    assert d.notice_key is not None and d.notice_key.startswith("periodic:")
    fresh = _active_entry(now, last_customer_update_at=now - timedelta(hours=2))
    assert decide(make_ticket(), LedgerView(entry=fresh), now, policy).actions == ()


@pytest.mark.parametrize(
    ("priority", "hours_since", "due"),
    [
        (Priority.P1, 5, True),
        (Priority.P1, 3, False),
        (Priority.P2, 23, False),
        (Priority.P2, 25, True),
        (Priority.P4, 1000, False),
    ],
)
def test_cadence_per_priority(make_ticket, make_policy, now, priority, hours_since, due):
    """P1 every 4 h, P2 daily, P4 never: the interval follows the ticket's priority."""
    policy = make_policy(customer_updates={"cadence": {"P1": 4, "P2": 24}})
    entry = _active_entry(now, last_customer_update_at=now - timedelta(hours=hours_since))
    d = decide(make_ticket(priority=priority), LedgerView(entry=entry), now, policy)
    assert (d.actions == (EmailCustomer(CustomerEvent.PERIODIC_UPDATE),)) is due


def test_periodic_update_waits_after_a_public_update(make_ticket, make_comment, make_policy, now):
    """A public update resets the window: no periodic mail right after an engineer wrote."""
    policy = make_policy(customer_updates={"cadence": {"P1": 4}})
    entry = _active_entry(now, last_customer_update_at=now - timedelta(hours=5))
    marker = "\n\n[escalation-sync origin=jira:ENG-1:10001]"
    comment = make_comment("m1", "Fix deployed." + marker, visibility=Visibility.PUBLIC, minutes=30)
    ticket = make_ticket(priority=Priority.P1, comments=(comment,))
    d = decide(ticket, LedgerView(entry=entry), now, policy)
    assert d.actions == (EmailCustomer(CustomerEvent.PUBLIC_UPDATE, comment_id="m1"),)


def test_public_comment_from_engineering_emails_the_customer(
    make_ticket, make_comment, policy, now
):
    """A public comment mirrored from engineering since the last update sends a public update."""
    entry = _active_entry(now, last_customer_update_at=now - timedelta(hours=2))
    marker = "\n\n[escalation-sync origin=jira:ENG-1:10001]"
    mirrored = make_comment(
        "m1", "Fix deployed." + marker, visibility=Visibility.PUBLIC, minutes=30
    )
    d = decide(make_ticket(comments=(mirrored,)), LedgerView(entry=entry), now, policy)
    assert d.actions == (EmailCustomer(CustomerEvent.PUBLIC_UPDATE, comment_id="m1"),)
    assert any(r.rule == "customer_updates.public_comment" for r in d.reasons)


def test_public_comment_in_the_same_second_as_the_last_update_still_counts(
    make_ticket, make_comment, policy, now
):
    """ServiceNow keeps whole seconds, so a comment stamped in the last update's second is news."""
    marker = "\n\n[escalation-sync origin=jira:ENG-1:10001]"
    mirrored = make_comment(
        "m1", "Fix deployed." + marker, visibility=Visibility.PUBLIC, minutes=30
    )
    assert mirrored.created is not None
    told_at = mirrored.created + timedelta(milliseconds=400)
    entry = _active_entry(now, last_customer_update_at=told_at)
    d = decide(make_ticket(comments=(mirrored,)), LedgerView(entry=entry), now, policy)
    assert d.actions == (EmailCustomer(CustomerEvent.PUBLIC_UPDATE, comment_id="m1"),)
    told = _active_entry(now, last_customer_update_at=told_at, notice_key="public:m1")
    again = decide(make_ticket(comments=(mirrored,)), LedgerView(entry=told), now, policy)
    assert again.actions == ()


def test_public_comment_mail_can_be_switched_off(make_ticket, make_comment, make_policy, now):
    """With customer_updates.public_comments off, engineering's public comment sends no mail."""
    policy = make_policy(customer_updates={"public_comments": False})
    entry = _active_entry(now, last_customer_update_at=now - timedelta(hours=2))
    marker = "\n\n[escalation-sync origin=jira:ENG-1:10001]"
    mirrored = make_comment(
        "m1", "Fix deployed." + marker, visibility=Visibility.PUBLIC, minutes=30
    )
    d = decide(make_ticket(comments=(mirrored,)), LedgerView(entry=entry), now, policy)
    assert d.actions == ()


@pytest.mark.parametrize(
    ("body", "visibility", "minutes"),
    [
        ("Root cause found.\n\n[escalation-sync origin=jira:ENG-1:1]", Visibility.INTERNAL, 30),
        ("We are looking into it.", Visibility.PUBLIC, 30),
        ("Approved.\n\n[escalation-sync origin=servicenow:sys1:approval-1]", Visibility.PUBLIC, 30),
        ("Older news.\n\n[escalation-sync origin=jira:ENG-1:2]", Visibility.PUBLIC, -90),
    ],
    ids=["internal-note", "typed-in-itsm", "our-own-note", "already-told"],
)
def test_no_public_update_without_new_public_engineering_comment(
    make_ticket, make_comment, policy, now, body, visibility, minutes
):
    """Internal notes, ITSM comments, our notes and comments already reported send no mail."""
    entry = _active_entry(now, last_customer_update_at=now - timedelta(hours=2))
    comment = make_comment("c", body, visibility=visibility, minutes=minutes)
    d = decide(make_ticket(comments=(comment,)), LedgerView(entry=entry), now, policy)
    assert d.actions == ()


# --- idempotency and data ----------------------------------------------------------------------


def test_deciding_again_after_apply_writes_nothing(make_ticket, make_comment, policy, now, people):
    """A full request -> approval run, re-decided without changes, produces no actions."""
    ledger = InMemoryLedger()
    t = make_ticket(
        labels=(),
        comments=(
            make_comment("r", "/escalate", people.engineer),
            make_comment("a", "/approve-escalation", people.alice, minutes=1),
        ),
    )
    key = ledger_key(t.ref)
    d = decide(t, ledger.view(key, now, policy), now, policy)
    assert d.state is S.APPROVED and ledger.apply(key, d, now)
    later = now + timedelta(minutes=3)
    again = decide(t, ledger.view(key, later, policy), later, policy)
    assert again.state is S.APPROVED and again.actions == ()


def test_our_notes_never_contain_commands(make_ticket, make_comment, policy, now, people):
    """Text quoted from a command into our note cannot be read back as a command."""
    c = make_comment("c9", "/reject-escalation then /approve-escalation yourself", people.alice)
    d = decide(make_ticket(comments=(c,)), LedgerView(entry=pending_entry()), now, policy)
    body = notes(d, NoteKind.REJECTION)[0].body
    assert '"/approve-escalation" yourself' in body
    copy = make_ticket(comments=(make_comment("n1", body, people.alice),))
    assert unread_commands(policy, copy, ()).commands == ()


def test_decision_renders_as_json_data(make_ticket, policy, now):
    """decision_to_dict gives plain JSON-ready data."""
    import json

    data = decision_to_dict(decide(make_ticket(), EMPTY, now, policy))
    assert json.loads(json.dumps(data))["state"] == "pending_approval"


def test_category_routes_to_its_own_project(make_ticket, make_comment, make_policy, now, people):
    """A level's category_projects sends e.g. hardware tickets to another project."""
    levels = [
        {"name": "L1"},
        {
            "name": "L2",
            "target_system": "jira",
            "project": "SW",
            "category_projects": {"Hardware": "HW"},
            "approvers": {"users": ["alice"]},
        },
    ]
    policy = make_policy(levels=levels)
    c = make_comment("c9", "/approve-escalation", people.alice)
    for category, project in (("hardware", "HW"), ("software", "SW"), (None, "SW")):
        t = make_ticket(comments=(c,), category=category)
        d = decide(t, LedgerView(entry=pending_entry()), now, policy)
        [eng] = [a for a in d.actions if isinstance(a, CreateEngineeringRecord)]
        assert eng.project_or_table == project


def test_same_second_request_goes_before_its_approval(
    make_ticket, make_comment, policy, now, people
):
    """Journals list newest first with one-second stamps: a tie plays the request first."""
    comments = (
        make_comment("c2", "/approve-escalation", people.alice, minutes=5),
        make_comment("c1", "/escalate", people.engineer, minutes=5),
    )
    d = decide(make_ticket(labels=(), comments=comments), EMPTY, now, policy)
    assert d.state is S.APPROVED and d.processed_command_ids == ("c1", "c2")


def test_mirrored_copy_of_a_command_is_not_honoured(make_ticket, make_comment, policy, now, people):
    """A command in a comment mirrored from the paired record (origin marker) does nothing."""
    body = "/escalate from engineering\n\n[escalation-sync origin=jira:DS-4:10020]"
    t = make_ticket(labels=(), comments=(make_comment("c1", body, people.integration),))
    d = decide(t, EMPTY, now, policy)
    assert d.state is S.NONE and d.actions == ()
    assert "mirrored" in reason(d, "command.request").detail


def test_reason_required_answers_a_bare_command(make_ticket, make_comment, make_policy, now):
    """With reason_required, `/escalate` alone starts nothing and a note asks for the reason."""
    policy = make_policy(**{"request.reason_required": True})
    bare = make_ticket(labels=(), comments=(make_comment("c1", "/escalate"),))
    d = decide(bare, EMPTY, now, policy)
    assert d.state is S.NONE and "say why" in notes(d, NoteKind.REQUEST)[0].body
    given = make_ticket(labels=(), comments=(make_comment("c1", "/escalate customer down"),))
    assert decide(given, EMPTY, now, policy).state is S.PENDING_APPROVAL


def test_limit_note_counts_one_in_the_singular(make_ticket, make_comment, make_policy, now, people):
    """A daily limit of 1, reached: the refusal says `1 escalation today`."""
    policy = make_policy(limits={"max_per_day": 1})
    c = make_comment("c9", "/approve-escalation", people.alice)
    view = replace(LedgerView(escalations_today=1), entry=pending_entry())
    d = decide(make_ticket(comments=(c,)), view, now, policy)
    [note] = notes(d, NoteKind.REFUSAL)
    assert "max_per_day (1 escalation today, limit 1)" in note.body
    assert reason(d, "limit.max_per_day").detail == "1 escalation today, limit 1"
