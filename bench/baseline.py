"""The sync script a team writes by hand, as the comparison point for the product.

Sequential and plain: poll every active incident from the Table API, then for each one create
the Jira issue with its summary and write every other field with its own request (description,
priority, labels, a transition for the status), then write the Jira key back into the incident.
No bulk APIs, no de-duplication, no snapshot to skip what is already in step.

    python -m bench.baseline [--count 10000] [--latency-ms 0] [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

PRIORITY = {"1": "Highest", "2": "High", "3": "Medium", "4": "Low", "5": "Lowest"}
STATUS = {"2": "In Progress", "3": "Waiting", "6": "Done", "7": "Closed", "8": "Cancelled"}


@dataclass(frozen=True, slots=True)
class Endpoints:
    jira: str
    jira_auth: tuple[str, str]
    servicenow: str
    servicenow_auth: tuple[str, str]
    project: str = "DS"


def poll_incidents(
    http: requests.Session, ep: Endpoints, page: int = 1000
) -> Iterator[dict[str, Any]]:
    """Every active incident, page by page."""
    offset = 0
    while True:
        r = http.get(
            f"{ep.servicenow}/api/now/table/incident",
            params={
                "sysparm_query": "active=true^ORDERBYsys_created_on",
                "sysparm_limit": str(page),
                "sysparm_offset": str(offset),
            },
            auth=ep.servicenow_auth,
            timeout=30,
        )
        r.raise_for_status()
        rows = r.json()["result"]
        yield from rows
        if len(rows) < page:
            return
        offset += page


def copy_incident(http: requests.Session, ep: Endpoints, inc: dict[str, Any]) -> str:
    """Create the issue, then one request per field; returns the issue key."""
    api = f"{ep.jira}/rest/api/2/issue"
    auth = ep.jira_auth
    r = http.post(
        api,
        json={
            "fields": {
                "project": {"key": ep.project},
                "issuetype": {"name": "Bug"},
                "summary": inc["short_description"],
            }
        },
        auth=auth,
        timeout=30,
    )
    r.raise_for_status()
    key = r.json()["key"]
    for fields in (
        {"description": inc.get("description", "")},
        {"priority": {"name": PRIORITY.get(inc.get("priority", ""), "Medium")}},
        {"labels": [label for label in inc.get("u_labels", "").split(",") if label]},
    ):
        http.put(f"{api}/{key}", json={"fields": fields}, auth=auth, timeout=30).raise_for_status()
    target = STATUS.get(inc.get("state", ""))
    if target:
        r = http.get(f"{api}/{key}/transitions", auth=auth, timeout=30)
        r.raise_for_status()
        for t in r.json()["transitions"]:
            if t["to"]["name"] == target:
                http.post(
                    f"{api}/{key}/transitions",
                    json={"transition": {"id": t["id"]}},
                    auth=auth,
                    timeout=30,
                ).raise_for_status()
                break
    http.patch(
        f"{ep.servicenow}/api/now/table/incident/{inc['sys_id']}",
        json={"correlation_id": key},
        auth=ep.servicenow_auth,
        timeout=30,
    ).raise_for_status()
    return key


def run(ep: Endpoints) -> int:
    """Poll, then copy every incident; returns how many were copied."""
    copied = 0
    with requests.Session() as http:
        for inc in list(poll_incidents(http, ep)):
            copy_incident(http, ep, inc)
            copied += 1
    return copied


def endpoints_for(sims: Any) -> Endpoints:
    """The endpoints and credentials of a `bench.common.SimsProcess`."""
    from simulators.estate import JIRA_API_TOKEN, SN_INTEGRATION_PASSWORD, SN_INTEGRATION_USER

    return Endpoints(
        jira=sims.info["jira"],
        jira_auth=(sims.info["jira_email"], JIRA_API_TOKEN),
        servicenow=sims.info["servicenow"],
        servicenow_auth=(SN_INTEGRATION_USER, SN_INTEGRATION_PASSWORD),
    )


def measure(count: int, latency_ms: float, work: Path) -> dict[str, Any]:
    """Seed `count` incidents in fresh simulators, run the script, return its figures."""
    from bench.common import SimsProcess, delta_both

    with SimsProcess(work / "baseline", incidents=count, latency_ms=latency_ms) as sims:
        before = sims.stats()
        start = time.perf_counter()
        copied = run(endpoints_for(sims))
        wall = time.perf_counter() - start
        calls = delta_both(before, sims.stats())
    return {"copied": copied, "wall": wall, "calls": calls}


def main() -> int:
    from bench.common import header

    parser = argparse.ArgumentParser(description="Hand-written sequential sync, for comparison.")
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--quick", action="store_true", help="1,000 incidents")
    args = parser.parse_args()
    if args.quick:
        args.count = 1_000
    header("baseline: hand-written sequential sync")
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as tmp:
        result = measure(args.count, args.latency_ms, Path(tmp))
    calls = result["calls"]
    total = sum(c.total for c in calls.values())
    print(f"incidents:    {result['copied']} copied, injected latency {args.latency_ms:g} ms")
    print(f"wall time:    {result['wall']:.1f} s ({result['copied'] / result['wall']:.0f}/s)")
    print(f"API calls:    {total} ({total / max(1, result['copied']):.2f} per incident)")
    for name, c in calls.items():
        print(f"  {name}: {c.total}")
        for line in c.lines():
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
