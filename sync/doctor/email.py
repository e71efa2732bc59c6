"""The check of the mail transport: connect and authenticate as configured, send nothing."""

from __future__ import annotations

from typing import Any

from connectors.errors import ConnectorError
from sync.doctor.report import CheckResult, failed, passed

SYSTEM = "email"
FIXES = {
    "smtp": "check [email.smtp] host, port and security, and username with the password "
    "(ESCALATION_SYNC_EMAIL__SMTP__PASSWORD or password_file)",
    "ews": "check [email.ews] service_endpoint, username and the password "
    "(ESCALATION_SYNC_EMAIL__EWS__PASSWORD or password_file)",
    "graph": "check [email.graph] tenant_id, client_id and the client secret "
    "(ESCALATION_SYNC_EMAIL__GRAPH__CLIENT_SECRET), and that the app has Mail.Send",
}


def check_email(email: Any) -> CheckResult:
    """Authenticate with the configured transport (SMTP, Graph or EWS)."""
    from connectors.email import build_sender

    if email is None or not email.enabled:
        return passed(SYSTEM, "transport", "email is off ([email] enabled = false)")
    name = f"{email.transport} authentication"
    sender = build_sender(email)
    try:
        detail = sender.check()  # type: ignore[attr-defined]
    except ConnectorError as exc:
        return failed(SYSTEM, name, str(exc), FIXES[email.transport])
    return passed(SYSTEM, name, detail)
