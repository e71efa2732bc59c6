"""Periodic customer updates: due per priority while escalated, skipped after a public update."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from escalation.cadence import periodic_update

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
CADENCE = {"P1": timedelta(hours=4), "P2": timedelta(hours=24)}


def test_p1_due_every_four_hours() -> None:
    """A P1 escalated at 08:00 is due at 12:00, not at 11:59."""
    early = periodic_update(
        priority="P1",
        escalated=True,
        escalated_at=T0,
        last_public_update_at=None,
        now=T0 + timedelta(hours=3, minutes=59),
        cadence=CADENCE,
    )
    assert not early.due and early.due_at == T0 + timedelta(hours=4)
    due = periodic_update(
        priority="P1",
        escalated=True,
        escalated_at=T0,
        last_public_update_at=None,
        now=T0 + timedelta(hours=4),
        cadence=CADENCE,
    )
    assert due.due and due.slot == (T0 + timedelta(hours=4)).isoformat()


def test_p2_daily() -> None:
    """A P2 is due a day after escalation."""
    decision = periodic_update(
        priority="P2",
        escalated=True,
        escalated_at=T0,
        last_public_update_at=None,
        now=T0 + timedelta(hours=23),
        cadence=CADENCE,
    )
    assert not decision.due and decision.due_at == T0 + timedelta(days=1)


def test_public_update_in_window_skips_the_periodic_one() -> None:
    """A public update at 11:00 moves the next periodic update from 12:00 to 15:00."""
    decision = periodic_update(
        priority="P1",
        escalated=True,
        escalated_at=T0,
        last_public_update_at=T0 + timedelta(hours=3),
        now=T0 + timedelta(hours=4),
        cadence=CADENCE,
    )
    assert not decision.due
    assert decision.due_at == T0 + timedelta(hours=7)
    assert "last public update" in decision.reason


def test_update_before_escalation_does_not_count() -> None:
    """A public update older than the escalation does not shift the window."""
    decision = periodic_update(
        priority="P1",
        escalated=True,
        escalated_at=T0,
        last_public_update_at=T0 - timedelta(hours=1),
        now=T0 + timedelta(hours=4),
        cadence=CADENCE,
    )
    assert decision.due and decision.due_at == T0 + timedelta(hours=4)


def test_not_escalated_or_no_cadence() -> None:
    """No periodic updates when not escalated, or for a priority without a cadence."""
    later = T0 + timedelta(days=3)
    not_escalated = periodic_update(
        priority="P1",
        escalated=False,
        escalated_at=T0,
        last_public_update_at=None,
        now=later,
        cadence=CADENCE,
    )
    assert not not_escalated.due and not_escalated.due_at is None
    p4 = periodic_update(
        priority="P4",
        escalated=True,
        escalated_at=T0,
        last_public_update_at=None,
        now=later,
        cadence=CADENCE,
    )
    assert not p4.due and "P4" in p4.reason


def test_cadence_in_the_policy() -> None:
    """The policy's cadence is hours per priority; unknown priorities and zero are refused."""
    from escalation.policy import load_policy
    from mapping.errors import ConfigInvalid
    from mapping.model import Priority

    levels = [{"name": "L1"}, {"name": "L2", "approvers": {"users": ["a"]}}]
    policy = load_policy(
        {
            "levels": levels,
            "customer_updates": {"cadence": {"P1": 4, "P2": 24}, "cadence_hours": 48},
        },
        source="p.toml",
    )
    updates = policy.customer_updates
    assert updates.interval(Priority.P1) == timedelta(hours=4)
    assert updates.interval(Priority.P3) == timedelta(hours=48)
    for bad in ({"P9": 4}, {"P1": 0}):
        try:
            load_policy({"levels": levels, "customer_updates": {"cadence": bad}}, source="p.toml")
        except ConfigInvalid as exc:
            assert all(e.key.startswith("customer_updates.cadence") for e in exc.errors), exc
            continue
        raise AssertionError(f"accepted {bad}")


@given(
    interval_minutes=st.integers(min_value=1, max_value=10_000),
    last_offset=st.one_of(st.none(), st.integers(min_value=-10_000, max_value=10_000)),
    now_offset=st.integers(min_value=0, max_value=30_000),
)
def test_due_exactly_when_an_interval_passed_without_public_update(
    interval_minutes: int, last_offset: int | None, now_offset: int
) -> None:
    """Due iff a whole interval has passed since the later of escalation and last public update."""
    interval = timedelta(minutes=interval_minutes)
    last = None if last_offset is None else T0 + timedelta(minutes=last_offset)
    now = T0 + timedelta(minutes=now_offset)
    if last is not None and last > now:
        last = now
    decision = periodic_update(
        priority="P1",
        escalated=True,
        escalated_at=T0,
        last_public_update_at=last,
        now=now,
        cadence={"P1": interval},
    )
    start = max(T0, last) if last is not None else T0
    assert decision.due == (now - start >= interval)
    assert decision.due_at == start + interval
