"""The history of decisions folds into escalations, and the monthly report counts and times
them by cause, type, level and approver."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

from escalation.decide import decide
from escalation.decision import EngineeringStatus, ledger_key
from escalation.history import episodes, past_decision
from escalation.memory import InMemoryLedger
from escalation.report import build_report, render_csv, render_table
from mapping.model import EscalationState, Person, Status

S = EscalationState


class Recorder:
    """Decides tickets against an in-memory ledger and keeps each decision's record."""

    def __init__(self, policy, now):
        self.policy, self.now = policy, now
        self.ledger = InMemoryLedger()
        self.past = []

    def step(self, ticket, hours: float = 0, **kw):
        self.now += timedelta(hours=hours)
        key = ledger_key(ticket.ref)
        before = self.ledger.entries.get(key)
        d = decide(
            ticket,
            self.ledger.view(key, self.now, self.policy, ticket),
            self.now,
            self.policy,
            **kw,
        )
        self.ledger.apply(key, d, self.now)
        self.past.append(past_decision(key, before.state if before else S.NONE, d, self.now))
        return d


def test_history_folds_into_escalations_and_the_report_counts_them(
    make_ticket, make_comment, policy, now, people
):
    """Three escalations: one approved after 2 h and resolved 10 h later, one rejected, one
    still waiting; the report groups them and gives the median hours."""
    rec = Recorder(policy, now)
    one = make_ticket(1)
    rec.step(one)
    ok = make_comment("a1", "/approve-escalation", people.alice, minutes=180)
    rec.step(one.model_copy(update={"comments": (ok,)}), hours=2)
    rec.step(one, hours=10, engineering=EngineeringStatus(None, Status.RESOLVED, "fixed"))
    two = make_ticket(2, category="hardware", labels=())
    ask = make_comment("r2", "/escalate sensor dead", people.engineer, minutes=200)
    rec.step(two.model_copy(update={"comments": (ask,)}), hours=1)
    no = make_comment("n2", "/reject-escalation swap the sensor", people.sam, minutes=300)
    rec.step(two.model_copy(update={"comments": (ask, no)}), hours=1)
    rec.step(make_ticket(3), hours=1)
    found = episodes(rec.past)
    assert [(e.ticket_key, e.cause, e.outcome) for e in found] == [
        ("INC0000001", "label escalate", "resolved"),
        ("INC0000002", "request by a person", "rejected"),
        ("INC0000003", "label escalate", "open"),
    ]
    first = found[0]
    assert first.hours_to_approve == 2 and first.hours_to_resolve == 10
    assert first.approved_by == "alice" and first.level == "L2"

    report = build_report(found, now, now + timedelta(days=30))
    total = report.total
    assert (total.requested, total.escalated, total.not_escalated, total.resolved, total.open) == (
        3,
        1,
        1,
        1,
        1,
    )
    assert total.hours_to_approve_median == 2 and total.hours_to_resolve_median == 10
    by_cause = {r.key: r.requested for r in report.groups["cause"]}
    assert by_cause == {"label escalate": 2, "request by a person": 1}
    assert {r.key for r in report.groups["type"]} == {"software", "hardware"}
    assert [r.key for r in report.groups["approver"]] == ["(not approved)", "alice"]

    table = render_table(report)
    assert "cause" in table and "label escalate" in table and "2.0 / 2.0" in table
    rows = list(csv.DictReader(io.StringIO(render_csv(report))))
    assert rows[0]["dimension"] == "total" and rows[0]["requested"] == "3"
    assert json.loads(json.dumps(report.to_dict()))["by"]["level"][0]["key"] in ("L1", "L2")


def test_a_period_counts_only_escalations_requested_in_it(make_ticket, policy, now):
    """An escalation requested before the period is left out."""
    rec = Recorder(policy, now)
    rec.step(make_ticket(1))
    rec.step(make_ticket(2), hours=48)
    found = episodes(rec.past)
    report = build_report(found, now + timedelta(days=1), now + timedelta(days=3))
    assert report.total.requested == 1 and report.groups["cause"][0].key == "label escalate"


def test_a_further_level_is_part_of_the_same_escalation(
    make_ticket, make_comment, policy, now, people
):
    """L2 then L3 on one ticket is one escalation, counted at the level it reached."""
    rec = Recorder(policy, now)
    t = make_ticket(1)
    ok = make_comment("a1", "/approve-escalation", people.alice, minutes=70)
    rec.step(t.model_copy(update={"comments": (ok,)}))
    more = (
        ok,
        make_comment("r2", "/escalate needs core team", people.engineer, minutes=80),
        make_comment("a2", "/approve-escalation", Person(id="alice"), minutes=90),
    )
    rec.step(t.model_copy(update={"comments": more}), hours=1)
    [one] = episodes(rec.past)
    assert one.level == "L3" and one.outcome == "active"
