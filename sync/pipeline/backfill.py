"""Backfill: pair the records that existed before the product was switched on, in bulk.

```
backfill(engine, System.SERVICENOW, since=...)
    scan the system a page at a time (the mapped columns only), each page's journals,
        attachments and callers with one query each; map every record
    a paired record is skipped, unless its pair still waits for its links (an earlier run was
        cut short): that pair is finished below
    the unpaired ones a route pairs are created in chunks: Jira bulk create (50 issues a
        request, each taking its status's transition as it is created), ServiceNow Batch API
    each chunk's pairs are recorded as soon as the create answers, with PostLinks parked
        under them (sync/pending.py), in one transaction
    the new records are read back in bulk, the links posted both ways (ServiceNow work notes
        through the Batch API, Jira remote links a few at a time), comments and attachments
        mirrored through the engine; snapshots, audit rows and the cleared PostLinks in one
        transaction per chunk
```
Reading, creating and linking overlap: while the scan reads the next page, a few chunks are
being created and linked by a small pool; the scan waits when that many are in flight, so
memory stays flat however many records there are.

Crash safety: a pair is recorded in the transaction right after its create answers, so a run
cut short never creates a second pair; its parked PostLinks make the next run post its links
(each idempotent: a ServiceNow note is not written when its marker is in the journal, a Jira
remote link is keyed on its URL) and mirror its content. A record whose pair could not be made
is reported with the vendor's reason and left unpaired: running backfill again retries it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

import errors
from connectors.errors import ConnectorError
from mapping import Mapping as SyncMapping
from mapping import Route, UnmappedValue, VendorWrite, matching_routes, to_canonical, to_vendor
from mapping.model import System, Ticket
from mapping.reads import keys_read
from sync.pipeline.context import SyncContext
from sync.pipeline.plan import SyncRules, get_value
from sync.pipeline.records import (
    created_side,
    link_side,
    paired_link,
    snapshot_data,
    status_context,
    ticket_id,
)
from sync.procedure import pending
from sync.store.database import NewAudit, NewLink, NewSnapshot, Store, StoreSession
from sync.systems.base import Adapter, BulkAdapter, Created, NewRecord, PairLink

log = structlog.get_logger("escalation_sync.backfill")

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
ESCALATION_LABEL = "ESCALATION"
BATCH_SIZE = 50
# Chunks being created and linked while the scan reads on.
CHUNKS_IN_FLIGHT = 3


@dataclass(frozen=True, slots=True)
class BackfillFailure:
    """A record whose pair was not made (or not finished), and why."""

    ticket: str
    reason: str


@dataclass(frozen=True, slots=True)
class BackfillSkip:
    """A record no route pairs: its key (or id) and why no route took it."""

    ticket: str
    reason: str


@dataclass(frozen=True, slots=True)
class BackfillResult:
    """What a backfill pass did; `resumed` counts pairs an earlier pass left without links."""

    scanned: int = 0
    paired: int = 0
    already_paired: int = 0
    not_routed: int = 0
    failures: tuple[BackfillFailure, ...] = field(default_factory=tuple)
    unrouted: tuple[BackfillSkip, ...] = field(default_factory=tuple)
    resumed: int = 0


@dataclass(frozen=True, slots=True)
class _Candidate:
    """An unpaired record a route pairs, with the record to create for it."""

    ticket: Ticket
    raw: dict[str, Any]
    route: Route
    record: NewRecord


@dataclass(frozen=True, slots=True)
class _Pair:
    """A recorded pair to finish: links both ways, content mirrored, snapshots."""

    source: Ticket
    raw: dict[str, Any]
    target_id: str
    resumed: bool


Progress = Callable[[str, int, int | None], None]


class Backfilled(Protocol):
    """What a backfill works with: the engine, as the backfill sees it."""

    @property
    def mapping(self) -> SyncMapping:
        """The mapping in force (routes, fields)."""
        ...

    @property
    def rules(self) -> SyncRules:
        """The sync rules (which fields a new record is created with)."""
        ...

    @property
    def adapters(self) -> Mapping[System, Adapter]:
        """Each system's adapter (a backfill needs their bulk operations)."""
        ...

    @property
    def store(self) -> Store:
        """Where pairs, snapshots and audit rows are recorded."""
        ...

    @property
    def context(self) -> SyncContext:
        """What every pass works with (the integration users, whose comments are not a
        record's last word when a status requires it)."""
        ...

    def sync_linked(
        self, itsm: Ticket, eng: Ticket, *, origin: System, just_created: bool = False
    ) -> int:
        """Bring a linked pair in step from both records as just read."""
        ...


def _no_progress(_stage: str, _done: int, _total: int | None) -> None:
    return None


def backfill(
    engine: Backfilled,
    system: System,
    *,
    since: datetime | None = None,
    label: str = ESCALATION_LABEL,
    progress: Progress = _no_progress,
    chunks_in_flight: int = CHUNKS_IN_FLIGHT,
) -> BackfillResult:
    """Pair the unpaired records of `system` changed since `since` (default: all of them).

    `progress(stage, done, total)` is called as work advances ("scan", "create", "mirror";
    `total` is None while the scan has not counted it yet); the CLI draws it as progress bars.
    """
    run = _Run(engine, system, label, progress)
    workers = max(1, chunks_in_flight)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="backfill")
    slots = threading.BoundedSemaphore(workers + 1)
    futures: list[Future[None]] = []

    def submit(job: Callable[[Any], None], chunk: Sequence[Any]) -> None:
        slots.acquire()
        future = pool.submit(job, chunk)
        future.add_done_callback(lambda _done: slots.release())
        futures.append(future)

    try:
        creating: list[_Candidate] = []
        finishing: list[_Pair] = []
        for page in run.source.scan(since or EPOCH, run.fields[system]):
            new, resumed = run.classify(page.records, page.total)
            creating += new
            finishing += resumed
            while len(creating) >= BATCH_SIZE:
                submit(run.create, creating[:BATCH_SIZE])
                creating = creating[BATCH_SIZE:]
            while len(finishing) >= BATCH_SIZE:
                submit(run.finish, finishing[:BATCH_SIZE])
                finishing = finishing[BATCH_SIZE:]
            _raise_first(futures)
        run.scan_done()
        if creating:
            submit(run.create, creating)
        if finishing:
            submit(run.finish, finishing)
        for future in futures:
            future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return run.result()


def _raise_first(futures: list[Future[None]]) -> None:
    """Re-raise the first failure of a finished job (an error no element caused: stop)."""
    for future in futures:
        if future.done() and future.exception() is not None:
            future.result()
    futures[:] = [f for f in futures if not f.done()]


class NoBulkOperations(Exception):
    """A system's adapter offers no bulk operations, which a backfill needs."""


def _bulk(adapter: Adapter) -> BulkAdapter:
    if isinstance(adapter, BulkAdapter):
        return adapter
    raise NoBulkOperations(
        f"{adapter.system.value} offers no bulk operations (its adapter is no BulkAdapter)"
    )


class _Run:
    """One backfill pass: what it reads and writes with, its counts, failures and progress."""

    def __init__(self, engine: Backfilled, system: System, label: str, progress: Progress) -> None:
        self.engine = engine
        self.system = system
        self.target = engine.mapping.partner_of(system)
        self.label = label
        self.source = _bulk(engine.adapters[system])
        self.made = _bulk(engine.adapters[self.target])
        self.fields: dict[System, Collection[str] | None] = {
            s: keys_read(engine.mapping, s, _bulk(engine.adapters[s]).fields_under)
            for s in (system, self.target)
        }
        self._progress = progress
        self._lock = threading.Lock()
        self._store_lock = threading.Lock()
        self.failures: list[BackfillFailure] = []
        self.unrouted: list[BackfillSkip] = []
        self.scanned = self.paired = self.already = self.resumed = 0
        self._created = self._finished = 0
        self._to_create = self._to_finish = 0
        self._counted = False

    @contextmanager
    def _transaction(self) -> Iterator[StoreSession]:
        # One at a time: SQLite's busy handler would make the others sleep in growing steps
        # instead of waking them when the lock is free.
        with self._store_lock, self.engine.store.session() as tx:
            yield tx

    # --- counting ------------------------------------------------------------------------------

    def fail(self, ticket: str, reason: str) -> None:
        with self._lock:
            self.failures.append(BackfillFailure(ticket, reason))

    def report(self, stage: str, done: int, total: int | None) -> None:
        # One caller at a time: the CLI's callback is not written for concurrent calls.
        with self._lock:
            self._progress(stage, done, total)

    def scan_done(self) -> None:
        with self._lock:
            self._counted = True
        self.report("create", self._created, self._to_create)
        self.report("mirror", self._finished, self._to_finish)

    def result(self) -> BackfillResult:
        return BackfillResult(
            scanned=self.scanned,
            paired=self.paired,
            already_paired=self.already,
            not_routed=len(self.unrouted),
            failures=tuple(self.failures),
            unrouted=tuple(self.unrouted),
            resumed=self.resumed,
        )

    def _advance(self, stage: str, by: int) -> None:
        with self._lock:
            if stage == "create":
                self._created += by
                done, total = self._created, self._to_create
            else:
                self._finished += by
                done, total = self._finished, self._to_finish
            counted = self._counted
        self.report(stage, done, total if counted else None)

    # --- reading -------------------------------------------------------------------------------

    def classify(
        self, records: Sequence[dict[str, Any]], total: int | None
    ) -> tuple[list[_Candidate], list[_Pair]]:
        """Map a page of records; split it into records to pair and pairs left unfinished."""
        mapped: list[tuple[Ticket, dict[str, Any]]] = []
        for raw in records:
            try:
                mapped.append((to_canonical(self.engine.mapping, self.system, raw), raw))
            except (UnmappedValue, ValueError) as exc:
                self.fail(_raw_id(raw), str(exc))
        ids = [ticket_id(t) for t, _ in mapped]
        with self._transaction() as tx:
            links = tx.get_links(self.system.value, ids)
            unfinished = pending.awaiting_links(tx, [_parked(t) for t, _ in mapped])
        candidates: list[_Candidate] = []
        resumed: list[_Pair] = []
        unrouted: list[BackfillSkip] = []
        already = 0
        for ticket, raw in mapped:
            link = links.get(ticket_id(ticket))
            if link is not None:
                if _parked(ticket) in unfinished:
                    resumed.append(_Pair(ticket, raw, link.other(self.system.value)[1], True))
                else:
                    already += 1
                continue
            route = _route(self.engine, ticket, self.label)
            if route is None:
                why = _unrouted(self.engine, ticket, self.label)
                unrouted.append(BackfillSkip(ticket.ref.key or ticket_id(ticket), why))
                continue
            candidates.append(_Candidate(ticket, raw, route, self._new_record(ticket, route)))
        with self._lock:
            self.scanned += len(records)
            self.already += already
            self.unrouted += unrouted
            self._to_create += len(candidates)
            self._to_finish += len(candidates) + len(resumed)
            scanned = self.scanned
        self.report("scan", scanned, total)
        return candidates, resumed

    def _new_record(self, ticket: Ticket, route: Route) -> NewRecord:
        fields = [n for n in self.engine.rules.synced_fields() if get_value(ticket, n) is not None]
        seed = ticket.model_copy(
            update={"ref": ticket.ref.model_copy(update={"system": route.target})}
        )
        vendor = to_vendor(
            self.engine.mapping,
            route.target,
            seed,
            fields,
            context=status_context(self.engine.context, ticket),
        )
        write = VendorWrite(
            fields=vendor.fields,
            transition_to=vendor.transition_to,
            transition_fields=vendor.transition_fields,
        )
        return NewRecord(write, route.target_project or route.target_table, route.issue_type)

    # --- creating ------------------------------------------------------------------------------

    def create(self, chunk: Sequence[_Candidate]) -> None:
        """Create a chunk's pairs and record them at once, then finish them."""
        try:
            outcomes = self.made.create_many([c.record for c in chunk])
        except ConnectorError as exc:
            for candidate in chunk:
                self.fail(ticket_id(candidate.ticket), str(exc))
            self._advance("create", len(chunk))
            return
        made: list[tuple[_Candidate, Created]] = []
        for candidate, outcome in zip(chunk, outcomes, strict=True):
            if outcome.created is None:
                self.fail(ticket_id(candidate.ticket), outcome.problem or "not created")
                continue
            made.append((candidate, outcome.created))
            if outcome.problem:
                self.fail(ticket_id(candidate.ticket), outcome.problem)
        recorded: list[_Pair] = []
        with self._transaction() as tx:
            conflicts = tx.add_links([self._link(c, created) for c, created in made])
            for (candidate, created), conflict in zip(made, conflicts, strict=True):
                target_id = created.ticket_id
                if conflict is not None:
                    self.fail(ticket_id(candidate.ticket), f"{target_id} not recorded: {conflict}")
                    continue
                recorded.append(_Pair(candidate.ticket, candidate.raw, target_id, resumed=False))
            tx.audit_many([self._created_audit(c, created.ticket_id) for c, created in made])
            pending.park_links(tx, [_parked(p.source) for p in recorded])
        self._advance("create", len(chunk))
        self.finish(recorded)

    def _link(self, candidate: _Candidate, created: Created) -> NewLink:
        source = link_side(candidate.ticket)
        return NewLink(source, created_side(self.target, created), candidate.route.name)

    def _created_audit(self, candidate: _Candidate, made_id: str) -> NewAudit:
        source = candidate.ticket
        reason = (
            f"created as the pair of {source.ref.system.value} {ticket_id(source)} "
            f"(route {candidate.route.name})"
        )
        return NewAudit(self.target.value, made_id, "record", None, made_id, reason)

    # --- finishing -----------------------------------------------------------------------------

    def finish(self, pairs: Sequence[_Pair]) -> None:
        """Read the pairs' other records back, post the links both ways, mirror the content,
        then record snapshots, audit rows and the cleared PostLinks in one transaction."""
        if not pairs:
            return
        try:
            targets = self._read_targets(pairs)
            ready = [(p, *targets[p.target_id]) for p in pairs if p.target_id in targets]
            here = self.source.add_links(
                [PairLink(ticket_id(p.source), *paired_link(t), record=p.raw) for p, t, _ in ready]
            )
            there = self.made.add_links(
                [PairLink(ticket_id(t), *paired_link(p.source), record=raw) for p, t, raw in ready]
            )
        except ConnectorError as exc:
            for pair in pairs:
                self.fail(ticket_id(pair.source), str(exc))
            self._advance("mirror", len(pairs))
            return
        fresh: list[NewSnapshot] = []
        finished: list[tuple[_Pair, Ticket, Ticket]] = []
        for (pair, target, _raw), mine, theirs in zip(ready, here, there, strict=True):
            problems = [o.problem for o in (mine, theirs) if o.problem]
            if problems:
                self.fail(ticket_id(pair.source), "; ".join(problems))
                continue
            source = pair.source
            if pair.resumed or _has_content(source) or _has_content(target):
                # Comments or attachments to mirror, or a pair an earlier run made (whose
                # records may have moved since): the engine's own sync, one pair at a time.
                try:
                    self.engine.sync_linked(
                        source, target, origin=self.system, just_created=not pair.resumed
                    )
                except (ConnectorError, errors.DeadLetter) as exc:
                    self.fail(ticket_id(pair.source), str(exc))
                    continue
            else:
                # The link note moved the record's version: the snapshot takes the new one,
                # so the next poll does not find the record changed.
                fresh += [_snapshot(source, mine.version), _snapshot(target, theirs.version)]
            finished.append((pair, source, target))
        with self._transaction() as tx:
            tx.put_snapshots(fresh)
            tx.audit_many([a for _p, s, t in finished for a in _link_audits(s, t)])
            pending.clear_links(tx, [_parked(p.source) for p, _s, _t in finished])
        with self._lock:
            self.paired += sum(1 for p, _s, _t in finished if not p.resumed)
            self.resumed += sum(1 for p, _s, _t in finished if p.resumed)
        self._advance("mirror", len(pairs))

    def _read_targets(self, pairs: Sequence[_Pair]) -> dict[str, tuple[Ticket, dict[str, Any]]]:
        raws = self.made.read_many([p.target_id for p in pairs], self.fields[self.target])
        found: dict[str, tuple[Ticket, dict[str, Any]]] = {}
        for raw in raws:
            try:
                target = to_canonical(self.engine.mapping, self.target, raw)
            except (UnmappedValue, ValueError) as exc:
                self.fail(_raw_id(raw), str(exc))
                continue
            found[ticket_id(target)] = (target, raw)
        for pair in pairs:
            if pair.target_id not in found:
                where = f"{self.target.value} {pair.target_id}"
                self.fail(ticket_id(pair.source), f"its pair {where} could not be read")
        return found


def _route(engine: Backfilled, ticket: Ticket, label: str) -> Route | None:
    approved = label in ticket.labels
    for route in matching_routes(engine.mapping, ticket, escalation_approved=approved):
        return route
    return None


def _unrouted(engine: Backfilled, ticket: Ticket, label: str) -> str:
    """Why no route pairs `ticket`, route by route."""
    routes = [r for r in engine.mapping.routes if r.source == ticket.ref.system]
    if not routes:
        return f"no route starts from {ticket.ref.system.value}"
    reasons = []
    for route in routes:
        if route.when == "escalation_approved" and label not in ticket.labels:
            reasons.append(f"no {label} label (route {route.name} pairs escalated records only)")
        elif route.filter is not None:
            reasons.append(f"outside the filter of route {route.name}: {route.filter.expression}")
    return "; ".join(reasons)


def _parked(ticket: Ticket) -> str:
    """Where a backfilled pair's PostLinks is parked: under the record the backfill read (the
    ITSM side of the pair, as a route's source always is)."""
    return pending.parked_key(ticket.ref.system, ticket.ref.id)


def _has_content(ticket: Ticket) -> bool:
    return bool(ticket.comments or ticket.attachments)


def _raw_id(raw: dict[str, Any]) -> str:
    return str(raw.get("sys_id") or raw.get("key") or raw.get("id") or "?")


def _snapshot(ticket: Ticket, version: str | None) -> NewSnapshot:
    system, ident = ticket.ref.system.value, ticket_id(ticket)
    return NewSnapshot(system, ident, snapshot_data(ticket), version or ticket.version)


def _link_audits(source: Ticket, target: Ticket) -> list[NewAudit]:
    """The audit rows of the links both records now show (as the engine's `_post_links`)."""
    return [
        NewAudit(
            here.ref.system.value,
            ticket_id(here),
            "link",
            None,
            paired_link(there)[0],
            "link to the paired record",
        )
        for here, there in ((source, target), (target, source))
    ]
