"""A ServiceNow instance in a process: Table, Attachment and Batch APIs, OAuth, the Business Rule.

```
with ServiceNowSimulator() as sn:                 # 127.0.0.1, a free port
    sn.add_user("abel.tuter", name="Abel Tuter", password="pw")
    inc = sn.create_incident({"short_description": "VPN down"}, as_user="abel.tuter")
    sn.add_comment(inc["sys_id"], "still down", as_user="abel.tuter")
    sn.set_webhook("http://127.0.0.1:9000/webhooks/servicenow", "s3cret",
                   integration_user="svc.sync")
    requests.get(f"{sn.url}/api/now/table/incident", auth=("admin", "admin"))
```
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from simulators.common import FaultConfig, FaultInjector, ServerThread
from simulators.servicenow.app import Credentials, RateLimitBody, ServiceNowAPI
from simulators.servicenow.outbound import Delivery, OutboundRule, WebhookTarget
from simulators.servicenow.rules import AccessControl, RateLimiter, RateLimitRule
from simulators.servicenow.store import ServiceNowStore

__all__ = ["ServiceNowSimulator"]


class ServiceNowSimulator:
    """A running simulated instance with helpers to seed it and act in it as a person would."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: FaultConfig | None = None,
        admin_user: str = "admin",
        admin_password: str = "admin",
    ) -> None:
        self.store = ServiceNowStore()
        self.credentials = Credentials()
        self.access = AccessControl()
        self.limiter = RateLimiter()
        self.api = ServiceNowAPI(self.store, self.credentials, self.access, self.limiter)
        self.faults = FaultInjector(self.api.app, faults)
        self.api.count_batched = self.faults.stats.count_batched
        self.outbound = OutboundRule()
        self.store.on_change(self.outbound)
        self._server = ServerThread(RateLimitBody(self.faults), host=host, port=port)
        self.admin_user = admin_user
        self.add_user(
            admin_user, name="System Administrator", password=admin_password, roles=("admin",)
        )

    # --------------------------------------------------------------------------- lifecycle

    def start(self) -> ServiceNowSimulator:
        """Serve in the background; returns once requests are accepted."""
        self._server.start()
        listening = getattr(self._server, "_socket", None)
        if isinstance(listening, socket.socket):
            # Accepted sockets inherit TCP_NODELAY from the listener on Linux. Without it every
            # keep-alive request waits ~40 ms: the body segment is held back (Nagle) until the
            # client's delayed ACK of the header segment.
            listening.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.store.base_url = self.url
        return self

    def stop(self) -> None:
        """Stop serving and stop the outbound rule's thread."""
        self._server.stop()
        self.outbound.stop()

    def __enter__(self) -> ServiceNowSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The instance URL (no trailing slash)."""
        return self._server.url

    @property
    def port(self) -> int:
        """The bound port."""
        return self._server.port

    # --------------------------------------------------------------------------- configuration

    def add_user(
        self,
        user_name: str,
        *,
        name: str | None = None,
        email: str = "",
        password: str | None = None,
        roles: Iterable[str] = ("itil",),
        time_zone: str = "",
        **fields: str,
    ) -> dict[str, str]:
        """Create a sys_user with `roles` (itil by default: a fulfiller, not an admin), let it
        log in with basic auth when a password is given; `time_zone` is its preference."""
        first, _, last = (name or user_name).partition(" ")
        record = self.store.insert(
            "sys_user",
            {
                "user_name": user_name,
                "name": name or user_name,
                "first_name": first,
                "last_name": last,
                "email": email,
                "time_zone": time_zone,
                **fields,
            },
            user=self.admin_user,
        )
        self.access.roles[user_name] = set(roles)
        if password is not None:
            self.credentials.set_password(user_name, password)
        return record

    def grant_roles(self, user_name: str, *roles: str) -> None:
        """Give a user more roles."""
        self.access.roles.setdefault(user_name, set()).update(roles)

    def revoke_roles(self, user_name: str, *roles: str) -> None:
        """Take roles away from a user."""
        self.access.roles.setdefault(user_name, set()).difference_update(roles)

    def restrict_field(
        self,
        table: str,
        field: str,
        *,
        read_roles: Iterable[str] | None = None,
        write_roles: Iterable[str] | None = None,
    ) -> None:
        """Add a field ACL, as an admin does: only these roles (and admin) read / write it."""
        if read_roles is not None:
            self.access.read_roles[(table, field)] = frozenset(read_roles)
        if write_roles is not None:
            self.access.write_roles[(table, field)] = frozenset(write_roles)

    def set_rate_limit(self, per_hour: int | None, *, user: str | None = None) -> str | None:
        """Install one rate limit rule (for `user`, or everyone); None removes every rule.
        Returns the rule's sys_id, which answers carry in X-RateLimit-Rule."""
        if per_hour is None:
            self.limiter.set_rules(())
            return None
        rule = RateLimitRule(per_hour, user)
        self.limiter.set_rules([rule])
        return rule.sys_id

    def set_property(self, name: str, value: str, *, read_roles: str = "") -> None:
        """Create or change a system property (sys_properties), as an admin does."""
        found = self.store.query("sys_properties", f"name={name}")
        fields = {"name": name, "value": value, "read_roles": read_roles, "type": "string"}
        if found:
            self.store.update("sys_properties", found[0]["sys_id"], fields, user=self.admin_user)
        else:
            self.store.insert("sys_properties", fields, user=self.admin_user)

    def delete_property(self, name: str) -> None:
        """Remove a system property."""
        for row in self.store.query("sys_properties", f"name={name}"):
            self.store.delete("sys_properties", row["sys_id"])

    def add_oauth_client(self, client_id: str, client_secret: str, *, user_name: str) -> None:
        """Register an OAuth client (client credentials grant) acting as `user_name`."""
        self.credentials.add_client(client_id, client_secret, user_name)

    def revoke_tokens(self) -> None:
        """Invalidate every OAuth token issued so far (clients get 401 until they renew)."""
        self.credentials.revoke_tokens()

    def add_column(self, table: str, name: str) -> None:
        """Add a custom `u_*` string column to a table, as an instance admin does."""
        self.store.add_column(table, name)

    def set_display_name(self, table: str, sys_id: str, name: str) -> None:
        """Display value for a reference into an unserved table (group, company, location...)."""
        self.store.set_display_name(table, sys_id, name)

    def set_webhook(
        self,
        url: str | None,
        secret: str = "",
        *,
        integration_user: str | None = None,
        table: str = "incident",
    ) -> None:
        """Install the shipped Business Rule posting to `url` (None removes it), with the
        system properties it reads (docs/servicenow/README.md): the URL readable by fulfillers
        (read roles `itil`) so a client can check where the rule posts, the secret by admins."""
        target = None if url is None else WebhookTarget(url, secret, integration_user, table)
        self.outbound.configure(target)
        if url is None:
            for name in ("webhook.url", "webhook.secret", "integration_user"):
                self.delete_property(f"escalation_sync.{name}")
            return
        self.set_property("escalation_sync.webhook.url", url, read_roles="itil")
        self.set_property("escalation_sync.webhook.secret", secret)
        self.set_property("escalation_sync.integration_user", integration_user or "")

    def configure_faults(self, config: FaultConfig) -> None:
        """Replace the fault injection settings."""
        self.faults.configure(config)

    def freeze_time(self, moment: datetime | None) -> None:
        """Stamp every write with `moment` (None: the real clock again)."""
        if moment is None:
            self.store.set_clock(lambda: datetime.now(UTC))
        else:
            frozen = moment
            self.store.set_clock(lambda: frozen)

    def hibernate(self, sleeping: bool = True) -> None:
        """Answer every API request with the hibernation HTML page, as a sleeping instance."""
        self.api.hibernating = sleeping

    # --------------------------------------------------------------------------- acting

    def create_incident(
        self, fields: Mapping[str, Any] | None = None, *, as_user: str | None = None
    ) -> dict[str, str]:
        """Insert an incident as `as_user` (admin by default); returns the raw record."""
        return self.store.insert("incident", dict(fields or {}), user=as_user or self.admin_user)

    def seed_incidents(
        self,
        count: int,
        *,
        as_user: str | None = None,
        fields: Mapping[str, Any] | None = None,
    ) -> list[dict[str, str]]:
        """Insert `count` incidents (`short_description` numbered unless given)."""
        created = []
        for i in range(count):
            values = {"short_description": f"Seeded incident {i + 1}", **(fields or {})}
            created.append(self.create_incident(values, as_user=as_user))
        return created

    def update_incident(
        self, sys_id: str, fields: Mapping[str, Any], *, as_user: str | None = None
    ) -> dict[str, str]:
        """Update an incident as `as_user`; returns the raw record."""
        return self.store.update("incident", sys_id, fields, user=as_user or self.admin_user)

    def add_comment(
        self, sys_id: str, text: str, *, as_user: str | None = None, work_note: bool = False
    ) -> dict[str, str]:
        """Write a customer-visible comment (or a work note) as `as_user`; returns the row."""
        element = "work_notes" if work_note else "comments"
        return self.store.add_journal(
            "incident", sys_id, element, text, user=as_user or self.admin_user
        )

    def add_work_note(
        self, sys_id: str, text: str, *, as_user: str | None = None
    ) -> dict[str, str]:
        """Write an internal work note as `as_user`; returns the journal row."""
        return self.add_comment(sys_id, text, as_user=as_user, work_note=True)

    def attach(
        self,
        sys_id: str,
        file_name: str,
        content: bytes,
        content_type: str = "application/octet-stream",
        *,
        as_user: str | None = None,
    ) -> dict[str, str]:
        """Attach a file to an incident as `as_user`; returns the metadata."""
        return self.store.add_attachment(
            "incident", sys_id, file_name, content, content_type, user=as_user or self.admin_user
        )

    # --------------------------------------------------------------------------- inspecting

    def incident(self, sys_id: str) -> dict[str, str]:
        """The raw stored incident."""
        return self.store.get("incident", sys_id)

    def incidents(self, query: str = "") -> list[dict[str, str]]:
        """Incidents matching an encoded query (raw values)."""
        return [dict(r) for r in self.store.query("incident", query)]

    def journal(self, sys_id: str) -> list[dict[str, str]]:
        """The incident's sys_journal_field rows, oldest first."""
        return self.store.journal(sys_id)

    def deliveries(self) -> list[Delivery]:
        """Posts the Business Rule made so far."""
        return self.outbound.deliveries

    def wait_for_webhooks(self, timeout: float = 10.0) -> bool:
        """Block until every queued Business Rule post is done."""
        return self.outbound.wait_idle(timeout)

    def stats(self) -> dict[str, Any]:
        """The same counters as GET /_sim/stats."""
        return self.faults.stats.snapshot()

    def users(self) -> Iterable[dict[str, str]]:
        """Every sys_user record."""
        return [dict(r) for r in self.store.query("sys_user", "")]
