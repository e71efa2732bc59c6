"""The checks of a Jira site, read-only: credentials, projects and issue types, fields and
screens, workflow statuses, the internal-comment role, the webhook to this daemon."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from connectors.errors import AuthFailed, ConnectorError, Forbidden, NotFound
from connectors.jira import JiraConnector
from mapping import Mapping
from mapping.model import System
from sync.doctor.report import CheckResult, failed, passed, skipped

SYSTEM = "jira"


@dataclass(frozen=True, slots=True)
class Target:
    """Where the product creates Jira issues: a project and an issue type."""

    project: str
    issue_type: str


def written_fields(mapping: Mapping) -> list[str]:
    """The Jira fields the mapping writes with create and edit requests (not by transition)."""
    compiled = mapping.systems.get(System.JIRA)
    if compiled is None:
        return []
    out = [
        f.spec.write
        for f in compiled.fields.values()
        if f.writable and f.spec.write_mode == "field" and f.spec.write
    ]
    return list(dict.fromkeys(out))


def transition_fields(mapping: Mapping) -> list[str]:
    """The fields the mapping sets on transition screens (a resolution)."""
    status = (
        mapping.systems[System.JIRA].fields.get("status")
        if System.JIRA in mapping.systems
        else None
    )
    if status is None:
        return []
    return list(dict.fromkeys(f for r in status.spec.requires.values() for f in r.fields))


def mapped_statuses(mapping: Mapping) -> list[str]:
    """The Jira statuses the mapping moves issues to."""
    compiled = mapping.systems.get(System.JIRA)
    status = compiled.fields.get("status") if compiled is not None else None
    if status is None or not status.writable:
        return []
    return list(dict.fromkeys(status.to_vendor.values()))


def targets(section: Any, mapping: Mapping, policy: Any) -> list[Target]:
    """Every project and issue type routes and escalation levels create issues in."""
    default_project = section.project
    found: list[Target] = []
    for route in mapping.routes:
        if route.target is System.JIRA:
            found.append(
                Target(route.target_project or default_project, route.issue_type or "Task")
            )
    for level in getattr(policy, "levels", ()) or ():
        if getattr(level, "target_system", None) == System.JIRA:
            issue_type = level.issue_type or (found[0].issue_type if found else "Task")
            for project in {level.project or default_project, *level.category_projects.values()}:
                found.append(Target(project, issue_type))
    return list(dict.fromkeys(found)) or [Target(default_project, "Task")]


class JiraDoctor:
    """Runs the Jira checks with the live credentials, each once."""

    def __init__(
        self,
        connector: JiraConnector,
        section: Any,
        mapping: Mapping,
        policy: Any,
        daemon_url: str,
    ) -> None:
        self.jira = connector
        self.section = section
        self.mapping = mapping
        self.hook_url = f"{daemon_url}/webhooks/jira"
        self.targets = targets(section, mapping, policy)
        self._projects: dict[str, dict[str, Any]] = {}
        self._site_fields: set[str] | None = None

    def run(self) -> list[CheckResult]:
        """Every check, in order; after failed credentials the rest are skipped."""
        me = self._credentials()
        results = [me[0]]
        steps: list[tuple[str, Callable[[dict[str, Any]], CheckResult]]] = [
            ("project and issue type", lambda _me: self._projects_check()),
            ("fields", lambda _me: self._fields()),
            ("create screen", lambda _me: self._create_screens()),
            ("edit screen", lambda _me: self._edit_screens()),
            ("workflow", lambda _me: self._workflow()),
            ("internal-comment role", self._role),
            ("webhook", lambda _me: self._webhook()),
        ]
        account = me[1]
        for name, step in steps:
            if account is None:
                results.append(skipped(SYSTEM, name, "the credentials did not work"))
                continue
            if name not in ("project and issue type", "fields", "webhook") and not self._ready():
                results.append(skipped(SYSTEM, name, "the project or issue type is missing"))
                continue
            try:
                results.append(step(account))
            except ConnectorError as exc:
                results.append(failed(SYSTEM, name, str(exc), "see the site's answer"))
        return results

    # -- the checks ----------------------------------------------------------------------------

    def _credentials(self) -> tuple[CheckResult, dict[str, Any] | None]:
        url = self.section.base_url
        try:
            me = self.jira.myself()
        except AuthFailed as exc:
            how = (
                "[jira] pat (ESCALATION_SYNC_JIRA__PAT)"
                if self.section.auth == "pat"
                else "[jira] email and the API token (ESCALATION_SYNC_JIRA__API_TOKEN)"
            )
            return failed(SYSTEM, "credentials", f"{url} refused them: {exc}", f"check {how}"), None
        except ConnectorError as exc:
            return (
                failed(
                    SYSTEM, "credentials", f"{url}: {exc}", "check [jira] base_url and the network"
                ),
                None,
            )
        account = str(me.get("accountId") or me.get("name") or "")
        who = f"{me.get('displayName') or account} ({account})"
        configured = self.section.integration_user
        if configured and configured not in (account, me.get("name")):
            return (
                failed(
                    SYSTEM,
                    "credentials",
                    f"authenticated as {who}, but [jira] integration_user is {configured!r}: our "
                    "own changes would come back as someone else's",
                    f'set [jira] integration_user = "{account}"',
                ),
                me,
            )
        return passed(SYSTEM, "credentials", f"authenticated as {who} at {url}"), me

    def _ready(self) -> bool:
        return all(self._issue_type_id(t) is not None for t in self.targets)

    def _project(self, key: str) -> dict[str, Any] | None:
        if key not in self._projects:
            try:
                self._projects[key] = self.jira.get_project(key)
            except NotFound:
                return None
        return self._projects[key]

    def _issue_type_id(self, target: Target) -> str | None:
        project = self._project(target.project)
        for kind in (project or {}).get("issueTypes") or ():
            if str(kind.get("name", "")).casefold() == target.issue_type.casefold():
                return str(kind.get("id"))
        return None

    def _projects_check(self) -> CheckResult:
        problems = []
        for target in self.targets:
            project = self._project(target.project)
            if project is None:
                problems.append(f"no project {target.project} (or no permission to browse it)")
                continue
            if self._issue_type_id(target) is None:
                kinds = ", ".join(str(k.get("name")) for k in project.get("issueTypes") or ())
                problems.append(
                    f"{target.project} has no issue type {target.issue_type} (it has {kinds})"
                )
        if problems:
            return failed(
                SYSTEM,
                "project and issue type",
                "; ".join(problems),
                "set [jira] project, the route's target_project and issue_type (and the "
                "escalation levels' project and issue_type) to ones the site has",
            )
        named = ", ".join(f"{t.project} {t.issue_type}" for t in self.targets)
        return passed(SYSTEM, "project and issue type", f"found {named}")

    def _fields(self) -> CheckResult:
        wanted = [*written_fields(self.mapping), *transition_fields(self.mapping)]
        site = self._site()
        missing = [f for f in wanted if f not in site]
        if missing:
            return failed(
                SYSTEM,
                "fields",
                f"the site has no field {', '.join(missing)}",
                "use field ids from GET /rest/api/2/field in [mapping.systems.jira]",
            )
        return passed(SYSTEM, "fields", f"every mapped field exists: {', '.join(wanted)}")

    def _site(self) -> set[str]:
        if self._site_fields is None:
            self._site_fields = {str(f.get("id")) for f in self.jira.get_fields()}
        return self._site_fields

    def _on_site(self) -> list[str]:
        """The written fields the site has (one it lacks is the fields check's to report)."""
        site = self._site()
        return [f for f in written_fields(self.mapping) if f in site]

    def _create_screens(self) -> CheckResult:
        wanted = self._on_site()
        problems = []
        for target in self.targets:
            type_id = self._issue_type_id(target)
            assert type_id is not None
            on_screen = {
                str(f.get("fieldId") or f.get("key"))
                for f in self.jira.create_fields(target.project, type_id)
            }
            missing = [f for f in wanted if f not in on_screen]
            if missing:
                problems.append(f"{target.project} {target.issue_type}: {', '.join(missing)}")
        if problems:
            return failed(
                SYSTEM,
                "create screen",
                f"fields the mapping writes are not on the create screen: {'; '.join(problems)}",
                "add them to the create screen of the project's issue type (Project settings > "
                "Issue types > Fields), or stop writing them in the mapping",
            )
        return passed(SYSTEM, "create screen", f"carries {', '.join(wanted)}")

    def _edit_screens(self) -> CheckResult:
        wanted = self._on_site()
        problems = []
        looked = []
        for project in dict.fromkeys(t.project for t in self.targets):
            key = self.jira.first_issue(f"project = {project}")
            if key is None:
                continue
            looked.append(key)
            on_screen = set(self.jira.edit_fields(key))
            missing = [f for f in wanted if f not in on_screen]
            if missing:
                problems.append(f"{project} (read on {key}): {', '.join(missing)}")
        if problems:
            return failed(
                SYSTEM,
                "edit screen",
                f"fields the mapping writes are not on the edit screen: {'; '.join(problems)}",
                "add them to the edit screen of the project's issue type, or stop writing them",
            )
        if not looked:
            return skipped(SYSTEM, "edit screen", "no issue in the project yet to read it from")
        return passed(SYSTEM, "edit screen", f"carries {', '.join(wanted)} (read on {looked[0]})")

    def _workflow(self) -> CheckResult:
        wanted = mapped_statuses(self.mapping)
        problems = []
        for target in self.targets:
            kinds = self.jira.project_statuses(target.project)
            kind = next(
                (
                    k
                    for k in kinds
                    if str(k.get("name", "")).casefold() == target.issue_type.casefold()
                ),
                None,
            )
            have = [str(s.get("name")) for s in (kind or {}).get("statuses") or ()]
            folded = {h.casefold() for h in have}
            missing = [w for w in wanted if w.casefold() not in folded]
            if missing:
                problems.append(
                    f"{target.project} {target.issue_type} has no status {', '.join(missing)} "
                    f"(it has {', '.join(have) or 'none'})"
                )
        if problems:
            return failed(
                SYSTEM,
                "workflow",
                "; ".join(problems) + ": no transition can reach it",
                "map those canonical statuses to statuses of the workflow "
                "([mapping.systems.jira.fields.status] values), or add them to the workflow",
            )
        return passed(SYSTEM, "workflow", f"has every mapped status: {', '.join(wanted)}")

    def _role(self, me: dict[str, Any]) -> CheckResult:
        role_name = self.section.internal_comment_role
        account = str(me.get("accountId") or "")
        who = me.get("displayName") or account
        problems = []
        for project in dict.fromkeys(t.project for t in self.targets):
            roles = self.jira.project_roles(project)
            match = next((n for n in roles if n.casefold() == role_name.casefold()), None)
            if match is None:
                problems.append(
                    f"{project} has no project role {role_name!r} (it has {', '.join(roles)})"
                )
                continue
            role = self.jira.project_role(project, roles[match].rstrip("/").rsplit("/", 1)[-1])
            members = {
                str((a.get("actorUser") or {}).get("accountId") or a.get("name") or "")
                for a in role.get("actors") or ()
            }
            if account not in members:
                problems.append(f"{who} does not hold the role {match} in {project}")
        if problems:
            return failed(
                SYSTEM,
                "internal-comment role",
                "; ".join(problems) + ": Jira refuses internal comments restricted to it",
                "set [jira] internal_comment_role to a role of the project the integration user "
                "holds, or add the user to it (Project settings > People)",
            )
        return passed(SYSTEM, "internal-comment role", f"{who} holds {role_name!r}, which exists")

    def _webhook(self) -> CheckResult:
        try:
            hooks = self.jira.webhooks()
        except (AuthFailed, Forbidden):
            return skipped(
                SYSTEM,
                "webhook",
                "listing webhooks takes Jira administration; check in Settings > System > "
                f"WebHooks that one posts to {self.hook_url}",
            )
        ours = [h for h in hooks if str(h.get("url", "")).rstrip("/") == self.hook_url]
        live = [h for h in ours if h.get("enabled", True)]
        if live:
            return passed(
                SYSTEM, "webhook", f"{live[0].get('name') or 'a webhook'} posts to {self.hook_url}"
            )
        others = ", ".join(str(h.get("url")) for h in hooks) or "none"
        found = (
            f"the webhook posting to {self.hook_url} is disabled"
            if ours
            else f"no webhook posts to {self.hook_url} (found: {others})"
        )
        return failed(
            SYSTEM,
            "webhook",
            found,
            f"register one with URL {self.hook_url}, the secret of [jira] webhook_secret and the "
            "issue and comment events (Settings > System > WebHooks); set [webhooks] public_url "
            "if the daemon is reached at another address",
        )
