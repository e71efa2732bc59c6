"""`sync --once` (one polling pass, for cron) and `backfill` (initial pairing, in bulk)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from cli.mapping_cmd import ConfigOption, load_or_exit
from mapping.model import System
from sync.settings import Settings
from sync.store import Store

STAGES = {"scan": "Reading records", "create": "Creating pairs", "mirror": "Mirroring content"}


def open_store(settings: Settings) -> Store:
    """The configured store (SQLite in the state directory unless a URL is set)."""
    return Store.for_state(settings.state.dir, settings.state.database_url)


def _parse_since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"not a date: {value!r} (use YYYY-MM-DD)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def run_once(settings: Settings) -> tuple[dict[str, int], int, int]:
    """Poll both systems and process every task queued; returns (found, tasks run, dead letters)."""
    from sync.engine import build_engine
    from sync.queue import SyncQueue, make_huey

    store = open_store(settings)
    try:
        queue = SyncQueue(make_huey(settings.state.queue_url, settings.state.dir), store)
        engine = build_engine(settings, store, enqueue=queue.enqueuer("poll"))
        queue.set_processor(engine)
        before = store.status_counts().dead_letters_pending
        found = {system.value: engine.poll(system.value) for system in System}
        ran = queue.run_pending(limit=100_000)
        after = store.status_counts().dead_letters_pending
        return found, ran, after - before
    finally:
        store.close()


def register(app: typer.Typer) -> None:
    """Add `sync` and `backfill`."""

    @app.command("sync")
    def sync(
        once: Annotated[
            bool, typer.Option("--once", help="One polling pass, process everything, exit.")
        ] = False,
        config: ConfigOption = None,
    ) -> None:
        """Poll both systems once and bring every changed ticket in step (for cron)."""
        if not once:
            typer.echo("use `escalation-sync sync --once` (or `escalation-sync run`)", err=True)
            raise typer.Exit(2)
        settings = load_or_exit(config)
        found, ran, dead = run_once(settings)
        changes = ", ".join(f"{system} {count}" for system, count in found.items())
        typer.echo(f"changed records: {changes}; tasks run: {ran}; new dead letters: {dead}")
        if dead:
            typer.echo("see `escalation-sync deadletters list`", err=True)
            raise typer.Exit(1)

    @app.command("backfill")
    def backfill_cmd(
        system: Annotated[
            System, typer.Option("--system", "-s", help="The system whose records to pair.")
        ],
        since: Annotated[
            str | None,
            typer.Option("--since", help="Only records changed since this date (YYYY-MM-DD)."),
        ] = None,
        config: ConfigOption = None,
    ) -> None:
        """Pair existing records with new ones in the other system (bulk APIs, progress bar)."""
        from sync.backfill import backfill
        from sync.engine import build_engine

        settings = load_or_exit(config)
        moment = _parse_since(since)
        store = open_store(settings)
        try:
            engine = build_engine(settings, store)
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

                result = backfill(engine, system, since=moment, progress=progress)
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
        for failure in result.failures:
            typer.echo(f"  {failure.ticket}: {failure.reason}", err=True)
        if result.failures:
            raise typer.Exit(1)


__all__ = ["register", "run_once"]
