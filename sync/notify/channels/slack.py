"""Slack: a channel per escalation (or one to join), its people invited, its events posted.

Composing makes the channel's name from the policy's template with Slack's rules (lower-case
ASCII, digits, `-` and `_`, 80 characters; emoji dropped, other scripts transliterated, a name of
nothing but punctuation replaced) and lays the rows out as every chat channel does
(`sync.notify.rooms`). Sending goes through `connectors.slack.SlackConnector`:

- the room: `ensure_channel` with the room's marker in its purpose, so a send repeated after a
  crash finds the channel it made (name taken by ours) instead of making a second one; with
  `join`, the named channel is found and joined;
- an invitation: `invite` by e-mail address (`users.lookupByEmail`); people without an account
  are reported back (`not_in_chat`), not an error;
- a message: `post` with the row's key in the message's metadata; after a crash `was_sent`
  looks for that key in the channel's history;
- archiving: `archive`, a no-op when it already is.

A 429 closes that method's gate for `Retry-After` seconds: a short wait is sat out, a longer one
hands the row back to the outbox for then (no attempt spent). A refused token or a missing scope
(`not_authed`, `invalid_auth`, `token_revoked`, `missing_scope`) pauses the channel: /healthz
and `status` say so, and the escalation goes on without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from sync.notify import rooms
from sync.notify.notifier import RESOURCE, Delivered, Draft, Notice, Outgoing

if TYPE_CHECKING:
    # slack_sdk is imported when the channel first sends, not when the configuration loads.
    from connectors.slack import SlackConnector

CHANNEL = "slack"


class Settings(BaseModel):
    """[notify.slack]: the workspace's bot token and how patient to be with Slack."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # ESCALATION_SYNC_NOTIFY__SLACK__TOKEN, or token_file (a container secret).
    token: SecretStr | None = None
    token_file: Path | None = None
    base_url: str = "https://slack.com/api/"
    timeout_seconds: float = Field(default=30.0, gt=0)
    # A rate limit asking to wait up to this long is waited out while sending; a longer one
    # puts the message back in the outbox for when Slack allows it.
    wait_at_most_seconds: float = Field(default=5.0, ge=0)
    attempts: int = Field(default=3, ge=1, le=10)

    @model_validator(mode="after")
    def _token(self) -> Settings:
        if self.token is None and self.token_file is not None:
            try:
                text = Path(self.token_file).read_text().strip()
            except OSError as exc:
                raise ValueError(f"cannot read token_file: {exc.strerror}") from None
            object.__setattr__(self, "token", SecretStr(text))
        if self.token is None or not self.token.get_secret_value():
            raise ValueError(
                "a bot token is needed: ESCALATION_SYNC_NOTIFY__SLACK__TOKEN or token_file"
            )
        return self


def mrkdwn(text: str) -> str:
    """Plain text as Slack shows it literally: `&`, `<` and `>` escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackNotifier:
    """Escalation rooms in one Slack workspace."""

    channel = CHANNEL
    title = "Slack"
    keeps_rooms = True

    def __init__(self, settings: Settings, connector: SlackConnector | None = None) -> None:
        self.settings = settings
        self._connector = connector

    @property
    def connector(self) -> SlackConnector:
        """The workspace's Web API client, made on first use."""
        if self._connector is None:
            # Imported here: the registry imports every channel module at start-up.
            from connectors.retry import RetryPolicy
            from connectors.slack import SlackConnector

            token = self.settings.token
            assert token is not None  # Settings refuses a table without one
            self._connector = SlackConnector(
                token.get_secret_value(),
                base_url=self.settings.base_url,
                timeout=self.settings.timeout_seconds,
                retry=RetryPolicy(
                    attempts=self.settings.attempts,
                    defer_after=self.settings.wait_at_most_seconds,
                ),
            )
        return self._connector

    # -- composing

    def compose(self, notice: Notice) -> list[Draft]:
        """The rows of a stakeholder notice; nothing for other audiences."""
        context = rooms.chat_context(notice)
        if context is None:
            return []
        # Imported here: channel_name needs anyascii, a dependency of the Slack connector.
        from connectors.slack import channel_name

        room = context.room
        name = room.join or channel_name(room.name, **room.fields)
        return rooms.room_drafts(notice, name=name, text=mrkdwn(context.text))

    # -- sending

    def send(self, item: Outgoing) -> Delivered:
        """Make or join the room, invite, post or archive: once per row."""
        if item.kind == RESOURCE:
            return self._room(item)
        channel_id = item.destination[0]
        action = item.extra.get("action")
        if action == "invite":
            found = self.connector.invite(channel_id, list(item.extra.get("members") or ()))
            return Delivered(
                channel_id,
                {
                    "invited": list(found.invited),
                    "already_members": list(found.already_members),
                    "not_in_chat": list(found.not_in_slack),
                },
            )
        if action == "archive":
            archived = self.connector.archive(channel_id)
            return Delivered(channel_id, {"archived_now": archived})
        posted = self.connector.post(
            channel_id,
            item.text,
            key=item.key,
            payload={"ticket": item.ticket, "event": item.event},
            lookup=False,
        )
        return Delivered(posted.ts, {"channel": posted.channel})

    def _room(self, item: Outgoing) -> Delivered:
        extra = item.extra
        name = item.destination[0]
        connector = self.connector
        join = extra.get("join")
        if join:
            from connectors.slack import SlackNotFound

            found = connector.find_channel(str(join))
            if found is None or found.is_archived:
                state = "is archived" if found is not None else "does not exist"
                raise SlackNotFound(
                    f"slack: the channel #{join} to join {state}", code="channel_not_found"
                )
            channel = connector.join(found)
            return Delivered(
                channel.id, {"name": channel.name, "url": connector.channel_url(channel.id)}
            )
        ensured = connector.ensure_channel(
            name,
            marker=str(extra.get("marker") or ""),
            topic=item.text,
            purpose=str(extra.get("purpose") or ""),
            private=bool(extra.get("private")),
        )
        return Delivered(
            ensured.channel.id,
            {"name": ensured.channel.name, "url": ensured.url, "created": ensured.created},
        )

    def was_sent(self, item: Outgoing) -> Delivered | Literal[False] | None:
        """After a crash: a message is looked up by its key; the rest is safe to do again
        (the room is found by its marker, inviting or archiving twice changes nothing)."""
        if item.kind == RESOURCE or item.extra.get("action") in ("invite", "archive"):
            return False
        channel_id = item.destination[0]
        found = self.connector.find_message(channel_id, item.key)
        if found is None:
            return False
        return Delivered(found.ts, {"channel": channel_id})


def build(settings: Any) -> SlackNotifier | None:
    """The Slack notifier of `[notify.slack]`; None without that table."""
    config = (getattr(settings, "notify_settings", None) or {}).get(CHANNEL)
    return SlackNotifier(config) if isinstance(config, Settings) else None
