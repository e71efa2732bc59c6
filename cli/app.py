"""The escalation-sync command line: one Typer app, `run_sync.py` and the console script share it.

Each area keeps its commands in a module of its own under `cli/` that exposes
`register(app: typer.Typer) -> None`; this module only lists them.

Start-up time: `--help`, `--version` and shell completion build every command, so the command
modules import at their top only Typer, the standard library and the small modules their
signatures name. Whatever a command needs to run (the store, the connectors, the simulators,
FastAPI, SQLAlchemy, structlog, ...) it imports inside its function, each with a comment saying
so; tests/cli/test_startup.py checks that `--help` imports none of it.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Iterable
from typing import Annotated, Any

import typer
from typer._click.core import Command
from typer.core import TyperCommand, TyperGroup, TyperOption

PROG = "escalation-sync"
DISTRIBUTION = "escalation-sync"

app = typer.Typer(
    name=PROG,
    help="Keep ServiceNow incidents and Jira issues in step and run the escalation procedure.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

# Order is the order of `--help`.
COMMAND_MODULES: tuple[str, ...] = (
    "cli.run_cmd",
    "cli.sync_cmd",
    "cli.ops_cmd",
    "cli.escalation_cmd",
    "cli.mapping_cmd",
    "cli.doctor_cmd",
    "cli.webhook_cmd",
    "cli.email_cmd",
    "cli.chat_cmd",
    "cli.simulators_cmd",
    "cli.demo_cmd",
    "cli.console_cmd",
)


def reflow(text: str | None) -> str | None:
    """Join the lines of each paragraph: docstrings wrap at the source's width, and Rich help
    keeps single line breaks, which would cut sentences wherever the source did."""
    if not text:
        return text
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(
        p if p.startswith("\b") else " ".join(line.strip() for line in p.splitlines())
        for p in paragraphs
    )


def _hide_flag_type(params: Iterable[object]) -> None:
    # Typer's Rich help prints a flag's type (`<bool>`) as if the flag took a value; an empty
    # metavar leaves that column blank and changes nothing else for a flag.
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""


# Typer builds on its own copy of click: the mixin's base is that copy's Command.
class _ReadableHelp(Command):
    """Help that reads as prose and shows no type for flags (mixed into Typer's classes)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = reflow(self.help)
        _hide_flag_type(self.params)

    def get_params(self, ctx: Any) -> Any:
        # Typer adds its help and shell-completion flags after the command is built.
        params = super().get_params(ctx)
        _hide_flag_type(params)
        return params


class HelpCommand(_ReadableHelp, TyperCommand):
    """A command built with _ReadableHelp's conventions."""


class HelpGroup(_ReadableHelp, TyperGroup):
    """A command group built with _ReadableHelp's conventions."""


def _use_help_classes(typer_app: typer.Typer) -> None:
    """Build every command and group of `typer_app` (recursively) with the help classes."""
    typer_app.info.cls = HelpGroup
    for command in typer_app.registered_commands:
        if command.cls in (None, TyperCommand):
            command.cls = HelpCommand
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _use_help_classes(group.typer_instance)


def version_text() -> str:
    """`escalation-sync 1.2.3`, the installed distribution's version."""
    # Imported here: only --version reads the package metadata (start-up time).
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{PROG} {version(DISTRIBUTION)}"
    except PackageNotFoundError:
        return f"{PROG} (version unknown: run from a source tree that is not installed)"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(version_text())
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    # Runs before any command (not for --help, --version or completion, which exit earlier):
    # logging is configured only when a command is about to log (start-up time).
    from sync.runtime.logs import configure_logging

    configure_logging(level=os.environ.get("ESCALATION_SYNC_LOG_LEVEL", "INFO"))


def build() -> typer.Typer:
    """Register every area's commands on the app (idempotent)."""
    if not getattr(app, "_registered", False):
        for name in COMMAND_MODULES:
            importlib.import_module(name).register(app)
        _use_help_classes(app)
        app._registered = True  # type: ignore[attr-defined]
    return app


def main() -> None:
    """Entry point of the console script (and of `python run_sync.py`)."""
    # One program name however it is started, so usage lines and the shell completion's
    # environment variable (_ESCALATION_SYNC_COMPLETE) are the same.
    build()(prog_name=PROG)
