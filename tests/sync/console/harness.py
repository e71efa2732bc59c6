"""The console app over a store, driven over HTTP as a browser drives it."""

from __future__ import annotations

import re
from typing import Any

from starlette.testclient import TestClient

from sync.config.settings import Settings
from sync.console.actions import Actions
from sync.console.app import Console, create_console_app
from sync.console.auth import Sessions, Throttle
from sync.console.readmodel import Loaded, ReadModel
from sync.console.settings import ConsoleSettings
from sync.store.database import Store
from tests.sync.console.seed import NOW


class Harness:
    """The console app over a store, with the queue replaced by a list and a clock for the
    sessions that the test moves (`harness.seconds`)."""

    def __init__(self, settings: Settings, store: Store, console: ConsoleSettings) -> None:
        self.settings = settings
        self.store = store
        self.console_settings = console
        self.queued: list[tuple[str, str, Any]] = []
        self.seconds = 1000.0
        readmodel = ReadModel(store, lambda: Loaded(settings, "abc123", NOW))
        self.console = Console(
            readmodel=readmodel,
            actions=Actions(store, lambda s, t, e: self.queued.append((s, t, e))),
            settings=lambda: self.console_settings,
            sessions=Sessions(idle=1800, lifetime=3600, clock=lambda: self.seconds),
            throttle=Throttle(limit=console.max_sign_in_failures),
        )
        self.app = create_console_app(self.console)

    def client(self, **kwargs: Any) -> TestClient:
        """A client that does not follow redirects (the tests look at them)."""
        return TestClient(self.app, follow_redirects=False, **kwargs)


def token(html: str) -> str:
    """The CSRF token of the first form on a page."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def sign_in(client: TestClient, name: str, password: str) -> Any:
    """Sign in through the form, as a browser does."""
    form = client.get("/sign-in")
    return client.post(
        "/sign-in",
        data={"username": name, "password": password, "csrf_token": token(form.text)},
    )
