"""The escalations board: active escalations, approvals waiting, recent outcomes, and the
policy's limits as used today."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from escalation.decide import day_start
from escalation.policy import Policy
from mapping.model import EscalationState
from sync.config.settings import Settings
from sync.console.readmodel.records import ReadRecords
from sync.console.readmodel.shared import (
    STATE_LABELS,
    Record,
    RecordRef,
    custom,
    installed,
    key_of,
    person,
    split_ref,
    text_of,
    url_of,
    when,
)
from sync.procedure.ledger import LedgerRow
from sync.store.database import Store, StoreSession

# How long refusals, rejections and incomplete requests stay on the board.
RECENT = timedelta(hours=24)
LIMIT = 500
DECIDED = ("refused", "rejected", "incomplete", "requested", "resolved", "closed")


@dataclass(frozen=True, slots=True)
class LimitUse:
    """One limit of the policy as used now: "2 of 3 today"."""

    name: str
    used: int
    limit: int | None
    unit: str

    @property
    def text(self) -> str:
        """The count in words."""
        if self.limit is None:
            return f"{self.used} {self.unit} (no limit)"
        return f"{self.used} of {self.limit} {self.unit}"

    @property
    def reached(self) -> bool:
        """No room left under this limit."""
        return self.limit is not None and self.used >= self.limit


@dataclass(frozen=True, slots=True)
class BoardRow:
    """One escalation on the board."""

    ref: str
    system: str
    ident: str
    key: str
    summary: str
    priority: str | None
    level: str | None
    state: str
    assignee: str | None
    team: str | None
    requested_at: datetime | None
    requested_by: str | None
    reason: str | None
    approved_at: datetime | None
    approved_by: str | None
    released_at: datetime | None
    updated_at: datetime | None
    sla_due: datetime | None
    url: str | None
    engineering_key: str | None
    engineering_url: str | None
    approval_due: datetime | None

    @property
    def state_label(self) -> str:
        """The state in words."""
        return STATE_LABELS.get(self.state, self.state)

    @property
    def since(self) -> datetime | None:
        """When it entered its current state (approval for active ones)."""
        return self.approved_at or self.requested_at or self.updated_at

    @property
    def active(self) -> bool:
        """Approved and not released."""
        return self.approved_at is not None and self.released_at is None


@dataclass(frozen=True, slots=True)
class Board:
    """The escalations board."""

    at: datetime
    active: tuple[BoardRow, ...]
    waiting: tuple[BoardRow, ...]
    recent: tuple[BoardRow, ...]
    limits: tuple[LimitUse, ...]
    per_assignee: tuple[tuple[str, int], ...]
    per_assignee_limit: int | None
    levels: tuple[str, ...]
    priorities: tuple[str, ...]
    teams: tuple[str, ...]
    policy_name: str
    timezone: str


@dataclass(frozen=True, slots=True)
class BoardFilter:
    """What the board is narrowed to (empty: everything)."""

    level: str = ""
    priority: str = ""
    team: str = ""

    def keeps(self, row: BoardRow) -> bool:
        """Whether a row passes every filter."""
        return (
            (not self.level or row.level == self.level)
            and (not self.priority or row.priority == self.priority)
            and (not self.team or row.team == self.team)
        )

    @property
    def active(self) -> bool:
        """Whether anything is filtered."""
        return bool(self.level or self.priority or self.team)


def read_board(
    store: Store, settings: Settings, records: ReadRecords, now: datetime, chosen: BoardFilter
) -> Board:
    """Active escalations, approvals waiting, recent outcomes, and the limits in use."""
    policy = settings.compiled_policy
    timezone = policy.timezone if policy else "UTC"
    with store.reading() as tx:
        rows = _ledger_rows(tx, now - RECENT)
        today = _approved_since(tx, day_start(now, timezone))
        built = _rows(tx, settings, records, rows)
    active = [r for r in built if r.active]
    waiting = [r for r in built if r.state == EscalationState.PENDING_APPROVAL.value]
    taken = {r.ref for r in [*active, *waiting]}
    recent = [
        r
        for r in built
        if r.ref not in taken
        and r.state in DECIDED
        and r.updated_at is not None
        and r.updated_at >= now - RECENT
    ]
    per_assignee = Counter(r.assignee for r in active if r.assignee)
    limits = policy.limits if policy else None
    levels, priorities, teams = _values([*active, *waiting, *recent])
    return Board(
        at=now,
        active=tuple(
            sorted(
                filter(chosen.keeps, active),
                key=lambda r: (_level_rank(policy, r.level), r.since or now),
            )
        ),
        waiting=tuple(sorted(filter(chosen.keeps, waiting), key=lambda r: r.since or now)),
        recent=tuple(
            sorted(filter(chosen.keeps, recent), key=lambda r: r.updated_at or now, reverse=True)
        ),
        limits=(
            LimitUse("per day", today, limits.max_per_day if limits else None, "today"),
            LimitUse("active", len(active), limits.max_active if limits else None, "active"),
        ),
        per_assignee=tuple(sorted(per_assignee.items(), key=lambda i: (-i[1], i[0]))),
        per_assignee_limit=limits.max_active_per_assignee if limits else None,
        levels=tuple(dict.fromkeys([*_level_names(policy), *sorted(levels)])),
        priorities=tuple(sorted(priorities)),
        teams=tuple(sorted(teams)),
        policy_name=policy.name if policy else "none",
        timezone=timezone,
    )


def _ledger_rows(tx: StoreSession, recent_since: datetime) -> list[LedgerRow]:
    """The ledger rows the board shows: active, awaiting approval, or decided lately."""
    active = sa.and_(LedgerRow.approved_at.is_not(None), LedgerRow.released_at.is_(None))
    stmt = (
        sa.select(LedgerRow)
        .where(
            sa.or_(
                active,
                LedgerRow.state == EscalationState.PENDING_APPROVAL.value,
                LedgerRow.updated_at >= recent_since,
            )
        )
        .order_by(LedgerRow.updated_at.desc())
        .limit(LIMIT)
    )
    return list(tx.orm.scalars(stmt))


def _approved_since(tx: StoreSession, start: datetime) -> int:
    """Escalations approved since `start` (today's count against the daily limit)."""
    stmt = sa.select(sa.func.count()).select_from(LedgerRow).where(LedgerRow.approved_at >= start)
    return int(tx.orm.scalar(stmt) or 0)


def _rows(
    tx: StoreSession, settings: Settings, records: ReadRecords, rows: Sequence[LedgerRow]
) -> list[BoardRow]:
    """Each ledger row with its record (snapshot, else read from its system) and its pair."""
    refs = [split_ref(r.ticket_ref) for r in rows]
    known = [ref for ref in refs if installed(ref[0]) and ref[1]]
    tickets: dict[RecordRef, Record] = {k: s.data for k, s in tx.get_snapshots(known).items()}
    tickets.update(records([ref for ref in known if ref not in tickets]))
    partners: dict[RecordRef, RecordRef] = {}
    for system in {s for s, _ in known}:
        for ident, link in tx.get_links(system, [i for s, i in known if s == system]).items():
            partners[(system, ident)] = link.other(system)
    engineering = {k: s.data for k, s in tx.get_snapshots(partners.values()).items()}
    team_field = settings.console.team_field
    policy = settings.compiled_policy
    built = []
    for row, ref in zip(rows, refs, strict=True):
        ticket = tickets.get(ref, {})
        partner = partners.get(ref)
        eng = engineering.get(partner, {}) if partner else {}
        priority = ticket.get("priority")
        waiting = row.state == EscalationState.PENDING_APPROVAL.value
        built.append(
            BoardRow(
                ref=row.ticket_ref,
                system=ref[0],
                ident=ref[1],
                key=key_of(ticket) or ref[1],
                summary=str(ticket.get("summary") or ""),
                priority=priority,
                level=row.level,
                state=row.state,
                assignee=person(ticket.get("assignee")) or row.assignee,
                team=text_of(custom(ticket, team_field)) or text_of(custom(eng, team_field)),
                requested_at=row.requested_at,
                requested_by=row.requested_by,
                reason=row.reason,
                approved_at=row.approved_at,
                approved_by=row.approved_by,
                released_at=row.released_at,
                updated_at=row.updated_at,
                sla_due=when(custom(ticket, "sla_due")),
                url=url_of(ticket),
                engineering_key=key_of(eng) or (partner[1] if partner else row.engineering_ref),
                engineering_url=url_of(eng),
                approval_due=_approval_due(policy, priority, row.requested_at) if waiting else None,
            )
        )
    return built


def _approval_due(
    policy: Policy | None, priority: str | None, requested_at: datetime | None
) -> datetime | None:
    if policy is None or requested_at is None or not priority:
        return None
    rule = next((r for p, r in policy.priorities.items() if p.value == priority), None)
    hours = rule.approval_within_hours if rule else None
    return requested_at + timedelta(hours=hours) if hours else None


def _level_names(policy: Policy | None) -> list[str]:
    return [lv.name for lv in policy.levels] if policy else []


def _level_rank(policy: Policy | None, level: str | None) -> int:
    names = _level_names(policy)
    return -names.index(level) if level in names else 0


def _values(rows: Iterable[BoardRow]) -> tuple[set[str], set[str], set[str]]:
    """The levels, priorities and teams the rows have (the filters' options)."""
    kept = list(rows)
    return (
        {r.level for r in kept if r.level},
        {r.priority for r in kept if r.priority},
        {r.team for r in kept if r.team},
    )
