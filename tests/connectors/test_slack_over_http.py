"""The Slack connector against the Slack simulator over real HTTP: channels made once, people
invited by email, messages posted once per key, rate limits and faults survived."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from connectors.errors import RateLimited
from connectors.retry import RetryPolicy
from connectors.slack import SlackAuthFailed, SlackConnector, SlackNotFound, channel_name
from simulators.common import FaultConfig
from simulators.slack import RateLimits, SlackSimulator

pytestmark = pytest.mark.e2e

MARKER = "[escalation-sync ticket=jira:DS-1234]"
NO_WAIT = RetryPolicy(attempts=4, sleep=lambda _s: None)


@pytest.fixture
def slack() -> Iterator[SlackSimulator]:
    with SlackSimulator(rate_limits=RateLimits(enabled=False)) as sim:
        yield sim


def connect(sim: SlackSimulator, **kw: Any) -> SlackConnector:
    kw.setdefault("retry", NO_WAIT)
    return SlackConnector(sim.bot_token, base_url=sim.api_url, **kw)


def named(sim: SlackSimulator, prefix: str) -> list[dict[str, Any]]:
    return [c for c in sim.channels() if c["name"].startswith(prefix)]


def calls(sim: SlackSimulator, method: str) -> int:
    return int(sim.stats()["requests"].get(f"POST /api/{method}", 0))


def test_channel_is_created_once_and_found_again(slack: SlackSimulator) -> None:
    """The first call creates, marks and describes the channel; the second finds it (no second
    channel, nothing set twice)."""
    name = channel_name("ds-{number}-{summary}", number="1234", summary="Checkout fails 🔥")
    first = connect(slack).ensure_channel(
        name, marker=MARKER, topic="DS-1234 http://jira/browse/DS-1234", purpose="Escalation"
    )
    assert first.created and first.channel.name == "ds-1234-checkout-fails"
    stored = slack.channel_named("ds-1234-checkout-fails")
    assert stored is not None
    assert stored["purpose"]["value"] == f"Escalation {MARKER}"
    assert stored["topic"]["value"] == "DS-1234 http://jira/browse/DS-1234"
    again = connect(slack).ensure_channel(
        name, marker=MARKER, topic="DS-1234 http://jira/browse/DS-1234", purpose="Escalation"
    )
    assert not again.created and again.channel.id == first.channel.id
    assert again.url == f"https://escalation-sync-sim.slack.com/archives/{first.channel.id}"
    assert len(named(slack, "ds-1234")) == 1
    assert calls(slack, "conversations.setPurpose") == 1
    assert calls(slack, "conversations.setTopic") == 1


def test_a_crash_between_creating_and_marking_makes_no_second_channel(
    slack: SlackSimulator,
) -> None:
    """A channel our bot created but never marked (the process died in between) is finished,
    not duplicated."""
    requests.post(
        f"{slack.api_url}conversations.create",
        data={"name": "ds-77-vpn-down"},
        headers={"Authorization": f"Bearer {slack.bot_token}"},
        timeout=10,
    )
    made = connect(slack).ensure_channel("ds-77-vpn-down", marker=MARKER, purpose="Escalation")
    assert not made.created and made.channel.purpose == f"Escalation {MARKER}"
    assert [c["name"] for c in named(slack, "ds-77")] == ["ds-77-vpn-down"]


def test_names_taken_by_others_get_a_suffix(slack: SlackSimulator) -> None:
    """A person's channel, one of ours for another ticket and an archived one of ours each push
    the name on: -2, -3, -4."""
    slack.add_channel("ds-5-login")
    connect(slack).ensure_channel("ds-5-login", marker="[other ticket]")  # becomes ds-5-login-2
    third = connect(slack).ensure_channel("ds-5-login", marker=MARKER)
    assert third.created and third.channel.name == "ds-5-login-3"
    connect(slack).archive(third.channel.id)
    fourth = connect(slack).ensure_channel("ds-5-login", marker=MARKER)
    assert fourth.channel.name == "ds-5-login-4"
    assert fourth.channel.id != third.channel.id


def test_invite_by_email_lists_people_not_in_slack(slack: SlackSimulator) -> None:
    """People are found by email and invited once; addresses without an (active) account are
    listed, not an error; the bot never invites itself."""
    lee = slack.add_user("lee", "Lee Support", "lee@example.com")
    erin = slack.add_user("erin", "Erin Engineer", "erin@example.com")
    slack.add_user("gone", "Gone Person", "gone@example.com", deleted=True)
    made = connect(slack).ensure_channel("ds-8-invite", marker=MARKER)
    result = connect(slack).invite(
        made.channel.id,
        ["lee@example.com", "ERIN@example.com", "carol@customer.example", "gone@example.com"],
    )
    assert result.invited == ("lee@example.com", "ERIN@example.com")
    assert result.not_in_slack == ("carol@customer.example", "gone@example.com")
    assert slack.members(made.channel.id) == [slack.bot.id, lee.id, erin.id]
    again = connect(slack).invite(made.channel.id, ["lee@example.com", "new@example.com"])
    assert again.already_members == ("lee@example.com",)
    assert again.invited == () and again.not_in_slack == ("new@example.com",)


def test_invite_mixed_new_and_existing_members(slack: SlackSimulator) -> None:
    """One call inviting a member and a newcomer ends with both in, each reported rightly."""
    slack.add_user("lee", "Lee Support", "lee@example.com")
    ann = slack.add_user("ann", "Ann Analyst", "ann@example.com")
    made = connect(slack).ensure_channel("ds-9-invite", marker=MARKER)
    connect(slack).invite(made.channel.id, ["lee@example.com"])
    result = connect(slack).invite(made.channel.id, ["lee@example.com", "ann@example.com"])
    assert result.already_members == ("lee@example.com",)
    assert result.invited == ("ann@example.com",)
    assert ann.id in slack.members(made.channel.id)


class DropFirstAnswer(HTTPAdapter):
    """Sends every request, but loses the answer to the first one for `method`."""

    def __init__(self, method: str) -> None:
        super().__init__()
        self.method = method
        self.dropped = 0

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().send(request, *args, **kwargs)
        if request.url.endswith(self.method) and not self.dropped:
            self.dropped += 1
            raise requests.ConnectionError("connection reset after the request was sent")
        return response


def test_a_lost_answer_never_posts_twice(slack: SlackSimulator) -> None:
    """chat.postMessage reaches Slack but its answer is lost: the retry finds the message by
    its key and posts nothing more."""
    made = connect(slack).ensure_channel("ds-10-post", marker=MARKER)
    session = requests.Session()
    flaky = DropFirstAnswer("chat.postMessage")
    session.mount("http://", flaky)
    slack_api = connect(slack, session=session)
    posted = slack_api.post(made.channel.id, "Escalation approved", key="DS-10:approved")
    assert flaky.dropped == 1 and not posted.created
    keyed = [m for m in slack.messages(made.channel.id) if "metadata" in m]
    assert len(keyed) == 1 and keyed[0]["ts"] == posted.ts
    assert connect(slack).post(made.channel.id, "again", key="DS-10:approved").created is False
    assert calls(slack, "chat.postMessage") == 1


def test_find_message_reads_past_the_first_page(slack: SlackSimulator) -> None:
    """A keyed message under 250 newer ones is found on a later history page."""
    made = connect(slack).ensure_channel("ds-11-busy", marker=MARKER)
    slack_api = connect(slack)
    posted = slack_api.post(made.channel.id, "Escalation approved", key="DS-11:approved")
    person = slack.add_user("lee", "Lee Support", "lee@example.com")
    for n in range(250):
        slack.post_as(person, made.channel.id, f"chatter {n}")
    found = slack_api.find_message(made.channel.id, "DS-11:approved")
    assert found is not None and found.ts == posted.ts
    assert found.payload == {"key": "DS-11:approved"}
    assert slack_api.find_message(made.channel.id, "DS-11:nothing") is None


def test_archive_is_idempotent(slack: SlackSimulator) -> None:
    """Archiving answers True the first time and False once archived, never an error."""
    made = connect(slack).ensure_channel("ds-12-close", marker=MARKER)
    assert connect(slack).archive(made.channel.id) is True
    assert connect(slack).archive(made.channel.id) is False


def test_revoked_token_and_missing_scope_are_auth_failures(slack: SlackSimulator) -> None:
    """A revoked token and a token without channels:write fail as SlackAuthFailed, saying why."""
    thin = slack.add_token("xoxb-thin", slack.bot, ["chat:write"])
    with pytest.raises(SlackAuthFailed) as scoped:
        SlackConnector(thin, base_url=slack.api_url, retry=NO_WAIT).ensure_channel(
            "ds-13", marker=MARKER
        )
    assert (scoped.value.code, scoped.value.needed) == ("missing_scope", "channels:write")
    assert scoped.value.provided == "chat:write"
    slack.revoke_token(slack.bot_token)
    with pytest.raises(SlackAuthFailed) as revoked:
        connect(slack).ensure_channel("ds-13", marker=MARKER)
    assert revoked.value.code == "token_revoked"


def test_posting_to_an_unknown_channel_is_not_found(slack: SlackSimulator) -> None:
    """A channel that does not exist is SlackNotFound (dead-letter), not retried."""
    with pytest.raises(SlackNotFound):
        connect(slack).post("C0NOSUCHONE", "x", key="k", lookup=False)


def test_per_channel_post_limit_is_waited_out() -> None:
    """chat.postMessage's per-channel limit answers 429 with Retry-After: the connector waits
    that long and posts; every message arrives once."""
    limits = RateLimits(post_per_second=1.0, post_burst=1)
    with SlackSimulator(rate_limits=limits) as sim:
        slept: list[float] = []

        def sleep(seconds: float) -> None:
            slept.append(seconds)
            time.sleep(seconds)

        slack_api = connect(sim, retry=RetryPolicy(attempts=5, sleep=sleep))
        made = slack_api.ensure_channel("ds-14-busy", marker=MARKER)
        for n in range(3):
            slack_api.post(made.channel.id, f"update {n}", key=f"DS-14:{n}", lookup=False)
        keyed = [m for m in sim.messages(made.channel.id) if "metadata" in m]
        assert [m["text"] for m in keyed] == ["update 0", "update 1", "update 2"]
        assert slept and all(s >= 1.0 for s in slept)
        assert sim.stats()["requests"]["POST /api/chat.postMessage"] > 3


def test_a_long_rate_limit_is_handed_back_and_gates_only_that_method() -> None:
    """A Retry-After past the policy's patience comes back as RateLimited at once; the same
    method is not called again until then, other methods still are."""
    with SlackSimulator(rate_limits=RateLimits(tier2=1)) as sim:
        slack_api = connect(
            sim, retry=RetryPolicy(attempts=3, defer_after=5, sleep=lambda _s: None)
        )
        slack_api.ensure_channel("ds-15-a", marker=MARKER)
        with pytest.raises(RateLimited) as limited:
            slack_api.ensure_channel("ds-15-b", marker=MARKER)
        assert limited.value.retry_after is not None and limited.value.retry_after > 5
        before = calls(sim, "conversations.create")
        with pytest.raises(RateLimited):
            slack_api.ensure_channel("ds-15-c", marker=MARKER)
        assert calls(sim, "conversations.create") == before
        assert slack_api.lookup_user("alex.owner@example.com") is not None


def test_a_rate_limit_storm_converges() -> None:
    """Half of all calls answered 429 (Retry-After 0): the escalation's channel, invitations and
    messages all end up there exactly once."""
    with SlackSimulator(
        rate_limits=RateLimits(enabled=False),
        faults=FaultConfig(rate_429=0.5, retry_after_seconds=0, seed=7),
    ) as sim:
        sim.add_user("lee", "Lee Support", "lee@example.com")
        slack_api = connect(sim, retry=RetryPolicy(attempts=12, sleep=lambda _s: None))
        made = slack_api.ensure_channel("ds-16-storm", marker=MARKER, topic="t", purpose="p")
        slack_api.invite(made.channel.id, ["lee@example.com"])
        for n in range(5):
            slack_api.post(made.channel.id, f"event {n}", key=f"DS-16:{n}")
        assert sim.stats()["faults"]["429"] > 5
        assert len(named(sim, "ds-16")) == 1
        keyed = [m for m in sim.messages(made.channel.id) if "metadata" in m]
        assert [m["text"] for m in keyed] == [f"event {n}" for n in range(5)]
        assert len(sim.members(made.channel.id)) == 2
