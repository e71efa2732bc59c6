"""`escalation-sync doctor`: check every setting the product depends on against the live systems."""

from __future__ import annotations

import typer

from cli.mapping_cmd import ConfigOption, load_or_exit


def register(app: typer.Typer) -> None:
    """Add the `doctor` command."""

    @app.command("doctor")
    def doctor(config: ConfigOption = None) -> None:
        """Check each system once with the live credentials, read-only, one line per check
        with the fix when it fails: Jira credentials, project and issue type, mapped fields and
        the create and edit screens, the workflow's statuses, the internal-comment role, the
        webhook; ServiceNow credentials, table, fields, choice values, write access, the
        Business Rule's URL; the mail transport's login; the chat channels' tokens (Slack's
        scopes, Teams' application and signed-in account). Exit 0 when every check passes, 1 when
        one fails, 2 for a configuration error."""
        # Imported here: the connectors and the HTTP stack are not needed to print --help.
        from sync.doctor import run_checks

        settings = load_or_exit(config, secrets=True)
        results = run_checks(settings)
        for result in results:
            typer.echo(result.line())
        failures = [r for r in results if r.failed]
        passes = sum(1 for r in results if r.verdict.value == "PASS")
        skips = len(results) - passes - len(failures)
        typer.echo(
            f"{passes} passed, {len(failures)} failed" + (f", {skips} not checked" if skips else "")
        )
        if failures:
            raise typer.Exit(1)
