"""The simulated instance's HTTP surface: Table, Attachment and Batch APIs, and /oauth_token.do.

Handlers work on a small request/response pair so that the Batch API can run its sub-requests
through exactly the code a direct call takes.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from simulators.servicenow.rules import AccessControl, PolicyRefusal, RateLimiter
from simulators.servicenow.store import (
    ATTACHMENT_TABLE,
    RecordNotFound,
    ServiceNowStore,
    UnknownTable,
)

DEFAULT_LIMIT = 10000
TOKEN_LIFETIME = 1799
HIBERNATION_PAGE = (
    b"<!DOCTYPE html><html><head><title>Instance Hibernating page</title></head><body>"
    b"<h1>Your instance is hibernating</h1><p>Sign in to wake your instance up.</p></body></html>"
)
_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    415: "Unsupported Media Type",
    500: "Internal Server Error",
}


@dataclass(slots=True)
class SimRequest:
    """What a handler sees of one request (already authenticated as `user`)."""

    method: str
    path: str
    path_params: dict[str, str]
    query: dict[str, str]
    body: bytes
    headers: dict[str, str]
    user: str


@dataclass(slots=True)
class SimResponse:
    """What a handler answers."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str | None = "application/json"


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> SimResponse:
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    return SimResponse(status, body, headers or {})


def _error(status: int, message: str, detail: str | None = None) -> SimResponse:
    return _json(status, {"error": {"message": message, "detail": detail}, "status": "failure"})


class Credentials:
    """Who may call: basic-auth users, OAuth clients and the tokens they were issued."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._passwords: dict[str, str] = {}
        self._clients: dict[str, tuple[str, str]] = {}
        self._tokens: dict[str, tuple[str, float]] = {}

    def set_password(self, user_name: str, password: str) -> None:
        """Allow `user_name` to authenticate with basic auth."""
        with self._lock:
            self._passwords[user_name] = password

    def add_client(self, client_id: str, client_secret: str, user_name: str) -> None:
        """Register an OAuth client whose tokens act as `user_name`."""
        with self._lock:
            self._clients[client_id] = (client_secret, user_name)

    def issue(self, client_id: str, client_secret: str) -> str | None:
        """A new access token for valid client credentials, else None."""
        with self._lock:
            known = self._clients.get(client_id)
            if known is None or not secrets.compare_digest(known[0], client_secret):
                return None
            token = secrets.token_urlsafe(32)
            self._tokens[token] = (known[1], time.monotonic() + TOKEN_LIFETIME)
            return token

    def issue_for_password(
        self, client_id: str, client_secret: str, user_name: str, password: str
    ) -> str | None:
        """The password grant: a token for a user, through a registered client."""
        with self._lock:
            known = self._clients.get(client_id)
            if known is None or not secrets.compare_digest(known[0], client_secret):
                return None
            if self._passwords.get(user_name) != password:
                return None
            token = secrets.token_urlsafe(32)
            self._tokens[token] = (user_name, time.monotonic() + TOKEN_LIFETIME)
            return token

    def revoke_tokens(self) -> None:
        """Forget every issued token (clients must fetch new ones)."""
        with self._lock:
            self._tokens.clear()

    def authenticate(self, authorization: str) -> str | None:
        """The user behind an Authorization header, or None."""
        scheme, _, value = authorization.partition(" ")
        scheme = scheme.lower()
        with self._lock:
            if scheme == "basic":
                try:
                    decoded = base64.b64decode(value, validate=True).decode("utf-8")
                except (binascii.Error, UnicodeDecodeError, ValueError):
                    return None
                user, _, password = decoded.partition(":")
                expected = self._passwords.get(user)
                if expected is not None and secrets.compare_digest(expected, password):
                    return user
                return None
            if scheme == "bearer":
                entry = self._tokens.get(value.strip())
                if entry is not None and entry[1] > time.monotonic():
                    return entry[0]
            return None


Handler = Callable[[SimRequest], SimResponse]


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    handler: Handler


def _compile(template: str) -> re.Pattern[str]:
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
    return re.compile(f"^{regex}$")


class ServiceNowAPI:
    """Routes and handlers over a store; `app` is the ASGI application."""

    def __init__(
        self,
        store: ServiceNowStore,
        credentials: Credentials,
        access: AccessControl | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.store = store
        self.credentials = credentials
        self.access = access or AccessControl()
        self.limiter = limiter or RateLimiter()
        self.hibernating = False
        # Called with "METHOD /route/{template}" for each batch sub-request run.
        self.count_batched: Callable[[str], None] = lambda _key: None
        self._routes: list[_Route] = []
        for prefix in ("/api/now/table", "/api/now/{api_version}/table"):
            self._add("GET", prefix + "/{table}", self.list_records)
            self._add("POST", prefix + "/{table}", self.create_record)
            self._add("GET", prefix + "/{table}/{sys_id}", self.get_record)
            self._add("PATCH", prefix + "/{table}/{sys_id}", self.update_record)
            self._add("PUT", prefix + "/{table}/{sys_id}", self.update_record)
            self._add("DELETE", prefix + "/{table}/{sys_id}", self.delete_record)
        for prefix in ("/api/now/attachment", "/api/now/{api_version}/attachment"):
            self._add("POST", prefix + "/file", self.upload_attachment)
            self._add("GET", prefix, self.list_attachments)
            self._add("GET", prefix + "/{sys_id}", self.attachment_meta)
            self._add("GET", prefix + "/{sys_id}/file", self.download_attachment)
            self._add("DELETE", prefix + "/{sys_id}", self.delete_attachment)
        starlette_routes = [self._starlette_route(r) for r in self._routes]
        starlette_routes.append(Route("/api/now/v1/batch", self._batch_endpoint, methods=["POST"]))
        starlette_routes.append(Route("/api/now/batch", self._batch_endpoint, methods=["POST"]))
        starlette_routes.append(Route("/oauth_token.do", self._token_endpoint, methods=["POST"]))
        self.app = Starlette(routes=starlette_routes)

    # --------------------------------------------------------------------------- routing

    def _add(self, method: str, template: str, handler: Handler) -> None:
        self._routes.append(_Route(method, template, _compile(template), handler))

    def _starlette_route(self, route: _Route) -> Route:
        async def endpoint(request: Request) -> Response:
            if self.hibernating:
                return _hibernation()
            body = await request.body()
            user = self.credentials.authenticate(request.headers.get("authorization", ""))
            if user is None:
                return _to_starlette(
                    _error(401, "User Not Authenticated", "Required to provide Auth information")
                )
            limits, over = self.limiter.count(user)
            if over:
                return _to_starlette(_rate_limited(limits))
            sim = SimRequest(
                method=request.method,
                path=request.url.path,
                path_params={k: str(v) for k, v in request.path_params.items()},
                query=dict(request.query_params),
                body=body,
                headers={k.lower(): v for k, v in request.headers.items()},
                user=user,
            )
            answer = self._handle(route.handler, sim)
            answer.headers.update(limits)
            return _to_starlette(answer)

        return Route(route.template, endpoint, methods=[route.method])

    def _handle(self, handler: Handler, request: SimRequest) -> SimResponse:
        try:
            return handler(request)
        except UnknownTable as exc:
            return _error(400, f"Invalid table {exc}", None)
        except RecordNotFound:
            return _error(
                404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval"
            )
        except PolicyRefusal as refusal:
            return _error(refusal.status, refusal.message, refusal.detail)

    def dispatch(
        self, method: str, url: str, body: bytes, headers: dict[str, str], user: str
    ) -> SimResponse:
        """Run one request as `user` through the same handlers (the Batch API's path)."""
        self.count_batched(f"{method.upper()} {self._template(url)}")
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        matched_path = False
        for route in self._routes:
            found = route.pattern.match(parts.path)
            if found is None:
                continue
            matched_path = True
            if route.method != method.upper():
                continue
            request = SimRequest(
                method=method.upper(),
                path=parts.path,
                path_params=found.groupdict(),
                query=query,
                body=body,
                headers={k.lower(): v for k, v in headers.items()},
                user=user,
            )
            return self._handle(route.handler, request)
        if matched_path:
            return _error(405, "Method not Supported", f"{method} is not supported for {url}")
        return _error(400, "Requested URI does not represent any resource", url)

    def _template(self, url: str) -> str:
        """The route template a URL reaches (the path when none does), for the counters."""
        path = urlsplit(url).path
        return next((r.template for r in self._routes if r.pattern.match(path)), path)

    # --------------------------------------------------------------------------- Table API

    def list_records(self, request: SimRequest) -> SimResponse:
        """GET /api/now/table/{table}: query, order, page, render."""
        table = request.path_params["table"]
        if not self.store.serves(table) or table == ATTACHMENT_TABLE:
            raise UnknownTable(table)
        response = self._list(table, request)
        if (
            request.path_params.get("api_version") == "v1"
            and response.headers.get("X-Total-Count") == "0"
        ):
            # Version 1 of the endpoint answers an empty result with 404 (v2 and later: []).
            return _error(
                404,
                "No Record found",
                "Records matching query not found. Check query parameter or offset parameter",
            )
        return response

    def _list(self, table: str, request: SimRequest) -> SimResponse:
        params = request.query
        query = params.get("sysparm_query", "")
        # Name-value pairs are AND-ed equality conditions.
        pairs = [f"{k}={v}" for k, v in params.items() if not k.startswith("sysparm_")]
        if pairs and table != ATTACHMENT_TABLE:
            query = "^".join([q for q in [query, *pairs] if q])
        try:
            limit = int(params.get("sysparm_limit", DEFAULT_LIMIT))
            offset = int(params.get("sysparm_offset", 0))
        except ValueError:
            return _error(400, "Invalid value for sysparm_limit or sysparm_offset")
        if limit < 0 or offset < 0:
            return _error(400, "Invalid value for sysparm_limit or sysparm_offset")
        rows = self.store.query(table, query)
        if table == "sys_properties" and not self.access.is_admin(request.user):
            # A property is readable by the roles named in its read_roles.
            held = self.access.roles_of(request.user)
            rows = [r for r in rows if held & set(_csv(r.get("read_roles", "")))]
        total = len(rows)
        page = rows[offset : offset + limit]
        display, exclude, fields = self._render_options(table, params, request.user)
        zone = self.store.zone_of(request.user)
        result = [
            self.store.render(
                table, r, display=display, exclude_links=exclude, fields=fields, zone=zone
            )
            for r in page
        ]
        headers = {"X-Total-Count": str(total)}
        if params.get("sysparm_suppress_pagination_header", "false") != "true" and limit > 0:
            headers["Link"] = self._links(request.path, params, offset, limit, total)
        return _json(200, {"result": result}, headers)

    def _links(
        self, path: str, params: Mapping[str, str], offset: int, limit: int, total: int
    ) -> str:
        def url(at: int) -> str:
            query = dict(params)
            query["sysparm_offset"] = str(at)
            query["sysparm_limit"] = str(limit)
            return f"{self.store.base_url}{path}?{urlencode(query)}"

        last = ((total - 1) // limit) * limit if total else 0
        links = [f'<{url(0)}>;rel="first"']
        if offset > 0:
            links.append(f'<{url(max(0, offset - limit))}>;rel="prev"')
        if offset + limit < total:
            links.append(f'<{url(offset + limit)}>;rel="next"')
        links.append(f'<{url(last)}>;rel="last"')
        return ",".join(links)

    def _render_options(
        self, table: str, params: Mapping[str, str], user: str
    ) -> tuple[str, bool, list[str]]:
        display = params.get("sysparm_display_value", "false").lower()
        if display not in ("true", "false", "all"):
            display = "false"
        exclude = params.get("sysparm_exclude_reference_link", "false").lower() == "true"
        columns = list(self.store.fields_of(table))
        fields = columns
        requested = params.get("sysparm_fields", "")
        if requested:
            known = set(columns)
            # Invalid fields are ignored; dot-walked ones are read through the reference.
            fields = [
                f.strip()
                for f in requested.split(",")
                if f.strip() and f.strip().split(".", 1)[0] in known
            ]
        # "Fields for which the calling entity does not have rights to because of ACLs are not
        # returned in a REST query response" (c_RESTAPI).
        return display, exclude, self.access.readable(user, table, fields)

    def get_record(self, request: SimRequest) -> SimResponse:
        """GET /api/now/table/{table}/{sys_id}."""
        table = request.path_params["table"]
        record = self.store.get(table, request.path_params["sys_id"])
        return self._one(200, table, record, request)

    def _one(
        self, status: int, table: str, record: Mapping[str, str], request: SimRequest
    ) -> SimResponse:
        if request.headers.get("x-no-response-body", "").lower() == "true":
            return SimResponse(status if status != 200 else 204, b"", {}, None)
        display, exclude, fields = self._render_options(table, request.query, request.user)
        rendered = self.store.render(
            table,
            record,
            display=display,
            exclude_links=exclude,
            fields=fields,
            zone=self.store.zone_of(request.user),
        )
        return _json(status, {"result": rendered})

    def _body(self, request: SimRequest) -> dict[str, Any] | SimResponse:
        content_type = request.headers.get("content-type", "")
        if not content_type:
            return _error(400, "Content-Type header is required", None)
        if "json" not in content_type.lower():
            return _error(415, "Unsupported media type", content_type)
        try:
            data = json.loads(request.body or b"{}")
        except (ValueError, UnicodeDecodeError):
            return _error(400, "Exception while reading request", "The payload is not valid JSON.")
        if isinstance(data, list):
            # Only the first record of an array is processed, as documented.
            data = data[0] if data else {}
        if not isinstance(data, dict):
            return _error(400, "Exception while reading request", "The payload is not valid JSON.")
        return data

    def create_record(self, request: SimRequest) -> SimResponse:
        """POST /api/now/table/{table}."""
        table = request.path_params["table"]
        if not self.store.serves(table) or table == ATTACHMENT_TABLE:
            raise UnknownTable(table)
        data = self._body(request)
        if isinstance(data, SimResponse):
            return data
        self.access.check_write(request.user, table, None, data)
        try:
            record = self.store.insert(table, data, user=request.user)
        except ValueError as exc:
            return _error(400, "Operation Failed", str(exc))
        response = self._one(201, table, record, request)
        location = f"{self.store.base_url}/api/now/table/{table}/{record['sys_id']}"
        response.headers["Location"] = location
        return response

    def update_record(self, request: SimRequest) -> SimResponse:
        """PATCH / PUT /api/now/table/{table}/{sys_id}."""
        table = request.path_params["table"]
        if not self.store.serves(table) or table == ATTACHMENT_TABLE:
            raise UnknownTable(table)
        data = self._body(request)
        if isinstance(data, SimResponse):
            return data
        sys_id = request.path_params["sys_id"]
        self.access.check_write(request.user, table, self.store.get(table, sys_id), data)
        record = self.store.update(table, sys_id, data, user=request.user)
        return self._one(200, table, record, request)

    def delete_record(self, request: SimRequest) -> SimResponse:
        """DELETE /api/now/table/{table}/{sys_id}."""
        table = request.path_params["table"]
        if not self.store.serves(table) or table == ATTACHMENT_TABLE:
            raise UnknownTable(table)
        self.store.delete(table, request.path_params["sys_id"])
        return SimResponse(204, b"", {}, None)

    # --------------------------------------------------------------------------- Attachment API

    def upload_attachment(self, request: SimRequest) -> SimResponse:
        """POST /api/now/attachment/file?table_name=&table_sys_id=&file_name= (file as body)."""
        params = request.query
        table = params.get("table_name", "")
        table_sys_id = params.get("table_sys_id", "")
        file_name = params.get("file_name", "")
        if not (table and table_sys_id and file_name):
            return _error(
                400, "Missing parameter", "table_name, table_sys_id and file_name are required"
            )
        content_type = request.headers.get("content-type", "") or "application/octet-stream"
        try:
            meta = self.store.add_attachment(
                table, table_sys_id, file_name, request.body, content_type, user=request.user
            )
        except (UnknownTable, RecordNotFound):
            return _error(400, "Invalid table name or table_sys_id", None)
        response = _json(201, {"result": self.store.render(ATTACHMENT_TABLE, meta)})
        response.headers["Location"] = f"{self.store.base_url}/api/now/attachment/{meta['sys_id']}"
        return response

    def list_attachments(self, request: SimRequest) -> SimResponse:
        """GET /api/now/attachment?sysparm_query=..."""
        return self._list(ATTACHMENT_TABLE, request)

    def attachment_meta(self, request: SimRequest) -> SimResponse:
        """GET /api/now/attachment/{sys_id}."""
        meta = self.store.get(ATTACHMENT_TABLE, request.path_params["sys_id"])
        return _json(200, {"result": self.store.render(ATTACHMENT_TABLE, meta)})

    def download_attachment(self, request: SimRequest) -> SimResponse:
        """GET /api/now/attachment/{sys_id}/file: the bytes, metadata in a header."""
        meta, content = self.store.attachment_content(request.path_params["sys_id"])
        rendered = self.store.render(ATTACHMENT_TABLE, meta)
        headers = {"X-Attachment-Metadata": json.dumps(rendered, separators=(",", ":"))}
        return SimResponse(200, content, headers, meta["content_type"] or None)

    def delete_attachment(self, request: SimRequest) -> SimResponse:
        """DELETE /api/now/attachment/{sys_id}."""
        self.store.delete_attachment(request.path_params["sys_id"])
        return SimResponse(204, b"", {}, None)

    # --------------------------------------------------------------------------- Batch API

    async def _batch_endpoint(self, request: Request) -> Response:
        if self.hibernating:
            return _hibernation()
        raw = await request.body()
        user = self.credentials.authenticate(request.headers.get("authorization", ""))
        if user is None:
            return _to_starlette(
                _error(401, "User Not Authenticated", "Required to provide Auth information")
            )
        limits, over = self.limiter.count(user)
        if over:
            return _to_starlette(_rate_limited(limits))
        answer = self.batch(raw, user)
        answer.headers.update(limits)
        return _to_starlette(answer)

    def batch(self, raw: bytes, user: str) -> SimResponse:
        """POST /api/now/v1/batch: run each sub-request, bodies base64 both ways."""
        try:
            payload = json.loads(raw or b"{}")
        except (ValueError, UnicodeDecodeError):
            return _error(400, "Exception while reading request", "The payload is not valid JSON.")
        requests_ = payload.get("rest_requests") if isinstance(payload, dict) else None
        if not isinstance(requests_, list):
            return _error(400, "Invalid batch request", "rest_requests must be an array")
        serviced = []
        unserviced = []
        for item in requests_:
            # id, method and url are required of every item (batch-api: rest_requests).
            if not isinstance(item, dict) or not all(item.get(k) for k in ("id", "method", "url")):
                unserviced.append(item.get("id") if isinstance(item, dict) else None)
                continue
            started = time.perf_counter()
            headers = {
                str(h.get("name")): str(h.get("value"))
                for h in item.get("headers") or []
                if isinstance(h, dict)
            }
            try:
                body = base64.b64decode(item.get("body") or "", validate=True)
            except (binascii.Error, ValueError):
                answer = _error(400, "Invalid body", "body must be base64")
            else:
                answer = self.dispatch(str(item["method"]), str(item["url"]), body, headers, user)
            entry: dict[str, Any] = {
                "id": str(item["id"]),
                "status_code": answer.status,
                "status_text": _STATUS_TEXT.get(answer.status, ""),
                "body": base64.b64encode(answer.body).decode("ascii"),
                "execution_time": int((time.perf_counter() - started) * 1000),
            }
            if not item.get("exclude_response_headers"):
                sent = dict(answer.headers)
                if answer.media_type:
                    sent["Content-Type"] = f"{answer.media_type};charset=UTF-8"
                entry["headers"] = [{"name": k, "value": v} for k, v in sent.items()]
            else:
                entry["headers"] = []
            serviced.append(entry)
        return _json(
            200,
            {
                "batch_request_id": str(payload.get("batch_request_id", "")),
                "serviced_requests": serviced,
                "unserviced_requests": unserviced,
            },
        )

    # --------------------------------------------------------------------------- OAuth

    async def _token_endpoint(self, request: Request) -> Response:
        if self.hibernating:
            return _hibernation()
        raw = await request.body()
        form = {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        grant = form.get("grant_type", "")
        token: str | None = None
        if grant == "client_credentials":
            token = self.credentials.issue(form.get("client_id", ""), form.get("client_secret", ""))
        elif grant == "password":
            token = self.credentials.issue_for_password(
                form.get("client_id", ""),
                form.get("client_secret", ""),
                form.get("username", ""),
                form.get("password", ""),
            )
        if token is None:
            return _to_starlette(
                _json(401, {"error_description": "access_denied", "error": "server_error"})
            )
        return _to_starlette(
            _json(
                200,
                {
                    "access_token": token,
                    "scope": "useraccount",
                    "token_type": "Bearer",
                    "expires_in": TOKEN_LIFETIME,
                },
            )
        )


RATE_LIMITED_BODY = json.dumps(
    {
        "error": {
            "message": "Rate limit exceeded",
            "detail": "Rate limit of 100 requests per hour for Table API exceeded",
        },
        "status": "failure",
    },
    separators=(",", ":"),
).encode("utf-8")


class RateLimitBody:
    """ASGI wrapper giving injected 429s ServiceNow's documented error body.

    The shared fault injector answers 429 in a neutral shape; a client of this instance must see
    the body ServiceNow sends (inbound-REST-API-rate-limiting), headers such as Retry-After kept.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        limited = False

        async def rewrite(message: Any) -> None:
            nonlocal limited
            if message["type"] == "http.response.start" and message["status"] == 429:
                limited = True
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in (b"content-length", b"content-type")
                ]
                headers.append((b"content-type", b"application/json;charset=UTF-8"))
                headers.append((b"content-length", str(len(RATE_LIMITED_BODY)).encode()))
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body" and limited:
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": RATE_LIMITED_BODY}
            await send(message)

        await self.app(scope, receive, rewrite)


def _rate_limited(headers: dict[str, str]) -> SimResponse:
    """429 with the rate-limit headers, Retry-After and the documented body."""
    return SimResponse(429, RATE_LIMITED_BODY, dict(headers))


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _hibernation() -> Response:
    return Response(HIBERNATION_PAGE, status_code=200, media_type="text/html")


def _to_starlette(response: SimResponse) -> Response:
    media = response.media_type
    if media == "application/json":
        media = "application/json;charset=UTF-8"
    return Response(
        response.body, status_code=response.status, headers=response.headers, media_type=media
    )
