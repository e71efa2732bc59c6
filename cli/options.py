"""Options several commands share."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

import typer

from mapping.model import System
from sync.systems import ENTRY_POINTS


def parse_system(value: str) -> System:
    """The system an option names; an unknown name is refused (as a value error, which the
    command line reports as a bad option value) with the names there are."""
    # The installed systems load when an option names one, not with --help (start-up time);
    # loading them declares the names of those other packages add.
    from sync.systems.registry import registry

    registry()
    try:
        return System(value)
    except ValueError:
        known = ", ".join(repr(name) for name in System.names())
        raise ValueError(f"{value!r} is not one of {known}.") from None


def complete_system(incomplete: str) -> list[str]:
    """The installed systems' names for shell completion: the built-in ones and those packages
    name in their entry points (read from their metadata, nothing imported)."""
    names = [*System.names(), *(point.name for point in entry_points(group=ENTRY_POINTS))]
    return [name for name in dict.fromkeys(names) if name.startswith(incomplete)]


def system_option(help_text: str) -> Any:
    """`--system/-s NAME`: a ticket system's name (jira, servicenow or another one installed)."""
    return typer.Option(
        "--system",
        "-s",
        parser=parse_system,
        autocompletion=complete_system,
        metavar="SYSTEM",
        help=f"{help_text} (jira, servicenow or another installed system)",
    )
