"""The checks of the chat channels: the Slack token and its scopes, Teams' two tokens.

Read-only: Slack's `auth.test` (who the token is; Slack names its scopes in `X-OAuth-Scopes`),
Graph's token endpoint for the application, and the signed-in account's token cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from connectors.errors import ConnectorError
from sync.doctor.report import CheckResult, failed, passed, skipped

SLACK_TOKEN_FIX = (
    "give a bot token (xoxb-...) of the app installed in the workspace: "
    "ESCALATION_SYNC_NOTIFY__SLACK__TOKEN or [notify.slack] token_file"
)


def check_chat(settings: Any) -> list[CheckResult]:
    """The configured chat channels' credentials (nothing when none is configured)."""
    notify = getattr(settings, "notify_settings", None) or {}
    results: list[CheckResult] = []
    if "slack" in notify:
        results += check_slack(notify["slack"])
    if "teams" in notify:
        state = getattr(getattr(settings, "state", None), "dir", None)
        results += check_teams(notify["teams"], Path(state) if state is not None else None)
    return results


def check_slack(config: Any) -> list[CheckResult]:
    """auth.test with the bot token, then the scopes it has against those the product uses."""
    from connectors.retry import NO_RETRY
    from connectors.slack import REQUIRED_SCOPES, SlackConnector, missing_scopes

    connector = SlackConnector(
        config.token.get_secret_value(),
        base_url=config.base_url,
        retry=NO_RETRY,
        timeout=config.timeout_seconds,
    )
    try:
        me = connector.identity()
    except ConnectorError as exc:
        return [
            failed("slack", "token", str(exc), SLACK_TOKEN_FIX),
            skipped("slack", "token scopes", "the token was refused"),
        ]
    who = f"{me.user or me.user_id} in {me.team or me.team_id}"
    results = [passed("slack", "token", f"the bot {who}")]
    lacking = missing_scopes(me.scopes)
    if lacking:
        has = ", ".join(sorted(me.scopes)) or "none"
        results.append(
            failed(
                "slack",
                "token scopes",
                f"missing {', '.join(lacking)} (the token has {has})",
                "add the missing bot token scopes on the app's OAuth & Permissions page and "
                "reinstall it in the workspace",
            )
        )
    else:
        results.append(passed("slack", "token scopes", ", ".join(REQUIRED_SCOPES)))
    return results


def check_teams(config: Any, state_dir: Path | None) -> list[CheckResult]:
    """The application's token from the tenant, and the signed-in account's from its cache."""
    from connectors.teams import ClientCredentialsTokens, SignedInUserTokens

    results: list[CheckResult] = []
    app = ClientCredentialsTokens(
        config.tenant_id,
        config.client_id,
        config.client_secret.get_secret_value(),
        authority_host=config.login_url,
        timeout=config.timeout_seconds,
    )
    try:
        app()
    except ConnectorError as exc:
        results.append(
            failed(
                "teams",
                "application token",
                str(exc),
                "check [notify.teams] tenant_id, client_id and the client secret "
                "(ESCALATION_SYNC_NOTIFY__TEAMS__CLIENT_SECRET)",
            )
        )
    else:
        results.append(passed("teams", "application token", f"client {config.client_id}"))
    cache = config.cache_path(state_dir)
    user = SignedInUserTokens(
        config.tenant_id,
        config.client_id,
        cache,
        username=config.username,
        authority_host=config.login_url,
        timeout=config.timeout_seconds,
    )
    try:
        user()
    except ConnectorError as exc:
        results.append(
            failed(
                "teams",
                "signed-in account",
                str(exc),
                "run `escalation-sync teams sign-in` and sign in as the service account",
            )
        )
    else:
        results.append(passed("teams", "signed-in account", f"{config.username or 'signed in'}"))
    return results
