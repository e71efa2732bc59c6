"""The sync engine: one ticket at a time, from a change event to correct writes on both sides.

```
process(system, id):
    read the record fresh -> canonical           (never trust the event's payload)
    read its pair fresh, if it has one           (both at once when the pair is known)
    escalation: decide on the ITSM record, record the decision in the ledger and the customer
        e-mails in the outbox (one transaction), then carry out its actions
    plan against the last-synced snapshots   (sync/pipeline/plan.py: ownership, conflicts, no echo)
    apply: fields, comments (marked), attachments (streamed)
    record snapshots, comment links and the audit log
```
Every step is safe to repeat: a retry after a crash re-reads both records, finds its own marked
comments, and plans only what is still missing. Failures leave `process` typed by what the
queue does with them (the root `errors` module): a `DeadLetter` parks that event, a `Retry`
tries it again later, a `PauseSystem` holds every event of that system until it answers.
None of them touches any other ticket.
"""

from __future__ import annotations

import contextvars
import hashlib
import random
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

import errors
from escalation.decision import (
    Action,
    AddEngineeringComment,
    AddLabel,
    AddNote,
    CreateEngineeringRecord,
    Decision,
    EngineeringStatus,
    MoveStatus,
    PostLinks,
    RemoveLabel,
    SetPriority,
)
from mapping import Mapping as SyncMapping
from mapping import (
    UnmappedValue,
    VendorWrite,
    browse_url,
    read_path,
    stored_as_written,
    to_canonical,
    to_vendor,
)
from mapping.model import Comment, System, Ticket, Visibility
from sync.pipeline.attachments import AttachmentCopier
from sync.pipeline.markers import Marker, find_marker
from sync.pipeline.plan import (
    FieldWrite,
    Plan,
    SyncRules,
    comparable,
    get_value,
    other,
    plan,
    set_values,
)
from sync.procedure import pending
from sync.store.database import LeaseBusy, Link, Snapshot, Store, StoreSession, lease_owner
from sync.systems.adapters import Adapter, Created

log = structlog.get_logger("escalation_sync.engine")

# As long as the queue's own ticket leases: a lease left by a killed worker expires alike.
LEASE_SECONDS = 900.0
# Pairs kept in memory (`Engine._link_of`); the memory is emptied when it holds this many.
LINKS_KEPT = 50_000
# Threads reading paired records alongside the workers (idle threads cost nothing).
READERS = 16


# What the queue will do with a failed sync, as the failure counter names it: a transient
# failure and a bug are tried again, an authentication failure waits for its system.
_FAILURE_OUTCOME = {
    errors.Action.RETRY: "retry",
    errors.Action.UNKNOWN: "retry",
    errors.Action.PAUSE_SYSTEM: "paused",
}


class PairBusy(LeaseBusy):
    """The paired record is being synced by another worker right now: try again shortly."""


class MappingFailed(errors.DeadLetter):
    """A record cannot be mapped (a value the mapping does not know): fix the mapping, replay."""


class EscalationPort(Protocol):
    """How the engine reaches the escalation policy and its ledger (see `PolicyEscalation`)."""

    def decide(
        self,
        tx: StoreSession,
        ticket: Ticket,
        engineering: EngineeringStatus | None,
        now: datetime,
    ) -> Decision:
        """Decide for an ITSM ticket and record the decision in the ledger (and outbox)."""
        ...

    def decide_quietly(
        self,
        tx: StoreSession,
        ticket: Ticket,
        engineering: EngineeringStatus | None,
        now: datetime,
    ) -> Decision | None:
        """The decision when recording it would change nothing (`tx` may be read-only);
        None when it must be decided and recorded with `decide`."""
        ...


class Metrics(Protocol):
    """Where the engine reports what it did (Prometheus in production, see `PrometheusMetrics`)."""

    def processed(self, system: str, writes: int, lag: float | None) -> None:
        """One ticket synced; `lag` is seconds from the source change to the end of the sync."""
        ...

    def failed(self, system: str, outcome: str) -> None:
        """One ticket failed: outcome "retry" or "dead_letter"."""
        ...

    def write(self, system: str, kind: str) -> None:
        """One write made to `system`: field, transition, comment, attachment, create, link."""
        ...


class PrometheusMetrics:
    """The engine's counters in sync/metrics.py's registry."""

    def processed(self, system: str, writes: int, lag: float | None) -> None:
        """Count the sync, and observe the lag when it wrote something."""
        from sync.runtime import metrics

        metrics.EVENTS_PROCESSED.labels(system).inc()
        if lag is not None and writes:
            metrics.SYNC_LAG.labels(system).observe(max(0.0, lag))

    def failed(self, system: str, outcome: str) -> None:
        """Count a failed sync."""
        from sync.runtime import metrics

        metrics.EVENTS_FAILED.labels(system, outcome).inc()

    def write(self, system: str, kind: str) -> None:
        """Count a write."""
        from sync.runtime import metrics

        metrics.WRITES.labels(system, kind).inc()


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one `process` call did, for logs, `sync --once` and tests."""

    system: System
    ticket: str
    skipped: str | None = None
    decision: Decision | None = None
    plan: Plan | None = None
    writes: int = 0
    created: str | None = None
    updated: datetime | None = None


def ticket_id(ticket: Ticket) -> str:
    """The id the adapters and the store use: the Jira key, the ServiceNow sys_id."""
    if ticket.ref.system is System.JIRA:
        return ticket.ref.key or ticket.ref.id
    return ticket.ref.id


def _lean(ticket: Ticket) -> dict[str, Any]:
    """What a snapshot keeps: fields only; comments and attachments are tracked by markers."""
    return ticket.model_copy(update={"comments": (), "attachments": ()}).model_dump(mode="json")


def snapshot_data(ticket: Ticket) -> dict[str, Any]:
    """The JSON a snapshot of `ticket` keeps, for writers of snapshots outside the engine."""
    return _lean(ticket)


def paired_link(there: Ticket) -> tuple[str, str]:
    """The URL and title a record shows for its paired record `there`."""
    names = {System.JIRA: "Jira", System.SERVICENOW: "ServiceNow"}
    title = f"Paired {names[there.ref.system]} record {there.ref.key or there.ref.id}"
    return there.ref.url or ticket_id(there), title


def _targets_elsewhere(eng: Ticket, action: CreateEngineeringRecord) -> bool:
    """The level escalates to another Jira project than the paired engineering record's."""
    if eng.ref.system is not System.JIRA or action.target_system is not System.JIRA:
        return False
    project = ticket_id(eng).rsplit("-", 1)[0]
    return project.casefold() != action.project_or_table.casefold()


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def sync_rules(mapping: SyncMapping, ignore_authors: Iterable[str] = ()) -> SyncRules:
    """Which fields each system reads and writes, and who owns them, from the mapping."""
    writable: dict[System, frozenset[str]] = {}
    mapped: dict[System, frozenset[str]] = {}
    for system, compiled in mapping.systems.items():
        mapped[system] = frozenset(compiled.fields)
        writable[system] = frozenset(n for n, f in compiled.fields.items() if f.writable)
    return SyncRules(
        writable=writable,
        mapped=mapped,
        owner=mapping.owner,
        ignore_authors=frozenset(a for a in ignore_authors if a),
    )


class Engine:
    """Keeps paired records in step and runs the escalation procedure; the queue's processor."""

    def __init__(
        self,
        *,
        mapping: SyncMapping,
        adapters: Mapping[System, Adapter],
        store: Store,
        escalation: EscalationPort | None = None,
        integration_users: Mapping[System, str | None] | None = None,
        attachment_max_bytes: int | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        metrics: Metrics | None = None,
        enqueue: Callable[[str, str], None] | None = None,
    ) -> None:
        self.mapping = mapping
        self.adapters = dict(adapters)
        self.store = store
        self.escalation = escalation
        self.integration_users = {k: v for k, v in (integration_users or {}).items() if v}
        self.rules = sync_rules(mapping, self.integration_users.values())
        self.copier = AttachmentCopier(max_bytes=attachment_max_bytes)
        self.clock = clock
        self.metrics: Metrics = metrics or PrometheusMetrics()
        # Where `poll` sends what it finds; without a queue, `poll` processes inline.
        self.enqueue = enqueue
        self._links: dict[tuple[str, str], Link] = {}
        self._links_lock = threading.Lock()
        # Reads the paired record while the worker reads the changed one.
        self._readers = futures.ThreadPoolExecutor(READERS, thread_name_prefix="pair-read")
        # Test seam: called after each vendor write, before it is recorded in the store.
        self.after_write: Callable[[str], None] = lambda _what: None
        sources = {r.source for r in mapping.routes}
        self.itsm_systems: frozenset[System] = frozenset(sources) or frozenset({System.SERVICENOW})

    # --- the queue's TicketProcessor ---------------------------------------------------------

    def process(self, system: str, ticket_id: str) -> None:
        """Sync one ticket (and its pair) after a change; safe to call any number of times.

        Raises errors.Retry (tried again later), errors.DeadLetter (parked) or
        errors.PauseSystem (the system refused our credentials).
        """
        self.sync(system, ticket_id)

    def sync(self, system: str, ticket: str, *, author: str | None = None) -> Outcome:
        """`process`, returning what was done; `author` (from the event) skips our own edits."""
        sys = System(system)
        # Every line logged while this ticket is processed, in any module, names it.
        with structlog.contextvars.bound_contextvars(system=sys.value, ticket=ticket):
            return self._sync(sys, ticket, author)

    def _sync(self, sys: System, ticket: str, author: str | None) -> Outcome:
        bound = log
        if author and author == self.integration_users.get(sys):
            bound.debug("event by the integration user ignored")
            return Outcome(sys, ticket, skipped="authored by the integration user")
        try:
            outcome = self._process(sys, ticket)
        except LeaseBusy as exc:
            bound.debug("pair busy, trying again shortly", reason=str(exc))
            raise
        except Exception as exc:
            kind = _FAILURE_OUTCOME.get(errors.action_of(exc), "dead_letter")
            self.metrics.failed(sys.value, kind)
            bound.warning("sync failed", error=type(exc).__name__, reason=str(exc))
            raise
        lag = None
        if outcome.updated is not None:
            lag = (self.clock() - outcome.updated).total_seconds()
        self.metrics.processed(sys.value, outcome.writes, lag)
        bound.info("synced", writes=outcome.writes, created=outcome.created)
        return outcome

    def probe(self, system: str) -> None:
        """One cheap authenticated call to `system` (the queue asks a paused system this)."""
        self.adapters[System(system)].probe()

    def partners(self, system: str, ticket_id: str) -> list[tuple[str, str]]:
        """The records whose leases a sync of this ticket needs besides its own: its pair."""
        link = self._link_of(system, ticket_id)
        return [] if link is None else [link.other(system)]

    def poll(self, system: str) -> int:
        """One changed-since pass over `system`; returns how many records it found."""
        from sync.intake.pollers import poll_system

        return poll_system(self, System(system))

    def reconcile(self) -> int:
        """Compare every pair and repair drift; returns how many pairs needed writes."""
        from sync.pipeline.reconcile import reconcile_all

        return reconcile_all(self)

    def reload(self, settings: Any) -> None:
        """Take a new mapping and policy (SIGHUP): tickets processed from now on use them."""
        self.mapping = settings.mapping_model
        self.rules = sync_rules(self.mapping, self.integration_users.values())
        sources = {r.source for r in self.mapping.routes}
        self.itsm_systems = frozenset(sources) or frozenset({System.SERVICENOW})
        if self.escalation is not None and settings.compiled_policy is not None:
            self.escalation = policy_escalation(settings, self.store)

    def reconcile_pair(self, link: Link) -> int:
        """Read both records of a pair fresh and repair any drift; returns the writes made."""
        sides = [("servicenow", link.servicenow_sys_id), ("jira", link.jira_key)]
        with self._leases(sides):
            snow = self.read(System.SERVICENOW, link.servicenow_sys_id)
            jira = self.read(System.JIRA, link.jira_key)
            itsm, eng = (snow, jira) if System.SERVICENOW in self.itsm_systems else (jira, snow)
            _, writes = self._sync_pair(itsm, eng, origin=itsm.ref.system, repair=True)
        return writes

    def create_pair(self, system: str, ticket: str) -> str:
        """Create and link the paired record of an unpaired one now (first route from its system,
        whatever its condition), post each record's link in the other, mirror comments and
        attachments; returns the new record's id. Pairing a paired record is a no-op.
        """
        source = self.read(System(system), ticket)
        link = self._link_of(system, ticket_id(source))
        if link is not None:
            return link.other(system)[1]
        route = next((r for r in self.mapping.routes if r.source is source.ref.system), None)
        target_system = route.target if route is not None else other(source.ref.system)
        fields = [n for n in self.rules.synced_fields() if get_value(source, n) is not None]
        container = (route.target_project or route.target_table) if route is not None else None
        target, _ = self._create(
            source,
            target_system,
            fields,
            container,
            route.issue_type if route is not None else None,
            route.name if route is not None else "manual",
        )
        itsm, eng = (source, target) if source.ref.system in self.itsm_systems else (target, source)
        self._post_links(itsm, eng)
        self._sync_pair(itsm, eng, origin=source.ref.system, fresh_itsm=itsm)
        return ticket_id(target)

    def sync_linked(
        self, itsm: Ticket, eng: Ticket, *, origin: System, just_created: bool = False
    ) -> int:
        """Bring a linked pair in step from both records as just read (a backfill's pairs);
        `just_created` takes their fields as agreeing, the new one having been written from
        `origin`. Returns the writes made."""
        fresh = itsm if just_created else None
        _, writes = self._sync_pair(itsm, eng, origin=origin, fresh_itsm=fresh)
        return writes

    # --- reading -------------------------------------------------------------------------------

    def read(self, system: System, ticket: str) -> Ticket:
        """Read a record fresh and map it; an unmappable record is a permanent failure."""
        return self._map(system, self.adapters[system].read(ticket))

    def _map(self, system: System, raw: dict[str, Any]) -> Ticket:
        try:
            return to_canonical(self.mapping, system, raw)
        except (UnmappedValue, ValueError) as exc:
            raise MappingFailed(str(exc), system=system.value) from None

    def _link_of(self, system: str, ticket: str) -> Link | None:
        """The pair a ticket belongs to. A pair once made is never undone (a record cannot be
        paired again), so pairs found are kept in memory and only misses ask the store."""
        key = (system, ticket)
        with self._links_lock:
            known = self._links.get(key)
        if known is not None:
            return known
        with self.store.reading() as tx:
            link = tx.get_link(system, ticket)
        if link is not None:
            with self._links_lock:
                if len(self._links) >= LINKS_KEPT:
                    self._links.clear()
                self._links[key] = link
        return link

    # --- one ticket ----------------------------------------------------------------------------

    def _process(self, system: System, tid: str) -> Outcome:
        # The queue holds this ticket's lease; the pair's other record must not be synced by
        # another worker meanwhile (both would mirror the same new comment).
        link = self._link_of(system.value, tid)
        if link is not None:
            with self._leases([link.other(system.value)]):
                source, target = self._read_pair(system, tid, link)
                return self._process_pair(system, source, link, target)
        # Unpaired, or paired under another of its ids (a Jira id for the key): the record
        # read says which.
        source = self.read(system, tid)
        link = self._link_of(system.value, ticket_id(source))
        if link is None:
            return self._process_pair(system, source, None)
        with self._leases([link.other(system.value)]):
            return self._process_pair(system, source, link)

    def _read_pair(self, system: System, tid: str, link: Link) -> tuple[Ticket, Ticket]:
        """The ticket and its pair, both read fresh at the same time (one wait for the two)."""
        other_system, other_id = link.other(system.value)
        # The other read runs with this thread's log context (the ticket bound on each line).
        pending = self._readers.submit(
            contextvars.copy_context().run, self.read, System(other_system), other_id
        )
        try:
            source = self.read(system, tid)
        except BaseException:
            futures.wait([pending])
            raise
        return source, pending.result()

    @contextmanager
    def _leases(self, tickets: Sequence[tuple[str, str]]) -> Iterator[None]:
        """Hold the queue's per-ticket leases on `tickets`; busy -> PairBusy (retried soon).

        Leases this thread holds already (the queue takes a ticket's and its pair's together,
        see `partners`) are used as they are and left to their taker to release.
        """
        owner = lease_owner()
        wanted = [t for t in tickets if t not in self.store.leases_held(owner, tickets)]
        if wanted and not self.store.acquire_locks(wanted, owner, LEASE_SECONDS):
            names = ", ".join(f"{system} {ident}" for system, ident in wanted)
            raise PairBusy(
                f"{names}: being synced by another worker",
                system=wanted[0][0],
                retry_after=random.uniform(0.05, 0.5),
            )
        try:
            yield
        finally:
            if wanted:
                self.store.release_locks(wanted, owner)

    def _process_pair(
        self, system: System, source: Ticket, link: Link | None, target: Ticket | None = None
    ) -> Outcome:
        tid = ticket_id(source)
        if link is not None and target is None:
            other_system, other_id = link.other(system.value)
            target = self.read(System(other_system), other_id)
        itsm, eng = (source, target) if system in self.itsm_systems else (target, source)
        writes = 0
        created: str | None = None
        decision: Decision | None = None
        itsm_snapshot_override: Ticket | None = None
        if (
            itsm is not None
            and self.escalation is not None
            and itsm.ref.system in self.itsm_systems
        ):
            decision, itsm_new, eng_new, made, n = self._escalate(itsm, eng, link)
            writes += n
            created = made
            if eng_new is not None and eng is None:
                # Just created: both sides start from what they hold now.
                itsm_snapshot_override = itsm_new
            itsm, eng = itsm_new, eng_new
            if link is None and made is not None:
                link = self._link_of(system.value, tid)
        if link is None or itsm is None or eng is None:
            link, itsm, eng, made, n = self._route(source, link)
            writes += n
            created = created or made
            if made is not None:
                itsm_snapshot_override = itsm
        if link is None or itsm is None or eng is None:
            return Outcome(system, tid, decision=decision, writes=writes, created=created)
        result, n = self._sync_pair(itsm, eng, origin=system, fresh_itsm=itsm_snapshot_override)
        writes += n
        return Outcome(system, tid, decision=decision, plan=result, writes=writes, created=created)

    def _sync_pair(
        self,
        itsm: Ticket,
        eng: Ticket,
        *,
        origin: System,
        fresh_itsm: Ticket | None = None,
        repair: bool = False,
    ) -> tuple[Plan, int]:
        """Plan and apply between a pair; record snapshots, comment links and audit rows."""
        source, target = (itsm, eng) if origin is itsm.ref.system else (eng, itsm)
        sid, tid = ticket_id(source), ticket_id(target)
        with self.store.reading() as tx:
            rows = tx.get_snapshots(
                [(source.ref.system.value, sid), (target.ref.system.value, tid)]
            )
            links, unrecorded = self._comment_links(tx, source, target)
        snap_s = _snapshot(rows.get((source.ref.system.value, sid)))
        snap_t = _snapshot(rows.get((target.ref.system.value, tid)))
        if unrecorded:
            # Copies written before a crash and never recorded: record them now.
            with self.store.session() as tx:
                for marker, ticket, comment_id in unrecorded:
                    tx.put_comment_link(
                        source_system=marker.system.value,
                        source_ticket=marker.ticket,
                        source_comment_id=marker.item,
                        target_system=ticket.ref.system.value,
                        target_ticket=ticket_id(ticket),
                        target_comment_id=comment_id,
                        marker=marker.text(),
                    )
        if fresh_itsm is not None:
            # A pair made in this pass: fields agree by construction, nothing flows back.
            snap_s, snap_t = source, target
        elif snap_s is None and snap_t is None:
            # Paired but never synced (the pass that made it was cut short): the ITSM record
            # is the original, so its values flow to the engineering record, not back.
            snap_s, snap_t = (None, target) if source is itsm else (source, None)
        result = plan(
            source, target, snap_s, snap_t, self.rules, comment_links=links, repair=repair
        )
        # Conflicts and field writes are audited in the transaction that records the
        # snapshots (one write transaction, not one per write); if the pass fails part way,
        # what was written is still audited before the error leaves.
        notes: list[AuditNote] = []
        try:
            writes, stored = self._apply_plan(result, source, target, notes)
            after = [
                (side, ident, self._as_written(side, result.writes_to(side.ref.system), stored))
                for side, ident in ((source, sid), (target, tid))
            ]
        except BaseException:
            if notes:
                with self.store.session() as tx:
                    _record(tx, notes)
            raise
        with self.store.session() as tx:
            _record(tx, notes)
            for side, ident, ticket in after:
                tx.put_snapshot(side.ref.system.value, ident, _lean(ticket), version=side.version)
        return result, writes

    def _as_written(
        self,
        ticket: Ticket,
        writes: Sequence[FieldWrite],
        stored: Mapping[System, Mapping[str, Any]],
    ) -> Ticket:
        """The next snapshot of a side: what it holds now, its written fields as stored.

        The stored value (rather than the one sent) matters when a system silently ignores or
        normalises a value (a column that does not exist, a priority computed from impact and
        urgency): the snapshot then matches what its webhook will show, so the difference is
        not mistaken for a new change and sent back. It comes from the write's answer when the
        system answers with the record (ServiceNow); otherwise only the fields whose value the
        system may store differently are read back, and only those fields.
        """
        if not writes:
            return ticket
        system = ticket.ref.system
        answer = stored.get(system)
        if answer is not None:
            fresh = self._map(system, dict(answer))
            return set_values(ticket, {w.field: get_value(fresh, w.field) for w in writes})
        values = {
            w.field: w.new for w in writes if stored_as_written(self.mapping, system, w.field)
        }
        unsure = [w.field for w in writes if w.field not in values]
        if unsure:
            paths = [read_path(self.mapping, system, name) for name in unsure]
            adapter = self.adapters[system]
            known = [p for p in paths if p is not None]
            if len(known) < len(paths):
                raw = adapter.read(ticket_id(ticket))
            else:
                raw = adapter.read_fields(ticket_id(ticket), known)
            fresh = self._map(system, raw)
            values.update({name: get_value(fresh, name) for name in unsure})
        return set_values(ticket, values)

    def _comment_links(
        self, tx: StoreSession, source: Ticket, target: Ticket
    ) -> tuple[set[tuple[System, str]], list[tuple[Marker, Ticket, str]]]:
        """Comments already mirrored, per the store or their markers; and the marked copies
        the store does not know (marker, the ticket holding it, its comment id)."""
        done: set[tuple[System, str]] = set()
        unrecorded: list[tuple[Marker, Ticket, str]] = []
        for ticket in (source, target):
            system = ticket.ref.system.value
            known = tx.comment_links_of(system, (c.id for c in ticket.comments))
            for comment in ticket.comments:
                found = known.get(comment.id)
                if found is not None:
                    done.add((System(found.source_system), found.source_comment_id))
                marker = find_marker(comment.body)
                if marker is not None and found is None:
                    unrecorded.append((marker, ticket, comment.id))
                    done.add((marker.system, marker.item))
        return done, unrecorded

    # --- applying a plan -----------------------------------------------------------------------

    def _apply_plan(
        self, result: Plan, source: Ticket, target: Ticket, notes: list[AuditNote]
    ) -> tuple[int, dict[System, dict[str, Any]]]:
        """Carry out a plan; returns the writes made and each side's record as its field
        write's answer showed it (for systems that answer with the record). The audit rows of
        conflicts and field writes are added to `notes` for the caller to record."""
        sides = {source.ref.system: source, target.ref.system: target}
        writes = 0
        stored: dict[System, dict[str, Any]] = {}
        for conflict in result.conflicts:
            loser = sides[conflict.loser]
            notes.append(
                AuditNote(
                    conflict.loser.value,
                    ticket_id(loser),
                    "conflict",
                    conflict.loser_value,
                    conflict.winner_value,
                    reason=(
                        f"conflict on {conflict.field}: {conflict.winner.value} wins "
                        f"({conflict.rule}); lost value {conflict.loser_value!r}"
                    ),
                )
            )
        for system, ticket in sides.items():
            peer = sides[other(system)]
            n, answer = self._write_fields(ticket, result.writes_to(system), peer, notes)
            writes += n
            if answer is not None:
                stored[system] = answer
        for mirror in result.comments:
            dest = sides[mirror.target]
            dest_id = ticket_id(dest)
            adapter = self.adapters[mirror.target]
            existing = adapter.find_comment_by_marker(dest_id, mirror.marker)
            if existing is None:
                existing = adapter.add_comment(
                    dest_id, mirror.body, public=mirror.public, marker=mirror.marker
                )
                writes += 1
                self.metrics.write(mirror.target.value, "comment")
                self.after_write(f"comment {mirror.marker.text()}")
            with self.store.session() as tx:
                tx.put_comment_link(
                    source_system=mirror.source.value,
                    source_ticket=ticket_id(sides[mirror.source]),
                    source_comment_id=mirror.comment_id,
                    target_system=mirror.target.value,
                    target_ticket=dest_id,
                    target_comment_id=existing or None,
                    marker=mirror.marker.text(),
                )
                tx.audit(
                    mirror.target.value,
                    dest_id,
                    "comment" if mirror.public else "work_note",
                    None,
                    mirror.marker.text(),
                    reason=f"{mirror.visibility.value} comment mirrored from "
                    f"{mirror.source.value} {ticket_id(sides[mirror.source])}",
                )
        for direction in (System.JIRA, System.SERVICENOW):
            copies = [c for c in result.attachments if c.target is direction]
            if not copies:
                continue
            dest = sides[direction]
            src = sides[other(direction)]
            markers = [m for c in dest.comments if (m := find_marker(c.body)) is not None]
            outcomes = self.copier.copy_all(
                copies,
                source=self.adapters[src.ref.system],
                target=self.adapters[direction],
                source_id=ticket_id(src),
                target_id=ticket_id(dest),
                target_attachments=dest.attachments,
                existing_markers=markers,
            )
            for item in outcomes:
                if item.outcome in ("copied", "oversized"):
                    writes += 1
                    kind = "attachment" if item.outcome == "copied" else "comment"
                    self.metrics.write(direction.value, kind)
                    self.store.audit(
                        direction.value,
                        ticket_id(dest),
                        "attachment",
                        None,
                        item.copy.attachment.filename,
                        reason=(
                            f"attachment copied from {src.ref.system.value} {ticket_id(src)}"
                            if item.outcome == "copied"
                            else "attachment over the size limit: listed in an internal note"
                        )
                        + (f" (sha256 {item.sha256})" if item.sha256 else ""),
                    )
        return writes, stored

    def _write_fields(
        self,
        ticket: Ticket,
        writes: Sequence[FieldWrite],
        peer: Ticket,
        notes: list[AuditNote],
        *,
        why: str = "",
    ) -> tuple[int, dict[str, Any] | None]:
        """Write the fields; returns 1 (or 0 when nothing was sent) and the write's answer,
        and adds the audit rows of what was written to `notes`."""
        if not writes:
            return 0, None
        system = ticket.ref.system
        wanted = set_values(ticket, {w.field: w.new for w in writes})
        vendor = to_vendor(self.mapping, system, wanted, [w.field for w in writes])
        if vendor.is_empty():
            return 0, None
        answer = self.adapters[system].apply(
            ticket_id(ticket), vendor, current_labels=ticket.labels
        )
        self.metrics.write(system.value, "transition" if vendor.transition_to else "field")
        notes.extend(
            AuditNote(
                system.value,
                ticket_id(ticket),
                w.field,
                _plain(w.old),
                _plain(w.new),
                reason=why or f"{w.reason} ({peer.ref.system.value} {ticket_id(peer)})",
            )
            for w in writes
        )
        self.after_write(f"fields {system.value} {ticket_id(ticket)}")
        return 1, answer

    # --- pairing by route ----------------------------------------------------------------------

    def _route(
        self, source: Ticket, link: Link | None
    ) -> tuple[Link | None, Ticket | None, Ticket | None, str | None, int]:
        """Pair an unpaired record under an `always` route; returns the pair as ITSM, eng."""
        if link is not None:
            return link, None, None, None, 0
        from mapping import matching_routes

        routes = [
            r
            for r in matching_routes(self.mapping, source, escalation_approved=False)
            if r.when == "always"
        ]
        if not routes:
            return None, None, None, None, 0
        route = routes[0]
        fields = [n for n in self.rules.synced_fields() if get_value(source, n) is not None]
        container = route.target_project or route.target_table
        target, n = self._create(
            source, route.target, fields, container, route.issue_type, route.name
        )
        link = self._link_of(source.ref.system.value, ticket_id(source))
        itsm, eng = (source, target) if source.ref.system in self.itsm_systems else (target, source)
        n += self._post_links(itsm, eng)
        return link, itsm, eng, ticket_id(target), n

    def _create_record(
        self,
        source: Ticket,
        target_system: System,
        fields: Sequence[str],
        container: str | None,
        kind: str | None,
        overrides: Mapping[str, Any] | None = None,
    ) -> tuple[Created, VendorWrite]:
        """Create a record in `target_system` from `source`'s `fields` (plain fields only, one
        request); returns it and the whole write, whose status and journal are still to do."""
        seed = set_values(source, dict(overrides or {}))
        seed = seed.model_copy(
            update={"ref": seed.ref.model_copy(update={"system": target_system})}
        )
        wanted = list(dict.fromkeys([*fields, *(overrides or {})]))
        vendor = to_vendor(self.mapping, target_system, seed, wanted)
        made = self.adapters[target_system].create(
            VendorWrite(fields=vendor.fields), container=container, kind=kind
        )
        self.metrics.write(target_system.value, "create")
        return made, vendor

    def _create(
        self,
        source: Ticket,
        target_system: System,
        fields: Sequence[str],
        container: str | None,
        kind: str | None,
        route: str | None,
        overrides: Mapping[str, Any] | None = None,
    ) -> tuple[Ticket, int]:
        """Create the paired record, link it, and return it as read back.

        The link is recorded as soon as the system answers the create, before the status
        transition and anything else: a retry after a crash finds the pair instead of
        creating a second record.
        """
        made, vendor = self._create_record(
            source, target_system, fields, container, kind, overrides
        )
        adapter = self.adapters[target_system]
        with self.store.session() as tx:
            if target_system is System.JIRA:
                tx.put_link(
                    jira_key=made.ticket_id,
                    servicenow_sys_id=source.ref.id,
                    servicenow_number=source.ref.key,
                    route=route,
                )
            else:
                tx.put_link(
                    jira_key=ticket_id(source),
                    jira_id=source.ref.id,
                    servicenow_sys_id=made.ticket_id,
                    servicenow_number=made.key,
                    route=route,
                )
            tx.audit(
                target_system.value,
                made.ticket_id,
                "record",
                None,
                made.key or made.ticket_id,
                reason=f"created as the pair of {source.ref.system.value} {ticket_id(source)}"
                + (f" (route {route})" if route else ""),
            )
        self.after_write(f"create {target_system.value}")
        rest = VendorWrite(transition_to=vendor.transition_to, journal=vendor.journal)
        if not rest.is_empty():
            adapter.apply(made.ticket_id, rest)
        target = self.read(target_system, made.ticket_id)
        if target_system is System.JIRA:
            with self.store.session() as tx:
                tx.put_link(
                    jira_key=made.ticket_id,
                    jira_id=target.ref.id,
                    servicenow_sys_id=source.ref.id,
                )
        return target, 1

    # --- escalation ----------------------------------------------------------------------------

    def _escalate(
        self, itsm: Ticket, eng: Ticket | None, link: Link | None
    ) -> tuple[Decision, Ticket, Ticket | None, str | None, int]:
        """Decide, record, then carry out the decision's actions (and any left from before)."""
        assert self.escalation is not None
        now = self.clock()
        engineering = None
        if eng is not None:
            said = self._resolution_notes(eng)
            engineering = EngineeringStatus(
                ref=eng.ref,
                status=eng.status,
                resolution=said.body.strip() if said is not None else None,
                resolution_public=said is not None and said.visibility is Visibility.PUBLIC,
                assignee=eng.assignee,
            )
        iid = ticket_id(itsm)
        # Most tickets are outside the procedure or in it with nothing new: decided without
        # the write lock.
        with self.store.reading() as tx:
            quiet = self.escalation.decide_quietly(tx, itsm, engineering, now)
            waiting = pending.parked(tx, itsm) if quiet is not None else []
        if quiet is not None and not waiting:
            decision, merged = quiet, []
        else:
            with self.store.session() as tx:
                decision = self.escalation.decide(tx, itsm, engineering, now)
                waiting = pending.parked(tx, itsm)
                todo = [a for a in decision.actions if pending.carried_out_by_engine(a)]
                merged = waiting + [a for a in todo if a not in waiting]
                if merged:
                    pending.park(tx, itsm, merged)
        for reason in decision.blocked:
            log.info("command refused", ticket=iid, rule=reason.rule, reason=reason.detail)
        itsm_new, eng_new, created, writes = self._carry_out(itsm, eng, link, merged)
        if merged:
            with self.store.session() as tx:
                pending.park(tx, itsm, [])
        if created is not None and eng_new is not None and decision.awaits_engineering_record:
            # The record exists now: what waited for it (a chat room named after it) is
            # decided at once rather than on the ticket's next change.
            _, itsm_new, eng_new, _, more = self._escalate(itsm_new, eng_new, link)
            writes += more
        return decision, itsm_new, eng_new, created, writes

    def _resolution_notes(self, eng: Ticket) -> Comment | None:
        """What engineering last said: the newest comment written there by a person."""
        for comment in reversed(eng.comments):
            if find_marker(comment.body) is not None or not comment.body.strip():
                continue
            author = comment.author
            names = {p for p in (author.id, author.name, author.email) if p} if author else set()
            if names & set(self.integration_users.values()):
                continue
            return comment
        return None

    def _carry_out(
        self, itsm: Ticket, eng: Ticket | None, link: Link | None, actions: Sequence[Action]
    ) -> tuple[Ticket, Ticket | None, str | None, int]:
        system = itsm.ref.system
        adapter = self.adapters[system]
        iid = ticket_id(itsm)
        writes = 0
        created: str | None = None
        # Field changes: labels, priority, status on the ITSM record.
        labels = list(itsm.labels)
        values: dict[str, Any] = {}
        for action in actions:
            if isinstance(action, AddLabel) and action.label not in labels:
                labels.append(action.label)
            elif isinstance(action, RemoveLabel) and action.label in labels:
                labels.remove(action.label)
            elif isinstance(action, SetPriority):
                values["priority"] = action.priority
            elif isinstance(action, MoveStatus):
                values["status"] = action.status
        if tuple(labels) != itsm.labels:
            values["labels"] = tuple(labels)
        changed = {
            k: v for k, v in values.items() if comparable(k, v) != comparable(k, get_value(itsm, k))
        }
        if changed:
            fw = [
                FieldWrite(system, k, get_value(itsm, k), v, "escalation decision")
                for k, v in changed.items()
            ]
            notes: list[AuditNote] = []
            try:
                writes += self._write_fields(itsm, fw, itsm, notes, why="escalation decision")[0]
            finally:
                if notes:
                    with self.store.session() as tx:
                        _record(tx, notes)
            # What the record holds now (a system may ignore or normalise a value).
            itsm = self.read(system, iid)
        # Notes, each written once (its marker is its idempotency key).
        present = {m for c in itsm.comments if (m := find_marker(c.body)) is not None}
        for action in actions:
            if not isinstance(action, AddNote):
                continue
            marker = Marker(system, iid, f"{action.kind.value}-{_digest(action.body)}")
            if marker in present or adapter.find_comment_by_marker(iid, marker) is not None:
                continue
            public = action.visibility is Visibility.PUBLIC
            adapter.add_comment(iid, action.body, public=public, marker=marker)
            self.metrics.write(system.value, "comment")
            self.after_write(f"note {marker.text()}")
            self.store.audit(
                system.value,
                iid,
                "work_note" if not public else "comment",
                None,
                marker.text(),
                reason=f"escalation {action.kind.value} note",
            )
            writes += 1
        # The engineering record.
        for action in actions:
            if isinstance(action, CreateEngineeringRecord) and eng is None and link is None:
                fields, overrides = self._engineering_seed(itsm, action)
                eng, n = self._create(
                    itsm,
                    action.target_system,
                    fields,
                    action.project_or_table,
                    action.issue_type,
                    f"escalation {action.level}",
                    overrides,
                )
                created = ticket_id(eng)
                writes += n
                remember = getattr(self.escalation, "engineering_created", None)
                if remember is not None:
                    with self.store.session() as tx:
                        remember(tx, itsm, created)
        if eng is not None and any(isinstance(a, PostLinks) for a in actions):
            writes += self._post_links(itsm, eng)
        if eng is not None:
            writes += self._engineering_comments(eng, actions)
        # A further level whose target is another project than the paired record's.
        for action in actions:
            if (
                isinstance(action, CreateEngineeringRecord)
                and eng is not None
                and created is None
                and _targets_elsewhere(eng, action)
            ):
                writes += self._escalate_further(itsm, eng, action, present)
        return itsm, eng, created, writes

    def _engineering_comments(self, eng: Ticket, actions: Sequence[Action]) -> int:
        """The decision's comments on the engineering record, each written once (its marker
        is its idempotency key)."""
        system = eng.ref.system
        eid = ticket_id(eng)
        adapter = self.adapters[system]
        present = {m for c in eng.comments if (m := find_marker(c.body)) is not None}
        writes = 0
        for action in actions:
            if not isinstance(action, AddEngineeringComment):
                continue
            marker = Marker(system, eid, f"note-{_digest(action.body)}")
            if marker in present or adapter.find_comment_by_marker(eid, marker) is not None:
                continue
            public = action.visibility is Visibility.PUBLIC
            adapter.add_comment(eid, action.body, public=public, marker=marker)
            self.metrics.write(system.value, "comment")
            self.after_write(f"engineering comment {marker.text()}")
            self.store.audit(
                system.value,
                eid,
                "comment" if public else "work_note",
                None,
                marker.text(),
                reason="escalation comment",
            )
            writes += 1
        return writes

    def _engineering_seed(
        self, itsm: Ticket, action: CreateEngineeringRecord
    ) -> tuple[list[str], dict[str, Any]]:
        """The ITSM fields an engineering record is created with, and the decision's texts."""
        fields = [n for n in self.rules.synced_fields() if get_value(itsm, n) is not None]
        overrides: dict[str, Any] = {
            "summary": action.summary,
            "description": action.description,
            "labels": tuple(dict.fromkeys([*itsm.labels, *action.labels])),
        }
        return fields, overrides

    def _escalate_further(
        self,
        itsm: Ticket,
        eng: Ticket,
        action: CreateEngineeringRecord,
        present: set[Marker],
    ) -> int:
        """Open the level's own record in its target project, linked to both records.

        The ITSM record stays paired with the engineering record it has: pairs never change
        (every worker keeps the pairs it has seen), and the team that escalated further keeps
        working the case. The new record carries the gathered context; the ITSM work note that
        names it is its idempotency key, so a retry finds it and creates nothing.
        """
        system = itsm.ref.system
        iid = ticket_id(itsm)
        marker = Marker(system, iid, f"further-{action.level}")
        if marker in present or self.adapters[system].find_comment_by_marker(iid, marker):
            return 0
        fields, overrides = self._engineering_seed(itsm, action)
        made, _ = self._create_record(
            itsm,
            action.target_system,
            fields,
            action.project_or_table,
            action.issue_type,
            overrides,
        )
        self.after_write(f"create {action.target_system.value} for {action.level}")
        key = made.key or made.ticket_id
        there_url = (
            browse_url(self.mapping, action.target_system, made.record_id or key, key) or key
        )
        links = (
            (made.ticket_id, *paired_link(itsm)),
            (made.ticket_id, paired_link(eng)[0], f"Escalated from {ticket_id(eng)}"),
            (ticket_id(eng), there_url, f"Escalated to {action.level}: {key}"),
        )
        adapter = self.adapters[action.target_system]
        for record, url, title in links:
            adapter.add_link(record, url, title)
            self.metrics.write(action.target_system.value, "link")
        body = (
            f"Escalated to {action.level}: {key} ({action.project_or_table}) "
            f"opened with the gathered context: {there_url}\n"
            f"{ticket_id(eng)} stays the paired engineering record."
        )
        self.adapters[system].add_comment(iid, body, public=False, marker=marker)
        self.metrics.write(system.value, "comment")
        with self.store.session() as tx:
            tx.audit(
                action.target_system.value,
                made.ticket_id,
                "record",
                None,
                key,
                reason=f"escalation {action.level} of {system.value} {iid}",
            )
            tx.audit(system.value, iid, "work_note", None, marker.text(), reason=body)
        return 2 + len(links)

    def _post_links(self, itsm: Ticket, eng: Ticket) -> int:
        """Show each record's link on the other (idempotent on both systems)."""
        for here, there in ((itsm, eng), (eng, itsm)):
            url, title = paired_link(there)
            self.adapters[here.ref.system].add_link(ticket_id(here), url, title)
            self.metrics.write(here.ref.system.value, "link")
            self.store.audit(
                here.ref.system.value,
                ticket_id(here),
                "link",
                None,
                url,
                reason="link to the paired record",
            )
        return 2


@dataclass(frozen=True, slots=True)
class AuditNote:
    """An audit row still to record: a value written on `system`'s `record`, or a conflict."""

    system: str
    record: str
    field: str
    old: Any
    new: Any
    reason: str


def _record(tx: StoreSession, notes: Iterable[AuditNote]) -> None:
    for note in notes:
        tx.audit(note.system, note.record, note.field, note.old, note.new, reason=note.reason)


def _snapshot(row: Snapshot | None) -> Ticket | None:
    """A side's last-synced ticket (None when it has none, or one this version cannot read)."""
    if row is None:
        return None
    try:
        return Ticket.model_validate(row.data)
    except ValueError:
        return None


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", exclude_none=True)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if hasattr(value, "value"):
        return value.value
    return str(value)


# --- construction from settings -----------------------------------------------------------------


def build_adapters(
    settings: Any,
    *,
    retry: Any = None,
    session_factory: Callable[[], Any] | None = None,
) -> dict[System, Adapter]:
    """Connectors and adapters for both systems from the settings' connection sections."""
    from connectors.jira import CommentPolicy, JiraConnector
    from connectors.servicenow import ServiceNowConnector
    from sync.systems.adapters import JiraAdapter, ServiceNowAdapter

    def secret(value: Any) -> str | None:
        return value.get_secret_value() if value is not None else None

    def session() -> Any:
        return session_factory() if session_factory is not None else None

    j = settings.jira
    jira_kwargs: dict[str, Any] = {}
    if j.auth == "pat":
        jira_kwargs["pat"] = secret(j.pat)
    else:
        jira_kwargs.update(email=j.email, api_token=secret(j.api_token))
    jira = JiraConnector(
        j.base_url,
        session=session(),
        retry=retry,
        comments=CommentPolicy(
            service_desk=j.service_desk, visibility_value=j.internal_comment_role
        ),
        **jira_kwargs,
    )
    s = settings.servicenow
    sn_kwargs: dict[str, Any] = {}
    if s.auth == "oauth":
        sn_kwargs.update(client_id=s.client_id, client_secret=secret(s.client_secret))
    else:
        sn_kwargs.update(username=s.username, password=secret(s.password))
    from mapping import journal_field

    journals = tuple(
        journal_field(settings.mapping_model, System.SERVICENOW, v) or default
        for v, default in ((Visibility.PUBLIC, "comments"), (Visibility.INTERNAL, "work_notes"))
    )
    snow = ServiceNowConnector(
        s.instance_url,
        table=s.table,
        session=session(),
        retry=retry,
        journal_fields=(journals[0], journals[1]),
        **sn_kwargs,
    )
    users = ServiceNowConnector(
        s.instance_url, table="sys_user", session=session(), retry=retry, **sn_kwargs
    )
    issue_type = next((r.issue_type for r in settings.mapping_model.routes if r.issue_type), "Task")
    return {
        System.JIRA: JiraAdapter(jira, project=j.project, jql=j.jql, issue_type=issue_type),
        System.SERVICENOW: ServiceNowAdapter(snow, users=users, query=s.query),
    }


def build_engine(
    settings: Any,
    store: Store,
    *,
    retry: Any = None,
    enqueue: Callable[[str, str], None] | None = None,
    clock: Callable[[], datetime] | None = None,
    escalation: EscalationPort | None = None,
) -> Engine:
    """The engine the daemon, `sync --once` and `backfill` run, wired from the settings.

    The escalation policy is enabled when the settings carry one (and the ledger is
    installed); `escalation` overrides that choice.
    """
    if escalation is None and settings.compiled_policy is not None:
        escalation = policy_escalation(settings, store)
    return Engine(
        mapping=settings.mapping_model,
        adapters=build_adapters(settings, retry=retry),
        store=store,
        escalation=escalation,
        integration_users={
            System.JIRA: settings.jira.integration_user,
            System.SERVICENOW: settings.servicenow.integration_user,
        },
        attachment_max_bytes=settings.sync.attachment_max_bytes,
        clock=clock or (lambda: datetime.now(UTC)),
        enqueue=enqueue,
    )


def policy_escalation(settings: Any, store: Store) -> EscalationPort | None:
    """The escalation step over escalation.decide and the ledger, if both are present."""
    from sync.procedure.step import PolicyEscalation

    try:
        return PolicyEscalation(settings.compiled_policy, settings=settings)
    except ImportError:
        log.warning("escalation ledger not installed: escalation policy disabled")
        return None


def parse_ref(ref: str) -> tuple[System, str]:
    """`jira:DS-12`, `servicenow:<sys_id>`, or a bare Jira key / ServiceNow number or sys_id."""
    head, sep, tail = ref.partition(":")
    if sep and head in (System.JIRA.value, System.SERVICENOW.value):
        return System(head), tail
    if re.fullmatch(r"[A-Z][A-Z0-9_]*-\d+", ref):
        return System.JIRA, ref
    return System.SERVICENOW, ref


def load_ticket_for_explain(settings: Any, ref: str) -> Ticket:
    """Read a ticket fresh by reference and map it (for `escalation-sync explain REF`)."""
    system, ident = parse_ref(ref)
    adapter = build_adapters(settings)[system]
    raw = adapter.read(ident)
    try:
        return to_canonical(settings.mapping_model, system, raw)
    except (UnmappedValue, ValueError) as exc:
        raise MappingFailed(str(exc), system=system.value) from None
