"""Run the ServiceNow simulator alone: `python -m simulators.servicenow --port 8081`."""

from __future__ import annotations

import argparse
import signal
import threading

from simulators.servicenow import ServiceNowSimulator


def main(argv: list[str] | None = None) -> None:
    """Parse options, seed, serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m simulators.servicenow")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--user", default="admin", help="basic-auth admin user")
    parser.add_argument("--password", default="admin")
    parser.add_argument("--seed", type=int, default=0, help="incidents to create at start")
    parser.add_argument("--oauth-client", default=None, help="client_id:client_secret")
    parser.add_argument("--webhook-url", default=None, help="Business Rule target URL")
    parser.add_argument("--webhook-secret", default="")
    parser.add_argument("--integration-user", default=None, help="changes by this user skipped")
    args = parser.parse_args(argv)

    sim = ServiceNowSimulator(
        host=args.host, port=args.port, admin_user=args.user, admin_password=args.password
    )
    if args.oauth_client:
        client_id, _, client_secret = args.oauth_client.partition(":")
        sim.add_oauth_client(client_id, client_secret, user_name=args.user)
    if args.integration_user and args.integration_user != args.user:
        # A fulfiller that may close incidents, not an admin: the instance's ACLs apply to it.
        sim.add_user(args.integration_user, password=args.password, roles=("itil", "itil_admin"))
    if args.webhook_url:
        sim.set_webhook(
            args.webhook_url, args.webhook_secret, integration_user=args.integration_user
        )
    sim.start()
    if args.seed:
        sim.seed_incidents(args.seed)
    stop = threading.Event()
    # Before the address is printed: whoever reads it may ask it to stop at once.
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"ServiceNow simulator on {sim.url} (user {args.user})", flush=True)
    try:
        stop.wait()
    finally:
        sim.stop()


if __name__ == "__main__":
    main()
