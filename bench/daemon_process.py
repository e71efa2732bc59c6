"""The daemon as the benchmarks run it: webhook server, SQLite store and queue, worker threads.

Wired as `escalation-sync run` wires it (settings from ESCALATION_SYNC_CONFIG and the
environment, `sync.intake.webhooks.create_app` on the daemon's `webhook_server` in a thread
of its own,
`SyncQueue` with an in-process consumer, `build_engine`), with two differences a benchmark
needs: `--workers 0` runs no consumer so the queue can be counted after an ingest run, and
periodic polls are off so only webhooks drive work.

    python -m bench.daemon_process --port-file PATH [--workers N] [--profile OUT.prof]

Writes the bound port to PATH once it accepts requests; stops cleanly on SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def serialize_sessions(store: Any) -> None:
    """Make every store transaction of this process wait on one lock before BEGIN IMMEDIATE."""
    lock = threading.Lock()
    opened = store.session

    @contextlib.contextmanager
    def session() -> Iterator[Any]:
        with lock, opened() as tx:
            yield tx

    store.session = session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=0, help="queue worker threads (0: none)")
    parser.add_argument(
        "--profile", type=Path, help="cProfile the event loop thread into this file"
    )
    parser.add_argument(
        "--serialize-writes",
        action="store_true",
        help="experiment: queue store transactions on a process lock, not SQLite's busy wait",
    )
    parser.add_argument("--no-escalation", action="store_true", help="sync only, no policy")
    args = parser.parse_args()

    from bench.common import quiet_logs
    from sync.config.settings import load_settings
    from sync.intake import webhooks
    from sync.queue.tasks import SyncQueue, make_huey
    from sync.runtime.daemon import freeze_startup_heap, webhook_server
    from sync.runtime.wiring import build_engine
    from sync.store.database import Store

    quiet_logs()
    settings = load_settings(None)
    store = Store.for_state(settings.state.dir, settings.state.database_url)
    if args.serialize_writes:
        serialize_sessions(store)
    queue = SyncQueue(make_huey(settings.state.queue_url, settings.state.dir), store)
    engine = build_engine(settings, store, enqueue=queue.enqueuer("poll"))
    if args.no_escalation:
        engine.escalation = None
    queue.set_processor(engine)
    app = webhooks.create_app(
        store=store,
        enqueue=queue.enqueue_events,
        config=lambda: webhooks.WebhookConfig.from_settings(settings),
        queue_depth=queue.depth,
    )
    freeze_startup_heap()
    server = webhook_server(app, "127.0.0.1", int(settings.webhooks.port))
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    consumer = None
    if args.workers > 0:
        consumer = queue.consumer(workers=args.workers, periodic=False)
        consumer.start()

    profiler = cProfile.Profile() if args.profile else None

    def serve() -> None:
        if profiler is None:
            server.run()
            return
        profiler.enable()
        try:
            server.run()
        finally:
            profiler.disable()

    thread = threading.Thread(target=serve, name="webhook-server", daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise SystemExit("webhook server did not start")
            stop.wait(0.01)
        args.port_file.write_text(str(server.servers[0].sockets[0].getsockname()[1]))
        while not stop.wait(0.2) and thread.is_alive():
            pass
    finally:
        # The daemon's shutdown order: the server drains its requests, then the workers stop.
        server.should_exit = True
        thread.join(35)
        if profiler is not None:
            profiler.dump_stats(str(args.profile))
        if consumer is not None:
            consumer.stop(graceful=True)
        store.close()


if __name__ == "__main__":
    main()
