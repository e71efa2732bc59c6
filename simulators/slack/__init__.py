"""A Slack workspace in a process, speaking the Web API as Slack's OpenAPI 2.0 spec documents it.

```
with SlackSimulator() as slack:                  # 127.0.0.1, a free port
    WebClient(token=slack.bot_token, base_url=slack.api_url).conversations_create(name="ds-1")
    slack.add_user("lee", "Lee Support", "lee@example.com")
    slack.messages(slack.channel_named("ds-1")["id"])
```
Seeded with a bot user (`escalation-sync`, token `BOT_TOKEN` with `BOT_SCOPES`), a workspace
owner and the `#general` and `#random` channels.

Methods: auth.test, conversations.create / info / list / invite / setTopic / setPurpose /
archive / join / history, chat.postMessage, users.lookupByEmail, users.info. Token auth
(`not_authed`, `invalid_auth`, `token_revoked`, `missing_scope` with `needed` and `provided`),
`ok: false` error bodies, form and JSON bodies (see `simulators.slack.app`), rate limits per
method tier (`simulators.slack.limits`), fault injection and `/_sim/stats` as in every simulator.

Where this follows the 2021 spec (slackapi/slack-api-specs, `slack_web_openapi_v2.json`) rather
than Slack's current documentation, or goes beyond the spec:
- Scopes are the spec's: creating, inviting, setting topic or purpose and archiving need
  `channels:write` (public) or `groups:write` (private); current docs name `channels:manage`
  for bot tokens, which this simulator does not accept. Posting takes `chat:write` (the spec's
  token description) or the spec's `chat:write:bot` / `chat:write:user`.
- conversations.invite names an unknown or deactivated user `user_not_found`, with the per-user
  `errors` array the spec describes; users.lookupByEmail says `users_not_found`.
- conversations.setTopic and setPurpose answer the channel (the spec's schema requires it; its
  example shows only `ok`).
- A JSON body without `charset=utf-8` is refused with `missing_charset` (the spec lists it as
  an error; current docs call it a warning). A JSON body is read only by the methods whose spec
  entry consumes JSON (not conversations.info / list / history, users.*).
- Every method answers GET and POST: the spec lists one verb each, while Slack (and its own SDKs,
  which POST every call) takes both.
- Message metadata (`metadata` on chat.postMessage, `include_all_metadata` on
  conversations.history) came in 2022, after the spec: it follows Slack's message metadata
  documentation, `{"event_type": str, "event_payload": object}`, refused otherwise with
  `invalid_metadata_format`; history shows it only with `include_all_metadata`.
- conversations.history pages by cursor (`response_metadata.next_cursor`, as in the spec's
  example, though its schema leaves the field out) and by `latest`/`has_more`.
- Unknown methods: HTTP 404 `unknown_method`; rate limiting: HTTP 429, `Retry-After` and
  `ratelimited` (Slack's rate-limit guide; the spec documents no 429 answer).
- Channel names are checked as documented (lower case letters, digits, `-`, `_`, at most 80):
  `invalid_name_required`, `invalid_name_maxlength`, `invalid_name_specials` (any other
  character, non-Latin letters included), `invalid_name` (upper case),
  `invalid_name_punctuation` (nothing but `-` and `_`). Archived channels keep their names.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from simulators.common import FaultConfig, FaultInjector, ServerThread
from simulators.slack.app import SlackAPI, SlackFaultBodies
from simulators.slack.limits import RateLimiter, RateLimits
from simulators.slack.state import Channel, SlackError, User, Workspace

__all__ = ["BOT_SCOPES", "BOT_TOKEN", "RateLimits", "SlackError", "SlackSimulator", "User"]

BOT_TOKEN = "xoxb-sim-escalation-sync"
# What the integration needs, named as the spec names them.
BOT_SCOPES = (
    "channels:read",
    "channels:write",
    "channels:history",
    "groups:read",
    "groups:write",
    "groups:history",
    "chat:write",
    "users:read",
    "users:read.email",
)


class SlackSimulator:
    """A running simulated workspace with helpers to seed it and inspect it."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: FaultConfig | None = None,
        rate_limits: RateLimits | None = None,
        seed: int = 0,
    ) -> None:
        self.workspace = Workspace(seed=seed)
        self.limiter = RateLimiter(rate_limits)
        self.api = SlackAPI(self.workspace, self.limiter)
        self.faults = FaultInjector(self.api.app, faults)
        self._server = ServerThread(SlackFaultBodies(self.faults), host=host, port=port)
        w = self.workspace
        self.owner = w.add_user("alex.owner", "Alex Owner", "alex.owner@example.com", is_admin=True)
        self.bot = w.add_user("escalation-sync", "Escalation Sync", None, is_bot=True)
        self.bot_token = BOT_TOKEN
        w.add_token(BOT_TOKEN, self.bot, BOT_SCOPES)
        general = w.add_channel("general", self.owner, is_general=True)
        w.add_channel("random", self.owner)
        general.members.append(self.bot.id)

    # --------------------------------------------------------------------------- lifecycle

    def start(self) -> SlackSimulator:
        """Serve in the background; returns once requests are accepted."""
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.stop()

    def __enter__(self) -> SlackSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Where the simulator listens (no trailing slash)."""
        return self._server.url

    @property
    def api_url(self) -> str:
        """The Web API base URL, as `slack_sdk.WebClient(base_url=...)` takes it."""
        return f"{self.url}/api/"

    @property
    def port(self) -> int:
        """The bound port."""
        return self._server.port

    # --------------------------------------------------------------------------- seeding

    def add_user(
        self, name: str, real_name: str, email: str | None, *, deleted: bool = False
    ) -> User:
        """A person in the workspace."""
        return self.workspace.add_user(name, real_name, email, deleted=deleted)

    def add_token(self, value: str, user: User, scopes: Iterable[str]) -> str:
        """Issue a token (`xoxb-` for a bot, `xoxp-` for a person) with the given scopes."""
        self.workspace.add_token(value, user, scopes)
        return value

    def revoke_token(self, value: str) -> None:
        """Calls with this token answer `token_revoked` from now on."""
        self.workspace.revoke_token(value)

    def add_channel(
        self,
        name: str,
        *,
        creator: User | None = None,
        is_private: bool = False,
        members: Iterable[User] = (),
        purpose: str = "",
    ) -> dict[str, Any]:
        """A channel made by a person (the workspace owner unless named)."""
        w = self.workspace
        channel = w.add_channel(name, creator or self.owner, is_private=is_private)
        for member in members:
            if member.id not in channel.members:
                channel.members.append(member.id)
        if purpose:
            channel.purpose = {"value": purpose, "creator": channel.creator, "last_set": 0}
        return w.render_channel(channel, self.bot.id)

    def post_as(self, user: User, channel_id: str, text: str) -> str:
        """A person's message in a channel; returns its ts."""
        w = self.workspace
        with w._lock:
            channel = w.channels[channel_id]
            ts = w._next_ts()
            channel.messages.append({"type": "message", "user": user.id, "text": text, "ts": ts})
            return ts

    def configure_faults(self, config: FaultConfig) -> None:
        """Replace the fault injection settings."""
        self.faults.configure(config)

    def set_rate_limits(self, limits: RateLimits) -> None:
        """Replace the per-tier rate limits (budgets start afresh)."""
        self.limiter.configure(limits)

    # --------------------------------------------------------------------------- inspecting

    def _channel(self, channel_id: str) -> Channel:
        return self.workspace.channels[channel_id]

    def channels(self) -> list[dict[str, Any]]:
        """Every channel, archived ones included, as the bot would see them."""
        w = self.workspace
        with w._lock:
            return [w.render_channel(c, self.bot.id, num_members=True) for c in w.channels.values()]

    def channel_named(self, name: str) -> dict[str, Any] | None:
        """The channel with this name, or None."""
        return next((c for c in self.channels() if c["name"] == name), None)

    def members(self, channel_id: str) -> list[str]:
        """User ids in the channel, in joining order."""
        with self.workspace._lock:
            return list(self._channel(channel_id).members)

    def messages(self, channel_id: str) -> list[dict[str, Any]]:
        """Every message in the channel, oldest first, metadata included."""
        with self.workspace._lock:
            return [dict(m) for m in self._channel(channel_id).messages]

    def user_by_email(self, email: str) -> User | None:
        """The member with this address."""
        return next((u for u in self.workspace.users.values() if u.email == email), None)

    def stats(self) -> dict[str, Any]:
        """The same counters as GET /_sim/stats."""
        return self.faults.stats.snapshot()
