"""Jira Cloud and Server/DC over REST, on the `jira` library.

The library supplies the authenticated session (basic auth with an API token on Cloud, a bearer
personal access token on Server/DC), URL building and a few one-request calls. Its own retry
loop is turned off (`max_retries=0`) and it does not probe the server at construction
(`get_server_info=False`): every call goes through `connectors.retry.call_with_retry` once, and
every failure leaves this module as one of the typed errors in `connectors.errors`.

Endpoints the library lacks or wraps with extra requests (`POST /rest/api/3/search/jql` with
`nextPageToken`, bulk create, remote links, streamed attachments) are called directly on the
library's session.

Public and internal comments
----------------------------
A comment is *internal* when Jira Service Management marks it so (the comment property
`sd.public.comment` is `{"internal": true}`) or when its `visibility` restricts it to a role or
group. Everything else is *public*. When writing, `CommentPolicy` decides how an internal comment
is made: on a service-desk project the JSM property is set; on plain Jira Software the comment is
restricted to a configured role (default "Administrators") or group.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO, Literal, TypeVar
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests
from jira import JIRA, JIRAError
from requests_toolbelt import MultipartEncoder

from connectors.errors import (
    AuthFailed,
    ConnectorError,
    Forbidden,
    InvalidRequest,
    NotFound,
    RateLimited,
    ServerUnavailable,
    TransportFailed,
)
from connectors.retry import RetryPolicy, call_with_retry, retry_after_seconds

T = TypeVar("T")

SYSTEM = "jira"
BULK_CHUNK = 50
BULK_FETCH = 100
SEARCH_PAGE = 100
JSM_PUBLIC_PROPERTY = "sd.public.comment"
JIRA_DATETIME = "%Y-%m-%dT%H:%M:%S.%f%z"
DOWNLOAD_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class CommentPolicy:
    """How this site marks an internal comment.

    `service_desk=True` sets the JSM `sd.public.comment` property (public and internal alike, so
    a public comment on a service-desk issue is explicitly shared with the customer).
    `visibility_type`/`visibility_value` restrict internal comments to a role or group; set
    `visibility_type=None` on a service desk where the property alone is enough.
    """

    service_desk: bool = False
    visibility_type: Literal["role", "group"] | None = "role"
    visibility_value: str = "Administrators"

    def comment_body(self, body: str, *, public: bool) -> dict[str, Any]:
        """The v2 request body for a new comment with this visibility."""
        data: dict[str, Any] = {"body": body}
        if not public and self.visibility_type is not None:
            data["visibility"] = {"type": self.visibility_type, "value": self.visibility_value}
        if self.service_desk:
            data["properties"] = [{"key": JSM_PUBLIC_PROPERTY, "value": {"internal": not public}}]
        return data


def comment_is_public(comment: Mapping[str, Any]) -> bool:
    """True unless JSM marks the comment internal or its visibility restricts it."""
    if comment.get("jsdPublic") is False:
        return False
    for prop in comment.get("properties") or ():
        if prop.get("key") == JSM_PUBLIC_PROPERTY:
            value = prop.get("value") or {}
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except ValueError:
                    value = {}
            if isinstance(value, dict) and value.get("internal") is True:
                return False
    return not comment.get("visibility")


@dataclass(frozen=True, slots=True)
class BulkError:
    """One element of a bulk create that Jira refused; `index` is into the caller's sequence."""

    index: int
    status: int | None
    messages: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BulkResult:
    """What a bulk create made (`{"id","key","self"}` each, in order) and what it refused."""

    created: list[dict[str, Any]] = field(default_factory=list)
    errors: list[BulkError] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RemoteLinkSpec:
    """A remote link to post on an issue; the same `global_id` updates instead of adding."""

    key: str
    url: str
    title: str
    global_id: str | None = None

    def body(self) -> dict[str, Any]:
        """The request body of POST /issue/{key}/remotelink."""
        return {
            "globalId": self.global_id or self.url,
            "application": {"type": "com.servicenow", "name": "ServiceNow"},
            "relationship": "mirrors",
            "object": {"url": self.url, "title": self.title},
        }


def parse_jira_datetime(value: str) -> datetime:
    """Parse Jira's `2026-11-23T12:00:00.000+0000` (milliseconds optional) to an aware datetime."""
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+0000"
    for fmt in (JIRA_DATETIME, "%Y-%m-%dT%H:%M:%S%z"):
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return datetime.fromisoformat(value)


def jql_datetime(moment: datetime, zone: ZoneInfo) -> str:
    """A JQL datetime literal (minute precision) for `moment` in the account's time zone."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(zone).strftime('"%Y-%m-%d %H:%M"')


def _error_messages(response: requests.Response | None) -> list[str]:
    """Jira's `errorMessages` and `errors` from an error body, never request headers."""
    if response is None:
        return []
    try:
        data = response.json()
    except ValueError:
        return []
    return _messages_of(data)


def _messages_of(data: Any) -> list[str]:
    if not isinstance(data, dict):
        return []
    messages = [str(m) for m in data.get("errorMessages") or []]
    errors = data.get("errors")
    if isinstance(errors, dict):
        messages += [f"{k}: {v}" for k, v in errors.items()]
    return messages


def error_for(status: int, response: requests.Response | None, what: str) -> ConnectorError:
    """Map one HTTP failure to the typed error the caller acts on."""
    messages = _error_messages(response)
    detail = f"{what}: HTTP {status}" + (f": {'; '.join(messages)}" if messages else "")
    headers: Mapping[str, str] = response.headers if response is not None else {}
    kwargs: dict[str, Any] = {"system": SYSTEM, "status": status, "messages": messages}
    if status == 429:
        return RateLimited(detail, retry_after=retry_after_seconds(headers), **kwargs)
    if status >= 500:
        return ServerUnavailable(detail, retry_after=retry_after_seconds(headers), **kwargs)
    # The platform's OpenAPI document: 401 "the authentication credentials are incorrect or
    # missing", 403 "the user does not have the necessary permission" (the credentials work).
    if status == 401:
        return AuthFailed(detail, **kwargs)
    if status == 403:
        return Forbidden(detail, **kwargs)
    if status == 404:
        return NotFound(detail, **kwargs)
    return InvalidRequest(detail, **kwargs)


class JiraConnector:
    """One Jira site, reached with one set of credentials.

    Cloud: `email` + `api_token` (HTTP basic). Server/DC: `pat` (bearer); when both are given
    the Cloud pair wins. `session` lends its transport (adapters, proxies, TLS settings,
    headers); `retry` bounds the attempts per call; `comments` says how internal comments are
    written; `overlap` is how far before the watermark each poll starts.
    """

    def __init__(
        self,
        base_url: str,
        *,
        email: str | None = None,
        api_token: str | None = None,
        pat: str | None = None,
        session: requests.Session | None = None,
        retry: RetryPolicy | None = None,
        comments: CommentPolicy | None = None,
        timeout: float = 30.0,
        overlap: timedelta = timedelta(minutes=2),
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._retry = retry or RetryPolicy()
        self._comments = comments or CommentPolicy()
        self._overlap = overlap
        self._zone: ZoneInfo | None = None
        # (key, updated) pairs already yielded by search_changed_since, with the updated time so
        # entries older than the overlap window can be forgotten.
        self._seen: dict[tuple[str, str], datetime] = {}
        basic = (email, api_token) if email and api_token else None
        if pat is None and basic is None and (email or api_token):
            raise ValueError("Jira Cloud auth needs both email and api_token")
        self._jira = JIRA(
            server=self.base_url,
            basic_auth=basic,
            token_auth=pat,
            get_server_info=False,
            max_retries=0,
            timeout=timeout,
            options={"rest_api_version": "2", "agile_rest_path": "agile"},
        )
        self._session = self._jira._session
        if session is not None:
            self._adopt(session)
        self._local = threading.local()
        self._pool_lock = threading.Lock()
        self._links_pool: ThreadPoolExecutor | None = None
        self._links_pool_size = 0

    def _adopt(self, session: requests.Session) -> None:
        """Send through the caller's transport: its adapters, proxies, TLS and headers."""
        own = self._session
        own.adapters = session.adapters
        own.proxies.update(session.proxies)
        own.verify = session.verify
        own.cert = session.cert
        own.hooks = session.hooks
        own.cookies.update(session.cookies)
        for name, value in session.headers.items():
            if name.lower() not in ("authorization", "accept", "user-agent", "content-type"):
                own.headers[name] = value

    def _send_pooled(self, method: str, url: str, data: str | None) -> requests.Response:
        """Send a JSON request from a pool thread, on that thread's own session.

        The thread's session shares the connector's transport adapters, whose connection pools
        are thread-safe; the session object (cookies, hooks) is not shared between threads.
        The request is a copy of one prepared when the thread began, so the session's headers,
        auth and environment are not merged again for every request: that merging is most of
        the client's work when hundreds of small requests go out a second.
        """
        local = self._local
        if getattr(local, "template", None) is None:
            own = self._session
            session = requests.Session()
            session.adapters = own.adapters
            session.auth = own.auth
            session.headers.update(own.headers)
            session.cert = own.cert
            session.hooks = own.hooks
            session.cookies.update(own.cookies)
            session.trust_env = False
            if own.trust_env:
                # Proxies for this site (NO_PROXY applied) and a CA bundle, read once.
                session.proxies.update(requests.utils.get_environ_proxies(self.base_url))
            session.proxies.update(own.proxies)
            session.verify = own.verify
            if own.trust_env and own.verify is True and self.base_url.startswith("https:"):
                bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
                session.verify = bundle or True
            local.session = session
            local.template = session.prepare_request(
                requests.Request(
                    "POST", self.base_url, headers={"Content-Type": "application/json"}
                )
            )
        prepared: requests.PreparedRequest = local.template.copy()
        prepared.method = method
        prepared.url = url
        prepared.prepare_body(data.encode() if data is not None else None, None)
        sent: requests.Response = local.session.send(
            prepared, allow_redirects=False, timeout=self._timeout
        )
        return sent

    # -- plumbing ---------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def _guard(self, what: str, fn: Callable[[], T]) -> T:
        """Run one attempt and translate library and transport failures to typed errors.

        The typed error is raised outside the `except` block so it carries no `__context__`:
        the library's exception can render request headers, which must never reach a log.
        """
        failure: ConnectorError
        try:
            return fn()
        except JIRAError as exc:
            status = exc.status_code or 0
            if status == 0:
                failure = TransportFailed(f"{what}: no response", system=SYSTEM)
            else:
                failure = error_for(status, exc.response, what)
        except requests.JSONDecodeError:
            failure = ServerUnavailable(f"{what}: non-JSON answer", system=SYSTEM)
        except requests.RequestException as exc:
            failure = TransportFailed(f"{what}: {type(exc).__name__}", system=SYSTEM)
        raise failure

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        return call_with_retry(self._retry, lambda: self._guard(what, fn))

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        expect_json: bool = True,
        pooled: bool = False,
    ) -> Any:
        """One JSON request with retries; returns the decoded body (None for 204).

        `pooled` sends it from the calling pool thread's own session (see `_send_pooled`).
        """
        what = f"{method} {path}"
        url = self._url(path)
        data = json.dumps(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}

        def attempt() -> Any:
            if pooled:
                resp = self._send_pooled(method, url, data)
            else:
                resp = self._session.request(method, url, params=params, data=data, headers=headers)
            if not resp.ok:
                raise error_for(resp.status_code, resp, what)
            if not expect_json or resp.status_code == 204 or not resp.content:
                return None
            try:
                return resp.json()
            except ValueError:
                # An HTML page where JSON belongs: a proxy or a sleeping instance.
                raise ServerUnavailable(
                    f"{what}: non-JSON answer", system=SYSTEM, status=resp.status_code
                ) from None

        return self._call(what, attempt)

    # -- reads ------------------------------------------------------------------------------

    def myself(self) -> dict[str, Any]:
        """The authenticated user, including `timeZone` (which JQL datetimes are read in)."""
        data: dict[str, Any] = self._request("GET", "/rest/api/2/myself")
        return data

    def server_info(self) -> dict[str, Any]:
        """GET /rest/api/2/serverInfo: deployment type, version, server time."""
        data: dict[str, Any] = self._request("GET", "/rest/api/2/serverInfo")
        return data

    def account_zone(self) -> ZoneInfo:
        """The account's time zone (cached after the first /myself)."""
        if self._zone is None:
            name = self.myself().get("timeZone") or "UTC"
            try:
                self._zone = ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                self._zone = ZoneInfo("UTC")
        return self._zone

    def get_issue(self, key: str, fields: Sequence[str] | None = None) -> dict[str, Any]:
        """The issue as GET /rest/api/2/issue/{key} returns it, with all comments and attachments.

        On a service desk the comments are re-read with their properties so public and
        internal can be told apart (see `comment_is_public`).
        """
        params: dict[str, Any] = {}
        if fields:
            params["fields"] = ",".join(fields)
        issue: dict[str, Any] = self._request("GET", f"/rest/api/2/issue/{key}", params=params)
        return self._complete_comments(issue)

    def get_issues(
        self, keys: Sequence[str], fields: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Many issues as `get_issue` returns them, a hundred per request (POST
        /rest/api/2/issue/bulkfetch); in id order, issues not found left out."""
        wanted = list(fields) if fields else ["*all"]
        found: list[dict[str, Any]] = []
        for offset in range(0, len(keys), BULK_FETCH):
            body = {"issueIdsOrKeys": list(keys[offset : offset + BULK_FETCH]), "fields": wanted}
            page = self._request("POST", "/rest/api/2/issue/bulkfetch", body=body)
            found.extend(self._complete_comments(issue) for issue in page.get("issues") or [])
        return found

    def _complete_comments(self, issue: dict[str, Any]) -> dict[str, Any]:
        """Re-read the comments when the issue carries only some of them, or (on a service
        desk) without the properties that tell public from internal."""
        block = (issue.get("fields") or {}).get("comment")
        if isinstance(block, dict):
            total = int(block.get("total", 0) or 0)
            inline = block.get("comments") or []
            if self._comments.service_desk or total > len(inline):
                comments = self.get_comments(str(issue.get("key") or issue.get("id")))
                block.update({"comments": comments, "total": len(comments)})
                block["maxResults"] = len(comments)
                block["startAt"] = 0
        return issue

    # -- what an admin reads first (setup checks) -------------------------------------------

    def get_project(self, key: str) -> dict[str, Any]:
        """The project with its issue types and role links (GET /rest/api/2/project/{key})."""
        data: dict[str, Any] = self._request("GET", f"/rest/api/2/project/{quote(key, safe='')}")
        return data

    def get_fields(self) -> list[dict[str, Any]]:
        """Every field of the site, system and custom (GET /rest/api/2/field)."""
        return list(self._request("GET", "/rest/api/2/field") or [])

    def create_fields(self, project: str, issue_type_id: str) -> list[dict[str, Any]]:
        """The create screen's fields for a project and issue type, every page of them
        (GET /rest/api/2/issue/createmeta/{project}/issuetypes/{id})."""
        fields: list[dict[str, Any]] = []
        start = 0
        path = f"/rest/api/2/issue/createmeta/{quote(project, safe='')}/issuetypes/{issue_type_id}"
        while True:
            page = self._request("GET", path, params={"startAt": start, "maxResults": 50})
            batch = page.get("fields") or page.get("values") or []
            fields.extend(batch)
            start += len(batch)
            if not batch or start >= int(page.get("total", 0) or 0):
                return fields

    def edit_fields(self, key: str) -> dict[str, Any]:
        """The edit screen's fields for an issue (GET /rest/api/2/issue/{key}/editmeta)."""
        data = self._request("GET", f"/rest/api/2/issue/{key}/editmeta")
        return dict((data or {}).get("fields") or {})

    def project_statuses(self, project: str) -> list[dict[str, Any]]:
        """Each issue type of the project with its workflow's statuses."""
        path = f"/rest/api/2/project/{quote(project, safe='')}/statuses"
        return list(self._request("GET", path) or [])

    def project_roles(self, project: str) -> dict[str, str]:
        """The project's roles, name -> URL (GET /rest/api/2/project/{key}/role)."""
        data = self._request("GET", f"/rest/api/2/project/{quote(project, safe='')}/role")
        return {str(k): str(v) for k, v in (data or {}).items()}

    def project_role(self, project: str, role_id: str) -> dict[str, Any]:
        """One project role with its actors."""
        path = f"/rest/api/2/project/{quote(project, safe='')}/role/{role_id}"
        data: dict[str, Any] = self._request("GET", path)
        return data

    def first_issue(self, jql: str) -> str | None:
        """The key of the newest issue the JQL finds, if any."""
        body = {"jql": f"{jql} ORDER BY created DESC", "fields": ["id"], "maxResults": 1}
        page = self._request("POST", "/rest/api/3/search/jql", body=body)
        issues = page.get("issues") or []
        return str(issues[0].get("key") or issues[0].get("id")) if issues else None

    def webhooks(self) -> list[dict[str, Any]]:
        """The site's admin webhooks (GET /rest/webhooks/1.0/webhook)."""
        return list(self._request("GET", "/rest/webhooks/1.0/webhook") or [])

    def get_comments(self, key: str) -> list[dict[str, Any]]:
        """Every comment of the issue, oldest first, with `visibility` and `properties`."""
        comments: list[dict[str, Any]] = []
        start = 0
        while True:
            page = self._request(
                "GET",
                f"/rest/api/2/issue/{key}/comment",
                params={"startAt": start, "maxResults": 100, "expand": "properties"},
            )
            batch = page.get("comments") or []
            comments.extend(batch)
            start += len(batch)
            if not batch or start >= int(page.get("total", 0) or 0):
                return comments

    def get_remote_links(self, key: str) -> list[dict[str, Any]]:
        """The issue's remote links (GET /rest/api/2/issue/{key}/remotelink)."""
        data = self._request("GET", f"/rest/api/2/issue/{key}/remotelink")
        return list(data or [])

    def get_transitions(self, key: str, *, with_fields: bool = False) -> list[dict[str, Any]]:
        """The transitions available from the issue's current status; `with_fields` adds each
        one's screen fields (`expand=transitions.fields`), with which it requires."""
        expand = "transitions.fields" if with_fields else None
        data: list[dict[str, Any]] = self._call(
            f"GET /rest/api/2/issue/{key}/transitions",
            lambda: self._jira.transitions(key, expand=expand),
        )
        return data

    def search_changed_since(
        self,
        since: datetime,
        *,
        jql: str = "",
        fields: Sequence[str] | None = None,
        until: datetime | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Issues updated at or after `since`, oldest first, each (key, updated) once.

        JQL reads datetimes in the account's time zone at minute precision, so the window starts
        `overlap` before `since` in that zone; what an earlier call already yielded is dropped.
        `until` bounds the window above (rounded up to the next whole minute).
        """
        zone = self.account_zone()
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        start = since - self._overlap
        clause = f"updated >= {jql_datetime(start, zone)}"
        if until is not None:
            if until.tzinfo is None:
                until = until.replace(tzinfo=UTC)
            clause += f" AND updated <= {jql_datetime(until + timedelta(minutes=1), zone)}"
        query = f"({jql}) AND {clause}" if jql.strip() else clause
        query += " ORDER BY updated ASC"
        wanted = list(fields) if fields else ["updated"]
        if "updated" not in wanted:
            wanted.append("updated")
        self._forget_before(start - self._overlap)
        token: str | None = None
        while True:
            body: dict[str, Any] = {"jql": query, "fields": wanted, "maxResults": SEARCH_PAGE}
            if token:
                body["nextPageToken"] = token
            page = self._request("POST", "/rest/api/3/search/jql", body=body)
            for issue in page.get("issues") or []:
                updated = str((issue.get("fields") or {}).get("updated") or "")
                mark = (str(issue.get("key") or issue.get("id")), updated)
                if mark in self._seen:
                    continue
                try:
                    moment = parse_jira_datetime(updated)
                except ValueError:
                    moment = since
                self._seen[mark] = moment
                yield issue
            token = page.get("nextPageToken")
            if page.get("isLast", token is None) or not token:
                return

    def _forget_before(self, cutoff: datetime) -> None:
        stale = [mark for mark, moment in self._seen.items() if moment < cutoff]
        for mark in stale:
            del self._seen[mark]

    # -- writes -----------------------------------------------------------------------------

    def create_issue(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Create one issue; returns `{"id", "key", "self"}`."""
        data: dict[str, Any] = self._request("POST", "/rest/api/2/issue", body={"fields": fields})
        return data

    def bulk_create(
        self,
        issues: Sequence[dict[str, Any]],
        *,
        transitions: Sequence[str | None] | None = None,
    ) -> BulkResult:
        """Create issues in chunks of at most 50; elements Jira refuses are reported by index.

        Each element is an issue's `fields` object. `transitions[i]`, when given, is the id of
        a transition from the workflow's start status that issue `i` takes as it is created.
        """
        if transitions is not None and len(transitions) != len(issues):
            raise ValueError("one transition (or None) per issue")
        updates: list[dict[str, Any]] = []
        for index, fields in enumerate(issues):
            update: dict[str, Any] = {"fields": fields}
            transition = transitions[index] if transitions is not None else None
            if transition:
                update["transition"] = {"id": transition}
            updates.append(update)
        created: list[dict[str, Any]] = []
        errors: list[BulkError] = []
        for offset in range(0, len(updates), BULK_CHUNK):
            body = {"issueUpdates": updates[offset : offset + BULK_CHUNK]}
            page = self._bulk_chunk(body)
            created.extend(page.get("issues") or [])
            for err in page.get("errors") or []:
                element = err.get("elementErrors") or {}
                errors.append(
                    BulkError(
                        index=offset + int(err.get("failedElementNumber", 0)),
                        status=err.get("status"),
                        messages=tuple(_messages_of(element)),
                    )
                )
        return BulkResult(created=created, errors=errors)

    def _bulk_chunk(self, body: dict[str, Any]) -> dict[str, Any]:
        what = "POST /rest/api/2/issue/bulk"
        url = self._url("/rest/api/2/issue/bulk")
        data = json.dumps(body)

        def attempt() -> dict[str, Any]:
            try:
                resp = self._session.request(
                    "POST", url, data=data, headers={"Content-Type": "application/json"}
                )
            except JIRAError as exc:
                if exc.response is None:
                    raise
                resp = exc.response
            if resp.status_code == 400:
                # Every element refused: the body still lists per-element errors.
                try:
                    page = resp.json()
                except ValueError:
                    page = None
                if isinstance(page, dict) and isinstance(page.get("errors"), list):
                    return page
            if not resp.ok:
                raise error_for(resp.status_code, resp, what)
            result: dict[str, Any] = resp.json()
            return result

        return self._call(what, attempt)

    def edit_issue(self, key: str, fields: dict[str, Any]) -> None:
        """Set fields (PUT /rest/api/2/issue/{key})."""
        self._request("PUT", f"/rest/api/2/issue/{key}", body={"fields": fields}, expect_json=False)

    def update_labels(self, key: str, add: Sequence[str] = (), remove: Sequence[str] = ()) -> None:
        """Add and remove labels incrementally, leaving others' labels alone."""
        ops = [{"add": label} for label in add] + [{"remove": label} for label in remove]
        if not ops:
            return
        self._request(
            "PUT", f"/rest/api/2/issue/{key}", body={"update": {"labels": ops}}, expect_json=False
        )

    def set_priority(self, key: str, name: str) -> None:
        """Set the priority by name."""
        self.edit_issue(key, {"priority": {"name": name}})

    def transition_to(
        self, key: str, target_status: str, *, fields: Mapping[str, Any] | None = None
    ) -> None:
        """Move the issue to `target_status` by the transition whose target is that status.

        Matches the transition's `to.name` (case-insensitive) or `to.id`, not the transition's
        own name. `fields` are what a transition's screen may need (a resolution on the way to
        Done): those on the chosen transition's screen are sent, the rest left out, since Jira
        refuses a field that is not on the transition screen. Already being there is success.
        No transition leading there is InvalidRequest.
        """
        wanted = target_status.strip().casefold()
        transitions = self.get_transitions(key, with_fields=bool(fields))
        for transition in transitions:
            to = transition.get("to") or {}
            if str(to.get("name", "")).casefold() == wanted or str(to.get("id", "")) == wanted:
                screen = transition.get("fields") or {}
                sent = {k: v for k, v in (fields or {}).items() if k in screen}
                self.transition(key, str(transition["id"]), fields=sent or None)
                return
        current = self.get_issue(key, fields=["status"])
        status = ((current.get("fields") or {}).get("status") or {}).get("name", "")
        if str(status).casefold() == wanted:
            return
        reachable = sorted({str((t.get("to") or {}).get("name", "")) for t in transitions})
        raise InvalidRequest(
            f"{key}: no transition from {status!r} leads to {target_status!r}; "
            f"reachable: {', '.join(reachable) or 'none'}",
            system=SYSTEM,
            messages=[f"reachable statuses: {', '.join(reachable) or 'none'}"],
        )

    def transition(
        self, key: str, transition_id: str, *, fields: Mapping[str, Any] | None = None
    ) -> None:
        """Take the transition with this id (POST /rest/api/2/issue/{key}/transitions), setting
        `fields` on its screen."""
        body: dict[str, Any] = {"transition": {"id": transition_id}}
        if fields:
            body["fields"] = dict(fields)
        self._request("POST", f"/rest/api/2/issue/{key}/transitions", body=body, expect_json=False)

    def add_comment(self, key: str, body: str, *, public: bool) -> dict[str, Any]:
        """Add a comment, public or internal per the site's `CommentPolicy`."""
        data: dict[str, Any] = self._request(
            "POST",
            f"/rest/api/2/issue/{key}/comment",
            params={"expand": "properties"},
            body=self._comments.comment_body(body, public=public),
        )
        return data

    def add_remote_link(
        self, key: str, url: str, title: str, global_id: str | None = None
    ) -> dict[str, Any]:
        """Link the issue to a record elsewhere; the same `global_id` updates instead of adding."""
        link = RemoteLinkSpec(key, url, title, global_id)
        data: dict[str, Any] = self._request(
            "POST", f"/rest/api/2/issue/{key}/remotelink", body=link.body()
        )
        return data

    def add_remote_links(
        self, links: Sequence[RemoteLinkSpec], *, workers: int = 4
    ) -> list[ConnectorError | None]:
        """Post many remote links, `workers` at a time (Jira has no bulk endpoint for them).

        Returns, per link in order, None when it was posted or the error that stopped it.
        """

        def post(link: RemoteLinkSpec) -> ConnectorError | None:
            try:
                self._request(
                    "POST",
                    f"/rest/api/2/issue/{quote(link.key, safe='')}/remotelink",
                    body=link.body(),
                    pooled=True,
                )
            except ConnectorError as exc:
                return exc
            return None

        if len(links) <= 1 or workers <= 1:
            return [post(link) for link in links]
        return list(self._pool(workers).map(post, links))

    def _pool(self, workers: int) -> ThreadPoolExecutor:
        """The connector's pool for pooled requests, shared by concurrent callers (so `workers`
        bounds what is in flight for all of them); its threads keep their sessions."""
        with self._pool_lock:
            if self._links_pool is None or self._links_pool_size != workers:
                if self._links_pool is not None:
                    self._links_pool.shutdown(wait=False)
                self._links_pool = ThreadPoolExecutor(workers, thread_name_prefix="jira-links")
                self._links_pool_size = workers
            return self._links_pool

    def list_attachments(self, key: str) -> list[dict[str, Any]]:
        """Attachment metadata of the issue."""
        issue = self._request("GET", f"/rest/api/2/issue/{key}", params={"fields": "attachment"})
        return list((issue.get("fields") or {}).get("attachment") or [])

    def add_attachment(
        self,
        key: str,
        filename: str,
        stream: BinaryIO,
        content_type: str = "application/octet-stream",
    ) -> list[dict[str, Any]]:
        """Upload one file (streamed multipart, the part typed `content_type`, which Jira keeps
        as the attachment's mimeType); returns the created attachments' metadata."""
        what = f"POST /rest/api/2/issue/{key}/attachments"
        url = self._url(f"/rest/api/2/issue/{key}/attachments")
        try:
            origin: int | None = stream.tell()
        except (OSError, AttributeError):
            origin = None

        def attempt() -> list[dict[str, Any]]:
            if origin is not None:
                stream.seek(origin)
            encoder = MultipartEncoder(fields={"file": (filename, stream, content_type)})
            resp = self._session.request(
                "POST",
                url,
                data=encoder,
                headers={"Content-Type": encoder.content_type, "X-Atlassian-Token": "no-check"},
            )
            if not resp.ok:
                raise error_for(resp.status_code, resp, what)
            return list(resp.json())

        return self._call(what, attempt)

    def download_attachment(self, attachment_id: str) -> Iterator[bytes]:
        """The attachment's content in chunks, without holding the whole file in memory."""
        what = f"GET /rest/api/2/attachment/content/{attachment_id}"
        url = self._url(f"/rest/api/2/attachment/content/{attachment_id}")

        def attempt() -> requests.Response:
            resp = self._session.request("GET", url, stream=True, allow_redirects=True)
            if not resp.ok:
                resp.close()
                raise error_for(resp.status_code, resp, what)
            return resp

        response = self._call(what, attempt)

        def chunks() -> Iterator[bytes]:
            failure: TransportFailed | None = None
            with response:
                try:
                    yield from response.iter_content(DOWNLOAD_CHUNK)
                except requests.RequestException as exc:
                    failure = TransportFailed(f"{what}: {type(exc).__name__}", system=SYSTEM)
            if failure is not None:
                raise failure

        return chunks()
