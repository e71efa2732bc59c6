"""`sync --once` (one polling pass, for cron) and `backfill` (initial pairing, in bulk)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from cli.failures import configured, describe, fail
from cli.mapping_cmd import ConfigOption, load_or_exit
from cli.options import system_option
from connectors.errors import ConnectorError
from errors import PauseSystem
from escalation.wording import plural
from mapping.model import System

if TYPE_CHECKING:
    from rich.progress import TaskID

    from sync.config.settings import Settings
    from sync.pipeline.backfill import BackfillSkip
    from sync.queue.tasks import SyncQueue
    from sync.replies.intake import IntakePass
    from sync.store.database import Store

STAGES = {"scan": "Reading records", "create": "Creating pairs", "mirror": "Mirroring content"}


def open_store(settings: Settings) -> Store:
    """The configured store (SQLite in the state directory unless a URL is set)."""
    # The store (SQLAlchemy) and the composition root load when a command opens the store,
    # not with --help (start-up time).
    from sync.runtime import wiring

    return wiring.open_store(settings)


def open_queue(settings: Settings, store: Store) -> SyncQueue:
    """The configured queue, over `store`."""
    from sync.runtime import wiring  # Huey: start-up time

    return wiring.open_queue(settings, store)


def _parse_since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"not a date: {value!r} (use YYYY-MM-DD)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass
class OncePass:
    """What one `sync --once` pass did."""

    found: dict[str, int] = field(default_factory=dict)
    failed: dict[str, ConnectorError] = field(default_factory=dict)
    ran: int = 0
    dead: int = 0
    waiting: int = 0
    scheduled: int = 0
    # The replies mailbox's pass (None: no [email.inbound] configured).
    mail: IntakePass | None = None


def run_once(settings: Settings) -> OncePass:
    """Read the replies mailbox (when configured), poll each mapped system (a failing one does
    not stop the others) and process every task queued."""
    # The engine, connectors and queue load only for a pass (start-up time).
    from sync.procedure.scheduler import Scheduler
    from sync.runtime import wiring

    store = open_store(settings)
    try:
        queue = open_queue(settings, store)
        engine = configured(
            lambda: wiring.build_engine(settings, store, enqueue=queue.enqueuer("poll"))
        )
        queue.set_processor(engine)
        before = store.status_counts().dead_letters_pending
        result = OncePass()
        # Replies first: the tickets they land on are synced (mirrored to engineering) below.
        intake = wiring.mail_intake(
            settings, engine, enqueue=queue.enqueuer("mail"), health=queue.health
        )
        if intake is not None:
            try:
                result.mail = intake.run_once()
            finally:
                intake.close()
        for system in sorted(settings.mapping_model.systems):
            try:
                result.found[system.value] = engine.poll(system.value)
            except ConnectorError as exc:
                result.failed[system.value] = exc
                queue.health.failed(system.value, exc)
                if isinstance(exc, PauseSystem):
                    # Said on stderr below; the next run's poll is the probe that resumes it.
                    queue.health.pause(system.value, f"{type(exc).__name__}: {exc}")
                continue
            # A pass that went through proves the credentials: a pause left by an earlier run
            # ends here, and the events it held go ahead in this run.
            queue.health.succeeded(system.value, "poll")
            queue.resume(system.value, "polled")
        # Time-driven rules (an SLA nearing, a follow-up due) fire on unchanged tickets too, at
        # the time the engine decides with (a processor without a clock: the wall clock).
        clock = getattr(engine, "clock", None) or (lambda: datetime.now(UTC))
        result.scheduled = Scheduler(
            store, lambda s, t: queue.enqueue_ticket(s, t, source="scheduler"), clock
        ).tick()
        result.ran = queue.run_pending(limit=100_000)
        result.dead = store.status_counts().dead_letters_pending - before
        result.waiting = int(queue.huey.scheduled_count())
        return result
    finally:
        store.close()


def _by_reason(skips: Iterable[BackfillSkip]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for skip in skips:
        grouped.setdefault(skip.reason, []).append(skip.ticket)
    return grouped


def _some(tickets: list[str], shown: int = 20) -> str:
    """The first `shown` tickets, and how many more there are."""
    more = len(tickets) - shown
    return ", ".join(tickets[:shown]) + (f" and {more} more" if more > 0 else "")


def register(app: typer.Typer) -> None:
    """Add `sync` and `backfill`."""

    @app.command("sync")
    def sync(
        once: Annotated[
            bool, typer.Option("--once", help="One polling pass, process everything, exit.")
        ] = False,
        config: ConfigOption = None,
    ) -> None:
        """Poll every mapped system once and bring every changed ticket in step (for cron); the
        tickets a time-driven escalation rule is due for are decided too."""
        if not once:
            typer.echo("use `escalation-sync sync --once` (or `escalation-sync run`)", err=True)
            raise typer.Exit(2)
        settings = load_or_exit(config, secrets=True)
        result = run_once(settings)
        for system, exc in result.failed.items():
            typer.echo(f"{system} not polled: {describe(exc, settings, system)}", err=True)
        changes = ", ".join(
            f"{system.value} {result.found.get(system.value, 'not polled')}"
            for system in sorted(settings.mapping_model.systems)
        )
        mail = result.mail
        if mail is not None and mail.failed is not None:
            failed = mail.failed
            reason = (
                describe(failed, settings, "mailbox")
                if isinstance(failed, ConnectorError)
                else f"{type(failed).__name__}: {failed}"
            )
            typer.echo(f"replies mailbox not read: {reason}", err=True)
        replies = ""
        if mail is not None and mail.failed is None:
            replies = (
                f"; replies read: {mail.read} (posted {mail.posted}, refused {mail.refused}"
                + (f", {mail.left} left for the next run" if mail.left else "")
                + ")"
            )
        typer.echo(
            f"changed records: {changes}; tasks run: {result.ran}; "
            f"new dead letters: {result.dead}"
            + (f"; {result.scheduled} decided for time-driven rules" if result.scheduled else "")
            + (f"; {result.waiting} waiting to retry" if result.waiting else "")
            + replies
        )
        if result.dead:
            typer.echo("see `escalation-sync deadletters list`", err=True)
        if result.dead or result.failed or (mail is not None and mail.failed is not None):
            raise typer.Exit(1)

    @app.command("backfill")
    def backfill_cmd(
        system: Annotated[System, system_option("The system whose records to pair.")],
        since: Annotated[
            str | None,
            typer.Option("--since", help="Only records changed since this date (YYYY-MM-DD)."),
        ] = None,
        config: ConfigOption = None,
    ) -> None:
        """Pair existing records with new ones in the other system (bulk APIs, progress bar)."""
        # The engine, connectors and progress bar load only for a backfill (start-up time).
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        from sync.pipeline import backfill as backfilling
        from sync.runtime import wiring

        settings = load_or_exit(config, secrets=True)
        moment = _parse_since(since)
        store = open_store(settings)
        try:
            engine = configured(lambda: wiring.build_engine(settings, store))
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                transient=False,
            ) as bar:
                tasks: dict[str, TaskID] = {}

                def progress(stage: str, done: int, total: int | None) -> None:
                    if stage not in tasks:
                        tasks[stage] = bar.add_task(STAGES.get(stage, stage), total=total)
                    bar.update(tasks[stage], completed=done, total=total)

                try:
                    result = backfilling.backfill(engine, system, since=moment, progress=progress)
                except ConnectorError as exc:
                    reason = describe(exc, settings, system.value)
                    raise fail(f"backfill stopped: {reason}") from None
                except backfilling.NoBulkOperations as exc:
                    raise fail(f"cannot backfill: {exc}", 2) from None
        finally:
            store.close()
        typer.echo(
            f"scanned {result.scanned}; paired {result.paired}; already paired "
            f"{result.already_paired}; no route {result.not_routed}; failed {len(result.failures)}"
            + (
                f"; finished {result.resumed} left unlinked by an earlier run"
                if result.resumed
                else ""
            )
        )
        for reason, tickets in _by_reason(result.unrouted).items():
            typer.echo(f"no route for {plural(len(tickets), 'record')}: {reason}:")
            typer.echo(f"  {_some(sorted(tickets))}")
        for failure in result.failures:
            typer.echo(f"  {failure.ticket}: {failure.reason}", err=True)
        if result.failures:
            raise typer.Exit(1)


__all__ = ["OncePass", "register", "run_once"]
