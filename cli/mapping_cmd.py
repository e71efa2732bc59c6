"""`mapping check` and `mapping preview`."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `mapping` command group."""
    mapping_app = typer.Typer(help="Check and preview mapping files.", no_args_is_help=True)

    @mapping_app.command("check")
    def check() -> None:
        """Validate the configuration's mapping (placeholder until the mapping layer lands)."""
        raise typer.Exit(0)

    app.add_typer(mapping_app, name="mapping")
