"""simulate(): time order, per-day counts, refusals; explain: text and data of a decision."""

from __future__ import annotations

from datetime import timedelta

import pytest

from escalation.decide import decide
from escalation.decision import LedgerEntry, LedgerView
from escalation.explain import explain_data, render_text
from escalation.simulate import Snapshot, SnapshotInvalid, simulate, snapshot_from_json
from mapping.model import EscalationState


def _approved_ticket(make_ticket, make_comment, people, n, at):
    return make_ticket(
        n,
        labels=(),
        updated=at,
        comments=(
            make_comment(f"r{n}", "/escalate", people.engineer),
            make_comment(f"a{n}", "/approve-escalation", people.alice, minutes=1),
        ),
    )


def test_simulate_orders_by_time_and_counts_days(make_ticket, make_comment, policy, now, people):
    """Snapshots are played in time order; per-day escalations respect max_per_day."""
    snaps = []
    for n in range(6, 0, -1):  # given newest first
        at = now + timedelta(minutes=n) + (timedelta(days=1) if n > 4 else timedelta())
        snaps.append(Snapshot(_approved_ticket(make_ticket, make_comment, people, n, at), at))
    report = simulate(policy, snaps)
    days = {d.isoformat(): s for d, s in report.days.items()}
    assert days["2026-03-10"].escalated == 3 and days["2026-03-10"].refused == 1
    # A new policy day: the per-day count starts again (3 active of 5 leaves room).
    assert days["2026-03-11"].escalated == 2 and days["2026-03-11"].refused == 0
    assert dict(report.refusals) == {"max_per_day": 1}
    assert report.peak_active == 5
    assert report.tickets == 6 and report.snapshots == 6
    assert report.to_dict()["totals"]["escalated"] == 5


def test_simulate_counts_incomplete_once(make_ticket, policy, now):
    """A ticket incomplete over several snapshots counts once as incomplete."""
    t = make_ticket(attachments=())
    snaps = [Snapshot(t, now), Snapshot(t, now + timedelta(hours=1))]
    report = simulate(policy, snaps)
    assert report.totals().incomplete == 1 and report.totals().requested == 1


def test_snapshot_envelope_and_errors(make_ticket, now):
    """A line may wrap the ticket with `at` and the engineering status; no time is an error."""
    t = make_ticket(updated=now)
    plain = snapshot_from_json(t.model_dump(mode="json"))
    assert plain.at == now and plain.engineering is None
    wrapped = snapshot_from_json(
        {
            "ticket": t.model_dump(mode="json"),
            "at": "2026-03-12T08:00:00Z",
            "engineering": {"status": "resolved", "resolution": "ok"},
        }
    )
    assert wrapped.at.day == 12 and wrapped.engineering is not None
    with pytest.raises(SnapshotInvalid):
        snapshot_from_json(make_ticket().model_dump(mode="json"))


def test_explain_text_lists_rules_counts_and_next_steps(make_ticket, policy, now):
    """The readable trace has the transition, every rule with its mark, and the next actions."""
    view = LedgerView(escalations_today=2, active_count=1, entry=LedgerEntry())
    d = decide(make_ticket(attachments=()), view, now, policy)
    text = render_text(make_ticket(), view, d, now)
    assert "state: none -> incomplete" in text
    assert "2 escalated today, 1 active" in text
    assert "FAIL    gate.logs" in text and "PASS    gate.summary" in text
    assert "- write internal needs_information note" in text


def test_explain_data_is_json_ready(make_ticket, policy, now):
    """--json data carries the ticket, counts, the full decision and the next steps."""
    import json

    view = LedgerView(active_by_assignee={"agent1": 1})
    d = decide(make_ticket(), view, now, policy)
    data = json.loads(json.dumps(explain_data(make_ticket(), view, d, now)))
    assert data["ticket"]["key"] == "INC0000001"
    assert data["counts"]["active_by_assignee"] == {"agent1": 1}
    assert data["decision"]["state"] == "pending_approval"
    assert data["next"] and data["next"][0].startswith("write internal request note")


def test_explain_after_the_fact_shows_each_past_decision_and_counts_the_ticket(
    make_ticket, make_comment, policy, now, people
):
    """Once decided, explain still tells why: each past decision with its rules and actions,
    the state and since when, and counts that include the ticket itself."""
    from escalation.decision import ledger_key
    from escalation.history import past_decision, worth_keeping
    from escalation.memory import InMemoryLedger

    ledger = InMemoryLedger()
    t = make_ticket(comments=(make_comment("x1", "/approve-escalation", people.engineer),))
    key = ledger_key(t.ref)
    past = []
    for at in (now, now + timedelta(minutes=5)):
        view = ledger.view(key, at, policy, t)
        d = decide(t, view, at, policy)
        before = ledger.entries[key].state if key in ledger.entries else EscalationState.NONE
        ledger.apply(key, d, at)
        if worth_keeping(before, d):
            past.append(past_decision(key, before, d, at))
    ok = make_comment("a1", "/approve-escalation", people.alice, minutes=90)
    t = t.model_copy(update={"comments": (*t.comments, ok)})
    at = now + timedelta(minutes=10)
    d = decide(t, ledger.view(key, at, policy, t), at, policy)
    ledger.apply(key, d, at)
    past.append(past_decision(key, EscalationState.PENDING_APPROVAL, d, at))
    later = now + timedelta(hours=1)
    view = ledger.view(key, later, policy, t)
    again = decide(t, view, later, policy)
    text = render_text(t, view, again, later, past, engineering="ENG-7 in_progress (read now)")
    assert f"state: approved since {at.isoformat()}" in text
    assert "counts (this ticket included): 1 escalated today, 1 active" in text
    assert "engineering record: ENG-7 in_progress (read now)" in text
    history = text.split("history:\n", 1)[1].split("\n\nrules now:", 1)[0]
    assert f"  {now.isoformat()}  none -> pending_approval  (level L1)" in history
    assert "BLOCKED command.approve: /approve-escalation in comment x1 is not honoured" in history
    assert "-> write internal request note: Escalation to L2 requested at" in history
    assert f"  {at.isoformat()}  pending_approval -> approved  (level L2)" in history
    assert "PASS    approval: approved by Alice Approver" in history
    data = explain_data(t, view, again, later, past)
    assert data["counts"]["active"] == 1 and data["counts"]["ticket_included"] is True
    assert [h["state"] for h in data["history"]] == ["pending_approval", "approved"]


def test_replay_turns_a_ticket_read_today_into_its_snapshots(
    make_ticket, make_comment, policy, now, people
):
    """A closed ticket with a request and an approval replays as open after each comment, then
    as it is; simulating the replay escalates it once, in the order the comments were written."""
    from escalation.decision import EngineeringStatus
    from escalation.simulate import replay, snapshot_to_json
    from mapping.model import Status

    comments = (
        make_comment("r1", "/escalate customer blocked", people.engineer, minutes=10),
        make_comment("a1", "/approve-escalation", people.alice, minutes=20),
    )
    t = make_ticket(labels=(), comments=comments, status=Status.CLOSED, updated=now)
    eng = EngineeringStatus(None, Status.RESOLVED, "fixed")
    snaps = replay(t, eng)
    assert [len(s.ticket.comments) for s in snaps] == [1, 2, 2]
    assert [s.ticket.status for s in snaps] == [
        Status.IN_PROGRESS,
        Status.IN_PROGRESS,
        Status.CLOSED,
    ]
    assert snaps[-1].engineering == eng and snaps[0].engineering is None
    lines = [snapshot_from_json(snapshot_to_json(s)) for s in snaps]
    report = simulate(policy, lines)
    assert report.totals().escalated == 1 and report.totals().requested == 1
