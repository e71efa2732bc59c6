"""The notifier seam: a new channel is one module plus a configuration table, nothing else."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from connectors.email_render import ManagementContext
from connectors.errors import AuthFailed
from mapping.errors import ConfigInvalid
from sync.config.settings import load_settings
from sync.notify import channels, outbox
from sync.notify.channels.email import EmailNotifier
from sync.notify.notifier import Notice, Notifier, Notifiers, Outgoing
from sync.notify.outbox import OutboxWorker
from sync.notify.registry import build_notifiers, channel_names
from sync.runtime.health import HealthBoard
from sync.store.database import Store

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config.example.toml"
T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)

# A chat-like channel as a deployment would add it: a room per ticket, made once, and the
# management notices posted in it. The "vendor" is two module-level collections.
TOY = '''
"""A toy chat: one room per ticket, created once; management notices are posted there."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from errors import PauseSystem
from sync.notify.notifier import RESOURCE, Delivered, Draft, Notice, Outgoing, created

CHANNEL = "toy"
ROOMS: dict[str, str] = {}
POSTS: list[tuple[str, str, str]] = []
REFUSE: list[bool] = [False]


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    room_prefix: str


class ToyNotifier:
    channel = CHANNEL

    def __init__(self, config: Settings) -> None:
        self.config = config

    def compose(self, notice: Notice) -> list[Draft]:
        if notice.audience != "management":
            return []
        room = f"{notice.ticket}|room"
        name = f"{self.config.room_prefix}-{notice.ticket.lower()}"
        return [
            Draft(destination=(name,), subject=name, text="", kind=RESOURCE, key=room),
            Draft(
                destination=(created(room),),
                subject=notice.event,
                text=f"{notice.ticket}: {notice.event}",
            ),
        ]

    def send(self, item: Outgoing) -> Delivered:
        if REFUSE[0]:
            raise PauseSystem("token revoked", system=CHANNEL)
        if item.kind == RESOURCE:
            name = item.destination[0]
            ROOMS.setdefault(name, f"R{len(ROOMS) + 1}")
            return Delivered(ROOMS[name])
        POSTS.append((item.destination[0], item.key, item.text))
        return Delivered(str(len(POSTS)))

    def was_sent(self, item: Outgoing) -> Delivered | Literal[False] | None:
        if item.kind == RESOURCE:
            found = ROOMS.get(item.destination[0])
            return Delivered(found) if found else False
        for index, post in enumerate(POSTS):
            if post[1] == item.key:
                return Delivered(str(index + 1))
        return False


def build(settings: Any) -> ToyNotifier | None:
    config = (getattr(settings, "notify_settings", None) or {}).get(CHANNEL)
    return ToyNotifier(config) if config is not None else None
'''


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The toy channel's module dropped beside the shipped ones (one file, nothing else)."""
    folder = tmp_path / "more_channels"
    folder.mkdir()
    (folder / "toy.py").write_text(textwrap.dedent(TOY))
    monkeypatch.setattr(channels, "__path__", [*channels.__path__, str(folder)])
    try:
        import sync.notify.channels.toy as module

        yield module
    finally:
        sys.modules.pop("sync.notify.channels.toy", None)


def config_with(tmp_path: Path, extra: str) -> Path:
    """The example configuration with `extra` appended."""
    path = tmp_path / "config.toml"
    path.write_text(EXAMPLE.read_text() + "\n" + extra)
    return path


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        yield sessionmaker(store.db, expire_on_commit=False)
    finally:
        store.close()


class Recorder:
    """An e-mail transport that keeps what it was given."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send(self, message: Any) -> str:
        self.sent.append(message)
        return str(message.message_id)


def management_notice(ticket: str = "INC0010001", version: str = "1") -> Notice:
    context = ManagementContext(
        ticket_key=ticket,
        summary="Checkout fails",
        status="in_progress",
        priority="P1",
        company="Example Support",
    )
    return Notice(
        audience="management",
        event="management:escalated",
        template="management_escalated",
        ticket=ticket,
        version=version,
        context=context,
    )


def test_a_new_channel_is_one_module_and_one_table(
    toy: ModuleType, tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    """With toy.py beside the shipped channels and [notify.toy] in the file, the configuration
    validates it, the registry builds it next to e-mail, a notice reaches both, the room is made
    once and every post lands in it."""
    settings = load_settings(config_with(tmp_path, '[notify.toy]\nroom_prefix = "esc"\n'))
    assert settings.notify_settings["toy"].model_dump()["room_prefix"] == "esc"
    built = build_notifiers(settings)
    assert set(built.channels) == {"email", "toy"}
    assert all(isinstance(n, Notifier) for n in built)
    recorder = Recorder()
    email = built.get("email")
    assert isinstance(email, EmailNotifier)
    email.sender = recorder
    with sessions.begin() as tx:
        assert outbox.notify(tx, built, management_notice(version="1"), now=T0) == 3
        assert outbox.notify(tx, built, management_notice(version="2"), now=T0) == 2
        assert outbox.notify(tx, built, management_notice(version="2"), now=T0) == 0
    worker = OutboxWorker(sessions, built, clock=lambda: T0)
    assert worker.run_once() == 5
    assert toy.ROOMS == {"esc-inc0010001": "R1"}
    assert [(room, text) for room, _, text in toy.POSTS] == [
        ("R1", "INC0010001: management:escalated"),
        ("R1", "INC0010001: management:escalated"),
    ]
    assert [m.to for m in recorder.sent] == [("support-managers@example.com",)] * 2
    with sessions() as tx:
        assert outbox.created_ref(tx, "toy", "INC0010001|room") == "R1"
        assert outbox.status_counts(tx, channel="toy")["sent"] == 3


def test_a_channel_without_a_module_or_with_a_bad_table_is_refused(
    toy: ModuleType, tmp_path: Path
) -> None:
    """A [notify.X] naming no module, and a table its module refuses, are configuration errors
    reported together with file and key."""
    path = config_with(tmp_path, "[notify.pager]\nurl = 1\n\n[notify.toy]\nroom = 5\n")
    with pytest.raises(ConfigInvalid) as refused:
        load_settings(path)
    found = {(e.key, e.reason) for e in refused.value.errors}
    assert ("notify.pager", f"no notifier for this channel ({', '.join(channel_names())})") in (
        found
    )
    assert ("notify.toy.room", "unknown key 'room' (misspelt?)") in found
    assert ("notify.toy.room_prefix", "required key is missing") in found


def test_a_message_in_doubt_is_settled_by_the_channel(
    toy: ModuleType, sessions: sessionmaker[Session]
) -> None:
    """A kill after the toy posted and before the row said so: the restart asks the channel,
    which finds the post, and nothing is posted twice."""
    notifier = toy.build(type("S", (), {"notify_settings": {"toy": toy.Settings(room_prefix="x")}}))
    registry = Notifiers([notifier])
    with sessions.begin() as tx:
        outbox.notify(tx, registry, management_notice(), now=T0)

    class Killed(BaseException):
        """The process dying right after the transport acted."""

    real_send = notifier.send

    def send_then_die(item: Any) -> Any:
        delivered = real_send(item)
        if item.kind == "message":
            raise Killed
        return delivered

    notifier.send = send_then_die
    with pytest.raises(Killed):
        OutboxWorker(sessions, registry, clock=lambda: T0).run_once()
    notifier.send = real_send
    later = T0 + timedelta(minutes=11)
    assert OutboxWorker(sessions, registry, clock=lambda: later).run_once() == 0
    assert len(toy.POSTS) == 1
    with sessions() as tx:
        rows = outbox.list_entries(tx, channel="toy")
    assert [(r.kind, r.status, r.result_ref) for r in rows] == [
        ("resource", "sent", "R1"),
        ("message", "sent", "1"),
    ]


def test_refused_credentials_pause_one_channel_and_spend_no_attempt(
    toy: ModuleType, sessions: sessionmaker[Session]
) -> None:
    """The toy refusing its token pauses the toy channel (no attempt spent, health says so);
    e-mail still goes; once the token works again the held rows go out."""
    notifier = toy.build(type("S", (), {"notify_settings": {"toy": toy.Settings(room_prefix="x")}}))
    recorder = Recorder()
    email = EmailNotifier(recorder, id_domain="example.com", management_recipients=["m@x.org"])
    registry = Notifiers([email, notifier])
    with sessions.begin() as tx:
        outbox.notify(tx, registry, management_notice(), now=T0)
    board = HealthBoard(sessions.kw["bind"], clock=lambda: T0)
    clock = [T0]
    worker = OutboxWorker(
        sessions,
        registry,
        clock=lambda: clock[0],
        health=board,
        probe_interval=timedelta(minutes=1),
    )
    toy.REFUSE[0] = True
    try:
        assert worker.run_once() == 1  # the e-mail
        assert board.paused("toy") == "PauseSystem: token revoked"
        with sessions() as tx:
            held = outbox.list_entries(tx, channel="toy", status="pending")
        assert [r.attempts for r in held] == [0, 0]
        assert worker.run_once() == 0  # inside the probe interval the channel is left alone
    finally:
        toy.REFUSE[0] = False
    clock[0] = T0 + timedelta(minutes=2)
    assert worker.run_once() == 2
    assert board.paused("toy") is None
    assert len(recorder.sent) == 1


def test_a_message_to_a_room_that_was_never_made_is_dead_lettered(
    toy: ModuleType, sessions: sessionmaker[Session]
) -> None:
    """A post addressed to a room whose creation was dead-lettered is parked with the reason."""
    notifier = toy.build(type("S", (), {"notify_settings": {"toy": toy.Settings(room_prefix="x")}}))
    registry = Notifiers([notifier])
    with sessions.begin() as tx:
        outbox.notify(tx, registry, management_notice(), now=T0)
        tx.execute(
            sa.update(outbox.OutboxRow)
            .where(outbox.OutboxRow.kind == "resource")
            .values(status="dead", last_error="Forbidden: not allowed to create rooms")
        )
    OutboxWorker(sessions, registry, clock=lambda: T0).run_once()
    with sessions() as tx:
        dead = outbox.list_entries(tx, channel="toy", status="dead")
    [message] = [row for row in dead if row.kind == "message"]
    assert "not created: Forbidden: not allowed to create rooms" in (message.last_error or "")
    assert toy.POSTS == []


def test_an_email_transport_is_taken_as_the_email_notifier(
    sessions: sessionmaker[Session],
) -> None:
    """A worker given a bare e-mail transport sends the e-mail rows through it, as before."""
    recorder = Recorder()
    notice = management_notice()
    email = EmailNotifier(recorder, id_domain="example.com", management_recipients=["m@x.org"])
    with sessions.begin() as tx:
        outbox.enqueue_drafts(tx, email, notice, now=T0)
    assert OutboxWorker(sessions, recorder, clock=lambda: T0).run_once() == 1
    [sent] = recorder.sent
    assert sent.to == ("m@x.org",) and sent.in_reply_to == sent.references[0]
    assert ("X-Escalation-Sync-Event", "management:escalated") in sent.headers


def test_auth_failure_of_email_is_a_pause_not_a_dead_letter(
    sessions: sessionmaker[Session],
) -> None:
    """SMTP refusing our login holds the message (no attempt spent) instead of killing it."""

    class Refusing:
        def send(self, message: Any) -> str:
            raise AuthFailed("SMTP login refused: 535", system="email")

    with sessions.begin() as tx:
        outbox.enqueue_drafts(
            tx,
            EmailNotifier(Refusing(), id_domain="example.com", management_recipients=["m@x.org"]),
            management_notice(),
            now=T0,
        )
    OutboxWorker(sessions, Refusing(), clock=lambda: T0).run_once()
    with sessions() as tx:
        [row] = outbox.list_entries(tx)
    assert (row.status, row.attempts) == ("pending", 0)
    assert row.last_error == "AuthFailed: SMTP login refused: 535"


def test_copied_stakeholders_go_in_cc_of_the_email() -> None:
    """A notice's copies become the e-mail's Cc (never someone already in To)."""

    class Recorder:
        sent: list[Any] = []

        def send(self, message: Any) -> str:
            self.sent.append(message)
            return str(message.message_id)

    sender = Recorder()
    notifier = EmailNotifier(sender, id_domain="example.com")
    notice = replace(
        management_notice(),
        recipients=("cxp@example.com",),
        copies=("lead@example.com", "cxp@example.com"),
    )
    [draft] = notifier.compose(notice)
    assert draft.extra == {"cc": ["lead@example.com"]}
    item = Outgoing(
        id=1,
        channel="email",
        kind=draft.kind,
        key=draft.key_for(notice),
        ticket=notice.ticket,
        event=notice.event,
        destination=draft.destination,
        subject=draft.subject,
        text=draft.text,
        message_id=draft.message_id or "<x@example.com>",
        html=draft.html,
        thread=draft.thread,
        extra=draft.extra,
    )
    notifier.send(item)
    [message] = sender.sent
    assert message.to == ("cxp@example.com",) and message.cc == ("lead@example.com",)
