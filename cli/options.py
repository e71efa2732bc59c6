"""Options several commands share."""

from __future__ import annotations

from typing import Any

import typer

from mapping.model import System


def parse_system(value: str) -> System:
    """The system an option names; an unknown name is refused (as a value error, which the
    command line reports as a bad option value) with the names there are."""
    try:
        return System(value)
    except ValueError:
        known = ", ".join(repr(name) for name in System.names())
        raise ValueError(f"{value!r} is not one of {known}.") from None


def system_option(help_text: str) -> Any:
    """`--system/-s NAME`: a ticket system's name (jira, servicenow or another one installed)."""
    return typer.Option(
        "--system",
        "-s",
        parser=parse_system,
        metavar="SYSTEM",
        help=f"{help_text} (jira, servicenow or another installed system)",
    )
