"""When the customer of an escalated ticket is owed a periodic update. Pure: time is passed in.

The window runs from the later of "escalated at" and "the last public update the customer got"
(a periodic update, an update on a public comment, the escalation notice itself). When a public
update went out inside the window, the window restarts there, so a customer who just heard from
an engineer is not also sent a "still working on it" mail.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class CadenceDecision:
    """Whether a periodic update is due now, when the next one is due, and why."""

    due: bool
    due_at: datetime | None
    reason: str

    @property
    def slot(self) -> str | None:
        """A stable version string for the outbox key of the update due at `due_at`."""
        return self.due_at.isoformat() if self.due_at is not None else None


def periodic_update(
    *,
    priority: str | None,
    escalated: bool,
    escalated_at: datetime | None,
    last_public_update_at: datetime | None,
    now: datetime,
    cadence: Mapping[str, timedelta],
) -> CadenceDecision:
    """Decide whether the periodic customer update for one ticket is due at `now`.

    `cadence` maps a priority ("P1") to its interval; a priority without one gets no periodic
    updates. `escalated_at` is when the escalation was approved.
    """
    if not escalated or escalated_at is None:
        return CadenceDecision(False, None, "not escalated")
    interval = cadence.get(str(priority or "").upper())
    if interval is None or interval <= timedelta(0):
        return CadenceDecision(False, None, f"no periodic updates for priority {priority or '-'}")
    start = escalated_at
    reason = "interval since escalation"
    if last_public_update_at is not None and last_public_update_at > start:
        start = last_public_update_at
        reason = "interval since the last public update"
    due_at = start + interval
    if now >= due_at:
        return CadenceDecision(True, due_at, f"due: {reason} ({_fmt(interval)}) has passed")
    return CadenceDecision(False, due_at, f"not yet: {reason} ({_fmt(interval)}) runs to {due_at}")


def _fmt(interval: timedelta) -> str:
    seconds = int(interval.total_seconds())
    if seconds % 86400 == 0:
        return f"{seconds // 86400}d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    return f"{seconds // 60}m"
