"""The shared simulator plumbing: background server, fault injection, request counters."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from fastapi import FastAPI

from simulators.common import FaultConfig, FaultInjector, ServerThread


@pytest.fixture()
def served() -> Iterator[tuple[ServerThread, FaultInjector]]:
    api = FastAPI()

    @api.get("/items/{item_id}")
    def item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    injector = FaultInjector(api)
    server = ServerThread(injector).start()
    try:
        yield server, injector
    finally:
        server.stop()


def test_port_zero_is_read_back(served: tuple[ServerThread, FaultInjector]) -> None:
    """A server started on port 0 reports the free port it bound and answers there."""
    server, _ = served
    assert server.port > 0
    assert requests.get(f"{server.url}/items/7", timeout=5).json() == {"id": "7"}


def test_stats_count_by_route_template(served: tuple[ServerThread, FaultInjector]) -> None:
    """Requests are counted per method and route template, and reset clears them."""
    server, _ = served
    for i in range(3):
        requests.get(f"{server.url}/items/{i}", timeout=5)
    stats = requests.get(f"{server.url}/_sim/stats", timeout=5).json()
    assert stats["requests"] == {"GET /items/{item_id}": 3}
    requests.post(f"{server.url}/_sim/reset", timeout=5)
    assert requests.get(f"{server.url}/_sim/stats", timeout=5).json()["total"] == 0


def test_faults_configured_at_runtime(served: tuple[ServerThread, FaultInjector]) -> None:
    """POST /_sim/faults switches on 429s with Retry-After, 429s without, and 5xx pages."""
    server, _ = served
    cases = [
        ({"rate_429": 1.0, "retry_after_seconds": 3}, 429, "3"),
        ({"rate_429_no_retry_after": 1.0}, 429, None),
        ({"rate_5xx": 1.0}, 503, None),
    ]
    for body, status, retry_after in cases:
        assert requests.post(f"{server.url}/_sim/faults", json=body, timeout=5).ok
        resp = requests.get(f"{server.url}/items/1", timeout=5)
        assert resp.status_code == status
        assert resp.headers.get("Retry-After") == retry_after
    requests.post(f"{server.url}/_sim/faults", json={}, timeout=5)
    assert requests.get(f"{server.url}/items/1", timeout=5).status_code == 200
    stats = requests.get(f"{server.url}/_sim/stats", timeout=5).json()
    assert stats["faults"] == {"429": 1, "429-no-retry-after": 1, "5xx": 1}
    assert stats["requests"] == {"GET /items/{item_id}": 4}


def test_seeded_rates_are_reproducible() -> None:
    """The same seed yields the same sequence of injected faults."""

    def draws() -> list[str | None]:
        inj = FaultInjector(FastAPI(), FaultConfig(rate_429=0.3, rate_5xx=0.2, seed=42))
        return [inj._draw("/x")[0] for _ in range(50)]

    assert draws() == draws()


def test_invalid_fault_config_is_refused(served: tuple[ServerThread, FaultInjector]) -> None:
    """An out-of-range rate is answered 400 and leaves the configuration unchanged."""
    server, injector = served
    resp = requests.post(f"{server.url}/_sim/faults", json={"rate_5xx": 2}, timeout=5)
    assert resp.status_code == 400
    assert injector.config == FaultConfig()
