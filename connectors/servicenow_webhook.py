"""Inbound posts from the Business Rule shipped in docs/servicenow/business_rule.js.

Wire contract (the script and this parser must change together):

    POST <receiver>
    Content-Type: application/json
    X-Escalation-Sync-Timestamp: <epoch seconds, decimal string>
    X-Escalation-Sync-Signature: base64(HMAC-SHA256(key=secret, msg=timestamp + "." + body))

    {"table": "incident", "sys_id": "...", "number": "INC0010001", "sys_mod_count": "3",
     "sys_updated_on": "2026-01-01 10:00:00", "sys_updated_by": "abel.tuter",
     "operation": "insert" | "update"}

The secret is the system property's text, UTF-8 encoded (the script base64-encodes it because
GlideCertificateEncryption.generateMac takes its key in base64). The signature is checked, in
constant time, before anything in the body is trusted, then the timestamp must be within the
replay window. A post only says "this record changed": the engine re-reads the record.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from connectors.errors import BadSignature, MalformedWebhook, StaleWebhook
from connectors.events import ChangeEvent

TIMESTAMP_HEADER = "X-Escalation-Sync-Timestamp"
SIGNATURE_HEADER = "X-Escalation-Sync-Signature"
_SN_DATETIME = "%Y-%m-%d %H:%M:%S"
_PAST = {"insert": "inserted", "update": "updated", "delete": "deleted"}


class BusinessRulePayload(BaseModel):
    """The JSON body the Business Rule posts; every value is a string as GlideRecord gives it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    table: str = Field(min_length=1, pattern=r"^[a-z0-9_]+$")
    sys_id: str = Field(min_length=1, max_length=64)
    number: str = ""
    sys_mod_count: int = Field(ge=0)
    sys_updated_on: datetime
    sys_updated_by: str = ""
    operation: Literal["insert", "update", "delete"]

    @field_validator("sys_updated_on", mode="before")
    @classmethod
    def _wire_datetime(cls, value: object) -> datetime:
        if not isinstance(value, str):
            raise ValueError("sys_updated_on must be a 'YYYY-MM-DD HH:MM:SS' string")
        return datetime.strptime(value, _SN_DATETIME).replace(tzinfo=UTC)

    @field_validator("sys_mod_count", mode="before")
    @classmethod
    def _count(cls, value: object) -> object:
        if isinstance(value, str) and not value.isdigit():
            raise ValueError("sys_mod_count must be a non-negative integer")
        return value


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature the Business Rule sends for `body` posted at `timestamp`."""
    message = timestamp.encode("ascii") + b"." + body
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def signed_headers(secret: str, body: bytes, now: datetime) -> dict[str, str]:
    """Headers the Business Rule would send for `body` at `now` (for tests and replays)."""
    timestamp = str(int(now.timestamp()))
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }


def parse_webhook(
    headers: Mapping[str, str],
    raw_body: bytes,
    *,
    secret: str | None,
    now: datetime,
    replay_window: timedelta,
    replay_guard: ReplayGuard | None = None,
) -> list[ChangeEvent]:
    """Verify and parse one Business Rule post into a single ChangeEvent.

    `secret=None` turns verification (signature and freshness) off, for parsing captured posts.
    With a `replay_guard`, a second post of the same change inside the window yields no event.
    Raises BadSignature, StaleWebhook or MalformedWebhook.
    """
    if secret is not None:
        _verify(headers, raw_body, secret=secret, now=now, replay_window=replay_window)
    payload = _payload(raw_body)
    key = f"{payload.sys_id}:{payload.sys_mod_count}"
    if replay_guard is not None and replay_guard.seen(key, now):
        return []
    return [
        ChangeEvent(
            system="servicenow",
            event=f"{payload.table}_{_PAST[payload.operation]}",
            ticket=payload.sys_id,
            author=payload.sys_updated_by or None,
            timestamp=payload.sys_updated_on,
            delivery_id=key,
            dedupe_key=key,
            extra={
                "number": payload.number,
                "table": payload.table,
                "operation": payload.operation,
                "sys_mod_count": payload.sys_mod_count,
            },
        )
    ]


def _verify(
    headers: Mapping[str, str],
    raw_body: bytes,
    *,
    secret: str,
    now: datetime,
    replay_window: timedelta,
) -> None:
    lowered = {k.lower(): v for k, v in headers.items()}
    timestamp = lowered.get(TIMESTAMP_HEADER.lower(), "").strip()
    signature = lowered.get(SIGNATURE_HEADER.lower(), "").strip()
    if not timestamp or not signature:
        raise BadSignature("missing signature or timestamp header")
    if not timestamp.isdigit() or len(timestamp) > 12:
        raise BadSignature("timestamp header is not epoch seconds")
    try:
        given = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raise BadSignature("signature header is not base64") from None
    expected = base64.b64decode(sign(secret, timestamp, raw_body))
    if not hmac.compare_digest(given, expected):
        raise BadSignature("signature does not match the body")
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    sent = datetime.fromtimestamp(int(timestamp), tz=UTC)
    if abs(now - sent) > replay_window:
        raise StaleWebhook("signed timestamp is outside the replay window")


def _payload(raw_body: bytes) -> BusinessRulePayload:
    try:
        data = json.loads(raw_body)
    except (ValueError, UnicodeDecodeError):
        raise MalformedWebhook("body is not JSON") from None
    if not isinstance(data, dict):
        raise MalformedWebhook("body is not a JSON object")
    try:
        return BusinessRulePayload.model_validate(data)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in err["loc"]) for err in exc.errors()})
        raise MalformedWebhook(
            f"body is not a Business Rule payload (bad or missing: {', '.join(fields)})"
        ) from None


class ReplayGuard:
    """Remembers change keys for one replay window so a re-posted change is dropped.

    In memory and per process: the receiver's first line of defence. The store's delivery-id
    dedupe is the durable one.
    """

    def __init__(self, window: timedelta, *, max_entries: int = 100_000) -> None:
        self._window = window
        self._max = max_entries
        self._seen: OrderedDict[str, datetime] = OrderedDict()
        self._lock = threading.Lock()

    def seen(self, key: str, now: datetime) -> bool:
        """True when `key` was already seen within the window; otherwise remember it."""
        with self._lock:
            self._expire(now)
            if key in self._seen:
                return True
            self._seen[key] = now
            while len(self._seen) > self._max:
                self._seen.popitem(last=False)
            return False

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)

    def _expire(self, now: datetime) -> None:
        horizon = now - self._window
        while self._seen:
            oldest_key, oldest = next(iter(self._seen.items()))
            if oldest >= horizon:
                break
            del self._seen[oldest_key]
