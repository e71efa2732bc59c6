"""The image's health check: exit 0 when the daemon's GET /healthz answers 200, else 1 (503
names the problem: a system paused for refused credentials or failing every call, a stuck queue).

Standard library only (the slim image has no curl); the port is the daemon's own setting.
"""

import os
import sys
import urllib.error
import urllib.request

PORT = os.environ.get("ESCALATION_SYNC_WEBHOOKS__PORT", "8080")

try:
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/healthz", timeout=4) as answer:
        sys.exit(0 if answer.status == 200 else 1)
except (OSError, urllib.error.URLError) as exc:
    print(f"healthz: {exc}", file=sys.stderr)
    sys.exit(1)
