"""Named transforms between a vendor's wire value (as read) and a canonical value.

Each transform has two pure directions: `read` (vendor -> canonical) and `write` (canonical ->
vendor, in the same shape the read path sees). How a written value is wrapped for the vendor's
write payload (`{"name": ...}` and so on) is the field's `write_as`, not the transform's concern.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mapping.model import Person

SN_DATETIME = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True, slots=True)
class Transform:
    """A named pair of pure functions; `verbatim` when vendors store the written value as sent
    (not so for rich text, datetimes and user or record references, which they re-encode)."""

    name: str
    read: Callable[[Any], Any]
    write: Callable[[Any], Any]
    verbatim: bool = True


def _blank(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def adf_to_text(node: Any) -> str:
    """Flatten an Atlassian Document Format tree to plain text, one line per block."""
    if isinstance(node, str):
        return node
    if isinstance(node, list):
        return "".join(adf_to_text(n) for n in node)
    if not isinstance(node, dict):
        return ""
    kind = node.get("type")
    if kind == "text":
        return str(node.get("text", ""))
    if kind == "hardBreak":
        return "\n"
    inner = adf_to_text(node.get("content", []))
    if kind == "doc":
        return inner.rstrip("\n")
    if kind in {"paragraph", "heading", "codeBlock", "blockquote", "rule"}:
        return inner + "\n"
    if kind == "listItem":
        return "- " + inner
    return inner


def text_to_adf(text: str) -> dict[str, Any]:
    """Wrap plain text in a minimal ADF document, one paragraph per line."""
    paragraphs: list[dict[str, Any]] = []
    for line in text.split("\n"):
        content = [{"type": "text", "text": line}] if line else []
        paragraphs.append({"type": "paragraph", "content": content})
    return {"type": "doc", "version": 1, "content": paragraphs}


def _text_read(value: Any) -> str | None:
    if _blank(value):
        return None
    text = adf_to_text(value) if isinstance(value, dict | list) else str(value)
    return text or None


def _adf_write(value: Any) -> Any:
    return None if value is None else text_to_adf(str(value))


def _ymd_hms(m: datetime, sep: str) -> str:
    # strftime("%Y") does not zero-pad years before 1000 on every platform.
    return f"{m.year:04d}-{m.month:02d}-{m.day:02d}{sep}{m.hour:02d}:{m.minute:02d}:{m.second:02d}"


def _jira_datetime_read(value: Any) -> datetime | None:
    if _blank(value):
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    text = str(value)
    # Jira writes offsets without a colon (+0000), which fromisoformat accepts on 3.11.
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _jira_datetime_write(value: Any) -> str | None:
    if value is None:
        return None
    m = value.astimezone(UTC)
    return f"{_ymd_hms(m, 'T')}.{m.microsecond // 1000:03d}+0000"


def _sn_datetime_read(value: Any) -> datetime | None:
    if _blank(value):
        return None
    if isinstance(value, dict):
        value = value.get("value")
    return datetime.strptime(str(value), SN_DATETIME).replace(tzinfo=UTC)


def _sn_datetime_write(value: Any) -> str:
    return "" if value is None else _ymd_hms(value.astimezone(UTC), " ")


def _sn_reference_read(value: Any) -> str | None:
    if _blank(value):
        return None
    if isinstance(value, dict):
        inner = value.get("value")
        return str(inner) if inner else None
    return str(value)


def _sn_reference_write(value: Any) -> str:
    return "" if value is None else str(value)


def _jira_user_read(value: Any) -> Person | None:
    if not isinstance(value, dict) or not value:
        return None
    ident = value.get("accountId") or value.get("name") or value.get("key")
    return Person(
        id=str(ident) if ident else None,
        name=value.get("displayName") or None,
        email=value.get("emailAddress") or None,
    )


def _jira_cloud_user_write(value: Any) -> dict[str, Any] | None:
    if value is None or value.id is None:
        return None
    return {"accountId": value.id}


def _jira_server_user_write(value: Any) -> dict[str, Any] | None:
    if value is None or value.id is None:
        return None
    return {"name": value.id}


def _sn_user_read(value: Any) -> Person | None:
    if _blank(value):
        return None
    if isinstance(value, dict):
        ident = value.get("value")
        if not ident:
            return None
        return Person(id=str(ident), name=value.get("display_value") or None)
    return Person(id=str(value))


def _sn_user_write(value: Any) -> str:
    return "" if value is None or value.id is None else str(value.id)


def _person_read(value: Any) -> Person | None:
    """A person assembled by a JMESPath multiselect hash `{id: ..., name: ..., email: ...}`."""
    if not isinstance(value, dict):
        return None
    fields = {k: (str(value[k]) if value.get(k) else None) for k in ("id", "name", "email")}
    if not any(fields.values()):
        return None
    return Person(**fields)


def _person_write(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    return {k: v for k, v in value.model_dump().items() if v is not None}


def _csv_read(value: Any) -> tuple[str, ...]:
    if _blank(value):
        return ()
    return tuple(part.strip() for part in str(value).split(",") if part.strip())


def _csv_write(value: Any) -> str:
    return ",".join(value or ())


def _list_read(value: Any) -> tuple[str, ...]:
    if _blank(value):
        return ()
    items: Iterable[Any] = value if isinstance(value, list | tuple) else [value]
    return tuple(str(v) for v in items)


def _list_write(value: Any) -> list[str]:
    return list(value or ())


def _string_read(value: Any) -> str | None:
    return None if _blank(value) else str(value)


def _identity(value: Any) -> Any:
    return value


TRANSFORMS: dict[str, Transform] = {
    t.name: t
    for t in (
        Transform("text", _text_read, _identity),
        Transform("adf", _text_read, _adf_write, verbatim=False),
        Transform("jira_datetime", _jira_datetime_read, _jira_datetime_write, verbatim=False),
        Transform("servicenow_datetime", _sn_datetime_read, _sn_datetime_write, verbatim=False),
        Transform("servicenow_reference", _sn_reference_read, _sn_reference_write, verbatim=False),
        Transform("jira_user", _jira_user_read, _jira_cloud_user_write, verbatim=False),
        Transform("jira_server_user", _jira_user_read, _jira_server_user_write, verbatim=False),
        Transform("servicenow_user", _sn_user_read, _sn_user_write, verbatim=False),
        Transform("person", _person_read, _person_write, verbatim=False),
        Transform("csv", _csv_read, _csv_write),
        Transform("list", _list_read, _list_write),
        Transform("string", _string_read, _identity),
    )
}
