"""The composition root: everything the daemon, `sync --once`, `backfill` and the CLI build from
the settings, built here and nowhere else.

```
settings -> each system's section -> its adapter --\\
         -> policy + e-mail -> PolicyEscalation ----> Engine (the queue's processor)
         -> state -> Store, SyncQueue -------------/
```
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from huey import Huey

from connectors.retry import RetryPolicy
from mapping.model import System
from sync.config.settings import Settings
from sync.notify import outbox
from sync.notify.outbox import OutboxWorker
from sync.notify.registry import build_notifiers
from sync.pipeline.engine import Engine
from sync.procedure.carry_out import EscalationPort
from sync.procedure.step import PolicyEscalation
from sync.queue.tasks import SyncQueue, TicketProcessor, make_huey
from sync.runtime.health import HealthBoard, HealthPolicy
from sync.store.database import Store
from sync.systems import registry as systems
from sync.systems.base import Adapter


def open_store(settings: Settings) -> Store:
    """The configured store (SQLite in the state directory unless a URL is set)."""
    return Store.for_state(settings.state.dir, settings.state.database_url)


def queue_storage(settings: Settings) -> Huey:
    """The configured queue storage (SQLite in the state directory unless a URL is set)."""
    return make_huey(settings.state.queue_url, settings.state.dir)


def open_queue(
    settings: Settings,
    store: Store,
    *,
    daily_reconcile: bool = False,
    health: HealthBoard | None = None,
) -> SyncQueue:
    """The sync queue on the configured storage, over `store`; with `daily_reconcile` (the
    daemon) its periodic reconciliation runs at the configured time, and with `health` it
    pauses a system that refuses our credentials and probes it at the configured interval."""
    reconcile_at = settings.sync.reconcile_at if daily_reconcile else None
    if health is None:
        return SyncQueue(queue_storage(settings), store, reconcile_at=reconcile_at)
    return SyncQueue(
        queue_storage(settings),
        store,
        reconcile_at=reconcile_at,
        health=health,
        probe_interval=HealthPolicy.from_settings(settings).probe_interval.total_seconds(),
    )


def build_adapters(
    settings: Settings,
    *,
    retry: RetryPolicy | None = None,
    session_factory: Callable[[], Any] | None = None,
) -> dict[System, Adapter]:
    """The adapter of every system the mapping names, each built by its ticket system from its
    section of the settings."""
    adapters: dict[System, Adapter] = {}
    for system in settings.mapping_model.systems:
        ticket_system = systems.get(system)
        adapters[system] = ticket_system.adapter(
            settings.section(ticket_system),
            settings.mapping_model,
            retry=retry,
            session_factory=session_factory,
        )
    return adapters


def integration_users(settings: Settings) -> dict[System, str | None]:
    """Each mapped system's integration user (whose edits are never a source)."""
    return {
        system: settings.system_settings(system).integration_user
        for system in settings.mapping_model.systems
    }


def policy_escalation(settings: Settings) -> EscalationPort | None:
    """The escalation step over escalation.decide, the ledger and the outbox (None: no policy)."""
    return PolicyEscalation.from_settings(settings)


def build_engine(
    settings: Settings,
    store: Store,
    *,
    retry: RetryPolicy | None = None,
    enqueue: Callable[[str, str], None] | None = None,
    clock: Callable[[], datetime] | None = None,
    escalation: EscalationPort | None = None,
) -> Engine:
    """The engine the daemon, `sync --once` and `backfill` run, wired from the settings.

    The escalation policy is enabled when the settings carry one; `escalation` overrides that
    choice.
    """
    if escalation is None:
        escalation = policy_escalation(settings)
    return Engine(
        mapping=settings.mapping_model,
        adapters=build_adapters(settings, retry=retry),
        store=store,
        escalation=escalation,
        integration_users=integration_users(settings),
        attachment_max_bytes=settings.sync.attachment_max_bytes,
        clock=clock or (lambda: datetime.now(UTC)),
        enqueue=enqueue,
    )


def default_processor(settings: Settings, store: Store, queue: SyncQueue) -> TicketProcessor:
    """The sync engine, with its pollers feeding the queue."""
    engine: TicketProcessor = build_engine(settings, store, enqueue=queue.enqueuer("poll"))
    return engine


def outbox_worker(
    settings: Settings,
    store: Store,
    *,
    health: HealthBoard | None = None,
    batch_size: int = 0,
    resync: Callable[[str, str], None] | None = None,
) -> OutboxWorker | None:
    """What sends the outbox through every configured notifier (None: no channel configured);
    `batch_size` bounds a pass (0: the worker's own batch); `resync(system, id)` is told when a
    row naming a record settles (a chat room made or refused), so that record is synced again."""
    notifiers = build_notifiers(settings)
    if not len(notifiers):
        return None
    options = {"batch_size": batch_size} if batch_size else {}
    return outbox.outbox_worker(
        store.db,
        notifiers,
        health=health,
        probe_interval=HealthPolicy.from_settings(settings).probe_interval,
        resync=resync,
        **options,
    )
