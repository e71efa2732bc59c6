"""`escalation-sync simulators`: Jira, ServiceNow, Slack and a mail sink in the foreground."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from cli.extras import require_extra

Port = Annotated[int, typer.Option(min=0, max=65535, help="0 picks a free port.")]


def people_lines(people: list[tuple[str, str, str, str]], indent: str) -> list[str]:
    """One aligned line per person: system, login:secret, role."""
    width = max(len(f"{login}:{secret}") for _, login, secret, _ in people)
    return [
        f"{indent}{system:<11} {f'{login}:{secret}':<{width}}  {role}"
        for system, login, secret, role in people
    ]


def register(app: typer.Typer) -> None:
    """Add the `simulators` command."""

    @app.command("simulators")
    def simulators(
        jira_port: Port = 8081,
        servicenow_port: Port = 8082,
        smtp_port: Port = 8025,
        mail_api_port: Port = 8026,
        imap_port: Port = 8143,
        slack_port: Port = 8083,
        webhooks_to: Annotated[
            str,
            typer.Option(help="Daemon base URL the simulators post their webhooks to."),
        ] = "http://127.0.0.1:8080",
    ) -> None:
        """Run the Jira, ServiceNow and Slack simulators and the mail sink until Ctrl-C.

        Try mapping and policy files with no production system at hand: the printed snippet,
        merged into a copy of config.example.toml, points the daemon at these simulators (on
        whatever ports they got), and the printed secrets go in its environment. It also lists
        the people you can act as over the vendors' REST APIs, with their credentials.
        """
        require_extra("simulators", "simulators")
        # The simulators (FastAPI apps, an SMTP server) load only when they start (start-up time).
        from simulators.estate import SimulatedEstate

        estate = SimulatedEstate(
            jira_port=jira_port,
            servicenow_port=servicenow_port,
            smtp_port=smtp_port,
            mail_api_port=mail_api_port,
            imap_port=imap_port,
            slack_port=slack_port,
        )
        estate.start()
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        try:
            estate.point_webhooks_at(webhooks_to.rstrip("/"))
            for name, url in estate.urls().items():
                typer.echo(f"{name:<11} {url}")
            typer.echo(
                f"webhooks -> {webhooks_to}/webhooks/jira, {webhooks_to}/webhooks/servicenow"
            )
            typer.echo("\n# Configuration (merge into a copy of config.example.toml):")
            typer.echo(estate.config_overrides(webhooks_to))
            typer.echo("\n# Secrets, in the daemon's environment:")
            for key, value in estate.environment().items():
                typer.echo(f"export {key}={value}")
            typer.echo(
                f"# Slack Web API at {estate.slack.api_url}, bot token {estate.slack.bot_token}"
            )
            typer.echo(f"export ESCALATION_SYNC_NOTIFY__SLACK__TOKEN={estate.slack.bot_token}")
            people = estate.people()
            typer.echo(
                "\n# People to act as over the REST APIs (HTTP basic auth, login:secret);\n"
                "# the integration users above are the daemon's own (it ignores their changes):"
            )
            for line in people_lines(people, indent="#   "):
                typer.echo(line)
            _, login, secret, _ = people[0]
            typer.echo(
                f"# e.g. curl -u {login}:{secret} "
                f"'{estate.servicenow.url}/api/now/table/incident?sysparm_limit=1'"
            )
            typer.echo("\nReady. Ctrl-C stops.", err=True)
            stop.wait()
        finally:
            estate.stop()
            typer.echo("Stopped.", err=True)
