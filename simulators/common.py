"""What every simulator shares: a background HTTP server, fault injection and request counters.

```
ServerThread(app).start()        # uvicorn on 127.0.0.1, port 0 = a free port, read back in .port
FaultInjector(app, FaultConfig()) # ASGI middleware: latency, 429 (with / without Retry-After), 5xx
    GET  /_sim/stats   -> {"requests": {"GET /rest/api/2/issue/{issueIdOrKey}": 3, ...},
                           "batched": {"GET /api/now/table/{table}/{sys_id}": 2, ...},
                           "faults": {"429": 1, "429-no-retry-after": 0, "5xx": 2}, "total": 6}
                          ("batched": sub-requests carried by batch requests, not in "total")
    POST /_sim/reset   -> clears the counters
    GET  /_sim/faults  -> the current FaultConfig
    POST /_sim/faults  -> replaces it (JSON body, FaultConfig fields; missing fields take defaults)
```
Faults are never injected on `/_sim/*`, so a test can always reach the controls.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.routing import Match

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SIM_PREFIX = "/_sim/"


class FaultConfig(BaseModel):
    """How badly the simulated vendor behaves; rates are probabilities per request (0..1)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    latency_ms: float = Field(0.0, ge=0)
    rate_429: float = Field(0.0, ge=0, le=1)
    rate_429_no_retry_after: float = Field(0.0, ge=0, le=1)
    rate_5xx: float = Field(0.0, ge=0, le=1)
    retry_after_seconds: int = Field(1, ge=0)
    status_5xx: int = Field(503, ge=500, le=599)
    seed: int | None = None
    # Only requests whose path starts with one of these are faulted ("" = every path).
    path_prefixes: tuple[str, ...] = ("",)


class _Stats:
    """Thread-safe request and fault counters keyed by "METHOD /route/{template}".

    `batched` counts the sub-requests a batch request carried (each batch is one request).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._batched: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()

    def count_request(self, key: str) -> None:
        with self._lock:
            self._requests[key] += 1

    def count_batched(self, key: str) -> None:
        with self._lock:
            self._batched[key] += 1

    def count_fault(self, kind: str) -> None:
        with self._lock:
            self._faults[kind] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": dict(self._requests),
                "batched": dict(self._batched),
                "faults": {
                    "429": self._faults["429"],
                    "429-no-retry-after": self._faults["429-no-retry-after"],
                    "5xx": self._faults["5xx"],
                },
                "total": sum(self._requests.values()),
            }

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._batched.clear()
            self._faults.clear()


class FaultInjector:
    """ASGI middleware that injects faults, counts requests and serves the `/_sim/*` controls."""

    def __init__(self, app: ASGIApp, config: FaultConfig | None = None) -> None:
        self.app = app
        self.stats = _Stats()
        self._lock = threading.Lock()
        self._config = config or FaultConfig()
        self._rng = random.Random(self._config.seed)

    @property
    def config(self) -> FaultConfig:
        """The fault configuration in force."""
        return self._config

    def configure(self, config: FaultConfig) -> None:
        """Replace the fault configuration (and reseed the RNG) at runtime."""
        with self._lock:
            self._config = config
            self._rng = random.Random(config.seed)

    def _draw(self, path: str) -> tuple[str | None, FaultConfig]:
        """Pick the fault for one request: "429", "429-no-retry-after", "5xx" or None."""
        with self._lock:
            cfg = self._config
            if not any(path.startswith(p) for p in cfg.path_prefixes):
                return None, cfg
            roll = self._rng.random()
        for kind, rate in (
            ("429", cfg.rate_429),
            ("429-no-retry-after", cfg.rate_429_no_retry_after),
            ("5xx", cfg.rate_5xx),
        ):
            if roll < rate:
                return kind, cfg
            roll -= rate
        return None, cfg

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if path.startswith(SIM_PREFIX):
            await self._control(scope, receive, send)
            return
        fault, cfg = self._draw(path)
        if cfg.latency_ms:
            await asyncio.sleep(cfg.latency_ms / 1000.0)
        if fault is not None:
            self.stats.count_fault(fault)
            self.stats.count_request(f"{scope['method']} {self._template(scope)}")
            await _drain(receive)
            await self._send_fault(fault, cfg, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or path
            self.stats.count_request(f"{scope['method']} {template}")

    def _template(self, scope: Scope) -> str:
        """The route template a request would have reached (the path if none matches)."""
        for route in getattr(self.app, "routes", ()):
            try:
                match, _ = route.matches(scope)
            except (AttributeError, KeyError, TypeError):
                continue
            if match == Match.FULL:
                return str(getattr(route, "path", scope["path"]))
        return str(scope["path"])

    async def _send_fault(self, fault: str, cfg: FaultConfig, send: Send) -> None:
        if fault == "5xx":
            status = cfg.status_5xx
            body = b"<html><body><h1>Service Unavailable</h1></body></html>"
            headers = [(b"content-type", b"text/html")]
        else:
            status = 429
            body = json.dumps({"errorMessages": ["Rate limit exceeded."], "errors": {}}).encode()
            headers = [(b"content-type", b"application/json")]
            if fault == "429":
                headers.append((b"retry-after", str(cfg.retry_after_seconds).encode()))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _control(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        path = scope["path"]
        body = await _read_body(receive)
        payload: Any = {"error": f"unknown control endpoint {method} {path}"}
        status = 404
        if path == "/_sim/stats" and method == "GET":
            status, payload = 200, self.stats.snapshot()
        elif path == "/_sim/reset" and method == "POST":
            self.stats.reset()
            status, payload = 200, {"reset": True}
        elif path == "/_sim/faults" and method == "GET":
            status, payload = 200, self._config.model_dump(mode="json")
        elif path == "/_sim/faults" and method == "POST":
            try:
                self.configure(FaultConfig.model_validate_json(body or b"{}"))
                status, payload = 200, self._config.model_dump(mode="json")
            except ValidationError as exc:
                status, payload = 400, {"error": "invalid fault config", "details": exc.errors()}
        data = json.dumps(payload, default=str).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(data)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": data})


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _drain(receive: Receive) -> None:
    await _read_body(receive)


class ServerThread:
    """Serve an ASGI app with uvicorn in a daemon thread on 127.0.0.1 (port 0 = a free port)."""

    def __init__(
        self, app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
    ) -> None:
        self.app = app
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self._log_level = log_level
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def port(self) -> int:
        """The bound port (known once started)."""
        if self._port is None:
            raise RuntimeError("server not started")
        return self._port

    @property
    def url(self) -> str:
        """Base URL, without a trailing slash."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> ServerThread:
        """Bind, start serving in the background and return once requests are accepted."""
        if self._thread is not None:
            return self
        # Binding here, not in uvicorn, lets port 0 be read back before the first request.
        # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose
        # proto says TCP, and without it every keep-alive response waits on a delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        sock.listen(2048)
        sock.set_inheritable(True)
        self._socket = sock
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level=self._log_level,
            access_log=False,
            lifespan="off",
            timeout_keep_alive=30,
            backlog=2048,
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"sim-{self._port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive():
                raise RuntimeError("simulator server failed to start")
            if time.monotonic() > deadline:
                raise RuntimeError("simulator server did not start in time")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and wait for the thread to end."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self._socket is not None:
            self._socket.close()
        self._server = None
        self._thread = None
        self._socket = None

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
