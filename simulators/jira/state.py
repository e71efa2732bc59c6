"""In-memory Jira site: projects, workflows, users, issues, comments, attachments, links.

Every public method takes the site lock, so HTTP handlers (run in a thread pool) and test helpers
can act at the same time. Every change is reported to `on_event(name, payload)` outside the lock,
with a payload shaped like a real Jira webhook body.
"""

from __future__ import annotations

import copy
import functools
import itertools
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from simulators.jira.fields import (
    SUMMARY_LIMIT,
    SUMMARY_TOO_LONG,
    TEXT_LIMIT,
    TOO_LONG,
    FieldCatalogue,
    FieldDef,
    FieldValueError,
    check_custom_value,
    render_custom,
)
from simulators.jira.jql import Query, compile_jql

EventSink = Callable[[str, dict[str, Any]], None]


class JiraHttpError(Exception):
    """A Jira-shaped error: status plus `errorMessages` and `errors`."""

    def __init__(
        self, status: int, messages: Sequence[str] = (), errors: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{status}: {'; '.join(messages)} {errors or ''}")
        self.status = status
        self.messages = list(messages)
        self.errors = dict(errors or {})

    def body(self) -> dict[str, Any]:
        return {"errorMessages": self.messages, "errors": self.errors}


def not_found_issue() -> JiraHttpError:
    return JiraHttpError(404, ["Issue does not exist or you do not have permission to see it."])


def format_jira_datetime(moment: datetime, zone: ZoneInfo) -> str:
    """Jira's wire format, in the viewer's zone: `2026-11-23T12:00:00.000+0000`."""
    local = moment.astimezone(zone)
    return (
        local.strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{local.microsecond // 1000:03d}"
        + (local.strftime("%z"))
    )


@dataclass(frozen=True, slots=True)
class StatusDef:
    id: str
    name: str
    category: str  # "new" | "indeterminate" | "done"


@dataclass(frozen=True, slots=True)
class TransitionDef:
    id: str
    name: str
    to: str  # status name
    sources: tuple[str, ...] = ()  # empty = from any status (a global transition)
    resolution: str | None = None  # set on arrival ("" clears it)
    # The transition's screen: the fields a request may set while taking it, and which of them
    # it must set ("if the transition has a screen, updates the fields from the transition
    # screen"; a field not on it is a 400, doTransition in the spec).
    screen: tuple[str, ...] = ()
    required: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Workflow:
    statuses: tuple[StatusDef, ...]
    transitions: tuple[TransitionDef, ...]
    initial: str

    def status(self, name: str) -> StatusDef:
        for status in self.statuses:
            if status.name == name:
                return status
        raise KeyError(name)


DEFAULT_WORKFLOW = Workflow(
    statuses=(
        StatusDef("10000", "To Do", "new"),
        StatusDef("3", "In Progress", "indeterminate"),
        StatusDef("10002", "In Review", "indeterminate"),
        StatusDef("10001", "Done", "done"),
    ),
    transitions=(
        TransitionDef("11", "Start Progress", "In Progress", ("To Do",)),
        TransitionDef("21", "Request Review", "In Review", ("In Progress",)),
        TransitionDef("31", "Resolve", "Done", ("In Progress", "In Review"), resolution="Done"),
        TransitionDef("41", "Reopen", "To Do", ("Done",), resolution=""),
        TransitionDef("51", "Stop Progress", "To Do", ("In Progress", "In Review")),
    ),
    initial="To Do",
)

PRIORITIES = (
    ("1", "Highest"),
    ("2", "High"),
    ("3", "Medium"),
    ("4", "Low"),
    ("5", "Lowest"),
)
ISSUE_TYPES = (
    ("10001", "Bug"),
    ("10002", "Task"),
    ("10003", "Story"),
    ("10004", "Incident"),
    ("10005", "Service Request"),
)
RESOLUTIONS = (
    ("10000", "Done", "Work has been completed on this issue."),
    ("10001", "Won't Do", "This issue won't be actioned."),
    ("10002", "Duplicate", "The problem is a duplicate of an existing issue."),
    ("10003", "Cannot Reproduce", "All attempts at reproducing this issue failed."),
)
ISSUE_LINK_TYPES = (
    ("10000", "Blocks", "is blocked by", "blocks"),
    ("10001", "Cloners", "is cloned by", "clones"),
    ("10002", "Duplicate", "is duplicated by", "duplicates"),
    ("10003", "Relates", "relates to", "relates to"),
)
# The fields a project's default screens carry: what create and edit requests may set ("the
# fields that can be set ... are the same fields that appear on the issue's create screen",
# createIssue; "the fields that can be edited are determined using Get edit issue metadata",
# editIssue). `project` and `issuetype` identify the issue being created and are always taken.
DEFAULT_CREATE_SCREEN = frozenset(
    {
        "summary",
        "description",
        "environment",
        "priority",
        "labels",
        "assignee",
        "reporter",
        "duedate",
        "components",
    }
)
DEFAULT_EDIT_SCREEN = DEFAULT_CREATE_SCREEN
# Project roles of a company-managed project, with Jira's ids.
DEFAULT_ROLE_IDS = {"Administrators": 10002, "Developers": 10001, "Users": 10000}


@dataclass
class User:
    account_id: str
    display_name: str
    email: str
    time_zone: str = "UTC"
    api_token: str | None = None
    pat: str | None = None
    name: str = ""


@dataclass
class Role:
    """A project role and the accounts that hold it."""

    id: int
    name: str
    members: set[str] = field(default_factory=set)
    description: str = ""


@dataclass
class Project:
    id: str
    key: str
    name: str
    workflow: Workflow
    service_desk: bool = False
    issue_types: tuple[str, ...] = ()
    create_screen: set[str] = field(default_factory=lambda: set(DEFAULT_CREATE_SCREEN))
    edit_screen: set[str] = field(default_factory=lambda: set(DEFAULT_EDIT_SCREEN))
    # Fields the create screen requires besides summary, issue type and project.
    required: set[str] = field(default_factory=set)
    roles: dict[str, Role] = field(default_factory=dict)
    lead: str | None = None

    def role(self, ref: str) -> Role | None:
        """The role named `ref` (case-insensitively) or with that id."""
        for role in self.roles.values():
            if role.name.casefold() == ref.casefold() or str(role.id) == ref:
                return role
        return None


@dataclass
class Comment:
    id: str
    author: str
    body: str
    created: datetime
    updated: datetime
    update_author: str
    visibility: dict[str, Any] | None = None
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass
class AttachmentRec:
    id: str
    issue_id: str
    filename: str
    mime_type: str
    content: bytes
    author: str
    created: datetime


@dataclass
class RemoteLink:
    id: int
    global_id: str | None
    body: dict[str, Any]


@dataclass
class Issue:
    id: str
    key: str
    project: str
    fields: dict[str, Any]  # stored values: plain strings / names / account ids
    status: str
    resolution: str | None
    created: datetime
    updated: datetime
    comments: list[Comment] = field(default_factory=list)
    attachments: list[str] = field(default_factory=list)
    links: list[RemoteLink] = field(default_factory=list)
    changelog: list[dict[str, Any]] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)
    watchers: list[str] = field(default_factory=list)


_CATEGORY_NAMES = {
    "new": ("To Do", "2"),
    "indeterminate": ("In Progress", "4"),
    "done": ("Done", "3"),
}


class IssueView:
    """What the JQL engine reads from an issue, with the moment and the searching user
    (relative dates and `currentUser()` are read against them)."""

    __slots__ = ("category", "issue", "now", "viewer")

    def __init__(
        self,
        issue: Issue,
        *,
        now: datetime | None = None,
        viewer: str | None = None,
        category: str | None = None,
    ) -> None:
        self.issue = issue
        self.now = now or datetime.now(UTC)
        self.viewer = viewer
        self.category = category

    def value(self, name: str) -> Any:
        issue = self.issue
        if name == "project":
            return issue.project
        if name == "key":
            return [issue.key, issue.id]
        if name == "id":
            return issue.id
        if name == "status":
            return issue.status
        if name == "statuscategory":
            if self.category is None:
                return None
            label, ident = _CATEGORY_NAMES[self.category]
            return [label, self.category, ident]
        if name == "resolution":
            return issue.resolution
        if name == "updated":
            return issue.updated
        if name == "created":
            return issue.created
        if name == "resolutiondate":
            return issue.fields.get("resolutiondate")
        return issue.fields.get(name)


class JiraState:
    """The site's data and the operations the HTTP API performs on it."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1",
        *,
        clock: Callable[[], datetime] | None = None,
        on_event: EventSink | None = None,
    ) -> None:
        self.base_url = base_url
        self.lock = threading.RLock()
        self._clock = clock or (lambda: datetime.fromtimestamp(time.time(), UTC))
        self.on_event = on_event
        self.projects: dict[str, Project] = {}
        self.users: dict[str, User] = {}
        self.catalogue = FieldCatalogue()
        # Site groups and their members (account ids), for group comment visibility.
        self.groups: dict[str, set[str]] = {}
        self.issues: dict[str, Issue] = {}  # by id
        self.by_key: dict[str, str] = {}
        self.attachments: dict[str, AttachmentRec] = {}
        self.comment_index: dict[str, str] = {}  # comment id -> issue id
        self._ids = itertools.count(10000)
        self._link_ids = itertools.count(10000)
        self._counters: dict[str, int] = {}
        self._last_moment = datetime.fromtimestamp(0, UTC)

    # -- setup -------------------------------------------------------------------------------

    def now(self) -> datetime:
        """The clock, truncated to milliseconds and never going backwards."""
        with self.lock:
            moment = self._clock()
            moment = moment.replace(microsecond=(moment.microsecond // 1000) * 1000)
            self._last_moment = max(self._last_moment, moment)
            return self._last_moment

    def next_id(self) -> str:
        with self.lock:
            return str(next(self._ids))

    def add_user(
        self,
        account_id: str,
        display_name: str,
        email: str,
        *,
        time_zone: str = "UTC",
        api_token: str | None = None,
        pat: str | None = None,
        name: str = "",
    ) -> User:
        ZoneInfo(time_zone)  # refuse an unknown zone early
        user = User(account_id, display_name, email, time_zone, api_token, pat, name)
        with self.lock:
            self.users[account_id] = user
        return user

    def add_project(
        self,
        key: str,
        name: str | None = None,
        *,
        workflow: Workflow = DEFAULT_WORKFLOW,
        service_desk: bool = False,
        roles: Mapping[str, Iterable[str]] | None = None,
        issue_types: Sequence[str] | None = None,
        lead: str | None = None,
    ) -> Project:
        """Add a project with its workflow, default screens and roles (name -> account ids)."""
        types = tuple(issue_types or (n for _, n in ISSUE_TYPES))
        for wanted in types:
            if wanted not in {n for _, n in ISSUE_TYPES}:
                raise ValueError(f"unknown issue type {wanted!r}")
        with self.lock:
            project = Project(
                self.next_id(),
                key,
                name or key,
                workflow,
                service_desk,
                issue_types=types,
                lead=lead,
            )
            for role_name, members in (roles or {}).items():
                self._add_role(project, role_name, members)
            self.projects[key] = project
            self._counters.setdefault(key, 0)
            return project

    def _add_role(self, project: Project, name: str, members: Iterable[str]) -> Role:
        ident = DEFAULT_ROLE_IDS.get(name)
        if ident is None:
            ident = 10100 + len(project.roles)
        role = Role(ident, name, set(members))
        project.roles[name] = role
        return role

    def add_role(self, project_key: str, name: str, members: Iterable[str] = ()) -> Role:
        """Create a project role (or add members to it)."""
        with self.lock:
            project = self.projects[project_key]
            role = project.role(name)
            if role is None:
                return self._add_role(project, name, members)
            role.members.update(members)
            return role

    def add_group(self, name: str, members: Iterable[str] = ()) -> None:
        """Create a site group (or add members to it)."""
        with self.lock:
            self.groups.setdefault(name, set()).update(members)

    def add_custom_field(
        self,
        name: str,
        kind: str,
        *,
        options: Sequence[str] = (),
        projects: Iterable[str] | None = None,
        screens: Iterable[str] = ("create", "edit"),
        required: bool = False,
    ) -> FieldDef:
        """Create a custom field and put it on the named screens of `projects` (all projects
        when None); `required` makes the create screen require it."""
        with self.lock:
            created = self.catalogue.add_custom(name, kind, options)
            targets = list(self.projects) if projects is None else list(projects)
            for key in targets:
                self.place_field(key, created.id, screens=screens, required=required)
            return created

    def place_field(
        self,
        project_key: str,
        field_id: str,
        *,
        screens: Iterable[str] = ("create", "edit"),
        required: bool = False,
    ) -> None:
        """Put a field on (only) the named screens of a project, as an admin edits screens."""
        with self.lock:
            project = self.projects[project_key]
            wanted = set(screens)
            screen_fields = (("create", project.create_screen), ("edit", project.edit_screen))
            for screen, fields in screen_fields:
                if screen in wanted:
                    fields.add(field_id)
                else:
                    fields.discard(field_id)
            if required:
                project.required.add(field_id)
            else:
                project.required.discard(field_id)

    def authenticate(self, scheme: str, user: str, secret: str) -> User | None:
        """The user for basic (email + API token) or bearer (PAT) credentials."""
        with self.lock:
            for candidate in self.users.values():
                if (
                    scheme == "basic"
                    and user in (candidate.email, candidate.name)
                    and candidate.api_token is not None
                    and candidate.api_token == secret
                ):
                    return candidate
                if scheme == "bearer" and candidate.pat is not None and candidate.pat == secret:
                    return candidate
        return None

    # -- lookups -----------------------------------------------------------------------------

    def issue(self, id_or_key: str) -> Issue:
        issue = self.find_issue(id_or_key)
        if issue is None:
            raise not_found_issue()
        return issue

    def find_issue(self, id_or_key: str) -> Issue | None:
        """The issue with this id or key (keys case-insensitively), or None."""
        with self.lock:
            return self.issues.get(self.by_key.get(id_or_key.upper(), id_or_key))

    def user_json(
        self, account_id: str | None, viewer: User | None = None
    ) -> dict[str, Any] | None:
        if not account_id:
            return None
        user = self.users.get(account_id)
        if user is None:
            return {"accountId": account_id, "active": False, "displayName": account_id}
        return {
            "self": f"{self.base_url}/rest/api/2/user?accountId={user.account_id}",
            "accountId": user.account_id,
            "emailAddress": user.email,
            "avatarUrls": {
                s: f"{self.base_url}/avatar/{user.account_id}?s={s.split('x')[0]}"
                for s in ("48x48", "24x24", "16x16", "32x32")
            },
            "displayName": user.display_name,
            "active": True,
            "timeZone": user.time_zone,
            "accountType": "atlassian",
        }

    def resolve_user(self, value: Any) -> str | None:
        """An account id from `{"accountId"}`, `{"name"}`, `{"emailAddress"}` or a string."""
        if value is None:
            return None
        if isinstance(value, str):
            ref = value
        elif isinstance(value, dict):
            ref = str(value.get("accountId") or value.get("name") or value.get("id") or "")
        else:
            raise JiraHttpError(400, errors={"user": "Expected an object with an accountId."})
        if not ref:
            return None
        with self.lock:
            if ref in self.users:
                return ref
            for user in self.users.values():
                if ref in (user.email, user.name):
                    return user.account_id
        raise JiraHttpError(400, errors={"assignee": f"User '{ref}' does not exist."})

    def status_json(self, project: Project, name: str) -> dict[str, Any]:
        status = project.workflow.status(name)
        category = {
            "new": (2, "To Do", "blue-gray"),
            "indeterminate": (4, "In Progress", "yellow"),
            "done": (3, "Done", "green"),
        }[status.category]
        return {
            "self": f"{self.base_url}/rest/api/2/status/{status.id}",
            "description": "",
            "iconUrl": f"{self.base_url}/images/icons/statuses/generic.png",
            "name": status.name,
            "id": status.id,
            "statusCategory": {
                "self": f"{self.base_url}/rest/api/2/statuscategory/{category[0]}",
                "id": category[0],
                "key": status.category,
                "colorName": category[2],
                "name": category[1],
            },
        }

    # -- rendering ---------------------------------------------------------------------------

    def zone_of(self, viewer: User | None) -> ZoneInfo:
        return ZoneInfo(viewer.time_zone if viewer else "UTC")

    def comment_json(
        self, issue: Issue, comment: Comment, viewer: User | None, *, v3: bool, props: bool
    ) -> dict[str, Any]:
        zone = self.zone_of(viewer)
        data: dict[str, Any] = {
            "self": f"{self.base_url}/rest/api/{3 if v3 else 2}/issue/{issue.id}"
            f"/comment/{comment.id}",
            "id": comment.id,
            "author": self.user_json(comment.author),
            "body": to_adf(comment.body) if v3 else comment.body,
            "updateAuthor": self.user_json(comment.update_author),
            "created": format_jira_datetime(comment.created, zone),
            "updated": format_jira_datetime(comment.updated, zone),
            "jsdPublic": comment.properties.get("sd.public.comment", {}).get("internal")
            is not True,
        }
        if comment.visibility:
            data["visibility"] = dict(comment.visibility)
        if props:
            data["properties"] = [{"key": k, "value": v} for k, v in comment.properties.items()]
        return data

    def attachment_json(
        self, att: AttachmentRec, viewer: User | None, *, v3: bool
    ) -> dict[str, Any]:
        v = 3 if v3 else 2
        return {
            "self": f"{self.base_url}/rest/api/{v}/attachment/{att.id}",
            "id": att.id,
            "filename": att.filename,
            "author": self.user_json(att.author),
            "created": format_jira_datetime(att.created, self.zone_of(viewer)),
            "size": len(att.content),
            "mimeType": att.mime_type,
            "content": f"{self.base_url}/rest/api/{v}/attachment/content/{att.id}",
        }

    def issue_json(
        self,
        issue: Issue,
        viewer: User | None,
        *,
        fields: Iterable[str] | None = None,
        v3: bool = False,
        default_all: bool = True,
    ) -> dict[str, Any]:
        """An IssueBean. `fields` as Jira reads it: names, `*all`, `*navigable`, `-name`."""
        with self.lock:
            wanted = _wanted_fields(fields, default_all)
            everything = self._all_fields(issue, viewer, v3=v3, wanted=wanted)
            if wanted is not None:
                everything = {k: v for k, v in everything.items() if k in wanted}
            v = 3 if v3 else 2
            return {
                "expand": "renderedFields,names,schema,operations,editmeta,changelog,"
                "versionedRepresentations",
                "id": issue.id,
                "self": f"{self.base_url}/rest/api/{v}/issue/{issue.id}",
                "key": issue.key,
                "fields": everything,
            }

    def _all_fields(
        self, issue: Issue, viewer: User | None, *, v3: bool, wanted: set[str] | None
    ) -> dict[str, Any]:
        project = self.projects[issue.project]
        zone = self.zone_of(viewer)
        f = issue.fields
        out: dict[str, Any] = {
            "summary": f.get("summary", ""),
            "description": _text(f.get("description"), v3),
            "environment": _text(f.get("environment"), v3),
            "issuetype": _named("issuetype", f.get("issuetype", "Task"), self.base_url),
            "project": {
                "self": f"{self.base_url}/rest/api/2/project/{project.id}",
                "id": project.id,
                "key": project.key,
                "name": project.name,
                "projectTypeKey": "service_desk" if project.service_desk else "software",
            },
            "priority": _named("priority", f.get("priority"), self.base_url),
            "labels": list(f.get("labels") or []),
            "assignee": self.user_json(f.get("assignee")),
            "reporter": self.user_json(f.get("reporter")),
            "creator": self.user_json(f.get("creator")),
            "status": self.status_json(project, issue.status),
            "resolution": _named("resolution", issue.resolution, self.base_url),
            "resolutiondate": (
                format_jira_datetime(f["resolutiondate"], zone) if f.get("resolutiondate") else None
            ),
            "created": format_jira_datetime(issue.created, zone),
            "updated": format_jira_datetime(issue.updated, zone),
            "duedate": f.get("duedate"),
            "components": list(f.get("components") or []),
        }
        if wanted is None or "comment" in wanted:
            comments = [
                self.comment_json(issue, c, viewer, v3=v3, props=False) for c in issue.comments
            ]
            out["comment"] = {
                "comments": comments,
                "self": f"{self.base_url}/rest/api/2/issue/{issue.id}/comment",
                "maxResults": len(comments),
                "total": len(comments),
                "startAt": 0,
            }
        if wanted is None or "attachment" in wanted:
            out["attachment"] = [
                self.attachment_json(self.attachments[a], viewer, v3=v3) for a in issue.attachments
            ]
        for name, value in f.items():
            if name.startswith("customfield_"):
                field_def = self.catalogue.get(name)
                out[name] = (
                    value if field_def is None else render_custom(field_def, value, self.base_url)
                )
                if v3 and field_def is not None and field_def.rich_text:
                    out[name] = _text(value, v3)
        return out

    # -- writes ------------------------------------------------------------------------------

    def create_issue(
        self, body: dict[str, Any], actor: User | None, *, emit: bool = True
    ) -> dict[str, str]:
        fields = body.get("fields")
        if not isinstance(fields, dict):
            raise JiraHttpError(400, ["Issue create requires 'fields'."])
        with self.lock:
            errors: dict[str, str] = {}
            project_ref = fields.get("project") or {}
            project = self._project(project_ref)
            if project is None:
                errors["project"] = "Specify a valid project ID or key"
            if not str(fields.get("summary") or "").strip():
                errors["summary"] = "You must specify a summary of the issue."
            if not fields.get("issuetype"):
                errors["issuetype"] = "Specify an issue type"
            allowed = (project.create_screen | {"issuetype"}) if project else set(fields)
            values, more = self._validate(fields, allowed=allowed, creating=True)
            errors.update(more)
            if project is not None:
                kind = values.get("issuetype")
                if kind is not None and kind not in project.issue_types:
                    errors["issuetype"] = "The issue type selected is invalid."
                for name in sorted(project.required):
                    if fields.get(name) in (None, "", []):
                        field_def = self.catalogue.get(name)
                        errors[name] = f"{field_def.name if field_def else name} is required."
            if errors or project is None:
                raise JiraHttpError(400, errors=errors)
            # "A transition may be applied, to move the issue ... to a workflow step other
            # than the default start step": one leaving the start status, checked up front so
            # a refused transition creates nothing.
            chosen = self._create_transition(project, body.get("transition"))
            self._counters[project.key] = self._counters.get(project.key, 0) + 1
            key = f"{project.key}-{self._counters[project.key]}"
            now = self.now()
            values.setdefault("priority", "Medium")
            values.setdefault("labels", [])
            values.setdefault("reporter", actor.account_id if actor else None)
            values["creator"] = actor.account_id if actor else None
            issue = Issue(
                id=self.next_id(),
                key=key,
                project=project.key,
                fields=values,
                status=project.workflow.initial,
                resolution=None,
                created=now,
                updated=now,
            )
            # The reporter and the creator watch a new issue, as Jira's default settings do.
            issue.watchers = list(
                dict.fromkeys(w for w in (values.get("reporter"), values["creator"]) if w)
            )
            self.issues[issue.id] = issue
            self.by_key[key] = issue.id
            items = [
                _item(name, None, _display(value))
                for name, value in values.items()
                if name != "creator" and value not in (None, [], "")
            ]
            items.append(_item("status", None, issue.status))
            payload = self._issue_payload(
                issue, "jira:issue_created", "issue_created", actor, items
            )
            events = [("jira:issue_created", payload)]
            if chosen is not None:
                events.append(("jira:issue_updated", self._take(issue, chosen, {}, actor)))
            result = {
                "id": issue.id,
                "key": key,
                "self": f"{self.base_url}/rest/api/2/issue/{issue.id}",
            }
        if emit:
            for name, event in events:
                self._emit(name, event)
        return result

    def _create_transition(self, project: Project, ref: Any) -> TransitionDef | None:
        """The transition a create request asks for, from the workflow's start status."""
        if ref is None:
            return None
        transition_id = str(ref.get("id") or "") if isinstance(ref, dict) else ""
        if not transition_id:
            raise JiraHttpError(400, ["Missing transition id."])
        workflow = project.workflow
        for t in workflow.transitions:
            leaves_start = not t.sources or workflow.initial in t.sources
            if t.id == transition_id and leaves_start and t.to != workflow.initial:
                if t.required:
                    # The create request carries no transition screen to fill.
                    raise JiraHttpError(
                        400,
                        errors={
                            f: f"{self.catalogue.fields[f].name} is required." for f in t.required
                        },
                    )
                return t
        raise JiraHttpError(400, [f"Transition id '{transition_id}' is not valid for this issue."])

    def _project(self, ref: Any) -> Project | None:
        if isinstance(ref, str):
            ref = {"key": ref}
        if not isinstance(ref, dict):
            return None
        for project in self.projects.values():
            if ref.get("key") == project.key or str(ref.get("id")) == project.id:
                return project
        return None

    def _validate(
        self, fields: dict[str, Any], *, allowed: Collection[str], creating: bool
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """Check each field is on the screen (`allowed`) and its value fits the field."""
        values: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for name, value in fields.items():
            if name == "project":
                if not creating:
                    errors[name] = _not_settable(name)
                continue
            if self.catalogue.get(name) is None or name not in allowed:
                errors[name] = _not_settable(name)
                continue
            try:
                values[name] = self._coerce(name, value)
            except JiraHttpError as exc:
                errors.update(exc.errors or {name: "; ".join(exc.messages)})
        return values, errors

    def _coerce(self, name: str, value: Any) -> Any:
        field_def = self.catalogue.get(name)
        if field_def is not None and field_def.custom:
            try:
                return check_custom_value(field_def, value, self.resolve_user)
            except FieldValueError as exc:
                raise JiraHttpError(400, errors={name: str(exc)}) from None
        if name in ("summary", "description", "environment", "duedate"):
            if value is not None and not isinstance(value, str):
                raise JiraHttpError(400, errors={name: "Operation value must be a string"})
            if name == "summary" and value is not None and len(value) > SUMMARY_LIMIT:
                raise JiraHttpError(400, errors={name: SUMMARY_TOO_LONG})
            if name in ("description", "environment") and value and len(value) > TEXT_LIMIT:
                raise JiraHttpError(400, errors={name: TOO_LONG})
            return value
        if name == "priority":
            ref = _ref_name(value)
            for pid, pname in PRIORITIES:
                if ref in (pid, pname):
                    return pname
            raise JiraHttpError(400, errors={"priority": f"Specify a valid priority ({ref!r})."})
        if name == "issuetype":
            ref = _ref_name(value)
            for tid, tname in ISSUE_TYPES:
                if ref in (tid, tname):
                    return tname
            raise JiraHttpError(400, errors={"issuetype": "Specify an issue type"})
        if name == "resolution":
            if value is None:
                return None
            ref = _ref_name(value)
            for rid, rname, _ in RESOLUTIONS:
                if ref in (rid, rname):
                    return rname
            raise JiraHttpError(400, errors={"resolution": f"Resolution '{ref}' is not valid."})
        if name == "labels":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise JiraHttpError(400, errors={"labels": "Labels must be a list of strings."})
            for label in value:
                if " " in label:
                    raise JiraHttpError(400, errors={"labels": "Labels cannot contain spaces."})
            return list(dict.fromkeys(value))
        if name in ("assignee", "reporter"):
            return self.resolve_user(value)
        if name == "components":
            return list(value or [])
        return value

    def edit_issue(self, id_or_key: str, body: dict[str, Any], actor: User | None) -> None:
        with self.lock:
            issue = self.issue(id_or_key)
            fields = body.get("fields") or {}
            update = body.get("update") or {}
            if not isinstance(fields, dict) or not isinstance(update, dict):
                raise JiraHttpError(400, ["'fields' and 'update' must be objects."])
            overlap = set(fields) & set(update)
            if overlap:
                raise JiraHttpError(
                    400,
                    errors={
                        n: "Field can be set in either 'fields' or 'update', not both."
                        for n in overlap
                    },
                )
            allowed = self.projects[issue.project].edit_screen | {"issuetype"}
            values, errors = self._validate(fields, allowed=allowed, creating=False)
            for name, ops in update.items():
                if not isinstance(ops, list):
                    errors[name] = "Operations must be a list."
                    continue
                if self.catalogue.get(name) is None or name not in allowed:
                    errors[name] = _not_settable(name)
                    continue
                current = values.get(name, issue.fields.get(name))
                try:
                    values[name] = self._apply_ops(name, current, ops)
                except JiraHttpError as exc:
                    errors.update(exc.errors or {name: "; ".join(exc.messages)})
            if errors:
                raise JiraHttpError(400, errors=errors)
            items = []
            for name, value in values.items():
                old = issue.fields.get(name)
                if old != value:
                    items.append(_item(name, _display(old), _display(value), old, value))
                    issue.fields[name] = value
            if not items:
                return
            issue.updated = self.now()
            kind = (
                "issue_assigned" if [i["field"] for i in items] == ["assignee"] else "issue_updated"
            )
            self._record(issue, actor, items)
            payload = self._issue_payload(issue, "jira:issue_updated", kind, actor, items)
        self._emit("jira:issue_updated", payload)

    def _apply_ops(self, name: str, current: Any, ops: list[Any]) -> Any:
        field_def = self.catalogue.get(name)
        multi = field_def is not None and "add" in field_def.operations
        if multi:
            items = list(current or [])
            for op in ops:
                if not isinstance(op, dict) or len(op) != 1:
                    raise JiraHttpError(
                        400, errors={name: "Each operation is one of add, remove, set."}
                    )
                verb, value = next(iter(op.items()))
                if verb == "add":
                    value = self._coerce(name, [value])[0]
                    if value not in items:
                        items.append(value)
                elif verb == "remove":
                    gone = self._coerce(name, [value])[0] if isinstance(value, dict) else value
                    items = [item for item in items if item != gone]
                elif verb == "set":
                    items = self._coerce(name, value)
                else:
                    raise JiraHttpError(400, errors={name: f"Unsupported operation '{verb}'."})
            return items
        value = current
        for op in ops:
            if not isinstance(op, dict) or "set" not in op:
                raise JiraHttpError(400, errors={name: "Only 'set' is supported for this field."})
            value = self._coerce(name, op["set"])
        return value

    def delete_issue(self, id_or_key: str, actor: User | None) -> None:
        with self.lock:
            issue = self.issue(id_or_key)
            payload = self._issue_payload(issue, "jira:issue_deleted", "issue_deleted", actor, None)
            del self.issues[issue.id]
            self.by_key.pop(issue.key, None)
        self._emit("jira:issue_deleted", payload)

    def transitions_for(self, issue: Issue) -> list[TransitionDef]:
        workflow = self.projects[issue.project].workflow
        return [
            t
            for t in workflow.transitions
            if (not t.sources or issue.status in t.sources) and t.to != issue.status
        ]

    def transition_json(
        self, issue: Issue, t: TransitionDef, *, with_fields: bool = False
    ) -> dict[str, Any]:
        """An IssueTransition; `with_fields` adds its screen's fields (the
        `transitions.fields` expand)."""
        project = self.projects[issue.project]
        data: dict[str, Any] = {
            "id": t.id,
            "name": t.name,
            "to": self.status_json(project, t.to),
            "hasScreen": bool(t.screen),
            "isGlobal": not t.sources,
            "isInitial": False,
            "isAvailable": True,
            "isConditional": False,
            "isLooped": False,
        }
        if with_fields:
            data["fields"] = {
                fid: self.field_meta(fid, required=fid in t.required)
                for fid in t.screen
                if self.catalogue.get(fid) is not None
            }
        return data

    def field_meta(
        self, field_id: str, *, required: bool, paged: bool = False, project: Project | None = None
    ) -> dict[str, Any]:
        """A field's metadata as create, edit and transition screens list it."""
        field_def = self.catalogue.fields[field_id]
        allowed: list[dict[str, Any]] | None = None
        default: dict[str, Any] | None = None
        if field_id == "priority":
            allowed = [_named("priority", n, self.base_url) or {} for _, n in PRIORITIES]
            default = _named("priority", "Medium", self.base_url)
        elif field_id == "resolution":
            allowed = [_named("resolution", n, self.base_url) or {} for _, n, _d in RESOLUTIONS]
        elif field_id == "issuetype" and project is not None:
            allowed = [_named("issuetype", n, self.base_url) or {} for n in project.issue_types]
        elif field_id == "project" and project is not None:
            allowed = [self.project_ref_json(project)]
        return field_def.meta_json(
            required=required,
            base_url=self.base_url,
            allowed=allowed,
            default=default,
            field_id=paged,
        )

    def project_ref_json(self, project: Project) -> dict[str, Any]:
        """A project as issues and metadata reference it."""
        return {
            "self": f"{self.base_url}/rest/api/2/project/{project.id}",
            "id": project.id,
            "key": project.key,
            "name": project.name,
            "projectTypeKey": "service_desk" if project.service_desk else "software",
            "simplified": False,
            "avatarUrls": {
                s: f"{self.base_url}/secure/projectavatar?pid={project.id}&size={s}"
                for s in ("48x48", "24x24", "16x16", "32x32")
            },
        }

    def create_fields(self, project: Project) -> list[str]:
        """The fields of the project's create screen, identifying fields first."""
        return ["project", "issuetype", *sorted(project.create_screen)]

    def do_transition(self, id_or_key: str, body: dict[str, Any], actor: User | None) -> None:
        ref = (body.get("transition") or {}) if isinstance(body, dict) else {}
        transition_id = str(ref.get("id") or "") if isinstance(ref, dict) else ""
        if not transition_id:
            raise JiraHttpError(400, ["Missing transition id."])
        update = body.get("update") or {}
        if not isinstance(update, dict):
            raise JiraHttpError(400, ["'update' must be an object."])
        comments = update.get("comment") or []
        with self.lock:
            issue = self.issue(id_or_key)
            chosen = next((t for t in self.transitions_for(issue) if t.id == transition_id), None)
            if chosen is None:
                raise JiraHttpError(
                    400,
                    [
                        f"Transition id '{transition_id}' is not valid for this issue.",
                    ],
                )
            fields = body.get("fields") or {}
            if not isinstance(fields, dict):
                raise JiraHttpError(400, ["'fields' must be an object."])
            # Only the transition's screen may be set while taking it (doTransition, 400: "a
            # field that isn't included on the transition screen is defined in `fields`").
            values, errors = self._validate(fields, allowed=set(chosen.screen), creating=False)
            for name in chosen.required:
                if fields.get(name) in (None, "", []) and name not in errors:
                    field_def = self.catalogue.get(name)
                    errors[name] = f"{field_def.name if field_def else name} is required."
            if errors:
                raise JiraHttpError(400, errors=errors)
            payload = self._take(issue, chosen, values, actor)
        self._emit("jira:issue_updated", payload)
        for op in comments if isinstance(comments, list) else []:
            added = op.get("add") if isinstance(op, dict) else None
            if isinstance(added, dict):
                self.add_comment(id_or_key, added, actor)

    def _take(
        self, issue: Issue, chosen: TransitionDef, values: dict[str, Any], actor: User | None
    ) -> dict[str, Any]:
        """Move the issue through `chosen`, setting `values`; returns the webhook payload."""
        items = [_item("status", issue.status, chosen.to)]
        issue.status = chosen.to
        values = dict(values)
        # The screen's value wins over the transition's post-function.
        resolution = values.pop("resolution") if "resolution" in values else chosen.resolution
        if resolution is not None:
            new_resolution = resolution or None
            if new_resolution != issue.resolution:
                items.insert(0, _item("resolution", issue.resolution, new_resolution))
                issue.resolution = new_resolution
                issue.fields["resolutiondate"] = self.now() if new_resolution else None
        for name, value in values.items():
            old = issue.fields.get(name)
            if old != value:
                items.append(_item(name, _display(old), _display(value), old, value))
                issue.fields[name] = value
        issue.updated = self.now()
        self._record(issue, actor, items)
        category = self.projects[issue.project].workflow.status(chosen.to).category
        kind = {"done": "issue_resolved", "indeterminate": "issue_work_started"}.get(
            category, "issue_generic"
        )
        return self._issue_payload(issue, "jira:issue_updated", kind, actor, items)

    def _checked_visibility(
        self, issue: Issue, visibility: Any, actor: User | None
    ) -> dict[str, Any] | None:
        """The visibility a comment may have: a role of the issue's project the author holds,
        or a site group the author belongs to (Visibility in the spec: "the group or role to
        which this item is visible"). Refusals carry Jira's own `commentLevel` messages, as
        Cloud sites answer them."""
        if visibility is None:
            return None
        if not isinstance(visibility, dict) or visibility.get("type") not in ("role", "group"):
            raise JiraHttpError(400, errors={"visibility": "Invalid visibility type."})
        ref = str(visibility.get("value") or visibility.get("identifier") or "")
        if not ref:
            raise JiraHttpError(400, errors={"visibility": "Visibility needs a value."})
        who = actor.account_id if actor else ""
        if visibility["type"] == "role":
            role = self.projects[issue.project].role(ref)
            if role is None:
                raise JiraHttpError(
                    400, errors={"commentLevel": f"Role with id: {ref} does not exist."}
                )
            if who not in role.members:
                raise JiraHttpError(
                    400,
                    errors={
                        "commentLevel": "You are currently not a member of the project role: "
                        f"{role.name}."
                    },
                )
            return {"type": "role", "value": role.name}
        if ref not in self.groups:
            raise JiraHttpError(400, errors={"commentLevel": f"Group: {ref} does not exist."})
        if who not in self.groups[ref]:
            raise JiraHttpError(
                400,
                errors={"commentLevel": f"You are currently not a member of the group: {ref}."},
            )
        return {"type": "group", "value": ref, "identifier": ref}

    def add_comment(
        self, id_or_key: str, body: dict[str, Any], actor: User | None
    ) -> tuple[Issue, Comment]:
        text = body.get("body") if isinstance(body, dict) else None
        _check_comment_text(text)
        visibility = body.get("visibility")
        properties: dict[str, Any] = {}
        for prop in body.get("properties") or []:
            if not isinstance(prop, dict) or not prop.get("key"):
                raise JiraHttpError(400, errors={"properties": "Each property needs a key."})
            properties[str(prop["key"])] = prop.get("value")
        assert isinstance(text, str)
        with self.lock:
            issue = self.issue(id_or_key)
            visibility = self._checked_visibility(issue, visibility, actor)
            now = self.now()
            author = actor.account_id if actor else ""
            comment = Comment(
                id=self.next_id(),
                author=author,
                body=text,
                created=now,
                updated=now,
                update_author=author,
                visibility=dict(visibility) if visibility else None,
                properties=properties,
            )
            issue.comments.append(comment)
            self.comment_index[comment.id] = issue.id
            issue.updated = now
            events = self._comment_payloads(
                issue, comment, "comment_created", "issue_commented", actor
            )
        for name, payload in events:
            self._emit(name, payload)
        return issue, comment

    def update_comment(
        self, id_or_key: str, comment_id: str, body: dict[str, Any], actor: User | None
    ) -> tuple[Issue, Comment]:
        with self.lock:
            issue = self.issue(id_or_key)
            comment = next((c for c in issue.comments if c.id == comment_id), None)
            if comment is None:
                raise JiraHttpError(404, ["Can not find a comment for the id: " + comment_id])
            text = body.get("body")
            _check_comment_text(text)
            assert isinstance(text, str)
            if "visibility" in body:
                comment.visibility = self._checked_visibility(issue, body.get("visibility"), actor)
            comment.body = text
            for prop in body.get("properties") or []:
                comment.properties[str(prop["key"])] = prop.get("value")
            comment.updated = issue.updated = self.now()
            comment.update_author = actor.account_id if actor else ""
            events = self._comment_payloads(
                issue, comment, "comment_updated", "issue_comment_edited", actor
            )
        for name, payload in events:
            self._emit(name, payload)
        return issue, comment

    def delete_comment(self, id_or_key: str, comment_id: str, actor: User | None) -> None:
        with self.lock:
            issue = self.issue(id_or_key)
            comment = next((c for c in issue.comments if c.id == comment_id), None)
            if comment is None:
                raise JiraHttpError(404, ["Can not find a comment for the id: " + comment_id])
            issue.comments.remove(comment)
            issue.updated = self.now()
            events = self._comment_payloads(
                issue, comment, "comment_deleted", "issue_comment_deleted", actor
            )
        for name, payload in events:
            self._emit(name, payload)

    def add_attachment(
        self, id_or_key: str, filename: str, mime_type: str, content: bytes, actor: User | None
    ) -> AttachmentRec:
        with self.lock:
            issue = self.issue(id_or_key)
            att = AttachmentRec(
                id=self.next_id(),
                issue_id=issue.id,
                filename=filename,
                mime_type=mime_type or "application/octet-stream",
                content=content,
                author=actor.account_id if actor else "",
                created=self.now(),
            )
            self.attachments[att.id] = att
            issue.attachments.append(att.id)
            issue.updated = att.created
            items = [
                {
                    "field": "Attachment",
                    "fieldtype": "jira",
                    "fieldId": "attachment",
                    "from": None,
                    "fromString": None,
                    "to": att.id,
                    "toString": filename,
                }
            ]
            self._record(issue, actor, items)
            payload = self._issue_payload(
                issue, "jira:issue_updated", "issue_updated", actor, items
            )
        self._emit("jira:issue_updated", payload)
        return att

    def upsert_remote_link(
        self, id_or_key: str, body: dict[str, Any], actor: User | None
    ) -> tuple[RemoteLink, bool]:
        obj = body.get("object") if isinstance(body, dict) else None
        if not isinstance(obj, dict) or not obj.get("url") or not obj.get("title"):
            raise JiraHttpError(
                400, errors={"title": "'title' and 'url' are required in 'object'."}
            )
        with self.lock:
            issue = self.issue(id_or_key)
            global_id = body.get("globalId")
            for link in issue.links:
                if global_id and link.global_id == global_id:
                    link.body = dict(body)
                    return link, False
            link = RemoteLink(next(self._link_ids), global_id, dict(body))
            issue.links.append(link)
            return link, True

    # -- search ------------------------------------------------------------------------------

    def search(self, jql: str, viewer: User | None) -> list[Issue]:
        query: Query = compile_jql(jql, self.zone_of(viewer))
        now = self.now()
        who = viewer.account_id if viewer else None
        with self.lock:
            found = [
                i for i in self.issues.values() if query.matches(self.view(i, now=now, viewer=who))
            ]
        # Ties keep id order, so a page boundary never moves between requests.
        found.sort(key=_id_order)
        for name, descending in reversed(query.order or (("created", True),)):
            found.sort(key=functools.partial(_sort_key, name=name), reverse=descending)
        return found

    def view(self, issue: Issue, *, now: datetime, viewer: str | None) -> IssueView:
        """What JQL reads of `issue`, searched by `viewer` at `now`."""
        category = self.projects[issue.project].workflow.status(issue.status).category
        return IssueView(issue, now=now, viewer=viewer, category=category)

    # -- changelog and watchers --------------------------------------------------------------

    def changelog_json(self, issue: Issue, viewer: User | None) -> list[dict[str, Any]]:
        """The issue's change histories, oldest first (Changelog)."""
        zone = self.zone_of(viewer)
        return [
            {
                "id": entry["id"],
                "author": self.user_json(entry["author"]) if entry["author"] else None,
                "created": format_jira_datetime(entry["created"], zone),
                "items": copy.deepcopy(entry["items"]),
            }
            for entry in issue.changelog
        ]

    def add_watcher(self, id_or_key: str, account_id: str) -> None:
        """Add a watcher (an existing user)."""
        with self.lock:
            issue = self.issue(id_or_key)
            if account_id not in self.users:
                raise JiraHttpError(
                    404, [f"The user with account ID '{account_id}' does not exist."]
                )
            if account_id not in issue.watchers:
                issue.watchers.append(account_id)

    def remove_watcher(self, id_or_key: str, account_id: str) -> None:
        """Stop a user watching the issue."""
        with self.lock:
            issue = self.issue(id_or_key)
            if account_id in issue.watchers:
                issue.watchers.remove(account_id)

    # -- events ------------------------------------------------------------------------------

    def _record(self, issue: Issue, actor: User | None, items: list[dict[str, Any]]) -> None:
        issue.changelog.append(
            {
                "id": self.next_id(),
                "author": actor.account_id if actor else None,
                "created": issue.updated,
                "items": items,
            }
        )

    def _issue_payload(
        self,
        issue: Issue,
        webhook_event: str,
        type_name: str,
        actor: User | None,
        items: list[dict[str, Any]] | None,
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "timestamp": int(self.now().timestamp() * 1000),
            "webhookEvent": webhook_event,
            "issue_event_type_name": type_name,
            "user": self.user_json(actor.account_id) if actor else None,
            "issue": self.issue_json(issue, None),
        }
        if items is not None:
            payload["changelog"] = {"id": self.next_id(), "items": copy.deepcopy(items)}
        if webhook_event == "jira:issue_deleted":
            payload.pop("issue_event_type_name")
        return payload

    def _comment_payloads(
        self, issue: Issue, comment: Comment, event: str, type_name: str, actor: User | None
    ) -> list[tuple[str, dict[str, Any]]]:
        stamp = int(self.now().timestamp() * 1000)
        comment_json = self.comment_json(issue, comment, None, v3=False, props=False)
        issue_json = self.issue_json(issue, None)
        brief = {
            "id": issue.id,
            "self": issue_json["self"],
            "key": issue.key,
            "fields": {
                k: issue_json["fields"][k]
                for k in ("summary", "issuetype", "project", "assignee", "priority", "status")
            },
        }
        cloud: dict[str, Any] = {
            "timestamp": stamp,
            "webhookEvent": event,
            "comment": comment_json,
            "issue": brief,
        }
        updated: dict[str, Any] = {
            "timestamp": stamp,
            "webhookEvent": "jira:issue_updated",
            "issue_event_type_name": type_name,
            "user": self.user_json(actor.account_id) if actor else None,
            "issue": issue_json,
        }
        if event != "comment_deleted":
            updated["comment"] = comment_json
        return [(event, cloud), ("jira:issue_updated", updated)]

    def _emit(self, name: str, payload: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(name, payload)


def _wanted_fields(fields: Iterable[str] | None, default_all: bool) -> set[str] | None:
    names = [n.strip() for n in (fields or []) if n and n.strip()]
    if not names:
        return None if default_all else {"__none__"}
    if "*all" in names or "*navigable" in names:
        excluded = {n[1:] for n in names if n.startswith("-")}
        if not excluded:
            return None
        return {n for n in _ALL_NAMES if n not in excluded}
    return {n for n in names if not n.startswith("-")}


_ALL_NAMES = {
    "summary",
    "description",
    "environment",
    "issuetype",
    "project",
    "priority",
    "labels",
    "assignee",
    "reporter",
    "creator",
    "status",
    "resolution",
    "resolutiondate",
    "created",
    "updated",
    "duedate",
    "components",
    "comment",
    "attachment",
}


def _id_order(issue: Issue) -> int:
    return int(issue.id)


def _sort_key(issue: Issue, name: str) -> Any:
    if name == "updated":
        return issue.updated
    if name == "created":
        return issue.created
    if name in ("key", "issuekey", "id"):
        return (issue.project, int(issue.id))
    if name == "status":
        return issue.status
    return str(issue.fields.get(name) or "")


def _ref_name(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("name") or value.get("id") or "")
    return str(value or "")


def _named(kind: str, name: str | None, base_url: str) -> dict[str, Any] | None:
    if not name:
        return None
    table: Sequence[tuple[str, ...]] = {
        "priority": PRIORITIES,
        "issuetype": ISSUE_TYPES,
        "resolution": RESOLUTIONS,
    }[kind]
    row = next((r for r in table if r[1] == name), None)
    ident = row[0] if row else "0"
    data: dict[str, Any] = {
        "self": f"{base_url}/rest/api/2/{kind}/{ident}",
        "id": ident,
        "name": name,
    }
    if kind == "issuetype":
        data.update(
            {"description": "", "subtask": False, "iconUrl": f"{base_url}/images/{ident}.png"}
        )
    if kind == "priority":
        data["iconUrl"] = f"{base_url}/images/icons/priorities/{name.lower()}.svg"
    if kind == "resolution":
        data["description"] = row[2] if row else ""
    return data


def _text(value: Any, v3: bool) -> Any:
    if value is None:
        return None
    return to_adf(str(value)) if v3 else value


def is_adf(value: Any) -> bool:
    """Whether `value` is an Atlassian Document Format document."""
    return isinstance(value, dict) and value.get("type") == "doc"


def from_adf(doc: dict[str, Any]) -> str:
    """The text of an ADF document: one line per paragraph or heading, hard breaks as new lines
    (what Jira stores for the v2 API's plain-text view)."""

    def inline(node: Any) -> str:
        if not isinstance(node, dict):
            return ""
        if node.get("type") == "text":
            return str(node.get("text", ""))
        if node.get("type") == "hardBreak":
            return "\n"
        return "".join(inline(child) for child in node.get("content") or ())

    def blocks(node: Any) -> list[str]:
        if not isinstance(node, dict):
            return []
        kind = node.get("type")
        if kind in ("paragraph", "heading", "codeBlock"):
            return [inline(node)]
        lines: list[str] = []
        for child in node.get("content") or ():
            lines.extend(blocks(child))
        return lines

    return "\n".join(blocks(doc))


def to_adf(text: str) -> dict[str, Any]:
    """Plain text as an Atlassian Document Format document, one paragraph per line."""
    content = []
    for line in text.split("\n"):
        para: dict[str, Any] = {"type": "paragraph", "content": []}
        if line:
            para["content"] = [{"type": "text", "text": line}]
        content.append(para)
    return {"type": "doc", "version": 1, "content": content}


def _display(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


def _item(
    name: str,
    from_string: str | None,
    to_string: str | None,
    from_value: Any = None,
    to_value: Any = None,
) -> dict[str, Any]:
    return {
        "field": name,
        "fieldtype": "custom" if name.startswith("customfield_") else "jira",
        "fieldId": name,
        "from": _display(from_value) if from_value is not None else None,
        "fromString": from_string,
        "to": _display(to_value) if to_value is not None else None,
        "toString": to_string,
    }


def _check_comment_text(text: Any) -> None:
    """A comment body: not empty, at most Jira's text field limit of 32,767 characters."""
    if not isinstance(text, str) or not text.strip():
        raise JiraHttpError(400, errors={"comment": "Comment body can not be empty!"})
    if len(text) > TEXT_LIMIT:
        raise JiraHttpError(400, errors={"comment": TOO_LONG})


def _not_settable(name: str) -> str:
    return f"Field '{name}' cannot be set. It is not on the appropriate screen, or unknown."
