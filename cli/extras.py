"""Commands that need an optional extra say so in one line instead of failing on an import.

The wheel keeps what only the simulators need (an SMTP server, multipart form parsing) out of
the daemon's requirements, in the `simulators` extra; `demo` and `simulators` check for it first.
The requirements are read from the installed package's metadata, so pyproject.toml stays the
one list of them.
"""

from __future__ import annotations

import re

import typer

DISTRIBUTION = "escalation-sync"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


def extra_requirements(extra: str) -> list[str]:
    """The distribution names `extra` requires (none when the package is not installed)."""
    # Package metadata is read only by the commands that need an extra (start-up time).
    from importlib.metadata import PackageNotFoundError, requires

    try:
        requirements = requires(DISTRIBUTION) or []
    except PackageNotFoundError:
        return []
    names = []
    for requirement in requirements:
        marker = _EXTRA.search(requirement)
        name = _NAME.match(requirement)
        if marker is not None and marker.group(1) == extra and name is not None:
            names.append(name.group(0))
    return names


def missing_for(extra: str) -> list[str]:
    """The requirements of `extra` that are not installed."""
    from importlib.metadata import PackageNotFoundError, distribution  # start-up time

    missing = []
    for name in extra_requirements(extra):
        try:
            distribution(name)
        except PackageNotFoundError:
            missing.append(name)
    return missing


def require_extra(extra: str, command: str) -> None:
    """Exit 2 with one line naming `extra` and how to install it, when any of it is missing."""
    missing = missing_for(extra)
    if missing:
        typer.echo(
            f"escalation-sync {command} needs the '{extra}' extra (missing: "
            f"{', '.join(missing)}): pip install 'escalation-sync[{extra}]' "
            f"(from a source tree: pip install -e '.[{extra}]')",
            err=True,
        )
        raise typer.Exit(2)
