"""`escalation-sync console hash-password`: the argon2 hash for a console user."""

from __future__ import annotations

import sys
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add the `console` command group."""
    group = typer.Typer(help="The operations console served by the daemon.", no_args_is_help=True)
    app.add_typer(group, name="console")

    @group.command("hash-password")
    def hash_password_cmd(
        stdin: Annotated[
            bool,
            typer.Option(
                "--stdin", help="Read the password from the first line of standard input."
            ),
        ] = False,
    ) -> None:
        """Print an argon2id hash of a password for `[[console.users]] password_hash` or a users
        file. The password is asked for twice without echo (or read with --stdin); it is
        never printed nor logged.
        """
        from sync.console.auth import hash_password

        if stdin or not sys.stdin.isatty():
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
        if len(password) < 8:
            typer.echo("refused: a console password needs at least 8 characters", err=True)
            raise typer.Exit(2)
        typer.echo(hash_password(password))
