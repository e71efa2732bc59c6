"""The composition root: everything the daemon, `sync --once`, `backfill` and the CLI build from
the settings, built here and nowhere else.

```
settings -> connectors -> adapters ----------------\\
         -> policy + e-mail -> PolicyEscalation ----> Engine (the queue's processor)
         -> state -> Store, SyncQueue -------------/
```
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from huey import Huey
from pydantic import SecretStr

from connectors.email import EmailSettings
from connectors.jira import CommentPolicy, JiraConnector
from connectors.retry import RetryPolicy
from connectors.servicenow import ServiceNowConnector
from mapping import journal_field
from mapping.model import System, Visibility
from sync.config.settings import Settings
from sync.notify.outbox import OutboxWorker, worker_for
from sync.pipeline.engine import Engine
from sync.procedure.carry_out import EscalationPort
from sync.procedure.step import PolicyEscalation
from sync.queue.tasks import SyncQueue, TicketProcessor, make_huey
from sync.store.database import Store
from sync.systems.adapters import Adapter, JiraAdapter, ServiceNowAdapter


def open_store(settings: Settings) -> Store:
    """The configured store (SQLite in the state directory unless a URL is set)."""
    return Store.for_state(settings.state.dir, settings.state.database_url)


def queue_storage(settings: Settings) -> Huey:
    """The configured queue storage (SQLite in the state directory unless a URL is set)."""
    return make_huey(settings.state.queue_url, settings.state.dir)


def open_queue(settings: Settings, store: Store, *, daily_reconcile: bool = False) -> SyncQueue:
    """The sync queue on the configured storage, over `store`; with `daily_reconcile` (the
    daemon) its periodic reconciliation runs at the configured time."""
    reconcile_at = settings.sync.reconcile_at if daily_reconcile else None
    return SyncQueue(queue_storage(settings), store, reconcile_at=reconcile_at)


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def build_adapters(
    settings: Settings,
    *,
    retry: RetryPolicy | None = None,
    session_factory: Callable[[], Any] | None = None,
) -> dict[System, Adapter]:
    """Connectors and adapters for both systems from the settings' connection sections."""

    def session() -> Any:
        return session_factory() if session_factory is not None else None

    j = settings.jira
    jira_kwargs: dict[str, Any] = {}
    if j.auth == "pat":
        jira_kwargs["pat"] = _secret(j.pat)
    else:
        jira_kwargs.update(email=j.email, api_token=_secret(j.api_token))
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
        sn_kwargs.update(client_id=s.client_id, client_secret=_secret(s.client_secret))
    else:
        sn_kwargs.update(username=s.username, password=_secret(s.password))
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
        integration_users={
            System.JIRA: settings.jira.integration_user,
            System.SERVICENOW: settings.servicenow.integration_user,
        },
        attachment_max_bytes=settings.sync.attachment_max_bytes,
        clock=clock or (lambda: datetime.now(UTC)),
        enqueue=enqueue,
    )


def default_processor(settings: Settings, store: Store, queue: SyncQueue) -> TicketProcessor:
    """The sync engine, with its pollers feeding the queue."""
    engine: TicketProcessor = build_engine(settings, store, enqueue=queue.enqueuer("poll"))
    return engine


def email_settings(settings: Settings) -> EmailSettings | None:
    """The `[email]` section when e-mail is on, else None."""
    email = settings.email_settings
    return email if email is not None and email.enabled else None


def outbox_worker(settings: Settings, store: Store) -> OutboxWorker | None:
    """What sends the outbox's mail through the configured transport (None: e-mail is off)."""
    email = email_settings(settings)
    return worker_for(store.db, email) if email is not None else None
