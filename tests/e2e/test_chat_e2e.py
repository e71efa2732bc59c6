"""The escalation's chat room end to end: the DS procedure's Slack channel over real HTTP.

ServiceNow, Jira, the mail sink and the Slack simulator run on loopback; the engine runs the DS
preset with `[notify.slack]` pointed at the simulator, and the outbox worker sends through every
configured notifier (its record synced again when a room settles, as the daemon does).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import sessionmaker

import presets
from simulators.estate import SUPPORT_WORKFLOW
from simulators.slack import SlackSimulator
from simulators.slack.limits import RateLimits
from sync.notify import outbox
from sync.notify.outbox import OutboxWorker
from sync.notify.registry import build_notifiers
from sync.runtime.health import HealthBoard, HealthPolicy, verdict
from tests.e2e.conftest import (
    CUSTOMER,
    EXAMPLE_CONFIG,
    Harness,
    make_harness,
    notes_with,
    preset_projects,
    step,
)

pytestmark = pytest.mark.e2e

CONTACT = "dana.ops@example.com"
SUMMARY = "Payments to biller fail in EU"
DESCRIPTION = (
    "Since the 4.2 deploy payments to the biller fail. We cannot investigate further without "
    f"Dev Support.\nContact: Dana Ops <{CONTACT}>"
)


@dataclass
class Chat:
    """A harness whose outbox also sends to the Slack simulator."""

    h: Harness
    slack: SlackSimulator
    health: HealthBoard

    def channel(self, prefix: str = "ds-") -> dict[str, Any]:
        [found] = [c for c in self.slack.channels() if c["name"].startswith(prefix)]
        return found

    def texts(self, channel_id: str) -> list[str]:
        return [m["text"] for m in self.slack.messages(channel_id) if m.get("metadata")]

    def member_emails(self, channel_id: str) -> set[str]:
        users = self.slack.workspace.users
        return {users[u].email or "" for u in self.slack.members(channel_id)} - {""}

    def creates(self) -> int:
        return int(self.slack.stats()["requests"].get("POST /api/conversations.create", 0))


def chat_harness(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    preset: str = "ds_ticket_limits",
    slack_config: str = "",
    policy_extra: str = "",
    rate_limits: RateLimits | None = None,
) -> Chat:
    """The DS preset (or another) with Slack configured; people seeded in both places."""
    slack = SlackSimulator(rate_limits=rate_limits or RateLimits(enabled=False)).start()
    policy = tmp_path / "policy.toml"
    policy.write_text(presets.preset_path(preset).read_text() + policy_extra)
    config = tmp_path / "config.toml"
    config.write_text(
        f'policy_file = "{policy}"\n'
        + EXAMPLE_CONFIG.read_text()
        + f'\n[notify.slack]\nbase_url = "{slack.api_url}"\n{slack_config}'
    )
    monkeypatch.setenv("ESCALATION_SYNC_NOTIFY__SLACK__TOKEN", slack.bot_token)
    h = make_harness(
        tmp_path,
        monkeypatch,
        escalation=True,
        config=config,
        jira_projects=preset_projects(preset),
    )
    h._stops.append(slack.stop)
    health = HealthBoard(h.store.db)
    h.outbox = OutboxWorker(
        sessionmaker(h.store.db, expire_on_commit=False),
        build_notifiers(h.settings),
        clock=lambda: h.engine.clock(),
        base_delay=timedelta(0),
        health=health,
        probe_interval=timedelta(0),
        resync=h.queue.enqueuer("outbox"),
    )
    for user in ("lead.1", "devsupport.1"):
        h.servicenow.add_user(user, name=user.title(), email=f"{user}@example.com")
        slack.add_user(user, user.title(), f"{user}@example.com")
    slack.add_user("crew.lead", "Crew Lead", "crew.lead@example.com")
    return Chat(h, slack, health)


@pytest.fixture
def chat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Chat]:
    c = chat_harness(tmp_path, monkeypatch)
    try:
        yield c
    finally:
        c.h.close()


def escalate(c: Chat, summary: str = SUMMARY, description: str = DESCRIPTION) -> str:
    """An incident a lead escalates and Dev Support approves, decided; returns its sys_id."""
    h = c.h
    sys_id = h.incident(short_description=summary, description=description)
    h.servicenow.add_work_note(sys_id, "/escalate merchant outage", as_user="lead.1")
    h.servicenow.add_work_note(sys_id, "/approve-escalation", as_user="devsupport.1")
    step(h, sys_id)
    return sys_id


def ds_key(c: Chat, sys_id: str) -> str:
    link = c.h.store.get_link("servicenow", sys_id)
    assert link is not None
    return link.side("jira").ticket_id


def test_ds_story_in_slack(chat: Chat) -> None:
    """The DS procedure's channel: made once when the DS issue exists, named ds-<number>-<brief
    description>, its people invited (those without Slack or an address listed in a work note),
    its link in the DS ticket and the incident, each key event posted once, archived at
    closure."""
    h, slack = chat.h, chat.slack
    dev = h.jira.add_user("acc-dev-1", "Dev One", "dev.one@example.com")
    slack.add_user("dev.one", "Dev One", "dev.one@example.com")
    sys_id = escalate(chat)
    key = ds_key(chat, sys_id)
    number = key.split("-")[1]
    channel = chat.channel()
    assert channel["name"] == f"ds-{number}-payments-to-biller-fail-in-eu"
    assert not channel["is_private"]
    assert "[escalation-sync " in channel["purpose"]["value"]
    assert channel["topic"]["value"] == f"{key}: {SUMMARY}"
    assert chat.member_emails(channel["id"]) >= {
        "lead.1@example.com",
        "devsupport.1@example.com",
        "crew.lead@example.com",
    }
    url = f"/archives/{channel['id']}"
    [link_note] = notes_with(h, sys_id, url)
    assert f"#{channel['name']}" in link_note
    reporter = h.servicenow.incident(sys_id)["opened_by"]
    assert f"No e-mail address known, so not invited: reporter {reporter}." in link_note
    [not_in_slack] = notes_with(h, sys_id, "Not in Slack")
    assert CONTACT in not_in_slack
    comments = [c for c in h.jira_comments(key) if url in str(c["body"])]
    assert len(comments) == 1 and f"#{channel['name']}" in str(comments[0]["body"])
    [approved] = chat.texts(channel["id"])
    assert approved.startswith(f"Escalation approved: {h.servicenow.incident(sys_id)['number']}")
    assert "approved by devsupport.1" in approved and "Reason: merchant outage" in approved

    # Dev Support assigns the DS issue and starts on it; L1 lowers the priority.
    h.jira.edit(key, {"assignee": {"accountId": dev.account_id}})
    h.jira.transition(key, "In Progress")
    h.drain()
    step(h, sys_id)
    assert "dev.one@example.com" in chat.member_emails(channel["id"])
    h.servicenow.update_incident(sys_id, {"impact": "1", "urgency": "2"}, as_user="beth.anglin")
    step(h, sys_id)
    texts = chat.texts(channel["id"])
    assert f"Engineering record {key} is now in progress (was new)." in texts
    # The DS procedure pins escalations at Highest: the lowered priority is set back, with a
    # note, and the channel hears of no change.
    assert h.servicenow.incident(sys_id)["priority"] == "1"
    assert notes_with(h, sys_id, "This escalation keeps P1, so the priority was set back.")
    assert not [t for t in chat.texts(channel["id"]) if t.startswith("Priority changed")]

    # Engineering resolves; the incident is closed.
    h.jira.comment(key, "Root cause: the biller's certificate expired; renewed.", public=True)
    h.jira.transition(key, "Done")
    h.drain()
    step(h, sys_id)
    assert any(
        t.startswith(f"Engineering resolved {key}.") and "certificate expired" in t
        for t in chat.texts(channel["id"])
    )
    assert not chat.channel()["is_archived"]
    h.servicenow.update_incident(sys_id, {"state": "7"}, as_user="beth.anglin")
    step(h, sys_id)
    assert chat.channel()["is_archived"]

    # Everything once: deciding again changes nothing anywhere.
    posted = chat.texts(channel["id"])
    notes = h.snow_journal_text(sys_id)
    step(h, sys_id)
    step(h, sys_id)
    assert chat.texts(channel["id"]) == posted
    assert h.snow_journal_text(sys_id) == notes
    assert (
        len(posted) == len(set(posted)) == 3
    )  # approved, in progress, resolved (no priority change)
    assert chat.creates() == 1
    with h.store.session() as tx:
        counts = outbox.status_counts(tx, channel="slack")
    assert counts["sent"] > 0 and counts["pending"] == counts["dead"] == 0


@pytest.mark.parametrize(
    ("summary", "expected"),
    [
        ("🔥💥 Checkout down 🚨", "ds-{n}-checkout-down"),
        ("Платежи не проходят", "ds-{n}-platezhi-ne-prokhodyat"),
        ("?!?! ... ---", "ds-{n}"),
    ],
)
def test_emoji_non_latin_and_punctuation_summaries_name_a_valid_channel(
    chat: Chat, summary: str, expected: str
) -> None:
    """Emoji are dropped, other scripts transliterated, and a summary of nothing but
    punctuation leaves the DS number alone: Slack takes each name the first time."""
    sys_id = escalate(chat, summary=summary)
    number = ds_key(chat, sys_id).split("-")[1]
    assert chat.channel()["name"] == expected.format(n=number)
    assert chat.creates() == 1
    assert notes_with(chat.h, sys_id, f"/archives/{chat.channel()['id']}")


def test_a_revoked_token_leaves_one_note_and_the_escalation_goes_on(chat: Chat) -> None:
    """Slack refusing the token (token_revoked): the DS issue is still created and linked, the
    incident gets one work note saying the channel could not be made and why, and the Slack
    channel is paused in the daemon's health."""
    h = chat.h
    chat.slack.revoke_token(chat.slack.bot_token)
    sys_id = escalate(chat)
    key = ds_key(chat, sys_id)
    assert h.jira.issue(key)["fields"]["labels"] == ["ESCALATION"]
    step(h, sys_id)
    step(h, sys_id)
    [note] = notes_with(h, sys_id, "Slack channel for this escalation could not be made")
    assert "token_revoked" in note
    assert chat.slack.bot_token not in note
    paused = chat.health.paused("slack")
    assert paused is not None and "token_revoked" in paused
    judged = verdict(
        chat.health.states(fresh=True).values(),
        datetime.now(UTC),
        HealthPolicy.from_settings(h.settings),
    )
    assert any(p.startswith("slack paused: authentication refused") for p in judged.problems)
    assert not [c for c in chat.slack.channels() if c["name"].startswith("ds-")]


def test_a_missing_scope_says_which_and_the_escalation_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token without channels:write: one work note naming the scope needed and those the
    token has; the escalation is approved and its DS issue made all the same."""
    c = chat_harness(tmp_path, monkeypatch)
    try:
        limited = "xoxb-sim-no-channels-write"
        c.slack.add_token(limited, c.slack.bot, ("channels:read", "chat:write", "users:read"))
        monkeypatch.setenv("ESCALATION_SYNC_NOTIFY__SLACK__TOKEN", limited)
        c.h.outbox.notifiers = build_notifiers(load_settings_again(c))
        sys_id = escalate(c)
        assert ds_key(c, sys_id).startswith("DS-")
        step(c.h, sys_id)
        [note] = notes_with(c.h, sys_id, "Slack channel for this escalation could not be made")
        assert "missing_scope (needs channels:write; the token has channels:read" in note
        assert limited not in note
        paused = c.health.paused("slack")
        assert paused is not None and "missing_scope" in paused
    finally:
        c.h.close()


def load_settings_again(c: Chat) -> Any:
    """The harness's settings read again (the environment changed), e-mail still to the sink."""
    from sync.config.settings import load_settings

    settings = load_settings(Path(c.h.settings.source))
    settings.email_settings = c.h.settings.email_settings
    return settings


def test_the_escalation_resource_joins_the_team_channel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The L1/L2/L3 preset names a channel to join: the bot joins it, the SME who takes L2 and
    the Team Leader who sends it to L3 are invited, and each step is posted there naming the
    incident; no channel is made and none archived."""
    c = chat_harness(tmp_path, monkeypatch, preset="l1_l2_l3_team_leader")
    try:
        h, slack = c.h, c.slack
        for user in ("sme.1", "team.leader.1"):
            h.servicenow.add_user(user, name=user.title(), email=f"{user}@example.com")
            slack.add_user(user, user.title(), f"{user}@example.com")
        for project in ("L2", "VENDOR"):
            h.jira.add_project(project, f"{project} engineering", workflow=SUPPORT_WORKFLOW)
        team = slack.add_channel("support-escalations")
        sys_id = h.incident(short_description="Outlook crashes", description="Closes at once.")
        number = h.servicenow.incident(sys_id)["number"]
        h.servicenow.add_comment(
            sys_id, "/escalate blocks our sales team", as_user="carla.customer"
        )
        step(h, sys_id)
        h.servicenow.add_work_note(sys_id, "/approve-escalation taking this", as_user="sme.1")
        step(h, sys_id)
        assert slack.bot.id in slack.members(team["id"])
        assert "sme.1@example.com" in c.member_emails(team["id"])
        [approved] = c.texts(team["id"])
        assert approved.startswith(f'Escalation approved: {number} "Outlook crashes"')
        assert notes_with(h, sys_id, f"/archives/{team['id']}")

        h.servicenow.add_work_note(
            sys_id, "Troubleshooting: safe mode. Outcome: still crashes.", as_user="beth.anglin"
        )
        h.servicenow.add_comment(sys_id, "/escalate we need Microsoft", as_user=CUSTOMER)
        step(h, sys_id)
        h.servicenow.add_work_note(sys_id, "/approve-escalation to vendor", as_user="team.leader.1")
        step(h, sys_id)
        assert "team.leader.1@example.com" in c.member_emails(team["id"])
        assert c.texts(team["id"])[1] == (
            f"{number}: Escalation level changed: L2 → L3. Approved by team.leader.1."
            "\nReason: we need Microsoft"
        )
        assert c.creates() == 0
        assert not c.channel("support-")["is_archived"]
    finally:
        c.h.close()
