"""Webhook ingest: signed deliveries from a concurrent client into the daemon's webhook server.

Half the deliveries are Jira webhooks (bodies produced by the Jira simulator for real edits,
`X-Hub-Signature: sha256=...`, a fresh `X-Atlassian-Webhook-Identifier` each), half are posts
of the shipped ServiceNow Business Rule (timestamped HMAC, a distinct sys_id:sys_mod_count each).
The daemon runs in its own process with no queue workers, so that afterwards the store's
`deliveries` table and the queue can be counted: every 202 must be one row and one queued task.

    python -m bench.ingest [--count 20000] [--concurrency 64] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.common import DaemonProcess, header, percentile, static_environment


@dataclass(frozen=True, slots=True)
class Delivery:
    path: str
    body: bytes
    headers: dict[str, str]
    key: str


def jira_bodies(n: int) -> list[bytes]:
    """`n` Jira webhook bodies, as the Jira simulator sends them for edits in project DS."""
    from simulators.estate import SUPPORT_WORKFLOW
    from simulators.jira import JiraSimulator

    captured: list[bytes] = []
    sim = JiraSimulator(seed=False)  # never started: only its state produces payloads
    sim.state.on_event = lambda _name, payload: captured.append(
        json.dumps(payload, separators=(",", ":")).encode()
    )
    sim.add_project("DS", "Dev Support", workflow=SUPPORT_WORKFLOW)
    keys = [sim.create_issue("DS", f"Checkout fails for tenant {i}") for i in range(max(1, n // 4))]
    priorities = ["Highest", "High", "Medium", "Low"]
    i = 0
    while len(captured) < n:
        key = keys[i % len(keys)]
        sim.edit(key, {"priority": {"name": priorities[i % 4]}, "summary": f"Checkout fails {i}"})
        i += 1
    return captured[:n]


def build(count: int, now: float) -> list[Delivery]:
    """`count` signed deliveries with distinct delivery ids, Jira and ServiceNow alternating."""
    from simulators.estate import JIRA_WEBHOOK_SECRET, SN_WEBHOOK_SECRET

    bodies = jira_bodies(min(count // 2 + 1, 500))
    out: list[Delivery] = []
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now))
    timestamp = str(int(now))
    for i in range(count):
        if i % 2 == 0:
            body = bodies[(i // 2) % len(bodies)]
            ident = str(uuid.uuid4())
            digest = hmac.new(JIRA_WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
            headers = {
                "Content-Type": "application/json; charset=utf-8",
                "X-Atlassian-Webhook-Identifier": ident,
                "X-Hub-Signature": f"sha256={digest}",
            }
            out.append(Delivery("/webhooks/jira", body, headers, f"jira:{ident}"))
        else:
            sys_id = uuid.uuid4().hex
            body = json.dumps(
                {
                    "table": "incident",
                    "sys_id": sys_id,
                    "number": f"INC{i:07d}",
                    "sys_mod_count": "1",
                    "sys_updated_on": stamp,
                    "sys_updated_by": "lee.l1",
                    "operation": "update",
                },
                separators=(",", ":"),
            ).encode()
            mac = hmac.new(
                SN_WEBHOOK_SECRET.encode(), timestamp.encode() + b"." + body, hashlib.sha256
            )
            import base64

            headers = {
                "Content-Type": "application/json",
                "X-Escalation-Sync-Timestamp": timestamp,
                "X-Escalation-Sync-Signature": base64.b64encode(mac.digest()).decode(),
            }
            out.append(Delivery("/webhooks/servicenow", body, headers, f"servicenow:{sys_id}:1"))
    return out


def encode(d: Delivery) -> bytes:
    """The whole HTTP/1.1 request, ready to write to a keep-alive connection."""
    lines = [f"POST {d.path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(d.body)}"]
    lines += [f"{k}: {v}" for k, v in d.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + d.body


async def fire_raw(
    port: int, deliveries: list[Delivery], concurrency: int
) -> tuple[list[float], Counter[int], float]:
    """Post every delivery over `concurrency` keep-alive connections with a minimal HTTP/1.1
    client (pre-encoded requests), so the load generator costs little next to the server."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    it = iter([(encode(d), d) for d in deliveries])

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for raw, _d in it:
                t0 = time.perf_counter()
                writer.write(raw)
                status_line = await reader.readline()
                length = 0
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b""):
                        break
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - t0)
                parts = status_line.split()
                statuses[int(parts[1]) if len(parts) > 1 else 0] += 1
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, statuses, time.perf_counter() - start


async def fire_httpx(
    url: str, deliveries: list[Delivery], concurrency: int
) -> tuple[list[float], Counter[int], float]:
    """The same with httpx.AsyncClient (heavier per request: measures client and server)."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    it = iter(deliveries)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30.0) as client:

        async def worker() -> None:
            for d in it:
                t0 = time.perf_counter()
                try:
                    r = await client.post(d.path, content=d.body, headers=d.headers)
                    statuses[r.status_code] += 1
                except httpx.HTTPError:
                    statuses[0] += 1
                latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return latencies, statuses, elapsed


def count_state(state_dir: Path) -> tuple[int, int, int]:
    """(delivery rows, distinct delivery ids, queued tasks) in the daemon's state directory."""
    import sqlite3

    from sync.queue.tasks import make_huey
    from sync.store.database import DATABASE_FILE

    with sqlite3.connect(state_dir / DATABASE_FILE) as db:
        rows, distinct = db.execute(
            "SELECT count(*), count(DISTINCT delivery_id) FROM deliveries"
        ).fetchone()
    queued = int(make_huey(None, state_dir).pending_count())
    return int(rows), int(distinct), queued


def main() -> int:
    parser = argparse.ArgumentParser(description="Webhook ingest benchmark.")
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=500, help="deliveries before measuring")
    parser.add_argument("--quick", action="store_true", help="2,000 deliveries")
    parser.add_argument(
        "--serialize-writes", action="store_true", help="experiment, see bench.daemon_process"
    )
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw")
    parser.add_argument("--profile", type=Path, help="cProfile the server's event loop into FILE")
    args = parser.parse_args()
    if args.quick:
        args.count = 2_000
        args.warmup = 100

    header("webhook ingest")
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        state = Path(tmp) / "state"
        daemon = DaemonProcess(
            static_environment(state),
            state,
            workers=0,
            profile=args.profile,
            extra_args=["--serialize-writes"] if args.serialize_writes else [],
        )
        every = build(args.warmup + args.count, time.time())
        warm, measured = every[: args.warmup], every[args.warmup :]
        with daemon:

            def fire(batch: list[Delivery]) -> tuple[list[float], Counter[int], float]:
                if args.client == "httpx":
                    return asyncio.run(fire_httpx(daemon.url, batch, args.concurrency))
                return asyncio.run(fire_raw(daemon.port, batch, args.concurrency))

            fire(warm)
            latencies, statuses, elapsed = fire(measured)
        rows, distinct, queued = count_state(state)
    total = len(every)
    accepted = statuses.get(202, 0)
    rate = len(measured) / elapsed
    p50 = percentile(latencies, 50) * 1000
    p99 = percentile(latencies, 99) * 1000
    ids = {d.key for d in every}
    lost = total - min(rows, queued)
    print(
        f"deliveries:   {len(measured)} measured (+{len(warm)} warm-up), "
        f"{args.concurrency} concurrent ({args.client} client), {len(ids)} distinct delivery ids"
    )
    print(f"statuses:     {dict(sorted(statuses.items()))}")
    print(f"throughput:   {rate:,.0f} deliveries/s ({elapsed:.2f} s)")
    print(f"latency:      p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(latencies) * 1000:.1f} ms")
    print(
        f"enqueued:     {rows} delivery rows ({distinct} distinct), {queued} queued tasks, "
        f"{total} sent -> lost {lost}"
    )
    ok = rate >= 1000 and p99 < 100 and lost == 0 and accepted == len(measured)
    print(f"target:       >= 1,000/s, p99 < 100 ms, none lost -> {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
