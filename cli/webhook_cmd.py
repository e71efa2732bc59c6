"""`webhook parse`: normalise captured webhook bodies the way the daemon's intake does.

Signatures are not checked here (a capture has no secret); everything else is.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.options import system_option
from connectors.errors import WebhookRejected
from connectors.events import ChangeEvent
from mapping.model import System


def _parse_unsigned(system: str, raw: bytes) -> list[ChangeEvent]:
    """A delivery parsed as the daemon does, with a section that has no secret: a capture is
    not checked for its signature or its age."""
    # The installed systems (and their connectors) load only to parse (start-up time).
    from sync.systems import registry as systems

    ticket_system = systems.get(system)
    return ticket_system.parse_webhook({}, raw, ticket_system.settings_model(), datetime.now(UTC))


def parse_files(system: str, files: list[Path]) -> list[dict[str, Any]]:
    """The `to_json()` of every event in every file; raises WebhookRejected naming the file,
    for a file that is not a delivery of `system` or carries no event the product acts on."""
    out: list[dict[str, Any]] = []
    for path in files:
        raw = path.read_bytes()
        try:
            events = _parse_unsigned(system, raw)
        except WebhookRejected as exc:
            raise WebhookRejected(f"{path}: not a {system} webhook: {exc}") from None
        if not events:
            raise WebhookRejected(f"{path}: {_unhandled(system, raw)}")
        out.extend(event.to_json() for event in events)
    return out


def _unhandled(system: str, raw: bytes) -> str:
    """Why a well-formed delivery gave no event: its type is one the product ignores."""
    try:
        kind = json.loads(raw).get("webhookEvent")
    except (ValueError, AttributeError):
        kind = None
    what = f"{system} event {kind!r}" if isinstance(kind, str) else f"this {system} delivery"
    return (
        f"{what} is not one escalation-sync handles (it acts on issue and comment events; "
        "the daemon acknowledges the others and does nothing)"
    )


def register(app: typer.Typer) -> None:
    """Add the `webhook` command group."""
    webhook_app = typer.Typer(help="Inspect webhook deliveries.", no_args_is_help=True)

    @webhook_app.command("parse")
    def parse(
        files: Annotated[
            list[Path],
            typer.Argument(metavar="FILE", help="Captured webhook bodies (JSON files)."),
        ],
        system: Annotated[System, system_option("The system that sent the deliveries.")],
    ) -> None:
        """Print one JSON object per normalised event, one per line.

        Exit 2 for a file that is not a delivery of that system, or whose event is of a type
        the product does not act on.
        """
        for path in files:
            if not path.is_file():
                typer.echo(f"{path}: no such file", err=True)
                raise typer.Exit(2)
        try:
            rows = parse_files(system.value, files)
        except WebhookRejected as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from None
        for row in rows:
            typer.echo(json.dumps(row, ensure_ascii=False))

    app.add_typer(webhook_app, name="webhook")
