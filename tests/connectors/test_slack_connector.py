"""The Slack connector's pure parts (channel names, error typing) and its parsing of the answers
Slack's spec gives as examples, served by a strict `responses` fake."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest
import responses
from hypothesis import given
from hypothesis import strategies as st

from connectors.errors import RateLimited, ServerUnavailable
from connectors.retry import RetryPolicy
from connectors.slack import (
    NAME_MAX,
    SlackAuthFailed,
    SlackConnector,
    SlackNotFound,
    SlackRefused,
    channel_name,
    error_for,
    slug,
    suffixed,
    valid_channel_name,
)
from tests.simulators.slack_spec import example

API = "https://slack.test/api/"
TOKEN = "xoxb-test-token"
NO_WAIT = RetryPolicy(attempts=3, sleep=lambda _s: None)


# ------------------------------------------------------------------------------ names


@pytest.mark.parametrize(
    ("summary", "expected"),
    [
        ("Checkout fails for EU customers", "ds-1234-checkout-fails-for-eu-customers"),
        ("🔥🔥 Checkout DOWN!!! 🔥", "ds-1234-checkout-down"),
        ("Paiement refusé à l'étape 3", "ds-1234-paiement-refuse-a-l-etape-3"),
        ("!!! ??? ...", "ds-1234"),
        ("🚨🚨🚨", "ds-1234"),
        ("", "ds-1234"),
        ("snake_case & kebab-case", "ds-1234-snake-case-kebab-case"),
    ],
)
def test_channel_name_from_the_ds_template(summary: str, expected: str) -> None:
    """The DS procedure's `ds-####-issue-in-some-service`: summary slugged, emoji and
    punctuation dropped, accents folded; nothing left of the summary leaves the number."""
    assert channel_name("ds-{number}-{summary}", number="1234", summary=summary) == expected


def test_non_latin_summaries_are_transliterated() -> None:
    """Chinese, Cyrillic and Greek summaries give ASCII names Slack accepts."""
    for summary in ("数据库连接失败", "Ошибка оплаты", "Σφάλμα πληρωμής"):
        name = channel_name("ds-{number}-{summary}", number="7", summary=summary)
        assert valid_channel_name(name), name
        assert name.startswith("ds-7-") and len(name) > len("ds-7-"), name


def test_long_summaries_are_cut_at_a_word_to_eighty() -> None:
    """A long summary is shortened at a word boundary; the ticket number always survives."""
    summary = "the payment service times out whenever a customer in the european region " * 3
    name = channel_name("ds-{number}-{summary}", number="98765", summary=summary)
    assert len(name) <= NAME_MAX and name.startswith("ds-98765-the-payment")
    assert not name.endswith("-") and name.split("-")[-1] in summary.split()


def test_other_fields_are_slugged_too() -> None:
    """Any template field is slugged (a key like "DS-12" included); an unknown one raises."""
    assert channel_name("esc-{key}-{summary}", key="DS-12", summary="VPN") == "esc-ds-12-vpn"
    assert channel_name("{key}", key="INC0010001") == "inc0010001"
    with pytest.raises(KeyError):
        channel_name("ds-{number}", summary="x")


@given(number=st.integers(min_value=1, max_value=10**9), summary=st.text(max_size=300))
def test_any_summary_gives_a_valid_name(number: int, summary: str) -> None:
    """Whatever the summary (any Unicode, any length), the name is valid and starts with the
    ticket's prefix."""
    name = channel_name("ds-{number}-{summary}", number=str(number), summary=summary)
    assert valid_channel_name(name), repr(name)
    assert name == f"ds-{number}" or name.startswith(f"ds-{number}-")


@given(base=st.from_regex(r"[a-z0-9][a-z0-9_-]{0,79}", fullmatch=True), n=st.integers(2, 999))
def test_suffixed_names_stay_valid(base: str, n: int) -> None:
    """`-2`, `-3`, ... fit within 80 characters whatever the base."""
    name = suffixed(base, n)
    assert valid_channel_name(name) and name.endswith(f"-{n}")


def test_slug_drops_symbols_and_folds_case() -> None:
    """Symbols (emoji, currency, maths) go; letters and digits stay, lower case."""
    assert slug("Ünïcödé ✓ €100 ≥ 99") == "unicode-100-99"


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("status", "body", "kind", "code"),
    [
        (200, {"ok": False, "error": "not_authed"}, SlackAuthFailed, "not_authed"),
        (200, {"ok": False, "error": "invalid_auth"}, SlackAuthFailed, "invalid_auth"),
        (200, {"ok": False, "error": "token_revoked"}, SlackAuthFailed, "token_revoked"),
        (200, {"ok": False, "error": "channel_not_found"}, SlackNotFound, "channel_not_found"),
        (200, {"ok": False, "error": "users_not_found"}, SlackNotFound, "users_not_found"),
        (200, {"ok": False, "error": "is_archived"}, SlackRefused, "is_archived"),
        (200, {"ok": False, "error": "msg_too_long"}, SlackRefused, "msg_too_long"),
        (200, {"ok": False, "error": "request_timeout"}, ServerUnavailable, "request_timeout"),
        (429, {"ok": False, "error": "ratelimited"}, RateLimited, "ratelimited"),
        (503, None, ServerUnavailable, None),
    ],
)
def test_errors_are_typed_by_what_to_do(
    status: int, body: dict[str, Any] | None, kind: type, code: str | None
) -> None:
    """Each Slack answer maps to retry, dead-letter or auth failure, keeping Slack's code."""
    error = error_for("chat.postMessage", status, {"Retry-After": "3"}, body)
    assert type(error) is kind
    assert error.system == "slack"
    if code:
        assert error.messages[0] == code
    if isinstance(error, RateLimited):
        assert error.retry_after == 3.0


def test_missing_scope_says_what_is_needed() -> None:
    """missing_scope carries `needed` and `provided` into the error and its message."""
    error = error_for(
        "conversations.create",
        200,
        {},
        {
            "ok": False,
            "error": "missing_scope",
            "needed": "channels:write",
            "provided": "chat:write",
        },
    )
    assert isinstance(error, SlackAuthFailed)
    assert (error.code, error.needed, error.provided) == (
        "missing_scope",
        "channels:write",
        "chat:write",
    )
    assert "needs channels:write" in str(error)


# ------------------------------------------------------------------------------ spec examples


@pytest.fixture
def fake() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


def answer(fake: responses.RequestsMock, method: str, body: dict[str, Any], **kw: Any) -> None:
    fake.add(responses.POST, f"{API}{method}", json=body, **kw)


def sent(call: Any) -> dict[str, Any]:
    """The arguments of a recorded request, form or JSON."""
    raw = call.request.body or b""
    text = raw.decode() if isinstance(raw, bytes) else raw
    if call.request.headers.get("Content-Type", "").startswith("application/json"):
        return dict(json.loads(text))
    return {k: v[-1] for k, v in parse_qs(text).items()}


def connector() -> SlackConnector:
    return SlackConnector(TOKEN, base_url=API, retry=NO_WAIT)


def test_identity_from_the_spec_example(fake: responses.RequestsMock) -> None:
    """auth.test's example answer gives the workspace URL and user; the token goes as a bearer
    header, never in the body; channel links are built on the workspace URL."""
    answer(
        fake,
        "auth.test",
        example("auth.test"),
        headers={"X-OAuth-Scopes": "chat:write,channels:read"},
    )
    slack = connector()
    me = slack.identity()
    assert (me.user_id, me.team_id) == ("W12345678", "T12345678")
    assert me.scopes == {"chat:write", "channels:read"}
    assert slack.channel_url("C0EAQDV4Z") == "https://subarachnoid.slack.com/archives/C0EAQDV4Z"
    request = fake.calls[0].request
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in str(request.body or "")


def test_ensure_channel_with_the_spec_examples(fake: responses.RequestsMock) -> None:
    """conversations.create's example answer is the new channel; purpose (with the marker) and
    topic are set, and setTopic's example answer (`ok` alone) is enough."""
    answer(fake, "auth.test", example("auth.test"))
    answer(fake, "conversations.create", example("conversations.create"))
    answer(fake, "conversations.setPurpose", {"ok": True})
    answer(fake, "conversations.setTopic", example("conversations.setTopic"))
    made = connector().ensure_channel(
        "ds-1-endeavor", marker="[esc DS-1]", topic="DS-1: checkout", purpose="Escalation DS-1"
    )
    assert made.created and made.channel.id == "C0EAQDV4Z"
    assert made.channel.purpose == "Escalation DS-1 [esc DS-1]"
    assert sent(fake.calls[1]) == {"name": "ds-1-endeavor", "is_private": "0"}
    assert sent(fake.calls[2]) == {"channel": "C0EAQDV4Z", "purpose": "Escalation DS-1 [esc DS-1]"}
    assert sent(fake.calls[3]) == {"channel": "C0EAQDV4Z", "topic": "DS-1: checkout"}


def test_name_taken_by_a_stranger_adds_a_suffix(fake: responses.RequestsMock) -> None:
    """`name_taken` by a channel without our marker, made by someone else: `-2` is created."""
    answer(fake, "auth.test", example("auth.test"))
    answer(fake, "conversations.create", {"ok": False, "error": "name_taken"})
    listing = example("conversations.list")
    listing = {**listing, "response_metadata": {"next_cursor": ""}}
    listing["channels"] = [{**listing["channels"][1], "name": "random"}]
    answer(fake, "conversations.list", listing)
    created = example("conversations.create")
    created = {**created, "channel": {**created["channel"], "name": "random-2"}}
    answer(fake, "conversations.create", created)
    answer(fake, "conversations.setPurpose", {"ok": True})
    made = connector().ensure_channel("random", marker="[esc DS-2]")
    assert made.created and made.channel.name == "random-2"
    assert sent(fake.calls[3])["name"] == "random-2"


def test_lookup_user_from_the_spec_examples(fake: responses.RequestsMock) -> None:
    """users.lookupByEmail's example is a member; its error example (`users_not_found`) is None."""
    answer(fake, "users.lookupByEmail", example("users.lookupByEmail"))
    answer(fake, "users.lookupByEmail", {"ok": False, "error": "users_not_found"})
    slack = connector()
    user = slack.lookup_user("spengler@ghostbusters.example.com")
    assert user is not None and user.id == "W012A3CDE" and user.real_name == "Egon Spengler"
    assert slack.lookup_user("nobody@example.com") is None


def test_post_looks_for_the_key_then_sends_metadata(fake: responses.RequestsMock) -> None:
    """post reads history (the spec's example: no message of ours), then sends the text with the
    key in the metadata, as JSON; chat.postMessage's example answer gives the ts."""
    history = {**example("conversations.history"), "has_more": False}
    answer(fake, "conversations.history", history)
    answer(fake, "chat.postMessage", example("chat.postMessage"))
    posted = connector().post("C1H9RESGL", "Escalation approved", key="DS-1:approved")
    assert posted.created and posted.ts == "1503435956.000247"
    assert sent(fake.calls[0])["include_all_metadata"] == "1"
    body = sent(fake.calls[1])
    assert body["metadata"] == {
        "event_type": "escalation_sync_event",
        "event_payload": {"key": "DS-1:approved"},
    }
    assert fake.calls[1].request.headers["Content-Type"].startswith("application/json")


def test_a_posted_key_is_not_posted_again(fake: responses.RequestsMock) -> None:
    """A message already carrying the key is answered; nothing is sent."""
    mine = {
        "type": "message",
        "text": "Escalation approved",
        "ts": "1512085950.000216",
        "metadata": {
            "event_type": "escalation_sync_event",
            "event_payload": {"key": "DS-1:approved"},
        },
    }
    answer(
        fake,
        "conversations.history",
        {**example("conversations.history"), "messages": [mine], "has_more": False},
    )
    posted = connector().post("C1H9RESGL", "Escalation approved", key="DS-1:approved")
    assert not posted.created and posted.ts == "1512085950.000216"


def test_429_is_rate_limited_with_retry_after(fake: responses.RequestsMock) -> None:
    """HTTP 429 with Retry-After past the policy's patience fails at once with the wait, and the
    method stays gated without another request."""
    answer(
        fake,
        "conversations.create",
        {"ok": False, "error": "ratelimited"},
        status=429,
        headers={"Retry-After": "120"},
    )
    answer(fake, "auth.test", example("auth.test"))
    slack = connector()
    with pytest.raises(RateLimited) as limited:
        slack.ensure_channel("ds-3", marker="m")
    assert limited.value.retry_after == 120.0
    with pytest.raises(RateLimited):
        slack.ensure_channel("ds-3", marker="m")
    assert [(c.request.url or "").rsplit("/", 1)[1] for c in fake.calls] == [
        "auth.test",
        "conversations.create",
    ]


def test_html_page_is_server_unavailable(fake: responses.RequestsMock) -> None:
    """A 503 page that is not JSON is a retryable server failure (three attempts)."""
    for _ in range(3):
        fake.add(
            responses.POST,
            f"{API}auth.test",
            body="<html>down</html>",
            status=503,
            content_type="text/html",
        )
    with pytest.raises(ServerUnavailable):
        connector().identity()


def test_auth_failures_never_show_the_token(fake: responses.RequestsMock) -> None:
    """A refused token is SlackAuthFailed with Slack's code; the message names no token."""
    answer(fake, "auth.test", {"ok": False, "error": "invalid_auth"})
    with pytest.raises(SlackAuthFailed) as failed:
        connector().identity()
    assert failed.value.code == "invalid_auth"
    assert TOKEN not in str(failed.value) and failed.value.__context__ is None
