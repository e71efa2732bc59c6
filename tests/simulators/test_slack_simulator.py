"""The Slack simulator over real HTTP, every answer validated against Slack's Web API spec.

`slack_spec.problems` holds each answer to the spec's response schema for the method (read as
tests/fixtures/vendor/slack/README.md says); the spec's examples name the keys an answer carries.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from simulators.common import FaultConfig
from simulators.slack import BOT_TOKEN, RateLimits, SlackSimulator, User
from tests.simulators.slack_spec import example, problems, scopes

JSON = "application/json; charset=utf-8"


@pytest.fixture
def slack() -> Iterator[SlackSimulator]:
    with SlackSimulator(rate_limits=RateLimits(enabled=False)) as sim:
        yield sim


def call(
    sim: SlackSimulator,
    method: str,
    token: str | None = BOT_TOKEN,
    *,
    status: int = 200,
    **args: Any,
) -> dict[str, Any]:
    """POST a form with a bearer token; check the status and the answer against the spec."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = requests.post(f"{sim.api_url}{method}", data=args, headers=headers, timeout=10)
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    if status == 200:
        assert problems(method, body) == [], body
    return body


def refused(sim: SlackSimulator, method: str, error: str, **args: Any) -> dict[str, Any]:
    """Call and expect `ok: false` with `error` (checked against the spec)."""
    body = call(sim, method, **args)
    assert body["ok"] is False
    assert body["error"] == error, body
    return body


def make_channel(sim: SlackSimulator, name: str, **args: Any) -> str:
    return str(call(sim, "conversations.create", name=name, **args)["channel"]["id"])


def person(sim: SlackSimulator, name: str = "lee") -> User:
    return sim.add_user(name, f"{name.title()} Person", f"{name}@example.com")


# ------------------------------------------------------------------------------ auth


def test_auth_test_answers_who_the_token_is(slack: SlackSimulator) -> None:
    """auth.test names the bot, its team and bot id, with every key of the spec's example, and
    the answer's X-OAuth-Scopes header lists the token's scopes."""
    body = call(slack, "auth.test")
    assert set(example("auth.test")) <= set(body)
    granted = requests.post(
        f"{slack.api_url}auth.test", headers={"Authorization": f"Bearer {BOT_TOKEN}"}, timeout=10
    ).headers["X-OAuth-Scopes"]
    assert "chat:write" in granted.split(",")
    assert body["user_id"] == slack.bot.id and body["bot_id"] == slack.bot.bot_id


@pytest.mark.parametrize(
    "method", ["auth.test", "conversations.create", "chat.postMessage", "users.info"]
)
def test_missing_token_is_not_authed(slack: SlackSimulator, method: str) -> None:
    """No token at all: HTTP 200, `not_authed`, in the spec's error shape."""
    body = call(slack, method, token=None, name="x", channel="C1", text="x", user="U1")
    assert body == {"ok": False, "error": "not_authed"}


def test_unknown_and_revoked_tokens_are_refused(slack: SlackSimulator) -> None:
    """An unknown token is `invalid_auth`; a revoked one `token_revoked`."""
    refused(slack, "auth.test", "invalid_auth", token="xoxb-nobody")
    slack.revoke_token(BOT_TOKEN)
    refused(slack, "conversations.list", "token_revoked")


MISSING_SCOPE_CALLS: list[tuple[str, dict[str, str]]] = [
    ("conversations.create", {"name": "needs-scope"}),
    ("conversations.info", {"channel": "GENERAL"}),
    ("conversations.list", {}),
    ("conversations.invite", {"channel": "GENERAL", "users": "U1"}),
    ("conversations.setTopic", {"channel": "GENERAL", "topic": "t"}),
    ("conversations.setPurpose", {"channel": "GENERAL", "purpose": "p"}),
    ("conversations.archive", {"channel": "GENERAL"}),
    ("conversations.join", {"channel": "GENERAL"}),
    ("conversations.history", {"channel": "GENERAL"}),
    ("chat.postMessage", {"channel": "GENERAL", "text": "hi"}),
    ("users.lookupByEmail", {"email": "a@example.com"}),
    ("users.info", {"user": "U1"}),
]


@pytest.mark.parametrize(("method", "args"), MISSING_SCOPE_CALLS)
def test_missing_scope_names_needed_and_provided(
    slack: SlackSimulator, method: str, args: dict[str, str]
) -> None:
    """A token without the method's scope gets `missing_scope` naming one of the spec's scopes
    for that method as `needed` and the token's own as `provided`."""
    general = slack.channel_named("general")
    assert general is not None
    token = slack.add_token("xoxb-thin", slack.bot, ["emoji:read"])
    args = {k: (general["id"] if v == "GENERAL" else v) for k, v in args.items()}
    body = refused(slack, method, "missing_scope", token=token, **args)
    assert body["needed"] in scopes(method)
    assert body["provided"] == "emoji:read"


def test_token_may_come_as_form_field_or_query_but_not_in_json(slack: SlackSimulator) -> None:
    """A form `token` field and a GET query token are read; a JSON body's `token` is not."""
    form = requests.post(f"{slack.api_url}auth.test", data={"token": BOT_TOKEN}, timeout=10)
    assert form.json()["ok"] is True
    query = requests.get(f"{slack.api_url}auth.test", params={"token": BOT_TOKEN}, timeout=10)
    assert query.json()["ok"] is True
    in_json = requests.post(
        f"{slack.api_url}auth.test",
        data=json.dumps({"token": BOT_TOKEN}),
        headers={"Content-Type": JSON},
        timeout=10,
    )
    assert in_json.json() == {"ok": False, "error": "not_authed"}


# ------------------------------------------------------------------------------ bodies


def post_raw(slack: SlackSimulator, method: str, body: bytes, content_type: str | None) -> Any:
    headers = {"Authorization": f"Bearer {BOT_TOKEN}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = requests.post(f"{slack.api_url}{method}", data=body, headers=headers, timeout=10)
    assert response.status_code == 200
    return response.json()


def test_json_bodies_need_the_utf8_charset(slack: SlackSimulator) -> None:
    """JSON is taken with `charset=utf-8` (with or without a space) and refused without it."""
    body = json.dumps({"name": "json-made"}).encode()
    made = post_raw(slack, "conversations.create", body, "application/json;charset=utf-8")
    assert made["ok"] is True and made["channel"]["name"] == "json-made"
    missing = post_raw(slack, "conversations.create", body, "application/json")
    assert missing == {"ok": False, "error": "missing_charset"}
    assert problems("conversations.create", missing) == []
    latin = post_raw(slack, "conversations.create", body, "application/json; charset=iso-8859-1")
    assert latin == {"ok": False, "error": "invalid_charset"}


@pytest.mark.parametrize(
    ("payload", "content_type", "error"),
    [
        (b"{not json", JSON, "invalid_json"),
        (b"[1, 2]", JSON, "json_not_object"),
        (b"name=x", "text/csv", "invalid_post_type"),
        (b"name=x", None, "missing_post_type"),
    ],
)
def test_unreadable_bodies_are_refused(
    slack: SlackSimulator, payload: bytes, content_type: str | None, error: str
) -> None:
    """Bodies Slack cannot read get the spec's body errors, in the spec's shape."""
    answer = post_raw(slack, "conversations.create", payload, content_type)
    assert answer == {"ok": False, "error": error}
    assert problems("conversations.create", answer) == []


def test_json_is_not_read_by_form_only_methods(slack: SlackSimulator) -> None:
    """conversations.info consumes forms only: its arguments sent as JSON are not seen."""
    general = slack.channel_named("general")
    assert general is not None
    answer = post_raw(
        slack, "conversations.info", json.dumps({"channel": general["id"]}).encode(), JSON
    )
    assert answer == {"ok": False, "error": "channel_not_found"}


def test_unknown_method_is_404(slack: SlackSimulator) -> None:
    """A method Slack does not have answers 404 `unknown_method`."""
    body = call(slack, "conversations.teleport", status=404)
    assert body == {"ok": False, "error": "unknown_method"}


# ------------------------------------------------------------------------------ channels


def test_create_answers_a_conversation_with_the_examples_keys(slack: SlackSimulator) -> None:
    """conversations.create answers the channel, the caller its member, with every key the
    spec's example channel has."""
    body = call(slack, "conversations.create", name="ds-1234-checkout-down")
    channel = body["channel"]
    assert set(example("conversations.create")["channel"]) <= set(channel)
    assert channel["is_member"] is True and channel["creator"] == slack.bot.id
    assert channel["is_private"] is False


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("", "invalid_name_required"),
        ("a" * 81, "invalid_name_maxlength"),
        ("ds 1234", "invalid_name_specials"),
        ("ds-1234-café", "invalid_name_specials"),
        ("ds-1234-数据库", "invalid_name_specials"),
        ("ds.1234", "invalid_name_specials"),
        ("DS-1234", "invalid_name"),
        ("-_-", "invalid_name_punctuation"),
    ],
)
def test_channel_names_follow_slacks_rules(slack: SlackSimulator, name: str, error: str) -> None:
    """Names must be lower case letters, digits, `-` and `_`, 1 to 80 characters."""
    refused(slack, "conversations.create", error, name=name)


def test_eighty_characters_is_the_limit(slack: SlackSimulator) -> None:
    """A name of exactly 80 characters is taken."""
    assert call(slack, "conversations.create", name="a" * 80)["ok"] is True


def test_names_stay_taken_after_archiving(slack: SlackSimulator) -> None:
    """`name_taken` for a live channel and for an archived one."""
    cid = make_channel(slack, "ds-1-taken")
    refused(slack, "conversations.create", "name_taken", name="ds-1-taken")
    call(slack, "conversations.archive", channel=cid)
    refused(slack, "conversations.create", "name_taken", name="ds-1-taken")


def test_info_and_channel_not_found(slack: SlackSimulator) -> None:
    """conversations.info answers a visible channel; an unknown or foreign private one is
    `channel_not_found`."""
    cid = make_channel(slack, "ds-2-info")
    body = call(slack, "conversations.info", channel=cid, include_num_members="true")
    assert body["channel"]["num_members"] == 1
    refused(slack, "conversations.info", "channel_not_found", channel="C0NOSUCHONE")
    hidden = slack.add_channel("secret-room", is_private=True)
    refused(slack, "conversations.info", "channel_not_found", channel=hidden["id"])


def test_list_pages_by_cursor(slack: SlackSimulator) -> None:
    """conversations.list walks every channel by `next_cursor`, ending with an empty cursor;
    a made-up cursor is `invalid_cursor`."""
    for n in range(5):
        make_channel(slack, f"paged-{n}")
    seen: list[str] = []
    cursor = ""
    pages = 0
    while True:
        body = call(slack, "conversations.list", limit="2", cursor=cursor)
        pages += 1
        seen += [c["name"] for c in body["channels"]]
        cursor = body["response_metadata"]["next_cursor"]
        if not cursor:
            break
    assert pages == 4
    assert sorted(seen) == sorted(["general", "random"] + [f"paged-{n}" for n in range(5)])
    assert set(example("conversations.list")) <= set(body)
    refused(slack, "conversations.list", "invalid_cursor", cursor="bm9wZQ==")


def test_list_hides_archived_when_asked_and_foreign_private_always(slack: SlackSimulator) -> None:
    """exclude_archived drops archived channels; private channels show only to members."""
    cid = make_channel(slack, "old-one")
    call(slack, "conversations.archive", channel=cid)
    slack.add_channel("not-mine", is_private=True)
    names = {
        c["name"]
        for c in call(slack, "conversations.list", types="public_channel,private_channel")[
            "channels"
        ]
    }
    assert "old-one" in names and "not-mine" not in names
    live = call(slack, "conversations.list", exclude_archived="true")["channels"]
    assert "old-one" not in {c["name"] for c in live}


def test_invite_adds_people_and_posts_their_joins(slack: SlackSimulator) -> None:
    """conversations.invite adds each user once, with a channel_join message naming the inviter."""
    lee, ann = person(slack, "lee"), person(slack, "ann")
    cid = make_channel(slack, "ds-3-invite")
    body = call(slack, "conversations.invite", channel=cid, users=f"{lee.id},{ann.id}")
    assert set(example("conversations.invite")) <= set(body)
    assert slack.members(cid) == [slack.bot.id, lee.id, ann.id]
    joins = [m for m in slack.messages(cid) if m.get("inviter") == slack.bot.id]
    assert [m["user"] for m in joins] == [lee.id, ann.id]


def test_invite_errors(slack: SlackSimulator) -> None:
    """Unknown user, a member already in, the caller itself, a channel the caller is not in and
    an archived channel each refuse the whole call with the spec's codes."""
    lee = person(slack)
    cid = make_channel(slack, "ds-4-invite")
    body = refused(slack, "conversations.invite", "user_not_found", channel=cid, users="U0NOBODY00")
    assert body["errors"] == [{"user": "U0NOBODY00", "ok": False, "error": "user_not_found"}]
    call(slack, "conversations.invite", channel=cid, users=lee.id)
    refused(slack, "conversations.invite", "already_in_channel", channel=cid, users=lee.id)
    refused(slack, "conversations.invite", "cant_invite_self", channel=cid, users=slack.bot.id)
    random = slack.channel_named("random")
    assert random is not None
    refused(slack, "conversations.invite", "not_in_channel", channel=random["id"], users=lee.id)
    call(slack, "conversations.archive", channel=cid)
    refused(slack, "conversations.invite", "is_archived", channel=cid, users=lee.id)


@pytest.mark.parametrize(
    ("method", "field"),
    [("conversations.setTopic", "topic"), ("conversations.setPurpose", "purpose")],
)
def test_topic_and_purpose(slack: SlackSimulator, method: str, field: str) -> None:
    """setTopic/setPurpose store the text with its setter; over 250 characters is `too_long`,
    and a channel the caller left or archived refuses."""
    cid = make_channel(slack, f"ds-5-{field}")
    args: dict[str, Any] = {"channel": cid, field: "DS-5: checkout down"}
    body = call(slack, method, **args)
    assert body["channel"][field]["value"] == "DS-5: checkout down"
    assert body["channel"][field]["creator"] == slack.bot.id
    refused(slack, method, "too_long", channel=cid, **{field: "x" * 251})
    random = slack.channel_named("random")
    assert random is not None
    refused(slack, method, "not_in_channel", channel=random["id"], **{field: "x"})
    call(slack, "conversations.archive", channel=cid)
    refused(slack, method, "is_archived", channel=cid, **{field: "x"})


def test_archive_errors(slack: SlackSimulator) -> None:
    """Archiving twice is `already_archived`; #general cannot be archived."""
    cid = make_channel(slack, "ds-6-archive")
    assert call(slack, "conversations.archive", channel=cid) == {"ok": True}
    refused(slack, "conversations.archive", "already_archived", channel=cid)
    general = slack.channel_named("general")
    assert general is not None
    refused(slack, "conversations.archive", "cant_archive_general", channel=general["id"])
    refused(slack, "conversations.archive", "channel_not_found", channel="C0NOSUCHONE")


def test_join(slack: SlackSimulator) -> None:
    """Joining a public channel works, twice is a warning as in the spec's example; private and
    archived channels refuse."""
    random = slack.channel_named("random")
    assert random is not None
    first = call(slack, "conversations.join", channel=random["id"])
    assert "warning" not in first
    again = call(slack, "conversations.join", channel=random["id"])
    assert set(example("conversations.join")) <= set(again)
    assert again["warning"] == "already_in_channel"
    private = make_channel(slack, "ds-7-private", is_private="true")
    refused(slack, "conversations.join", "method_not_supported_for_channel_type", channel=private)
    archived = slack.add_channel("gone")
    slack.workspace.channels[archived["id"]].is_archived = True
    refused(slack, "conversations.join", "is_archived", channel=archived["id"])


# ------------------------------------------------------------------------------ messages


def test_post_message_with_metadata_and_find_it_in_history(slack: SlackSimulator) -> None:
    """chat.postMessage keeps metadata; history shows it only with include_all_metadata."""
    cid = make_channel(slack, "ds-8-post")
    metadata = {"event_type": "escalation_event", "event_payload": {"key": "DS-8:approved"}}
    body = call(
        slack,
        "chat.postMessage",
        channel=cid,
        text="Escalation approved",
        metadata=json.dumps(metadata),
    )
    assert set(example("chat.postMessage")) <= set(body)
    plain = call(slack, "conversations.history", channel=cid)
    assert all("metadata" not in m for m in plain["messages"])
    full = call(slack, "conversations.history", channel=cid, include_all_metadata="true")
    newest = full["messages"][0]
    assert newest["ts"] == body["ts"] and newest["metadata"] == metadata


def test_post_message_errors(slack: SlackSimulator) -> None:
    """Unknown channel, a channel the bot is not in, an archived one, a text over 40,000
    characters, no text and malformed metadata are refused."""
    cid = make_channel(slack, "ds-9-post")
    refused(slack, "chat.postMessage", "channel_not_found", channel="C0NOSUCHONE", text="x")
    random = slack.channel_named("random")
    assert random is not None
    refused(slack, "chat.postMessage", "not_in_channel", channel=random["id"], text="x")
    refused(slack, "chat.postMessage", "msg_too_long", channel=cid, text="x" * 40_001)
    refused(slack, "chat.postMessage", "no_text", channel=cid)
    bad = refused(
        slack,
        "chat.postMessage",
        "invalid_metadata_format",
        channel=cid,
        text="x",
        metadata=json.dumps({"event_type": "x"}),
    )
    assert bad["error"] == "invalid_metadata_format"
    call(slack, "conversations.archive", channel=cid)
    refused(slack, "chat.postMessage", "is_archived", channel=cid, text="x")


def test_post_by_channel_name(slack: SlackSimulator) -> None:
    """A channel may be named `#name` instead of its id; the answer carries the id."""
    cid = make_channel(slack, "ds-10-named")
    assert call(slack, "chat.postMessage", channel="#ds-10-named", text="hi")["channel"] == cid


def test_history_pages_by_cursor_and_by_latest(slack: SlackSimulator) -> None:
    """history answers newest first; `limit` with `next_cursor`, or `latest` with `has_more`,
    reach every message once."""
    cid = make_channel(slack, "ds-11-history")
    posted = [call(slack, "chat.postMessage", channel=cid, text=f"m{n}")["ts"] for n in range(4)]
    everything = [m["ts"] for m in call(slack, "conversations.history", channel=cid)["messages"]]
    assert everything[:4] == posted[::-1]
    by_cursor: list[str] = []
    cursor = ""
    while True:
        page = call(slack, "conversations.history", channel=cid, limit="2", cursor=cursor)
        by_cursor += [m["ts"] for m in page["messages"]]
        if not page["has_more"]:
            break
        assert set(example("conversations.history")) <= set(page)
        cursor = page["response_metadata"]["next_cursor"]
    assert by_cursor == everything
    by_latest: list[str] = []
    latest = ""
    while True:
        page = call(slack, "conversations.history", channel=cid, limit="2", latest=latest)
        by_latest += [m["ts"] for m in page["messages"]]
        if not page["has_more"]:
            break
        latest = page["messages"][-1]["ts"]
    assert by_latest == everything


def test_history_of_an_empty_window_and_its_errors(slack: SlackSimulator) -> None:
    """A window with no message answers []; bad timestamps, unknown channels and a public
    channel the bot is not in are refused."""
    cid = make_channel(slack, "ds-12-history")
    empty = call(slack, "conversations.history", channel=cid, oldest="9999999999.000000")
    assert empty["messages"] == [] and empty["has_more"] is False
    refused(slack, "conversations.history", "invalid_ts_latest", channel=cid, latest="soon")
    refused(slack, "conversations.history", "invalid_ts_oldest", channel=cid, oldest="later")
    refused(slack, "conversations.history", "channel_not_found", channel="C0NOSUCHONE")
    random = slack.channel_named("random")
    assert random is not None
    refused(slack, "conversations.history", "not_in_channel", channel=random["id"])


# ------------------------------------------------------------------------------ users


def test_users_lookup_by_email_and_info(slack: SlackSimulator) -> None:
    """lookupByEmail finds a member whatever the address's case; nobody is `users_not_found`;
    users.info answers a member and refuses an unknown id with `user_not_found`."""
    lee = person(slack)
    found = call(slack, "users.lookupByEmail", email="LEE@example.com")
    assert set(example("users.lookupByEmail")) <= set(found)
    assert found["user"]["id"] == lee.id
    assert found["user"]["profile"]["email"] == "lee@example.com"
    refused(slack, "users.lookupByEmail", "users_not_found", email="carol@customer.example")
    assert call(slack, "users.info", user=lee.id)["user"]["name"] == "lee"
    refused(slack, "users.info", "user_not_found", user="U0NOBODY00")


# ------------------------------------------------------------------------------ limits, faults


def test_rate_limits_are_per_method() -> None:
    """Past a method's budget: 429, `Retry-After` and `ratelimited`; other methods still work."""
    with SlackSimulator(rate_limits=RateLimits(tier2=2)) as slack:
        make_channel(slack, "rl-1")
        make_channel(slack, "rl-2")
        response = requests.post(
            f"{slack.api_url}conversations.create",
            data={"name": "rl-3"},
            headers={"Authorization": f"Bearer {BOT_TOKEN}"},
            timeout=10,
        )
        assert response.status_code == 429
        assert int(response.headers["Retry-After"]) >= 1
        assert response.json() == {"ok": False, "error": "ratelimited"}
        assert call(slack, "users.info", user=slack.bot.id)["ok"] is True


def test_post_message_budget_is_per_channel() -> None:
    """chat.postMessage is limited per channel: a busy channel does not slow another."""
    with SlackSimulator(rate_limits=RateLimits(post_per_second=0.01, post_burst=1)) as slack:
        busy, quiet = make_channel(slack, "busy"), make_channel(slack, "quiet")
        call(slack, "chat.postMessage", channel=busy, text="1")
        limited = call(slack, "chat.postMessage", channel=busy, text="2", status=429)
        assert limited["error"] == "ratelimited"
        assert call(slack, "chat.postMessage", channel=quiet, text="1")["ok"] is True


def test_injected_faults_speak_slack_and_are_counted() -> None:
    """Injected 429s carry Slack's body and Retry-After; /_sim/stats counts per method."""
    with SlackSimulator(faults=FaultConfig(rate_429=1.0, retry_after_seconds=7)) as slack:
        response = requests.post(
            f"{slack.api_url}auth.test",
            headers={"Authorization": f"Bearer {BOT_TOKEN}"},
            timeout=10,
        )
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "7"
        assert response.json() == {"ok": False, "error": "ratelimited"}
        stats = requests.get(f"{slack.url}/_sim/stats", timeout=10).json()
        assert stats["requests"] == {"POST /api/auth.test": 1}
        assert stats["faults"]["429"] == 1


def test_slack_sdk_client_works_against_it(slack: SlackSimulator) -> None:
    """Slack's own SDK (POST for every call, JSON for postMessage) gets the answers it expects."""
    client = WebClient(token=slack.bot_token, base_url=slack.api_url, retry_handlers=[])
    cid = client.conversations_create(name="sdk-made")["channel"]["id"]
    posted = client.chat_postMessage(
        channel=cid, text="hi", metadata={"event_type": "t", "event_payload": {"k": 1}}
    )
    history = client.conversations_history(channel=cid, include_all_metadata=True)
    assert history["messages"][0]["metadata"]["event_payload"] == {"k": 1}
    assert history["messages"][0]["ts"] == posted["ts"]
    with pytest.raises(SlackApiError) as failure:
        client.conversations_create(name="sdk-made")
    assert failure.value.response["error"] == "name_taken"


def test_runs_as_a_module() -> None:
    """`python -m simulators.slack --port 0` serves and prints its URL and bot token."""
    process = subprocess.Popen(
        [sys.executable, "-m", "simulators.slack", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        token_line = process.stdout.readline()
        url = first.split(" on ", 1)[1].split()[0]
        assert BOT_TOKEN in token_line
        answer = requests.post(
            f"{url}/api/auth.test", headers={"Authorization": f"Bearer {BOT_TOKEN}"}, timeout=10
        ).json()
        assert answer["ok"] is True
    finally:
        process.terminate()
        process.wait(timeout=10)
