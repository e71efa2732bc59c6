"""Property: over any sequence of requests, approvals, resolutions and time, limits hold."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from escalation.decide import day_start, decide
from escalation.decision import EngineeringStatus, ledger_key
from escalation.memory import InMemoryLedger, is_active
from escalation.policy import load_policy
from mapping.model import Comment, Person, Priority, Ref, Status, System, Ticket

POLICY = load_policy(
    {
        "gate": {"enabled": False},
        "limits": {"max_per_day": 3, "max_active": 5, "max_active_per_assignee": 1},
        "levels": [
            {"name": "L1"},
            {
                "name": "L2",
                "target_system": "jira",
                "project": "ENG",
                "approvers": {"users": ["alice"]},
            },
        ],
    },
    source="property.toml",
)
START = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)
ALICE = Person(id="alice")

events = st.lists(
    st.one_of(
        st.tuples(st.just("escalate"), st.integers(0, 15), st.integers(0, 4)),
        st.tuples(st.just("resolve"), st.integers(0, 15), st.just(0)),
        st.tuples(st.just("wait"), st.integers(1, 20), st.just(0)),
    ),
    max_size=60,
)


def _ticket(n: int, assignee: int, round_: int, now: datetime) -> Ticket:
    return Ticket(
        ref=Ref(system=System.SERVICENOW, id=f"t{n}"),
        summary=f"ticket {n}",
        priority=Priority.P2,
        assignee=Person(id=f"a{assignee}"),
        comments=(
            Comment(id=f"r{n}-{round_}", body="/escalate", author=Person(id="eng"), created=now),
            Comment(
                id=f"a{n}-{round_}",
                body="/approve-escalation",
                author=ALICE,
                created=now + timedelta(seconds=1),
            ),
        ),
    )


@settings(max_examples=150, deadline=None)
@given(events)
def test_limits_never_exceeded(seq):
    """Active <= 5, <= 1 per assignee and <= 3 approvals per policy day, whatever happens."""
    ledger = InMemoryLedger()
    now = START
    rounds: Counter[int] = Counter()
    assignees: dict[int, int] = {}
    for kind, n, k in seq:
        if kind == "wait":
            now += timedelta(hours=n)
            continue
        if kind == "escalate":
            rounds[n] += 1
            assignees.setdefault(n, k)
            ticket = _ticket(n, assignees[n], rounds[n], now)
            engineering = None
        else:
            # Reassigning an active escalation is outside the policy's control; keep owners fixed.
            ticket = _ticket(n, assignees.setdefault(n, 0), rounds[n], now)
            engineering = EngineeringStatus(None, Status.RESOLVED, "done")
        key = ledger_key(ticket.ref)
        d = decide(ticket, ledger.view(key, now, POLICY), now, POLICY, engineering=engineering)
        assert ledger.apply(key, d, now)
        active = [e for e in ledger.entries.values() if is_active(e)]
        assert len(active) <= 5
        assert max(Counter(e.assignee for e in active).values(), default=0) <= 1
        start = day_start(now, POLICY.timezone)
        today = [e for e in ledger.entries.values() if e.approved_at and e.approved_at >= start]
        assert len(today) <= 3
