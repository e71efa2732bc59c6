"""The composition root: everything the daemon, `sync --once`, `backfill` and the CLI build from
the settings, built here and nowhere else.

```
settings -> each system's section -> its adapter --\\
         -> policy + e-mail -> PolicyEscalation ----> Engine (the queue's processor)
         -> state -> Store, SyncQueue -------------/
         -> [email.inbound] -> Mailbox + ReplyHandler(Engine) -> MailIntake
```
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from huey import Huey

if TYPE_CHECKING:
    from connectors.mailbox import Mailbox
    from connectors.mailbox.settings import InboundSettings
    from sync.replies.intake import MailIntake

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
from sync.replies import store as mails
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
    policy = settings.compiled_policy
    return Engine(
        mapping=settings.mapping_model,
        adapters=build_adapters(settings, retry=retry),
        store=store,
        escalation=escalation,
        integration_users=integration_users(settings),
        attachment_max_bytes=settings.sync.attachment_max_bytes,
        clock=clock or (lambda: datetime.now(UTC)),
        enqueue=enqueue,
        withhold_pattern=policy.customer_updates.withhold_pattern if policy else None,
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
    """What sends the outbox through every configured notifier (None: no channel configured),
    skipping addresses mail bounced from; `batch_size` bounds a pass (0: the worker's own
    batch); `resync(system, id)` is told when a row naming a record settles (a chat room made or
    refused), so that record is synced again."""
    notifiers = build_notifiers(settings)
    if not len(notifiers):
        return None
    options = {"batch_size": batch_size} if batch_size else {}
    return outbox.outbox_worker(
        store.db,
        notifiers,
        health=health,
        probe_interval=HealthPolicy.from_settings(settings).probe_interval,
        suppressed=mails.suppressed,
        resync=resync,
        **options,
    )


# Where the IMAP reader keeps each folder's UIDVALIDITY, in the state directory.
MAILBOX_STATE_FILE = "mailbox-state.json"


def own_addresses(settings: Settings) -> tuple[str, ...]:
    """The product's own addresses: mail from them is our own come back (a loop)."""
    email = settings.email_settings
    if email is None:
        return ()
    found = [email.from_address, email.reply_to or ""]
    inbound = email.inbound
    if inbound is not None:
        for section, attribute in (
            (inbound.imap, "username"),
            (inbound.graph, "mailbox"),
            (inbound.ews, "mailbox"),
        ):
            value = getattr(section, attribute, None) if section is not None else None
            if value and "@" in value:
                found.append(value)
    return tuple(dict.fromkeys(a.lower() for a in found if a))


def inbound_settings(settings: Settings) -> InboundSettings | None:
    """The `[email.inbound]` section in force, or None when no replies mailbox is read."""
    email = settings.email_settings
    inbound = email.inbound if email is not None and email.enabled else None
    if inbound is None or not inbound.enabled:
        return None
    return inbound


def mail_intake(
    settings: Settings,
    engine: Engine,
    *,
    enqueue: Callable[[str, str], None] | None = None,
    health: HealthBoard | None = None,
    open_mailbox: Callable[[], Mailbox] | None = None,
) -> MailIntake | None:
    """What reads customers' replies from `[email.inbound]` into the records through `engine`
    (None: no inbound mailbox configured); `enqueue` queues the ticket a reply landed on."""
    inbound = inbound_settings(settings)
    if inbound is None:
        return None
    # The mailbox clients and the mail reader (an HTML parser, charset detection) load only
    # where replies are read (start-up time of every other command).
    from connectors.mailbox import build_mailbox
    from sync.replies.handler import ReplyHandler
    from sync.replies.intake import MailIntake, StateFile

    if open_mailbox is None:
        state = StateFile(settings.state.dir / MAILBOX_STATE_FILE)

        def open_configured() -> Mailbox:
            return build_mailbox(inbound, state=state)

        open_mailbox = open_configured
    handler = ReplyHandler(
        engine,
        inbound,
        policy=settings.compiled_policy,
        own_addresses=own_addresses(settings),
        enqueue=enqueue,
    )
    return MailIntake(
        open_mailbox,
        handler,
        batch_size=inbound.batch_size,
        poll_interval=inbound.poll_interval_seconds,
        health=health,
    )
