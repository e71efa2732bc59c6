"""One retry mechanism for every connector: tenacity, bounded, honouring `Retry-After`.

Vendor client libraries (the `jira` package's ResilientSession, for one) must have their own retry
loops turned off so that attempts are not multiplied.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from tenacity import Retrying, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_base

from connectors.errors import RetryableError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry a transient failure before handing it to the queue."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    # A server asking to wait longer than this is not retried in-process (see call_with_retry).
    defer_after: float = 30.0
    # Sleeping is injected so tests run without waiting.
    sleep: Callable[[float], None] = time.sleep

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff for the given 1-based attempt number."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return random.uniform(0, ceiling)


NO_RETRY = RetryPolicy(attempts=1)


def retry_after_seconds(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds to wait from `Retry-After` (seconds or HTTP date) or `X-RateLimit-Reset`, if any."""
    lowered = {k.lower(): v for k, v in headers.items()}
    current = now or datetime.now(UTC)
    value = lowered.get("retry-after")
    if value:
        value = value.strip()
        if value.isdigit():
            return float(value)
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return max(0.0, (when - current).total_seconds())
    reset = lowered.get("x-ratelimit-reset")
    if reset:
        reset = reset.strip()
        try:
            # Jira sends an ISO timestamp, ServiceNow epoch seconds.
            if reset.replace(".", "", 1).isdigit():
                return max(0.0, float(reset) - current.timestamp())
            when = datetime.fromisoformat(reset.replace("Z", "+00:00"))
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return max(0.0, (when - current).total_seconds())
        except ValueError:
            return None
    return None


class _WaitForServer(wait_base):
    """Wait what the server asked for when it said, else backoff with jitter; never past max."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy

    def __call__(self, retry_state: object) -> float:
        outcome = getattr(retry_state, "outcome", None)
        attempt = int(getattr(retry_state, "attempt_number", 1))
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, RetryableError) and exc.retry_after is not None:
            return min(self._policy.max_delay, exc.retry_after)
        return self._policy.backoff(attempt)


def call_with_retry(policy: RetryPolicy, fn: Callable[[], T]) -> T:
    """Call `fn`, retrying RetryableError per `policy`; re-raise the last error at the end.

    A server that asks to be left alone for longer than `defer_after` is not retried here (that
    would either come back early or hold a worker for minutes): the error goes to the caller
    with its `retry_after`, and the queue reschedules the ticket for then.
    """

    def worth_retrying_now(exc: BaseException) -> bool:
        if not isinstance(exc, RetryableError):
            return False
        return exc.retry_after is None or exc.retry_after <= policy.defer_after

    retrying = Retrying(
        stop=stop_after_attempt(max(1, policy.attempts)),
        wait=_WaitForServer(policy),
        retry=retry_if_exception(worth_retrying_now),
        sleep=policy.sleep,
        reraise=True,
    )
    return retrying(fn)
