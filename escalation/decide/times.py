"""Moments: naive times read as UTC, the policy's calendar day, and a time as notes print it."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any
from zoneinfo import ZoneInfo


def aware(value: datetime) -> datetime:
    """`value` with a time zone; a naive time is UTC, as the connectors hand them over."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def parse_time(value: Any) -> datetime | None:
    """A field's value as a moment (a datetime or an ISO 8601 text); None when it is neither."""
    if isinstance(value, datetime):
        return aware(value)
    if isinstance(value, str) and value.strip():
        try:
            return aware(datetime.fromisoformat(value.strip().replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


def stamp(moment: datetime) -> str:
    """A moment as the notes print it, to the minute in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def day_start(now: datetime, timezone: str) -> datetime:
    """Start (in UTC) of the policy's calendar day containing `now`."""
    tz = ZoneInfo(timezone)
    local = aware(now).astimezone(tz)
    return datetime.combine(local.date(), time(0), tzinfo=tz).astimezone(UTC)
