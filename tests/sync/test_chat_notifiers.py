"""The chat notifiers on the seam: Slack's and Teams' rows, settings and sending, Teams through
a strict Graph double built from Microsoft's documented bodies."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session, sessionmaker

from connectors.retry import RetryPolicy
from connectors.teams import TeamsConnector, key_line
from mapping.errors import ConfigInvalid
from simulators.slack.state import check_channel_name
from sync.config.settings import load_settings
from sync.notify import outbox, rooms
from sync.notify.channels import slack, teams
from sync.notify.notifier import ChatContext, Notice, Notifiers, Room
from sync.notify.outbox import OutboxWorker
from sync.notify.registry import build_notifiers
from sync.runtime.health import HealthBoard
from sync.store.database import Store
from tests.connectors.graph_fake import APP_TOKEN, USER_TOKEN, GraphFake
from tests.sync.test_notifiers import management_notice

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config.example.toml"
T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
TEAM = "57fb72d0-d811-46f4-8947-305e6072eaa5"


def room(**changes: Any) -> Room:
    values: dict[str, Any] = {
        "key": "INC0010042|room|20261204T090000Z",
        "ticket": "INC0010042",
        "name": "ds-{number}-{summary}",
        "fields": {"number": "42", "summary": "Checkout fails: EU & UK <prod>"},
        "topic": "DS-42: Checkout fails: EU & UK <prod>",
        "marker": "[escalation-sync INC0010042]",
        "record": "servicenow:abc123",
        "links": (("ITSM record", "https://sn.example.com/inc"),),
    }
    values.update(changes)
    return Room(**values)


def stakeholders(event: str, context: ChatContext, version: str = "v1") -> Notice:
    return Notice(
        audience="stakeholders",
        event=event,
        template=event,
        ticket=context.room.ticket,
        version=version,
        context=context,
        recipients=context.members,
    )


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        yield sessionmaker(store.db, expire_on_commit=False)
    finally:
        store.close()


# ------------------------------------------------------------------------------ Slack


def slack_notifier() -> slack.SlackNotifier:
    return slack.SlackNotifier(slack.Settings(token="xoxb-test"))


def test_slack_lays_out_a_room_its_invitations_and_messages() -> None:
    """An opening notice drafts the channel (slugged name, topic, marker and links in its
    purpose, the record to sync again) and one invitation; a message is escaped for Slack and
    addressed to the channel once it exists."""
    notifier = slack_notifier()
    opened = stakeholders(rooms.OPEN, ChatContext(room(), members=("a@x.org", "b@x.org")))
    [channel, invite] = notifier.compose(opened)
    assert (channel.kind, channel.key, channel.destination) == (
        "resource",
        "INC0010042|room|20261204T090000Z",
        ("ds-42-checkout-fails-eu-uk-prod",),
    )
    assert channel.text == "DS-42: Checkout fails: EU & UK <prod>"
    assert channel.extra["marker"] == "[escalation-sync INC0010042]"
    assert channel.extra["resync"] == "servicenow:abc123"
    assert "ITSM record: https://sn.example.com/inc" in channel.extra["purpose"]
    assert invite.destination == ("created:INC0010042|room|20261204T090000Z",)
    assert invite.extra["members"] == ["a@x.org", "b@x.org"]
    said = stakeholders("chat:approved", ChatContext(room(), text="P1 <now> & then"))
    [_, message] = notifier.compose(said)
    assert message.text == "P1 &lt;now&gt; &amp; then"
    assert message.key == "INC0010042|room|20261204T090000Z|approved|v1"


def test_a_shared_room_keeps_the_agents_links_out_of_its_purpose() -> None:
    """A room shared with the customer names the ticket in its purpose, not the agents' links."""
    [channel] = slack_notifier().compose(stakeholders(rooms.OPEN, ChatContext(room(shared=True))))
    assert channel.extra["purpose"] == "Escalation of INC0010042."


def test_chat_notifiers_and_email_each_keep_to_their_audiences() -> None:
    """Slack and Teams compose nothing for customer or management mail; e-mail composes nothing
    for a chat room."""
    teams_notifier = teams.TeamsNotifier(
        teams.Settings(tenant_id="t", client_id="c", client_secret="s")
    )
    assert slack_notifier().compose(management_notice()) == []
    assert teams_notifier.compose(management_notice()) == []
    from sync.notify.channels.email import EmailNotifier

    email = EmailNotifier(object(), id_domain="example.com")  # type: ignore[arg-type]
    assert email.compose(stakeholders(rooms.OPEN, ChatContext(room()))) == []


@settings(max_examples=200, deadline=None)
@given(summary=st.text(max_size=200), number=st.integers(min_value=1, max_value=10**7))
def test_any_summary_gives_a_name_slack_takes(summary: str, number: int) -> None:
    """Emoji, other scripts, punctuation only or nothing at all: the drafted name passes the
    simulator's copy of Slack's rules for conversations.create."""
    fields = {"number": str(number), "summary": summary}
    [channel] = slack_notifier().compose(stakeholders(rooms.OPEN, ChatContext(room(fields=fields))))
    check_channel_name(channel.destination[0])
    assert channel.destination[0].startswith(f"ds-{number}")


def test_slack_settings_come_from_the_environment_or_a_file_and_stay_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token is read from ESCALATION_SYNC_NOTIFY__SLACK__TOKEN or token_file, never shown;
    without one the table is refused with its key."""
    config = tmp_path / "config.toml"
    config.write_text(
        EXAMPLE.read_text() + '\n[notify.slack]\nbase_url = "http://127.0.0.1:9/api/"\n'
    )
    with pytest.raises(ConfigInvalid) as refused:
        load_settings(config)
    assert [e.key for e in refused.value.errors] == ["notify.slack"]
    assert "ESCALATION_SYNC_NOTIFY__SLACK__TOKEN" in refused.value.errors[0].reason
    monkeypatch.setenv("ESCALATION_SYNC_NOTIFY__SLACK__TOKEN", "xoxb-from-env")
    loaded = load_settings(config)
    model = loaded.notify_settings["slack"]
    assert isinstance(model, slack.Settings) and model.token is not None
    assert model.token.get_secret_value() == "xoxb-from-env"
    assert model.base_url == "http://127.0.0.1:9/api/"
    assert "xoxb-from-env" not in repr(model) and "xoxb-from-env" not in repr(loaded)
    assert isinstance(build_notifiers(loaded).get("slack"), slack.SlackNotifier)
    monkeypatch.delenv("ESCALATION_SYNC_NOTIFY__SLACK__TOKEN")
    secret = tmp_path / "slack-token"
    secret.write_text("xoxb-from-file\n")
    config.write_text(EXAMPLE.read_text() + f'\n[notify.slack]\ntoken_file = "{secret}"\n')
    from_file = load_settings(config).notify_settings["slack"]
    assert isinstance(from_file, slack.Settings) and from_file.token is not None
    assert from_file.token.get_secret_value() == "xoxb-from-file"


def test_teams_settings_refuse_a_table_without_its_secret(tmp_path: Path) -> None:
    """[notify.teams] without the application's secret, or with a misspelt key, is refused with
    file and key."""
    config = tmp_path / "config.toml"
    config.write_text(
        EXAMPLE.read_text() + '\n[notify.teams]\ntenant_id = "t"\nclient_id = "c"\nteam = "x"\n'
    )
    with pytest.raises(ConfigInvalid) as refused:
        load_settings(config)
    found = {(e.key, e.reason.split(":")[0]) for e in refused.value.errors}
    assert ("notify.teams.team", "unknown key 'team' (misspelt?)") in found
    assert all(e.file == str(config) for e in refused.value.errors)


# ------------------------------------------------------------------------------ Teams


@pytest.fixture
def graph() -> Iterator[GraphFake]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake = GraphFake(mock)
        fake.add_team(TEAM)
        yield fake


def teams_notifier(*, team: str | None = TEAM, user: bool = True) -> teams.TeamsNotifier:
    config = teams.Settings(
        tenant_id="tenant-1",
        client_id="client-1",
        client_secret="app-secret",
        team_id=team,
        username="svc@example.com",
    )
    connector = TeamsConnector(
        app_token=lambda: APP_TOKEN,
        user_token=(lambda: USER_TOKEN) if user else None,
        session=requests.Session(),
        retry=RetryPolicy(attempts=3, sleep=lambda _s: None),
    )
    return teams.TeamsNotifier(config, connector)


def play(
    sessions: sessionmaker[Session], notifier: Any, notices: list[Notice], **options: Any
) -> OutboxWorker:
    with sessions.begin() as tx:
        for notice in notices:
            outbox.enqueue_drafts(tx, notifier, notice, now=T0)
    worker = OutboxWorker(sessions, Notifiers([notifier]), clock=lambda: T0, **options)
    worker.run_once()
    return worker


def test_teams_room_people_messages_and_archive_through_graph(
    graph: GraphFake, sessions: sessionmaker[Session]
) -> None:
    """In a team: the channel made once with the marker in its description, people added to the
    team by address (a stranger reported, not an error), messages posted once as HTML with the
    key as their last line, the channel archived; the room's name and link kept for the
    records."""
    graph.add_user("Lee Support", "lee@example.com")
    notifier = teams_notifier()
    notices = [
        stakeholders(rooms.OPEN, ChatContext(room(), members=("lee@example.com", "x@nowhere.org"))),
        stakeholders("chat:approved", ChatContext(room(), text="Escalation approved <P1>")),
        stakeholders("chat:approved", ChatContext(room(), text="Escalation approved <P1>")),
        stakeholders(rooms.ARCHIVE, ChatContext(room())),
    ]
    play(sessions, notifier, notices)
    [channel] = graph.channels[TEAM].values()
    assert channel.name == "ds-42-Checkout fails EU UK prod"
    assert "[escalation-sync INC0010042]" in channel.description
    assert channel.archived
    lee = next(u for u, v in graph.users.items() if v["mail"] == "lee@example.com")
    assert lee in graph.team_members[TEAM]
    [message] = channel.messages
    key = "INC0010042|room|20261204T090000Z|approved|v1"
    assert message["body"]["content"] == (
        f"<p>Escalation approved &lt;P1&gt;</p><p>{key_line(key)}</p>"
    )
    with sessions() as tx:
        rows = outbox.list_entries(tx, channel="teams")
        status = rooms.room_status(
            tx, {"teams": "Microsoft Teams"}, "INC0010042", rows[0].idempotency_key
        )
    assert [r.status for r in rows] == ["sent"] * 4
    [state] = status.rooms
    assert state.made and state.name == channel.name and state.url and channel.id in state.url
    assert state.not_in_chat == ("x@nowhere.org",)
    assert status.invited == frozenset({"lee@example.com", "x@nowhere.org"})
    assert status.archived


def test_teams_group_chat_when_no_team_is_configured(
    graph: GraphFake, sessions: sessionmaker[Session]
) -> None:
    """Without a team, the room is a group chat of the signed-in account and the people named,
    found again by its topic, and messages go to it."""
    graph.add_user("Lee Support", "lee@example.com")
    graph.add_user("Ann Dev", "ann@example.com")
    notifier = teams_notifier(team=None)
    opened = ChatContext(room(), members=("lee@example.com", "ann@example.com"))
    play(
        sessions,
        notifier,
        [
            stakeholders(rooms.OPEN, opened),
            stakeholders("chat:approved", ChatContext(room(), text="Approved")),
        ],
    )
    [chat] = graph.chats.values()
    assert chat.topic == "ds-42-Checkout fails EU UK prod"
    assert len(chat.members) == 3
    assert [m["chatId"] for m in chat.messages] == [chat.id]


def test_a_teams_post_in_doubt_is_found_by_its_key(
    graph: GraphFake, sessions: sessionmaker[Session]
) -> None:
    """A process killed after Graph took the message and before the row said so: the next
    worker finds the message by its key line and posts nothing twice."""
    notifier = teams_notifier()
    notices = [
        stakeholders(rooms.OPEN, ChatContext(room())),
        stakeholders("chat:approved", ChatContext(room(), text="Approved")),
    ]

    class Killed(BaseException):
        """The process dying right after the transport acted."""

    real = notifier.send

    def send_then_die(item: Any) -> Any:
        delivered = real(item)
        if item.kind == "message":
            raise Killed
        return delivered

    notifier.send = send_then_die  # type: ignore[method-assign]
    with pytest.raises(Killed):
        play(sessions, notifier, notices)
    notifier.send = real  # type: ignore[method-assign]
    later = T0 + timedelta(minutes=11)
    OutboxWorker(sessions, Notifiers([notifier]), clock=lambda: later).run_once()
    [channel] = graph.channels[TEAM].values()
    assert len(channel.messages) == 1
    with sessions() as tx:
        assert [r.status for r in outbox.list_entries(tx, channel="teams")] == ["sent", "sent"]


def test_teams_without_a_signed_in_account_pauses_the_channel(
    graph: GraphFake, sessions: sessionmaker[Session]
) -> None:
    """No token cache (the sign-in was never done): the room is made with the application's
    token, the post is refused saying why, the channel pauses and the message waits."""
    board = HealthBoard(sessions.kw["bind"], clock=lambda: T0)
    notices = [
        stakeholders(rooms.OPEN, ChatContext(room())),
        stakeholders("chat:approved", ChatContext(room(), text="Approved")),
    ]
    play(sessions, teams_notifier(user=False), notices, health=board)
    paused = board.paused("teams")
    assert paused is not None and "signed-in user" in paused
    with sessions() as tx:
        rows = outbox.list_entries(tx, channel="teams")
    assert [(r.kind, r.status, r.attempts) for r in rows] == [
        ("resource", "sent", 0),
        ("message", "pending", 0),
    ]


# ------------------------------------------------------------------------------ rooms in the outbox


class FakeRooms:
    """A chat channel in memory: rooms by name, posts in order; can be told to rate-limit."""

    channel = "fake"
    title = "Fake Chat"
    keeps_rooms = True

    def __init__(self) -> None:
        self.rooms: dict[str, str] = {}
        self.posts: list[tuple[str, str]] = []
        self.limit_next: list[float] = []

    def compose(self, notice: Notice) -> list[Any]:
        context = rooms.chat_context(notice)
        if context is None:
            return []
        return rooms.room_drafts(notice, name=context.room.display_name(), text=context.text)

    def send(self, item: Any) -> Any:
        from connectors.errors import RateLimited
        from sync.notify.notifier import Delivered

        posting = item.extra.get("action") == "post"
        if posting and self.limit_next:
            raise RateLimited("fake: slow down", system="fake", retry_after=self.limit_next.pop(0))
        if item.kind == "resource":
            room_id = self.rooms.setdefault(item.destination[0], f"R{len(self.rooms) + 1}")
            return Delivered(room_id, {"name": item.destination[0], "url": f"https://x/{room_id}"})
        if item.extra.get("action") == "post":
            self.posts.append((item.destination[0], item.text))
        return Delivered(item.destination[0], {"not_in_chat": ["x@nowhere.org"]})

    def was_sent(self, item: Any) -> Any:
        return False


def test_a_room_settling_syncs_its_record_and_keeps_what_the_transport_said(
    sessions: sessionmaker[Session],
) -> None:
    """The room and its invitation each have their record synced again once made; the room's
    name and link and who has no account are kept with the rows for the next decision."""
    fake = FakeRooms()
    asked: list[tuple[str, str]] = []
    notices = [
        stakeholders(rooms.OPEN, ChatContext(room(), members=("a@x.org",))),
        stakeholders("chat:approved", ChatContext(room(), text="Approved")),
    ]
    play(sessions, fake, notices, resync=lambda system, ident: asked.append((system, ident)))
    assert asked == [("servicenow", "abc123"), ("servicenow", "abc123")]
    with sessions() as tx:
        status = rooms.room_status(tx, {"fake": "Fake Chat"}, "INC0010042", room().key)
    [state] = status.rooms
    assert (state.made, state.name, state.url) == (
        True,
        "ds-42-Checkout fails: EU & UK <prod>",
        "https://x/R1",
    )
    assert state.not_in_chat == ("x@nowhere.org",)
    assert fake.posts == [("R1", "Approved")]


def test_messages_to_a_room_keep_their_order_and_a_rate_limit_spends_no_attempt(
    sessions: sessionmaker[Session],
) -> None:
    """The first message is rate-limited: it is put back for when the service allows (no
    attempt spent) and the second waits behind it, so the room reads in the recorded order."""
    fake = FakeRooms()
    clock = [T0]
    notices = [stakeholders(rooms.OPEN, ChatContext(room()))] + [
        stakeholders("chat:update", ChatContext(room(), text=f"update {n}"), version=str(n))
        for n in range(3)
    ]
    with sessions.begin() as tx:
        for notice in notices:
            outbox.enqueue_drafts(tx, fake, notice, now=T0)
    worker = OutboxWorker(sessions, Notifiers([fake]), clock=lambda: clock[0])
    fake.limit_next = [30.0]
    worker.run_once()
    assert fake.posts == []
    with sessions() as tx:
        rows = outbox.list_entries(tx, channel="fake")
    assert [(r.status, r.attempts) for r in rows] == [("sent", 0)] + [("pending", 0)] * 3
    assert rows[1].next_attempt_at == T0 + timedelta(seconds=30)
    clock[0] = T0 + timedelta(seconds=31)
    worker.run_once()
    assert fake.posts == [("R1", "update 0"), ("R1", "update 1"), ("R1", "update 2")]
