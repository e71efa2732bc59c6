"""The shipped Business Rule's outbound post, run from a background thread like an async rule.

Same payload, headers and signing as docs/servicenow/business_rule.js:
`X-Escalation-Sync-Signature = base64(HMAC-SHA256(secret, timestamp + "." + body))`, timestamp in
epoch seconds, compact JSON body of string values, changes by the integration user skipped, up to
three attempts on no answer, 429 or 5xx, the same timestamp and signature on every attempt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import requests

from simulators.servicenow.store import Change

TIMESTAMP_HEADER = "X-Escalation-Sync-Timestamp"
SIGNATURE_HEADER = "X-Escalation-Sync-Signature"
MAX_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """Where the rule posts, with what secret, on which table, ignoring whom."""

    url: str
    secret: str
    integration_user: str | None = None
    table: str = "incident"


@dataclass(slots=True)
class Delivery:
    """One post the rule made (or gave up on)."""

    body: bytes
    headers: dict[str, str]
    status: int = 0
    attempts: int = 0
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def rule_signature(secret: str, timestamp: str, body: bytes) -> str:
    """What GlideCertificateEncryption.generateMac(base64(secret), "HmacSHA256", ts + "." + body)
    returns."""
    digest = hmac.new(secret.encode("utf-8"), timestamp.encode() + b"." + body, hashlib.sha256)
    return base64.b64encode(digest.digest()).decode("ascii")


def rule_payload(change: Change) -> bytes:
    """The rule's JSON body for a saved change (JSON.stringify: compact, string values)."""
    record = change.record
    data = {
        "table": change.table,
        "sys_id": record.get("sys_id", ""),
        "number": record.get("number", ""),
        "sys_mod_count": record.get("sys_mod_count", "0"),
        "sys_updated_on": record.get("sys_updated_on", ""),
        "sys_updated_by": record.get("sys_updated_by", ""),
        "operation": change.operation,
    }
    return json.dumps(data, separators=(",", ":")).encode("utf-8")


class OutboundRule:
    """Queues a post per saved change and delivers it from a daemon thread."""

    def __init__(self, *, retry_pause: float = 0.2, timeout: float = 10.0) -> None:
        self._target: WebhookTarget | None = None
        self._queue: queue.Queue[tuple[WebhookTarget, Delivery] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._deliveries: list[Delivery] = []
        self._pending = 0
        self._idle = threading.Condition(self._lock)
        self._retry_pause = retry_pause
        self._timeout = timeout
        self._thread: threading.Thread | None = None
        self._session = requests.Session()

    def configure(self, target: WebhookTarget | None) -> None:
        """Install (or with None remove) the rule."""
        with self._lock:
            self._target = target

    @property
    def deliveries(self) -> list[Delivery]:
        """Posts made so far, in order."""
        with self._lock:
            return list(self._deliveries)

    def __call__(self, change: Change) -> None:
        """The store's change hook: decide like the rule, then queue the post."""
        with self._lock:
            target = self._target
        if target is None or change.table != target.table:
            return
        user = target.integration_user
        if user and (change.user == user or change.record.get("sys_updated_by") == user):
            return
        body = rule_payload(change)
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: rule_signature(target.secret, timestamp, body),
        }
        with self._lock:
            self._pending += 1
            self._ensure_thread()
        self._queue.put((target, Delivery(body=body, headers=headers)))

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every queued post was delivered or given up; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def stop(self) -> None:
        """Stop the delivery thread (queued posts are dropped, as on instance shutdown)."""
        thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join(5)
        self._thread = None
        self._session.close()

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="sn-outbound", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            target, delivery = item
            try:
                self._deliver(target, delivery)
            finally:
                with self._idle:
                    self._deliveries.append(delivery)
                    self._pending -= 1
                    self._idle.notify_all()

    def _deliver(self, target: WebhookTarget, delivery: Delivery) -> None:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            delivery.attempts = attempt
            try:
                response = self._session.post(
                    target.url, data=delivery.body, headers=delivery.headers, timeout=self._timeout
                )
                delivery.status = response.status_code
                delivery.error = ""
                response.close()
            except requests.RequestException as exc:
                delivery.status = 0
                delivery.error = type(exc).__name__
            status = delivery.status
            if 200 <= status < 300:
                return
            if not (status == 0 or status == 429 or status >= 500):
                return
            if attempt < MAX_ATTEMPTS:
                time.sleep(self._retry_pause * attempt)
