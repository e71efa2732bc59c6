"""Tables the simulator serves: columns, reference columns, choice labels, priority lookup.

The incident columns are those of the real Table API bodies in `vendor/servicenow/samples` (82
columns, every value a string, references as `{link, value}`), plus `hold_reason`, the "On hold
reason" the incident state model names (c_IncidentManagementStateModel: Awaiting Caller, Awaiting
Change, Awaiting Problem, Awaiting vendor), which the samples' older release predates.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

INCIDENT_FIELDS: Final = (
    "upon_approval", "location", "expected_start", "reopen_count", "close_notes",
    "additional_assignee_list", "impact", "urgency", "correlation_id", "sys_tags", "sys_domain",
    "description", "group_list", "priority", "delivery_plan", "sys_mod_count", "work_notes_list",
    "business_service", "follow_up", "closed_at", "sla_due", "delivery_task", "sys_updated_on",
    "parent", "work_end", "number", "closed_by", "work_start", "calendar_stc", "category",
    "business_duration", "incident_state", "activity_due", "correlation_display", "company",
    "active", "due_date", "assignment_group", "caller_id", "knowledge", "made_sla",
    "comments_and_work_notes", "parent_incident", "state", "user_input", "sys_created_on",
    "approval_set", "reassignment_count", "rfc", "child_incidents", "opened_at",
    "short_description", "order", "sys_updated_by", "resolved_by", "notify", "upon_reject",
    "approval_history", "problem_id", "work_notes", "calendar_duration", "close_code", "sys_id",
    "approval", "caused_by", "severity", "sys_created_by", "resolved_at", "assigned_to",
    "business_stc", "wf_activity", "sys_domain_path", "cmdb_ci", "opened_by", "subcategory",
    "rejection_goto", "sys_class_name", "watch_list", "time_worked", "contact_type", "escalation",
    "comments", "hold_reason",
)  # fmt: skip

# What a freshly inserted incident holds before the request's fields are applied (the base
# system's defaults, as in POST_incident.response.json).
INCIDENT_DEFAULTS: Final = MappingProxyType(
    {
        **dict.fromkeys(INCIDENT_FIELDS, ""),
        "upon_approval": "proceed",
        "upon_reject": "cancel",
        "reopen_count": "0",
        "impact": "3",
        "urgency": "3",
        "priority": "5",
        "sys_mod_count": "0",
        "category": "inquiry",
        "incident_state": "1",
        "state": "1",
        "active": "true",
        "knowledge": "false",
        "made_sla": "true",
        "reassignment_count": "0",
        "child_incidents": "0",
        "notify": "1",
        "approval": "not requested",
        "severity": "3",
        "sys_domain": "global",
        "sys_domain_path": "/",
        "sys_class_name": "incident",
        "contact_type": "phone",
        "escalation": "0",
    }
)

SYS_USER_FIELDS: Final = (
    "sys_id", "user_name", "name", "first_name", "last_name", "email", "title", "department",
    "company", "location", "phone", "mobile_phone", "active", "locked_out",
    "web_service_access_only", "time_zone", "sys_domain", "sys_domain_path", "sys_class_name",
    "sys_created_on", "sys_created_by", "sys_updated_on", "sys_updated_by", "sys_mod_count",
    "sys_tags",
)  # fmt: skip

SYS_USER_DEFAULTS: Final = MappingProxyType(
    {
        **dict.fromkeys(SYS_USER_FIELDS, ""),
        "active": "true",
        "locked_out": "false",
        "web_service_access_only": "false",
        "sys_domain": "global",
        "sys_domain_path": "/",
        "sys_class_name": "sys_user",
        "sys_mod_count": "0",
    }
)

# The base system's choice list of incident close codes, "Resolution code" (the values
# resolve-close-mim-sow lists).
CLOSE_CODES: Final = (
    "Duplicate",
    "Known error",
    "No resolution provided",
    "Resolved by caller",
    "Resolved by change",
    "Resolved by problem",
    "Resolved by request",
    "Solution provided",
    "Workaround provided",
)
# The base system's "On hold reason" choices (value -> label).
HOLD_REASONS: Final = MappingProxyType(
    {
        "1": "Awaiting Caller",
        "5": "Awaiting Change",
        "3": "Awaiting Problem",
        "4": "Awaiting Vendor",
    }
)

# Date-time columns: stored in UTC, shown in the reading user's time zone (c_TableAPI,
# sysparm_display_value: "Date fields: The database value is in UTC format, while the display
# value is based on the user's time zone").
DATETIME_FIELDS: Final = frozenset(
    {
        "opened_at", "closed_at", "resolved_at", "sys_created_on", "sys_updated_on", "sla_due",
        "due_date", "activity_due", "expected_start", "work_start", "work_end", "follow_up",
        "approval_set",
    }
)  # fmt: skip

JOURNAL_FIELDS: Final = (
    "sys_id", "sys_created_on", "name", "element_id", "sys_tags", "value", "sys_created_by",
    "element",
)  # fmt: skip

ATTACHMENT_FIELDS: Final = (
    "size_bytes", "file_name", "sys_mod_count", "average_image_color", "image_width",
    "sys_updated_on", "sys_tags", "table_name", "sys_id", "image_height", "sys_updated_by",
    "download_link", "content_type", "sys_created_on", "size_compressed", "compressed", "state",
    "table_sys_id", "chunk_size_bytes", "hash", "sys_created_by",
)  # fmt: skip

# The choice lists (sys_choice) and system properties (sys_properties) tables, which a client
# reads to learn the values a field takes and an admin's settings (the Business Rule's URL).
CHOICE_FIELDS: Final = (
    "sys_id", "name", "element", "value", "label", "language", "inactive", "sequence",
    "sys_created_on", "sys_created_by", "sys_updated_on", "sys_updated_by", "sys_mod_count",
)  # fmt: skip
PROPERTY_FIELDS: Final = (
    "sys_id", "name", "value", "type", "description", "read_roles", "write_roles",
    "sys_created_on", "sys_created_by", "sys_updated_on", "sys_updated_by", "sys_mod_count",
)  # fmt: skip

TABLE_FIELDS: Final = MappingProxyType(
    {
        "incident": INCIDENT_FIELDS,
        "sys_user": SYS_USER_FIELDS,
        "sys_journal_field": JOURNAL_FIELDS,
        "sys_choice": CHOICE_FIELDS,
        "sys_properties": PROPERTY_FIELDS,
    }
)

# Reference columns and the table they point at, per served table.
REFERENCES: Final[Mapping[str, Mapping[str, str]]] = MappingProxyType(
    {
        "incident": MappingProxyType(
            {
                "location": "cmn_location",
                "sys_domain": "sys_user_group",
                "business_service": "cmdb_ci_service",
                "parent": "task",
                "closed_by": "sys_user",
                "company": "core_company",
                "assignment_group": "sys_user_group",
                "caller_id": "sys_user",
                "parent_incident": "incident",
                "rfc": "change_request",
                "resolved_by": "sys_user",
                "problem_id": "problem",
                "caused_by": "change_request",
                "assigned_to": "sys_user",
                "cmdb_ci": "cmdb_ci",
                "opened_by": "sys_user",
            }
        ),
        "sys_user": MappingProxyType(
            {
                "department": "cmn_department",
                "company": "core_company",
                "location": "cmn_location",
                "sys_domain": "sys_user_group",
            }
        ),
        "sys_journal_field": MappingProxyType({}),
        "sys_choice": MappingProxyType({}),
        "sys_properties": MappingProxyType({}),
    }
)

JOURNAL_COLUMNS: Final = frozenset({"comments", "work_notes"})
JOURNAL_LABELS: Final = MappingProxyType(
    {"comments": "Additional comments", "work_notes": "Work notes"}
)

_IMPACT = {"1": "1 - High", "2": "2 - Medium", "3": "3 - Low"}
CHOICES: Final[Mapping[str, Mapping[str, str]]] = MappingProxyType(
    {
        "state": {
            "1": "New",
            "2": "In Progress",
            "3": "On Hold",
            "6": "Resolved",
            "7": "Closed",
            "8": "Canceled",
        },
        "incident_state": {
            "1": "New",
            "2": "In Progress",
            "3": "On Hold",
            "6": "Resolved",
            "7": "Closed",
            "8": "Canceled",
        },
        "impact": _IMPACT,
        "urgency": _IMPACT,
        "severity": _IMPACT,
        "priority": {
            "1": "1 - Critical",
            "2": "2 - High",
            "3": "3 - Moderate",
            "4": "4 - Low",
            "5": "5 - Planning",
        },
        "escalation": {"0": "Normal", "1": "Moderate", "2": "High", "3": "Overdue"},
        "notify": {"1": "Do Not Notify", "2": "Send Email", "3": "Send SMS"},
        "contact_type": {
            "email": "Email",
            "phone": "Phone",
            "self-service": "Self-service",
            "virtual_agent": "Virtual Agent",
            "walk-in": "Walk-in",
        },
        "category": {
            "inquiry": "Inquiry / Help",
            "software": "Software",
            "hardware": "Hardware",
            "network": "Network",
            "database": "Database",
        },
        "approval": {
            "not requested": "Not Yet Requested",
            "requested": "Requested",
            "approved": "Approved",
            "rejected": "Rejected",
        },
        "upon_approval": {"proceed": "Proceed to Next Task", "do_nothing": "Wait for a User"},
        "upon_reject": {"cancel": "Cancel all future Tasks", "goto": "Go to a previous Task"},
        "hold_reason": dict(HOLD_REASONS),
        "close_code": {code: code for code in CLOSE_CODES},
    }
)

# The base system's "Priority Lookup Rules": (impact, urgency) -> priority.
PRIORITY_LOOKUP: Final = MappingProxyType(
    {
        ("1", "1"): "1",
        ("1", "2"): "2",
        ("1", "3"): "3",
        ("2", "1"): "2",
        ("2", "2"): "3",
        ("2", "3"): "4",
        ("3", "1"): "3",
        ("3", "2"): "4",
        ("3", "3"): "5",
    }
)

STATE_ON_HOLD: Final = "3"
STATE_RESOLVED: Final = "6"
STATE_CLOSED: Final = "7"
STATE_CANCELED: Final = "8"
