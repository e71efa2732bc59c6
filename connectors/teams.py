"""Microsoft Teams through Microsoft Graph v1.0: a channel (or group chat) per escalation, its
members, its messages.

Tokens (msal) come in two kinds, because Graph takes each call with a different one:
- the application's own (client credentials): create and find channels in a configured team,
  add members to a team, a private channel or a chat, look people up, archive a channel;
- a signed-in user's (delegated; a service account whose token msal keeps in a cache): post
  messages (Graph takes application tokens for posting only to import history) and create
  group chats (application tokens are not supported there). Without one, `post` and
  `ensure_chat` fail with AuthFailed saying so.

Idempotency
-----------
- A channel's description carries the caller's marker from the moment it is created (it is part
  of the POST), so a retry after a lost answer, or a second worker, finds it by name and marker
  instead of creating another; a same-named channel without the marker pushes the name on:
  "Name (2)", "Name (3)", ...
- A group chat is found by its exact topic among the signed-in user's chats.
- Graph messages carry no application metadata, so the key is written as the message's last
  line, `[escalation-sync:<key>]`, and found there in the conversation's recent messages before
  posting (and before any resend).

Throttling: a 429 (or 503) closes the connector's gate for `Retry-After` seconds; calls wait it
out (or, past the retry policy's `defer_after`, fail at once with `RateLimited.retry_after`).
"""

from __future__ import annotations

import html
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import requests

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

SYSTEM = "teams"
GRAPH_URL = "https://graph.microsoft.com/v1.0"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
LOGIN_URL = "https://login.microsoftonline.com"
# What the signed-in service account is asked to allow.
DELEGATED_SCOPES = (
    "https://graph.microsoft.com/ChannelMessage.Send",
    "https://graph.microsoft.com/ChannelMessage.Read.All",
    "https://graph.microsoft.com/Chat.Create",
    "https://graph.microsoft.com/Chat.ReadWrite",
)
CHANNEL_NAME_MAX = 50
DESCRIPTION_MAX = 1024
MESSAGE_PAGE = 50
MEMBER_TYPE = "#microsoft.graph.aadUserConversationMember"
# Characters a channel name cannot contain (the channel resource's displayName).
_FORBIDDEN = re.compile(r"[~#%&*{}+/\\:<>?|'\",]")
_KEY_LINE = "[escalation-sync:{key}]"

TokenProvider = Callable[[], str]


# ------------------------------------------------------------------------------- tokens


def _token_result(result: Mapping[str, Any], what: str) -> str:
    if "access_token" in result:
        return str(result["access_token"])
    error = str(result.get("error", "unknown_error"))
    description = str(result.get("error_description", "")).splitlines()[0][:200]
    if error in ("temporarily_unavailable", "server_error"):
        raise ServerUnavailable(f"{what}: token endpoint unavailable: {error}", system=SYSTEM)
    raise AuthFailed(f"{what}: token refused: {error}: {description}", system=SYSTEM)


class ClientCredentialsTokens:
    """The application's token (client credentials), cached and renewed by msal."""

    def __init__(
        self,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        *,
        authority_host: str = LOGIN_URL,
        session: requests.Session | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._args = (tenant_id, client_id, client_secret, authority_host.rstrip("/"))
        self._session = session or requests.Session()
        self._timeout = timeout
        self._app: Any = None
        self._lock = threading.Lock()

    def __call__(self) -> str:
        import msal  # imported on first use: msal is slow to import and most runs never call it

        tenant, client_id, secret, host = self._args
        try:
            with self._lock:
                if self._app is None:
                    self._app = msal.ConfidentialClientApplication(
                        client_id,
                        client_credential=secret,
                        authority=f"{host}/{tenant}",
                        http_client=self._session,
                        timeout=self._timeout,
                        instance_discovery=False,
                    )
                result = self._app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
        except requests.RequestException as exc:
            raise TransportFailed(f"teams app token: {type(exc).__name__}", system=SYSTEM) from None
        except ValueError as exc:
            raise AuthFailed(f"teams app token: authority refused: {exc}", system=SYSTEM) from None
        return _token_result(result, "teams app token")


class SignedInUserTokens:
    """A signed-in account's token from an msal token cache file (renewed silently).

    The cache is written by an interactive or device-code sign-in done once by an operator; this
    class only reads it, and writes it back when msal renewed the refresh token.
    """

    def __init__(
        self,
        tenant_id: str,
        client_id: str,
        cache_path: Path,
        *,
        username: str | None = None,
        scopes: Iterable[str] = DELEGATED_SCOPES,
        authority_host: str = LOGIN_URL,
        session: requests.Session | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._tenant = tenant_id
        self._client_id = client_id
        self._cache_path = cache_path
        self._username = username
        self._scopes = list(scopes)
        self._host = authority_host.rstrip("/")
        self._session = session or requests.Session()
        self._timeout = timeout
        self._app: Any = None
        self._cache: Any = None
        self._lock = threading.Lock()

    def __call__(self) -> str:
        import msal  # imported on first use, as above

        with self._lock:
            if self._app is None:
                self._cache = msal.SerializableTokenCache()
                if self._cache_path.exists():
                    self._cache.deserialize(self._cache_path.read_text())
                self._app = msal.PublicClientApplication(
                    self._client_id,
                    authority=f"{self._host}/{self._tenant}",
                    token_cache=self._cache,
                    http_client=self._session,
                    timeout=self._timeout,
                    instance_discovery=False,
                )
            accounts = self._app.get_accounts(username=self._username)
            if not accounts:
                raise AuthFailed(
                    "teams user token: no signed-in account in the token cache "
                    f"{self._cache_path} (sign the service account in first)",
                    system=SYSTEM,
                )
            try:
                result = self._app.acquire_token_silent(self._scopes, account=accounts[0])
            except requests.RequestException as exc:
                raise TransportFailed(
                    f"teams user token: {type(exc).__name__}", system=SYSTEM
                ) from None
            if self._cache.has_state_changed:
                self._cache_path.write_text(self._cache.serialize())
        if not result:
            raise AuthFailed(
                "teams user token: the signed-in account must sign in again", system=SYSTEM
            )
        return _token_result(result, "teams user token")


def sign_in_with_device_code(
    tenant_id: str,
    client_id: str,
    cache_path: Path,
    *,
    say: Callable[[str], None],
    username: str | None = None,
    scopes: Iterable[str] = DELEGATED_SCOPES,
    authority_host: str = LOGIN_URL,
    session: requests.Session | None = None,
    timeout: float = 30.0,
) -> str:
    """Sign the service account in with the device-code flow and write msal's token cache to
    `cache_path` (readable by its owner only), where `SignedInUserTokens` reads it; returns the
    account's user name.

    `say` shows the sign-in instruction (the page to open and the code to enter); this blocks
    until the person signs in or the code expires. Signing in as someone other than `username`
    is refused and writes nothing.
    """
    import msal  # imported on use, as above

    cache = msal.SerializableTokenCache()
    if cache_path.exists():
        cache.deserialize(cache_path.read_text())
    try:
        app = msal.PublicClientApplication(
            client_id,
            authority=f"{authority_host.rstrip('/')}/{tenant_id}",
            token_cache=cache,
            http_client=session or requests.Session(),
            timeout=timeout,
            instance_discovery=False,
        )
        flow = app.initiate_device_flow(scopes=list(scopes))
        if "user_code" not in flow:
            _token_result(flow, "teams sign-in")
        say(str(flow.get("message") or f"Enter the code {flow['user_code']}"))
        result = app.acquire_token_by_device_flow(flow)
    except requests.RequestException as exc:
        raise TransportFailed(f"teams sign-in: {type(exc).__name__}", system=SYSTEM) from None
    except ValueError as exc:
        raise AuthFailed(f"teams sign-in: authority refused: {exc}", system=SYSTEM) from None
    _token_result(result, "teams sign-in")
    claims = result.get("id_token_claims") or {}
    who = str(claims.get("preferred_username") or claims.get("upn") or "")
    if username and who.casefold() != username.casefold():
        raise AuthFailed(
            f"teams sign-in: signed in as {who or 'an unnamed account'}, not {username}; "
            "sign in again as the service account",
            system=SYSTEM,
        )
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    partial_file = cache_path.with_name(cache_path.name + ".partial")
    # The cache holds a refresh token: only its owner may read it, from its first byte.
    descriptor = os.open(partial_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(cache.serialize())
    partial_file.replace(cache_path)
    return who


# ------------------------------------------------------------------------------- names


def teams_channel_name(text: str) -> str:
    """A channel display name Teams accepts: no `~ # % & * { } + / \\ : < > ? | ' " ,`, no
    leading `_` or `.`, no trailing `.`, at most 50 characters; "Escalation" if nothing is left."""
    name = " ".join(_FORBIDDEN.sub(" ", text).split())
    name = name.lstrip("_.").strip()
    if len(name) > CHANNEL_NAME_MAX:
        cut = name[:CHANNEL_NAME_MAX]
        at = cut.rfind(" ")
        name = cut[:at] if at >= CHANNEL_NAME_MAX // 2 else cut
    name = name.rstrip(". ")
    return name or "Escalation"


def _numbered(name: str, n: int) -> str:
    tail = f" ({n})"
    return name[: CHANNEL_NAME_MAX - len(tail)].rstrip(". ") + tail


def _with_marker(text: str, marker: str) -> str:
    if marker in text:
        return text[:DESCRIPTION_MAX]
    room = DESCRIPTION_MAX - len(marker) - 1
    body = text.strip()[: max(room, 0)].rstrip()
    return f"{body}\n{marker}" if body else marker


def key_line(key: str) -> str:
    """The last line of a message posted under `key`."""
    return _KEY_LINE.format(key=html.escape(key, quote=False))


# ------------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class TeamsConversation:
    """A channel of a team or a group chat."""

    kind: Literal["channel", "chat"]
    id: str
    name: str
    team_id: str | None = None
    web_url: str | None = None
    private: bool = False
    description: str = ""


@dataclass(frozen=True, slots=True)
class EnsuredConversation:
    """The escalation's conversation: `created` when this call made it."""

    conversation: TeamsConversation
    created: bool


@dataclass(frozen=True, slots=True)
class TeamsUser:
    """A directory user."""

    id: str
    display_name: str
    mail: str
    user_principal_name: str


@dataclass(frozen=True, slots=True)
class MembersResult:
    """Addresses added now, already members, and not found in the directory."""

    added: tuple[str, ...] = ()
    already_members: tuple[str, ...] = ()
    not_found: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PostedTeamsMessage:
    """A message carrying `key`: `created` when this call posted it."""

    id: str
    key: str
    created: bool
    web_url: str | None = None


# ------------------------------------------------------------------------------- errors


def _graph_error(response: requests.Response) -> tuple[str, str]:
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        return "", ""
    if not isinstance(error, dict):
        return "", ""
    return str(error.get("code") or ""), str(error.get("message") or "")[:300]


def error_for(what: str, response: requests.Response) -> ConnectorError:
    """The typed error for one failed Graph answer (from its status and error body only)."""
    status = response.status_code
    code, message = _graph_error(response)
    detail = (
        f"{what}: HTTP {status}"
        + (f" {code}" if code else "")
        + (f": {message}" if message else "")
    )
    kw: dict[str, Any] = {"system": SYSTEM, "status": status, "messages": (code, message)}
    if status == 429:
        return RateLimited(detail, retry_after=retry_after_seconds(response.headers), **kw)
    if status >= 500:
        return ServerUnavailable(detail, retry_after=retry_after_seconds(response.headers), **kw)
    if status in (401, 403):
        return AuthFailed(detail, **kw)
    if status == 404:
        return NotFound(detail, **kw)
    return InvalidRequest(detail, **kw)


def _name_taken(error: ConnectorError) -> bool:
    text = " ".join(error.messages).lower()
    return error.status in (400, 409) and ("already exist" in text or "nameexists" in text)


# ------------------------------------------------------------------------------- connector


class TeamsConnector:
    """Teams in one tenant through Graph; see the module docstring for which token does what."""

    def __init__(
        self,
        *,
        app_token: TokenProvider,
        user_token: TokenProvider | None = None,
        base_url: str = GRAPH_URL,
        session: requests.Session | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._app_token = app_token
        self._user_token = user_token
        self._session = session or requests.Session()
        self._retry = retry or RetryPolicy()
        self._timeout = timeout
        self._clock = clock
        self._gate_lock = threading.Lock()
        self._closed_until = 0.0
        self._me: TeamsUser | None = None

    # -- plumbing ---------------------------------------------------------------------------

    def _token(self, who: Literal["app", "user"], what: str) -> str:
        if who == "app":
            return self._app_token()
        if self._user_token is None:
            raise AuthFailed(
                f"{what}: needs a signed-in user's token (Graph does not take the "
                "application's for this)",
                system=SYSTEM,
            )
        return self._user_token()

    def _once(
        self,
        method: str,
        url: str,
        *,
        who: Literal["app", "user"],
        body: Any = None,
        params: Mapping[str, str] | None = None,
        what: str,
    ) -> requests.Response:
        with self._gate_lock:
            waiting = self._closed_until - self._clock()
        if waiting > 0:
            if waiting > self._retry.defer_after:
                raise RateLimited(f"{what}: throttled", system=SYSTEM, retry_after=waiting)
            self._retry.sleep(waiting)
        headers = {"Authorization": f"Bearer {self._token(who, what)}"}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body)
        failure: ConnectorError
        try:
            response = self._session.request(
                method,
                url,
                params=params,
                data=data,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            failure = TransportFailed(f"{what}: {type(exc).__name__}", system=SYSTEM)
        else:
            if response.status_code < 400:
                return response
            failure = error_for(what, response)
        if isinstance(failure, RateLimited | ServerUnavailable) and failure.retry_after:
            with self._gate_lock:
                until = self._clock() + failure.retry_after
                self._closed_until = max(self._closed_until, until)
        raise failure

    def _call(
        self,
        method: str,
        path: str,
        *,
        who: Literal["app", "user"] = "app",
        body: Any = None,
        params: Mapping[str, str] | None = None,
        what: str = "",
    ) -> requests.Response:
        url = path if path.startswith("http") else f"{self.base_url}{path}"
        label = what or f"teams {method} {path.split('?')[0]}"
        return call_with_retry(
            self._retry,
            lambda: self._once(method, url, who=who, body=body, params=params, what=label),
        )

    def _pages(
        self, path: str, *, who: Literal["app", "user"], params: Mapping[str, str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every item of a collection, following @odata.nextLink."""
        url: str | None = path
        query = params
        while url:
            data = self._call("GET", url, who=who, params=query).json()
            yield from data.get("value") or []
            url = data.get("@odata.nextLink")
            query = None

    def _bind(self, user_id: str) -> str:
        return f"{self.base_url}/users('{user_id}')"

    def _member(self, user_id: str, roles: list[str]) -> dict[str, Any]:
        return {"@odata.type": MEMBER_TYPE, "roles": roles, "user@odata.bind": self._bind(user_id)}

    # -- people -----------------------------------------------------------------------------

    def find_user(self, email: str) -> TeamsUser | None:
        """The directory user whose user principal name or mail is `email`, else None."""
        select = {"$select": "id,displayName,mail,userPrincipalName"}
        try:
            data = self._call("GET", f"/users/{quote(email, safe='@')}", params=select).json()
        except NotFound:
            literal = email.replace("'", "''")
            found = self._call(
                "GET", "/users", params={**select, "$filter": f"mail eq '{literal}'"}
            ).json()
            rows = found.get("value") or []
            if not rows:
                return None
            data = rows[0]
        return TeamsUser(
            id=str(data["id"]),
            display_name=str(data.get("displayName") or ""),
            mail=str(data.get("mail") or ""),
            user_principal_name=str(data.get("userPrincipalName") or ""),
        )

    def me(self) -> TeamsUser:
        """The signed-in account (GET /me with the user's token)."""
        if self._me is None:
            data = self._call("GET", "/me", who="user").json()
            self._me = TeamsUser(
                id=str(data["id"]),
                display_name=str(data.get("displayName") or ""),
                mail=str(data.get("mail") or ""),
                user_principal_name=str(data.get("userPrincipalName") or ""),
            )
        return self._me

    # -- channels ---------------------------------------------------------------------------

    def find_channel(self, team_id: str, name: str) -> TeamsConversation | None:
        """The team's channel with this display name, or None."""
        literal = name.replace("'", "''")
        for item in self._pages(
            f"/teams/{team_id}/channels",
            who="app",
            params={"$filter": f"displayName eq '{literal}'"},
        ):
            if item.get("displayName") == name:
                return channel_from_api(team_id, item)
        return None

    def ensure_channel(
        self,
        team_id: str,
        name: str,
        *,
        marker: str,
        description: str = "",
        private: bool = False,
        owner_email: str | None = None,
        max_suffix: int = 20,
    ) -> EnsuredConversation:
        """The escalation's channel in `team_id`, created once (see the module docstring).
        A private channel needs `owner_email` (Graph wants an owner when an application
        creates one)."""
        if not marker:
            raise ValueError("a marker is needed to recognise the channel later")
        base = teams_channel_name(name)
        wanted = _with_marker(description, marker)
        owner: TeamsUser | None = None
        if private:
            owner = self.find_user(owner_email or "") if owner_email else None
            if owner is None:
                raise InvalidRequest(
                    "teams: a private channel needs an owner who is in the directory",
                    system=SYSTEM,
                )
        for n in range(1, max_suffix + 1):
            candidate = base if n == 1 else _numbered(base, n)
            existing = self.find_channel(team_id, candidate)
            if existing is not None:
                if marker in existing.description:
                    return EnsuredConversation(existing, False)
                continue
            body: dict[str, Any] = {
                "displayName": candidate,
                "description": wanted,
                "membershipType": "private" if private else "standard",
            }
            if owner is not None:
                body["members"] = [self._member(owner.id, ["owner"])]
            try:
                made = self._call("POST", f"/teams/{team_id}/channels", body=body).json()
            except InvalidRequest as refused:
                if not _name_taken(refused):
                    raise
                # Made meanwhile, by another worker or by our own lost attempt.
                again = self.find_channel(team_id, candidate)
                if again is not None and marker in again.description:
                    return EnsuredConversation(again, False)
                continue
            made.setdefault("description", wanted)
            made.setdefault("membershipType", body["membershipType"])
            return EnsuredConversation(channel_from_api(team_id, made), True)
        raise InvalidRequest(
            f"teams: {base} and {max_suffix - 1} numbered names are taken", system=SYSTEM
        )

    def archive(self, conversation: TeamsConversation) -> bool:
        """Archive a channel: True when archived now, False when it already was. Group chats
        have no archive operation in Graph: False."""
        if conversation.kind != "channel" or conversation.team_id is None:
            return False
        path = f"/teams/{conversation.team_id}/channels/{conversation.id}"
        current = self._call("GET", path, params={"$select": "id,isArchived"}).json()
        if current.get("isArchived"):
            return False
        self._call("POST", f"{path}/archive")
        return True

    # -- chats ------------------------------------------------------------------------------

    def find_chat(self, topic: str) -> TeamsConversation | None:
        """The signed-in account's group chat with exactly this topic, or None."""
        for item in self._pages(
            "/me/chats", who="user", params={"$filter": "chatType eq 'group'", "$top": "50"}
        ):
            if item.get("chatType") == "group" and item.get("topic") == topic:
                return chat_from_api(item)
        return None

    def ensure_chat(
        self, topic: str, emails: Iterable[str]
    ) -> tuple[EnsuredConversation, MembersResult]:
        """A group chat with this topic (found again by it), the signed-in account and the
        people with these addresses in it; people not in the directory are listed."""
        existing = self.find_chat(topic)
        if existing is not None:
            return EnsuredConversation(existing, False), self.add_members(existing, emails)
        me = self.me()
        people, missing = self._resolve(emails)
        people.pop(me.id, None)
        members = [self._member(me.id, ["owner"])]
        members += [self._member(user_id, ["owner"]) for user_id in people]
        made = self._call(
            "POST",
            "/chats",
            who="user",
            body={"chatType": "group", "topic": topic, "members": members},
        ).json()
        return (
            EnsuredConversation(chat_from_api(made), True),
            MembersResult(tuple(people.values()), (), tuple(missing)),
        )

    # -- members ----------------------------------------------------------------------------

    def _resolve(self, emails: Iterable[str]) -> tuple[dict[str, str], list[str]]:
        found: dict[str, str] = {}
        missing: list[str] = []
        for email in dict.fromkeys(e.strip() for e in emails if e and e.strip()):
            user = self.find_user(email)
            if user is None:
                missing.append(email)
            elif user.id not in found:
                found[user.id] = email
        return found, missing

    def _members_path(self, conversation: TeamsConversation) -> str:
        if conversation.kind == "chat":
            return f"/chats/{conversation.id}/members"
        if conversation.private:
            return f"/teams/{conversation.team_id}/channels/{conversation.id}/members"
        # A standard channel has the team's members.
        return f"/teams/{conversation.team_id}/members"

    def add_members(self, conversation: TeamsConversation, emails: Iterable[str]) -> MembersResult:
        """Add people by address; addresses not in the directory are listed, not an error."""
        people, missing = self._resolve(emails)
        path = self._members_path(conversation)
        present = {str(m.get("userId")) for m in self._pages(path, who="app")}
        added: list[str] = []
        already: list[str] = []
        for user_id, email in people.items():
            if user_id in present:
                already.append(email)
                continue
            self._call("POST", path, body=self._member(user_id, []))
            added.append(email)
        return MembersResult(tuple(added), tuple(already), tuple(missing))

    # -- messages ---------------------------------------------------------------------------

    def _messages_path(self, conversation: TeamsConversation) -> str:
        if conversation.kind == "chat":
            return f"/chats/{conversation.id}/messages"
        return f"/teams/{conversation.team_id}/channels/{conversation.id}/messages"

    def post(
        self, conversation: TeamsConversation, content_html: str, *, key: str, lookup: bool = True
    ) -> PostedTeamsMessage:
        """Post once per `key` (HTML body, the key as its last line); a message already
        carrying the key is answered instead."""
        if not key:
            raise ValueError("a key is needed to post idempotently")
        body = {"body": {"contentType": "html", "content": f"{content_html}<p>{key_line(key)}</p>"}}
        path = self._messages_path(conversation)
        attempts = 0

        def attempt() -> PostedTeamsMessage:
            nonlocal attempts
            attempts += 1
            if lookup or attempts > 1:
                found = self._find_once(conversation, key)
                if found is not None:
                    return found
            url = f"{self.base_url}{path}"
            made = self._once("POST", url, who="user", body=body, what="teams post message")
            data = made.json()
            return PostedTeamsMessage(str(data["id"]), key, True, data.get("webUrl"))

        return call_with_retry(self._retry, attempt)

    def find_message(
        self, conversation: TeamsConversation, key: str, *, scan: int = 500
    ) -> PostedTeamsMessage | None:
        """The message posted under `key` among the conversation's newest `scan` messages."""
        return call_with_retry(self._retry, lambda: self._find_once(conversation, key, scan))

    def _find_once(
        self, conversation: TeamsConversation, key: str, scan: int = 500
    ) -> PostedTeamsMessage | None:
        line = key_line(key)
        who: Literal["app", "user"] = "user" if self._user_token is not None else "app"
        url: str | None = f"{self.base_url}{self._messages_path(conversation)}"
        params: Mapping[str, str] | None = {"$top": str(MESSAGE_PAGE)}
        seen = 0
        while url and seen < scan:
            page = self._once("GET", url, who=who, params=params, what="teams list messages").json()
            for message in page.get("value") or []:
                seen += 1
                content = str((message.get("body") or {}).get("content") or "")
                if line in content:
                    return PostedTeamsMessage(str(message["id"]), key, False, message.get("webUrl"))
            url = page.get("@odata.nextLink")
            params = None
        return None


def channel_from_api(team_id: str, item: Mapping[str, Any]) -> TeamsConversation:
    """A conversation from Graph's channel resource."""
    return TeamsConversation(
        kind="channel",
        id=str(item["id"]),
        name=str(item.get("displayName") or ""),
        team_id=team_id,
        web_url=item.get("webUrl"),
        private=item.get("membershipType") == "private",
        description=str(item.get("description") or ""),
    )


def chat_from_api(item: Mapping[str, Any]) -> TeamsConversation:
    """A conversation from Graph's chat resource."""
    return TeamsConversation(
        kind="chat",
        id=str(item["id"]),
        name=str(item.get("topic") or ""),
        web_url=item.get("webUrl"),
    )
