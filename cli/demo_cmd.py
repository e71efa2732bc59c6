"""`escalation-sync demo`: the product on its embedded defaults, playing an escalation story."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.extras import require_extra


def register(app: typer.Typer) -> None:
    """Add the `demo` command."""

    @app.command("demo")
    def demo(
        keep_running: Annotated[
            bool, typer.Option("--keep-running", help="Leave everything up after the story.")
        ] = False,
    ) -> None:
        """Start simulators, SMTP sink and daemon on free ports and play an escalation story.

        Needs no server installed, only this package with its `simulators` extra: SQLite state
        in a temporary folder.
        Prints a timeline of what happened in each system; exits 0 when the story played out.
        """
        require_extra("simulators", "demo")
        # The simulators and the daemon load only when the demo plays (start-up time).
        from cli.demo_story import run_demo

        raise typer.Exit(run_demo(keep_running=keep_running, echo=typer.echo))
