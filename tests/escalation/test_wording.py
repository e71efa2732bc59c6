"""Counts read as English: one noun for one, the plural otherwise."""

from __future__ import annotations

from escalation.wording import limit_count, plural


def test_plural_agrees_with_the_count() -> None:
    """0 and 2 take the plural, 1 the singular; an irregular plural is used when given."""
    assert [plural(n, "route") for n in (0, 1, 2)] == ["0 routes", "1 route", "2 routes"]
    assert plural(1, "entry", "entries") == "1 entry"
    assert plural(3, "entry", "entries") == "3 entries"


def test_limit_counts_name_what_is_counted() -> None:
    """Each limit's count reads in its own words; an unknown limit gives the bare number."""
    assert limit_count("max_per_day", 1) == "1 escalation today"
    assert limit_count("max_per_day", 3) == "3 escalations today"
    assert limit_count("max_active", 1) == "1 active escalation"
    assert limit_count("max_active_per_assignee", 2) == "2 active escalations for this assignee"
    assert limit_count("max_weekly", 4) == "4"
