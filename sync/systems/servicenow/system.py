"""ServiceNow as a ticket system: its section, adapter, Business Rule webhooks, sys_ids."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar

from connectors import servicenow_webhook
from connectors.events import ChangeEvent
from connectors.retry import RetryPolicy
from connectors.servicenow import ServiceNowConnector
from escalation.policy import Scope
from mapping import Mapping as SyncMapping
from mapping import journal_field
from mapping.model import System, Visibility
from sync.systems.base import Simulator, TicketSystem
from sync.systems.servicenow.adapter import ServiceNowAdapter
from sync.systems.servicenow.settings import ServiceNowSettings


class ServiceNowSystem(TicketSystem[ServiceNowSettings]):
    """Records of one ServiceNow table (incidents by default), addressed by sys_id."""

    name: ClassVar[str] = "servicenow"
    title: ClassVar[str] = "ServiceNow"
    settings_model = ServiceNowSettings
    simulator: ClassVar[Simulator | None] = Simulator("simulators.servicenow:ServiceNowSimulator")

    def adapter(
        self,
        section: ServiceNowSettings,
        mapping: SyncMapping,
        *,
        retry: RetryPolicy | None = None,
        session_factory: Callable[[], Any] | None = None,
    ) -> ServiceNowAdapter:
        """A ServiceNowAdapter on the configured table and query, writing comments and work
        notes to the journal fields the mapping names; callers are read from sys_user."""

        def session() -> Any:
            return session_factory() if session_factory is not None else None

        credentials: dict[str, Any] = {}
        if section.auth == "oauth":
            credentials.update(
                client_id=section.client_id, client_secret=_secret(section.client_secret)
            )
        else:
            credentials.update(username=section.username, password=_secret(section.password))
        public, internal = (
            journal_field(mapping, System.SERVICENOW, visibility) or default
            for visibility, default in (
                (Visibility.PUBLIC, "comments"),
                (Visibility.INTERNAL, "work_notes"),
            )
        )
        records = ServiceNowConnector(
            section.instance_url,
            table=section.table,
            session=session(),
            retry=retry,
            journal_fields=(public, internal),
            **credentials,
        )
        users = ServiceNowConnector(
            section.instance_url, table="sys_user", session=session(), retry=retry, **credentials
        )
        return ServiceNowAdapter(records, users=users, query=section.query)

    def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, section: ServiceNowSettings, now: datetime
    ) -> list[ChangeEvent]:
        """A post of the shipped Business Rule, its signature and timestamp checked (when a
        secret is set) against the replay window."""
        return servicenow_webhook.parse_webhook(
            headers,
            body,
            secret=section.webhook_secret_value(),
            now=now,
            replay_window=timedelta(seconds=section.replay_window_seconds),
        )

    def scope(self, section: ServiceNowSettings, mapping: SyncMapping) -> Scope | None:
        """The table the section works in (records elsewhere are neither read nor polled)."""
        del mapping
        return Scope(
            title=self.title,
            noun="table",
            containers=frozenset({section.table}),
            configured_in=f"[{self.name}].table",
            widen=lambda _all: f"escalate to the table [{self.name}].table names",
        )

    def vendor_record(self, document: Mapping[str, Any]) -> dict[str, Any]:
        """A record as the Table API prints it, or its `result`."""
        result = document.get("result")
        return dict(result) if isinstance(result, Mapping) else dict(document)


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


SYSTEM = ServiceNowSystem()
