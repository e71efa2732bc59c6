"""The monthly review: escalations by cause, type, level and approver, and how long they took.

Built from the escalations (`history.episodes`) requested in a period: how many were asked
for, escalated, ended without running (rejected, refused, withdrawn), joined another, resolved,
and the median and 90th-percentile hours from request to approval and from approval to the
end. Rendered as a table, CSV or JSON. Pure: the store reads the decisions.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from escalation.history import Episode

DIMENSIONS: tuple[str, ...] = ("cause", "type", "level", "approver")
ENDED_WITHOUT_RUNNING = ("rejected", "refused", "withdrawn")

_KEY: dict[str, Callable[[Episode], str]] = {
    "cause": lambda e: e.cause,
    "type": lambda e: e.category or "(no category)",
    "level": lambda e: e.level or "-",
    "approver": lambda e: e.approved_by or "(not approved)",
}


@dataclass(frozen=True, slots=True)
class Row:
    """The counts and times of one group of escalations."""

    key: str
    requested: int
    escalated: int
    not_escalated: int
    joined: int
    resolved: int
    open: int
    hours_to_approve_median: float | None
    hours_to_approve_p90: float | None
    hours_to_resolve_median: float | None
    hours_to_resolve_p90: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True)
class Report:
    """What happened to the escalations requested between `since` and `until`."""

    since: datetime
    until: datetime
    total: Row
    groups: dict[str, tuple[Row, ...]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "total": self.total.to_dict(),
            "by": {dim: [r.to_dict() for r in rows] for dim, rows in self.groups.items()},
        }


def _quantiles(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    ordered = sorted(values)
    median = statistics.median(ordered)
    # Nearest rank: the smallest value with at least 90 % of the values at or below it.
    p90 = ordered[max(0, -(-9 * len(ordered) // 10) - 1)]
    return round(median, 2), round(p90, 2)


def _row(key: str, group: Sequence[Episode]) -> Row:
    approve = [h for e in group if (h := e.hours_to_approve) is not None]
    resolve = [
        h
        for e in group
        if e.outcome in ("resolved", "closed") and (h := e.hours_to_resolve) is not None
    ]
    am, ap = _quantiles(approve)
    rm, rp = _quantiles(resolve)
    return Row(
        key=key,
        requested=len(group),
        escalated=sum(1 for e in group if e.approved_at is not None),
        not_escalated=sum(1 for e in group if e.outcome in ENDED_WITHOUT_RUNNING),
        joined=sum(1 for e in group if e.outcome == "joined"),
        resolved=sum(1 for e in group if e.outcome in ("resolved", "closed") and e.approved_at),
        open=sum(1 for e in group if e.outcome in ("open", "active")),
        hours_to_approve_median=am,
        hours_to_approve_p90=ap,
        hours_to_resolve_median=rm,
        hours_to_resolve_p90=rp,
    )


def build_report(episodes: Iterable[Episode], since: datetime, until: datetime) -> Report:
    """The report over the escalations requested in [since, until)."""
    chosen = [e for e in episodes if since <= e.requested_at < until]
    groups: dict[str, tuple[Row, ...]] = {}
    for dim in DIMENSIONS:
        buckets: dict[str, list[Episode]] = {}
        for e in chosen:
            buckets.setdefault(_KEY[dim](e), []).append(e)
        rows = [_row(k, v) for k, v in buckets.items()]
        groups[dim] = tuple(sorted(rows, key=lambda r: (-r.requested, r.key)))
    return Report(since, until, _row("all", chosen), groups)


def _hours(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


COLUMNS = (
    ("requested", "asked"),
    ("escalated", "escalated"),
    ("not_escalated", "not run"),
    ("joined", "joined"),
    ("resolved", "resolved"),
    ("open", "open"),
)


def render_table(report: Report) -> str:
    """The report for a terminal: one table per dimension, hours as median / p90."""
    lines = [
        f"Escalations requested {report.since.date().isoformat()} to "
        f"{report.until.date().isoformat()} (exclusive)",
        "",
    ]
    for dim, rows in (("total", (report.total,)), *report.groups.items()):
        width = max([len(dim), *(len(r.key) for r in rows)]) + 2
        head = f"{dim:<{width}}" + "".join(f"{title:>10}" for _, title in COLUMNS)
        lines.append(head + f"{'h to approve':>16}{'h to resolve':>16}")
        for r in rows:
            counts = "".join(f"{getattr(r, name):>10}" for name, _ in COLUMNS)
            approve = f"{_hours(r.hours_to_approve_median)} / {_hours(r.hours_to_approve_p90)}"
            resolve = f"{_hours(r.hours_to_resolve_median)} / {_hours(r.hours_to_resolve_p90)}"
            lines.append(f"{r.key:<{width}}{counts}{approve:>16}{resolve:>16}")
        lines.append("")
    lines.append("hours: median / 90th percentile")
    return "\n".join(lines)


def render_csv(report: Report) -> str:
    """The report as CSV: one line per group, the dimension in the first column."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    names = [f for f in Row.__slots__ if f != "key"]
    writer.writerow(["dimension", "key", *names])
    for dim, rows in (("total", (report.total,)), *report.groups.items()):
        for r in rows:
            writer.writerow(
                [dim, r.key, *("" if (v := getattr(r, n)) is None else v for n in names)]
            )
    return out.getvalue()
