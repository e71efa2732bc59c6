"""Counts in the words an operator reads: `1 route`, `2 routes`, `1 escalation today`."""

from __future__ import annotations

from collections.abc import Mapping


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """`count` and the noun that agrees with it; `plural_form` when it is not `singular` + s."""
    return f"{count} {singular if count == 1 else (plural_form or singular + 's')}"


# What each limit counts, singular and plural, as the refusal notes and the trace say it.
LIMIT_WORDS: Mapping[str, tuple[str, str]] = {
    "max_per_day": ("escalation today", "escalations today"),
    "max_active": ("active escalation", "active escalations"),
    "max_active_per_assignee": (
        "active escalation for this assignee",
        "active escalations for this assignee",
    ),
}


def limit_count(limit: str, count: int) -> str:
    """`1 escalation today`, `3 active escalations`; the bare number for an unknown limit."""
    words = LIMIT_WORDS.get(limit)
    return plural(count, *words) if words else str(count)
