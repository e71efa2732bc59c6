"""The Teams connector against a strict Graph double built from Microsoft's documented request
and response bodies (tests/fixtures/vendor/teams)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from requests.adapters import HTTPAdapter

from connectors.errors import AuthFailed, RateLimited
from connectors.retry import RetryPolicy
from connectors.teams import (
    ClientCredentialsTokens,
    SignedInUserTokens,
    TeamsConnector,
    TeamsConversation,
    channel_from_api,
    key_line,
    teams_channel_name,
)
from tests.connectors.graph_fake import APP_TOKEN, USER_TOKEN, GraphFake, fixture

TEAM = "57fb72d0-d811-46f4-8947-305e6072eaa5"
MARKER = "[escalation-sync ticket=jira:DS-1234]"
LOGIN = "https://login.microsoftonline.com/tenant-1"


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as m:
        yield m


@pytest.fixture
def graph(mock: responses.RequestsMock) -> GraphFake:
    fake = GraphFake(mock)
    fake.add_team(TEAM)
    return fake


class FakeClock:
    """Time that passes only when the connector sleeps."""

    def __init__(self, sleeps: list[float]) -> None:
        self.now = 0.0
        self.sleeps = sleeps

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def connect(*, user: bool = True, sleeps: list[float] | None = None, **kw: Any) -> TeamsConnector:
    clock = FakeClock(sleeps if sleeps is not None else [])
    kw.setdefault("retry", RetryPolicy(attempts=4, sleep=clock.sleep))
    kw.setdefault("clock", lambda: clock.now)
    return TeamsConnector(
        app_token=lambda: APP_TOKEN,
        user_token=(lambda: USER_TOKEN) if user else None,
        session=requests.Session(),
        **kw,
    )


# ------------------------------------------------------------------------------ names


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("DS-1234: checkout fails", "DS-1234 checkout fails"),
        ("_.hidden name.", "hidden name"),
        ("a/b\\c:d*e?f\"g<h>i|j#k%l&m{n}o+p~q'r,s", "a b c d e f g h i j k l m n o p q r s"),
        ("???", "Escalation"),
        ("x" * 80, "x" * 50),
    ],
)
def test_channel_names_teams_accepts(text: str, expected: str) -> None:
    """Display names lose the characters Teams refuses and fit 50 characters."""
    assert teams_channel_name(text) == expected


def test_long_names_are_cut_at_a_word() -> None:
    """A long name is cut at a space, not mid-word."""
    name = teams_channel_name("DS-1234 checkout fails for every customer in the european region")
    assert name == "DS-1234 checkout fails for every customer in the"


# ------------------------------------------------------------------------------ channels


def test_channel_is_created_with_the_marker_in_its_description(graph: GraphFake) -> None:
    """POST /teams/{id}/channels carries the documented properties, the marker in the
    description; the answer's id and webUrl come back."""
    made = connect().ensure_channel(
        TEAM, "DS-1234: checkout fails", marker=MARKER, description="Escalation"
    )
    assert made.created
    channel = graph.channels[TEAM][made.conversation.id]
    assert channel.name == "DS-1234 checkout fails"
    assert channel.description == f"Escalation\n{MARKER}"
    assert channel.membership == "standard"
    assert made.conversation.web_url and made.conversation.web_url.startswith(
        "https://teams.microsoft.com/l/channel/"
    )


def test_channel_is_found_again_not_duplicated(graph: GraphFake) -> None:
    """A second call (a retry after a lost answer, or another worker) finds the channel by name
    and marker and creates nothing."""
    first = connect().ensure_channel(TEAM, "DS-1234 checkout", marker=MARKER)
    again = connect().ensure_channel(TEAM, "DS-1234 checkout", marker=MARKER)
    assert not again.created and again.conversation.id == first.conversation.id
    assert len(graph.channels[TEAM]) == 1
    assert [r for r in graph.requests if r[0] == "POST"] == [
        ("POST", f"/teams/{TEAM}/channels", "")
    ]


def test_a_strangers_channel_of_that_name_numbers_ours(graph: GraphFake) -> None:
    """A same-named channel without our marker makes ours "Name (2)"."""
    connect().ensure_channel(TEAM, "DS-1234 checkout", marker="[someone else]")
    ours = connect().ensure_channel(TEAM, "DS-1234 checkout", marker=MARKER)
    assert ours.created and ours.conversation.name == "DS-1234 checkout (2)"


def test_private_channel_needs_an_owner(graph: GraphFake) -> None:
    """A private channel is created with its owner bound as the documentation shows."""
    graph.add_user("Erin Engineer", "erin@example.com")
    made = connect().ensure_channel(
        TEAM, "DS-9 secret", marker=MARKER, private=True, owner_email="erin@example.com"
    )
    channel = graph.channels[TEAM][made.conversation.id]
    assert channel.membership == "private" and made.conversation.private
    assert [graph.users[u]["mail"] for u in channel.members] == ["erin@example.com"]


def test_archive_is_idempotent(graph: GraphFake) -> None:
    """POST .../archive (202) once; an archived channel is not archived again."""
    made = connect().ensure_channel(TEAM, "DS-5 close", marker=MARKER)
    assert connect().archive(made.conversation) is True
    assert connect().archive(made.conversation) is False
    archives = [r for r in graph.requests if r[1].endswith("/archive")]
    assert len(archives) == 1


# ------------------------------------------------------------------------------ members


def test_members_are_added_by_email_and_strangers_listed(graph: GraphFake) -> None:
    """People are looked up by UPN (then mail); a standard channel's people join the team;
    addresses not in the directory are listed, members already there are not added again."""
    lee = graph.add_user("Lee Support", "lee@example.com")
    graph.add_user("Erin Engineer", "erin@example.com", upn="erin@corp.example")
    graph.team_members[TEAM].append(lee)
    made = connect().ensure_channel(TEAM, "DS-7 members", marker=MARKER)
    result = connect().add_members(
        made.conversation, ["lee@example.com", "erin@example.com", "carol@customer.example"]
    )
    assert result.already_members == ("lee@example.com",)
    assert result.added == ("erin@example.com",)
    assert result.not_found == ("carol@customer.example",)
    assert len(graph.team_members[TEAM]) == 2
    posted = [r for r in graph.requests if r[0] == "POST" and r[1].endswith("/members")]
    assert posted == [("POST", f"/teams/{TEAM}/members", "")]


def test_private_channel_members_go_to_the_channel(graph: GraphFake) -> None:
    """A private channel's people are added to the channel itself."""
    graph.add_user("Erin Engineer", "erin@example.com")
    graph.add_user("Ann Analyst", "ann@example.com")
    made = connect().ensure_channel(
        TEAM, "DS-8 private", marker=MARKER, private=True, owner_email="erin@example.com"
    )
    result = connect().add_members(made.conversation, ["erin@example.com", "ann@example.com"])
    assert result.added == ("ann@example.com",) and result.already_members == ("erin@example.com",)


# ------------------------------------------------------------------------------ chats


def test_group_chat_created_once_with_its_people(graph: GraphFake) -> None:
    """POST /chats (delegated) with every member bound, the signed-in account included; the
    same topic later finds it."""
    graph.add_user("Lee Support", "lee@example.com")
    made, members = connect().ensure_chat(
        "DS-1234 checkout fails", ["lee@example.com", "nobody@example.com"]
    )
    assert made.created and members.added == ("lee@example.com",)
    assert members.not_found == ("nobody@example.com",)
    chat = graph.chats[made.conversation.id]
    assert graph.signed_in in chat.members and len(chat.members) == 2
    again, _ = connect().ensure_chat("DS-1234 checkout fails", ["lee@example.com"])
    assert not again.created and again.conversation.id == made.conversation.id
    assert len(graph.chats) == 1


def test_chats_need_a_signed_in_user() -> None:
    """Without a user's token, creating a chat fails as AuthFailed, saying why, before any
    request."""
    with pytest.raises(AuthFailed, match="signed-in user"):
        connect(user=False).ensure_chat("DS-1 x", [])


# ------------------------------------------------------------------------------ messages


def test_message_posted_once_per_key(graph: GraphFake) -> None:
    """A message goes as a documented chatMessage (HTML) with the key as its last line; the same
    key again finds it and posts nothing."""
    made = connect().ensure_channel(TEAM, "DS-2 post", marker=MARKER)
    first = connect().post(made.conversation, "<b>Escalation approved</b>", key="DS-2:approved")
    again = connect().post(made.conversation, "<b>Escalation approved</b>", key="DS-2:approved")
    assert first.created and not again.created and again.id == first.id
    stored = graph.channels[TEAM][made.conversation.id].messages
    assert len(stored) == 1
    assert stored[0]["body"] == {
        "contentType": "html",
        "content": f"<b>Escalation approved</b><p>{key_line('DS-2:approved')}</p>",
    }


class LosesFirstPostAnswer(HTTPAdapter):
    """Sends every request, then loses the answer to the first message post (a reset)."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = 0

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        answer = super().send(request, stream, timeout, verify, cert, proxies)
        posted = request.method == "POST" and (request.url or "").endswith("/messages")
        if posted and not self.lost:
            self.lost += 1
            raise requests.ConnectionError("connection reset after sending")
        return answer


def test_a_lost_answer_is_not_posted_twice(graph: GraphFake, mock: responses.RequestsMock) -> None:
    """The post reaches Graph but its answer is lost: the retry finds the message by its key."""
    made = connect().ensure_channel(TEAM, "DS-3 lost", marker=MARKER)
    session = requests.Session()
    session.mount("https://", LosesFirstPostAnswer())
    teams = TeamsConnector(
        app_token=lambda: APP_TOKEN,
        user_token=lambda: USER_TOKEN,
        session=session,
        retry=RetryPolicy(attempts=3, sleep=lambda _s: None),
    )
    posted = teams.post(made.conversation, "Escalation approved", key="DS-3:approved", lookup=False)
    assert not posted.created
    assert len(graph.channels[TEAM][made.conversation.id].messages) == 1


def test_find_message_pages_by_next_link(graph: GraphFake) -> None:
    """The key is found beyond the first page of 50, following @odata.nextLink."""
    made = connect().ensure_channel(TEAM, "DS-4 busy", marker=MARKER)
    teams = connect()
    teams.post(made.conversation, "first", key="DS-4:first", lookup=False)
    for n in range(60):
        teams.post(made.conversation, f"chatter {n}", key=f"DS-4:{n}", lookup=False)
    found = teams.find_message(made.conversation, "DS-4:first")
    assert found is not None and not found.created
    assert any("$skiptoken" in r[2] for r in graph.requests)


def test_messages_need_a_signed_in_user(graph: GraphFake) -> None:
    """Posting with only the application's token fails as AuthFailed without a request."""
    made = connect().ensure_channel(TEAM, "DS-6 app", marker=MARKER)
    before = len(graph.requests)
    with pytest.raises(AuthFailed):
        connect(user=False).post(made.conversation, "x", key="k", lookup=False)
    assert len(graph.requests) == before


def test_chat_messages(graph: GraphFake) -> None:
    """A group chat takes messages the same way, at /chats/{id}/messages."""
    made, _ = connect().ensure_chat("DS-10 chat", [])
    posted = connect().post(made.conversation, "hello", key="DS-10:hello")
    assert posted.created
    assert graph.chats[made.conversation.id].messages[0]["chatId"] == made.conversation.id


# ------------------------------------------------------------------------------ throttling


def test_429_waits_retry_after_then_succeeds(graph: GraphFake) -> None:
    """Graph's documented 429 with Retry-After is waited out, then the call goes through."""
    graph.throttle(2, retry_after=3)
    sleeps: list[float] = []
    made = connect(sleeps=sleeps).ensure_channel(TEAM, "DS-11 throttled", marker=MARKER)
    assert made.created
    assert sleeps[:2] == [3.0, 3.0]


def test_a_long_throttle_is_handed_back(graph: GraphFake) -> None:
    """A Retry-After past the policy's patience fails at once as RateLimited with the wait."""
    graph.throttle(1, retry_after=600)
    with pytest.raises(RateLimited) as limited:
        connect().ensure_channel(TEAM, "DS-12 throttled", marker=MARKER)
    assert limited.value.retry_after == 600.0


def test_throttled_body_is_the_documented_one(
    graph: GraphFake, mock: responses.RequestsMock
) -> None:
    """The double's 429 body is Microsoft's sample; the error carries its code."""
    graph.throttle(5, retry_after=1)
    with pytest.raises(RateLimited) as limited:
        connect(retry=RetryPolicy(attempts=2, sleep=lambda _s: None)).find_user("x@example.com")
    assert limited.value.messages[0] == fixture("throttled.response.429.json")["error"]["code"]


# ------------------------------------------------------------------------------ tokens


def test_client_credentials_token_is_requested_once(mock: responses.RequestsMock) -> None:
    """msal asks the tenant's token endpoint for a client-credentials token, once (cached)."""
    mock.post(
        f"{LOGIN}/oauth2/v2.0/token",
        json={"token_type": "Bearer", "expires_in": 3599, "access_token": "app-token-1"},
    )
    mock.get(
        f"{LOGIN}/v2.0/.well-known/openid-configuration",
        json={
            "token_endpoint": f"{LOGIN}/oauth2/v2.0/token",
            "authorization_endpoint": f"{LOGIN}/oauth2/v2.0/authorize",
            "issuer": f"{LOGIN}/v2.0",
        },
    )
    tokens = ClientCredentialsTokens("tenant-1", "client-1", "secret-1", session=requests.Session())
    assert tokens() == "app-token-1" and tokens() == "app-token-1"
    token_calls = [c for c in mock.calls if (c.request.url or "").endswith("/token")]
    assert len(token_calls) == 1
    assert "client_credentials" in str(token_calls[0].request.body)


def test_signed_in_user_without_a_cache_says_sign_in(
    tmp_path: Path, mock: responses.RequestsMock
) -> None:
    """An empty token cache is an AuthFailed naming the cache file, not a crash."""
    mock.get(
        f"{LOGIN}/v2.0/.well-known/openid-configuration",
        json={
            "token_endpoint": f"{LOGIN}/oauth2/v2.0/token",
            "authorization_endpoint": f"{LOGIN}/oauth2/v2.0/authorize",
            "issuer": f"{LOGIN}/v2.0",
        },
    )
    cache = tmp_path / "teams-token.json"
    tokens = SignedInUserTokens("tenant-1", "client-1", cache, session=requests.Session())
    with pytest.raises(AuthFailed, match=r"teams-token\.json"):
        tokens()


def test_documented_channel_answer_parses() -> None:
    """The documented 201 answer of channel creation becomes a conversation with its webUrl."""
    conversation = channel_from_api(TEAM, fixture("channel-post.response.201.json"))
    assert conversation == TeamsConversation(
        kind="channel",
        id="19:33b76eea88574bd1969dca37e2b7a819@thread.skype",
        name="My First Private Channel",
        team_id=TEAM,
        web_url=fixture("channel-post.response.201.json")["webUrl"],
        private=True,
        description="This is my first private channels",
    )
