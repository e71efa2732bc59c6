"""Jira as a ticket system: its section, adapter, webhooks, and issue keys as references."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, ClassVar

from connectors import jira_webhook
from connectors.events import ChangeEvent
from connectors.jira import CommentPolicy, JiraConnector
from connectors.retry import RetryPolicy
from escalation.policy import Scope
from mapping import Mapping as SyncMapping
from mapping.model import Ref
from sync.systems.base import Simulator, TicketSystem
from sync.systems.jira.adapter import JiraAdapter
from sync.systems.jira.settings import JiraSettings

ISSUE_KEY = re.compile(r"[A-Z][A-Z0-9_]*-\d+")
# The projects a JQL names: `project = DS`, `project in (DS, "ESC")`.
JQL_PROJECT = re.compile(
    r"\bproject\s*(?:=\s*\"?([A-Za-z][A-Za-z0-9_]*)\"?|in\s*\(([^)]*)\))", re.IGNORECASE
)


class JiraSystem(TicketSystem[JiraSettings]):
    """Jira Cloud or Server/DC issues, addressed by issue key."""

    name: ClassVar[str] = "jira"
    title: ClassVar[str] = "Jira"
    settings_model = JiraSettings
    simulator: ClassVar[Simulator | None] = Simulator("simulators.jira:JiraSimulator")

    def adapter(
        self,
        section: JiraSettings,
        mapping: SyncMapping,
        *,
        retry: RetryPolicy | None = None,
        session_factory: Callable[[], Any] | None = None,
    ) -> JiraAdapter:
        """A JiraAdapter on the configured site, project and JQL; new issues take the first
        issue type a route names (Task when none does)."""
        credentials: dict[str, Any] = {}
        if section.auth == "pat":
            credentials["pat"] = _secret(section.pat)
        else:
            credentials.update(email=section.email, api_token=_secret(section.api_token))
        connector = JiraConnector(
            section.base_url,
            session=session_factory() if session_factory is not None else None,
            retry=retry,
            comments=CommentPolicy(
                service_desk=section.service_desk, visibility_value=section.internal_comment_role
            ),
            **credentials,
        )
        issue_type = next((r.issue_type for r in mapping.routes if r.issue_type), "Task")
        return JiraAdapter(
            connector, project=section.project, jql=section.jql, issue_type=issue_type
        )

    def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, section: JiraSettings, now: datetime
    ) -> list[ChangeEvent]:
        """A Jira admin webhook delivery, its `X-Hub-Signature` checked (when a secret is set)."""
        return jira_webhook.parse_webhook(headers, body, secret=section.webhook_secret_value())

    def vendor_record(self, document: Mapping[str, Any]) -> dict[str, Any]:
        """An issue as the REST API prints it, or the `issue` of a webhook body."""
        issue = document.get("issue")
        return dict(issue) if isinstance(issue, Mapping) else dict(document)

    def ticket_id(self, ref: Ref) -> str:
        """The issue key (the numeric id when the key is unknown)."""
        return ref.key or ref.id

    def container_of(self, ticket_id: str) -> str | None:
        """The project of an issue key (`DS` of `DS-12`)."""
        return ticket_id.rsplit("-", 1)[0] if ISSUE_KEY.fullmatch(ticket_id) else None

    def claims_reference(self, text: str) -> bool:
        """An issue key, `DS-12`."""
        return ISSUE_KEY.fullmatch(text) is not None

    def scope(self, section: JiraSettings, mapping: SyncMapping) -> Scope | None:
        """The projects the JQL polls (the section's project when it has none) and the routes'
        target projects; None when the JQL names no project (it then bounds none)."""
        jql = section.jql.strip()
        found: set[str] = set()
        if jql:
            for single, listed in JQL_PROJECT.findall(jql):
                names = [single] if single else [n.strip(' "') for n in listed.split(",")]
                found.update(n.upper() for n in names if n)
            if not found:
                return None
        else:
            found.add(section.project.upper())
        for route in mapping.routes:
            if route.target is self.system and route.target_project:
                found.add(route.target_project.upper())
        return Scope(
            title=self.title,
            noun="project",
            containers=frozenset(found),
            configured_in=f"[{self.name}].project, [{self.name}].jql and the routes",
            widen=lambda all_: f"add it to [{self.name}].jql, e.g. project in ({', '.join(all_)})",
        )


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


SYSTEM = JiraSystem()
