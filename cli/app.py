"""The escalation-sync command line: one Typer app, `run_sync.py` and the console script share it.

Each area keeps its commands in a module of its own under `cli/` that exposes
`register(app: typer.Typer) -> None`; this module only lists them.
"""

from __future__ import annotations

import importlib
import os

import typer

app = typer.Typer(
    name="escalation-sync",
    help="Keep ServiceNow incidents and Jira issues in step and run the escalation procedure.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)

# Order is the order of `--help`.
COMMAND_MODULES: tuple[str, ...] = (
    "cli.run_cmd",
    "cli.sync_cmd",
    "cli.ops_cmd",
    "cli.escalation_cmd",
    "cli.mapping_cmd",
    "cli.webhook_cmd",
    "cli.email_cmd",
    "cli.simulators_cmd",
    "cli.demo_cmd",
)


def build() -> typer.Typer:
    """Register every area's commands on the app (idempotent)."""
    if not getattr(app, "_registered", False):
        for name in COMMAND_MODULES:
            importlib.import_module(name).register(app)
        app._registered = True  # type: ignore[attr-defined]
    return app


def main() -> None:
    """Entry point of the console script."""
    from sync.logs import configure_logging

    configure_logging(level=os.environ.get("ESCALATION_SYNC_LOG_LEVEL", "INFO"))
    build()()
