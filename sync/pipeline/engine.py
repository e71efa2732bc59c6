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

The engine orchestrates; its parts do the work, each in a module of its own: reading and mapping
(`records`), the pair cache and leases (`pairs`), pairing and record creation (`pairing`), one
pass over a pair (`pair_sync`, applying plans with `apply`), and carrying out escalation
decisions (`sync/procedure/carry_out.py`). They share the engine's `SyncContext`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

import errors
from escalation.decision import Decision
from mapping import Mapping as SyncMapping
from mapping.model import System, Ticket
from sync.config.settings import Settings
from sync.intake.pollers import poll_system
from sync.pipeline.apply import Applier
from sync.pipeline.attachments import AttachmentCopier
from sync.pipeline.context import SyncContext
from sync.pipeline.pair_sync import PairSync
from sync.pipeline.pairing import Pairing
from sync.pipeline.pairs import Pairs
from sync.pipeline.plan import Plan, SyncRules
from sync.pipeline.reconcile import reconcile_all
from sync.pipeline.records import Reader, ticket_id
from sync.procedure.carry_out import EscalationPort, Escalator
from sync.procedure.step import PolicyEscalation
from sync.runtime.metrics import Metrics, PrometheusMetrics
from sync.store.database import LeaseBusy, Link, Store
from sync.systems.base import Adapter

log = structlog.get_logger("escalation_sync.engine")

# What the queue will do with a failed sync, as the failure counter names it: a transient
# failure and a bug are tried again, an authentication failure waits for its system.
_FAILURE_OUTCOME = {
    errors.Action.RETRY: "retry",
    errors.Action.UNKNOWN: "retry",
    errors.Action.PAUSE_SYSTEM: "paused",
}


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
        withhold_pattern: str | None = None,
    ) -> None:
        self.context = SyncContext.of(
            mapping=mapping,
            adapters=adapters,
            store=store,
            metrics=metrics or PrometheusMetrics(),
            clock=clock,
            integration_users=integration_users,
        )
        self.context.use_withhold(withhold_pattern)
        self.escalation = escalation
        # Where `poll` sends what it finds; without a queue, `poll` processes inline.
        self.enqueue = enqueue
        self.reader = Reader(self.context)
        self.pairs = Pairs(store)
        self.pairing = Pairing(self.context, self.reader, self.pairs)
        self.applier = Applier(self.context, AttachmentCopier(max_bytes=attachment_max_bytes))
        self.pair_sync = PairSync(self.context, self.reader, self.applier)
        self.escalator = Escalator(self.context, self.reader, self.pairing, self.applier)

    # --- what the parts share (see SyncContext) ----------------------------------------------

    @property
    def mapping(self) -> SyncMapping:
        """The mapping in force."""
        return self.context.mapping

    @property
    def rules(self) -> SyncRules:
        """The sync rules of the mapping in force."""
        return self.context.rules

    @property
    def adapters(self) -> dict[System, Adapter]:
        """Each system's adapter."""
        return self.context.adapters

    @property
    def store(self) -> Store:
        """The state store."""
        return self.context.store

    @property
    def metrics(self) -> Metrics:
        """Where the engine reports what it did."""
        return self.context.metrics

    @property
    def integration_users(self) -> dict[System, str]:
        """Each system's integration user, where configured."""
        return self.context.integration_users

    @property
    def itsm_systems(self) -> frozenset[System]:
        """The systems escalations are decided in."""
        return self.context.itsm_systems

    @property
    def copier(self) -> AttachmentCopier:
        """Copies attachments (its `max_bytes` is the size limit)."""
        return self.applier.copier

    @property
    def clock(self) -> Callable[[], datetime]:
        """What the engine takes as now."""
        return self.context.clock

    @clock.setter
    def clock(self, clock: Callable[[], datetime]) -> None:
        self.context.clock = clock

    @property
    def after_write(self) -> Callable[[str], None]:
        """Test seam: called after each vendor write, before it is recorded in the store."""
        return self.context.after_write

    @after_write.setter
    def after_write(self, hook: Callable[[str], None]) -> None:
        self.context.after_write = hook

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
        if author and author == self.integration_users.get(sys):
            log.debug("event by the integration user ignored")
            return Outcome(sys, ticket, skipped="authored by the integration user")
        try:
            outcome = self._process(sys, ticket)
        except LeaseBusy as exc:
            log.debug("pair busy, trying again shortly", reason=str(exc))
            raise
        except Exception as exc:
            kind = _FAILURE_OUTCOME.get(errors.action_of(exc), "dead_letter")
            self.metrics.failed(sys.value, kind)
            log.warning("sync failed", error=type(exc).__name__, reason=str(exc))
            raise
        lag = None
        if outcome.updated is not None:
            lag = (self.clock() - outcome.updated).total_seconds()
        self.metrics.processed(sys.value, outcome.writes, lag)
        log.info("synced", writes=outcome.writes, created=outcome.created)
        return outcome

    def probe(self, system: str) -> None:
        """One cheap authenticated call to `system` (the queue asks a paused system this)."""
        self.adapters[System(system)].probe()

    def partners(self, system: str, ticket_id: str) -> list[tuple[str, str]]:
        """The records whose leases a sync of this ticket needs besides its own: its pair."""
        link = self.pairs.link_of(system, ticket_id)
        return [] if link is None else [link.other(system)]

    def poll(self, system: str) -> int:
        """One changed-since pass over `system`; returns how many records it found."""
        return poll_system(self, System(system))

    def reconcile(self) -> int:
        """Compare every pair and repair drift; returns how many pairs needed writes."""
        return reconcile_all(self)

    def reload(self, settings: Settings) -> None:
        """Take a new mapping and policy (SIGHUP): tickets processed from now on use them."""
        self.context.use_mapping(settings.mapping_model)
        policy = settings.compiled_policy
        self.context.use_withhold(policy.customer_updates.withhold_pattern if policy else None)
        if self.escalation is not None and policy is not None:
            self.escalation = PolicyEscalation.from_settings(settings)

    # --- whole pairs -------------------------------------------------------------------------

    def read(self, system: System, ticket: str) -> Ticket:
        """Read a record fresh and map it; an unmappable record is a permanent failure."""
        return self.reader.read(system, ticket)

    def reconcile_pair(self, link: Link) -> int:
        """Read both records of a pair fresh and repair any drift; returns the writes made."""
        one, two = link.sides
        with self.pairs.leases([(one.system, one.ticket_id), (two.system, two.ticket_id)]):
            first = self.read(System(one.system), one.ticket_id)
            second = self.read(System(two.system), two.ticket_id)
            itsm, eng = self.pairing.as_itsm_and_eng(first, second)
            _, writes = self.pair_sync.run(itsm, eng, origin=itsm.ref.system, repair=True)
        return writes

    def create_pair(self, system: str, ticket: str) -> str:
        """Create and link the paired record of an unpaired one now (first route from its system,
        whatever its condition), post each record's link in the other, mirror comments and
        attachments; returns the new record's id. Pairing a paired record is a no-op.
        """
        source = self.read(System(system), ticket)
        link = self.pairs.link_of(system, ticket_id(source))
        if link is not None:
            return link.other(system)[1]
        route = next((r for r in self.mapping.routes if r.source is source.ref.system), None)
        target_system = (
            route.target if route is not None else self.mapping.partner_of(source.ref.system)
        )
        container = (route.target_project or route.target_table) if route is not None else None
        target, _ = self.pairing.create(
            source,
            target_system,
            self.pairing.seed_fields(source),
            container,
            route.issue_type if route is not None else None,
            route.name if route is not None else "manual",
        )
        itsm, eng = self.pairing.as_itsm_and_eng(source, target)
        self.pairing.post_links(itsm, eng)
        self.pair_sync.run(itsm, eng, origin=source.ref.system, fresh_itsm=itsm)
        return ticket_id(target)

    def sync_linked(
        self, itsm: Ticket, eng: Ticket, *, origin: System, just_created: bool = False
    ) -> int:
        """Bring a linked pair in step from both records as just read (a backfill's pairs);
        `just_created` takes their fields as agreeing, the new one having been written from
        `origin`. Returns the writes made."""
        fresh = itsm if just_created else None
        _, writes = self.pair_sync.run(itsm, eng, origin=origin, fresh_itsm=fresh)
        return writes

    # --- one ticket ----------------------------------------------------------------------------

    def _process(self, system: System, tid: str) -> Outcome:
        # The queue holds this ticket's lease; the pair's other record must not be synced by
        # another worker meanwhile (both would mirror the same new comment).
        link = self.pairs.link_of(system.value, tid)
        if link is not None:
            with self.pairs.leases([link.other(system.value)]):
                source, target = self.reader.read_pair(system, tid, link)
                return self._process_pair(system, source, link, target)
        # Unpaired, or paired under another of its ids (a Jira id for the key): the record
        # read says which.
        source = self.read(system, tid)
        link = self.pairs.link_of(system.value, ticket_id(source))
        if link is None:
            return self._process_pair(system, source, None)
        with self.pairs.leases([link.other(system.value)]):
            return self._process_pair(system, source, link)

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
            decision, itsm_new, eng_new, made, n = self.escalator.run(
                self.escalation, itsm, eng, link
            )
            writes += n
            created = made
            if eng_new is not None and eng is None:
                # Just created: both sides start from what they hold now.
                itsm_snapshot_override = itsm_new
            itsm, eng = itsm_new, eng_new
            if link is None and made is not None:
                link = self.pairs.link_of(system.value, tid)
        if link is None or itsm is None or eng is None:
            if link is None:
                link, itsm, eng, made, n = self.pairing.by_route(source)
            else:
                itsm = eng = made = None
                n = 0
            writes += n
            created = created or made
            if made is not None:
                itsm_snapshot_override = itsm
        if link is None or itsm is None or eng is None:
            return Outcome(system, tid, decision=decision, writes=writes, created=created)
        result, n = self.pair_sync.run(itsm, eng, origin=system, fresh_itsm=itsm_snapshot_override)
        writes += n
        return Outcome(system, tid, decision=decision, plan=result, writes=writes, created=created)
