"""`escalation-sync run`: the daemon (webhook server, workers and pollers in one process)."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.mapping_cmd import ConfigOption, load_or_exit


def register(app: typer.Typer) -> None:
    """Add the `run` command."""

    @app.command("run")
    def run(
        config: ConfigOption = None,
        watch: Annotated[
            bool,
            typer.Option(
                "--watch",
                help="Reload when the configuration, mapping or policy file changes on disk.",
            ),
        ] = False,
        processor: Annotated[
            str | None,
            typer.Option(
                "--processor",
                hidden=True,
                help="module:function building the ticket processor (default: the sync engine).",
            ),
        ] = None,
    ) -> None:
        """Run the daemon: webhooks, workers, pollers, email. SIGHUP reloads, SIGTERM stops."""
        # The daemon (FastAPI, uvicorn, SQLAlchemy, Huey) loads only when it runs (start-up time).
        from sync.runtime import daemon
        from sync.runtime.logs import configure_logging, settings_secrets

        settings = load_or_exit(config, secrets=True, webhooks=True)
        configure_logging(secrets=settings_secrets(settings))
        factory = daemon.import_factory(processor) if processor else None
        raise typer.Exit(
            daemon.run(config, watch=watch, processor_factory=factory, settings=settings)
        )
