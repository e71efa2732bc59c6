"""`escalation-sync email ...`: check templates, send a test mail, look after the outbox, and
see what became of customers' replies and which addresses bounced.

The outbox serves every notification channel (e-mail and those under `[notify.*]`); `outbox`,
`send`, `requeue` and `resolve` act on all of them, by outbox id. `replies` lists the mails read
from `[email.inbound]`; `bounces` lists the addresses no mail goes to, and `--clear` lifts one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from cli.mapping_cmd import ConfigOption, load_or_exit

if TYPE_CHECKING:
    from connectors.email import EmailSettings
    from sync.config.settings import Settings
    from sync.store.database import Store

STATUS_CHOICES = ("pending", "sending", "sent", "dead", "unknown")


def _email_settings(settings: Settings) -> EmailSettings:
    email = settings.email_settings
    if email is None or not email.enabled:
        typer.echo("email is not configured ([email] is missing or enabled = false)", err=True)
        raise typer.Exit(2)
    return email


def _open_store(settings: Settings) -> Store:
    # The composition root is imported when a command runs, not when the CLI starts: it loads
    # the store, the engine and the connectors, which `--help` does not need (start-up time).
    from sync.runtime.wiring import open_store

    return open_store(settings)


def register(app: typer.Typer) -> None:
    """Add the `email` command group."""
    group = typer.Typer(
        help="Customer and management email: templates, test mail, outbox, replies, bounces."
    )
    app.add_typer(group, name="email")

    @group.command("check")
    def check(config: ConfigOption = None) -> None:
        """Render every email template (admin overrides first) with sample data; 2 on errors."""
        from connectors.email_render import EVENTS, Renderer  # Jinja: start-up time

        email = _email_settings(load_or_exit(config))
        problems = Renderer(email.templates_dir).check()
        for problem in problems:
            typer.echo(f"  {problem}", err=True)
        if problems:
            raise typer.Exit(2)
        where = f" with overrides from {email.templates_dir}" if email.templates_dir else ""
        typer.echo(f"OK: {len(EVENTS)} email events render{where}; transport {email.transport}")

    @group.command("test")
    def test(
        to: Annotated[str, typer.Option("--to", help="Where to send the test message.")],
        config: ConfigOption = None,
    ) -> None:
        """Send one test message through the configured transport, now (not via the outbox)."""
        # The mail transports (exchangelib, msal) load only to send (start-up time).
        from connectors.email import OutgoingEmail, build_sender, make_message_id
        from connectors.errors import ConnectorError

        email = _email_settings(load_or_exit(config))
        now = datetime.now(UTC)
        line = f"This is a test message from escalation-sync, sent {now:%Y-%m-%d %H:%M} UTC."
        message = OutgoingEmail(
            to=(to,),
            subject="[TEST] escalation-sync test message",
            text=line + "\n",
            html=f"<p>{line}</p>",
            message_id=make_message_id(f"test|{now.isoformat()}", email.id_domain),
        )
        try:
            sent = build_sender(email).send(message)
        except ConnectorError as exc:
            typer.echo(f"not sent: {type(exc).__name__}: {exc}", err=True)
            raise typer.Exit(1) from None
        typer.echo(f"sent {sent} to {to} via {email.transport}")

    @group.command("outbox")
    def outbox_list(
        status: Annotated[
            str | None,
            typer.Option(help=f"Only rows in this status ({', '.join(STATUS_CHOICES)})."),
        ] = None,
        ticket: Annotated[str | None, typer.Option(help="Only rows of this ticket.")] = None,
        channel: Annotated[
            str | None, typer.Option(help="Only rows of this channel (email, ...).")
        ] = None,
        config: ConfigOption = None,
    ) -> None:
        """List outbox messages with their channel, status and last error."""
        # The outbox (SQLAlchemy) and Rich's tables load only for a listing (start-up time).
        from rich.console import Console
        from rich.table import Table
        from sqlalchemy.orm import sessionmaker

        from sync.notify import outbox

        if status is not None and status not in STATUS_CHOICES:
            raise typer.BadParameter(f"status must be one of {', '.join(STATUS_CHOICES)}")
        store = _open_store(load_or_exit(config))
        try:
            with sessionmaker(store.db)() as session:
                rows = outbox.list_entries(session, status=status, ticket=ticket, channel=channel)
                counts = outbox.status_counts(session, channel=channel)
        finally:
            store.close()
        table = Table(
            "id", "ticket", "event", "channel", "to", "status", "attempts", "next / sent", "error"
        )
        for row in rows:
            when = row.sent_at or row.next_attempt_at
            table.add_row(
                str(row.id),
                row.ticket_ref,
                row.event,
                row.channel,
                ", ".join(row.recipients),
                row.status,
                str(row.attempts),
                f"{when:%Y-%m-%d %H:%M}",
                (row.last_error or "")[:80],
            )
        Console(width=200).print(table)
        typer.echo(", ".join(f"{name} {n}" for name, n in counts.items()))

    @group.command("send")
    def send(config: ConfigOption = None) -> None:
        """Send every due outbox message, one at a time (for cron when no daemon runs)."""
        from sqlalchemy.orm import sessionmaker  # the outbox and its store: start-up time

        from sync.notify import outbox
        from sync.runtime import wiring
        from sync.runtime.health import HealthBoard

        settings = load_or_exit(config)
        _email_settings(settings)
        store = _open_store(settings)
        try:
            worker = wiring.outbox_worker(
                settings, store, health=HealthBoard(store.db), batch_size=100_000
            )
            # E-mail is on (checked above), so there is a notifier to send through.
            assert worker is not None
            sent = worker.run_once()
            with sessionmaker(store.db)() as session:
                counts = outbox.status_counts(session)
        finally:
            store.close()
        typer.echo(f"sent {sent}; " + ", ".join(f"{name} {n}" for name, n in counts.items()))

    @group.command("requeue")
    def requeue(
        row_id: Annotated[int, typer.Argument(help="Outbox id of a dead message.")],
        config: ConfigOption = None,
    ) -> None:
        """Give a dead message a new set of attempts (after fixing the cause)."""
        from sqlalchemy.orm import sessionmaker  # the outbox and its store: start-up time

        from sync.notify import outbox

        store = _open_store(load_or_exit(config))
        try:
            with sessionmaker(store.db).begin() as session:
                done = outbox.requeue_dead(session, row_id, now=datetime.now(UTC))
        finally:
            store.close()
        if not done:
            typer.echo(f"outbox {row_id} is not a dead message", err=True)
            raise typer.Exit(1)
        typer.echo(f"outbox {row_id} queued again")

    @group.command("resolve")
    def resolve(
        row_id: Annotated[int, typer.Argument(help="Outbox id of a message in status unknown.")],
        sent: Annotated[
            bool,
            typer.Option(
                "--sent/--not-sent",
                help="What the relay log says: it went out, or it did not (send it again).",
            ),
        ],
        config: ConfigOption = None,
    ) -> None:
        """Settle a message whose send was interrupted and the transport could not confirm."""
        from sqlalchemy.orm import sessionmaker  # the outbox and its store: start-up time

        from sync.notify import outbox

        store = _open_store(load_or_exit(config))
        try:
            with sessionmaker(store.db).begin() as session:
                done = outbox.resolve_unknown(session, row_id, sent=sent, now=datetime.now(UTC))
        finally:
            store.close()
        if not done:
            typer.echo(f"outbox {row_id} is not in status unknown", err=True)
            raise typer.Exit(1)
        typer.echo(f"outbox {row_id} marked {'sent' if sent else 'pending'}")

    @group.command("replies")
    def replies(
        limit: Annotated[int, typer.Option(min=1, help="How many, newest first.")] = 50,
        config: ConfigOption = None,
    ) -> None:
        """List the customers' mails read from [email.inbound] and what became of each."""
        # Rich's tables and the store load only for a listing (start-up time).
        from rich.console import Console
        from rich.table import Table

        from sync.replies import store as mails

        store = _open_store(load_or_exit(config))
        try:
            with store.reading() as tx:
                rows = mails.list_mails(tx, limit=limit)
                counts = mails.mail_counts(tx)
        finally:
            store.close()
        table = Table("seen", "from", "ticket", "kind", "outcome", "why")
        for row in rows:
            table.add_row(
                f"{row.seen_at:%Y-%m-%d %H:%M}",
                row.sender or "",
                row.ticket or "",
                row.kind,
                row.outcome + ("" if row.settled_at else " (not settled)"),
                (row.reason or "")[:80],
            )
        Console(width=200).print(table)
        typer.echo(", ".join(f"{name} {n}" for name, n in sorted(counts.items())) or "none read")

    @group.command("bounces")
    def bounces(
        clear: Annotated[
            str | None,
            typer.Option(
                "--clear", help="Send to this address again (the customer fixed their mailbox)."
            ),
        ] = None,
        config: ConfigOption = None,
    ) -> None:
        """List the addresses mail bounced from for good (no mail goes to them), or lift one."""
        from escalation.wording import plural
        from sync.replies import store as mails  # the store: start-up time

        store = _open_store(load_or_exit(config))
        try:
            if clear is not None:
                with store.session() as tx:
                    lifted = mails.clear_bounce(tx, clear)
                if not lifted:
                    typer.echo(f"{clear} is not stopped", err=True)
                    raise typer.Exit(1)
                typer.echo(f"mail to {clear} is sent again")
                return
            with store.reading() as tx:
                found = mails.list_bounces(tx)
        finally:
            store.close()
        for bounced in found:
            why = f"{bounced.status or ''} {bounced.diagnostic or ''}".strip()
            when = f"{bounced.bounced_at:%Y-%m-%d %H:%M} UTC"
            typer.echo(f"{bounced.address}  {when}  {bounced.ticket or '-'}  {why}".rstrip())
        typer.echo(f"{plural(len(found), 'address', 'addresses')} stopped")
