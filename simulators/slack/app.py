"""The Web API over HTTP: `POST|GET /api/<method>`, arguments and token as Slack takes them.

- Arguments: a GET query string; a POST form (`application/x-www-form-urlencoded` or
  `multipart/form-data`, query string merged in); or a JSON object, for the methods whose spec
  entry `consumes` JSON, sent with `Content-type: application/json; charset=utf-8`. A JSON body
  sent to a method that reads only forms is not read (as on Slack: the method sees no arguments).
- Token: `Authorization: Bearer <token>`, else a `token` argument of a query or form. A JSON body
  is never searched for a token: JSON needs the header (`not_authed` otherwise).
- An authenticated call's answer names the token's scopes in `X-OAuth-Scopes`.
- Every answer is HTTP 200 with `ok`, except an unknown method (404, `unknown_method`) and rate
  limiting (429, `Retry-After`, `ratelimited`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from simulators.slack.limits import RateLimiter
from simulators.slack.state import SlackError, Token, Workspace

JSON_TYPE = "application/json; charset=utf-8"
RATELIMITED_BODY = b'{"ok":false,"error":"ratelimited"}'

Handler = Callable[[Token, Mapping[str, Any]], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class MethodSpec:
    """What the spec says of one method: whether it takes JSON bodies, and its handler."""

    name: str
    handler: Handler
    accepts_json: bool


def methods(workspace: Workspace) -> dict[str, MethodSpec]:
    """The methods served, with `consumes` as in slack_web_openapi_v2.json."""
    w = workspace
    table: list[tuple[str, Handler, bool]] = [
        ("auth.test", w.auth_test, True),
        ("conversations.create", w.conversations_create, True),
        ("conversations.info", w.conversations_info, False),
        ("conversations.list", w.conversations_list, False),
        ("conversations.invite", w.conversations_invite, True),
        ("conversations.setTopic", w.conversations_set_topic, True),
        ("conversations.setPurpose", w.conversations_set_purpose, True),
        ("conversations.archive", w.conversations_archive, True),
        ("conversations.join", w.conversations_join, True),
        ("conversations.history", w.conversations_history, False),
        ("chat.postMessage", w.chat_post_message, True),
        ("users.lookupByEmail", w.users_lookup_by_email, False),
        ("users.info", w.users_info, False),
    ]
    return {name: MethodSpec(name, handler, accepts_json) for name, handler, accepts_json in table}


def _answer(
    body: Mapping[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    data = json.dumps(body, separators=(",", ":")).encode("utf-8")
    return Response(data, status_code=status, headers=headers, media_type=JSON_TYPE)


def _content_type(raw: str) -> tuple[str, dict[str, str]]:
    mime, _, rest = raw.partition(";")
    params: dict[str, str] = {}
    for part in rest.split(";"):
        key, eq, value = part.strip().partition("=")
        if eq:
            params[key.strip().lower()] = value.strip().strip('"')
    return mime.strip().lower(), params


class _BadRequest(Exception):
    def __init__(self, error: SlackError) -> None:
        super().__init__(error.code)
        self.error = error


async def _arguments(request: Request, spec: MethodSpec) -> tuple[dict[str, Any], str | None]:
    """The call's arguments and the token found among them (not the header's)."""
    query: dict[str, Any] = dict(request.query_params)
    body = await request.body()
    if request.method != "POST" or not body:
        return query, query.pop("token", None)
    raw = request.headers.get("content-type")
    if not raw:
        raise _BadRequest(SlackError("missing_post_type"))
    mime, params = _content_type(raw)
    charset = params.get("charset")
    if mime == "application/json":
        if charset is None:
            raise _BadRequest(SlackError("missing_charset"))
        if charset.lower().replace("-", "") != "utf8":
            raise _BadRequest(SlackError("invalid_charset"))
        try:
            parsed = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise _BadRequest(SlackError("invalid_json")) from None
        if not isinstance(parsed, dict):
            raise _BadRequest(SlackError("json_not_object"))
        return (parsed if spec.accepts_json else {}), None
    if charset is not None and charset.lower().replace("-", "") not in ("utf8", "usascii"):
        raise _BadRequest(SlackError("invalid_charset"))
    if mime == "application/x-www-form-urlencoded":
        try:
            form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            raise _BadRequest(SlackError("invalid_charset")) from None
    elif mime == "multipart/form-data":
        try:
            parsed_form = await request.form()
        except Exception:
            raise _BadRequest(SlackError("invalid_form_data")) from None
        form = {k: v for k, v in parsed_form.items() if isinstance(v, str)}
    else:
        raise _BadRequest(SlackError("invalid_post_type"))
    args = {**query, **form}
    return args, args.pop("token", None)


def _bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


class SlackAPI:
    """Routes every served method; `app` is the ASGI application."""

    def __init__(self, workspace: Workspace, limiter: RateLimiter) -> None:
        self.workspace = workspace
        self.limiter = limiter
        self.methods = methods(workspace)
        routes = [
            Route(f"/api/{name}", self._endpoint(spec), methods=["GET", "POST"])
            for name, spec in self.methods.items()
        ]
        routes.append(Route("/api/{method}", self._unknown, methods=["GET", "POST"]))
        self.app = Starlette(routes=routes)

    async def _unknown(self, request: Request) -> Response:
        return _answer({"ok": False, "error": "unknown_method"}, status=404)

    def _endpoint(self, spec: MethodSpec) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            try:
                args, arg_token = await _arguments(request, spec)
            except _BadRequest as bad:
                return _answer(bad.error.body())
            try:
                token = self.workspace.authenticate(_bearer(request) or arg_token)
            except SlackError as refused:
                return _answer(refused.body())
            channel = str(args.get("channel") or "") if spec.name == "chat.postMessage" else None
            wait = self.limiter.take(self.workspace.team_id, spec.name, channel)
            if wait is not None:
                return Response(
                    RATELIMITED_BODY,
                    status_code=429,
                    headers={"Retry-After": str(wait)},
                    media_type=JSON_TYPE,
                )
            # Slack tells every authenticated caller which scopes its token has.
            granted = {"X-OAuth-Scopes": ",".join(sorted(token.scopes))}
            try:
                return _answer(spec.handler(token, args), headers=granted)
            except SlackError as failed:
                return _answer(failed.body(), headers=granted)

        return endpoint


class SlackFaultBodies:
    """ASGI wrapper giving injected 429s Slack's body (`ratelimited`), Retry-After kept."""

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
                headers.append((b"content-type", JSON_TYPE.encode()))
                headers.append((b"content-length", str(len(RATELIMITED_BODY)).encode()))
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body" and limited:
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": RATELIMITED_BODY}
            await send(message)

        await self.app(scope, receive, rewrite)
