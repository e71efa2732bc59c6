"""simulate(): time order, per-day counts, refusals; explain: text and data of a decision."""

from __future__ import annotations

from datetime import timedelta

import pytest

from escalation.decide import decide
from escalation.decision import LedgerEntry, LedgerView
from escalation.explain import explain_data, render_text
from escalation.simulate import Snapshot, SnapshotInvalid, simulate, snapshot_from_json


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
