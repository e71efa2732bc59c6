"""`python -m simulators.mail --smtp-port 8025 --api-port 8026 --imap-port 8143`: run the sink."""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Sequence

from simulators.mail.sink import MailSink


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the ports, serve until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m simulators.mail", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--smtp-port", type=int, default=8025)
    parser.add_argument("--api-port", type=int, default=8026)
    parser.add_argument(
        "--imap-port", type=int, default=8143, help="serve received mail over IMAP (0: off)"
    )
    parser.add_argument("--imap-password", default="sink", help="the password of every mailbox")
    args = parser.parse_args(argv)
    sink = MailSink(
        args.host,
        smtp_port=args.smtp_port,
        api_port=args.api_port,
        imap_port=args.imap_port or None,
        imap_password=args.imap_password,
    ).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    imap = f"  imap://{args.host}:{sink.imap_port}" if args.imap_port else ""
    print(
        f"mail sink: smtp://{args.host}:{sink.smtp_port}{imap}  api {sink.api_url}/messages",
        flush=True,
    )
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        sink.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
