"""Webhook registrations and signed delivery with retries, from background threads.

Each delivery carries `X-Atlassian-Webhook-Identifier` (the same on every retry of it), and
`X-Hub-Signature: sha256=<hex HMAC-SHA256 of the body>` when the webhook has a secret. A delivery
that fails (connection error or non-2xx) is retried with exponential backoff, up to
`max_attempts`, with `X-Atlassian-Webhook-Retry: <n>` on retries.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import hmac
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import requests

from simulators.jira.jql import JqlError, compile_jql


@dataclass
class Webhook:
    id: int
    name: str
    url: str
    events: tuple[str, ...]
    jql: str
    secret: str | None
    enabled: bool = True
    exclude_body: bool = False


@dataclass(order=True)
class _Pending:
    due: float
    seq: int
    attempt: int = field(compare=False)
    webhook: Webhook = field(compare=False)
    body: bytes = field(compare=False)
    identifier: str = field(compare=False)


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One attempt, kept for tests and `GET /_sim/webhook-deliveries`."""

    webhook_id: int
    identifier: str
    event: str
    attempt: int
    status: int | None
    at: float


class WebhookDispatcher:
    """Registrations plus a small pool of delivery threads fed from a due-time heap."""

    def __init__(
        self,
        *,
        workers: int = 4,
        max_attempts: int = 5,
        base_delay: float = 0.2,
        max_delay: float = 5.0,
        timeout: float = 5.0,
        matcher: Callable[[str, dict[str, Any]], bool] | None = None,
    ) -> None:
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.timeout = timeout
        self.matcher = matcher
        self._hooks: dict[int, Webhook] = {}
        self._ids = itertools.count(1)
        self._seq = itertools.count()
        self._heap: list[_Pending] = []
        self._cond = threading.Condition()
        self._stopping = False
        self._inflight = 0
        self._workers = workers
        self._threads: list[threading.Thread] = []
        self._session = requests.Session()
        self.log: list[DeliveryRecord] = []
        self._log_lock = threading.Lock()

    # -- registrations -----------------------------------------------------------------------

    def register(self, body: dict[str, Any]) -> Webhook:
        """Register from a `POST /rest/webhooks/1.0/webhook` body; raises ValueError."""
        url = body.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError("url: a valid http(s) URL is required")
        events = body.get("events") or []
        if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
            raise ValueError("events: a list of event names is required")
        filters = body.get("filters") or {}
        jql = str(filters.get("issue-related-events-section") or body.get("jqlFilter") or "")
        if jql:
            try:
                compile_jql(jql, UTC)
            except JqlError as exc:
                raise ValueError(f"filters: {exc}") from None
        secret = body.get("secret")
        hook = Webhook(
            id=next(self._ids),
            name=str(body.get("name") or "webhook"),
            url=url,
            events=tuple(events),
            jql=jql,
            secret=str(secret) if secret else None,
            enabled=bool(body.get("enabled", True)),
            exclude_body=bool(body.get("excludeBody", False)),
        )
        with self._cond:
            self._hooks[hook.id] = hook
        return hook

    def unregister(self, hook_id: int) -> bool:
        with self._cond:
            return self._hooks.pop(hook_id, None) is not None

    def hooks(self) -> list[Webhook]:
        with self._cond:
            return list(self._hooks.values())

    # -- delivery ----------------------------------------------------------------------------

    def publish(self, event: str, payload: dict[str, Any]) -> None:
        """Queue `payload` for every enabled webhook subscribed to `event`."""
        hooks = [h for h in self.hooks() if h.enabled and (not h.events or event in h.events)]
        if not hooks:
            return
        body = json.dumps(payload, separators=(",", ":")).encode()
        now = time.monotonic()
        with self._cond:
            for hook in hooks:
                if hook.jql and self.matcher is not None and not self.matcher(hook.jql, payload):
                    continue
                item = _Pending(now, next(self._seq), 1, hook, body, str(uuid.uuid4()))
                heapq.heappush(self._heap, item)
            self._cond.notify_all()

    def start(self) -> None:
        with self._cond:
            if self._threads:
                return
            self._stopping = False
        for n in range(self._workers):
            thread = threading.Thread(target=self._run, name=f"jira-webhooks-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(5)
        self._threads = []
        self._session.close()

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is queued or in flight (retries included); True if drained."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._heap or self._inflight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping:
                    if self._heap and self._heap[0].due <= time.monotonic():
                        break
                    wait = (self._heap[0].due - time.monotonic()) if self._heap else 0.5
                    self._cond.wait(max(0.001, min(wait, 0.5)))
                if self._stopping:
                    return
                item = heapq.heappop(self._heap)
                self._inflight += 1
            try:
                self._attempt(item)
            finally:
                with self._cond:
                    self._inflight -= 1
                    self._cond.notify_all()

    def _attempt(self, item: _Pending) -> None:
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Atlassian Webhook HTTP Client",
            "X-Atlassian-Webhook-Identifier": item.identifier,
        }
        if item.attempt > 1:
            headers["X-Atlassian-Webhook-Retry"] = str(item.attempt - 1)
        if item.webhook.secret:
            digest = hmac.new(item.webhook.secret.encode(), item.body, hashlib.sha256).hexdigest()
            headers["X-Hub-Signature"] = f"sha256={digest}"
        status: int | None = None
        try:
            resp = self._session.post(
                item.webhook.url, data=item.body, headers=headers, timeout=self.timeout
            )
            status = resp.status_code
            resp.close()
        except requests.RequestException:
            status = None
        event = ""
        with contextlib.suppress(ValueError):
            event = str(json.loads(item.body).get("webhookEvent", ""))
        with self._log_lock:
            self.log.append(
                DeliveryRecord(
                    item.webhook.id, item.identifier, event, item.attempt, status, time.time()
                )
            )
        if status is not None and 200 <= status < 300:
            return
        if item.attempt >= self.max_attempts:
            return
        delay = min(self.max_delay, self.base_delay * (2 ** (item.attempt - 1)))
        retry = _Pending(
            time.monotonic() + delay,
            next(self._seq),
            item.attempt + 1,
            item.webhook,
            item.body,
            item.identifier,
        )
        with self._cond:
            heapq.heappush(self._heap, retry)
            self._cond.notify_all()
