"""Inbound Jira webhooks: verify the signature, then normalise the delivery to change events.

Jira signs a delivery with `X-Hub-Signature: sha256=<hex HMAC-SHA256 of the raw body>` when the
webhook was registered with a secret, and names it with `X-Atlassian-Webhook-Identifier` (the
same value on every retry of that delivery). The signature is checked on the raw bytes before
anything is parsed.

Payload shapes handled (Cloud and Server, current and old):
- `jira:issue_created` / `jira:issue_updated` / `jira:issue_deleted` with `issue`, `user` and a
  `changelog`; `issue_event_type_name` tells comment activity (`issue_commented`,
  `issue_comment_edited`, `issue_comment_deleted`) apart from field changes. Old Server payloads
  lack `issue_event_type_name`: a comment without a changelog is then comment activity.
- `comment_created` / `comment_updated` / `comment_deleted`: Cloud sends an `issue` object,
  Server does not; the issue id is then read from `comment.self` (`.../issue/10013/comment/1`).
- Authors: `accountId` (Cloud), else `name` (Server, 2019 Cloud), else `key`.

Dedupe keys name the change, not the delivery: `"{key}:{issue.fields.updated}"` for issue
events, `"{ticket}:comment:{id}:{comment.updated}"` for comment events (so Cloud's
`comment_created` and the matching `jira:issue_updated`/`issue_commented` agree).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from connectors.errors import BadSignature, MalformedWebhook
from connectors.events import ChangeEvent

SYSTEM = "jira"
SIGNATURE_HEADER = "x-hub-signature"
DELIVERY_HEADER = "x-atlassian-webhook-identifier"

_COMMENT_TYPES = {
    "issue_commented": "comment_created",
    "issue_comment_edited": "comment_updated",
    "issue_comment_deleted": "comment_deleted",
}
_COMMENT_EVENTS = {"comment_created", "comment_updated", "comment_deleted"}
_ISSUE_EVENTS = {
    "jira:issue_created": "issue_created",
    "jira:issue_updated": "issue_updated",
    "jira:issue_deleted": "issue_deleted",
}
_ISSUE_IN_URL = re.compile(r"/issue/([^/]+)/comment/")


def sign(secret: str, raw_body: bytes) -> str:
    """The `X-Hub-Signature` value Jira sends for `raw_body` under `secret`."""
    digest = hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(headers: Mapping[str, str], raw_body: bytes, secret: str) -> None:
    """Raise BadSignature unless the body carries a valid `sha256=` HMAC under `secret`."""
    value = _header(headers, SIGNATURE_HEADER)
    if not value:
        raise BadSignature("missing X-Hub-Signature header")
    algorithm, _, given = value.strip().partition("=")
    if algorithm.lower() != "sha256" or not given:
        raise BadSignature("X-Hub-Signature is not of the form sha256=<hex>")
    expected = sign(secret, raw_body).partition("=")[2]
    if not hmac.compare_digest(expected.encode(), given.strip().lower().encode()):
        raise BadSignature("X-Hub-Signature does not match the body")


def parse_webhook(
    headers: Mapping[str, str], raw_body: bytes, *, secret: str | None
) -> list[ChangeEvent]:
    """Verify and normalise one Jira delivery; `secret=None` skips verification (captures only).

    Raises BadSignature for a missing or wrong signature and MalformedWebhook for a body that is
    not a Jira webhook. Jira events that concern no issue (sprints, projects, ...) yield [].
    """
    if secret is not None:
        verify_signature(headers, raw_body, secret)
    try:
        payload = json.loads(raw_body)
    except (ValueError, UnicodeDecodeError):
        raise MalformedWebhook("body is not JSON") from None
    if not isinstance(payload, dict):
        raise MalformedWebhook("body is not a JSON object")
    webhook_event = payload.get("webhookEvent")
    if not isinstance(webhook_event, str) or not webhook_event:
        raise MalformedWebhook("no webhookEvent: not a Jira webhook")
    delivery_id = _header(headers, DELIVERY_HEADER) or None
    return _normalise(payload, webhook_event, delivery_id)


def _normalise(
    payload: dict[str, Any], webhook_event: str, delivery_id: str | None
) -> list[ChangeEvent]:
    if webhook_event not in _ISSUE_EVENTS and webhook_event not in _COMMENT_EVENTS:
        return []
    issue = payload.get("issue") if isinstance(payload.get("issue"), dict) else None
    comment = payload.get("comment") if isinstance(payload.get("comment"), dict) else None
    changelog = payload.get("changelog") if isinstance(payload.get("changelog"), dict) else None
    ticket, issue_id = _ticket(issue, comment)
    if ticket is None:
        raise MalformedWebhook(f"{webhook_event} names no issue (no issue key, id or comment URL)")
    timestamp = _timestamp(payload.get("timestamp"))
    type_name = payload.get("issue_event_type_name")
    updated = _issue_updated(issue)
    extra: dict[str, Any] = {"webhook_event": webhook_event}
    if type_name:
        extra["issue_event_type_name"] = type_name
    if issue_id:
        extra["issue_id"] = issue_id
    if changelog and changelog.get("id") is not None:
        extra["changelog_id"] = str(changelog.get("id"))

    def make(event: str, fields: tuple[str, ...], author: str | None) -> ChangeEvent:
        is_comment = event in _COMMENT_EVENTS
        return ChangeEvent(
            system=SYSTEM,
            event=event,
            ticket=ticket,
            changed_fields=fields,
            comment_id=str(comment["id"]) if is_comment and comment and "id" in comment else None,
            author=author,
            timestamp=timestamp,
            delivery_id=delivery_id,
            dedupe_key=_dedupe_key(ticket, updated, comment if is_comment else None),
            extra=dict(extra),
        )

    actor = _person(payload.get("user"))
    if webhook_event in _COMMENT_EVENTS:
        who = actor or _comment_author(webhook_event, comment)
        return [make(webhook_event, (), who)]

    fields = _changed_fields(changelog)
    event = _ISSUE_EVENTS[webhook_event]
    if webhook_event != "jira:issue_updated":
        return [make(event, fields, actor)]

    comment_event = _COMMENT_TYPES.get(type_name) if isinstance(type_name, str) else None
    if comment_event is None and not type_name and comment is not None and not fields:
        # Old Server payloads: no event type; a bare comment means comment activity.
        comment_event = _comment_kind(comment)
    events: list[ChangeEvent] = []
    if fields or comment_event is None:
        events.append(make("issue_updated", fields, actor))
    if comment_event is not None:
        who = actor or _comment_author(comment_event, comment)
        events.append(make(comment_event, (), who))
    return events


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return ""


def _ticket(
    issue: dict[str, Any] | None, comment: dict[str, Any] | None
) -> tuple[str | None, str | None]:
    """(ticket, issue id): the issue key when known, else the issue id."""
    issue_id = None
    if issue is not None:
        issue_id = str(issue["id"]) if issue.get("id") is not None else None
        if issue.get("key"):
            return str(issue["key"]), issue_id
    if issue_id is None and comment is not None:
        match = _ISSUE_IN_URL.search(str(comment.get("self") or ""))
        if match:
            issue_id = match.group(1)
    return issue_id, issue_id


def _issue_updated(issue: dict[str, Any] | None) -> str | None:
    if issue is None:
        return None
    fields = issue.get("fields")
    if isinstance(fields, dict) and fields.get("updated"):
        return str(fields["updated"])
    return None


def _dedupe_key(ticket: str, updated: str | None, comment: dict[str, Any] | None) -> str | None:
    if comment is not None and comment.get("id") is not None:
        version = comment.get("updated") or comment.get("created") or updated or ""
        return f"{ticket}:comment:{comment['id']}:{version}"
    if updated:
        return f"{ticket}:{updated}"
    return None


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return datetime.fromtimestamp(value / 1000.0, UTC)


def _person(user: Any) -> str | None:
    if not isinstance(user, dict):
        return None
    for key in ("accountId", "name", "key"):
        if user.get(key):
            return str(user[key])
    return None


def _comment_author(event: str, comment: dict[str, Any] | None) -> str | None:
    if comment is None:
        return None
    if event != "comment_created":
        who = _person(comment.get("updateAuthor"))
        if who:
            return who
    return _person(comment.get("author"))


def _comment_kind(comment: dict[str, Any]) -> str:
    created, updated = comment.get("created"), comment.get("updated")
    if created and updated and created != updated:
        return "comment_updated"
    return "comment_created"


def _changed_fields(changelog: dict[str, Any] | None) -> tuple[str, ...]:
    if not changelog:
        return ()
    names: list[str] = []
    for item in changelog.get("items") or ():
        name = item.get("field") if isinstance(item, dict) else None
        if name and name not in names:
            names.append(str(name))
    return tuple(names)


class DeliveryDeduper:
    """Remembers recent delivery ids (else dedupe keys) so a redelivered webhook is dropped.

    In-memory and bounded; the store keeps the durable record. Thread-safe.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, event: ChangeEvent) -> bool:
        """True the first time an event's delivery is seen; False for a repeat."""
        mark = _identity(event)
        if mark is None:
            return True
        with self._lock:
            if mark in self._seen:
                self._seen.move_to_end(mark)
                return False
            self._seen[mark] = None
            if len(self._seen) > self._capacity:
                self._seen.popitem(last=False)
            return True

    def fresh(self, events: Iterable[ChangeEvent]) -> list[ChangeEvent]:
        """The events not seen before, in order."""
        return [event for event in events if self.first_time(event)]


def _identity(event: ChangeEvent) -> str | None:
    # One delivery can carry two events (a field change and a comment); keep them apart.
    if event.delivery_id:
        return f"{event.delivery_id}:{event.event}:{event.comment_id or ''}"
    return f"{event.event}:{event.dedupe_key}" if event.dedupe_key else None
