"""Slack's Web API rate limits: one budget per method per workspace, sized by the method's tier.

Slack's rate-limit guide (docs.slack.dev/apis/web-api/rate-limits) gives each method a tier:
Tier 1 allows 1+ requests a minute, Tier 2 20+, Tier 3 50+, Tier 4 100+, with bursts tolerated;
chat.postMessage is special: about one message a second per channel, short bursts allowed;
auth.test is special: hundreds a minute. Past the budget Slack answers HTTP 429 with
`Retry-After` (whole seconds) and `{"ok": false, "error": "ratelimited"}`.

A budget here is a token bucket refilled at the tier's rate, holding a minute's worth of
requests (bursts allowed, as the guide says), or `POST_BURST` messages for one channel.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

# Each method's tier, from the method's page in Slack's documentation.
TIERS: dict[str, str] = {
    "auth.test": "special_auth",
    "conversations.create": "tier2",
    "conversations.list": "tier2",
    "conversations.setTopic": "tier2",
    "conversations.setPurpose": "tier2",
    "conversations.archive": "tier2",
    "conversations.info": "tier3",
    "conversations.invite": "tier3",
    "conversations.join": "tier3",
    "conversations.history": "tier3",
    "users.lookupByEmail": "tier3",
    "users.info": "tier4",
    "chat.postMessage": "special_post",
}


class RateLimits(BaseModel):
    """Requests a minute per tier; `chat.postMessage` is per channel per second with a burst."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    tier1: float = Field(1, gt=0)
    tier2: float = Field(20, gt=0)
    tier3: float = Field(50, gt=0)
    tier4: float = Field(100, gt=0)
    special_auth: float = Field(600, gt=0)
    post_per_second: float = Field(1.0, gt=0)
    post_burst: int = Field(3, ge=1)

    def budget(self, method: str) -> tuple[float, float]:
        """(requests per second, bucket size) for a method."""
        tier = TIERS.get(method, "tier3")
        if tier == "special_post":
            return self.post_per_second, float(self.post_burst)
        per_minute = float(getattr(self, tier))
        return per_minute / 60.0, max(1.0, per_minute)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """Token buckets keyed by (team, method[, channel]); `take` says how long to wait, if at all."""

    def __init__(
        self, limits: RateLimits | None = None, clock: Callable[[], float] = time.monotonic
    ):
        self._limits = limits or RateLimits()
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, ...], _Bucket] = {}

    @property
    def limits(self) -> RateLimits:
        """The limits in force."""
        return self._limits

    def configure(self, limits: RateLimits) -> None:
        """Replace the limits and start every budget afresh."""
        with self._lock:
            self._limits = limits
            self._buckets.clear()

    def take(self, team: str, method: str, channel: str | None = None) -> int | None:
        """Spend one request; None if allowed, else the whole seconds to wait (Retry-After)."""
        limits = self._limits
        if not limits.enabled:
            return None
        rate, size = limits.budget(method)
        key = (team, method, channel or "") if method == "chat.postMessage" else (team, method)
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(size, now)
            bucket.tokens = min(size, bucket.tokens + (now - bucket.stamp) * rate)
            bucket.stamp = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return None
            return max(1, math.ceil((1.0 - bucket.tokens) / rate))
