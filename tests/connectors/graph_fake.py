"""A strict Microsoft Graph double for the Teams connector, built on `responses`.

It answers only the requests Microsoft documents for the operations the connector uses, with
the documented bodies (tests/fixtures/vendor/teams, see its README) as templates, and checks
each request the way the documentation states it: bearer token, JSON content type, the
request body's properties, `aadUserConversationMember` members bound to `users('<id>')`,
channel name rules, `$top` at most 50 for messages, which token kind each operation takes
(application tokens cannot create chats or post messages). Any other request fails the test.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import responses
from requests import PreparedRequest

GRAPH = "https://graph.microsoft.com/v1.0"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "vendor" / "teams"
APP_TOKEN = "graph-app-token"
USER_TOKEN = "graph-user-token"
MEMBER_TYPE = "#microsoft.graph.aadUserConversationMember"
_BIND = re.compile(r"^" + re.escape(GRAPH) + r"/users(?:\('([^']+)'\)|/([^/?]+))$")
_FORBIDDEN = re.compile(r"[~#%&*{}+/\\:<>?|'\",]")

Answer = tuple[int, dict[str, str], str]


def fixture(name: str) -> dict[str, Any]:
    """A documented body from the fixtures folder."""
    return dict(json.loads((FIXTURES / name).read_text()))


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Answer:
    """Graph's error envelope (learn.microsoft.com/graph/errors)."""
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {"date": "2026-01-01T00:00:00", "request-id": "fake-request"},
        }
    }
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(body)


def ok(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Answer:
    text = "" if body is None else json.dumps(body)
    kind = {"Content-Type": "application/json"} if body is not None else {}
    return status, {**kind, **(headers or {})}, text


@dataclass
class Channel:
    id: str
    name: str
    description: str
    membership: str
    members: list[str] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    archived: bool = False


@dataclass
class Chat:
    id: str
    topic: str
    members: list[str]
    messages: list[dict[str, Any]] = field(default_factory=list)


class GraphFake:
    """Users, one or more teams with channels, group chats; `requests` lists what was asked."""

    def __init__(self, mock: responses.RequestsMock, *, signed_in: str = "svc@example.com"):
        self.users: dict[str, dict[str, Any]] = {}
        self.team_members: dict[str, list[str]] = {}
        self.channels: dict[str, dict[str, Channel]] = {}
        self.chats: dict[str, Chat] = {}
        self.requests: list[tuple[str, str, str]] = []
        self.throttle_next: list[int] = []
        self._ids = itertools.count(1)
        self.signed_in = self.add_user("Service Account", signed_in)
        for method in ("GET", "POST", "PATCH", "PUT", "DELETE"):
            mock.add_callback(method, re.compile(re.escape(GRAPH) + r"/.*"), self._route)

    # -- seeding ---------------------------------------------------------------------------

    def add_user(self, name: str, mail: str, upn: str | None = None) -> str:
        template = fixture("user-get.response.200.json")
        user_id = f"{next(self._ids):08d}-0000-4000-8000-000000000000"
        template.update(
            id=user_id,
            displayName=name,
            mail=mail,
            userPrincipalName=upn or mail,
            givenName=name.split()[0],
            surname=name.split()[-1],
        )
        self.users[user_id] = template
        return user_id

    def add_team(self, team_id: str, members: Sequence[str] = ()) -> None:
        self.team_members[team_id] = list(members)
        self.channels[team_id] = {}

    def throttle(self, times: int, retry_after: int = 1) -> None:
        """The next `times` requests are answered 429 with Retry-After."""
        self.throttle_next += [retry_after] * times

    # -- routing ---------------------------------------------------------------------------

    def _route(self, request: PreparedRequest) -> Answer:
        parts = urlsplit(str(request.url))
        path = unquote(parts.path[len(urlsplit(GRAPH).path) :])
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        method = str(request.method)
        self.requests.append((method, path, parts.query))
        token = str(request.headers.get("Authorization", "")).removeprefix("Bearer ")
        if token not in (APP_TOKEN, USER_TOKEN):
            return error(401, "InvalidAuthenticationToken", "Access token is empty or invalid.")
        if self.throttle_next:
            wait = self.throttle_next.pop(0)
            status, headers, _ = ok(429, {}, {"Retry-After": str(wait)})
            return status, headers, json.dumps(fixture("throttled.response.429.json"))
        body: Any = None
        if request.body:
            if not str(request.headers.get("Content-Type", "")).startswith("application/json"):
                raise AssertionError(f"{method} {path} without Content-Type: application/json")
            body = json.loads(request.body)
        for pattern, verb, handler in self._table():
            found = re.fullmatch(pattern, path)
            if found and verb == method:
                return handler(token, body, query, *found.groups())
        raise AssertionError(f"unexpected Graph request: {method} {path}?{parts.query}")

    def _table(self) -> list[tuple[str, str, Callable[..., Answer]]]:
        return [
            (r"/users/([^/]+)", "GET", self._get_user),
            (r"/users", "GET", self._filter_users),
            (r"/me", "GET", self._me),
            (r"/teams/([^/]+)/channels", "GET", self._list_channels),
            (r"/teams/([^/]+)/channels", "POST", self._create_channel),
            (r"/teams/([^/]+)/channels/([^/]+)", "GET", self._get_channel),
            (r"/teams/([^/]+)/channels/([^/]+)/archive", "POST", self._archive),
            (r"/teams/([^/]+)/members", "GET", self._list_team_members),
            (r"/teams/([^/]+)/members", "POST", self._add_team_member),
            (r"/teams/([^/]+)/channels/([^/]+)/members", "GET", self._list_channel_members),
            (r"/teams/([^/]+)/channels/([^/]+)/members", "POST", self._add_channel_member),
            (r"/teams/([^/]+)/channels/([^/]+)/messages", "GET", self._list_channel_messages),
            (r"/teams/([^/]+)/channels/([^/]+)/messages", "POST", self._post_channel_message),
            (r"/me/chats", "GET", self._list_chats),
            (r"/chats", "POST", self._create_chat),
            (r"/chats/([^/]+)/members", "GET", self._list_chat_members),
            (r"/chats/([^/]+)/members", "POST", self._add_chat_member),
            (r"/chats/([^/]+)/messages", "GET", self._list_chat_messages),
            (r"/chats/([^/]+)/messages", "POST", self._post_chat_message),
        ]

    # -- users -----------------------------------------------------------------------------

    def _user_by(self, key: str) -> dict[str, Any] | None:
        key = key.lower()
        return next(
            (
                u
                for u in self.users.values()
                if key in (u["id"].lower(), u["userPrincipalName"].lower())
            ),
            None,
        )

    def _selected(self, user: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
        fields = query.get("$select")
        return {k: user[k] for k in fields.split(",")} if fields else dict(user)

    def _get_user(self, token: str, body: Any, query: dict[str, str], key: str) -> Answer:
        user = self._user_by(key)
        if user is None:
            return error(
                404,
                "Request_ResourceNotFound",
                f"Resource '{key}' does not exist or one of its queried reference-property "
                "objects are not present.",
            )
        return ok(200, self._selected(user, query))

    def _filter_users(self, token: str, body: Any, query: dict[str, str]) -> Answer:
        found = re.fullmatch(r"mail eq '((?:[^']|'')*)'", query.get("$filter", ""))
        if found is None:
            raise AssertionError(f"unsupported user filter {query}")
        mail = found.group(1).replace("''", "'").lower()
        rows = [self._selected(u, query) for u in self.users.values() if u["mail"].lower() == mail]
        return ok(200, {"value": rows})

    def _me(self, token: str, body: Any, query: dict[str, str]) -> Answer:
        if token != USER_TOKEN:
            return error(
                400, "BadRequest", "/me request is only valid with delegated authentication flow."
            )
        return ok(200, self.users[self.signed_in])

    # -- members ---------------------------------------------------------------------------

    def _bound_user(self, member: Any) -> str:
        if not isinstance(member, dict) or member.get("@odata.type") != MEMBER_TYPE:
            raise AssertionError(f"member must be an aadUserConversationMember: {member}")
        found = _BIND.match(str(member.get("user@odata.bind", "")))
        if found is None:
            raise AssertionError(f"user@odata.bind must name a Graph user: {member}")
        roles = member.get("roles")
        if not isinstance(roles, list) or not set(roles) <= {"owner", "guest"}:
            raise AssertionError(f'roles must be [] or ["owner"]: {member}')
        user = self._user_by(found.group(1) or found.group(2))
        if user is None:
            raise AssertionError(f"bound user does not exist: {member}")
        return str(user["id"])

    def _member_view(self, user_id: str) -> dict[str, Any]:
        view = fixture("team-post-members.response.201.json")
        user = self.users[user_id]
        view.update(
            id=f"member-{user_id}",
            roles=[],
            userId=user_id,
            displayName=user["displayName"],
            email=user["mail"],
        )
        return view

    def _members_page(self, ids: list[str]) -> Answer:
        return ok(200, {"value": [self._member_view(i) for i in ids]})

    def _list_team_members(self, token: str, body: Any, query: dict[str, str], team: str) -> Answer:
        return self._members_page(self.team_members[team])

    def _add_team_member(self, token: str, body: Any, query: dict[str, str], team: str) -> Answer:
        user_id = self._bound_user(body)
        if user_id in self.team_members[team]:
            return error(409, "Conflict", "User is already a member of the team.")
        self.team_members[team].append(user_id)
        return ok(201, self._member_view(user_id))

    def _channel(self, team: str, channel: str) -> Channel:
        return self.channels[team][channel]

    def _list_channel_members(
        self, token: str, body: Any, query: dict[str, str], team: str, channel: str
    ) -> Answer:
        return self._members_page(self._channel(team, channel).members)

    def _add_channel_member(
        self, token: str, body: Any, query: dict[str, str], team: str, channel: str
    ) -> Answer:
        found = self._channel(team, channel)
        if found.membership != "private":
            return error(400, "BadRequest", "Adding members is allowed only for private channels.")
        user_id = self._bound_user(body)
        found.members.append(user_id)
        view = fixture("channel-post-members.response.201.json")
        view.update(userId=user_id, displayName=self.users[user_id]["displayName"])
        return ok(201, view)

    # -- channels --------------------------------------------------------------------------

    def _render_channel(self, team: str, channel: Channel) -> dict[str, Any]:
        view = fixture("channel-post.response.201.json")
        view.update(
            id=channel.id,
            displayName=channel.name,
            description=channel.description,
            membershipType=channel.membership,
            webUrl=f"https://teams.microsoft.com/l/channel/{channel.id}/x?groupId={team}",
        )
        view["@odata.context"] = f"{GRAPH}/$metadata#teams('{team}')/channels/$entity"
        return view

    def _list_channels(self, token: str, body: Any, query: dict[str, str], team: str) -> Answer:
        if token != APP_TOKEN:
            raise AssertionError("the connector lists channels with the application's token")
        rows = list(self.channels[team].values())
        wanted = query.get("$filter")
        if wanted is not None:
            found = re.fullmatch(r"displayName eq '((?:[^']|'')*)'", wanted)
            if found is None:
                raise AssertionError(f"unsupported channel filter {wanted}")
            name = found.group(1).replace("''", "'")
            rows = [c for c in rows if c.name == name]
        return ok(200, {"value": [self._render_channel(team, c) for c in rows]})

    def _create_channel(self, token: str, body: Any, query: dict[str, str], team: str) -> Answer:
        allowed = {"displayName", "description", "membershipType", "members", "@odata.type"}
        if not isinstance(body, dict) or set(body) - allowed:
            raise AssertionError(f"channel body has undocumented properties: {body}")
        name = body.get("displayName")
        if not isinstance(name, str) or not name or len(name) > 50 or _FORBIDDEN.search(name):
            return error(400, "BadRequest", f"Invalid channel name: {name!r}")
        if name.startswith(("_", ".")) or name.endswith("."):
            return error(400, "BadRequest", f"Invalid channel name: {name!r}")
        membership = body.get("membershipType", "standard")
        if membership not in ("standard", "private", "shared"):
            raise AssertionError(f"membershipType {membership!r}")
        members = [self._bound_user(m) for m in body.get("members", [])]
        if membership == "private" and token == APP_TOKEN and not members:
            return error(
                400, "BadRequest", "A private channel created by an application needs an owner."
            )
        if any(c.name.lower() == name.lower() for c in self.channels[team].values()):
            return error(400, "BadRequest", "Channel name already existed, please use other name.")
        channel_id = f"19:{next(self._ids):032x}@thread.tacv2"
        channel = Channel(channel_id, name, str(body.get("description", "")), membership, members)
        self.channels[team][channel_id] = channel
        return ok(201, self._render_channel(team, channel))

    def _get_channel(
        self, token: str, body: Any, query: dict[str, str], team: str, cid: str
    ) -> Answer:
        channel = self._channel(team, cid)
        view = self._render_channel(team, channel)
        view["isArchived"] = channel.archived
        if "$select" in query:
            view = {k: view[k] for k in query["$select"].split(",")}
        return ok(200, view)

    def _archive(self, token: str, body: Any, query: dict[str, str], team: str, cid: str) -> Answer:
        channel = self._channel(team, cid)
        if channel.archived:
            return error(400, "BadRequest", "Channel is already archived.")
        channel.archived = True
        return ok(202, None, {"Location": f"/teams/{team}/operations/op-{cid}"})

    # -- messages --------------------------------------------------------------------------

    def _message(
        self, body: Any, token: str, extra: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, Answer | None]:
        if token != USER_TOKEN:
            return None, error(
                403, "Forbidden", "Application permissions are only supported for migration."
            )
        allowed = {"body", "subject", "importance", "mentions", "attachments"}
        if (
            not isinstance(body, dict)
            or set(body) - allowed
            or "content" not in body.get("body", {})
        ):
            raise AssertionError(f"chatMessage body not as documented: {body}")
        if body["body"].get("contentType", "text") not in ("text", "html"):
            raise AssertionError(f"contentType {body['body']}")
        message = fixture("channel-post-messages.response.201.json")
        message_id = str(1616990032035 + next(self._ids))
        user = self.users[self.signed_in]
        message.update(id=message_id, etag=message_id, body=dict(body["body"]), **extra)
        message["from"]["user"].update(id=user["id"], displayName=user["displayName"])
        message["webUrl"] = f"https://teams.microsoft.com/l/message/x/{message_id}"
        return message, None

    def _page(self, messages: list[dict[str, Any]], query: dict[str, str], base: str) -> Answer:
        top = int(query.get("$top", "20"))
        if top > 50:
            return error(400, "BadRequest", "$top must be at most 50.")
        start = int(query.get("$skiptoken", "0"))
        newest_first = list(reversed(messages))
        page = newest_first[start : start + top]
        data: dict[str, Any] = {"value": page}
        if start + top < len(newest_first):
            data["@odata.nextLink"] = f"{base}?$top={top}&$skiptoken={start + top}"
        return ok(200, data)

    def _list_channel_messages(
        self, token: str, body: Any, query: dict[str, str], team: str, cid: str
    ) -> Answer:
        base = f"{GRAPH}/teams/{team}/channels/{cid}/messages"
        return self._page(self._channel(team, cid).messages, query, base)

    def _post_channel_message(
        self, token: str, body: Any, query: dict[str, str], team: str, cid: str
    ) -> Answer:
        channel = self._channel(team, cid)
        if channel.archived:
            return error(403, "Forbidden", "The channel is archived.")
        message, refused = self._message(
            body, token, {"channelIdentity": {"teamId": team, "channelId": cid}}
        )
        if refused is not None:
            return refused
        assert message is not None
        channel.messages.append(message)
        return ok(201, message)

    # -- chats -----------------------------------------------------------------------------

    def _render_chat(self, chat: Chat) -> dict[str, Any]:
        view = fixture("chat-post.group.response.201.json")
        view.update(id=chat.id, topic=chat.topic)
        return view

    def _list_chats(self, token: str, body: Any, query: dict[str, str]) -> Answer:
        if token != USER_TOKEN:
            return error(403, "Forbidden", "Listing chats needs delegated permissions.")
        rows = [self._render_chat(c) for c in self.chats.values() if self.signed_in in c.members]
        return ok(200, {"value": rows})

    def _create_chat(self, token: str, body: Any, query: dict[str, str]) -> Answer:
        if token != USER_TOKEN:
            return error(403, "Forbidden", "Creating a chat needs delegated permissions.")
        if not isinstance(body, dict) or set(body) - {"chatType", "topic", "members"}:
            raise AssertionError(f"chat body not as documented: {body}")
        if body.get("chatType") != "group":
            raise AssertionError(f"the connector creates group chats: {body}")
        members = [self._bound_user(m) for m in body.get("members", [])]
        if self.signed_in not in members:
            return error(400, "BadRequest", "The creator must be among the members.")
        chat = Chat(f"19:{next(self._ids):032x}@thread.v2", str(body.get("topic") or ""), members)
        self.chats[chat.id] = chat
        return ok(201, self._render_chat(chat))

    def _list_chat_members(self, token: str, body: Any, query: dict[str, str], cid: str) -> Answer:
        return self._members_page(self.chats[cid].members)

    def _add_chat_member(self, token: str, body: Any, query: dict[str, str], cid: str) -> Answer:
        user_id = self._bound_user(body)
        self.chats[cid].members.append(user_id)
        return ok(201, None, {"Location": f"/chats/{cid}/members/member-{user_id}"})

    def _list_chat_messages(self, token: str, body: Any, query: dict[str, str], cid: str) -> Answer:
        return self._page(self.chats[cid].messages, query, f"{GRAPH}/chats/{cid}/messages")

    def _post_chat_message(self, token: str, body: Any, query: dict[str, str], cid: str) -> Answer:
        message, refused = self._message(body, token, {"chatId": cid, "channelIdentity": None})
        if refused is not None:
            return refused
        assert message is not None
        self.chats[cid].messages.append(message)
        return ok(201, message)
