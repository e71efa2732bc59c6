"""The console's routes: sign-in, the four pages, and the operator actions behind CSRF checks.

Pages are rendered on the server with Jinja2 in a sandbox with autoescaping, so a ticket summary
or a vendor's error text is shown as text, never run. Every response carries a strict Content
Security Policy (scripts and styles from our own static folder only), and pages are not cached.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.staticfiles import StaticFiles

from sync.console import csrf
from sync.console.actions import Actions, NotAllowed, Outcome
from sync.console.auth import (
    Identity,
    ProxyRefused,
    Session,
    Sessions,
    Throttle,
    check_password,
    client_address,
    fingerprint,
    over_https,
    proxy_identity,
    trusted,
)
from sync.console.plot import depth_plot, lag_plot
from sync.console.readmodel import BoardFilter, ReadModel, TicketView, title
from sync.console.settings import ConsoleSettings
from sync.console.wording import environment, span
from sync.runtime.refs import parse_ref

log = structlog.get_logger("escalation_sync.console")

STATIC = Path(__file__).resolve().parent / "static"
SESSION_COOKIE = "escalation_console"
SIGN_IN_COOKIE = "escalation_console_sign_in"
MAX_FORM_BYTES = 2 * 1024 * 1024
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}


@dataclass
class Console:
    """The console's parts, shared by its routes."""

    readmodel: ReadModel
    actions: Actions
    settings: Callable[[], ConsoleSettings]
    sessions: Sessions
    throttle: Throttle
    flashes: dict[str, list[Outcome]] = field(default_factory=dict)


class _Redirect(Exception):
    def __init__(self, location: str) -> None:
        self.location = location


class _Refused(Exception):
    def __init__(self, status: int, title: str, message: str) -> None:
        self.status, self.title, self.message = status, title, message


def create_console_app(console: Console) -> FastAPI:
    """The console as an ASGI app (served on its own listener by the daemon)."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    env = environment()

    def path_for(request: Request, name: str, **params: Any) -> str:
        base = str(request.scope.get("root_path", "")).rstrip("/")
        query = params.pop("_query", None)
        path = base + str(app.url_path_for(name, **{k: str(v) for k, v in params.items()}))
        return f"{path}?{urlencode(query)}" if query else path

    def page(
        request: Request,
        template: str,
        *,
        who: Identity | None,
        session: Session | None,
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        flashes = console.flashes.pop(session.id, []) if session is not None else []
        html = env.get_template(template).render(
            request=request,
            who=who,
            csrf_field=csrf.FIELD,
            csrf_token=session.csrf if session is not None else "",
            flashes=flashes,
            url=lambda name, **params: path_for(request, name, **params),
            static=lambda name: path_for(request, "static", path=name),
            now=datetime.now(UTC),
            nav=context.pop("nav", ""),
            **context,
        )
        return HTMLResponse(html, status_code=status)

    def settings() -> ConsoleSettings:
        current = console.settings()
        console.sessions.configure(
            idle=current.session_idle_minutes * 60, lifetime=current.session_max_hours * 3600
        )
        return current

    def peer(request: Request) -> str | None:
        return request.client.host if request.client else None

    def secure(request: Request, current: ConsoleSettings) -> bool:
        if current.cookie_secure is not None:
            return current.cookie_secure
        return over_https(
            current, request.url.scheme, peer(request), request.headers.get("x-forwarded-proto")
        )

    def cookie_name(request: Request, current: ConsoleSettings) -> str:
        # The __Host- prefix makes the browser refuse the cookie unless it is Secure, for this
        # host only and for the whole site: no other subdomain or path can set or shadow it.
        if secure(request, current) and not current.root_path:
            return f"__Host-{SESSION_COOKIE}"
        return SESSION_COOKIE

    def set_session_cookie(
        request: Request, response: Response, session: Session, current: ConsoleSettings
    ) -> None:
        response.set_cookie(
            cookie_name(request, current),
            session.id,
            httponly=True,
            secure=secure(request, current),
            samesite="lax",
            path=current.root_path or "/",
        )

    def who_is(request: Request) -> tuple[Identity, Session, bool]:
        """The signed-in person and their session; the flag says the cookie must be set."""
        current = settings()
        sid = request.cookies.get(cookie_name(request, current))
        session = console.sessions.get(sid)
        if current.auth == "proxy":
            try:
                identity = proxy_identity(current, peer(request), request.headers)
            except ProxyRefused as exc:
                log.warning("console proxy sign-in refused", reason=str(exc), peer=peer(request))
                raise _Refused(403, "Not signed in", str(exc)) from None
            if session is None or session.user != identity.name:
                console.sessions.end(sid)
                session = console.sessions.start(identity.name, via="proxy")
                log.info("console session started", user=identity.name, via="proxy")
                return identity, session, True
            return identity, session, False
        if session is None:
            raise _Redirect(path_for(request, "sign_in", _query={"next": _here(request)}))
        user = current.user(session.user)
        if user is None or fingerprint(user) != session.fingerprint:
            # Removed, or their password changed since they signed in.
            console.sessions.end(session.id)
            raise _Redirect(path_for(request, "sign_in", _query={"next": _here(request)}))
        return Identity(user.name, user.role, "password"), session, False

    def checked_post(request: Request, form: Mapping[str, str]) -> tuple[Identity, Session]:
        identity, session, _ = who_is(request)
        token = form.get(csrf.FIELD) or request.headers.get(csrf.HEADER)
        if not csrf.tokens_match(session.csrf, token) or not csrf.same_origin(
            request.headers, _origin(request, settings())
        ):
            log.warning(
                "console request refused: CSRF check failed",
                path=request.url.path,
                user=identity.name,
                token_sent=bool(token),
            )
            raise _Refused(
                403,
                "Request refused",
                "This form did not come from this console's own page (its security token is "
                "missing or wrong). Go back, reload the page and try again.",
            )
        return identity, session

    async def read_form(request: Request) -> dict[str, str]:
        """A URL-encoded form, at most MAX_FORM_BYTES (read with the standard library: the
        daemon needs no multipart parser, and the console's forms send no files)."""
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > MAX_FORM_BYTES:
            raise _Refused(413, "Too large", "The form is larger than 2 MB.")
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind not in ("application/x-www-form-urlencoded", ""):
            raise _Refused(415, "Not a form", "The console takes URL-encoded forms only.")
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > MAX_FORM_BYTES:
                raise _Refused(413, "Too large", "The form is larger than 2 MB.")
        fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
        return {name: values[0] for name, values in list(fields.items())[:50]}

    @app.exception_handler(_Redirect)
    def redirect(request: Request, exc: _Redirect) -> Response:
        return RedirectResponse(exc.location, status_code=303)

    @app.exception_handler(_Refused)
    def refused(request: Request, exc: _Refused) -> Response:
        return page(
            request,
            "error.html.j2",
            who=None,
            session=None,
            status=exc.status,
            title=exc.title,
            message=exc.message,
        )

    @app.middleware("http")
    async def headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if "/static/" not in request.url.path:
            response.headers["cache-control"] = "no-store"
        return response

    # -- signing in and out

    @app.get("/", name="home")
    def home(request: Request) -> Response:
        return RedirectResponse(path_for(request, "board"), status_code=303)

    @app.get("/sign-in", name="sign_in")
    def sign_in_form(request: Request, next: str = "") -> Response:
        current = settings()
        if current.auth == "proxy":
            return RedirectResponse(path_for(request, "board"), status_code=303)
        token = csrf.new_token()
        response = page(
            request,
            "sign_in.html.j2",
            who=None,
            session=None,
            sign_in_token=token,
            next=_safe_next(next),
            error=None,
        )
        _set_sign_in_cookie(request, response, token, current, secure(request, current))
        return response

    @app.post("/sign-in", name="sign_in_post")
    async def sign_in(request: Request) -> Response:
        current = settings()
        form = await read_form(request)
        name = str(form.get("username") or "").strip()[:100]
        password = str(form.get("password") or "")[:1000]
        target = _safe_next(str(form.get("next") or ""))
        if not csrf.tokens_match(
            request.cookies.get(SIGN_IN_COOKIE), str(form.get(csrf.FIELD) or "")
        ) or not csrf.same_origin(request.headers, _origin(request, current)):
            log.warning("console sign-in refused: CSRF check failed", peer=peer(request))
            raise _Refused(
                403,
                "Request refused",
                "The sign-in form had expired or did not come from this console. Reload the "
                "sign-in page and try again.",
            )
        address = client_address(current, peer(request), request.headers.get("x-forwarded-for"))
        keys = (f"address:{address}", f"user:{name.lower()}")
        console.throttle.limit = current.max_sign_in_failures
        wait = console.throttle.wait(*keys)
        user = current.user(name)
        ok = False
        if not wait:
            ok = await run_in_threadpool(check_password, user, password)
        if not ok:
            if not wait:
                console.throttle.failed(*keys)
            # A name no one has is logged by a digest only: people type their password into
            # the name field, and a log is no place for it.
            log.warning(
                "console sign-in failed",
                user=name if user is not None else None,
                unknown_name=None if user is not None else _digest(name),
                address=address,
                reason="throttled" if wait else "wrong name or password",
            )
            token = csrf.new_token()
            message = (
                f"Too many failed sign-ins: try again in {span(timedelta(seconds=wait))}."
                if wait
                else "Wrong name or password."
            )
            response = page(
                request,
                "sign_in.html.j2",
                who=None,
                session=None,
                status=429 if wait else 401,
                sign_in_token=token,
                next=target,
                error=message,
                username=name,
            )
            _set_sign_in_cookie(request, response, token, current, secure(request, current))
            if wait:
                response.headers["retry-after"] = str(int(wait) + 1)
            return response
        assert user is not None
        console.throttle.succeeded(f"user:{name.lower()}")
        old = request.cookies.get(cookie_name(request, current))
        console.sessions.end(old)  # a new id at sign-in: a planted cookie is worth nothing
        session = console.sessions.start(user.name, via="password", fingerprint=fingerprint(user))
        log.info("console sign-in", user=user.name, role=user.role, address=address)
        done = RedirectResponse(target or path_for(request, "board"), status_code=303)
        set_session_cookie(request, done, session, current)
        _forget_cookie(done, SIGN_IN_COOKIE, current, secure(request, current), "strict")
        return done

    @app.post("/sign-out", name="sign_out")
    async def sign_out(request: Request) -> Response:
        form = await read_form(request)
        identity, session = checked_post(request, form)
        console.sessions.end(session.id)
        log.info("console sign-out", user=identity.name)
        current = settings()
        if current.auth == "proxy":
            return page(
                request,
                "error.html.j2",
                who=None,
                session=None,
                title="Signed out of the console",
                message="Your sign-in at the proxy continues; sign out there to end it.",
            )
        response = RedirectResponse(path_for(request, "sign_in"), status_code=303)
        # With the same flags it was set with: a browser ignores a __Host- cookie's removal
        # unless it is Secure too.
        _forget_cookie(
            response, cookie_name(request, current), current, secure(request, current), "lax"
        )
        return response

    def respond(request: Request, render: Callable[[Identity, Session], Response]) -> Response:
        identity, session, fresh = who_is(request)
        response = render(identity, session)
        if fresh:
            set_session_cookie(request, response, session, settings())
        return response

    # -- pages (each read only once the person is known: a stranger costs no query)

    @app.get("/board", name="board")
    def board(request: Request, level: str = "", priority: str = "", team: str = "") -> Response:
        chosen = BoardFilter(level=level[:100], priority=priority[:10], team=team[:200])

        def render(who: Identity, session: Session) -> Response:
            systems = console.readmodel.mapped()
            return page(
                request,
                "board.html.j2",
                who=who,
                session=session,
                nav="board",
                board=console.readmodel.board(chosen),
                chosen=chosen,
                find_hint=f"{' or '.join(title(s) for s in systems)} ticket",
            )

        return respond(request, render)

    @app.get("/find", name="find")
    def find(request: Request, q: str = "") -> Response:
        text = q.strip()[:200]

        def render(who: Identity, session: Session) -> Response:
            view = _find(console.readmodel, text) if text else None
            if view is None:
                outcome = Outcome(False, f"No ticket {text!r} is known to the store.")
                console.flashes.setdefault(session.id, []).append(outcome)
                return RedirectResponse(path_for(request, "board"), status_code=303)
            return RedirectResponse(
                path_for(request, "ticket", system=view.system, ident=view.ident), status_code=303
            )

        return respond(request, render)

    @app.get("/tickets/{system}/{ident}", name="ticket")
    def ticket(request: Request, system: str, ident: str) -> Response:
        def render(who: Identity, session: Session) -> Response:
            view = console.readmodel.ticket(system, ident)
            if view is None:
                return page(
                    request,
                    "error.html.j2",
                    who=who,
                    session=session,
                    status=404,
                    title="Unknown ticket",
                    message=f"The store knows no {title(system)} record {ident}.",
                )
            return page(
                request, "ticket.html.j2", who=who, session=session, nav="board", ticket=view
            )

        return respond(request, render)

    @app.get("/tickets/{system}/{ident}/trace", name="trace")
    def trace(request: Request, system: str, ident: str) -> Response:
        def render(who: Identity, session: Session) -> Response:
            view = console.readmodel.ticket(system, ident)
            error = result = None
            if view is None:
                error = f"The store knows no {title(system)} record {ident}."
            else:
                try:
                    result = console.readmodel.trace(view.ref)
                except Exception as exc:  # the page says why, as `explain` would
                    error = _reason(exc)
            fragment = request.headers.get("x-console-fragment") == "1"
            return page(
                request,
                "trace_fragment.html.j2" if fragment else "trace.html.j2",
                who=who,
                session=session,
                nav="board",
                ticket=view,
                trace=result,
                error=error,
            )

        return respond(request, render)

    @app.get("/health", name="health")
    def health(request: Request) -> Response:
        def render(who: Identity, session: Session) -> Response:
            data = console.readmodel.health()
            return page(
                request,
                "health.html.j2",
                who=who,
                session=session,
                nav="health",
                health=data,
                lag=lag_plot(data.samples, data.at, [s.system for s in data.systems]),
                depth=depth_plot(data.samples, data.at),
            )

        return respond(request, render)

    @app.get("/configuration", name="configuration")
    def configuration(request: Request) -> Response:
        def render(who: Identity, session: Session) -> Response:
            return page(
                request,
                "configuration.html.j2",
                who=who,
                session=session,
                nav="configuration",
                config=console.readmodel.configuration(),
                what_if=None,
                form={},
            )

        return respond(request, render)

    @app.post("/configuration/what-if", name="what_if")
    async def what_if(request: Request) -> Response:
        form = await read_form(request)
        identity, session = checked_post(request, form)
        text = form.get("tickets") or ""
        if form.get("sample"):
            text = SAMPLE.read_text()
        overrides = {
            name: _number(form.get(name))
            for name in ("max_per_day", "max_active", "max_active_per_assignee")
        }
        chosen = str(form.get("policy") or "current")[:100]
        result = await run_in_threadpool(console.readmodel.what_if, chosen, str(text), overrides)
        data = console.readmodel.configuration()
        return page(
            request,
            "configuration.html.j2",
            who=identity,
            session=session,
            nav="configuration",
            config=data,
            what_if=result,
            form={
                "policy": chosen,
                "tickets": str(text)[:200_000],
                **{k: "" if v is None else v for k, v in overrides.items()},
            },
        )

    # -- actions

    async def act(
        request: Request, form: Mapping[str, str], run: Callable[[Identity], Outcome]
    ) -> Response:
        identity, session = checked_post(request, form)
        try:
            outcome = await run_in_threadpool(run, identity)
        except NotAllowed as exc:
            log.warning("console action refused", path=request.url.path, user=identity.name)
            raise _Refused(403, "Not allowed", str(exc)) from None
        console.flashes.setdefault(session.id, []).append(outcome)
        back = _safe_next(str(form.get("back") or "")) or path_for(request, "health")
        return RedirectResponse(back, status_code=303)

    @app.post("/dead-letters/{item}/replay", name="replay")
    async def replay(request: Request, item: int) -> Response:
        form = await read_form(request)
        return await act(request, form, lambda who: console.actions.replay(item, who))

    @app.post("/outbox/{item}/requeue", name="requeue")
    async def requeue(request: Request, item: int) -> Response:
        form = await read_form(request)
        return await act(request, form, lambda who: console.actions.requeue(item, who))

    @app.post("/outbox/{item}/resolve", name="resolve")
    async def resolve(request: Request, item: int) -> Response:
        form = await read_form(request)
        sent = form.get("sent") == "yes"
        return await act(
            request, form, lambda who: console.actions.resolve(item, sent=sent, who=who)
        )

    return app


SAMPLE = Path(__file__).resolve().parent / "simulate-tickets.jsonl"


def _here(request: Request) -> str:
    base = str(request.scope.get("root_path", "")).rstrip("/")
    path = base + request.url.path if not request.url.path.startswith(base) else request.url.path
    return path + (f"?{request.url.query}" if request.url.query else "")


def _safe_next(value: str) -> str:
    """A path on this site to return to; anything else (another site, a scheme) is dropped."""
    value = value.strip()
    if not value.startswith("/") or value.startswith("//") or "\\" in value or "\n" in value:
        return ""
    return value[:2000]


def _origin(request: Request, current: ConsoleSettings) -> str:
    """The origin the browser should be on: as a trusted proxy forwards it, else as reached."""
    host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
    peer = request.client.host if request.client else None
    forwarded = request.headers.get("x-forwarded-host")
    scheme = (
        "https"
        if over_https(current, request.url.scheme, peer, request.headers.get("x-forwarded-proto"))
        else "http"
    )
    if forwarded and trusted(current, peer):
        host = forwarded.split(",")[0].strip()
    return f"{scheme}://{host}"


def _set_sign_in_cookie(
    request: Request, response: Response, token: str, current: ConsoleSettings, secure: bool
) -> None:
    response.set_cookie(
        SIGN_IN_COOKIE,
        token,
        max_age=3600,
        httponly=True,
        secure=secure,
        samesite="strict",
        path=current.root_path or "/",
    )


def _number(value: str | None) -> int | None:
    if value is None or not value.strip():
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def _find(readmodel: ReadModel, text: str) -> TicketView | None:
    """The pair an operator's reference names (`INC0010002`, `DS-7`, `servicenow:<sys_id>`),
    as `explain` reads references: the systems themselves say which references are theirs."""
    system, ident = parse_ref(text, readmodel.settings)
    return readmodel.ticket(system.value, ident)


def _digest(text: str) -> str:
    """A short digest that tells repeated values apart without showing them."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _forget_cookie(
    response: Response,
    name: str,
    current: ConsoleSettings,
    secure: bool,
    samesite: Literal["lax", "strict"],
) -> None:
    response.delete_cookie(
        name, path=current.root_path or "/", secure=secure, httponly=True, samesite=samesite
    )


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__
