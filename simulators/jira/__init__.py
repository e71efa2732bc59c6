"""A Jira Cloud simulator: a real HTTP server on 127.0.0.1 with in-memory state.

```
with JiraSimulator(time_zone="America/Los_Angeles") as sim:
    key = sim.create_issue("ENG", "Checkout fails", description="...")
    sim.comment(key, "Looking into it", as_user=sim.engineer, public=False)
    JiraConnector(sim.url, email=sim.integration.email, api_token=sim.integration.api_token)
```
Seeded by default with project `ENG` (the default workflow: To Do -> In Progress -> In Review
-> Done, transitions named differently from their target statuses), a service-desk project
`SUP`, an integration user (email+API token and a PAT) and an engineer user. Each project has the
roles Administrators (both users), Developers (the engineer) and Users (both); the site has the
groups jira-software-users (both) and jira-administrators (the integration user). Create and edit
screens carry the standard fields; custom fields are added with `add_custom_field` and placed on
screens with `place_field`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

import requests

from simulators.common import FaultConfig, FaultInjector, ServerThread
from simulators.jira.app import create_app
from simulators.jira.fields import FieldDef
from simulators.jira.jql import Query, compile_jql
from simulators.jira.state import (
    DEFAULT_WORKFLOW,
    Issue,
    JiraHttpError,
    JiraState,
    Role,
    StatusDef,
    TransitionDef,
    User,
    Workflow,
)
from simulators.jira.webhooks import DeliveryRecord, WebhookDispatcher

__all__ = [
    "DEFAULT_WORKFLOW",
    "DeliveryRecord",
    "FaultConfig",
    "JiraSimulator",
    "StatusDef",
    "TransitionDef",
    "Workflow",
]

INTEGRATION_ID = "557058:integration"
ENGINEER_ID = "557058:engineer"


class JiraSimulator:
    """In-process Jira: start()/stop(), `url`, seeding helpers and acting-as-a-user helpers."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        time_zone: str = "UTC",
        faults: FaultConfig | None = None,
        seed: bool = True,
        webhook_attempts: int = 5,
        webhook_base_delay: float = 0.2,
        webhook_workers: int = 4,
        clock: Any = None,
    ) -> None:
        self.dispatcher = WebhookDispatcher(
            workers=webhook_workers,
            max_attempts=webhook_attempts,
            base_delay=webhook_base_delay,
            matcher=self._hook_matches,
        )
        self.state = JiraState(clock=clock, on_event=self.dispatcher.publish)
        self.faults = FaultInjector(create_app(self.state, self.dispatcher), faults)
        self._server = ServerThread(self.faults, host=host, port=port)
        self.integration: User = self.state.add_user(
            INTEGRATION_ID,
            "Escalation Sync",
            "sync@example.com",
            time_zone=time_zone,
            api_token="sim-api-token",
            pat="sim-pat",
            name="escalation-sync",
        )
        self.engineer: User = self.state.add_user(
            ENGINEER_ID,
            "Erin Engineer",
            "erin@example.com",
            time_zone=time_zone,
            api_token="erin-api-token",
            name="erin",
        )
        self.state.add_group("jira-software-users", [INTEGRATION_ID, ENGINEER_ID])
        self.state.add_group("jira-administrators", [INTEGRATION_ID])
        if seed:
            self.add_project("ENG", "Engineering")
            self.add_project("SUP", "Support Desk", service_desk=True)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> JiraSimulator:
        """Bind (port 0 = a free port), serve in the background, start webhook delivery."""
        self._server.start()
        self.state.base_url = self._server.url
        self.dispatcher.start()
        return self

    def stop(self) -> None:
        """Stop delivery and the server."""
        self.dispatcher.stop()
        self._server.stop()

    def __enter__(self) -> JiraSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:54321."""
        return self._server.url

    @property
    def port(self) -> int:
        return self._server.port

    # -- seeding -----------------------------------------------------------------------------

    def add_user(
        self,
        account_id: str,
        display_name: str,
        email: str,
        *,
        time_zone: str = "UTC",
        api_token: str | None = None,
        pat: str | None = None,
    ) -> User:
        """Add a user who can authenticate with email + `api_token` or with `pat`; they join
        jira-software-users (project roles are granted with `add_role`)."""
        user = self.state.add_user(
            account_id, display_name, email, time_zone=time_zone, api_token=api_token, pat=pat
        )
        self.state.add_group("jira-software-users", [account_id])
        return user

    def add_project(
        self,
        key: str,
        name: str | None = None,
        *,
        workflow: Workflow = DEFAULT_WORKFLOW,
        service_desk: bool = False,
        roles: dict[str, Sequence[str]] | None = None,
    ) -> None:
        """Add a project with its own workflow; `roles` (name -> account ids) replaces the
        default roles."""
        if roles is None:
            roles = {
                "Administrators": [INTEGRATION_ID, ENGINEER_ID],
                "Developers": [ENGINEER_ID],
                "Users": [INTEGRATION_ID, ENGINEER_ID],
            }
        self.state.add_project(
            key, name, workflow=workflow, service_desk=service_desk, roles=roles, lead=ENGINEER_ID
        )

    def add_role(self, project: str, name: str, members: Sequence[str] = ()) -> Role:
        """Create a project role, or add account ids to it."""
        return self.state.add_role(project, name, members)

    def remove_from_role(self, project: str, name: str, account_id: str) -> None:
        """Take a user out of a project role."""
        with self.state.lock:
            role = self.state.projects[project].role(name)
            if role is not None:
                role.members.discard(account_id)

    def add_group(self, name: str, members: Sequence[str] = ()) -> None:
        """Create a site group, or add account ids to it."""
        self.state.add_group(name, members)

    def add_custom_field(
        self,
        name: str,
        kind: str,
        *,
        options: Sequence[str] = (),
        projects: Sequence[str] | None = None,
        screens: Sequence[str] = ("create", "edit"),
        required: bool = False,
    ) -> str:
        """Create a custom field (`textfield`, `textarea`, `float`, `select`, `multiselect`,
        `labels`, `datepicker`, `datetime`, `url`, `userpicker`, ...) on the named screens of
        `projects` (every project when None); returns its id, `customfield_NNNNN`."""
        made: FieldDef = self.state.add_custom_field(
            name, kind, options=options, projects=projects, screens=screens, required=required
        )
        return made.id

    def place_field(
        self, project: str, field_id: str, *, screens: Sequence[str] = ("create", "edit")
    ) -> None:
        """Put a field on exactly the named screens of a project (`()` takes it off both)."""
        self.state.place_field(project, field_id, screens=screens)

    def set_time_zone(self, time_zone: str, user: User | None = None) -> None:
        """Change a user's (default: the integration user's) account time zone."""
        (user or self.integration).time_zone = time_zone

    def set_faults(self, config: FaultConfig | None = None, **fields: Any) -> None:
        """Replace the fault configuration (a FaultConfig, or its fields as keywords)."""
        self.faults.configure(config or FaultConfig(**fields))

    def stats(self) -> dict[str, Any]:
        """Request counters, as `GET /_sim/stats` returns them."""
        return self.faults.stats.snapshot()

    def reset_stats(self) -> None:
        self.faults.stats.reset()

    # -- acting as a user (direct state access; webhooks fire as over HTTP) -------------------

    def create_issue(
        self,
        project: str,
        summary: str,
        *,
        as_user: User | None = None,
        issuetype: str = "Task",
        **fields: Any,
    ) -> str:
        """Create an issue; extra keyword fields use Jira's v2 wire values. Returns the key."""
        body = {
            "fields": {
                "project": {"key": project},
                "summary": summary,
                "issuetype": {"name": issuetype},
                **fields,
            }
        }
        return self.state.create_issue(body, as_user or self.engineer)["key"]

    def edit(self, key: str, fields: dict[str, Any], *, as_user: User | None = None) -> None:
        """Set fields as `PUT /issue/{key}` would."""
        self.state.edit_issue(key, {"fields": fields}, as_user or self.engineer)

    def update(self, key: str, update: dict[str, Any], *, as_user: User | None = None) -> None:
        """Apply update operations (e.g. {"labels": [{"add": "x"}]})."""
        self.state.edit_issue(key, {"update": update}, as_user or self.engineer)

    def transition(
        self,
        key: str,
        target_status: str,
        *,
        as_user: User | None = None,
        fields: dict[str, Any] | None = None,
    ) -> None:
        """Move the issue to `target_status` by the first transition leading there, filling
        its screen with `fields`; a screen requiring a resolution gets "Done" unless `fields`
        names one, as a person resolving it would pick."""
        with self.state.lock:
            issue = self.state.issue(key)
            chosen = next(
                (t for t in self.state.transitions_for(issue) if t.to == target_status), None
            )
        if chosen is None:
            raise ValueError(f"no transition from {issue.status!r} to {target_status!r}")
        values = dict(fields or {})
        if "resolution" in chosen.required and "resolution" not in values:
            values["resolution"] = {"name": "Done"}
        body: dict[str, Any] = {"transition": {"id": chosen.id}}
        if values:
            body["fields"] = values
        self.state.do_transition(key, body, as_user or self.engineer)

    def comment(
        self,
        key: str,
        body: str,
        *,
        as_user: User | None = None,
        public: bool = True,
        visibility: dict[str, str] | None = None,
    ) -> str:
        """Add a comment; internal ones are restricted to role Administrators (or `visibility`).

        On a service-desk project the `sd.public.comment` property is set as JSM does.
        """
        with self.state.lock:
            issue = self.state.issue(key)
            service_desk = self.state.projects[issue.project].service_desk
        data: dict[str, Any] = {"body": body}
        if not public:
            data["visibility"] = visibility or {"type": "role", "value": "Administrators"}
        if service_desk:
            data["properties"] = [{"key": "sd.public.comment", "value": {"internal": not public}}]
        _, comment = self.state.add_comment(key, data, as_user or self.engineer)
        return comment.id

    def attach(
        self,
        key: str,
        filename: str,
        content: bytes,
        *,
        mime_type: str = "application/octet-stream",
        as_user: User | None = None,
    ) -> str:
        """Attach a file; returns the attachment id."""
        return self.state.add_attachment(
            key, filename, mime_type, content, as_user or self.engineer
        ).id

    # -- reading -----------------------------------------------------------------------------

    def issue(self, key: str, *, fields: Sequence[str] | None = None) -> dict[str, Any]:
        """The issue as `GET /rest/api/2/issue/{key}` returns it to the integration user."""
        return self.state.issue_json(self.state.issue(key), self.integration, fields=fields)

    def issue_record(self, key: str) -> Issue:
        """The stored record (comments with properties, links, changelog)."""
        return self.state.issue(key)

    def keys(self) -> list[str]:
        with self.state.lock:
            return [i.key for i in self.state.issues.values()]

    def session(self, user: User | None = None) -> requests.Session:
        """A requests session authenticated as `user` (default: the engineer) on this site."""
        who = user or self.engineer
        session = requests.Session()
        if who.api_token:
            session.auth = (who.email, who.api_token)
        elif who.pat:
            session.headers["Authorization"] = f"Bearer {who.pat}"
        return session

    # -- webhooks ----------------------------------------------------------------------------

    def register_webhook(
        self, url: str, *, secret: str | None, events: Sequence[str] = (), jql: str = ""
    ) -> int:
        """Register a webhook as `POST /rest/webhooks/1.0/webhook` does; returns its id."""
        body: dict[str, Any] = {"name": "sim", "url": url, "events": list(events)}
        if jql:
            body["filters"] = {"issue-related-events-section": jql}
        if secret:
            body["secret"] = secret
        return self.dispatcher.register(body).id

    def drain_webhooks(self, timeout: float = 10.0) -> bool:
        """Wait until every queued delivery (and retry) is done."""
        return self.dispatcher.drain(timeout)

    @property
    def deliveries(self) -> list[DeliveryRecord]:
        """Every delivery attempt so far."""
        return list(self.dispatcher.log)

    def _hook_matches(self, jql: str, payload: dict[str, Any]) -> bool:
        issue = payload.get("issue") or {}
        try:
            record = self.state.issue(str(issue.get("id") or issue.get("key") or ""))
        except JiraHttpError:
            # A deleted issue is no longer searchable; Jira still delivers its deletion.
            return True
        view = self.state.view(record, now=self.state.now(), viewer=self.integration.account_id)
        return _compiled(jql, self.integration.time_zone).matches(view)


@functools.lru_cache(maxsize=64)
def _compiled(jql: str, zone: str) -> Query:
    return compile_jql(jql, ZoneInfo(zone))
