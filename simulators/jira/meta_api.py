"""The endpoints an admin or a client calls before writing: fields, projects and their roles,
create and edit metadata, resolutions, issue types, link types, users, changelogs, watchers.

Shapes follow Atlassian's Jira Cloud platform REST OpenAPI spec (getFields, getAllProjects,
searchProjects, getProject, getProjectRoles, getProjectRole, getCreateIssueMeta and its paged
successors getCreateIssueMetaIssueTypes / getCreateIssueMetaIssueTypeId, getEditIssueMeta,
getResolutions, getIssueAllTypes, getIssueLinkTypes, findUsers, getChangeLogs,
getIssueWatchers, addWatcher, removeWatcher).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from simulators.jira.state import (
    ISSUE_LINK_TYPES,
    ISSUE_TYPES,
    RESOLUTIONS,
    JiraHttpError,
    JiraState,
    Project,
    User,
)


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status)


def _ints(request: Request, name: str, default: int, cap: int = 1000) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return max(0, min(int(raw), cap))
    except ValueError:
        raise JiraHttpError(400, [f"'{name}' must be a number."]) from None


def _split(request: Request, name: str) -> list[str]:
    return [
        part.strip()
        for item in request.query_params.getlist(name)
        for part in item.split(",")
        if part.strip()
    ]


def add_metadata_routes(
    route: Callable[..., Callable[[Any], Any]],
    state: JiraState,
    viewer: Callable[[Request], User],
) -> None:
    """Register the metadata endpoints (v2 and v3) through the app's `route` helper."""

    def base() -> str:
        return state.base_url

    def issue_type_json(name: str) -> dict[str, Any]:
        ident = next(i for i, n in ISSUE_TYPES if n == name)
        return {
            "self": f"{base()}/rest/api/2/issuetype/{ident}",
            "id": ident,
            "description": "",
            "iconUrl": f"{base()}/images/{ident}.png",
            "name": name,
            "subtask": False,
            "avatarId": 10300 + int(ident) % 100,
            "hierarchyLevel": 0,
        }

    def project_of(ref: str) -> Project:
        with state.lock:
            for project in state.projects.values():
                if ref.upper() == project.key or ref == project.id:
                    return project
        raise JiraHttpError(404, ["No project could be found with key '" + ref + "'."])

    def role_url(project: Project, role_id: int) -> str:
        return f"{base()}/rest/api/2/project/{project.id}/role/{role_id}"

    def project_json(project: Project, expand: list[str]) -> dict[str, Any]:
        data = state.project_ref_json(project)
        data.update(
            {
                "expand": "description,lead,issueTypes,url,projectKeys,permissions,insight",
                "description": "",
                "lead": state.user_json(project.lead),
                "components": [],
                "issueTypes": [issue_type_json(n) for n in project.issue_types],
                "assigneeType": "UNASSIGNED",
                "versions": [],
                "roles": {name: role_url(project, r.id) for name, r in project.roles.items()},
                "style": "classic",
                "isPrivate": False,
                "properties": {},
            }
        )
        if expand and "issueTypes" not in expand and "issueTypes" not in ",".join(expand):
            data.pop("issueTypes")
        return data

    # -- fields ------------------------------------------------------------------------------

    @route("/field", ["GET"])
    async def get_fields(request: Request, v3: bool) -> JSONResponse:
        viewer(request)
        with state.lock:
            return _json([f.details_json() for f in state.catalogue.fields.values()])

    # -- projects ----------------------------------------------------------------------------

    @route("/project", ["GET"])
    async def all_projects(request: Request, v3: bool) -> JSONResponse:
        viewer(request)
        expand = _split(request, "expand")
        with state.lock:
            return _json([project_json(p, expand) for p in state.projects.values()])

    @route("/project/search", ["GET"])
    async def search_projects(request: Request, v3: bool) -> JSONResponse:
        viewer(request)
        start = _ints(request, "startAt", 0)
        size = max(1, _ints(request, "maxResults", 50, 100))
        query = (request.query_params.get("query") or "").casefold()
        keys = {k.upper() for k in _split(request, "keys")}
        with state.lock:
            found = [
                p
                for p in state.projects.values()
                if (not query or query in p.key.casefold() or query in p.name.casefold())
                and (not keys or p.key in keys)
            ]
            page = [project_json(p, _split(request, "expand")) for p in found[start : start + size]]
        return _json(
            {
                "self": f"{base()}/rest/api/2/project/search",
                "startAt": start,
                "maxResults": size,
                "total": len(found),
                "isLast": start + size >= len(found),
                "values": page,
            }
        )

    @route("/project/{projectIdOrKey}", ["GET"])
    async def get_project(request: Request, projectIdOrKey: str, v3: bool) -> JSONResponse:
        viewer(request)
        project = project_of(projectIdOrKey)
        with state.lock:
            return _json(project_json(project, []))

    @route("/project/{projectIdOrKey}/statuses", ["GET"])
    async def project_statuses(request: Request, projectIdOrKey: str, v3: bool) -> JSONResponse:
        viewer(request)
        project = project_of(projectIdOrKey)
        with state.lock:
            statuses = [state.status_json(project, s.name) for s in project.workflow.statuses]
            return _json(
                [{**issue_type_json(n), "statuses": statuses} for n in project.issue_types]
            )

    @route("/project/{projectIdOrKey}/role", ["GET"])
    async def project_roles(request: Request, projectIdOrKey: str, v3: bool) -> JSONResponse:
        viewer(request)
        project = project_of(projectIdOrKey)
        with state.lock:
            return _json({name: role_url(project, r.id) for name, r in project.roles.items()})

    @route("/project/{projectIdOrKey}/role/{id}", ["GET"])
    async def project_role(
        request: Request, projectIdOrKey: str, id: str, v3: bool
    ) -> JSONResponse:
        viewer(request)
        project = project_of(projectIdOrKey)
        with state.lock:
            role = next((r for r in project.roles.values() if str(r.id) == id), None)
            if role is None:
                raise JiraHttpError(404, [f"Role with id: {id} does not exist."])
            actors = []
            for index, account in enumerate(sorted(role.members)):
                user = state.users.get(account)
                actors.append(
                    {
                        "id": 10000 + index,
                        "displayName": user.display_name if user else account,
                        "type": "atlassian-user-role-actor",
                        "actorUser": {"accountId": account},
                    }
                )
            return _json(
                {
                    "self": role_url(project, role.id),
                    "name": role.name,
                    "id": role.id,
                    "description": role.description or f"Project role {role.name}",
                    "actors": actors,
                    "scope": {"type": "PROJECT", "project": {"id": project.id}},
                }
            )

    # -- create and edit metadata ------------------------------------------------------------

    def create_fields_json(project: Project, *, paged: bool) -> Any:
        required = {"summary", "issuetype", "project"} | project.required
        names = state.create_fields(project)
        if paged:
            return [
                state.field_meta(n, required=n in required, paged=True, project=project)
                for n in names
                if state.catalogue.get(n) is not None
            ]
        return {
            n: state.field_meta(n, required=n in required, project=project)
            for n in names
            if state.catalogue.get(n) is not None
        }

    @route("/issue/createmeta", ["GET"])
    async def create_meta(request: Request, v3: bool) -> JSONResponse:
        viewer(request)
        keys = {k.upper() for k in _split(request, "projectKeys")}
        ids = set(_split(request, "projectIds"))
        type_names = set(_split(request, "issuetypeNames"))
        type_ids = set(_split(request, "issuetypeIds"))
        with_fields = "projects.issuetypes.fields" in _split(request, "expand")
        projects = []
        with state.lock:
            for project in state.projects.values():
                if (keys or ids) and project.key not in keys and project.id not in ids:
                    continue
                types = []
                for name in project.issue_types:
                    data = issue_type_json(name)
                    if (type_names or type_ids) and (
                        name not in type_names and data["id"] not in type_ids
                    ):
                        continue
                    data["expand"] = "fields"
                    if with_fields:
                        data["fields"] = create_fields_json(project, paged=False)
                    types.append(data)
                entry = state.project_ref_json(project)
                entry.pop("projectTypeKey", None)
                entry.pop("simplified", None)
                entry["expand"] = "issuetypes"
                entry["issuetypes"] = types
                projects.append(entry)
        return _json({"expand": "projects", "projects": projects})

    @route("/issue/createmeta/{projectIdOrKey}/issuetypes", ["GET"])
    async def create_meta_types(request: Request, projectIdOrKey: str, v3: bool) -> JSONResponse:
        viewer(request)
        project = project_of(projectIdOrKey)
        start = _ints(request, "startAt", 0)
        size = max(1, _ints(request, "maxResults", 50, 200))
        types = [issue_type_json(n) for n in project.issue_types]
        return _json(
            {
                "maxResults": size,
                "startAt": start,
                "total": len(types),
                "issueTypes": types[start : start + size],
            }
        )

    @route("/issue/createmeta/{projectIdOrKey}/issuetypes/{issueTypeId}", ["GET"])
    async def create_meta_fields(
        request: Request, projectIdOrKey: str, issueTypeId: str, v3: bool
    ) -> JSONResponse:
        viewer(request)
        project = project_of(projectIdOrKey)
        known = {i for i, n in ISSUE_TYPES if n in project.issue_types}
        if issueTypeId not in known:
            raise JiraHttpError(400, ["The issue type selected is invalid."])
        start = _ints(request, "startAt", 0)
        size = max(1, _ints(request, "maxResults", 50, 200))
        with state.lock:
            fields = create_fields_json(project, paged=True)
        return _json(
            {
                "maxResults": size,
                "startAt": start,
                "total": len(fields),
                "fields": fields[start : start + size],
            }
        )

    @route("/issue/{issueIdOrKey}/editmeta", ["GET"])
    async def edit_meta(request: Request, issueIdOrKey: str, v3: bool) -> JSONResponse:
        viewer(request)
        with state.lock:
            issue = state.issue(issueIdOrKey)
            project = state.projects[issue.project]
            names = sorted(project.edit_screen | {"issuetype"})
            fields = {
                n: state.field_meta(n, required=n in ("summary", "issuetype"), project=project)
                for n in names
                if state.catalogue.get(n) is not None
            }
        return _json({"fields": fields})

    # -- site-wide lists ---------------------------------------------------------------------

    @route("/resolution", ["GET"])
    async def resolutions(request: Request, v3: bool) -> JSONResponse:
        viewer(request)
        return _json(
            [
                {
                    "self": f"{base()}/rest/api/2/resolution/{rid}",
                    "id": rid,
                    "name": name,
                    "description": description,
                }
                for rid, name, description in RESOLUTIONS
            ]
        )

    @route("/resolution/{id}", ["GET"])
    async def resolution(request: Request, id: str, v3: bool) -> JSONResponse:
        viewer(request)
        for rid, name, description in RESOLUTIONS:
            if rid == id:
                return _json(
                    {
                        "self": f"{base()}/rest/api/2/resolution/{rid}",
                        "id": rid,
                        "name": name,
                        "description": description,
                    }
                )
        raise JiraHttpError(404, [f"The resolution with ID '{id}' does not exist."])

    @route("/issuetype", ["GET"])
    async def issue_types(request: Request, v3: bool) -> JSONResponse:
        viewer(request)
        return _json([issue_type_json(n) for _, n in ISSUE_TYPES])

    @route("/issuetype/{id}", ["GET"])
    async def issue_type(request: Request, id: str, v3: bool) -> JSONResponse:
        viewer(request)
        for ident, name in ISSUE_TYPES:
            if ident == id:
                return _json(issue_type_json(name))
        raise JiraHttpError(404, [f"The issue type with ID '{id}' does not exist."])

    @route("/issueLinkType", ["GET"])
    async def link_types(request: Request, v3: bool) -> JSONResponse:
        viewer(request)
        return _json(
            {
                "issueLinkTypes": [
                    {
                        "id": ident,
                        "name": name,
                        "inward": inward,
                        "outward": outward,
                        "self": f"{base()}/rest/api/2/issueLinkType/{ident}",
                    }
                    for ident, name, inward, outward in ISSUE_LINK_TYPES
                ]
            }
        )

    # -- users -------------------------------------------------------------------------------

    @route("/user/search", ["GET"])
    async def find_users(request: Request, v3: bool) -> JSONResponse:
        viewer(request)
        query = (request.query_params.get("query") or "").casefold()
        account = request.query_params.get("accountId")
        if not query and not account:
            raise JiraHttpError(400, ["One of 'accountId' or 'query' must be specified."])
        start = _ints(request, "startAt", 0)
        size = max(1, _ints(request, "maxResults", 50))
        with state.lock:
            found = [
                state.user_json(u.account_id)
                for u in state.users.values()
                if (account and u.account_id == account)
                or (
                    query
                    and (
                        u.display_name.casefold().startswith(query)
                        or u.email.casefold().startswith(query)
                        or any(w.startswith(query) for w in u.display_name.casefold().split())
                    )
                )
            ]
        return _json(found[start : start + size])

    @route("/user", ["GET"])
    async def get_user(request: Request, v3: bool) -> JSONResponse:
        viewer(request)
        account = request.query_params.get("accountId") or ""
        with state.lock:
            if account not in state.users:
                raise JiraHttpError(
                    404, ["Specified user does not exist or you do not have required permissions"]
                )
            return _json(state.user_json(account))

    # -- an issue's history and watchers -----------------------------------------------------

    @route("/issue/{issueIdOrKey}/changelog", ["GET"])
    async def changelog(request: Request, issueIdOrKey: str, v3: bool) -> JSONResponse:
        user = viewer(request)
        start = _ints(request, "startAt", 0)
        size = max(1, _ints(request, "maxResults", 100))
        with state.lock:
            issue = state.issue(issueIdOrKey)
            entries = state.changelog_json(issue, user)
        page = entries[start : start + size]
        path = f"{base()}/rest/api/{3 if v3 else 2}/issue/{issue.key}/changelog"
        data: dict[str, Any] = {
            "self": f"{path}?startAt={start}&maxResults={size}",
            "maxResults": size,
            "startAt": start,
            "total": len(entries),
            "isLast": start + size >= len(entries),
            "values": page,
        }
        if not data["isLast"]:
            data["nextPage"] = f"{path}?startAt={start + size}&maxResults={size}"
        return _json(data)

    @route("/issue/{issueIdOrKey}/watchers", ["GET"])
    async def watchers(request: Request, issueIdOrKey: str, v3: bool) -> JSONResponse:
        user = viewer(request)
        with state.lock:
            issue = state.issue(issueIdOrKey)
            listed = [state.user_json(a) for a in issue.watchers]
            return _json(
                {
                    "self": f"{base()}/rest/api/2/issue/{issue.key}/watchers",
                    "isWatching": user.account_id in issue.watchers,
                    "watchCount": len(listed),
                    "watchers": listed,
                }
            )

    @route("/issue/{issueIdOrKey}/watchers", ["POST"], 204)
    async def add_watcher(request: Request, issueIdOrKey: str, v3: bool) -> Response:
        user = viewer(request)
        raw = await request.body()
        account = user.account_id
        if raw.strip():
            try:
                account = json.loads(raw)
            except ValueError:
                raise JiraHttpError(
                    400, ["The request body must be an account id string."]
                ) from None
            if not isinstance(account, str):
                raise JiraHttpError(400, ["The request body must be an account id string."])
        state.add_watcher(issueIdOrKey, account)
        return Response(status_code=204)

    @route("/issue/{issueIdOrKey}/watchers", ["DELETE"], 204)
    async def remove_watcher(request: Request, issueIdOrKey: str, v3: bool) -> Response:
        viewer(request)
        account = request.query_params.get("accountId")
        if not account:
            raise JiraHttpError(400, ["'accountId' is required."])
        state.remove_watcher(issueIdOrKey, account)
        return Response(status_code=204)
