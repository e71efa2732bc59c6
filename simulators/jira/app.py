"""The simulator's HTTP API: the Jira Cloud REST endpoints the product uses, v2 and v3.

v2 and v3 share every route; they differ where Jira's do: v3 renders rich text (description,
environment, comment bodies) as Atlassian Document Format, v2 as plain strings. Requests carry
plain-text bodies on v2 and Atlassian Document Format on v3, as Jira Cloud does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.datastructures import UploadFile

from simulators.jira.jql import JqlError
from simulators.jira.meta_api import add_metadata_routes
from simulators.jira.state import (
    PRIORITIES,
    JiraHttpError,
    JiraState,
    User,
    format_jira_datetime,
    from_adf,
    is_adf,
)
from simulators.jira.webhooks import WebhookDispatcher

SEARCH_MAX_WITH_FIELDS = 100
SEARCH_MAX_IDS_ONLY = 5000
BULK_FETCH_MAX = 100
# Issue fields v3 takes (and answers) as Atlassian Document Format.
RICH_TEXT_FIELDS = ("description", "environment")
ADF_REQUIRED = "Operation value must be an Atlassian Document (see the Atlassian Document Format)"
CONTENT_CHUNK = 64 * 1024


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status)


def _error(exc: JiraHttpError) -> JSONResponse:
    return _json(exc.body(), exc.status)


def _token(offset: int, jql: str) -> str:
    raw = json.dumps({"o": offset, "q": hashlib.sha1(jql.encode()).hexdigest()[:12]})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _offset(token: str, jql: str) -> int:
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if data["q"] != hashlib.sha1(jql.encode()).hexdigest()[:12]:
            raise ValueError
        return int(data["o"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise JiraHttpError(400, ["The provided next page token is invalid or expired."]) from None


def _split(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]


def _adf_to_text(value: Any, field: str) -> str:
    if not is_adf(value):
        raise JiraHttpError(400, errors={field: ADF_REQUIRED})
    return from_adf(value)


def _issue_body_in(body: Any, v3: bool, rich: frozenset[str] = frozenset()) -> Any:
    """An issue create or edit body as the state keeps it: v3 sends rich text as ADF documents
    (a plain string is refused, as Jira Cloud refuses it); v2 sends plain text. `rich` names
    the multi-line text custom fields, which take ADF on v3 too ("the `description`,
    `environment`, and any `textarea` type custom fields ... take Atlassian Document Format
    content", createIssue)."""
    if not v3 or not isinstance(body, dict) or not isinstance(body.get("fields"), dict):
        return body
    fields = dict(body["fields"])
    for name in (*RICH_TEXT_FIELDS, *rich):
        if fields.get(name) is not None:
            fields[name] = _adf_to_text(fields[name], name)
    return {**body, "fields": fields}


def _comment_body_in(body: Any, v3: bool) -> Any:
    """A comment body as the state keeps it: an ADF document on v3, plain text on v2."""
    if not v3 or not isinstance(body, dict) or "body" not in body:
        return body
    if not is_adf(body["body"]):
        raise JiraHttpError(400, errors={"comment": "Comment body is not valid!"})
    return {**body, "body": from_adf(body["body"])}


def create_app(
    state: JiraState,
    dispatcher: WebhookDispatcher,
    *,
    server_title: str = "Jira simulator",
) -> FastAPI:
    """The FastAPI application serving `state`; wrap it in FaultInjector to serve it."""
    app = FastAPI(title=server_title, docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(JiraHttpError)
    async def jira_error(request: Request, exc: JiraHttpError) -> JSONResponse:
        return _error(exc)

    def viewer(request: Request) -> User:
        header = request.headers.get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        user: User | None = None
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials.strip()).decode()
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            name, _, secret = decoded.partition(":")
            user = state.authenticate("basic", name, secret)
        elif scheme.lower() == "bearer":
            user = state.authenticate("bearer", "", credentials.strip())
        if user is None:
            raise JiraHttpError(401, ["Client must be authenticated to access this resource."])
        return user

    async def body_of(request: Request) -> Any:
        raw = await request.body()
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            raise JiraHttpError(400, ["Unexpected character in the JSON body."]) from None

    def route(path: str, methods: list[str], status: int = 200) -> Callable[[Any], Any]:
        def register(fn: Any) -> Any:
            for version in (2, 3):
                app.add_api_route(
                    f"/rest/api/{version}{path}",
                    _bind(fn, version == 3),
                    methods=methods,
                    status_code=status,
                    include_in_schema=False,
                )
            return fn

        return register

    # -- site --------------------------------------------------------------------------------

    @route("/serverInfo", ["GET"])
    async def server_info(request: Request, v3: bool) -> JSONResponse:
        now = state.now()
        return _json(
            {
                "baseUrl": state.base_url,
                "version": "1001.0.0-SNAPSHOT",
                "versionNumbers": [1001, 0, 0],
                "deploymentType": "Cloud",
                "buildNumber": 100270,
                "buildDate": format_jira_datetime(datetime(2026, 1, 1, tzinfo=UTC), _utc()),
                "serverTime": format_jira_datetime(now, _utc()),
                "scmInfo": "0000000000000000000000000000000000000000",
                "serverTitle": server_title,
                "serverTimeZone": "Etc/UTC",
            }
        )

    add_metadata_routes(route, state, viewer)

    def rich_custom() -> frozenset[str]:
        with state.lock:
            return frozenset(f.id for f in state.catalogue.custom_fields() if f.rich_text)

    @route("/myself", ["GET"])
    async def myself(request: Request, v3: bool) -> JSONResponse:
        user = viewer(request)
        data = state.user_json(user.account_id) or {}
        data.update({"locale": "en_US", "groups": {"size": 1, "items": []}})
        data["applicationRoles"] = {"size": 1, "items": []}
        return _json(data)

    @route("/priority", ["GET"])
    async def priorities(request: Request, v3: bool) -> JSONResponse:
        viewer(request)
        return _json(
            [
                {
                    "self": f"{state.base_url}/rest/api/2/priority/{pid}",
                    "id": pid,
                    "name": name,
                    "description": name,
                    "iconUrl": f"{state.base_url}/images/icons/priorities/{name.lower()}.svg",
                    "statusColor": "#cccccc",
                }
                for pid, name in PRIORITIES
            ]
        )

    @route("/status", ["GET"])
    async def statuses(request: Request, v3: bool) -> JSONResponse:
        viewer(request)
        seen: dict[str, Any] = {}
        with state.lock:
            for project in state.projects.values():
                for status in project.workflow.statuses:
                    seen.setdefault(status.id, state.status_json(project, status.name))
        return _json(list(seen.values()))

    # -- issues ------------------------------------------------------------------------------

    @route("/issue", ["POST"], 201)
    async def create_issue(request: Request, v3: bool) -> JSONResponse:
        user = viewer(request)
        body = _issue_body_in(await body_of(request), v3, rich_custom())
        return _json(state.create_issue(body, user), 201)

    @route("/issue/bulk", ["POST"], 201)
    async def bulk_create(request: Request, v3: bool) -> JSONResponse:
        user = viewer(request)
        body = await body_of(request)
        updates = body.get("issueUpdates") if isinstance(body, dict) else None
        if not isinstance(updates, list):
            raise JiraHttpError(400, ["'issueUpdates' is required."])
        if len(updates) > 50:
            raise JiraHttpError(400, ["You can create at most 50 issues in one request."])
        created: list[dict[str, str]] = []
        errors: list[dict[str, Any]] = []
        for index, update in enumerate(updates):
            try:
                created.append(state.create_issue(_issue_body_in(update, v3, rich_custom()), user))
            except JiraHttpError as exc:
                errors.append(
                    {
                        "status": exc.status,
                        "elementErrors": exc.body(),
                        "failedElementNumber": index,
                    }
                )
        status = 201 if created or not errors else 400
        return _json({"issues": created, "errors": errors}, status)

    @route("/issue/bulkfetch", ["POST"])
    async def bulk_fetch(request: Request, v3: bool) -> JSONResponse:
        user = viewer(request)
        body = await body_of(request)
        wanted = body.get("issueIdsOrKeys") if isinstance(body, dict) else None
        if not isinstance(wanted, list) or not wanted:
            raise JiraHttpError(400, ["'issueIdsOrKeys' is required."])
        if len(wanted) > BULK_FETCH_MAX:
            raise JiraHttpError(400, [f"You can fetch at most {BULK_FETCH_MAX} issues."])
        fields = _split(body.get("fields"))
        with state.lock:
            # Unknown ids and keys are left out, not reported (only retriable errors are).
            found = {i.id: i for i in (state.find_issue(str(ref)) for ref in wanted) if i}
            issues = [
                state.issue_json(found[ident], user, fields=fields, v3=v3)
                for ident in sorted(found, key=int)
            ]
        return _json({"issues": issues, "issueErrors": []})

    @route("/issue/{issueIdOrKey}", ["GET"])
    async def get_issue(request: Request, issueIdOrKey: str, v3: bool) -> JSONResponse:
        user = viewer(request)
        issue = state.issue(issueIdOrKey)
        fields = _split(request.query_params.getlist("fields"))
        data = state.issue_json(issue, user, fields=fields, v3=v3)
        if "changelog" in _split(request.query_params.getlist("expand")):
            with state.lock:
                histories = state.changelog_json(issue, user)
            data["changelog"] = {
                "startAt": 0,
                "maxResults": len(histories),
                "total": len(histories),
                "histories": histories,
            }
        return _json(data)

    @route("/issue/{issueIdOrKey}", ["PUT"], 204)
    async def edit_issue(request: Request, issueIdOrKey: str, v3: bool) -> Response:
        user = viewer(request)
        body = _issue_body_in(await body_of(request), v3, rich_custom())
        state.edit_issue(issueIdOrKey, body, user)
        return Response(status_code=204)

    @route("/issue/{issueIdOrKey}", ["DELETE"], 204)
    async def delete_issue(request: Request, issueIdOrKey: str, v3: bool) -> Response:
        user = viewer(request)
        state.delete_issue(issueIdOrKey, user)
        return Response(status_code=204)

    @route("/issue/{issueIdOrKey}/transitions", ["GET"])
    async def get_transitions(request: Request, issueIdOrKey: str, v3: bool) -> JSONResponse:
        viewer(request)
        with_fields = "transitions.fields" in _split(request.query_params.getlist("expand"))
        with state.lock:
            issue = state.issue(issueIdOrKey)
            items = [
                state.transition_json(issue, t, with_fields=with_fields)
                for t in state.transitions_for(issue)
            ]
        return _json({"expand": "transitions", "transitions": items})

    @route("/issue/{issueIdOrKey}/transitions", ["POST"], 204)
    async def do_transition(request: Request, issueIdOrKey: str, v3: bool) -> Response:
        user = viewer(request)
        state.do_transition(issueIdOrKey, await body_of(request), user)
        return Response(status_code=204)

    # -- comments ----------------------------------------------------------------------------

    @route("/issue/{issueIdOrKey}/comment", ["GET"])
    async def get_comments(request: Request, issueIdOrKey: str, v3: bool) -> JSONResponse:
        user = viewer(request)
        start = int(request.query_params.get("startAt", 0))
        size = max(1, min(int(request.query_params.get("maxResults", 100)), 5000))
        props = "properties" in _split(request.query_params.get("expand"))
        descending = request.query_params.get("orderBy", "created").startswith("-")
        with state.lock:
            issue = state.issue(issueIdOrKey)
            ordered = list(reversed(issue.comments)) if descending else list(issue.comments)
            page = ordered[start : start + size]
            comments = [state.comment_json(issue, c, user, v3=v3, props=props) for c in page]
            total = len(ordered)
        return _json({"startAt": start, "maxResults": size, "total": total, "comments": comments})

    @route("/issue/{issueIdOrKey}/comment", ["POST"], 201)
    async def add_comment(request: Request, issueIdOrKey: str, v3: bool) -> JSONResponse:
        user = viewer(request)
        props = "properties" in _split(request.query_params.get("expand"))
        body = _comment_body_in(await body_of(request), v3)
        issue, comment = state.add_comment(issueIdOrKey, body, user)
        return _json(state.comment_json(issue, comment, user, v3=v3, props=props), 201)

    @route("/issue/{issueIdOrKey}/comment/{id}", ["GET"])
    async def get_comment(request: Request, issueIdOrKey: str, id: str, v3: bool) -> JSONResponse:
        user = viewer(request)
        props = "properties" in _split(request.query_params.get("expand"))
        with state.lock:
            issue = state.issue(issueIdOrKey)
            comment = next((c for c in issue.comments if c.id == id), None)
            if comment is None:
                raise JiraHttpError(404, ["Can not find a comment for the id: " + id])
            return _json(state.comment_json(issue, comment, user, v3=v3, props=props))

    @route("/issue/{issueIdOrKey}/comment/{id}", ["PUT"])
    async def update_comment(
        request: Request, issueIdOrKey: str, id: str, v3: bool
    ) -> JSONResponse:
        user = viewer(request)
        body = _comment_body_in(await body_of(request), v3)
        issue, comment = state.update_comment(issueIdOrKey, id, body, user)
        return _json(state.comment_json(issue, comment, user, v3=v3, props=False))

    @route("/issue/{issueIdOrKey}/comment/{id}", ["DELETE"], 204)
    async def delete_comment(request: Request, issueIdOrKey: str, id: str, v3: bool) -> Response:
        user = viewer(request)
        state.delete_comment(issueIdOrKey, id, user)
        return Response(status_code=204)

    def _comment_by_id(comment_id: str) -> Any:
        with state.lock:
            issue_id = state.comment_index.get(comment_id)
            issue = state.issues.get(issue_id or "")
            comment = (
                next((c for c in issue.comments if c.id == comment_id), None) if issue else None
            )
        if comment is None:
            raise JiraHttpError(404, ["Can not find a comment for the id: " + comment_id])
        return comment

    @route("/comment/{commentId}/properties/{propertyKey}", ["GET"])
    async def get_comment_property(
        request: Request, commentId: str, propertyKey: str, v3: bool
    ) -> JSONResponse:
        viewer(request)
        comment = _comment_by_id(commentId)
        if propertyKey not in comment.properties:
            raise JiraHttpError(404, [f"The property with key '{propertyKey}' does not exist."])
        return _json({"key": propertyKey, "value": comment.properties[propertyKey]})

    @route("/comment/{commentId}/properties/{propertyKey}", ["PUT"])
    async def set_comment_property(
        request: Request, commentId: str, propertyKey: str, v3: bool
    ) -> Response:
        viewer(request)
        comment = _comment_by_id(commentId)
        value = await body_of(request)
        with state.lock:
            existed = propertyKey in comment.properties
            comment.properties[propertyKey] = value
        return Response(status_code=200 if existed else 201)

    # -- attachments -------------------------------------------------------------------------

    @route("/issue/{issueIdOrKey}/attachments", ["POST"])
    async def add_attachments(request: Request, issueIdOrKey: str, v3: bool) -> JSONResponse:
        user = viewer(request)
        if request.headers.get("x-atlassian-token", "").lower() != "no-check":
            raise JiraHttpError(403, ["XSRF check failed"])
        state.issue(issueIdOrKey)
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise JiraHttpError(415, ["Attachments must be sent as multipart/form-data."])
        form = await request.form()
        files = [f for f in form.getlist("file") if isinstance(f, UploadFile)]
        if not files:
            raise JiraHttpError(400, ["The multipart part named 'file' is missing."])
        out = []
        for upload in files:
            content = await upload.read()
            att = state.add_attachment(
                issueIdOrKey,
                upload.filename or "attachment",
                upload.content_type or "application/octet-stream",
                content,
                user,
            )
            out.append(state.attachment_json(att, user, v3=v3))
        return _json(out)

    @route("/attachment/{id}", ["GET"])
    async def attachment_meta(request: Request, id: str, v3: bool) -> JSONResponse:
        user = viewer(request)
        att = state.attachments.get(id)
        if att is None:
            raise JiraHttpError(404, ["The attachment with id '" + id + "' does not exist"])
        return _json(state.attachment_json(att, user, v3=v3))

    @route("/attachment/content/{id}", ["GET"])
    async def attachment_content(request: Request, id: str, v3: bool) -> Response:
        viewer(request)
        att = state.attachments.get(id)
        if att is None:
            raise JiraHttpError(404, ["The attachment with id '" + id + "' does not exist"])
        content = att.content

        def chunks() -> Iterator[bytes]:
            for start in range(0, len(content), CONTENT_CHUNK):
                yield content[start : start + CONTENT_CHUNK]

        return StreamingResponse(
            chunks(),
            media_type=att.mime_type,
            headers={
                "Content-Length": str(len(content)),
                "Content-Disposition": f'attachment; filename="{att.filename}"',
            },
        )

    # -- remote links ------------------------------------------------------------------------

    @route("/issue/{issueIdOrKey}/remotelink", ["GET"])
    async def get_remote_links(request: Request, issueIdOrKey: str, v3: bool) -> JSONResponse:
        viewer(request)
        with state.lock:
            issue = state.issue(issueIdOrKey)
            links = [
                {
                    "id": link.id,
                    "self": f"{state.base_url}/rest/api/2/issue/{issue.key}/remotelink/{link.id}",
                    **{k: v for k, v in link.body.items() if k != "id"},
                }
                for link in issue.links
            ]
        return _json(links)

    @route("/issue/{issueIdOrKey}/remotelink", ["POST"], 201)
    async def add_remote_link(request: Request, issueIdOrKey: str, v3: bool) -> JSONResponse:
        user = viewer(request)
        link, created = state.upsert_remote_link(issueIdOrKey, await body_of(request), user)
        issue = state.issue(issueIdOrKey)
        return _json(
            {
                "id": link.id,
                "self": f"{state.base_url}/rest/api/2/issue/{issue.key}/remotelink/{link.id}",
            },
            201 if created else 200,
        )

    # -- search ------------------------------------------------------------------------------

    def search(user: User, params: dict[str, Any], v3: bool) -> JSONResponse:
        jql = str(params.get("jql") or "")
        fields = _split(params.get("fields"))
        token = params.get("nextPageToken")
        ids_only = not fields or set(fields) <= {"id", "key"}
        cap = SEARCH_MAX_IDS_ONLY if ids_only else SEARCH_MAX_WITH_FIELDS
        size = max(1, min(int(params.get("maxResults") or 50), cap))
        try:
            found = state.search(jql, user)
        except JqlError as exc:
            raise JiraHttpError(400, [str(exc)]) from None
        start = _offset(str(token), jql) if token else 0
        page = found[start : start + size]
        issues = []
        for issue in page:
            if ids_only:
                issues.append(
                    {
                        "id": issue.id,
                        "key": issue.key,
                        "self": f"{state.base_url}/rest/api/{3 if v3 else 2}/issue/{issue.id}",
                    }
                )
            else:
                issues.append(state.issue_json(issue, user, fields=fields, v3=v3))
        data: dict[str, Any] = {"issues": issues, "isLast": start + size >= len(found)}
        if not data["isLast"]:
            data["nextPageToken"] = _token(start + size, jql)
        return _json(data)

    @route("/search/jql", ["POST"])
    async def search_post(request: Request, v3: bool) -> JSONResponse:
        user = viewer(request)
        body = await body_of(request)
        if not isinstance(body, dict):
            raise JiraHttpError(400, ["The request body must be an object."])
        return search(user, body, v3)

    @route("/search/jql", ["GET"])
    async def search_get(request: Request, v3: bool) -> JSONResponse:
        user = viewer(request)
        params: dict[str, Any] = dict(request.query_params)
        params["fields"] = request.query_params.getlist("fields")
        return search(user, params, v3)

    @route("/search", ["GET", "POST"])
    async def search_removed(request: Request, v3: bool) -> JSONResponse:
        raise JiraHttpError(
            410,
            [
                "The requested API has been removed. "
                "Please migrate to the /rest/api/3/search/jql API."
            ],
        )

    # -- webhooks (admin REST API) -----------------------------------------------------------

    def hook_json(hook: Any) -> dict[str, Any]:
        return {
            "self": f"{state.base_url}/rest/webhooks/1.0/webhook/{hook.id}",
            "name": hook.name,
            "url": hook.url,
            "events": list(hook.events),
            "filters": {"issue-related-events-section": hook.jql},
            "excludeBody": hook.exclude_body,
            "enabled": hook.enabled,
        }

    @app.post("/rest/webhooks/1.0/webhook", status_code=201)
    async def register_webhook(request: Request) -> JSONResponse:
        viewer(request)
        body = await body_of(request)
        if not isinstance(body, dict):
            raise JiraHttpError(400, ["The request body must be an object."])
        try:
            hook = dispatcher.register(body)
        except ValueError as exc:
            raise JiraHttpError(400, [str(exc)]) from None
        return _json(hook_json(hook), 201)

    @app.get("/rest/webhooks/1.0/webhook")
    async def list_webhooks(request: Request) -> JSONResponse:
        viewer(request)
        return _json([hook_json(h) for h in dispatcher.hooks()])

    @app.delete("/rest/webhooks/1.0/webhook/{webhookId}", status_code=204)
    async def delete_webhook(request: Request, webhookId: int) -> Response:
        viewer(request)
        if not dispatcher.unregister(webhookId):
            raise JiraHttpError(404, ["Webhook not found."])
        return Response(status_code=204)

    return app


def _bind(fn: Any, v3: bool) -> Any:
    """A copy of `fn` with `v3` fixed, keeping the other parameters for FastAPI."""
    import functools
    import inspect

    @functools.wraps(fn)
    async def handler(*args: Any, **kwargs: Any) -> Any:
        return await fn(*args, v3=v3, **kwargs)

    signature = inspect.signature(fn)
    handler.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[p for p in signature.parameters.values() if p.name != "v3"]
    )
    return handler


def _utc() -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo("UTC")
