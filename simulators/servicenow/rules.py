"""What a stock instance refuses: incident data policies, access controls and rate limits.

Each rule names the ServiceNow document it follows (ServiceNow/ServiceNowDocs, Apache-2.0):

- Data policies (`c_IncidentManagementStateModel.md`, `resolve-and-close-an-incident.md`):
  Resolved and Closed need the Resolution Information fields, "Resolution code" (`close_code`)
  and "Resolution notes" (`close_notes`); On Hold needs an "On hold reason" (`hold_reason`); "If
  the On hold reason is Awaiting Caller, the Additional comments becomes mandatory": the save
  that puts the incident on hold awaiting the caller carries a `comments` entry. A violation is
  answered 403 ("This error can also be caused by ACL failures, or business rule or data policy
  constraints", `r_RESTAPIHTTPResponseCodes.md`) with the platform's "Data Policy Exception".
- Access controls (`resolve-and-close-an-incident.md`, `c_RESTAPI.md`): resolving takes one of
  itil, list_updater, sn_incident_write or admin; closing takes itil_admin or admin; a closed or
  canceled incident's fields are edited by admins only; "Fields for which the calling entity does
  not have rights to because of ACLs are not returned in a REST query response"; a write the
  ACLs deny is answered 403 with an "ACL Exception".
- Rate limits (`inbound-REST-API-rate-limiting.md`): a request matching a rule carries
  `X-RateLimit-Limit`, `X-RateLimit-Reset` (a UNIX timestamp for the next reset of the hourly
  window) and `X-RateLimit-Rule` (the rule's sys_id); one over the limit is answered 429 with
  `Retry-After` and the documented body.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from simulators.servicenow.schema import STATE_CANCELED, STATE_CLOSED, STATE_ON_HOLD, STATE_RESOLVED

ADMIN = "admin"
# Roles that may update incidents (resolve-and-close-an-incident.md, "For resolution").
INCIDENT_WRITERS = frozenset({"itil", "list_updater", "sn_incident_write", ADMIN})
# Roles that may close an incident ("For closure: itil_admin or admin").
INCIDENT_CLOSERS = frozenset({"itil_admin", ADMIN})
AWAITING_CALLER = "1"
# Labels the data policy message names fields by (the incident form's labels).
LABELS: Mapping[str, str] = {
    "close_code": "Resolution code",
    "close_notes": "Resolution notes",
    "hold_reason": "On hold reason",
    "comments": "Additional comments",
}


class PolicyRefusal(Exception):
    """A save the platform refuses; `status`, `message` and `detail` are its error answer."""

    def __init__(self, status: int, message: str, detail: str) -> None:
        super().__init__(f"{message}: {detail}")
        self.status = status
        self.message = message
        self.detail = detail


def data_policy_refusal(missing: Iterable[str]) -> PolicyRefusal:
    """The platform's answer to a save that leaves mandatory fields empty."""
    names = ", ".join(LABELS.get(f, f) for f in missing)
    return PolicyRefusal(
        403,
        "Operation Failed",
        f"Data Policy Exception: \n\tThe following fields are mandatory: {names}\n",
    )


def acl_refusal(operation: str) -> PolicyRefusal:
    """The platform's answer to a write the access controls deny (`Update`, `Insert`...)."""
    return PolicyRefusal(
        403, "Operation Failed", f"ACL Exception {operation} Failed due to security constraints"
    )


def check_incident_policies(
    before: Mapping[str, str] | None, after: Mapping[str, str], journal: Iterable[str]
) -> None:
    """Raise PolicyRefusal when a save of an incident breaks a base-system data policy.

    `journal` names the journal fields the save writes (`comments`, `work_notes`).
    """
    state = after.get("state", "")
    missing: list[str] = []
    if state in (STATE_RESOLVED, STATE_CLOSED):
        missing += [f for f in ("close_code", "close_notes") if not after.get(f, "").strip()]
    if state == STATE_ON_HOLD:
        if not after.get("hold_reason", "").strip():
            missing.append("hold_reason")
        elif after.get("hold_reason") == AWAITING_CALLER:
            entered = before is None or (
                before.get("state") != STATE_ON_HOLD or before.get("hold_reason") != AWAITING_CALLER
            )
            if entered and "comments" not in set(journal):
                missing.append("comments")
    if missing:
        raise data_policy_refusal(missing)


@dataclass
class AccessControl:
    """Users' roles and the field ACLs an admin added; admin passes every check."""

    roles: dict[str, set[str]] = field(default_factory=dict)
    # (table, field) -> roles allowed to read / write it (an admin-made field ACL).
    read_roles: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)
    write_roles: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)

    def roles_of(self, user: str) -> set[str]:
        """The user's roles (none for an unknown user)."""
        return self.roles.get(user, set())

    def is_admin(self, user: str) -> bool:
        """Whether the user holds admin."""
        return ADMIN in self.roles_of(user)

    def readable(self, user: str, table: str, names: Iterable[str]) -> list[str]:
        """The fields among `names` the user may read."""
        if self.is_admin(user):
            return list(names)
        held = self.roles_of(user)
        out = []
        for name in names:
            allowed = self.read_roles.get((table, name.split(".", 1)[0]))
            if allowed is None or held & allowed:
                out.append(name)
        return out

    def check_write(
        self,
        user: str,
        table: str,
        before: Mapping[str, str] | None,
        fields: Mapping[str, object],
    ) -> None:
        """Raise PolicyRefusal when the ACLs deny this insert (`before` None) or update."""
        if self.is_admin(user):
            return
        held = self.roles_of(user)
        operation = "Insert" if before is None else "Update"
        if table == "incident":
            if not held & INCIDENT_WRITERS:
                raise acl_refusal(operation)
            plain = {k for k in fields if k not in ("comments", "work_notes")}
            closed = before is not None and before.get("state") in (STATE_CLOSED, STATE_CANCELED)
            if closed and plain:
                raise acl_refusal(operation)
            closing = str(_wire(fields.get("state", ""))) == STATE_CLOSED and (
                before is None or before.get("state") != STATE_CLOSED
            )
            if closing and not held & INCIDENT_CLOSERS:
                raise acl_refusal(operation)
        for name in fields:
            allowed = self.write_roles.get((table, name))
            if allowed is not None and not held & allowed:
                raise acl_refusal(operation)


def _wire(value: object) -> object:
    if isinstance(value, Mapping):
        return value.get("value", "")
    return value


@dataclass(frozen=True, slots=True)
class RateLimitRule:
    """A sys_rate_limit_rules record: so many requests per hour, for one user or everyone."""

    limit: int
    user: str | None = None
    sys_id: str = field(default_factory=lambda: uuid.uuid4().hex)


class RateLimiter:
    """Counts requests per user in the current hour window against the matching rule."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._rules: list[RateLimitRule] = []
        self._counts: dict[tuple[str, int], int] = {}

    def set_rules(self, rules: Iterable[RateLimitRule]) -> None:
        """Replace the rules (no rule: requests carry no rate-limit headers)."""
        with self._lock:
            self._rules = list(rules)
            self._counts.clear()

    def rule_for(self, user: str) -> RateLimitRule | None:
        """A single-user rule overrides one for all users."""
        mine = [r for r in self._rules if r.user == user]
        if mine:
            return min(mine, key=lambda r: r.limit)
        everyone = [r for r in self._rules if r.user is None]
        return min(everyone, key=lambda r: r.limit) if everyone else None

    def count(self, user: str) -> tuple[dict[str, str], bool]:
        """Count one request of `user`: the headers to send and whether it is over the limit."""
        with self._lock:
            rule = self.rule_for(user)
            if rule is None:
                return {}, False
            now = self._clock()
            window = int(now // 3600)
            key = (user, window)
            self._counts[key] = self._counts.get(key, 0) + 1
            reset = (window + 1) * 3600
            headers = {
                "X-RateLimit-Limit": str(rule.limit),
                "X-RateLimit-Reset": str(reset),
                "X-RateLimit-Rule": rule.sys_id,
            }
            over = self._counts[key] > rule.limit
            if over:
                headers["Retry-After"] = str(max(1, int(reset - now)))
            return headers, over
