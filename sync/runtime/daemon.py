"""`escalation-sync run`: webhook server, queue workers, pollers and the replies mailbox in one
process.

Signals:
- SIGTERM / SIGINT: stop taking webhooks, let the workers finish the tickets in hand, exit 0.
- SIGHUP (or a changed file with `--watch`): reload the configuration, mapping and policy. A
  configuration that fails validation is refused with every error logged, and the last good one
  stays in force. Settings that shape the process itself (state, queue, listener, workers) need a
  restart; a reload that changes them says so. A reload that is accepted resumes every system
  paused for refused credentials (the new configuration may carry new ones).

Customers' replies: with `[email.inbound]` configured, a thread reads the mailbox (IMAP IDLE
where the server offers it, else every `poll_interval_seconds`) and posts each reply on its
ticket (sync/replies); a reload starts it again with the new configuration.

Health: GET /healthz answers 503 with the reasons while a system is paused (credentials
refused), has failed every call for `[health] failing_after_seconds`, or the oldest ready task
has waited `queue_stuck_after_seconds`; 200 again once it recovers. Messages in doubt after an
interrupted send are listed as notes until an operator settles them.

While running, `<state dir>/daemon.json` names the process and its listening address (the
actual port when 0 was configured); it is removed on a clean exit.
"""

from __future__ import annotations

import gc
import hashlib
import importlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import structlog
import uvicorn
from starlette.types import ASGIApp

from escalation.policy import RepeatedTrigger
from mapping.errors import ConfigInvalid
from sync.config.settings import Settings, load_settings
from sync.intake.webhooks import WebhookConfig, create_app
from sync.notify.outbox import OutboxWorker, store_counts, store_in_doubt
from sync.pipeline.engine import Engine
from sync.procedure.ledger import prune_fingerprints
from sync.procedure.scheduler import Scheduler
from sync.queue.tasks import InProcessConsumer, Reloadable, SyncQueue, TicketProcessor
from sync.runtime import metrics
from sync.runtime.health import HealthBoard, HealthPolicy, verdict
from sync.runtime.logs import configure_logging, settings_secrets
from sync.runtime.wiring import (
    build_engine,
    default_processor,
    inbound_settings,
    mail_intake,
    open_queue,
    open_store,
    outbox_worker,
)
from sync.store.database import Store

if TYPE_CHECKING:
    # Only for their types: each is imported when it is turned on.
    from sync.console.server import ConsoleServer
    from sync.replies.intake import MailIntake

log = structlog.get_logger(__name__)

RUNTIME_FILE = "daemon.json"
DELIVERY_RETENTION = timedelta(days=7)
HOUSEKEEPING_EVERY = 3600.0
OUTBOX_EVERY = 0.5
# How often the scheduler looks for tickets a time-driven rule is due for (an SLA nearing,
# an approval overdue, a follow-up, a periodic update), so they fire on unchanged tickets too.
SCHEDULER_EVERY = 15.0

Loader = Callable[[Path | None], Settings]
ProcessorFactory = Callable[[Settings, Store, SyncQueue], TicketProcessor]


def import_factory(spec: str) -> ProcessorFactory:
    """Resolve "package.module:function" to a processor factory."""
    module, _, attribute = spec.partition(":")
    factory = getattr(importlib.import_module(module), attribute or "build_processor")
    if not callable(factory):
        raise TypeError(f"{spec} is not callable")
    return factory  # type: ignore[no-any-return]


def _resolve(config_file: Path, value: Path | None) -> Path | None:
    if not value:
        return None
    path = Path(value)
    return path if path.is_absolute() else config_file.parent / path


@dataclass(frozen=True, slots=True)
class ReloadAttempt:
    """A reload and how it went: refused ones keep their errors for the console to show."""

    at: datetime
    ok: bool
    errors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Loaded:
    """A validated configuration and the files it came from."""

    settings: Settings
    files: tuple[Path, ...]
    digest: str
    loaded_at: datetime


class ConfigHolder:
    """The configuration in force; `reload()` replaces it only with one that validates."""

    def __init__(self, path: Path | None, loader: Loader, initial: Settings | None = None) -> None:
        self.path = path
        self.loader = loader
        self._lock = threading.Lock()
        self.loaded = self._load(initial)
        self._mtimes = self._stat(self.loaded.files)
        self.last_reload: ReloadAttempt | None = None

    @property
    def settings(self) -> Settings:
        """The settings in force."""
        return self.loaded.settings

    def _files(self, settings: Settings) -> tuple[Path, ...]:
        source = Path(settings.source or (self.path or ""))
        files = [source] if str(source) else []
        for extra in (settings.mapping_file, settings.policy_file):
            resolved = _resolve(source, extra)
            if resolved is not None:
                files.append(resolved)
        return tuple(files)

    @staticmethod
    def _stat(files: tuple[Path, ...]) -> tuple[int, ...]:
        stamps = []
        for file in files:
            try:
                stamps.append(file.stat().st_mtime_ns)
            except OSError:
                stamps.append(-1)
        return tuple(stamps)

    @staticmethod
    def _digest(files: tuple[Path, ...]) -> str:
        digest = hashlib.sha256()
        for file in files:
            try:
                digest.update(file.read_bytes())
            except OSError:
                digest.update(b"<missing>")
        return digest.hexdigest()[:16]

    def _load(self, settings: Settings | None = None) -> Loaded:
        if settings is None:
            settings = self.loader(self.path)
        files = self._files(settings)
        return Loaded(settings, files, self._digest(files), datetime.now(UTC))

    def changed_on_disk(self) -> bool:
        """True when a watched file's modification time moved since the last (re)load attempt."""
        stamps = self._stat(self.loaded.files)
        if stamps != self._mtimes:
            self._mtimes = stamps
            return True
        return False

    def reload(self, accept: Callable[[Loaded], None] | None = None) -> bool:
        """Load again; on any error log it and keep the configuration in force.

        `accept` is called with the new configuration before it is put in force; if it raises,
        the reload is refused too (e.g. the engine cannot be built from it).
        """
        with self._lock:
            try:
                candidate = self._load()
                if accept is not None:
                    accept(candidate)
            except ConfigInvalid as exc:
                self.last_reload = ReloadAttempt(
                    datetime.now(UTC), False, tuple(str(e) for e in exc.errors)
                )
                for error in exc.errors:
                    log.error(
                        "configuration error",
                        file=error.file,
                        key=error.key,
                        reason=error.reason,
                    )
                log.error(
                    "configuration reload refused; keeping the last good configuration",
                    errors=len(exc.errors),
                    digest=self.loaded.digest,
                )
                return False
            except Exception as exc:
                self.last_reload = ReloadAttempt(
                    datetime.now(UTC), False, (f"{type(exc).__name__}: {exc}",)
                )
                log.error(
                    "configuration reload failed; keeping the last good configuration",
                    error=type(exc).__name__,
                    reason=str(exc),
                    digest=self.loaded.digest,
                )
                return False
            restart = _restart_needed(self.loaded.settings, candidate.settings)
            self.loaded = candidate
            self._mtimes = self._stat(candidate.files)
            self.last_reload = ReloadAttempt(candidate.loaded_at, True)
            log.info("configuration reloaded", digest=candidate.digest)
            if restart:
                log.warning("restart needed to apply these settings", sections=restart)
            return True


def _restart_needed(old: Settings, new: Settings) -> list[str]:
    changed = []
    if old.state != new.state:
        changed.append("state")
    if old.webhooks != new.webhooks:
        changed.append("webhooks")
    return changed


def freeze_startup_heap() -> None:
    """Leave what start-up built out of the garbage collector's full passes.

    Start-up leaves some 150,000 tracked objects (SQLAlchemy, pydantic models, the engine) that
    live as long as the process. A full collection walks all of them, 100-500 ms on a 2-core
    machine, and answers no webhook meanwhile; frozen (after collecting start-up's own garbage),
    they are skipped, and full passes walk only what was created since.
    """
    gc.collect()
    gc.freeze()


def webhook_server(app: ASGIApp, host: str, port: int) -> uvicorn.Server:
    """The HTTP server the daemon runs its webhook app on (call `run()` in a thread).

    httptools parses requests and uvloop runs the event loop (both dependencies; uvloop where
    it is supported, else asyncio's loop): with h11 and asyncio's loop the server spent about a
    third more CPU per webhook delivery. A graceful shutdown waits up to 30 s for the requests in
    flight, so deliveries being made durable are answered.
    """
    return uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            http="httptools",
            loop="auto",
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=30,
        )
    )


class Daemon:
    """Everything `escalation-sync run` starts, and its orderly shutdown."""

    def __init__(
        self,
        config_path: Path | None,
        *,
        watch: bool = False,
        loader: Loader | None = None,
        processor_factory: ProcessorFactory | None = None,
        watch_interval: float = 1.0,
        settings: Settings | None = None,
    ) -> None:
        self.config = ConfigHolder(config_path, loader or load_settings, settings)
        self.watch = watch
        self.watch_interval = watch_interval
        self.factory = processor_factory or default_processor
        self._stop = threading.Event()
        self._reload = threading.Event()
        self.exit_code = 0
        self.store: Store | None = None
        self.queue: SyncQueue | None = None
        self.consumer: InProcessConsumer | None = None
        self.server: uvicorn.Server | None = None
        self._server_thread: threading.Thread | None = None
        self.port: int | None = None
        self._last_poll: dict[str, float] = {}
        self._outbox: OutboxWorker | None = None
        self._outbox_thread: threading.Thread | None = None
        self.console: ConsoleServer | None = None
        self.health: HealthBoard | None = None
        self.scheduler: Scheduler | None = None
        self._mail: MailIntake | None = None
        self._mail_thread: threading.Thread | None = None
        self._mail_stop = threading.Event()

    # -- lifecycle

    def start(self) -> None:
        """Open the store, start the workers and the pollers, then the webhook listener."""
        settings = self.config.settings
        state_dir = Path(settings.state.dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        self.store = open_store(settings)
        store = self.store
        self.health = HealthBoard(store.db)
        health = self.health
        metrics.watch_outbox(self._outbox_counts)
        metrics.watch_systems(health.states)
        metrics.watch_dead_letters(lambda: store.status_counts().dead_letters_pending)
        # Polls are timed by the main loop (to the second, as configured); the daily
        # reconciliation is a Huey periodic task.
        self.queue = open_queue(settings, self.store, daily_reconcile=True, health=health)
        self.queue.set_processor(self.factory(settings, self.store, self.queue))
        queue = self.queue
        self.scheduler = Scheduler(
            self.store, lambda s, t: queue.enqueue_ticket(s, t, source="scheduler"), self.clock
        )
        recovered = self.queue.recover_interrupted()
        if recovered:
            log.warning("re-enqueued work interrupted by the last shutdown", tickets=recovered)
        paused = self.queue.recover_pauses()
        if paused:
            log.warning("systems paused for refused credentials; probing them", systems=paused)
        self.consumer = self.queue.consumer(workers=int(settings.state.workers))
        self.consumer.start()
        self._set_outbox(settings)
        self._outbox_thread = threading.Thread(target=self._send_mail, name="outbox", daemon=True)
        self._outbox_thread.start()
        self._start_mail(settings)
        freeze_startup_heap()
        self._start_server(settings)
        self._start_console(settings)
        self._write_runtime(state_dir)
        log.info(
            "daemon started",
            host=settings.webhooks.host,
            port=self.port,
            workers=settings.state.workers,
            config=self.config.loaded.digest,
        )

    def _start_server(self, settings: Settings) -> None:
        assert self.store is not None and self.queue is not None
        queue = self.queue
        app = create_app(
            store=self.store,
            enqueue=queue.enqueue_events,
            config=lambda: WebhookConfig.from_settings(self.config.settings),
            queue_depth=queue.depth,
            health=self._health,
        )
        self.server = webhook_server(app, settings.webhooks.host, int(settings.webhooks.port))
        self._server_thread = threading.Thread(
            target=self.server.run, name="webhook-server", daemon=True
        )
        self._server_thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self._server_thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(
                    f"webhook server did not start on {settings.webhooks.host}:"
                    f"{settings.webhooks.port}"
                )
            time.sleep(0.02)
        self.port = int(self.server.servers[0].sockets[0].getsockname()[1])

    def _start_console(self, settings: Settings) -> None:
        """The operations console on its own listener, when `[console] enabled = true`."""
        if not settings.console.enabled:
            return
        assert self.store is not None and self.queue is not None
        # Imported here: a daemon without the console loads none of its pages or templates.
        from sync.console.readmodel import Loaded as Shown
        from sync.console.readmodel import ReloadResult
        from sync.console.server import ConsoleParts, ConsoleServer
        from sync.runtime.refs import load_ticket_for_explain

        queue, holder = self.queue, self.config

        def shown() -> Shown:
            loaded = holder.loaded
            return Shown(loaded.settings, loaded.digest, loaded.loaded_at)

        def last_reload() -> ReloadResult | None:
            attempt = holder.last_reload
            if attempt is None:
                return None
            return ReloadResult(attempt.at, attempt.ok, attempt.errors)

        def replay(system: str, ticket: str, event: dict[str, Any] | None) -> None:
            queue.enqueue_ticket(system, ticket, event=event, source="replay")

        self.console = ConsoleServer(
            ConsoleParts(
                store=self.store,
                loaded=shown,
                enqueue=replay,
                queue_depth=queue.depth,
                last_reload=last_reload,
                read_ticket=load_ticket_for_explain,
            )
        )
        self.console.start()

    def _outbox_counts(self) -> dict[str, int]:
        return store_counts(self.store) if self.store is not None else {}

    def _set_outbox(self, settings: Settings) -> None:
        """Send through every configured notifier (none when no channel is configured)."""
        assert self.store is not None
        # A chat room made (or refused): its record is synced again, so its link (or the reason)
        # is written there without waiting for the record's next change.
        resync = self.queue.enqueuer("outbox") if self.queue is not None else None
        self._outbox = outbox_worker(settings, self.store, health=self.health, resync=resync)

    def _send_mail(self) -> None:
        """The outbox loop: messages are recorded with their decision; here they go out."""
        while not self._stop.wait(OUTBOX_EVERY):
            worker = self._outbox
            if worker is None:
                continue
            try:
                worker.run_once()
            except Exception as exc:
                log.error("outbox pass failed", error=type(exc).__name__, reason=str(exc))

    def _start_mail(self, settings: Settings) -> None:
        """Read customers' replies in a thread of their own (when `[email.inbound]` is set)."""
        assert self.store is not None and self.queue is not None
        inbound = inbound_settings(settings)
        if inbound is None:
            return
        processor = self.queue.processor
        # The queue's engine when it is one (its test seams reach the replies too), else an
        # engine of the same configuration.
        engine = processor if isinstance(processor, Engine) else build_engine(settings, self.store)
        self._mail = mail_intake(
            settings, engine, enqueue=self.queue.enqueuer("mail"), health=self.health
        )
        if self._mail is None:
            return
        self._mail_stop = threading.Event()
        intake, stop = self._mail, self._mail_stop
        self._mail_thread = threading.Thread(
            target=self._read_mail, args=(intake, stop), name="mail", daemon=True
        )
        self._mail_thread.start()
        log.info("reading customers' replies", mailbox=inbound.kind, folder=inbound.folder)

    @staticmethod
    def _read_mail(intake: MailIntake, stop: threading.Event) -> None:
        try:
            intake.run(stop)
        except Exception:
            log.exception("replies mailbox thread stopped")

    def _stop_mail(self) -> None:
        self._mail_stop.set()
        if self._mail_thread is not None:
            # IDLE looks at the stop event every second; a pass in hand finishes its mail.
            self._mail_thread.join(30)
        self._mail_thread = None
        self._mail = None

    def _health(self) -> dict[str, Any]:
        """What /healthz adds to its answer: the systems, the problems that make it 503, notes."""
        loaded = self.config.loaded
        body: dict[str, Any] = {
            "config": loaded.digest,
            "config_loaded_at": loaded.loaded_at.isoformat(),
            "pid": os.getpid(),
        }
        if self.health is None or self.queue is None or self.store is None:
            return body
        states = self.health.states()
        held = self.health.held_counts()
        judged = verdict(
            states.values(),
            datetime.now(UTC),
            HealthPolicy.from_settings(self.config.settings),
            queue_age=self.queue.oldest_ready_age(),
            in_doubt=store_in_doubt(self.store),
            held=held,
        )
        body["systems"] = {
            name: {**state.to_json(), "events_waiting": held.get(name, 0)}
            for name, state in sorted(states.items())
        }
        body["problems"] = list(judged.problems)
        body["notes"] = list(judged.notes)
        return body

    def _write_runtime(self, state_dir: Path) -> None:
        runtime: dict[str, Any] = {
            "pid": os.getpid(),
            "host": self.config.settings.webhooks.host,
            "port": self.port,
            "started_at": datetime.now(UTC).isoformat(),
        }
        if self.console is not None:
            runtime["console"] = self.console.url
        path = state_dir / RUNTIME_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(runtime))
        tmp.replace(path)

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT stop, SIGHUP reloads (main thread only)."""
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, self._on_hup)

    def _on_stop(self, signum: int, _frame: FrameType | None) -> None:
        if self._stop.is_set():
            # A second signal while shutting down: stop waiting for in-flight work.
            os._exit(130)
        self._stop.set()

    def _on_hup(self, _signum: int, _frame: FrameType | None) -> None:
        self._reload.set()

    def request_stop(self) -> None:
        """Ask the main loop to shut down (as SIGTERM does)."""
        self._stop.set()

    def request_reload(self) -> None:
        """Ask the main loop to reload the configuration (as SIGHUP does)."""
        self._reload.set()

    def _poll_due(self, now: float) -> None:
        """Enqueue a poll of each mapped system whose interval has passed (the first one at
        once)."""
        assert self.queue is not None
        settings = self.config.settings
        for system in sorted(settings.mapping_model.systems):
            interval = float(settings.system_settings(system).poll_interval_seconds)
            last = self._last_poll.get(system)
            if interval > 0 and (last is None or now - last >= interval):
                self._last_poll[system] = now
                try:
                    self.queue.enqueue_poll(system)
                except Exception as exc:
                    log.error("could not enqueue a poll", system=system, error=type(exc).__name__)

    def serve(self) -> int:
        """Run until asked to stop; returns the exit code."""
        last_check = time.monotonic()
        last_housekeeping = 0.0
        last_schedule = 0.0
        while not self._stop.wait(0.2):
            self._poll_due(time.monotonic())
            if time.monotonic() - last_schedule >= SCHEDULER_EVERY:
                last_schedule = time.monotonic()
                self.run_scheduler()
            if self._reload.is_set():
                self._reload.clear()
                log.info("reload requested")
                self.reload()
            now = time.monotonic()
            if self.watch and now - last_check >= self.watch_interval:
                last_check = now
                if self.config.changed_on_disk():
                    log.info("configuration file changed")
                    self.reload()
            if now - last_housekeeping >= HOUSEKEEPING_EVERY:
                last_housekeeping = now
                self._housekeeping()
            if self._server_thread is not None and not self._server_thread.is_alive():
                log.error("webhook server stopped unexpectedly")
                self.exit_code = 1
                break
        self.shutdown()
        return self.exit_code

    def reload(self) -> bool:
        """Reload configuration; swap in a processor built from it. False if refused."""
        assert self.store is not None and self.queue is not None
        store, queue = self.store, self.queue
        built: list[TicketProcessor] = []

        def accept(candidate: Loaded) -> None:
            current = queue.processor
            if isinstance(current, Reloadable):
                current.reload(candidate.settings)
                built.append(current)
            else:
                built.append(self.factory(candidate.settings, store, queue))

        ok = self.config.reload(accept)
        if ok and built:
            queue.set_processor(built[0])
            self._set_outbox(self.config.settings)
            self._stop_mail()
            self._start_mail(self.config.settings)
            queue.resume_all()
            configure_logging(secrets=settings_secrets(self.config.settings))
        return ok

    def clock(self) -> datetime:
        """What the daemon takes as now: the engine's clock (which tests may move), so the
        scheduler finds due what the engine will then decide is due."""
        processor = self.queue.processor if self.queue is not None else None
        engine_clock = getattr(processor, "clock", None)
        return engine_clock() if callable(engine_clock) else datetime.now(UTC)

    def run_scheduler(self) -> int:
        """Queue the tickets whose time-driven rules are due now; returns how many."""
        return self.scheduler.tick() if self.scheduler is not None else 0

    def _housekeeping(self) -> None:
        assert self.store is not None
        try:
            pruned = self.store.prune_deliveries(datetime.now(UTC) - DELIVERY_RETENTION)
        except Exception as exc:
            log.warning("housekeeping failed", error=type(exc).__name__, reason=str(exc))
            return
        if pruned:
            log.info("forgot old webhook deliveries", count=pruned)
        self._prune_fingerprints()

    def _prune_fingerprints(self) -> None:
        """Forget repeated-occurrence sightings older than any repeated trigger looks back."""
        assert self.store is not None
        policy = self.config.settings.compiled_policy
        triggers = policy.triggers if policy is not None else ()
        windows = [t.window_hours for t in triggers if isinstance(t, RepeatedTrigger)]
        keep = timedelta(hours=max(windows)) if windows else DELIVERY_RETENTION
        try:
            with self.store.session() as tx:
                pruned = prune_fingerprints(tx, datetime.now(UTC) - keep)
        except Exception as exc:
            log.warning("housekeeping failed", error=type(exc).__name__, reason=str(exc))
            return
        if pruned:
            log.info("forgot old fingerprint sightings", count=pruned)

    def shutdown(self) -> None:
        """Stop listening, let workers finish what they hold, close the store."""
        log.info("shutting down: finishing work in progress")
        if self.server is not None:
            self.server.should_exit = True
        if self._server_thread is not None:
            self._server_thread.join(35)
        if self.console is not None:
            self.console.stop()
        self._stop_mail()
        if self.consumer is not None:
            self.consumer.stop(graceful=True)
        if self._outbox_thread is not None:
            # Mail queued by the last tickets goes out before the store closes.
            self._outbox_thread.join(10)
            if self._outbox is not None:
                try:
                    self._outbox.run_once()
                except Exception as exc:
                    log.error("outbox pass failed", error=type(exc).__name__, reason=str(exc))
        if self.store is not None:
            state_dir = Path(self.config.settings.state.dir)
            (state_dir / RUNTIME_FILE).unlink(missing_ok=True)
            self.store.close()
        log.info("stopped")


def run(
    config_path: Path | None,
    *,
    watch: bool = False,
    processor_factory: ProcessorFactory | None = None,
    settings: Settings | None = None,
) -> int:
    """Start the daemon in this process and serve until SIGTERM/SIGINT; returns the exit code."""
    daemon = Daemon(
        config_path, watch=watch, processor_factory=processor_factory, settings=settings
    )
    daemon.install_signal_handlers()
    try:
        daemon.start()
    except Exception:
        log.exception("daemon failed to start")
        daemon.shutdown()
        return 1
    return daemon.serve()
