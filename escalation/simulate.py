"""What-if: play canonical tickets through a policy in time order, and count what it would do.

Each input is a ticket snapshot at a moment (its `updated` time, or an explicit `at`); the
same ticket may appear several times as it changes. Snapshots are decided against an in-memory
ledger, so limits, fingerprints and processed commands behave as they would in the daemon.
Pure: the caller reads the files.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from errors import Reject
from escalation.decide import decide
from escalation.decision import EngineeringStatus, ledger_key
from escalation.memory import InMemoryLedger, is_active
from escalation.policy import Policy
from escalation.wording import plural
from mapping.model import EscalationState, Status, Ticket

S = EscalationState


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A ticket as it was at `at`, with the paired engineering record's status if known."""

    ticket: Ticket
    at: datetime
    engineering: EngineeringStatus | None = None


class SnapshotInvalid(Reject, ValueError):
    """A what-if input line that is not a canonical ticket (or has no time): the input is
    refused with the line's reason."""


def snapshot_from_json(data: Mapping[str, Any]) -> Snapshot:
    """A plain Ticket JSON, or {"ticket": {...}, "at": ISO, "engineering": {"status", ...}}."""
    if "ticket" in data and "ref" not in data:
        ticket = Ticket.model_validate(data["ticket"])
        at_raw = data.get("at")
        eng_raw = data.get("engineering")
    else:
        ticket = Ticket.model_validate(data)
        at_raw, eng_raw = None, None
    at: datetime | None
    if isinstance(at_raw, str):
        at = datetime.fromisoformat(at_raw.replace("Z", "+00:00"))
    else:
        at = ticket.updated
    if at is None:
        raise SnapshotInvalid(f"ticket {ticket.ref.key or ticket.ref.id} has no `updated` or `at`")
    engineering = None
    if isinstance(eng_raw, Mapping):
        status = eng_raw.get("status")
        engineering = EngineeringStatus(
            ref=None,
            status=Status(status) if status else None,
            resolution=eng_raw.get("resolution"),
        )
    return Snapshot(ticket, at if at.tzinfo else at.replace(tzinfo=ZoneInfo("UTC")), engineering)


def snapshot_to_json(snapshot: Snapshot) -> dict[str, Any]:
    """A snapshot as one line of the file `policy simulate` reads (see snapshot_from_json)."""
    out: dict[str, Any] = {
        "ticket": snapshot.ticket.model_dump(mode="json", exclude_none=True),
        "at": snapshot.at.isoformat(),
    }
    eng = snapshot.engineering
    if eng is not None:
        out["engineering"] = {
            "status": eng.status.value if eng.status else None,
            "resolution": eng.resolution,
        }
    return out


ENDED = frozenset({Status.RESOLVED, Status.CLOSED, Status.CANCELLED})


def replay(ticket: Ticket, engineering: EngineeringStatus | None = None) -> list[Snapshot]:
    """A ticket read today as the snapshots it went through, for a what-if run.

    A system gives the record as it is now, with its comments dated: the ticket is replayed
    as it was after each comment (the comments up to then; the fields as they are now, except
    that a ticket which has ended was still open), then as it is now, with the engineering
    record's status. Commands, approvals and requests are thereby decided in the order they
    were written.
    """
    final = ticket.updated
    dated = sorted({c.created for c in ticket.comments if c.created is not None})
    out: list[Snapshot] = []
    for moment in dated:
        if final is not None and moment >= final:
            break
        shown = tuple(c for c in ticket.comments if c.created is not None and c.created <= moment)
        status = Status.IN_PROGRESS if ticket.status in ENDED else ticket.status
        out.append(
            Snapshot(ticket.model_copy(update={"comments": shown, "status": status}), moment)
        )
    at = final or (dated[-1] if dated else None)
    if at is not None:
        out.append(Snapshot(ticket, at, engineering))
    return out


@dataclass
class DayStats:
    """One policy day of the run."""

    requested: int = 0
    escalated: int = 0
    refused: int = 0
    incomplete: int = 0
    rejected: int = 0
    resolved: int = 0


@dataclass
class SimulationReport:
    """What the policy would have done."""

    policy: str
    snapshots: int = 0
    tickets: int = 0
    days: dict[date, DayStats] = field(default_factory=lambda: defaultdict(DayStats))
    refusals: Counter[str] = field(default_factory=Counter)
    limit_hits: Counter[str] = field(default_factory=Counter)
    blocked_commands: Counter[str] = field(default_factory=Counter)
    final_states: Counter[str] = field(default_factory=Counter)
    peak_active: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "policy": self.policy,
            "snapshots": self.snapshots,
            "tickets": self.tickets,
            "days": {
                d.isoformat(): vars(s) for d, s in sorted(self.days.items(), key=lambda i: i[0])
            },
            "totals": vars(self.totals()),
            "refusals_by_reason": dict(self.refusals.most_common()),
            "limit_hits": dict(self.limit_hits.most_common()),
            "blocked_commands": dict(self.blocked_commands.most_common()),
            "final_states": dict(self.final_states.most_common()),
            "peak_active": self.peak_active,
        }

    def totals(self) -> DayStats:
        """Sums over all days."""
        total = DayStats()
        for s in self.days.values():
            for name in vars(total):
                setattr(total, name, getattr(total, name) + getattr(s, name))
        return total


def _refusal_reason(notice_key: str | None) -> str:
    head = (notice_key or "refused:unknown").split("@", 1)[0]
    return head.removeprefix("refused:").replace(",", " + ")


def simulate(policy: Policy, snapshots: Iterable[Snapshot]) -> SimulationReport:
    """Decide every snapshot in time order (ties keep input order) and tally the outcomes."""
    ordered = sorted(enumerate(snapshots), key=lambda p: (p[1].at, p[0]))
    ledger = InMemoryLedger()
    report = SimulationReport(policy=policy.name)
    tz = ZoneInfo(policy.timezone)
    seen: set[str] = set()
    for _, snap in ordered:
        key = ledger_key(snap.ticket.ref)
        seen.add(key)
        before = ledger.entries.get(key)
        view = ledger.view(key, snap.at, policy, snap.ticket)
        d = decide(snap.ticket, view, snap.at, policy, engineering=snap.engineering)
        ledger.apply(key, d, snap.at)
        report.snapshots += 1
        day = report.days[snap.at.astimezone(tz).date()]
        old = before.state if before else S.NONE
        if d.request_started:
            day.requested += 1
        if d.reservation is not None:
            day.escalated += 1
        if d.state is not old or d.request_started:
            if d.state is S.REFUSED:
                day.refused += 1
                report.refusals[_refusal_reason(d.notice_key)] += 1
            elif d.state is S.INCOMPLETE and old is not S.INCOMPLETE:
                day.incomplete += 1
            elif d.state is S.REJECTED:
                day.rejected += 1
            elif d.state is S.RESOLVED:
                day.resolved += 1
        for r in d.reasons:
            if r.rule.startswith("limit.") and r.outcome == "fail":
                report.limit_hits[r.rule.removeprefix("limit.")] += 1
            elif r.outcome == "blocked":
                report.blocked_commands[r.rule] += 1
        active = sum(1 for e in ledger.entries.values() if is_active(e))
        report.peak_active = max(report.peak_active, active)
    report.tickets = len(seen)
    report.final_states = Counter(e.state.value for e in ledger.entries.values())
    return report


def render_text(report: SimulationReport) -> str:
    """A plain-text summary an admin reads in a terminal."""
    lines = [
        f"Policy {report.policy}: {plural(report.snapshots, 'snapshot')} of "
        f"{plural(report.tickets, 'ticket')}",
        "",
        f"{'day':<12}{'requested':>10}{'escalated':>10}{'refused':>9}{'incomplete':>11}"
        f"{'rejected':>9}{'resolved':>9}",
    ]
    for d, s in sorted(report.days.items(), key=lambda i: i[0]):
        lines.append(
            f"{d.isoformat():<12}{s.requested:>10}{s.escalated:>10}{s.refused:>9}"
            f"{s.incomplete:>11}{s.rejected:>9}{s.resolved:>9}"
        )
    t = report.totals()
    lines.append(
        f"{'total':<12}{t.requested:>10}{t.escalated:>10}{t.refused:>9}{t.incomplete:>11}"
        f"{t.rejected:>9}{t.resolved:>9}"
    )
    lines.append("")
    lines.append(f"Peak active escalations: {report.peak_active}")
    for title, counter in (
        ("Refusals by reason", report.refusals),
        ("Limit hits", report.limit_hits),
        ("Blocked commands", report.blocked_commands),
        ("Final states", report.final_states),
    ):
        lines.append(f"{title}:" + ("" if counter else " none"))
        lines.extend(f"  {name}: {n}" for name, n in counter.most_common())
    return "\n".join(lines)
