"""The help desk as a ticket system: its section, adapter, signed webhooks, `HD-` numbers."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, ClassVar

from connectors.errors import BadSignature, MalformedWebhook
from connectors.events import ChangeEvent
from connectors.retry import RetryPolicy
from mapping import Mapping as SyncMapping
from sync.systems.base import TicketSystem
from tests.systems.helpdesk.adapter import HelpdeskAdapter
from tests.systems.helpdesk.server import HelpdeskServer
from tests.systems.helpdesk.settings import HelpdeskSettings

SIGNATURE = "x-helpdesk-signature"
NUMBER = re.compile(r"HD-\d+")


def sign(secret: str, body: bytes) -> str:
    """The signature header's value for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class HelpdeskSystem(TicketSystem[HelpdeskSettings]):
    """Help desk tickets, by id; people know them by their `HD-` number."""

    name: ClassVar[str] = "helpdesk"
    title: ClassVar[str] = "Help Desk"
    settings_model = HelpdeskSettings

    def adapter(
        self,
        section: HelpdeskSettings,
        mapping: SyncMapping,
        *,
        retry: RetryPolicy | None = None,
        session_factory: Callable[[], Any] | None = None,
    ) -> HelpdeskAdapter:
        """The adapter of the help desk the section names."""
        author = section.integration_user or "escalation-sync"
        return HelpdeskAdapter(HelpdeskServer.at(section.url), author=author)

    def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, section: HelpdeskSettings, now: datetime
    ) -> list[ChangeEvent]:
        """`{"delivery": ..., "event": "ticket.updated", "ticket": {"id": ...}, "actor": ...}`,
        signed with `X-Helpdesk-Signature: sha256=<hmac of the body>`."""
        secret = section.webhook_secret_value()
        if secret is not None:
            given = {k.lower(): v for k, v in headers.items()}.get(SIGNATURE, "")
            if not hmac.compare_digest(given.encode(), sign(secret, body).encode()):
                raise BadSignature("X-Helpdesk-Signature does not match the body")
        try:
            payload = json.loads(body)
            ticket = str(payload["ticket"]["id"])
            event = str(payload["event"]).removeprefix("ticket.")
        except (ValueError, KeyError, TypeError) as exc:
            raise MalformedWebhook(f"not a help desk delivery: {exc}") from None
        return [
            ChangeEvent(
                system=self.name,
                event=event,
                ticket=ticket,
                author=payload.get("actor"),
                delivery_id=payload.get("delivery"),
            )
        ]

    def claims_reference(self, text: str) -> bool:
        """A ticket number, `HD-12`."""
        return NUMBER.fullmatch(text) is not None


SYSTEM = HelpdeskSystem()
