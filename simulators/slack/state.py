"""The simulated workspace: users, tokens, channels and messages, and the Web API methods on them.

Each method takes the caller's token and its arguments (strings from a form or query, or JSON
values) and answers the body Slack answers, or raises `SlackError` with Slack's error code. The
HTTP layer (`simulators.slack.app`) decides how arguments and tokens arrive; nothing here knows.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import re
import string
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Channel names: lower case letters, digits, hyphens and underscores, at most 80 characters.
NAME_MAX = 80
_NAME_CHARS = re.compile(r"^[a-z0-9_-]+$")
# Topic and purpose: 250 characters (Slack's documented maximum for both).
TOPIC_MAX = 250
# chat.postMessage: text longer than 40,000 characters is refused with msg_too_long.
TEXT_MAX = 40_000
LIST_DEFAULT = 100
LIST_MAX = 1000
HISTORY_DEFAULT = 100
HISTORY_MAX = 999
INVITE_MAX = 1000

_TRUE = {"1", "true", "True", "yes"}

# The scopes each channel type needs, per kind of access, as the spec's `security` lists them.
_TYPE_PREFIX = {
    "public_channel": "channels",
    "private_channel": "groups",
    "im": "im",
    "mpim": "mpim",
}


class SlackError(Exception):
    """A Web API failure: HTTP 200 with `{"ok": false, "error": code, ...extra}`."""

    def __init__(self, code: str, **extra: Any) -> None:
        super().__init__(code)
        self.code = code
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The response body Slack sends for this error."""
        return {"ok": False, "error": self.code, **self.extra}


@dataclass(slots=True)
class User:
    """A workspace member (a person or a bot user)."""

    id: str
    name: str
    real_name: str
    email: str | None
    is_bot: bool = False
    deleted: bool = False
    is_admin: bool = False
    tz: str = "Europe/London"
    bot_id: str | None = None


@dataclass(slots=True)
class Token:
    """An access token: whose it is, what it may do, and whether it still works."""

    value: str
    user_id: str
    scopes: frozenset[str]
    revoked: bool = False

    @property
    def is_bot(self) -> bool:
        """Bot tokens start `xoxb-`."""
        return self.value.startswith("xoxb-")


@dataclass(slots=True)
class Channel:
    """A public or private channel, its members and its messages (oldest first)."""

    id: str
    name: str
    creator: str
    created: int
    is_private: bool = False
    is_general: bool = False
    is_archived: bool = False
    topic: dict[str, Any] = field(
        default_factory=lambda: {"value": "", "creator": "", "last_set": 0}
    )
    purpose: dict[str, Any] = field(
        default_factory=lambda: {"value": "", "creator": "", "last_set": 0}
    )
    members: list[str] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    previous_names: list[str] = field(default_factory=list)


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value) in _TRUE


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _int_arg(value: Any, default: int, low: int, high: int) -> int:
    if value in (None, ""):
        return default
    try:
        number = int(str(value))
    except ValueError:
        raise SlackError("invalid_limit") from None
    return max(low, min(high, number))


def check_channel_name(name: str) -> None:
    """Refuse a name Slack refuses, with the error it names (see conversations.create)."""
    if not name:
        raise SlackError("invalid_name_required")
    if len(name) > NAME_MAX:
        raise SlackError("invalid_name_maxlength")
    if not _NAME_CHARS.match(name):
        if name.lower() != name and _NAME_CHARS.match(name.lower()):
            raise SlackError("invalid_name")
        raise SlackError("invalid_name_specials")
    if not name.strip("-_"):
        raise SlackError("invalid_name_punctuation")


class Workspace:
    """One Slack workspace (team) in memory, safe to call from the server's threads."""

    def __init__(
        self,
        *,
        team_id: str = "T0SIMTEAM1",
        team_name: str = "Escalation Sync Sim",
        domain: str = "escalation-sync-sim",
        seed: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.team_id = team_id
        self.team_name = team_name
        self.domain = domain
        self._rng = random.Random(seed)
        self._clock = clock
        self._lock = threading.RLock()
        self.users: dict[str, User] = {}
        self.tokens: dict[str, Token] = {}
        self.channels: dict[str, Channel] = {}
        self._last_ts = (0, 0)

    # ----------------------------------------------------------------------------- seeding

    def _new_id(self, prefix: str) -> str:
        alphabet = string.ascii_uppercase + string.digits
        while True:
            candidate = prefix + "".join(self._rng.choice(alphabet) for _ in range(10))
            if candidate not in self.users and candidate not in self.channels:
                return candidate

    def add_user(
        self,
        name: str,
        real_name: str,
        email: str | None,
        *,
        is_bot: bool = False,
        deleted: bool = False,
        is_admin: bool = False,
    ) -> User:
        """A new member; bots get a bot id as well."""
        with self._lock:
            user = User(
                id=self._new_id("U"),
                name=name,
                real_name=real_name,
                email=email,
                is_bot=is_bot,
                deleted=deleted,
                is_admin=is_admin,
                bot_id=self._new_id("B") if is_bot else None,
            )
            self.users[user.id] = user
            return user

    def add_token(self, value: str, user: User, scopes: Iterable[str]) -> Token:
        """Issue `value` to `user` with `scopes`."""
        with self._lock:
            token = Token(value, user.id, frozenset(scopes))
            self.tokens[value] = token
            return token

    def revoke_token(self, value: str) -> None:
        """The token answers `token_revoked` from now on."""
        with self._lock:
            self.tokens[value].revoked = True

    def add_channel(
        self, name: str, creator: User, *, is_private: bool = False, is_general: bool = False
    ) -> Channel:
        """A channel as a person would create it (no checks on the caller)."""
        with self._lock:
            check_channel_name(name)
            if self._by_name(name) is not None:
                raise SlackError("name_taken")
            channel = Channel(
                id=self._new_id("C"),
                name=name,
                creator=creator.id,
                created=int(self._clock()),
                is_private=is_private,
                is_general=is_general,
            )
            self.channels[channel.id] = channel
            self._join(channel, creator.id, inviter=None)
            return channel

    def authenticate(self, value: str | None) -> Token:
        """The token behind a request, or not_authed / invalid_auth / token_revoked."""
        if not value:
            raise SlackError("not_authed")
        with self._lock:
            token = self.tokens.get(value)
        if token is None:
            raise SlackError("invalid_auth")
        if token.revoked:
            raise SlackError("token_revoked")
        return token

    # ----------------------------------------------------------------------------- helpers

    def _by_name(self, name: str) -> Channel | None:
        return next((c for c in self.channels.values() if c.name == name), None)

    def _next_ts(self) -> str:
        now = self._clock()
        seconds, micros = int(now), int((now - int(now)) * 1_000_000)
        if (seconds, micros) <= self._last_ts:
            seconds, micros = self._last_ts
            micros += 1
            if micros >= 1_000_000:
                seconds, micros = seconds + 1, 0
        self._last_ts = (seconds, micros)
        return f"{seconds:010d}.{micros:06d}"

    def _join(self, channel: Channel, user_id: str, *, inviter: str | None) -> None:
        channel.members.append(user_id)
        message: dict[str, Any] = {
            "type": "message",
            "subtype": "channel_join",
            "user": user_id,
            "text": f"<@{user_id}> has joined the channel",
            "ts": self._next_ts(),
        }
        if inviter:
            message["inviter"] = inviter
        channel.messages.append(message)

    def _channel(self, token: Token, value: Any, *, must_see: bool = True) -> Channel:
        """A channel by id (or, where the method allows, by name) that the caller can see."""
        ref = _text(value).strip()
        if not ref:
            raise SlackError("channel_not_found")
        channel = self.channels.get(ref)
        if channel is None:
            raise SlackError("channel_not_found")
        if must_see and channel.is_private and token.user_id not in channel.members:
            raise SlackError("channel_not_found")
        return channel

    def _need_scope(self, token: Token, *choices: str) -> None:
        if not any(scope in token.scopes for scope in choices):
            raise SlackError(
                "missing_scope", needed=choices[0], provided=",".join(sorted(token.scopes))
            )

    def _need_channel_scope(self, token: Token, channel: Channel, access: str) -> None:
        prefix = "groups" if channel.is_private else "channels"
        self._need_scope(token, f"{prefix}:{access}")

    def render_channel(
        self, channel: Channel, viewer: str, *, num_members: bool = False
    ) -> dict[str, Any]:
        """The conversation object as Slack answers it."""
        data: dict[str, Any] = {
            "id": channel.id,
            "name": channel.name,
            "name_normalized": channel.name,
            "created": channel.created,
            "creator": channel.creator,
            "is_channel": True,
            "is_group": False,
            "is_im": False,
            "is_mpim": False,
            "is_private": channel.is_private,
            "is_archived": channel.is_archived,
            "is_general": channel.is_general,
            "is_shared": False,
            "is_org_shared": False,
            "is_ext_shared": False,
            "is_pending_ext_shared": False,
            "pending_shared": [],
            "is_member": viewer in channel.members,
            "unlinked": 0,
            "topic": dict(channel.topic),
            "purpose": dict(channel.purpose),
            "previous_names": list(channel.previous_names),
        }
        if viewer in channel.members:
            # What a member's client keeps of its reading position (nothing read here).
            data.update(
                last_read="0000000000.000000",
                latest=None,
                unread_count=0,
                unread_count_display=0,
                priority=0,
            )
        if num_members:
            data["num_members"] = len(channel.members)
        return data

    def render_user(self, user: User) -> dict[str, Any]:
        """The user object as Slack answers it (non-enterprise form)."""
        first, _, last = user.real_name.partition(" ")
        profile: dict[str, Any] = {
            "real_name": user.real_name,
            "real_name_normalized": user.real_name,
            "display_name": user.name,
            "display_name_normalized": user.name,
            "first_name": first,
            "last_name": last,
            "avatar_hash": "g" + user.id[-11:].lower(),
            "title": "",
            "phone": "",
            "skype": "",
            "status_text": "",
            "status_emoji": "",
            "fields": None,
            "team": self.team_id,
            "email": user.email,
        }
        if user.bot_id:
            profile["bot_id"] = user.bot_id
        return {
            "id": user.id,
            "team_id": self.team_id,
            "name": user.name,
            "deleted": user.deleted,
            "color": "9f69e7",
            "real_name": user.real_name,
            "tz": user.tz,
            "tz_label": "Greenwich Mean Time",
            "tz_offset": 0,
            "profile": profile,
            "is_admin": user.is_admin,
            "is_owner": False,
            "is_primary_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": user.is_bot,
            "is_app_user": False,
            "updated": 1700000000,
        }

    # ----------------------------------------------------------------------------- methods

    def auth_test(self, token: Token, args: Mapping[str, Any]) -> dict[str, Any]:
        """auth.test: who the token is."""
        user = self.users[token.user_id]
        body: dict[str, Any] = {
            "ok": True,
            "url": f"https://{self.domain}.slack.com/",
            "team": self.team_name,
            "user": user.name,
            "team_id": self.team_id,
            "user_id": user.id,
        }
        if token.is_bot and user.bot_id:
            body["bot_id"] = user.bot_id
            body["is_enterprise_install"] = False
        return body

    def conversations_create(self, token: Token, args: Mapping[str, Any]) -> dict[str, Any]:
        """conversations.create: a new channel, the caller its first member."""
        private = _flag(args.get("is_private", False))
        self._need_scope(token, "groups:write" if private else "channels:write")
        name = _text(args.get("name"))
        with self._lock:
            check_channel_name(name)
            if self._by_name(name) is not None:
                raise SlackError("name_taken")
            creator = self.users[token.user_id]
            channel = Channel(
                id=self._new_id("C"),
                name=name,
                creator=creator.id,
                created=int(self._clock()),
                is_private=private,
            )
            self.channels[channel.id] = channel
            self._join(channel, creator.id, inviter=None)
            return {"ok": True, "channel": self.render_channel(channel, token.user_id)}

    def conversations_info(self, token: Token, args: Mapping[str, Any]) -> dict[str, Any]:
        """conversations.info: one channel the caller can see."""
        with self._lock:
            channel = self._channel(token, args.get("channel"))
            self._need_channel_scope(token, channel, "read")
            return {
                "ok": True,
                "channel": self.render_channel(
                    channel, token.user_id, num_members=_flag(args.get("include_num_members"))
                ),
            }

    def conversations_list(self, token: Token, args: Mapping[str, Any]) -> dict[str, Any]:
        """conversations.list: channels the caller can see, a page at a time (cursor paging)."""
        types = [t.strip() for t in _text(args.get("types") or "public_channel").split(",")]
        types = [t for t in types if t]
        for kind in types:
            if kind not in _TYPE_PREFIX:
                raise SlackError("invalid_types")
            self._need_scope(token, f"{_TYPE_PREFIX[kind]}:read")
        limit = _int_arg(args.get("limit"), LIST_DEFAULT, 1, LIST_MAX)
        exclude_archived = _flag(args.get("exclude_archived", False))
        with self._lock:
            visible = [
                c
                for c in self.channels.values()
                if ("private_channel" if c.is_private else "public_channel") in types
                and (not c.is_private or token.user_id in c.members)
                and not (exclude_archived and c.is_archived)
            ]
            visible.sort(key=lambda c: c.id)
            start = _cursor_offset(_text(args.get("cursor")), "channels")
            page = visible[start : start + limit]
            more = start + limit < len(visible)
            return {
                "ok": True,
                "channels": [self.render_channel(c, token.user_id, num_members=True) for c in page],
                "response_metadata": {
                    "next_cursor": _cursor("channels", start + limit) if more else ""
                },
            }

    def conversations_invite(self, token: Token, args: Mapping[str, Any]) -> dict[str, Any]:
        """conversations.invite: add up to 1000 users (comma-separated ids) to a channel."""
        with self._lock:
            channel = self._channel(token, args.get("channel"))
            self._need_channel_scope(token, channel, "write")
            if channel.is_archived:
                raise SlackError("is_archived")
            if token.user_id not in channel.members:
                raise SlackError("not_in_channel")
            wanted = [u.strip() for u in _text(args.get("users")).split(",") if u.strip()]
            if not wanted:
                raise SlackError("no_user")
            if len(wanted) > INVITE_MAX:
                raise SlackError("too_many_users")
            failures: list[dict[str, Any]] = []
            for user_id in wanted:
                user = self.users.get(user_id)
                if user is None or user.deleted:
                    failures.append({"user": user_id, "ok": False, "error": "user_not_found"})
                elif user_id == token.user_id:
                    failures.append({"user": user_id, "ok": False, "error": "cant_invite_self"})
                elif user_id in channel.members:
                    failures.append({"user": user_id, "ok": False, "error": "already_in_channel"})
            if failures:
                # One refused user refuses the call; the first failure names the error.
                raise SlackError(failures[0]["error"], errors=failures)
            for user_id in dict.fromkeys(wanted):
                self._join(channel, user_id, inviter=token.user_id)
            return {"ok": True, "channel": self.render_channel(channel, token.user_id)}

    def _set_text(self, token: Token, args: Mapping[str, Any], what: str) -> dict[str, Any]:
        with self._lock:
            channel = self._channel(token, args.get("channel"))
            self._need_channel_scope(token, channel, "write")
            if channel.is_archived:
                raise SlackError("is_archived")
            if token.user_id not in channel.members:
                raise SlackError("not_in_channel")
            value = _text(args.get(what))
            if len(value) > TOPIC_MAX:
                raise SlackError("too_long")
            stamped = {"value": value, "creator": token.user_id, "last_set": int(self._clock())}
            if what == "topic":
                channel.topic = stamped
            else:
                channel.purpose = stamped
            channel.messages.append(
                {
                    "type": "message",
                    "subtype": f"channel_{what}",
                    "user": token.user_id,
                    "text": f"set the channel {what}: {value}",
                    what: value,
                    "ts": self._next_ts(),
                }
            )
            return {"ok": True, "channel": self.render_channel(channel, token.user_id)}

    def conversations_set_topic(self, token: Token, args: Mapping[str, Any]) -> dict[str, Any]:
        """conversations.setTopic."""
        return self._set_text(token, args, "topic")

    def conversations_set_purpose(self, token: Token, args: Mapping[str, Any]) -> dict[str, Any]:
        """conversations.setPurpose."""
        return self._set_text(token, args, "purpose")

    def conversations_archive(self, token: Token, args: Mapping[str, Any]) -> dict[str, Any]:
        """conversations.archive."""
        with self._lock:
            channel = self._channel(token, args.get("channel"))
            self._need_channel_scope(token, channel, "write")
            if channel.is_general:
                raise SlackError("cant_archive_general")
            if channel.is_archived:
                raise SlackError("already_archived")
            if token.user_id not in channel.members:
                raise SlackError("not_in_channel")
            channel.is_archived = True
            channel.messages.append(
                {
                    "type": "message",
                    "subtype": "channel_archive",
                    "user": token.user_id,
                    "text": f"<@{token.user_id}> archived the channel",
                    "ts": self._next_ts(),
                }
            )
            return {"ok": True}

    def conversations_join(self, token: Token, args: Mapping[str, Any]) -> dict[str, Any]:
        """conversations.join: public channels only; joining twice is a warning, not an error."""
        with self._lock:
            channel = self._channel(token, args.get("channel"))
            if channel.is_private:
                raise SlackError("method_not_supported_for_channel_type")
            self._need_scope(token, "channels:write")
            if channel.is_archived:
                raise SlackError("is_archived")
            body: dict[str, Any] = {"ok": True}
            if token.user_id in channel.members:
                body["warning"] = "already_in_channel"
                body["response_metadata"] = {"warnings": ["already_in_channel"]}
            else:
                self._join(channel, token.user_id, inviter=None)
            body["channel"] = self.render_channel(channel, token.user_id)
            return body

    def chat_post_message(self, token: Token, args: Mapping[str, Any]) -> dict[str, Any]:
        """chat.postMessage: a message (with optional metadata) in a channel the caller is in."""
        self._need_scope(token, "chat:write", "chat:write:bot", "chat:write:user")
        text = _text(args.get("text"))
        blocks = _json_arg(args.get("blocks"), "invalid_blocks")
        attachments = _json_arg(args.get("attachments"), "invalid_attachments")
        metadata = _metadata(args.get("metadata"))
        if not text and not blocks and not attachments:
            raise SlackError("no_text")
        if len(text) > TEXT_MAX:
            raise SlackError("msg_too_long")
        with self._lock:
            channel = self._post_target(token, args.get("channel"))
            if channel.is_archived:
                raise SlackError("is_archived")
            if token.user_id not in channel.members:
                raise SlackError("not_in_channel")
            user = self.users[token.user_id]
            message: dict[str, Any] = {
                "type": "message",
                "text": text,
                "user": user.id,
                "ts": self._next_ts(),
                "team": self.team_id,
            }
            if user.bot_id:
                message["bot_id"] = user.bot_id
            if blocks:
                message["blocks"] = blocks
            thread_ts = _text(args.get("thread_ts"))
            if thread_ts:
                message["thread_ts"] = thread_ts
            stored = dict(message)
            if metadata is not None:
                stored["metadata"] = metadata
            channel.messages.append(stored)
            return {"ok": True, "channel": channel.id, "ts": message["ts"], "message": message}

    def _post_target(self, token: Token, value: Any) -> Channel:
        ref = _text(value).strip()
        if ref.startswith("#") or (ref and ref not in self.channels):
            channel = self._by_name(ref.lstrip("#"))
            if channel is None or (channel.is_private and token.user_id not in channel.members):
                raise SlackError("channel_not_found")
            return channel
        return self._channel(token, ref)

    def conversations_history(self, token: Token, args: Mapping[str, Any]) -> dict[str, Any]:
        """conversations.history: newest first, paged by cursor or by `latest`."""
        with self._lock:
            channel = self._channel(token, args.get("channel"))
            self._need_channel_scope(token, channel, "history")
            if token.user_id not in channel.members and token.is_bot:
                raise SlackError("not_in_channel")
            latest = _ts_arg(args.get("latest"), "invalid_ts_latest")
            oldest = _ts_arg(args.get("oldest"), "invalid_ts_oldest")
            inclusive = _flag(args.get("inclusive", False))
            limit = _int_arg(args.get("limit"), HISTORY_DEFAULT, 1, HISTORY_MAX)
            with_metadata = _flag(args.get("include_all_metadata", False))

            def inside(message: Mapping[str, Any]) -> bool:
                ts = float(message["ts"])
                if latest is not None and (ts > latest or (ts == latest and not inclusive)):
                    return False
                return not (
                    oldest is not None and (ts < oldest or (ts == oldest and not inclusive))
                )

            window = [m for m in reversed(channel.messages) if inside(m)]
            start = _cursor_offset(_text(args.get("cursor")), f"history:{channel.id}")
            page = window[start : start + limit]
            more = start + limit < len(window)
            messages = []
            for stored in page:
                shown = dict(stored)
                if not with_metadata:
                    shown.pop("metadata", None)
                messages.append(shown)
            body: dict[str, Any] = {
                "ok": True,
                "messages": messages,
                "has_more": more,
                "pin_count": 0,
                "channel_actions_ts": None,
                "channel_actions_count": 0,
            }
            if more:
                body["response_metadata"] = {
                    "next_cursor": _cursor(f"history:{channel.id}", start + limit)
                }
            return body

    def users_lookup_by_email(self, token: Token, args: Mapping[str, Any]) -> dict[str, Any]:
        """users.lookupByEmail: exact address, case-insensitive; nobody is users_not_found."""
        self._need_scope(token, "users:read.email")
        email = _text(args.get("email")).strip().lower()
        with self._lock:
            for user in self.users.values():
                if email and user.email and user.email.lower() == email:
                    return {"ok": True, "user": self.render_user(user)}
        raise SlackError("users_not_found")

    def users_info(self, token: Token, args: Mapping[str, Any]) -> dict[str, Any]:
        """users.info."""
        self._need_scope(token, "users:read")
        with self._lock:
            user = self.users.get(_text(args.get("user")).strip())
            if user is None:
                raise SlackError("user_not_found")
            return {"ok": True, "user": self.render_user(user)}


def _cursor(kind: str, offset: int) -> str:
    return base64.b64encode(f"{kind}:{offset}".encode()).decode()


def _cursor_offset(cursor: str, kind: str) -> int:
    if not cursor:
        return 0
    try:
        decoded = base64.b64decode(cursor.encode(), validate=True).decode()
        prefix, _, number = decoded.rpartition(":")
        if prefix != kind:
            raise ValueError(decoded)
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise SlackError("invalid_cursor") from None


def _ts_arg(value: Any, error: str) -> float | None:
    if value in (None, ""):
        return None
    try:
        return float(str(value))
    except ValueError:
        raise SlackError(error) from None


def _json_arg(value: Any, error: str) -> Any:
    """Blocks and attachments come as JSON values, or as JSON text in a form."""
    if value in (None, ""):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise SlackError(error) from None
    if not isinstance(value, list):
        raise SlackError(error)
    return value


def _metadata(value: Any) -> dict[str, Any] | None:
    """Message metadata: `{"event_type": str, "event_payload": object}` (JSON text in a form)."""
    if value in (None, ""):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise SlackError("invalid_metadata_format") from None
    if (
        not isinstance(value, dict)
        or not isinstance(value.get("event_type"), str)
        or not value["event_type"]
        or not isinstance(value.get("event_payload"), dict)
        or set(value) - {"event_type", "event_payload"}
    ):
        raise SlackError("invalid_metadata_format")
    return {"event_type": value["event_type"], "event_payload": value["event_payload"]}
