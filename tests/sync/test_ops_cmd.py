"""`status`, `deadletters list` and `deadletters replay` against a real state directory."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from cli.app import build
from sync.queue.tasks import SyncQueue, make_huey
from sync.store.database import Store
from tests.sync.pairs import jira, servicenow

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config.example.toml"
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temp state directory the example configuration points at."""
    for name in list(os.environ):
        if name.startswith("ESCALATION_SYNC_"):
            monkeypatch.delenv(name)
    state_dir = tmp_path / "state"
    monkeypatch.setenv("ESCALATION_SYNC_STATE__DIR", str(state_dir))
    return state_dir


@pytest.fixture
def store(state: Path) -> Iterator[Store]:
    """The store in that state directory."""
    opened = Store.for_state(state)
    yield opened
    opened.close()


def cli(*args: str) -> tuple[int, str]:
    """Run the CLI in-process; returns (exit code, output)."""
    result = CliRunner().invoke(build(), [*args, "--config", str(CONFIG)])
    return result.exit_code, result.output


def queue_depth(state: Path, store: Store) -> int:
    return SyncQueue(make_huey(None, state), store).depth()


def test_status_reports_pairs_backlog_polls_dead_letters_and_escalations(
    state: Path, store: Store
) -> None:
    """status --json gives every figure an operator checks first."""
    store.put_link(jira("DS-1"), servicenow("s1"))
    store.put_link(jira("DS-2"), servicenow("s2"))
    store.set_watermark("jira", T0, polled_at=T0)
    store.add_dead_letter("jira", "DS-1", {}, "400: bad field", "InvalidRequest")
    SyncQueue(make_huey(None, state), store).enqueue_ticket("jira", "DS-2")
    ledger = sa.Table("escalation_ledger", sa.MetaData(), autoload_with=store.db)
    with store.db.begin() as conn:
        conn.execute(
            ledger.insert().values(
                ticket_ref="servicenow:s1",
                state="approved",
                approved_at=T0.replace(tzinfo=None),
                updated_at=T0.replace(tzinfo=None),
                processed_command_ids=[],
            )
        )
    code, out = cli("status", "--json")
    assert code == 0, out
    data = json.loads(out)
    assert data["pairs"] == 2
    assert data["backlog"] == {"pending": 1, "scheduled": 0}
    assert data["last_poll"]["jira"]["polled_at"].startswith("2026-11-23T09:00")
    assert data["dead_letters"] == {"pending": 1, "replayed": 0}
    assert data["daemon"] is None
    assert data["escalations"] == {"active": 1, "requested": 0}


def test_status_table(state: Path, store: Store) -> None:
    """Plain status is a readable table."""
    code, out = cli("status")
    assert code == 0, out
    assert "not running" in out
    assert "pairs" in out and "dead letters" in out and "last poll jira" in out


def test_status_counts_one_pair_in_the_singular(state: Path, store: Store) -> None:
    """One pair reads `1 record`, no mirrored comment `0 mirrored comments`."""
    store.put_link(jira("DS-1"), servicenow("s1"))
    code, out = cli("status")
    assert code == 0, out
    assert "1 record, 0 mirrored comments" in out


def test_status_shows_the_email_outbox(store: Store) -> None:
    """status counts outbox messages by status, in the table and in --json."""
    from connectors.email_render import RenderedEmail
    from sync.notify import outbox

    rendered = RenderedEmail(subject="INC1: escalated", text="t", html="<p>t</p>")
    with store.session() as tx:
        for event in ("escalated", "resolved_please_confirm"):
            key = outbox.OutboxKey("INC1", event, "1")
            outbox.enqueue(
                tx, key, to=["c@example.org"], rendered=rendered, id_domain="x.example", now=T0
            )
    with store.db.begin() as conn:
        conn.execute(
            sa.update(outbox.OutboxRow)
            .where(outbox.OutboxRow.event == "escalated")
            .values(status=outbox.DEAD)
        )
    code, out = cli("status", "--json")
    assert code == 0, out
    assert json.loads(out)["outbox"] == {
        "pending": 1,
        "sending": 0,
        "sent": 0,
        "dead": 1,
        "unknown": 0,
    }
    code, out = cli("status")
    assert "email outbox" in out
    assert "1 pending, 0 sent, 0 unknown after a crash, 1 dead (see" in " ".join(out.split())


def test_status_says_in_words_how_far_each_system_was_polled(store: Store) -> None:
    """Never polled, polled with nothing seen, and polled with a mark each read as words."""
    from cli.ops_cmd import poll_text

    now = datetime(2026, 11, 23, 9, 10, tzinfo=UTC)
    assert poll_text(None, now) == "never polled yet"
    polled = {"polled_at": "2026-11-23T09:00:00+00:00", "watermark": None}
    assert poll_text(polled, now) == (
        "polled 2026-11-23 09:00:00 UTC (10 min ago); no changed record seen yet"
    )
    polled["watermark"] = "2026-11-21T08:59:30+00:00"
    assert poll_text(polled, now).endswith(
        "changes read up to 2026-11-21 08:59:30 UTC (2 days ago)"
    )
    store.set_watermark("jira", None, polled_at=T0)
    code, out = cli("status")
    assert code == 0, out
    text = " ".join(out.split())
    assert "last poll jira polled 2026-11-23 09:00:00 UTC" in text
    assert "no changed record seen yet" in text
    assert "last poll servicenow never polled yet" in text
    assert " -)" not in out


def test_deadletters_list(store: Store) -> None:
    """The list shows id, ticket, error and reason; --json carries the event."""
    ident = store.add_dead_letter(
        "servicenow", "s9", {"event": "incident_updated", "ticket": "s9"}, "gone", "NotFound"
    )
    code, out = cli("deadletters", "list")
    assert code == 0, out
    assert "s9" in out and "NotFound" in out and "gone" in out
    code, out = cli("deadletters", "list", "--json")
    [item] = json.loads(out)
    assert item["id"] == ident and item["event"]["event"] == "incident_updated"


def test_deadletters_list_empty(store: Store) -> None:
    """An empty list says so."""
    assert cli("deadletters", "list") == (0, "no dead letters\n")


def test_replay_one_enqueues_and_marks_it(state: Path, store: Store) -> None:
    """Replaying an id puts its ticket back on the queue and marks it replayed."""
    event = {"system": "jira", "ticket": "DS-3", "event": "jira:issue_updated"}
    ident = store.add_dead_letter("jira", "DS-3", event, "400", "InvalidRequest")
    other = store.add_dead_letter("jira", "DS-4", {}, "400", "InvalidRequest")
    code, out = cli("deadletters", "replay", str(ident))
    assert code == 0, out
    assert f"replayed {ident}: jira DS-3" in out
    assert "no daemon is running" in out
    assert [d.id for d in store.list_dead_letters()] == [other]
    queue = SyncQueue(make_huey(None, state), store)
    [task] = queue.huey.pending()
    assert task.args == ("jira", "DS-3")
    assert task.kwargs["event"]["event"] == "jira:issue_updated"


def test_replay_all(state: Path, store: Store) -> None:
    """--all replays every dead letter not yet replayed."""
    for ticket in ("DS-5", "DS-6"):
        store.add_dead_letter("jira", ticket, {}, "r", "E")
    code, out = cli("deadletters", "replay", "--all")
    assert code == 0, out
    assert store.list_dead_letters() == []
    assert queue_depth(state, store) == 2
    code, out = cli("deadletters", "replay", "--all")
    assert code == 0 and out.splitlines() == [
        "nothing to replay",
        "no daemon is running: 2 events wait in the queue until `escalation-sync run` or "
        "`sync --once` (or `deadletters replay --now` to process the queue here)",
    ]


def test_replay_refuses_bad_arguments(store: Store) -> None:
    """Unknown ids exit 1; neither ids nor --all (or both) exit 2."""
    assert cli("deadletters", "replay", "999")[0] == 1
    assert cli("deadletters", "replay")[0] == 2
    ident = store.add_dead_letter("jira", "DS-1", {}, "r", "E")
    assert cli("deadletters", "replay", str(ident), "--all")[0] == 2


def test_replay_now_processes_here(
    state: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--now runs the replayed events in this process; a second failure is dead-lettered again."""
    seen: list[tuple[str, str]] = []

    class Fixed:
        def process(self, system: str, ticket_id: str) -> None:
            seen.append((system, ticket_id))
            if ticket_id == "DS-8":
                from connectors.errors import InvalidRequest

                raise InvalidRequest("still broken")

        def poll(self, system: str) -> int:
            return 0

        def reconcile(self) -> int:
            return 0

    monkeypatch.setattr("sync.runtime.wiring.default_processor", lambda s, st, q: Fixed())
    good = store.add_dead_letter("jira", "DS-7", {}, "r", "E")
    code, out = cli("deadletters", "replay", str(good), "--now")
    assert code == 0, out
    assert seen == [("jira", "DS-7")]
    assert "0 dead-lettered again" in out
    bad = store.add_dead_letter("jira", "DS-8", {}, "r", "E")
    code, out = cli("deadletters", "replay", str(bad), "--now")
    assert code == 1
    [again] = store.list_dead_letters()
    assert again.ticket == "DS-8" and again.reason == "still broken"


class Recording:
    """A processor that records what it processed and fails nothing."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def process(self, system: str, ticket_id: str) -> None:
        self.seen.append((system, ticket_id))

    def poll(self, system: str) -> int:
        raise AssertionError("replay does not poll")

    def reconcile(self) -> int:
        raise AssertionError("replay does not reconcile")


def test_replay_now_also_runs_what_an_earlier_replay_left_queued(
    state: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain replay with no daemon says the event waits; `--all --now` then runs it."""
    processor = Recording()
    monkeypatch.setattr("sync.runtime.wiring.default_processor", lambda s, st, q: processor)
    ident = store.add_dead_letter("jira", "DS-9", {}, "r", "E")
    code, out = cli("deadletters", "replay", str(ident))
    assert code == 0, out
    assert "no daemon is running: 1 event waits in the queue until `escalation-sync run`" in out
    assert processor.seen == []
    code, out = cli("deadletters", "replay", "--all", "--now")
    assert code == 0, out
    assert out.splitlines() == ["nothing to replay", "processed 1 task; 0 dead-lettered again"]
    assert processor.seen == [("jira", "DS-9")]
    assert queue_depth(state, store) == 0


def test_replay_now_alone_runs_the_waiting_events(
    state: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`deadletters replay --now` with no ids processes what waits in the queue."""
    processor = Recording()
    monkeypatch.setattr("sync.runtime.wiring.default_processor", lambda s, st, q: processor)
    SyncQueue(make_huey(None, state), store).enqueue_ticket("servicenow", "s1", source="replay")
    code, out = cli("deadletters", "replay", "--now")
    assert code == 0, out
    assert out == "processed 1 task; 0 dead-lettered again\n"
    assert processor.seen == [("servicenow", "s1")]


def test_replay_with_a_daemon_running_says_the_daemon_takes_it(state: Path, store: Store) -> None:
    """With a daemon's runtime file naming a live process, replay says it is queued for it."""
    from sync.runtime.daemon import RUNTIME_FILE

    state.mkdir(parents=True, exist_ok=True)
    (state / RUNTIME_FILE).write_text(
        json.dumps({"pid": os.getpid(), "host": "127.0.0.1", "port": 8080})
    )
    ident = store.add_dead_letter("jira", "DS-10", {}, "r", "E")
    code, out = cli("deadletters", "replay", str(ident))
    assert code == 0, out
    assert out.splitlines()[-1] == f"queued for the running daemon (pid {os.getpid()})"
