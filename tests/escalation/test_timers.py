"""Time-driven rules: each says when it falls due (wake_at) and fires once, with a note and the
notices the policy names, on a ticket nobody touched."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from escalation.decide import decide
from escalation.decision import (
    AddNote,
    CustomerEvent,
    EmailCustomer,
    EngineeringStatus,
    LedgerEntry,
    LedgerView,
    MoveStatus,
    NoteKind,
    NotifyManagement,
)
from mapping.model import EscalationState, Person, Priority, Ref, Status, System, Visibility

S = EscalationState
DEV = Person(id="dev1", name="Dev One", email="dev.one@example.com")
ENG_REF = Ref(system=System.JIRA, id="10001", key="ENG-1")


def follow_ups(decision):
    return [
        a.body for a in decision.actions if isinstance(a, AddNote) and a.kind is NoteKind.FOLLOW_UP
    ]


def consumed(entry, decision):
    """The entry after `decision`'s consumed tokens were recorded."""
    return replace(
        entry,
        processed_command_ids=entry.processed_command_ids
        | frozenset(decision.processed_command_ids),
    )


def active(now, **kw):
    base = {
        "state": S.APPROVED,
        "level": "L2",
        "approved_at": now,
        "requested_at": now - timedelta(hours=1),
        "priority": Priority.P3,
    }
    base.update(kw)
    return LedgerEntry(**base)


def test_sla_trigger_fires_on_an_untouched_ticket_when_its_time_comes(
    make_ticket, make_policy, now
):
    """An SLA due in 5.5 h with a 4 h window asks nothing now but says when to look again;
    decided then, unchanged, it requests the escalation."""
    policy = make_policy(
        triggers=[
            {"kind": "sla", "name": "sla", "field": "custom_fields.sla_due", "within_hours": 4}
        ]
    )
    due = now + timedelta(hours=5, minutes=30)
    t = make_ticket(labels=(), custom_fields={"sla_due": due.isoformat()})
    d = decide(t, LedgerView(), now, policy)
    assert d.state is S.NONE and d.actions == ()
    assert d.wake_at == due - timedelta(hours=4)
    d = decide(t, LedgerView(), d.wake_at, policy)
    assert d.state is S.PENDING_APPROVAL and d.request_reason == "SLA breach within 4 h"


def test_approval_overdue_timer_per_priority(make_ticket, make_policy, now):
    """timers.approval_overdue: the P2 window, not the default, with a note and the notices."""
    policy = make_policy(
        timers={
            "approval_overdue": {
                "after_hours": 8,
                "by_priority": {"P2": 2},
                "notify": ["management", "leads"],
            }
        },
        stakeholders={"roles": {"leads": {"raci": ["A"], "emails": ["leads@example.com"]}}},
    )
    entry = LedgerEntry(
        state=S.PENDING_APPROVAL, level="L1", requested_at=now, notice_key="request:x"
    )
    t = make_ticket(priority=Priority.P2)
    d = decide(t, LedgerView(entry=entry), now + timedelta(hours=1), policy)
    assert d.actions == () and d.wake_at == now + timedelta(hours=2)
    d = decide(t, LedgerView(entry=entry), now + timedelta(hours=2), policy)
    assert (
        NotifyManagement("approval_overdue", ("managers@example.com", "leads@example.com"))
        in d.actions
    )
    [note] = follow_ups(d)
    assert note.startswith("Approval overdue: the request for L2 has waited 2.0 h of the 2 h")
    again = decide(t, LedgerView(entry=consumed(entry, d)), now + timedelta(hours=5), policy)
    assert again.actions == ()


def test_unassigned_engineering_record_is_followed_up_once(make_ticket, make_policy, now):
    """Nobody assigned 4 h after the escalation: a follow-up note and management told, once;
    an assignment afterwards is noted on the incident."""
    policy = make_policy(timers={"unassigned": {"after_hours": 4}})
    entry = active(now)
    eng = EngineeringStatus(ENG_REF, Status.NEW)
    t = make_ticket()
    d = decide(t, LedgerView(entry=entry), now + timedelta(hours=1), policy, engineering=eng)
    assert d.actions == () and d.wake_at == now + timedelta(hours=4)
    d = decide(t, LedgerView(entry=entry), now + timedelta(hours=4), policy, engineering=eng)
    [note] = follow_ups(d)
    assert note.startswith(
        "Follow-up: escalation record ENG-1 (L2) has not been assigned within 4 h"
    )
    assert NotifyManagement("unassigned", ("managers@example.com",)) in d.actions
    entry = consumed(entry, d)
    assert (
        decide(
            t, LedgerView(entry=entry), now + timedelta(hours=9), policy, engineering=eng
        ).actions
        == ()
    )
    taken = replace(eng, assignee=DEV)
    d = decide(t, LedgerView(entry=entry), now + timedelta(hours=10), policy, engineering=taken)
    [assigned] = [a.body for a in d.actions if isinstance(a, AddNote)]
    assert assigned.startswith(
        "Escalation record ENG-1 (L2) is assigned to Dev One <dev.one@example.com>"
    )
    entry = consumed(entry, d)
    assert (
        decide(
            t, LedgerView(entry=entry), now + timedelta(hours=11), policy, engineering=taken
        ).actions
        == ()
    )


def test_no_engineering_response_within_sla(make_ticket, make_policy, now):
    """No comment from engineering within the P3 time since the escalation: followed up; a
    response in time stops it."""
    policy = make_policy(
        timers={"no_response": {"by_priority": {"P3": 8}, "notify": ["management"]}}
    )
    entry = active(now)
    silent = EngineeringStatus(ENG_REF, Status.IN_PROGRESS, assignee=DEV)
    t = make_ticket()
    at = now + timedelta(hours=8)
    d = decide(t, LedgerView(entry=entry), at, policy, engineering=silent)
    assert "no response from engineering on ENG-1 (L2) within 8 h" in follow_ups(d)[0]
    assert NotifyManagement("no_response", ("managers@example.com",)) in d.actions
    answered = replace(silent, responded_at=now + timedelta(hours=2))
    d = decide(t, LedgerView(entry=entry), at, policy, engineering=answered)
    assert follow_ups(d) == []


def test_sla_imminent_while_escalated(make_ticket, make_policy, now):
    """An active escalation whose SLA comes within 2 h tells management once."""
    policy = make_policy(
        timers={"sla_imminent": {"field": "custom_fields.sla_due", "within_hours": 2}}
    )
    due = now + timedelta(hours=6)
    t = make_ticket(custom_fields={"sla_due": due.isoformat()})
    d = decide(t, LedgerView(entry=active(now)), now, policy)
    assert d.wake_at == due - timedelta(hours=2)
    d = decide(t, LedgerView(entry=active(now)), d.wake_at, policy)
    assert follow_ups(d)[0].startswith("SLA breach imminent: custom_fields.sla_due is due")
    assert NotifyManagement("sla_imminent", ("managers@example.com",)) in d.actions


def test_unconfirmed_resolution_reminds_then_closes(make_ticket, make_policy, now):
    """Asked to confirm and silent: reminded after 48 h, the record closed after 120 h."""
    policy = make_policy(
        timers={"unconfirmed": {"remind_after_hours": 48, "close_after_hours": 120}}
    )
    entry = active(now, state=S.RESOLVED, released_at=now)
    t = make_ticket(labels=(), status=Status.RESOLVED)
    d = decide(t, LedgerView(entry=entry), now + timedelta(hours=1), policy)
    assert d.actions == () and d.wake_at == now + timedelta(hours=48)
    d = decide(t, LedgerView(entry=entry), now + timedelta(hours=48), policy)
    assert EmailCustomer(CustomerEvent.CONFIRMATION_REMINDER) in d.actions
    assert "not confirmed the resolution within 48 h" in follow_ups(d)[0]
    entry = consumed(entry, d)
    assert d.wake_at == now + timedelta(hours=120)
    d = decide(t, LedgerView(entry=entry), now + timedelta(hours=120), policy)
    assert MoveStatus(Status.CLOSED) in d.actions
    assert not any(isinstance(a, EmailCustomer) for a in d.actions)


def test_customer_reply_stops_the_confirmation_timer(
    make_ticket, make_comment, make_policy, now, people
):
    """A public comment from the customer after the resolution stops reminder and closing."""
    policy = make_policy(
        timers={"unconfirmed": {"remind_after_hours": 48, "close_after_hours": 120}}
    )
    entry = active(now - timedelta(hours=2), state=S.RESOLVED, released_at=now - timedelta(hours=2))
    reply = make_comment("p1", "Still seeing it sometimes", people.customer, Visibility.PUBLIC, 90)
    t = make_ticket(labels=(), status=Status.RESOLVED, comments=(reply,))
    d = decide(t, LedgerView(entry=entry), now + timedelta(hours=200), policy)
    assert not any(isinstance(a, MoveStatus | EmailCustomer) for a in d.actions)
    assert "The customer replied after the resolution" in follow_ups(d)[0]


def test_periodic_update_says_when_the_next_is_due(make_ticket, make_policy, now):
    """An active escalation with a 24 h cadence wakes for its next update."""
    policy = make_policy(customer_updates={"cadence_hours": 24})
    entry = active(now)
    d = decide(make_ticket(), LedgerView(entry=entry), now + timedelta(hours=3), policy)
    assert d.wake_at == now + timedelta(hours=24)
    d = decide(make_ticket(), LedgerView(entry=entry), now + timedelta(hours=24), policy)
    assert EmailCustomer(CustomerEvent.PERIODIC_UPDATE) in d.actions
    assert d.wake_at == now + timedelta(hours=48)
