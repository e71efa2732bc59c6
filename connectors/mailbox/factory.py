"""The reader `[email.inbound] kind` names."""

from __future__ import annotations

from collections.abc import MutableMapping

import requests

from connectors.mailbox.base import Mailbox
from connectors.mailbox.ews import EwsMailbox
from connectors.mailbox.graph import GraphMailbox
from connectors.mailbox.imap import ImapMailbox
from connectors.mailbox.settings import InboundSettings


def build_mailbox(
    settings: InboundSettings,
    *,
    state: MutableMapping[str, str] | None = None,
    session: requests.Session | None = None,
) -> Mailbox:
    """An IMAP, Graph or EWS reader; `state` keeps IMAP's UIDVALIDITY, `session` is Graph's."""
    if not settings.enabled:
        raise ValueError("[email.inbound] is disabled")
    if settings.kind == "graph":
        return GraphMailbox(settings, session=session)
    if settings.kind == "ews":
        return EwsMailbox(settings)
    return ImapMailbox(settings, state=state)


__all__ = ["build_mailbox"]
