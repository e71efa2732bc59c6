"""Operator commands: `status`, `deadletters list`, `deadletters replay ID...|--all`."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.failures import configured, fail, system_name
from cli.mapping_cmd import ConfigOption, load_or_exit
from escalation.wording import plural

if TYPE_CHECKING:
    from sync.config.settings import Settings
    from sync.queue.tasks import SyncQueue
    from sync.store.database import DeadLetter, Store

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _open(settings: Settings) -> Store:
    # The store (SQLAlchemy) and the composition root load when a command opens the store,
    # not with --help (start-up time).
    from sync.runtime.wiring import open_store

    return open_store(settings)


def _queue(settings: Settings, store: Store) -> SyncQueue:
    from sync.runtime.wiring import open_queue  # Huey: start-up time

    return open_queue(settings, store)


def _when(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def daemon_state(state_dir: Path) -> dict[str, Any] | None:
    """The running daemon's pid and address from its runtime file, or None if none runs."""
    from sync.runtime.daemon import RUNTIME_FILE  # the daemon module: start-up time

    try:
        info = json.loads((state_dir / RUNTIME_FILE).read_text())
        pid = int(info["pid"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return dict(info)


def active_escalations(store: Store) -> dict[str, int]:
    """Escalations approved and not released, and requests awaiting a decision, counted by the
    ledger's own rule."""
    from sync.procedure.ledger import escalation_counts  # start-up time

    with store.reading() as tx:
        counts = escalation_counts(tx)
    return {"active": counts.active, "requested": counts.requested}


def outbox_counts(store: Store) -> dict[str, int]:
    """Email outbox messages by status (pending, sending, sent, unknown, dead)."""
    from sync.notify.outbox import store_counts  # start-up time

    return store_counts(store)


def replies_counts(store: Store) -> dict[str, int]:
    """Customers' mails read, by what became of them, and the addresses that bounced."""
    from sync.replies import store as mails  # start-up time

    with store.reading() as tx:
        counts = mails.mail_counts(tx)
        counts["bounced_addresses"] = len(mails.list_bounces(tx))
    return counts


def configured_systems(settings: Settings) -> list[str]:
    """The systems this configuration calls: the mapped ticket systems, e-mail (and the
    replies mailbox) and other channels."""
    systems = sorted(s.value for s in settings.mapping_model.systems)
    email = settings.email_settings
    if email is not None and email.enabled:
        systems.append("email")
        if email.inbound is not None and email.inbound.enabled:
            systems.append("mailbox")
    systems.extend(sorted(settings.notify_settings))
    return systems


def systems_health(settings: Settings, store: Store) -> dict[str, dict[str, Any]]:
    """Each system's health as last recorded (a configured one with no record yet included)."""
    from sync.runtime.health import SystemState, read_held, read_states  # start-up time

    states = read_states(store.db)
    held = read_held(store.db)
    names = list(dict.fromkeys([*configured_systems(settings), *sorted(states)]))
    return {
        name: {
            **(states.get(name) or SystemState(name)).to_json(),
            "events_waiting": held.get(name, 0),
        }
        for name in names
    }


def in_doubt(store: Store) -> list[dict[str, Any]]:
    """Messages whose send was interrupted and that no transport could confirm."""
    from sync.notify.outbox import UNKNOWN, list_entries  # start-up time

    with store.session() as tx:
        rows = list_entries(tx, status=UNKNOWN)
    return [
        {
            "id": row.id,
            "channel": row.channel,
            "ticket": row.ticket_ref,
            "event": row.event,
            "to": list(row.recipients),
            "message_id": row.message_id,
            "reason": row.last_error,
        }
        for row in rows
    ]


def collect_status(settings: Settings) -> dict[str, Any]:
    """Everything `status` reports, as plain data."""
    store = _open(settings)
    try:
        counts = store.status_counts()
        queue = _queue(settings, store)
        pending = int(queue.huey.pending_count())
        scheduled = int(queue.huey.scheduled_count())
        return {
            "daemon": daemon_state(Path(settings.state.dir)),
            "ticket_systems": sorted(s.value for s in settings.mapping_model.systems),
            "pairs": counts.links,
            "comment_pairs": counts.comment_links,
            "backlog": {"pending": pending, "scheduled": scheduled},
            "last_poll": {
                system: {"watermark": _when(mark.value), "polled_at": _when(mark.polled_at)}
                for system, mark in counts.watermarks.items()
            },
            "dead_letters": {
                "pending": counts.dead_letters_pending,
                "replayed": counts.dead_letters_replayed,
            },
            "escalations": active_escalations(store),
            "outbox": outbox_counts(store),
            "replies": replies_counts(store),
            "in_doubt": in_doubt(store),
            "systems": systems_health(settings, store),
            "locks_held": len(store.list_locks()),
        }
    finally:
        store.close()


def _print_status(data: dict[str, Any]) -> None:
    # Rich's tables load only to print one (start-up time).
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    daemon = data["daemon"]
    table.add_row(
        "daemon",
        f"running, pid {daemon['pid']}, {daemon['host']}:{daemon['port']}"
        if daemon
        else "not running",
    )
    table.add_row(
        "pairs",
        f"{plural(data['pairs'], 'record')}, {plural(data['comment_pairs'], 'mirrored comment')}",
    )
    backlog = data["backlog"]
    table.add_row(
        "backlog", f"{backlog['pending']} queued, {backlog['scheduled']} waiting to retry"
    )
    for system in data["ticket_systems"]:
        table.add_row(f"last poll {system}", poll_text(data["last_poll"].get(system)))
    for system, health in data["systems"].items():
        table.add_row(system_name(system), health_text(health))
    dead = data["dead_letters"]
    table.add_row("dead letters", f"{dead['pending']} to replay, {dead['replayed']} replayed")
    table.add_row("email outbox", _outbox_text(data["outbox"]))
    replies = data["replies"]
    if any(replies.values()) or "mailbox" in data["systems"]:
        table.add_row("customer replies", _replies_text(replies))
    for row in data["in_doubt"]:
        table.add_row(
            "in doubt",
            f"{row['channel']} #{row['id']} {row['ticket']} {row['event']} to "
            f"{', '.join(row['to'])}: check the transport's log, then `escalation-sync email "
            f"resolve {row['id']} --sent` or `--not-sent`",
        )
    esc = data["escalations"]
    table.add_row("escalations", f"{esc['active']} active, {esc['requested']} awaiting approval")
    console.print(table)


def _ago(moment: datetime, now: datetime) -> str:
    seconds = max(int((now - moment).total_seconds()), 0)
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            count = seconds // size
            return plural(count, unit) if unit == "day" else f"{count} {unit}"
    return f"{seconds} s"


def _stamp(value: str, now: datetime) -> str:
    moment = datetime.fromisoformat(value)
    return f"{moment.strftime('%Y-%m-%d %H:%M:%S')} UTC ({_ago(moment, now)} ago)"


def poll_text(poll: dict[str, str | None] | None, now: datetime | None = None) -> str:
    """When a system was last polled and how far its changes were read, in words."""
    if poll is None or poll.get("polled_at") is None:
        return "never polled yet"
    now = now or datetime.now(UTC)
    text = f"polled {_stamp(str(poll['polled_at']), now)}"
    watermark = poll.get("watermark")
    if watermark is None:
        # A pass that found nothing keeps no mark: the next one reads the last day again.
        return f"{text}; no changed record seen yet"
    return f"{text}; changes read up to {_stamp(watermark, now)}"


def health_text(health: dict[str, Any], now: datetime | None = None) -> str:
    """A system's health in words: paused or answering, last success, last error, failures."""
    now = now or datetime.now(UTC)
    parts: list[str] = []
    if health.get("paused"):
        waiting = int(health.get("events_waiting") or 0)
        parts.append(
            f"PAUSED since {_stamp(str(health['paused_at']), now)}: credentials refused; "
            f"{plural(waiting, 'event')} {'waits' if waiting == 1 else 'wait'} for it "
            "(fix them, then reload)"
        )
    elif health.get("consecutive_failures"):
        since = health.get("failing_since")
        parts.append("failing" + (f" since {_stamp(str(since), now)}" if since else ""))
    elif health.get("last_success_at") or health.get("last_poll_success_at"):
        parts.append("answering")
    else:
        parts.append("no call recorded yet")
    moments = [m for m in (health.get("last_success_at"), health.get("last_poll_success_at")) if m]
    if moments:
        parts.append(f"last success {_stamp(max(str(m) for m in moments), now)}")
    failures = int(health.get("consecutive_failures") or 0)
    if failures:
        parts.append(f"{plural(failures, 'failure')} in a row")
    if health.get("last_error"):
        when = health.get("last_error_at")
        parts.append(
            f"last error{f' {_stamp(str(when), now)}' if when else ''}: {health['last_error']}"
        )
    return "; ".join(parts)


def _outbox_text(counts: dict[str, int]) -> str:
    sending = counts.get("sending", 0)
    text = (
        f"{counts.get('pending', 0)} pending, "
        + (f"{sending} sending, " if sending else "")
        + f"{counts.get('sent', 0)} sent, "
        f"{counts.get('unknown', 0)} unknown after a crash, {counts.get('dead', 0)} dead"
    )
    if counts.get("unknown", 0) or counts.get("dead", 0):
        text += " (see `escalation-sync email outbox`)"
    return text


def _replies_text(counts: dict[str, int]) -> str:
    posted = counts.get("public_comment", 0) + counts.get("internal_note", 0)
    text = (
        f"{posted} posted, {counts.get('refused', 0) + counts.get('no_ticket', 0)} refused, "
        f"{counts.get('bounce_noted', 0)} bounces noted, "
        f"{plural(counts.get('bounced_addresses', 0), 'address', 'addresses')} stopped"
    )
    failed = counts.get("failed", 0)
    if failed:
        text += f", {failed} failed"
    return text + " (see `escalation-sync email replies` and `email bounces`)"


def _dead_letter_json(item: DeadLetter) -> dict[str, Any]:
    return {
        "id": item.id,
        "system": item.system,
        "ticket": item.ticket,
        "error_class": item.error_class,
        "reason": item.reason,
        "attempts": item.attempts,
        "created_at": _when(item.created_at),
        "replayed_at": _when(item.replayed_at),
        "event": item.event,
    }


def register(app: typer.Typer) -> None:
    """Add `status` and the `deadletters` group."""

    @app.command("status")
    def status(config: ConfigOption = None, as_json: JsonOption = False) -> None:
        """Pairs, backlog, each system's health (last success, last error, failures in a row,
        paused), dead letters, the outbox and messages in doubt, active escalations."""
        data = collect_status(load_or_exit(config))
        if as_json:
            typer.echo(json.dumps(data, indent=2))
        else:
            _print_status(data)

    group = typer.Typer(help="Events that failed permanently: list them, replay them.")
    app.add_typer(group, name="deadletters")

    @group.command("list")
    def list_cmd(
        config: ConfigOption = None,
        include_replayed: Annotated[
            bool, typer.Option("--all", help="Include dead letters already replayed.")
        ] = False,
        as_json: JsonOption = False,
    ) -> None:
        """Dead letters with their reason, oldest first."""
        store = _open(load_or_exit(config))
        try:
            items = store.list_dead_letters(include_replayed=include_replayed)
        finally:
            store.close()
        if as_json:
            typer.echo(json.dumps([_dead_letter_json(i) for i in items], indent=2))
            return
        if not items:
            typer.echo("no dead letters")
            return
        from rich.console import Console  # start-up time
        from rich.table import Table

        table = Table("id", "created", "system", "ticket", "error", "tries", "reason")
        for item in items:
            table.add_row(
                str(item.id),
                _when(item.created_at) or "",
                item.system,
                item.ticket,
                item.error_class,
                str(item.attempts),
                item.reason
                + (f" (replayed {_when(item.replayed_at)})" if item.replayed_at else ""),
            )
        Console(width=200).print(table)

    @group.command("replay")
    def replay(
        ids: Annotated[
            list[int] | None, typer.Argument(metavar="ID", help="Dead letter ids.")
        ] = None,
        replay_all: Annotated[
            bool, typer.Option("--all", help="Replay every dead letter not yet replayed.")
        ] = False,
        now: Annotated[
            bool,
            typer.Option(
                "--now",
                help="Process here and now every event waiting in the queue: these and those "
                "earlier replays left for a daemon. Alone, only the waiting ones.",
            ),
        ] = False,
        config: ConfigOption = None,
    ) -> None:
        """Put dead-lettered events back on the queue (after fixing their cause).

        Without --now the running daemon processes them; with no daemon running they wait in
        the queue until `escalation-sync run`, `sync --once` or `deadletters replay --now`.
        """
        if (ids and replay_all) or not (ids or replay_all or now):
            raise fail("give dead letter ids or --all (not both), or --now alone", 2)
        settings = load_or_exit(config)
        store = _open(settings)
        try:
            chosen = _chosen_dead_letters(store, ids or [], replay_all)
            queue = _queue(settings, store)
            for item in chosen:
                event = item.event if item.event.get("event") else None
                queue.enqueue_ticket(item.system, item.ticket, event=event, source="replay")
                store.mark_replayed(item.id)
                typer.echo(f"replayed {item.id}: {item.system} {item.ticket}")
            if replay_all and not chosen:
                typer.echo("nothing to replay")
            waiting = queue.depth()
            if now:
                _process_here(settings, store, queue)
            elif waiting:
                daemon = daemon_state(Path(settings.state.dir))
                typer.echo(
                    f"queued for the running daemon (pid {daemon['pid']})"
                    if daemon
                    else f"no daemon is running: {plural(waiting, 'event')} "
                    f"{'waits' if waiting == 1 else 'wait'} in the queue until "
                    "`escalation-sync run` or `sync --once` (or `deadletters replay --now` "
                    "to process the queue here)"
                )
        finally:
            store.close()


def _chosen_dead_letters(store: Store, ids: list[int], replay_all: bool) -> list[DeadLetter]:
    if replay_all:
        return store.list_dead_letters()
    chosen = []
    for ident in ids:
        item = store.get_dead_letter(ident)
        if item is None:
            raise fail(f"no dead letter {ident}", 1)
        if item.replayed_at is not None:
            typer.echo(f"dead letter {ident} was already replayed; replaying again")
        chosen.append(item)
    return chosen


def _process_here(settings: Settings, store: Store, queue: SyncQueue) -> None:
    """Run every task waiting in the queue in this process; exit 1 if any is dead-lettered."""
    from sync.runtime import wiring  # the engine: start-up time

    before = store.status_counts().dead_letters_pending
    queue.set_processor(configured(lambda: wiring.default_processor(settings, store, queue)))
    ran = queue.run_pending(limit=100_000)
    failed = max(store.status_counts().dead_letters_pending - before, 0)
    typer.echo(f"processed {plural(ran, 'task')}; {failed} dead-lettered again")
    if failed:
        raise typer.Exit(1)
