"""Microsoft Teams: a channel per escalation in a configured team (or a group chat), its people
added, its events posted, through Microsoft Graph (`connectors.teams.TeamsConnector`).

Graph takes each call with a different token: the application's own (client credentials) makes
and finds channels, adds members and archives; a signed-in service account's (delegated, kept
in an msal token cache that `escalation-sync teams sign-in` writes) posts messages and makes
group chats. Without the cache, posting is refused with a reason naming the sign-in, and the
channel is paused until it works (a reload resumes it).

- the room: `ensure_channel` in `team_id` with the room's marker in its description from the
  moment it is made, so a repeated send finds it instead of making a second one; with `join`,
  the team's channel of that name; without a team, a group chat found again by its topic;
- an invitation: `add_members` by e-mail address (people not in the directory are reported
  back, not an error); a standard channel's members are the team's;
- a message: `post` with the row's key as its last line; after a crash `was_sent` looks for it;
- archiving: a channel is archived (a group chat has no archive in Graph: nothing to do).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from sync.notify import rooms
from sync.notify.notifier import RESOURCE, Delivered, Draft, Notice, Outgoing

if TYPE_CHECKING:
    from connectors.teams import TeamsConnector, TeamsConversation

CHANNEL = "teams"
DEFAULT_TOKEN_CACHE = Path("teams-token-cache.json")


class Settings(BaseModel):
    """[notify.teams]: the tenant, the application, the team rooms are made in, and the signed-in
    service account that posts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant_id: str = Field(min_length=1)
    client_id: str = Field(min_length=1)
    # ESCALATION_SYNC_NOTIFY__TEAMS__CLIENT_SECRET, or client_secret_file.
    client_secret: SecretStr | None = None
    client_secret_file: Path | None = None
    # The team escalation channels are made in; without one, a group chat per escalation.
    team_id: str | None = None
    # The service account signed in with `escalation-sync teams sign-in`, and where msal keeps
    # its tokens (relative paths are taken from the state folder).
    username: str | None = None
    token_cache: Path = DEFAULT_TOKEN_CACHE
    graph_url: str = "https://graph.microsoft.com/v1.0"
    login_url: str = "https://login.microsoftonline.com"
    timeout_seconds: float = Field(default=30.0, gt=0)
    wait_at_most_seconds: float = Field(default=5.0, ge=0)
    attempts: int = Field(default=3, ge=1, le=10)

    @model_validator(mode="after")
    def _secret(self) -> Settings:
        if self.client_secret is None and self.client_secret_file is not None:
            try:
                text = Path(self.client_secret_file).read_text().strip()
            except OSError as exc:
                raise ValueError(f"cannot read client_secret_file: {exc.strerror}") from None
            object.__setattr__(self, "client_secret", SecretStr(text))
        if self.client_secret is None or not self.client_secret.get_secret_value():
            raise ValueError(
                "the application's secret is needed: ESCALATION_SYNC_NOTIFY__TEAMS__CLIENT_SECRET "
                "or client_secret_file"
            )
        return self

    def cache_path(self, state_dir: Path | None) -> Path:
        """Where the token cache is: `token_cache`, relative to the state folder."""
        if self.token_cache.is_absolute() or state_dir is None:
            return self.token_cache
        return state_dir / self.token_cache


def as_html(text: str) -> str:
    """Plain text as a Teams message body: escaped, one paragraph per line."""
    return "".join(f"<p>{html.escape(line)}</p>" for line in text.splitlines() if line.strip())


def conversation_ref(conversation: TeamsConversation) -> str:
    """What the outbox keeps as the room's id: enough to address it again."""
    if conversation.kind == "chat":
        return f"chat|{conversation.id}"
    private = "private" if conversation.private else "standard"
    return f"channel|{conversation.team_id}|{conversation.id}|{private}"


def conversation_of(ref: str) -> TeamsConversation:
    """The conversation a `conversation_ref` names."""
    from connectors.teams import TeamsConversation

    kind, _, rest = ref.partition("|")
    if kind == "chat":
        return TeamsConversation(kind="chat", id=rest, name="")
    team, channel, membership = rest.split("|")
    return TeamsConversation(
        kind="channel", id=channel, name="", team_id=team, private=membership == "private"
    )


class TeamsNotifier:
    """Escalation rooms in one Microsoft 365 tenant."""

    channel = CHANNEL
    title = "Microsoft Teams"
    keeps_rooms = True

    def __init__(
        self,
        settings: Settings,
        connector: TeamsConnector | None = None,
        *,
        state_dir: Path | None = None,
    ) -> None:
        self.settings = settings
        self._connector = connector
        self._state_dir = state_dir

    @property
    def connector(self) -> TeamsConnector:
        """The Graph client, made on first use."""
        if self._connector is None:
            # Imported here: the registry imports every channel module at start-up.
            from connectors.retry import RetryPolicy
            from connectors.teams import (
                ClientCredentialsTokens,
                SignedInUserTokens,
                TeamsConnector,
            )

            s = self.settings
            secret = s.client_secret
            assert secret is not None  # Settings refuses a table without one
            cache = s.cache_path(self._state_dir)
            self._connector = TeamsConnector(
                app_token=ClientCredentialsTokens(
                    s.tenant_id,
                    s.client_id,
                    secret.get_secret_value(),
                    authority_host=s.login_url,
                    timeout=s.timeout_seconds,
                ),
                user_token=SignedInUserTokens(
                    s.tenant_id,
                    s.client_id,
                    cache,
                    username=s.username,
                    authority_host=s.login_url,
                    timeout=s.timeout_seconds,
                ),
                base_url=s.graph_url,
                timeout=s.timeout_seconds,
                retry=RetryPolicy(attempts=s.attempts, defer_after=s.wait_at_most_seconds),
            )
        return self._connector

    # -- composing

    def compose(self, notice: Notice) -> list[Draft]:
        """The rows of a stakeholder notice; nothing for other audiences."""
        context = rooms.chat_context(notice)
        if context is None:
            return []
        from connectors.teams import teams_channel_name

        name = teams_channel_name(context.room.display_name())
        return rooms.room_drafts(notice, name=name, text=context.text, html=as_html(context.text))

    # -- sending

    def send(self, item: Outgoing) -> Delivered:
        """Make or join the room, add people, post or archive: once per row."""
        if item.kind == RESOURCE:
            return self._room(item)
        conversation = conversation_of(item.destination[0])
        action = item.extra.get("action")
        if action == "invite":
            found = self.connector.add_members(conversation, list(item.extra.get("members") or ()))
            return Delivered(
                item.destination[0],
                {
                    "invited": list(found.added),
                    "already_members": list(found.already_members),
                    "not_in_chat": list(found.not_found),
                },
            )
        if action == "archive":
            archived = self.connector.archive(conversation)
            return Delivered(item.destination[0], {"archived_now": archived})
        posted = self.connector.post(
            conversation, item.html or as_html(item.text), key=item.key, lookup=False
        )
        return Delivered(posted.id, {"url": posted.web_url} if posted.web_url else {})

    def _room(self, item: Outgoing) -> Delivered:
        from connectors.errors import NotFound

        extra = item.extra
        name = item.destination[0]
        connector = self.connector
        team = self.settings.team_id
        join = extra.get("join")
        if join:
            if team is None:
                raise NotFound(
                    "teams: join names a channel, and no team_id is configured", system=CHANNEL
                )
            found = connector.find_channel(team, name)
            if found is None:
                raise NotFound(
                    f"teams: the channel {name!r} to join does not exist", system=CHANNEL
                )
            return self._made(found)
        if team is None:
            members = [str(m) for m in extra.get("members") or ()]
            ensured, _ = connector.ensure_chat(name, members)
            return self._made(ensured.conversation)
        description = "\n".join(p for p in (item.text, str(extra.get("purpose") or "")) if p)
        private = bool(extra.get("private"))
        made = connector.ensure_channel(
            team,
            name,
            marker=str(extra.get("marker") or ""),
            description=description,
            private=private,
            owner_email=self.settings.username if private else None,
        )
        return self._made(made.conversation)

    def _made(self, conversation: TeamsConversation) -> Delivered:
        details = {"name": conversation.name}
        if conversation.web_url:
            details["url"] = conversation.web_url
        return Delivered(conversation_ref(conversation), details)

    def was_sent(self, item: Outgoing) -> Delivered | Literal[False] | None:
        """After a crash: a message is looked up by its key line; the rest is safe to do again
        (the room is found by name and marker, adding members or archiving twice changes
        nothing)."""
        if item.kind == RESOURCE or item.extra.get("action") in ("invite", "archive"):
            return False
        found = self.connector.find_message(conversation_of(item.destination[0]), item.key)
        if found is None:
            return False
        return Delivered(found.id, {"url": found.web_url} if found.web_url else {})


def build(settings: Any) -> TeamsNotifier | None:
    """The Teams notifier of `[notify.teams]`; None without that table."""
    config = (getattr(settings, "notify_settings", None) or {}).get(CHANNEL)
    if not isinstance(config, Settings):
        return None
    state = getattr(getattr(settings, "state", None), "dir", None)
    return TeamsNotifier(config, state_dir=Path(state) if state is not None else None)
