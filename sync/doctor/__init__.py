"""`escalation-sync doctor`: every setting the product depends on, checked once against the live
systems with the configured credentials, read-only.

One `CheckResult` per check, in the order an admin would fix them: Jira (credentials, project and
issue type, fields, create and edit screens, workflow, internal-comment role, webhook),
ServiceNow (credentials, table, fields, choice values, write access, webhook), the mail
transport and the chat channels (Slack's token and scopes, Teams' two tokens). A check that
depends on a failed one is skipped, so each wrong setting fails one line.
"""

from __future__ import annotations

from typing import Any

from connectors.retry import NO_RETRY
from mapping.model import System
from sync.doctor.chat import check_chat
from sync.doctor.email import check_email
from sync.doctor.jira import JiraDoctor
from sync.doctor.report import CheckResult, Verdict
from sync.doctor.servicenow import ServiceNowDoctor

__all__ = ["CheckResult", "Verdict", "run_checks"]


def run_checks(settings: Any) -> list[CheckResult]:
    """Run every check with the settings' live credentials; fails fast (no retries)."""
    from sync.runtime.wiring import build_adapters

    adapters = build_adapters(settings, retry=NO_RETRY)
    mapping = settings.mapping_model
    daemon = settings.webhooks.base_url()
    results: list[CheckResult] = []
    if System.JIRA in adapters:
        results += JiraDoctor(
            adapters[System.JIRA].connector,  # type: ignore[attr-defined]
            settings.system_settings(System.JIRA.value),
            mapping,
            settings.compiled_policy,
            daemon,
        ).run()
    if System.SERVICENOW in adapters:
        results += ServiceNowDoctor(
            adapters[System.SERVICENOW].connector,  # type: ignore[attr-defined]
            settings.system_settings(System.SERVICENOW.value),
            mapping,
            daemon,
        ).run()
    results.append(check_email(getattr(settings, "email_settings", None)))
    results += check_chat(settings)
    return results
