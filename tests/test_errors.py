"""The error spine: every error the product raises on purpose says what the caller does."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import errors
from errors import Action, action_of

ROOT = Path(__file__).resolve().parents[1]
OUR_PACKAGES = {
    "connectors",
    "mapping",
    "escalation",
    "inbound_mail",
    "sync",
    "simulators",
    "cli",
    "errors",
}

CLASSIFIED = [
    ("connectors.errors.RetryableError", Action.RETRY),
    ("connectors.errors.PermanentError", Action.DEAD_LETTER),
    ("connectors.errors.WebhookRejected", Action.REJECT),
    ("connectors.errors.RateLimited", Action.RETRY),
    ("connectors.errors.ServerUnavailable", Action.RETRY),
    ("connectors.errors.TransportFailed", Action.RETRY),
    ("connectors.email.DeliveryUncertain", Action.RETRY),
    ("sync.store.database.LeaseBusy", Action.RETRY),
    ("sync.pipeline.pairs.PairBusy", Action.RETRY),
    ("connectors.errors.NotFound", Action.DEAD_LETTER),
    ("connectors.errors.Forbidden", Action.DEAD_LETTER),
    ("connectors.errors.InvalidRequest", Action.DEAD_LETTER),
    ("connectors.email.InvalidAddress", Action.DEAD_LETTER),
    ("sync.pipeline.records.MappingFailed", Action.DEAD_LETTER),
    ("sync.store.links.LinkConflict", Action.DEAD_LETTER),
    ("connectors.email_render.TemplateMissing", Action.DEAD_LETTER),
    ("sync.procedure.email_context.InternalContentRefused", Action.DEAD_LETTER),
    ("mapping.convert.UnmappedValue", Action.DEAD_LETTER),
    ("connectors.errors.AuthFailed", Action.PAUSE_SYSTEM),
    ("mapping.errors.ConfigInvalid", Action.REFUSE),
    ("connectors.errors.BadSignature", Action.REJECT),
    ("connectors.errors.StaleWebhook", Action.REJECT),
    ("connectors.errors.MalformedWebhook", Action.REJECT),
    ("sync.intake.webhooks.BodyTooLarge", Action.REJECT),
    ("escalation.simulate.SnapshotInvalid", Action.REJECT),
]


def _class(dotted: str) -> type[BaseException]:
    module, _, name = dotted.rpartition(".")
    found = getattr(importlib.import_module(module), name)
    assert isinstance(found, type) and issubclass(found, BaseException)
    return found


@pytest.mark.parametrize(("dotted", "action"), CLASSIFIED)
def test_every_named_error_has_its_action(dotted: str, action: Action) -> None:
    """Each error class the product raises on purpose carries the action its callers take."""
    cls = _class(dotted)
    assert issubclass(cls, errors.EscalationSyncError)
    assert cls.action is action


def test_the_drawn_tree_names_only_classes_that_exist() -> None:
    """Every dotted class name in the module's drawing imports, and is classified above."""
    doc = errors.__doc__ or ""
    words = (word.strip("`.,()") for word in doc.split())
    drawn = {w for w in words if w.count(".") >= 2 and w.split(".")[0] in OUR_PACKAGES}
    assert drawn, "the docstring draws no tree"
    listed = {dotted for dotted, _ in CLASSIFIED}
    for dotted in drawn:
        _class(dotted)
        assert dotted in listed, f"{dotted} is drawn but not checked"


def test_an_exception_not_raised_on_purpose_is_unknown() -> None:
    """A bug of ours (a plain ValueError, KeyError...) has no action: the queue bounds it."""
    assert action_of(KeyError("x")) is Action.UNKNOWN
    assert action_of(errors.Retry("x")) is Action.RETRY
    assert errors.system_of(ValueError("x")) == ""


def test_retry_carries_retry_after_and_connector_details() -> None:
    """A connector's transient error is a Retry with the vendor's wait, status and system."""
    from connectors.errors import RateLimited

    exc = RateLimited("429", system="jira", status=429, retry_after=7.0, messages=["slow down"])
    assert isinstance(exc, errors.Retry)
    assert (exc.retry_after, exc.system, exc.status, exc.messages) == (
        7.0,
        "jira",
        429,
        ("slow down",),
    )
    assert exc.counts_as_attempt


def test_lease_contention_spends_no_attempt() -> None:
    """Another worker's lease is a retry that does not count against the event's attempts."""
    from sync.store.database import LeaseBusy

    assert not LeaseBusy("busy").counts_as_attempt


def test_reject_says_what_to_answer() -> None:
    """A rejected input carries the HTTP status its sender must be told."""
    from connectors.errors import BadSignature, MalformedWebhook
    from sync.intake.webhooks import BodyTooLarge

    assert (BadSignature().http_status, MalformedWebhook().http_status) == (401, 400)
    assert BodyTooLarge().http_status == 413


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_connectors_import_only_the_error_spine_of_ours() -> None:
    """A connector imports other connector modules and the root `errors`, nothing else of ours."""
    offenders = {}
    for path in sorted((ROOT / "connectors").rglob("*.py")):
        ours = _imports(path) & OUR_PACKAGES
        extra = ours - {"connectors", "errors"}
        if extra:
            offenders[str(path.relative_to(ROOT))] = sorted(extra)
    assert offenders == {}


def test_the_spine_imports_nothing_of_ours() -> None:
    """The root `errors` module stands alone, so every package may import it."""
    assert _imports(ROOT / "errors.py") & OUR_PACKAGES == set()
