"""Everything the console's pages show, read in one place: store, ledger, outbox, audit log, dead
letters, watermarks, the queue and the daemon's own metrics.

Pages get frozen dataclasses, never rows or sessions; each page is a handful of queries in one
read-only transaction (SQLite readers never wait for the writer). When the store's tables change,
this module is the one to adapt.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError

import presets
from escalation.decide import day_start, decide
from escalation.decision import EngineeringStatus, decision_to_dict
from escalation.explain import describe_action
from escalation.policy import Policy
from escalation.simulate import SimulationReport, SnapshotInvalid, simulate, snapshot_from_json
from mapping.model import EscalationState, Status, Ticket
from sync.config.settings import Settings
from sync.notify.outbox import DEAD, PENDING, SENDING, UNKNOWN, OutboxEntry
from sync.notify.outbox import list_entries as outbox_entries
from sync.notify.outbox import status_counts as outbox_status_counts
from sync.procedure.ledger import LedgerRow, ledger_view
from sync.runtime import metrics
from sync.runtime.health import HeldEventRow, SystemHealthRow
from sync.store.database import AuditEntry, DeadLetter, Link, Snapshot, Store, StoreSession

SYSTEM_NAMES = {"jira": "Jira", "servicenow": "ServiceNow", "email": "Email", "console": "Console"}
STATE_LABELS = {
    "none": "No escalation",
    "requested": "Requested",
    "incomplete": "Incomplete",
    "pending_approval": "Awaiting approval",
    "approved": "Escalated",
    "rejected": "Rejected",
    "refused": "Refused",
    "resolved": "Resolved",
    "closed": "Closed",
}
# How long refusals, rejections and incomplete requests stay on the board.
RECENT = timedelta(hours=24)
BOARD_LIMIT = 500
TIMELINE_LIMIT = 300
WHAT_IF_MAX_LINES = 5000
# Records without a snapshot are read from their system: kept this long, retried after a
# failure after RECORD_RETRY, at most RECORD_BATCH per page and RECORD_WAIT seconds in all.
RECORD_TTL = 600.0
RECORD_RETRY = 60.0
RECORD_BATCH = 50
RECORD_WAIT = 3.0
_SECRET_KEY = re.compile(r"secret|token|password|passwd|credential|private|(^|_)pat$|api_key", re.I)
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]+(?=@)", re.I)


# --- what the pages are given ---------------------------------------------------------------


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


@dataclass(frozen=True, slots=True)
class Side:
    """One record of a pair, as last synced."""

    system: str
    ident: str
    key: str
    url: str | None
    summary: str | None
    status: str | None
    priority: str | None
    assignee: str | None
    labels: tuple[str, ...]
    synced_at: datetime | None

    @property
    def system_name(self) -> str:
        """Jira or ServiceNow."""
        return SYSTEM_NAMES.get(self.system, self.system)


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One audited write or action, on either record of the pair."""

    at: datetime
    system: str
    record: str
    field: str
    from_value: str | None
    to_value: str | None
    reason: str
    actor: str | None

    @property
    def system_name(self) -> str:
        """The system in words."""
        return SYSTEM_NAMES.get(self.system, self.system)


@dataclass(frozen=True, slots=True)
class TicketView:
    """A pair's page: both records, the escalation, every write, mails and dead letters."""

    ref: str
    itsm: Side
    engineering: Side | None
    state: str
    level: str | None
    requested_at: datetime | None
    requested_by: str | None
    reason: str | None
    approved_at: datetime | None
    approved_by: str | None
    released_at: datetime | None
    timeline: tuple[TimelineEntry, ...]
    mails: tuple[OutboxEntry, ...]
    dead_letters: tuple[DeadLetter, ...]
    chat: tuple[tuple[str, str], ...]

    @property
    def state_label(self) -> str:
        """The escalation state in words."""
        return STATE_LABELS.get(self.state, self.state)


@dataclass(frozen=True, slots=True)
class TraceRule:
    """One rule of a decision trace."""

    rule: str
    outcome: str
    detail: str


@dataclass(frozen=True, slots=True)
class Trace:
    """What `explain` prints for a ticket, decided now on the record as read from its system."""

    at: datetime
    before: str
    after: str
    level: str | None
    today: int
    active: int
    assignee: str | None
    assignee_active: int
    rules: tuple[TraceRule, ...]
    next_actions: tuple[str, ...]
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SystemHealth:
    """One system as the daemon finds it."""

    system: str
    up: bool | None
    summary: str
    polled_at: datetime | None
    watermark: datetime | None
    poll_interval: int | None
    last_success_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    failures_in_a_row: int
    paused: bool

    @property
    def name(self) -> str:
        """The system in words."""
        return SYSTEM_NAMES.get(self.system, self.system)


@dataclass(frozen=True, slots=True)
class Sample:
    """The daemon at one moment: mean lag per system since the sample before, queue depth."""

    at: datetime
    lag: dict[str, float | None]
    queue_depth: int
    polls: dict[str, tuple[float, float]]


@dataclass(frozen=True, slots=True)
class Health:
    """The sync health page."""

    at: datetime
    systems: tuple[SystemHealth, ...]
    queue_depth: int | None
    locks_held: int
    samples: tuple[Sample, ...]
    sampling_since: datetime | None
    dead_letters: tuple[DeadLetter, ...]
    replayed_recently: tuple[DeadLetter, ...]
    outbox: tuple[OutboxEntry, ...]
    outbox_counts: dict[str, int]
    pairs: int


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """The last time the configuration was (re)loaded, and how it went."""

    at: datetime
    ok: bool
    errors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ConfigView:
    """The configuration page: what is loaded (no secret), and the last reload."""

    source: str
    digest: str
    loaded_at: datetime | None
    last_reload: ReloadResult | None
    connections: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]
    mapping_text: str
    mapping_source: str
    policy_text: str
    policy_source: str
    policy_name: str
    levels: tuple[str, ...]
    limits: tuple[tuple[str, str], ...]
    presets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class WhatIf:
    """A what-if run: the report, or why the input was refused."""

    policy: str
    report: SimulationReport | None
    problems: tuple[str, ...] = ()


# --- the read model -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Loaded:
    """What the read model needs of the configuration holder."""

    settings: Settings
    digest: str
    loaded_at: datetime | None


class ReadModel:
    """The console's window on the daemon's state."""

    def __init__(
        self,
        store: Store,
        loaded: Callable[[], Loaded],
        *,
        queue_depth: Callable[[], int] | None = None,
        last_reload: Callable[[], ReloadResult | None] | None = None,
        history: LagHistory | None = None,
        read_ticket: Callable[[Any, str], Ticket] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self._loaded = loaded
        self._queue_depth = queue_depth
        self._last_reload = last_reload
        self.history = history
        self._read_ticket = read_ticket
        self.clock = clock
        # Records the store keeps no snapshot of (an ITSM ticket not paired yet), as read from
        # their system: (monotonic time read, canonical JSON or None when the read failed).
        self._records: dict[tuple[str, str], tuple[float, dict[str, Any] | None]] = {}
        self._records_lock = threading.Lock()

    @property
    def settings(self) -> Settings:
        """The settings in force."""
        return self._loaded().settings

    @property
    def policy(self) -> Policy | None:
        """The escalation policy in force."""
        policy = getattr(self.settings, "compiled_policy", None)
        return policy if isinstance(policy, Policy) else None

    # -- the board

    def board(self, chosen: BoardFilter = BoardFilter()) -> Board:
        """Active escalations, approvals waiting, recent refusals, and the limits in use."""
        now = self.clock()
        policy = self.policy
        timezone = policy.timezone if policy else "UTC"
        start = day_start(now, timezone)
        with self.store.reading() as tx:
            rows = _ledger_rows(tx, now - RECENT)
            today = int(
                tx.orm.scalar(
                    sa.select(sa.func.count())
                    .select_from(LedgerRow)
                    .where(LedgerRow.approved_at >= start)
                )
                or 0
            )
            built = self._rows(tx, rows)
        active = [r for r in built if r.approved_at is not None and _released(rows, r) is None]
        waiting = [r for r in built if r.state == EscalationState.PENDING_APPROVAL.value]
        taken = {r.ref for r in active} | {r.ref for r in waiting}
        recent = [
            r
            for r in built
            if r.ref not in taken
            and r.state in ("refused", "rejected", "incomplete", "requested", "resolved", "closed")
            and r.updated_at is not None
            and r.updated_at >= now - RECENT
        ]
        per_assignee: dict[str, int] = {}
        for r in active:
            if r.assignee:
                per_assignee[r.assignee] = per_assignee.get(r.assignee, 0) + 1
        limits = policy.limits if policy else None
        uses = (
            LimitUse("per day", today, limits.max_per_day if limits else None, "today"),
            LimitUse("active", len(active), limits.max_active if limits else None, "active"),
        )
        everything = [*active, *waiting, *recent]
        return Board(
            at=now,
            active=tuple(
                sorted(
                    (r for r in active if chosen.keeps(r)),
                    key=lambda r: (_level_rank(policy, r.level), r.since or now),
                )
            ),
            waiting=tuple(
                sorted((r for r in waiting if chosen.keeps(r)), key=lambda r: r.since or now)
            ),
            recent=tuple(
                sorted(
                    (r for r in recent if chosen.keeps(r)),
                    key=lambda r: r.updated_at or now,
                    reverse=True,
                )
            ),
            limits=uses,
            per_assignee=tuple(sorted(per_assignee.items(), key=lambda i: (-i[1], i[0]))),
            per_assignee_limit=limits.max_active_per_assignee if limits else None,
            levels=tuple(
                dict.fromkeys(
                    [
                        *(lv.name for lv in (policy.levels if policy else ())),
                        *_values(everything, "level"),
                    ]
                )
            ),
            priorities=tuple(sorted(_values(everything, "priority"))),
            teams=tuple(sorted(_values(everything, "team"))),
            policy_name=policy.name if policy else "none",
            timezone=timezone,
        )

    def _rows(self, tx: StoreSession, rows: Sequence[LedgerRow]) -> list[BoardRow]:
        refs = [_split(r.ticket_ref) for r in rows]
        snapshots = {
            key: snap.data for key, snap in tx.get_snapshots([(s, i) for s, i in refs if i]).items()
        }
        snapshots.update(self.records([ref for ref in refs if ref not in snapshots]))
        links: dict[tuple[str, str], Any] = {}
        for system in {s for s, _ in refs}:
            if system in self.settings.systems:
                found = tx.get_links(system, [i for s, i in refs if s == system])
                links.update({(system, k): v for k, v in found.items()})
        engineering: dict[tuple[str, str], tuple[str, str]] = {}
        for (system, ident), link in links.items():
            engineering[(system, ident)] = link.other(system)
        eng_snaps = tx.get_snapshots(list(engineering.values()))
        team_field = _team_field(self.settings)
        policy = self.policy
        built = []
        for row, (system, ident) in zip(rows, refs, strict=True):
            ticket = snapshots.get((system, ident)) or {}
            eng_ref = engineering.get((system, ident))
            eng = eng_snaps.get(eng_ref) if eng_ref else None
            eng_data = eng.data if eng else {}
            built.append(
                BoardRow(
                    ref=row.ticket_ref,
                    system=system,
                    ident=ident,
                    # The ledger keeps the key and priority once the store has those columns;
                    # before, the last snapshot of a paired record has them.
                    key=getattr(row, "ticket_key", None) or _key_of(ticket) or ident,
                    summary=str(ticket.get("summary") or ""),
                    priority=getattr(row, "priority", None) or ticket.get("priority"),
                    level=row.level,
                    state=row.state,
                    assignee=_person(ticket.get("assignee")) or row.assignee,
                    team=_team(ticket, eng_data, team_field),
                    requested_at=row.requested_at,
                    requested_by=row.requested_by,
                    reason=row.reason,
                    approved_at=row.approved_at,
                    approved_by=row.approved_by,
                    updated_at=row.updated_at,
                    sla_due=_when(_custom(ticket, "sla_due")),
                    url=(ticket.get("ref") or {}).get("url"),
                    engineering_key=(_key_of(eng_data) or (eng_ref[1] if eng_ref else None))
                    or row.engineering_ref,
                    engineering_url=(eng_data.get("ref") or {}).get("url"),
                    approval_due=_approval_due(policy, ticket.get("priority"), row.requested_at)
                    if row.state == EscalationState.PENDING_APPROVAL.value
                    else None,
                )
            )
        return built

    # -- a ticket

    def ticket(self, system: str, ident: str) -> TicketView | None:
        """A pair's page, found by either record (id, key or number); None when unknown."""
        with self.store.reading() as tx:
            link = tx.get_link(system, ident) if system in self.settings.systems else None
            if link is not None:
                itsm_system, itsm_id = self._itsm_side(link)
            else:
                itsm_system, itsm_id = system, self._stable_id(tx, system, ident)
            entry = tx.orm.scalars(
                sa.select(LedgerRow).where(LedgerRow.ticket_ref == f"{itsm_system}:{itsm_id}")
            ).first()
            itsm_snap = tx.get_snapshot(itsm_system, itsm_id)
            if itsm_snap is None and entry is None and link is None:
                return None
            eng_side: Side | None = None
            eng_key: str | None = None
            records = [(itsm_system, itsm_id)]
            if link is not None:
                eng_system, eng_id = link.other(itsm_system)
                eng_snap = tx.get_snapshot(eng_system, eng_id)
                eng_side = _side(eng_system, eng_id, eng_snap)
                eng_key = eng_side.key
                records.append((eng_system, eng_id))
            itsm_side = _side(itsm_system, itsm_id, itsm_snap)
            if itsm_snap is None:
                fresh = self.records([(itsm_system, itsm_id)]).get((itsm_system, itsm_id))
                if fresh is not None:
                    itsm_side = _side(itsm_system, itsm_id, None, fresh)
            itsm_key = link.side(itsm_system).record_key if link is not None else None
            if itsm_key and itsm_key != itsm_id:
                itsm_side = _replace_key(itsm_side, itsm_key)
            audit: list[AuditEntry] = []
            for rec_system, record in records:
                audit.extend(tx.list_audit(system=rec_system, record=record, limit=TIMELINE_LIMIT))
            names = {itsm_side.key, itsm_id, *([eng_key] if eng_key else [])}
            for name in names - {itsm_id}:
                # Outbox actions are audited under their channel and the ticket's key.
                audit.extend(tx.list_audit(record=name, limit=TIMELINE_LIMIT))
            mails = [m for name in names for m in outbox_entries(tx, ticket=name, limit=200)]
            dead = [
                d
                for d in tx.list_dead_letters(include_replayed=True)
                if (d.system, d.ticket) in set(records) or d.ticket in names
            ]
        timeline = sorted(
            {a.id: a for a in audit}.values(), key=lambda a: (a.at, a.id), reverse=True
        )
        return TicketView(
            ref=f"{itsm_system}:{itsm_id}",
            itsm=itsm_side,
            engineering=eng_side,
            state=entry.state if entry else "none",
            level=entry.level if entry else None,
            requested_at=entry.requested_at if entry else None,
            requested_by=entry.requested_by if entry else None,
            reason=entry.reason if entry else None,
            approved_at=entry.approved_at if entry else None,
            approved_by=entry.approved_by if entry else None,
            released_at=entry.released_at if entry else None,
            timeline=tuple(
                TimelineEntry(
                    a.at, a.system, a.record, a.field, a.from_value, a.to_value, a.reason, a.actor
                )
                for a in timeline[:TIMELINE_LIMIT]
            ),
            mails=tuple(sorted({m.id: m for m in mails}.values(), key=lambda m: m.id)),
            dead_letters=tuple(sorted(dead, key=lambda d: d.id, reverse=True)),
            chat=tuple(
                dict.fromkeys(
                    (m.channel, m.result_ref)
                    for m in mails
                    if m.channel != "email" and m.kind == "resource" and m.result_ref
                )
            ),
        )

    def records(self, refs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        """Records the store has no snapshot of, read from their systems (a few at a time, for
        at most `RECORD_WAIT` seconds in all) and kept for `RECORD_TTL`; those that cannot be
        read now are left out, and the page shows their id."""
        if self._read_ticket is None or not refs:
            return {}
        now = time.monotonic()
        found: dict[tuple[str, str], dict[str, Any]] = {}
        wanted: list[tuple[str, str]] = []
        with self._records_lock:
            for ref in dict.fromkeys(refs):
                cached = self._records.get(ref)
                ttl = RECORD_TTL if cached and cached[1] is not None else RECORD_RETRY
                if cached is not None and now - cached[0] < ttl:
                    if cached[1] is not None:
                        found[ref] = cached[1]
                else:
                    wanted.append(ref)
        if not wanted:
            return found
        read = self._read_ticket
        settings = self.settings

        def fetch(ref: tuple[str, str]) -> dict[str, Any] | None:
            try:
                return read(settings, f"{ref[0]}:{ref[1]}").model_dump(mode="json")  # type: ignore[no-any-return]
            except Exception:
                return None

        pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="console-read")
        futures = {ref: pool.submit(fetch, ref) for ref in wanted[:RECORD_BATCH]}
        done, _ = wait(futures.values(), timeout=RECORD_WAIT)
        pool.shutdown(wait=False, cancel_futures=True)
        with self._records_lock:
            for ref, future in futures.items():
                if future in done:
                    data = future.result()
                    self._records[ref] = (now, data)
                    if data is not None:
                        found[ref] = data
            if len(self._records) > 5000:
                self._records.clear()
        return found

    def _itsm_side(self, link: Link) -> tuple[str, str]:
        """The side escalations are decided on: where the mapping's routes start."""
        itsm = sorted(self.settings.mapping_model.itsm_systems())
        for side in link.sides:
            if side.system in itsm:
                return (side.system, side.ticket_id)
        first = link.sides[0]
        return (first.system, first.ticket_id)

    @staticmethod
    def _stable_id(tx: StoreSession, system: str, ident: str) -> str:
        """A ServiceNow number or a Jira key seen in a snapshot, as the id snapshots use."""
        if tx.get_snapshot(system, ident) is not None:
            return ident
        table = sa.table(
            "snapshots", sa.column("system"), sa.column("ticket_id"), sa.column("data")
        )
        for row in tx.orm.execute(
            sa.select(table.c.ticket_id, table.c.data).where(table.c.system == system).limit(5000)
        ):
            data = row.data if isinstance(row.data, dict) else json.loads(row.data or "{}")
            if (data.get("ref") or {}).get("key") == ident:
                return str(row.ticket_id)
        return ident

    def trace(self, ref: str) -> Trace:
        """The decision trace for the ITSM record `ref` ("system:id"), as `explain` gives it:
        the record read from its system now, decided against the ledger, nothing recorded.

        Raises what reading the record raises (the page shows it) and LookupError when no
        policy is configured.
        """
        policy = self.policy
        if policy is None or self._read_ticket is None:
            raise LookupError("no escalation policy is configured")
        ticket = self._read_ticket(self.settings, ref)
        now = self.clock()
        system, ident = _split(ref)
        with self.store.reading() as tx:
            view = ledger_view(tx, ticket, now, policy)
            link = tx.get_link(system, ident) if system in self.settings.systems else None
            engineering = None
            if link is not None:
                eng = tx.get_snapshot(*link.other(system))
                if eng is not None and eng.data.get("status"):
                    engineering = EngineeringStatus(None, Status(eng.data["status"]))
        decision = decide(ticket, view, now, policy, engineering=engineering)
        before = view.entry.state.value if view.entry else "none"
        assignee = decision.assignee
        return Trace(
            at=now,
            before=before,
            after=decision.state.value,
            level=decision.level,
            today=view.escalations_today,
            active=view.active_count,
            assignee=assignee,
            assignee_active=view.active_by_assignee.get(assignee, 0) if assignee else 0,
            rules=tuple(TraceRule(r.rule, r.outcome, r.detail) for r in decision.reasons),
            next_actions=tuple(describe_action(a) for a in decision.actions),
            data=decision_to_dict(decision),
        )

    # -- health

    def health(self) -> Health:
        """Per-system state, queue, lag over the last hour, dead letters and the outbox."""
        now = self.clock()
        with self.store.reading() as tx:
            counts = tx.status_counts()
            locks = len(tx.list_locks())
            dead = tx.list_dead_letters()
            replayed = [
                d
                for d in tx.list_dead_letters(include_replayed=True)
                if d.replayed_at is not None and d.replayed_at >= now - timedelta(hours=1)
            ]
            outbox = _outbox_attention(tx)
            outbox_counts = outbox_status_counts(tx)
            boards = {r.system: r for r in tx.orm.scalars(sa.select(SystemHealthRow))}
            held = {
                str(system): int(n)
                for system, n in tx.orm.execute(
                    sa.select(HeldEventRow.waiting_for, sa.func.count()).group_by(
                        HeldEventRow.waiting_for
                    )
                )
            }
        depth: int | None = None
        if self._queue_depth is not None:
            try:
                depth = int(self._queue_depth())
            except Exception:
                depth = None
        samples = self.history.samples() if self.history else ()
        itsm = sorted(self.settings.mapping_model.itsm_systems())
        configured = [*itsm, *sorted(set(self.settings.systems) - set(itsm))]
        names = [*configured, *sorted(set(boards) - set(configured))]
        systems = tuple(
            self._system_health(
                system,
                counts.watermarks.get(system),
                boards.get(system),
                held.get(system, 0),
                dead,
                samples,
                now,
            )
            for system in names
        )
        return Health(
            at=now,
            systems=systems,
            queue_depth=depth,
            locks_held=locks,
            samples=samples,
            sampling_since=self.history.since if self.history else None,
            dead_letters=tuple(sorted(dead, key=lambda d: d.id, reverse=True)),
            replayed_recently=tuple(sorted(replayed, key=lambda d: d.id, reverse=True)),
            outbox=tuple(outbox),
            outbox_counts=outbox_counts,
            pairs=counts.links,
        )

    def _system_health(
        self,
        system: str,
        mark: Any,
        board: SystemHealthRow | None,
        held: int,
        dead: Sequence[DeadLetter],
        samples: Sequence[Sample],
        now: datetime,
    ) -> SystemHealth:
        """A system's state from the health board the daemon shares (last success, last error,
        failures in a row, pause), its poller's watermark, and this process's poll samples."""
        section = self.settings.systems.get(system)
        interval = int(getattr(section, "poll_interval_seconds", 0) or 0) or None
        polled = mark.polled_at if mark else None
        last_ok, last_failed = _poll_outcomes(system, samples)
        failures = int(board.consecutive_failures or 0) if board else 0
        paused = board is not None and board.paused_at is not None
        late = (
            polled is not None
            and interval is not None
            and now - polled > timedelta(seconds=max(3 * interval, 120))
        )
        up: bool | None
        if paused:
            up, summary = False, f"paused: {board.paused_reason if board else ''}"
        elif failures:
            up, summary = False, f"failing since {_short(board.failing_since if board else None)}"
        elif last_failed is not None and (last_ok is None or last_failed > last_ok):
            up, summary = False, "polls failing"
        elif interval is not None and polled is None and board is None:
            up, summary = None, "not polled yet"
        elif late:
            up, summary = False, "polls late"
        else:
            up, summary = True, "answering" if interval is None else "polling"
        if held:
            summary += f"; {held} event{'s' if held != 1 else ''} waiting for it"
        last_error, last_error_at = (
            (board.last_error, board.last_error_at) if board else (None, None)
        )
        if last_error is None:
            # Before the board knew of a failure, the newest dead letter says what went wrong.
            errors = [d for d in dead if d.system == system]
            if errors:
                last_error = f"{errors[-1].error_class}: {errors[-1].reason}"
                last_error_at = errors[-1].created_at
        return SystemHealth(
            system=system,
            up=up,
            summary=summary,
            polled_at=polled,
            watermark=mark.value if mark else None,
            poll_interval=interval,
            last_success_at=(board.last_success_at if board else None) or last_ok or polled,
            last_error=last_error,
            last_error_at=last_error_at,
            failures_in_a_row=failures,
            paused=paused,
        )

    # -- configuration

    def configuration(self) -> ConfigView:
        """The loaded configuration, secrets left out, and the last reload's outcome."""
        loaded = self._loaded()
        settings = loaded.settings
        policy = self.policy
        source = str(getattr(settings, "source", "") or "")
        base = Path(source).parent if source else Path.cwd()
        mapping_source, mapping_text = _table_or_file(
            getattr(settings, "mapping_file", None),
            getattr(settings, "mapping", {}),
            base,
            "mapping",
        )
        policy_source, policy_text = _table_or_file(
            getattr(settings, "policy_file", None),
            getattr(settings, "escalation", {}),
            base,
            "escalation",
        )
        limits: list[tuple[str, str]] = []
        if policy is not None:
            for name in ("max_per_day", "max_active", "max_active_per_assignee"):
                value = getattr(policy.limits, name)
                limits.append((name, "no limit" if value is None else str(value)))
        return ConfigView(
            source=source or "(built-in example)",
            digest=loaded.digest,
            loaded_at=loaded.loaded_at,
            last_reload=self._last_reload() if self._last_reload else None,
            connections=_connections(settings),
            mapping_text=mapping_text,
            mapping_source=mapping_source,
            policy_text=policy_text,
            policy_source=policy_source,
            policy_name=policy.name if policy else "none",
            levels=tuple(lv.name for lv in policy.levels) if policy else (),
            limits=tuple(limits),
            presets=tuple(presets.preset_names()),
        )

    def what_if(
        self, policy_name: str, tickets: str, overrides: Mapping[str, int | None]
    ) -> WhatIf:
        """`policy simulate` over pasted or uploaded ticket snapshots (JSON Lines)."""
        problems: list[str] = []
        chosen: Policy | None
        if policy_name in ("", "current"):
            chosen = self.policy
            if chosen is None:
                return WhatIf("none", None, ("no escalation policy is configured",))
        elif policy_name in presets.preset_names():
            chosen = presets.load_preset(policy_name)
        else:
            return WhatIf(policy_name, None, (f"no policy or preset named {policy_name!r}",))
        changed = {k: v for k, v in overrides.items() if v is not None}
        if changed:
            try:
                chosen = chosen.model_copy(
                    update={
                        "limits": chosen.limits.model_validate(
                            {**chosen.limits.model_dump(), **changed}
                        )
                    }
                )
            except ValidationError as exc:
                return WhatIf(chosen.name, None, tuple(e["msg"] for e in exc.errors()))
        snapshots = []
        lines = tickets.splitlines()
        if len(lines) > WHAT_IF_MAX_LINES:
            return WhatIf(chosen.name, None, (f"more than {WHAT_IF_MAX_LINES} lines",))
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                snapshots.append(snapshot_from_json(json.loads(line)))
            except (json.JSONDecodeError, ValidationError, SnapshotInvalid, ValueError) as exc:
                problems.append(f"line {n}: {str(exc).splitlines()[0][:300]}")
            except (TypeError, AttributeError):
                problems.append(f"line {n}: not a JSON object")
        if problems:
            return WhatIf(chosen.name, None, tuple(problems[:20]))
        if not snapshots:
            return WhatIf(chosen.name, None, ("no ticket snapshots given",))
        return WhatIf(chosen.name, simulate(chosen, snapshots))


# --- the lag plot's samples ---------------------------------------------------------------------


class LagHistory:
    """Samples of the daemon's sync lag, queue depth and poll outcomes, kept for an hour.

    The lag histogram counts every change written since start; the mean lag of an interval is
    the growth of its sum over the growth of its count between two samples.
    """

    def __init__(
        self,
        queue_depth: Callable[[], int] | None = None,
        *,
        every: float = 30.0,
        keep: timedelta = timedelta(hours=1),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.every = every
        self._queue_depth = queue_depth
        self._clock = clock
        self._samples: deque[Sample] = deque(maxlen=max(2, int(keep.total_seconds() // every) + 1))
        self._last: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.since: datetime | None = None

    def sample(self) -> Sample:
        """Take one sample now."""
        totals = _lag_totals()
        lag: dict[str, float | None] = {}
        with self._lock:
            for system, (total, count) in totals.items():
                before_total, before_count = self._last.get(system, (0.0, 0.0))
                grown = count - before_count
                lag[system] = (total - before_total) / grown if grown > 0 else None
            self._last = totals
            depth = 0
            if self._queue_depth is not None:
                try:
                    depth = int(self._queue_depth())
                except Exception:
                    depth = 0
            taken = Sample(self._clock(), lag, depth, _poll_counts())
            if self.since is None:
                self.since = taken.at
            self._samples.append(taken)
        return taken

    def samples(self) -> tuple[Sample, ...]:
        """The samples kept, oldest first."""
        with self._lock:
            return tuple(self._samples)

    def start(self) -> None:
        """Sample in a background thread until `stop()`."""
        self.sample()
        self._thread = threading.Thread(target=self._run, name="console-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the sampling thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.sample()
            except Exception:  # a sample lost is a gap in the plot, never a dead console
                time.sleep(0)


def _lag_totals() -> dict[str, tuple[float, float]]:
    totals: dict[str, list[float]] = {}
    for family in metrics.SYNC_LAG.collect():
        for sample in family.samples:
            system = sample.labels.get("system", "")
            slot = totals.setdefault(system, [0.0, 0.0])
            if sample.name.endswith("_sum"):
                slot[0] = float(sample.value)
            elif sample.name.endswith("_count"):
                slot[1] = float(sample.value)
    return {k: (v[0], v[1]) for k, v in totals.items()}


def _poll_counts() -> dict[str, tuple[float, float]]:
    """Per system, (polls that succeeded, polls that failed) since start."""
    counts: dict[str, list[float]] = {}
    for family in metrics.POLLS.collect():
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            slot = counts.setdefault(sample.labels.get("system", ""), [0.0, 0.0])
            slot[0 if sample.labels.get("outcome") == "ok" else 1] += float(sample.value)
    return {k: (v[0], v[1]) for k, v in counts.items()}


def _poll_outcomes(
    system: str, samples: Sequence[Sample]
) -> tuple[datetime | None, datetime | None]:
    """When polls of `system` last succeeded and last failed, as far as the samples tell."""
    last_ok = last_failed = None
    previous: tuple[float, float] | None = None
    for sample in samples:
        now = sample.polls.get(system)
        if now is None:
            continue
        if previous is not None:
            if now[0] > previous[0]:
                last_ok = sample.at
            if now[1] > previous[1]:
                last_failed = sample.at
        previous = now
    return last_ok, last_failed


# --- helpers ----------------------------------------------------------------------------------


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
        .limit(BOARD_LIMIT)
    )
    return list(tx.orm.scalars(stmt))


def _released(rows: Sequence[LedgerRow], row: BoardRow) -> datetime | None:
    return next((r.released_at for r in rows if r.ticket_ref == row.ref), None)


def _short(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%H:%M UTC") if value else "-"


def _split(ref: str) -> tuple[str, str]:
    system, _, ident = ref.partition(":")
    return system, ident


def _key_of(data: Mapping[str, Any]) -> str | None:
    ref = data.get("ref") or {}
    return ref.get("key") or ref.get("id")


def _person(value: Any) -> str | None:
    if not isinstance(value, Mapping):
        return None
    return value.get("name") or value.get("email") or value.get("id")


def _custom(data: Mapping[str, Any], name: str) -> Any:
    custom = data.get("custom_fields") or {}
    return custom.get(name) if isinstance(custom, Mapping) else None


def _team_field(settings: Any) -> str:
    console = getattr(settings, "console", None)
    return str(getattr(console, "team_field", "") or "assignment_group")


def _team(itsm: Mapping[str, Any], engineering: Mapping[str, Any], name: str) -> str | None:
    for data in (itsm, engineering):
        value = _custom(data, name)
        if isinstance(value, Mapping):
            value = value.get("display_value") or value.get("name") or value.get("value")
        if value:
            return str(value)
    return None


def _when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _approval_due(
    policy: Policy | None, priority: str | None, requested_at: datetime | None
) -> datetime | None:
    if policy is None or requested_at is None or not priority:
        return None
    rule = next((r for p, r in policy.priorities.items() if p.value == priority), None)
    hours = rule.approval_within_hours if rule else None
    return requested_at + timedelta(hours=hours) if hours else None


def _level_rank(policy: Policy | None, level: str | None) -> int:
    names = [lv.name for lv in policy.levels] if policy else []
    return -names.index(level) if level in names else 0


def _values(rows: Iterable[BoardRow], name: str) -> set[str]:
    return {str(v) for r in rows if (v := getattr(r, name))}


def _side(
    system: str, ident: str, snap: Snapshot | None, read: dict[str, Any] | None = None
) -> Side:
    data = snap.data if snap else (read or {})
    return Side(
        system=system,
        ident=ident,
        key=_key_of(data) or ident,
        url=(data.get("ref") or {}).get("url"),
        summary=data.get("summary"),
        status=data.get("status"),
        priority=data.get("priority"),
        assignee=_person(data.get("assignee")),
        labels=tuple(data.get("labels") or ()),
        synced_at=snap.synced_at if snap else None,
    )


def _replace_key(side: Side, key: str) -> Side:
    return replace(side, key=side.key if side.key != side.ident else key)


def _outbox_attention(tx: StoreSession) -> list[OutboxEntry]:
    """Messages someone may need to act on: dead, unknown after a crash, or still to send."""
    found: list[OutboxEntry] = []
    for status in (DEAD, UNKNOWN, SENDING, PENDING):
        found.extend(sorted(outbox_entries(tx, status=status, limit=200), key=lambda e: -e.id))
    return found


def redact(value: str) -> str:
    """A URL's password taken out (`postgresql://u:secret@host` -> `postgresql://u:***@host`)."""
    return _URL_PASSWORD.sub(r"\g<head>***", value)


def _shown(key: str, value: Any) -> str | None:
    """A setting as the page shows it; None to leave it out."""
    if key.endswith("_file") or key in ("source",):
        return str(value) if value else None
    if _SECRET_KEY.search(key):
        return "set (hidden)" if value else "not set"
    if value is None or value == "" or value == [] or value == {}:
        return None
    if hasattr(value, "get_secret_value"):
        return "set (hidden)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if isinstance(value, Mapping):
        return None
    return redact(str(value))


def _connections(settings: Any) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    sections: list[tuple[str, tuple[tuple[str, str], ...]]] = []
    models = [*sorted(getattr(settings, "systems", {}).items())]
    models += [(name, getattr(settings, name, None)) for name in ("state", "webhooks", "sync")]
    for name, model in models:
        if model is None:
            continue
        rows = []
        for key in type(model).model_fields:
            shown = _shown(key, getattr(model, key))
            if shown is not None:
                rows.append((key, shown))
        sections.append((name, tuple(rows)))
    email = getattr(settings, "email", None)
    if isinstance(email, Mapping) and email:
        rows = []
        for key, value in _flatten(email):
            shown = _shown(key.rsplit(".", 1)[-1], value)
            if shown is not None:
                rows.append((key, shown))
        sections.append(("email", tuple(rows)))
    console = getattr(settings, "console", None)
    if console is not None:
        rows = [
            (key, shown)
            for key in ("enabled", "host", "port", "root_path", "auth", "session_idle_minutes")
            if (shown := _shown(key, getattr(console, key, None))) is not None
        ]
        rows.append(("users", ", ".join(f"{u.name} ({u.role})" for u in console.users) or "-"))
        sections.append(("console", tuple(rows)))
    return tuple(sections)


def _flatten(table: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.extend(_flatten(value, f"{name}."))
        else:
            out.append((name, value))
    return out


def _table_or_file(file: Any, table: Mapping[str, Any], base: Path, name: str) -> tuple[str, str]:
    """The text of a mapping or policy: its own file as written, else its table as TOML."""
    if file:
        path = Path(file)
        path = path if path.is_absolute() else base / path
        try:
            return str(path), redact_toml(path.read_text())
        except OSError as exc:
            return str(path), f"(cannot read: {exc.strerror})"
    return f"[{name}] in the configuration file", to_toml(table, name)


def redact_toml(text: str) -> str:
    """A TOML text with the values of secret-looking keys replaced."""
    out = []
    for line in text.splitlines():
        key, sep, _ = line.partition("=")
        if sep and _SECRET_KEY.search(key.strip().strip('"')):
            out.append(f'{key}= "(hidden)"')
        else:
            out.append(redact(line))
    return "\n".join(out)


def to_toml(table: Mapping[str, Any], prefix: str) -> str:
    """A table written back as TOML for reading (secret-looking values hidden)."""
    lines: list[str] = []
    _toml_table(table, prefix, lines)
    return "\n".join(lines).strip()


def _toml_table(table: Mapping[str, Any], name: str, lines: list[str], array: bool = False) -> None:
    plain = [(k, v) for k, v in table.items() if not _is_table(v)]
    nested = [(k, v) for k, v in table.items() if _is_table(v)]
    if plain or not nested or array:
        lines.append("")
        lines.append(f"[[{name}]]" if array else f"[{name}]")
        for key, value in plain:
            shown = '"(hidden)"' if _SECRET_KEY.search(key) else _toml_value(value)
            lines.append(f"{_toml_key(key)} = {shown}")
    for key, value in nested:
        child = f"{name}.{_toml_key(key)}"
        if isinstance(value, Mapping):
            _toml_table(value, child, lines)
        else:
            for item in value:
                _toml_table(item, child, lines, array=True)


def _is_table(value: Any) -> bool:
    return isinstance(value, Mapping) or (
        isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)
    )


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str):
        return json.dumps(redact(value), ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }"
    return json.dumps(str(value))
