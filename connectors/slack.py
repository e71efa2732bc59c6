"""Slack through the Web API, on `slack_sdk`: escalation channels, invitations, messages.

`slack_sdk.WebClient` builds every call (its typed methods pick form or JSON bodies as Slack
wants them); the HTTP exchange goes through a `requests.Session` the caller may hand in (its
adapters, proxies and TLS settings), so tests can record or fake the transport. The SDK's own
retry handlers are off: each call is one attempt under `connectors.retry.call_with_retry`, and
every failure leaves this module as one of the typed errors of `connectors.errors`.

Rate limits are per method and workspace (chat.postMessage: per channel). A 429 closes that
method's gate for `Retry-After` seconds: later calls of the same method wait (or, past the retry
policy's `defer_after`, fail at once with `RateLimited.retry_after`), other methods go on.

Idempotency
-----------
- `ensure_channel` creates a channel or finds the one it made before: on `name_taken` the
  channel of that name is ours when its purpose or topic carries the caller's marker, or when
  our own bot user created it and neither purpose nor topic was set yet (a set-up cut short);
  otherwise the name gets `-2`, `-3`, ... The marker goes into the purpose right after creating.
- `post` puts the caller's key in the message's metadata and, before sending (and before any
  resend), looks for a message with that key in the channel's history, so a retry after a lost
  answer never posts twice.
"""

from __future__ import annotations

import re
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar
from urllib.request import Request

import requests
from anyascii import anyascii
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from connectors.errors import (
    AuthFailed,
    ConnectorError,
    InvalidRequest,
    NotFound,
    RateLimited,
    ServerUnavailable,
    TransportFailed,
)
from connectors.retry import RetryPolicy, call_with_retry, retry_after_seconds

T = TypeVar("T")

SYSTEM = "slack"
DEFAULT_BASE_URL = "https://slack.com/api/"
NAME_MAX = 80
TOPIC_MAX = 250
TEXT_MAX = 40_000
EVENT_TYPE = "escalation_sync_event"
FALLBACK_NAME = "escalation"
HISTORY_PAGE = 200
LIST_PAGE = 1000

_NAME = re.compile(r"^[a-z0-9_-]{1,80}$")
_FIELD = re.compile(r"\{(\w+)\}")
_SEPARATORS = re.compile(r"[^a-z0-9]+")

# Error codes by what the caller does about them.
AUTH_ERRORS = frozenset(
    {
        "not_authed",
        "invalid_auth",
        "token_revoked",
        "token_expired",
        "account_inactive",
        "missing_scope",
        "no_permission",
        "not_allowed_token_type",
        "team_access_not_granted",
        "org_login_required",
        "ekm_access_denied",
        "enterprise_is_restricted",
        "access_denied",
    }
)
TRANSIENT_ERRORS = frozenset(
    {"request_timeout", "service_unavailable", "fatal_error", "internal_error"}
)
# What the integration's bot token needs, as Slack names the scopes: find, make, describe, join
# and archive channels (public and private), read their history (messages found again by
# their key), post, and find people by e-mail.
REQUIRED_SCOPES = (
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
# Names a scope goes by in newer Slack apps (channels:manage is the bot scope for what the spec
# calls channels:write).
SCOPE_ALIASES: dict[str, tuple[str, ...]] = {
    "channels:write": ("channels:manage",),
    "groups:write": ("groups:write", "channels:manage"),
    "chat:write": ("chat:write:bot", "chat:write:user"),
}


def missing_scopes(granted: Iterable[str], needed: Iterable[str] = REQUIRED_SCOPES) -> list[str]:
    """The scopes of `needed` a token with `granted` lacks (aliases counted as granted)."""
    have = set(granted)
    return [
        scope
        for scope in needed
        if scope not in have and not have.intersection(SCOPE_ALIASES.get(scope, ()))
    ]


NOT_FOUND_ERRORS = frozenset(
    {"channel_not_found", "user_not_found", "users_not_found", "message_not_found"}
)


# ------------------------------------------------------------------------------- errors


class SlackAuthFailed(AuthFailed):
    """The token was refused (`code`), or lacks a scope (`needed`, what it has: `provided`)."""

    def __init__(
        self, message: str, *, code: str, needed: str = "", provided: str = "", status: int = 200
    ) -> None:
        super().__init__(message, system=SYSTEM, status=status, messages=(code,))
        self.code = code
        self.needed = needed
        self.provided = provided


class SlackNotFound(NotFound):
    """The channel, user or message does not exist (or the token cannot see it)."""

    def __init__(self, message: str, *, code: str, status: int = 200) -> None:
        super().__init__(message, system=SYSTEM, status=status, messages=(code,))
        self.code = code


class SlackRefused(InvalidRequest):
    """Slack refused the call's content; `details` holds the rest of its answer."""

    def __init__(
        self,
        message: str,
        *,
        code: str,
        details: Mapping[str, Any] | None = None,
        status: int = 200,
    ) -> None:
        super().__init__(message, system=SYSTEM, status=status, messages=(code,))
        self.code = code
        self.details = dict(details or {})


def error_for(
    method: str, status: int, headers: Mapping[str, str], body: Mapping[str, Any] | None
) -> ConnectorError:
    """The typed error for one failed Web API answer (never built from request headers)."""
    code = str((body or {}).get("error") or "")
    what = f"slack {method}: " + (code or f"HTTP {status}")
    if status == 429 or code in ("ratelimited", "rate_limited"):
        return RateLimited(
            what,
            system=SYSTEM,
            status=status,
            messages=(code or "ratelimited",),
            retry_after=retry_after_seconds(headers) or (1.0 if status != 429 else None),
        )
    if status >= 500 or body is None or code in TRANSIENT_ERRORS:
        return ServerUnavailable(
            what,
            system=SYSTEM,
            status=status,
            messages=(code,) if code else (),
            retry_after=retry_after_seconds(headers),
        )
    if code in AUTH_ERRORS:
        needed = str(body.get("needed") or "")
        provided = str(body.get("provided") or "")
        if needed:
            what += f" (needs {needed}; the token has {provided or 'no scopes'})"
        return SlackAuthFailed(what, code=code, needed=needed, provided=provided, status=status)
    if code in NOT_FOUND_ERRORS:
        return SlackNotFound(what, code=code, status=status)
    details = {k: v for k, v in body.items() if k not in ("ok", "error")}
    return SlackRefused(what, code=code or f"http_{status}", details=details, status=status)


# ------------------------------------------------------------------------------- names


def slug(text: str) -> str:
    """Lower-case ASCII words joined by `-`: symbols and emoji dropped, other scripts
    transliterated, everything else a separator."""
    kept = []
    for char in unicodedata.normalize("NFKC", text):
        category = unicodedata.category(char)
        if category[0] in ("S", "C") or category in ("Mn", "Me"):
            kept.append(" ")
        else:
            kept.append(char)
    ascii_text = anyascii("".join(kept)).lower()
    return _SEPARATORS.sub("-", ascii_text).strip("-")


def channel_name(template: str, **fields: str) -> str:
    """A valid Slack channel name from a template such as `ds-{number}-{summary}`.

    Every field is slugged; `summary` is shortened (at a word where it can) so the whole name
    fits 80 characters, and dropped with its separator when nothing of it is left. A name that
    would be empty is "escalation". Unknown fields raise KeyError.
    """
    names = _FIELD.findall(template)
    values = {name: slug(str(fields[name])) for name in names}
    summary = values.pop("summary", None)
    if summary is None:
        return _clip(_normalise(_FIELD.sub(lambda m: values[m[1]], template)), NAME_MAX)
    placeholder = "\x00"
    rest = _normalise_keeping(_FIELD.sub(lambda m: values.get(m[1], placeholder), template))
    room = NAME_MAX - (len(rest) - 1)
    short = _clip(summary, max(room, 0))
    name = rest.replace(placeholder, short)
    return _clip(_normalise(name), NAME_MAX) or FALLBACK_NAME


def _normalise(name: str) -> str:
    name = re.sub(r"[^a-z0-9_-]+", "-", name.lower())
    name = re.sub(r"-{2,}", "-", name)
    return name.strip("-_")


def _normalise_keeping(name: str) -> str:
    # As _normalise, but the summary's placeholder survives.
    name = re.sub(r"[^a-z0-9_\x00-]+", "-", name.lower())
    return re.sub(r"-{2,}", "-", name)


def _clip(text: str, size: int) -> str:
    """At most `size` characters, cut at the last `-` when that keeps most of the text."""
    if len(text) <= size:
        return text
    cut = text[:size]
    at = cut.rfind("-")
    if at >= size // 2:
        cut = cut[:at]
    return cut.strip("-_")


def suffixed(name: str, n: int) -> str:
    """`name-n`, the name shortened so the whole stays within 80 characters."""
    tail = f"-{n}"
    return _clip(name, NAME_MAX - len(tail)).rstrip("-_") + tail


def valid_channel_name(name: str) -> bool:
    """Lower case letters, digits, `-` and `_`, 1 to 80 characters, not only punctuation."""
    return bool(_NAME.match(name)) and bool(name.strip("-_"))


def _with_marker(text: str, marker: str) -> str:
    """`text` ending with `marker`, within Slack's 250 characters for a purpose."""
    if not marker or marker in text:
        return text[:TOPIC_MAX]
    room = TOPIC_MAX - len(marker) - 1
    body = text.strip()[: max(room, 0)].rstrip()
    return f"{body} {marker}" if body else marker


# ------------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class SlackIdentity:
    """Who the token is (auth.test) and the scopes Slack says it has (X-OAuth-Scopes)."""

    url: str
    team: str
    team_id: str
    user: str
    user_id: str
    bot_id: str | None
    scopes: frozenset[str]


@dataclass(frozen=True, slots=True)
class SlackChannel:
    """A channel as the integration sees it."""

    id: str
    name: str
    is_private: bool
    is_archived: bool
    is_member: bool
    creator: str
    topic: str
    purpose: str

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> SlackChannel:
        """From a conversation object."""
        return cls(
            id=str(data["id"]),
            name=str(data.get("name") or ""),
            is_private=bool(data.get("is_private")),
            is_archived=bool(data.get("is_archived")),
            is_member=bool(data.get("is_member")),
            creator=str(data.get("creator") or ""),
            topic=str((data.get("topic") or {}).get("value") or ""),
            purpose=str((data.get("purpose") or {}).get("value") or ""),
        )


@dataclass(frozen=True, slots=True)
class EnsuredChannel:
    """The escalation's channel: `created` when this call made it, else found from before."""

    channel: SlackChannel
    created: bool
    url: str


@dataclass(frozen=True, slots=True)
class SlackUser:
    """A workspace member found by email."""

    id: str
    name: str
    real_name: str
    email: str
    deleted: bool
    is_bot: bool


@dataclass(frozen=True, slots=True)
class InviteResult:
    """Who is in the channel now because of this call, who already was, and who is not in
    Slack at all (no active account for the address); addresses as the caller gave them."""

    invited: tuple[str, ...] = ()
    already_members: tuple[str, ...] = ()
    not_in_slack: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PostedMessage:
    """A message carrying `key`: `created` when this call posted it, else found from before."""

    channel: str
    ts: str
    key: str
    created: bool


@dataclass(frozen=True, slots=True)
class FoundMessage:
    """A message of ours found by its key."""

    ts: str
    text: str
    event_type: str
    payload: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------- transport


class _SessionWebClient(WebClient):
    """WebClient whose HTTP exchange goes through a requests.Session.

    The SDK builds the request (URL, headers, body) and parses the answer; only the exchange
    is replaced. Any status comes back as an answer (the SDK raises SlackApiError for it).
    """

    def __init__(self, session: requests.Session, **kwargs: Any) -> None:
        super().__init__(retry_handlers=[], **kwargs)
        self._session = session

    def _perform_urllib_http_request_internal(self, url: str, req: Request) -> dict[str, Any]:
        response = self._session.request(
            req.get_method(),
            url,
            data=req.data,  # type: ignore[arg-type]
            headers=dict(req.header_items()),
            timeout=self.timeout,
            allow_redirects=False,
        )
        return {"status": response.status_code, "headers": response.headers, "body": response.text}


class _RateGates:
    """When each method (chat.postMessage: each channel) may be called again after a 429."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._until: dict[tuple[str, str], float] = {}

    def wait_time(self, key: tuple[str, str]) -> float:
        with self._lock:
            until = self._until.get(key, 0.0)
        return max(0.0, until - self._clock())

    def close_for(self, key: tuple[str, str], seconds: float) -> None:
        with self._lock:
            until = self._clock() + seconds
            self._until[key] = max(self._until.get(key, 0.0), until)


# ------------------------------------------------------------------------------- connector


class SlackConnector:
    """One workspace, reached with one bot token.

    `session` lends its transport (adapters, proxies, TLS); `retry` bounds the attempts per
    call; `base_url` points at another Web API (a simulator). `clock` is for tests.
    """

    def __init__(
        self,
        token: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        session: requests.Session | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not token:
            raise ValueError("a Slack token is required")
        self._retry = retry or RetryPolicy()
        self._client = _SessionWebClient(
            session or requests.Session(),
            token=token,
            base_url=base_url,
            timeout=int(timeout),
        )
        self._gates = _RateGates(clock)
        self._identity: SlackIdentity | None = None

    # -- plumbing ---------------------------------------------------------------------------

    def _once(self, method: str, send: Callable[[], Any], channel: str = "") -> dict[str, Any]:
        """One attempt: wait out a closed gate, send, translate failures to typed errors."""
        gate = (method, channel if method == "chat.postMessage" else "")
        waiting = self._gates.wait_time(gate)
        if waiting > 0:
            if waiting > self._retry.defer_after:
                raise RateLimited(
                    f"slack {method}: rate limited", system=SYSTEM, retry_after=waiting
                )
            self._retry.sleep(waiting)
        failure: ConnectorError
        try:
            response = send()
            data = dict(response.data)
            data["_headers"] = dict(response.headers or {})
            return data
        except SlackApiError as exc:
            answer = exc.response
            body = answer.data if isinstance(answer.data, dict) else None
            if body is not None and str(body.get("error", "")).startswith("Received a response"):
                body = None  # the SDK's stand-in for a page that was not JSON
            failure = error_for(method, answer.status_code, dict(answer.headers or {}), body)
        except requests.RequestException as exc:
            failure = TransportFailed(f"slack {method}: {type(exc).__name__}", system=SYSTEM)
        if isinstance(failure, RateLimited):
            wait = failure.retry_after
            self._gates.close_for(gate, 1.0 if wait is None else wait)
        # Raised outside the except block: the SDK's error keeps the request, token included.
        raise failure

    def _call(self, method: str, send: Callable[[], Any], channel: str = "") -> dict[str, Any]:
        return call_with_retry(self._retry, lambda: self._once(method, send, channel))

    # -- identity ---------------------------------------------------------------------------

    def identity(self) -> SlackIdentity:
        """auth.test, once per connector."""
        if self._identity is None:
            data = self._call("auth.test", self._client.auth_test)
            headers = {k.lower(): v for k, v in data["_headers"].items()}
            scopes = frozenset(
                s.strip() for s in headers.get("x-oauth-scopes", "").split(",") if s.strip()
            )
            self._identity = SlackIdentity(
                url=str(data.get("url") or ""),
                team=str(data.get("team") or ""),
                team_id=str(data.get("team_id") or ""),
                user=str(data.get("user") or ""),
                user_id=str(data.get("user_id") or ""),
                bot_id=data.get("bot_id"),
                scopes=scopes,
            )
        return self._identity

    def channel_url(self, channel_id: str) -> str:
        """The link people open the channel with."""
        base = self.identity().url or "https://slack.com/"
        return f"{base.rstrip('/')}/archives/{channel_id}"

    # -- channels ---------------------------------------------------------------------------

    def channel(self, channel_id: str) -> SlackChannel:
        """conversations.info."""
        data = self._call(
            "conversations.info", lambda: self._client.conversations_info(channel=channel_id)
        )
        return SlackChannel.from_api(data["channel"])

    def find_channel(self, name: str) -> SlackChannel | None:
        """The channel called `name` among those the token can see, archived ones included."""
        cursor = ""
        while True:
            data = self._call(
                "conversations.list",
                partial(
                    self._client.conversations_list,
                    types="public_channel,private_channel",
                    exclude_archived=False,
                    limit=LIST_PAGE,
                    cursor=cursor or None,
                ),
            )
            for item in data.get("channels") or []:
                if item.get("name") == name:
                    return SlackChannel.from_api(item)
            cursor = str((data.get("response_metadata") or {}).get("next_cursor") or "")
            if not cursor:
                return None

    def ensure_channel(
        self,
        name: str,
        *,
        marker: str,
        topic: str = "",
        purpose: str = "",
        private: bool = False,
        max_suffix: int = 20,
    ) -> EnsuredChannel:
        """The escalation's channel, created once (see the module docstring), its purpose
        carrying `marker`, its topic `topic`, the bot a member."""
        if not valid_channel_name(name):
            raise ValueError(f"not a valid Slack channel name: {name!r} (use channel_name())")
        if not marker:
            raise ValueError("a marker is needed to recognise the channel later")
        me = self.identity()
        for n in range(1, max_suffix + 1):
            candidate = name if n == 1 else suffixed(name, n)
            try:
                data = self._call(
                    "conversations.create",
                    partial(self._client.conversations_create, name=candidate, is_private=private),
                )
            except SlackRefused as refused:
                if refused.code != "name_taken":
                    raise
                existing = self.find_channel(candidate)
                if existing is None or existing.is_archived or not _ours(existing, marker, me):
                    continue
                finished = self._finish(existing, marker, topic, purpose)
                return EnsuredChannel(finished, False, self.channel_url(existing.id))
            channel = SlackChannel.from_api(data["channel"])
            channel = self._finish(channel, marker, topic, purpose)
            return EnsuredChannel(channel, True, self.channel_url(channel.id))
        raise SlackRefused(
            f"slack conversations.create: {name} and {max_suffix - 1} suffixed names are taken",
            code="name_taken",
        )

    def _finish(self, channel: SlackChannel, marker: str, topic: str, purpose: str) -> SlackChannel:
        """Join, mark and describe a channel; each step only if not done already."""
        if not channel.is_member and not channel.is_private:
            self._call(
                "conversations.join", lambda: self._client.conversations_join(channel=channel.id)
            )
        wanted_purpose = _with_marker(purpose, marker)
        current_purpose, current_topic = channel.purpose, channel.topic
        if marker not in current_purpose or (purpose and current_purpose != wanted_purpose):
            self.set_purpose(channel.id, wanted_purpose)
            current_purpose = wanted_purpose
        if topic and current_topic != topic[:TOPIC_MAX]:
            self.set_topic(channel.id, topic)
            current_topic = topic[:TOPIC_MAX]
        return SlackChannel(
            id=channel.id,
            name=channel.name,
            is_private=channel.is_private,
            is_archived=channel.is_archived,
            is_member=True,
            creator=channel.creator,
            topic=current_topic,
            purpose=current_purpose,
        )

    def join(self, channel: SlackChannel) -> SlackChannel:
        """conversations.join for a public channel the bot is not in; a private channel must
        have the bot invited by one of its members (NotFound says so)."""
        if channel.is_member:
            return channel
        if channel.is_private:
            raise SlackNotFound(
                f"slack: the bot is not a member of the private channel #{channel.name}; "
                "a member must invite it",
                code="not_in_channel",
            )
        data = self._call(
            "conversations.join", lambda: self._client.conversations_join(channel=channel.id)
        )
        return SlackChannel.from_api(data["channel"])

    def set_topic(self, channel_id: str, topic: str) -> None:
        """conversations.setTopic (cut to Slack's 250 characters)."""
        self._call(
            "conversations.setTopic",
            lambda: self._client.conversations_setTopic(
                channel=channel_id, topic=topic[:TOPIC_MAX]
            ),
        )

    def set_purpose(self, channel_id: str, purpose: str) -> None:
        """conversations.setPurpose (cut to Slack's 250 characters)."""
        self._call(
            "conversations.setPurpose",
            lambda: self._client.conversations_setPurpose(
                channel=channel_id, purpose=purpose[:TOPIC_MAX]
            ),
        )

    def archive(self, channel_id: str) -> bool:
        """conversations.archive: True when archived now, False when it already was."""
        try:
            self._call(
                "conversations.archive",
                lambda: self._client.conversations_archive(channel=channel_id),
            )
        except SlackRefused as refused:
            if refused.code == "already_archived":
                return False
            if refused.code != "not_in_channel":
                raise
            self._call(
                "conversations.join", lambda: self._client.conversations_join(channel=channel_id)
            )
            self._call(
                "conversations.archive",
                lambda: self._client.conversations_archive(channel=channel_id),
            )
        return True

    # -- people -----------------------------------------------------------------------------

    def lookup_user(self, email: str) -> SlackUser | None:
        """users.lookupByEmail; None for an address with no account."""
        try:
            data = self._call(
                "users.lookupByEmail", lambda: self._client.users_lookupByEmail(email=email)
            )
        except SlackNotFound:
            return None
        user = data["user"]
        return SlackUser(
            id=str(user["id"]),
            name=str(user.get("name") or ""),
            real_name=str(user.get("real_name") or ""),
            email=str((user.get("profile") or {}).get("email") or email),
            deleted=bool(user.get("deleted")),
            is_bot=bool(user.get("is_bot")),
        )

    def invite(self, channel_id: str, emails: Iterable[str]) -> InviteResult:
        """Add the people with these addresses; people not in Slack are listed, not an error."""
        by_id: dict[str, str] = {}
        absent: list[str] = []
        me = self.identity().user_id
        for email in dict.fromkeys(e.strip() for e in emails if e and e.strip()):
            user = self.lookup_user(email)
            if user is None or user.deleted or user.is_bot:
                absent.append(email)
            elif user.id != me and user.id not in by_id:
                by_id[user.id] = email
        invited: list[str] = []
        already: list[str] = []
        pending = dict(by_id)
        while pending:
            try:
                self._call(
                    "conversations.invite",
                    partial(
                        self._client.conversations_invite, channel=channel_id, users=list(pending)
                    ),
                )
            except (SlackRefused, SlackNotFound) as refused:
                if refused.code == "channel_not_found":
                    raise
                settled = self._settle(refused, pending, already, absent)
                if not settled:
                    raise
                continue
            invited += pending.values()
            break
        return InviteResult(tuple(invited), tuple(already), tuple(absent))

    def _settle(
        self,
        refused: SlackRefused | SlackNotFound,
        pending: dict[str, str],
        already: list[str],
        absent: list[str],
    ) -> bool:
        """Take the users Slack refused out of `pending`; False when none could be named."""
        details = refused.details if isinstance(refused, SlackRefused) else {}
        named = [
            (str(e.get("user")), str(e.get("error")))
            for e in details.get("errors") or []
            if isinstance(e, Mapping) and e.get("user") in pending
        ]
        if not named and len(pending) == 1:
            named = [(next(iter(pending)), refused.code)]
        if not named:
            return False
        for user_id, code in named:
            email = pending.pop(user_id)
            if code == "already_in_channel":
                already.append(email)
            elif code in ("user_not_found", "users_not_found", "cant_invite", "user_is_restricted"):
                absent.append(email)
            elif code != "cant_invite_self":
                return False
        return True

    # -- messages ---------------------------------------------------------------------------

    def post(
        self,
        channel_id: str,
        text: str,
        *,
        key: str,
        event_type: str = EVENT_TYPE,
        payload: Mapping[str, Any] | None = None,
        blocks: Sequence[Mapping[str, Any]] | None = None,
        lookup: bool = True,
    ) -> PostedMessage:
        """Post once per `key`: a message with that key already in the channel is answered
        instead (looked up before sending unless `lookup` is False, and before any resend)."""
        if not key:
            raise ValueError("a key is needed to post idempotently")
        metadata = {"event_type": event_type, "event_payload": {**(payload or {}), "key": key}}
        body = text if len(text) <= TEXT_MAX else text[: TEXT_MAX - 13] + " (truncated)"
        attempts = 0

        def attempt() -> PostedMessage:
            nonlocal attempts
            attempts += 1
            if lookup or attempts > 1:
                found = self._find_once(channel_id, key, event_type)
                if found is not None:
                    return PostedMessage(channel_id, found.ts, key, False)
            data = self._once(
                "chat.postMessage",
                lambda: self._client.chat_postMessage(
                    channel=channel_id,
                    text=body,
                    metadata=metadata,
                    blocks=[dict(b) for b in blocks] if blocks else None,
                    unfurl_links=False,
                ),
                channel_id,
            )
            return PostedMessage(str(data["channel"]), str(data["ts"]), key, True)

        return call_with_retry(self._retry, attempt)

    def find_message(
        self, channel_id: str, key: str, *, event_type: str = EVENT_TYPE, scan: int = 1000
    ) -> FoundMessage | None:
        """The newest message of ours in the channel whose metadata carries `key`."""
        return call_with_retry(
            self._retry, lambda: self._find_once(channel_id, key, event_type, scan)
        )

    def _find_once(
        self, channel_id: str, key: str, event_type: str, scan: int = 1000
    ) -> FoundMessage | None:
        cursor = ""
        latest = ""
        seen = 0
        while seen < scan:
            data = self._once(
                "conversations.history",
                partial(
                    self._client.conversations_history,
                    channel=channel_id,
                    limit=HISTORY_PAGE,
                    include_all_metadata=True,
                    cursor=cursor or None,
                    latest=latest or None,
                ),
            )
            messages = data.get("messages") or []
            seen += len(messages)
            for message in messages:
                metadata = message.get("metadata") or {}
                event_payload = metadata.get("event_payload") or {}
                if metadata.get("event_type") == event_type and event_payload.get("key") == key:
                    return FoundMessage(
                        ts=str(message["ts"]),
                        text=str(message.get("text") or ""),
                        event_type=event_type,
                        payload=dict(event_payload),
                    )
            if not data.get("has_more") or not messages:
                return None
            cursor = str((data.get("response_metadata") or {}).get("next_cursor") or "")
            latest = "" if cursor else str(messages[-1]["ts"])
        return None


def _ours(channel: SlackChannel, marker: str, me: SlackIdentity) -> bool:
    if marker in channel.purpose or marker in channel.topic:
        return True
    return channel.creator == me.user_id and not channel.purpose and not channel.topic
