"""Slack's Web API spec (OpenAPI 2.0) as validators for answers, read as the fixture README says."""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "vendor" / "slack"
# chat.postMessage's errors for bad metadata, from Slack's message metadata documentation.
METADATA_ERRORS = ["invalid_metadata_format", "invalid_metadata_schema", "metadata_too_large"]


@functools.cache
def spec() -> dict[str, Any]:
    """The spec subset, verbatim."""
    return json.loads((FIXTURES / "slack_web_openapi_v2.subset.json").read_text())


@functools.cache
def error_codes() -> tuple[str, ...]:
    """Every error code the full spec names for some method."""
    return tuple(json.loads((FIXTURES / "error_codes.json").read_text()))


@functools.cache
def metadata_schema() -> dict[str, Any]:
    """Slack's documented message metadata object."""
    schema = json.loads((FIXTURES / "message_metadata.schema.json").read_text())
    schema.pop("$comment", None)
    return dict(schema)


def _alternatives(node: Any) -> Any:
    """`"items": [A, B]` on a schema that is not an array means "A or B": make it `anyOf`."""
    if isinstance(node, list):
        return [_alternatives(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _alternatives(v) for k, v in node.items()}
    if isinstance(out.get("items"), list) and out.get("type") != "array":
        out["anyOf"] = out.pop("items")
    return out


@functools.cache
def _definitions() -> dict[str, Any]:
    definitions = _alternatives(copy.deepcopy(spec()["definitions"]))
    # Messages may carry metadata (Slack's message metadata, 2022, after the spec).
    definitions["objs_message"]["properties"]["metadata"] = metadata_schema()
    return dict(definitions)


def operation(method: str) -> dict[str, Any]:
    """The spec's operation object for a Web API method ("chat.postMessage")."""
    ops = spec()["paths"][f"/{method}"]
    return dict(next(iter(ops.values())))


def scopes(method: str) -> set[str]:
    """Scopes the spec names for a method: its `security` entry and its token's description."""
    op = operation(method)
    named = {s for entry in op.get("security", []) for s in entry.get("slackAuth", [])}
    for param in op["parameters"]:
        if param["name"] == "token":
            named |= set(re.findall(r"`([a-z.:_]+)`", param.get("description", "")))
    return named - {"none"}


def success_validator(method: str) -> Draft4Validator:
    """Validates an `ok: true` answer of `method`."""
    schema = _alternatives(copy.deepcopy(operation(method)["responses"]["200"]["schema"]))
    if method == "conversations.history":
        schema["properties"]["response_metadata"] = {
            "type": "object",
            "additionalProperties": False,
            "properties": {"next_cursor": {"type": "string"}},
            "required": ["next_cursor"],
        }
        schema["properties"]["messages"].pop("minItems", None)
    schema["definitions"] = _definitions()
    return Draft4Validator(schema)


def error_validator(method: str, code: str) -> Draft4Validator:
    """Validates an `ok: false` answer of `method` with error `code`.

    A code the method's enum lists is held to the method's schema as written; a code the spec
    names only for other methods (the errors every method returns) to the same schema with the
    enum widened to every code the spec names and `needed`/`provided` allowed.
    """
    schema = copy.deepcopy(operation(method)["responses"]["default"]["schema"])
    if code not in schema["properties"]["error"]["enum"]:
        widened = list(error_codes())
        if method == "chat.postMessage":
            widened += METADATA_ERRORS
        schema["properties"]["error"]["enum"] = widened
        schema["properties"].setdefault("needed", {"type": "string"})
        schema["properties"].setdefault("provided", {"type": "string"})
    schema = _alternatives(schema)
    schema["definitions"] = _definitions()
    return Draft4Validator(schema)


def problems(method: str, body: dict[str, Any]) -> list[str]:
    """Why `body` is not a valid answer of `method` per the spec (empty when it is)."""
    if body.get("ok") is True:
        validator = success_validator(method)
    else:
        validator = error_validator(method, str(body.get("error")))
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(body)
    ]


def example(method: str) -> dict[str, Any]:
    """The spec's example success answer for `method`."""
    return dict(operation(method)["responses"]["200"]["examples"]["application/json"])
