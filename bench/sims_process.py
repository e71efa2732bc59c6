"""The simulated estate in a child process, seeded for a benchmark, until SIGTERM.

    python -m bench.sims_process --info-file PATH [--incidents N] [--latency-ms MS]

Starts `SimulatedEstate` (Jira with project DS, ServiceNow, SMTP sink) with no webhooks, seeds
`N` ServiceNow incidents that carry the ESCALATION label (so the example configuration's
escalation route pairs them into Jira), then writes the URLs and seeded ids as JSON to PATH.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path
from typing import Any

PRIORITY_PAIRS = [("1", "1"), ("1", "2"), ("2", "2"), ("2", "3"), ("3", "3")]
STATES = ["1", "2", "3"]


def incident_fields(i: int, caller: str) -> dict[str, Any]:
    """The seeded incident number `i`: varied priority and state, a realistic description."""
    impact, urgency = PRIORITY_PAIRS[i % len(PRIORITY_PAIRS)]
    return {
        "short_description": f"Checkout fails for tenant {i} after upgrade",
        "description": (
            f"Customer {i} reports checkout failures since the 4.2 upgrade.\n"
            "Steps to reproduce: add an item, pay with a saved card.\n"
            "Environment: production EU, version: 4.2.1\nTroubleshooting: cache cleared."
        ),
        "impact": impact,
        "urgency": urgency,
        "state": STATES[i % len(STATES)],
        "category": "software",
        "u_labels": "ESCALATION",
        "caller_id": caller,
    }


def add_labels_column() -> None:
    """Give the incident table the `u_labels` string column the example configuration maps
    labels to (its comment asks the admin to create it); the base instance has no such column
    and, like ServiceNow, the simulator drops values for columns that do not exist."""
    from types import MappingProxyType

    from simulators.servicenow import schema, store

    if "u_labels" in store.TABLE_FIELDS["incident"]:
        return
    fields = {**store.TABLE_FIELDS, "incident": (*schema.INCIDENT_FIELDS, "u_labels")}
    store.TABLE_FIELDS = MappingProxyType(fields)  # type: ignore[misc]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--info-file", type=Path, required=True)
    parser.add_argument("--incidents", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()

    from simulators.common import FaultConfig
    from simulators.estate import CUSTOMER, L1_ENGINEER, SimulatedEstate

    add_labels_column()
    estate = SimulatedEstate().start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        caller = estate.sn_users[CUSTOMER.user_name]
        sys_ids = [
            estate.servicenow.create_incident(
                incident_fields(i, caller), as_user=L1_ENGINEER.user_name
            )["sys_id"]
            for i in range(args.incidents)
        ]
        if args.latency_ms:
            faults = FaultConfig(latency_ms=args.latency_ms)
            estate.jira.set_faults(faults)
            estate.servicenow.configure_faults(faults)
        info = {
            "jira": estate.jira.url,
            "servicenow": estate.servicenow.url,
            "jira_email": estate.jira.integration.email,
            "jira_account": estate.jira.integration.account_id,
            "environment": estate.environment(),
            "incidents": len(sys_ids),
        }
        tmp = args.info_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(info))
        tmp.replace(args.info_file)
        stop.wait()
    finally:
        estate.stop()


if __name__ == "__main__":
    main()
