"""The console's listener inside the daemon: its own uvicorn server on `[console] host:port`, and
the sampler that keeps the last hour of lag for the health page."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
import uvicorn

from sync.console.actions import Actions, Enqueue
from sync.console.app import Console, create_console_app
from sync.console.auth import Sessions, Throttle
from sync.console.readmodel import LagHistory, Loaded, ReadModel, ReadTicket, ReloadResult
from sync.console.settings import ConsoleSettings
from sync.store.database import Store

log = structlog.get_logger("escalation_sync.console")


@dataclass(frozen=True, slots=True)
class ConsoleParts:
    """What the daemon hands the console."""

    store: Store
    loaded: Callable[[], Loaded]
    enqueue: Enqueue
    queue_depth: Callable[[], int] | None = None
    last_reload: Callable[[], ReloadResult | None] | None = None
    read_ticket: ReadTicket | None = None


class ConsoleServer:
    """The console, started and stopped with the daemon."""

    def __init__(self, parts: ConsoleParts, *, sample_every: float = 30.0) -> None:
        self.parts = parts
        self.history = LagHistory(parts.queue_depth, every=sample_every)
        self.readmodel = ReadModel(
            parts.store,
            parts.loaded,
            queue_depth=parts.queue_depth,
            last_reload=parts.last_reload,
            history=self.history,
            read_ticket=parts.read_ticket,
        )
        current = self.settings()
        self.console = Console(
            readmodel=self.readmodel,
            actions=Actions(parts.store, parts.enqueue),
            settings=self.settings,
            sessions=Sessions(
                idle=current.session_idle_minutes * 60, lifetime=current.session_max_hours * 3600
            ),
            throttle=Throttle(limit=current.max_sign_in_failures),
        )
        self.app = create_console_app(self.console)
        self.server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None
        self.host: str = current.host

    def settings(self) -> ConsoleSettings:
        """The `[console]` section in force (a reload changes users and roles at once)."""
        return self.parts.loaded().settings.console

    def start(self) -> None:
        """Listen on `[console] host:port`, and start sampling."""
        current = self.settings()
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host=current.host,
                port=int(current.port),
                root_path=current.root_path,
                http="httptools",
                loop="auto",
                log_config=None,
                access_log=False,
                lifespan="off",
                # Forwarded headers are read by the console itself, from trusted proxies only.
                proxy_headers=False,
                server_header=False,
                timeout_graceful_shutdown=5,
            )
        )
        self._thread = threading.Thread(target=self.server.run, name="console", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"console did not start on {current.host}:{current.port}")
            time.sleep(0.02)
        self.port = int(self.server.servers[0].sockets[0].getsockname()[1])
        self.host = current.host
        self.history.start()
        log.info("console started", url=self.url, auth=current.auth)

    @property
    def url(self) -> str:
        """Where the console answers (as configured; a proxy may publish it elsewhere)."""
        host = self.host if ":" not in self.host else f"[{self.host}]"
        if host in ("0.0.0.0", "[::]"):
            host = "127.0.0.1"
        return f"http://{host}:{self.port}{self.settings().root_path}/"

    def stop(self) -> None:
        """Stop listening and sampling."""
        self.history.stop()
        if self.server is not None:
            self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
