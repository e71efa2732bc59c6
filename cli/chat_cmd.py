"""`escalation-sync teams sign-in`: the one interactive step a Teams deployment needs.

Graph posts chat messages only for a signed-in user, so a service account signs in once with a
device code; msal's token cache, written where `[notify.teams] token_cache` says, is what the
daemon reads and renews from then on.
"""

from __future__ import annotations

from pathlib import Path

import typer

from cli.mapping_cmd import ConfigOption, load_or_exit


def register(app: typer.Typer) -> None:
    """Add the `teams` command group."""
    group = typer.Typer(help="Microsoft Teams: sign in the account that posts in escalations.")
    app.add_typer(group, name="teams")

    @group.command("sign-in")
    def sign_in(config: ConfigOption = None) -> None:
        """Sign the Teams service account in with a device code and keep its tokens.

        Open the page shown, enter the code and sign in as the account the notify.teams table
        names (username). Its token cache is written where that table's token_cache says
        (relative to the state folder), readable by its owner only; the daemon renews the
        tokens from there. Run it again if the account's password changes or an administrator
        revokes its sessions (status and /healthz then say the Teams channel is paused).
        """
        # msal and the connector load only when a sign-in runs (start-up time).
        from connectors.errors import ConnectorError
        from connectors.teams import sign_in_with_device_code
        from sync.notify.channels.teams import Settings

        settings = load_or_exit(config)
        teams = settings.notify_settings.get("teams")
        if not isinstance(teams, Settings):
            typer.echo("Teams is not configured: add a [notify.teams] table", err=True)
            raise typer.Exit(2)
        cache = teams.cache_path(Path(settings.state.dir))
        try:
            who = sign_in_with_device_code(
                teams.tenant_id,
                teams.client_id,
                cache,
                say=typer.echo,
                username=teams.username,
                authority_host=teams.login_url,
                timeout=teams.timeout_seconds,
            )
        except ConnectorError as exc:
            typer.echo(f"sign-in failed: {exc}", err=True)
            raise typer.Exit(1) from None
        typer.echo(f"signed in as {who or 'the account'}; token cache written to {cache}")
