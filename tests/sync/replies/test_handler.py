"""How the reply handler reads its configuration: the policy's confirmation phrases, the
watchers' addresses in a field, and the product's own addresses (mail from them is a loop)."""

from __future__ import annotations

from connectors.mailbox.settings import InboundSettings
from escalation.policy import load_policy
from inbound_mail import Verdict, read_confirmation
from mapping.model import Person
from sync.replies.handler import addresses_in, reply_options

INBOUND = InboundSettings.model_validate(
    {
        "kind": "imap",
        "imap": {"host": "localhost", "security": "none", "username": "r@x", "password": "p"},
        "loop_max_per_hour": 4,
        "max_attachment_bytes": 1024,
    }
)
POLICY = {"approval": {"via": ["field"], "field": "custom_fields.approval"}}


def test_the_policy_replaces_the_confirmation_phrases() -> None:
    """customer_replies patterns replace the built-in ones; without them the defaults read."""
    policy = load_policy(
        {
            **POLICY,
            "customer_replies": {
                "read_lines": 1,
                "confirmed": {"patterns": ["(?i)^passt$"]},
                "not_fixed": {"patterns": ["(?i)kaputt"]},
            },
        },
        source="p.toml",
    )
    options = reply_options(INBOUND, policy, ["Support@Example.com"])
    assert read_confirmation("passt", options.patterns).verdict is Verdict.CONFIRMED
    assert read_confirmation("Yes, fixed", options.patterns).verdict is Verdict.NONE
    assert read_confirmation("immer noch kaputt", options.patterns).verdict is Verdict.NOT_FIXED
    assert read_confirmation("ok\nkaputt", options.patterns).verdict is Verdict.NONE
    defaults = reply_options(INBOUND, load_policy(POLICY, source="p.toml"), [])
    assert read_confirmation("Yes, fixed", defaults.patterns).verdict is Verdict.CONFIRMED
    assert options.own_addresses == ("support@example.com",)
    assert options.loop.max_per_window == 4
    assert options.limits.max_attachment_bytes == 1024


def test_watchers_are_read_from_people_lists_and_text() -> None:
    """A person's e-mail, a comma- or semicolon-separated list, a JSON-ish list: all read."""
    assert addresses_in(Person(name="Bo", email="Bo@X.example")) == {"bo@x.example"}
    assert addresses_in("a@x.example, b@y.example;c@z.example 1234abcd") == {
        "a@x.example",
        "b@y.example",
        "c@z.example",
    }
    assert addresses_in(["d@x.example", {"email": "e@x.example"}]) == {
        "d@x.example",
        "e@x.example",
    }
    assert addresses_in(None) == set() and addresses_in("6816f79cc0a8016401c5a33be04be441") == set()
