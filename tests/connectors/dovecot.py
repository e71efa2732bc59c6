"""A real Dovecot IMAP server for tests: temporary config, passwd-file user, maildir in a tmp dir.

`dovecot_server()` starts `dovecot -F` on 127.0.0.1 on free ports, IMAP with STARTTLS and IMAPS
(a certificate made by openssl for the test, trusted through `ca_file`), and stops it afterwards.
When Dovecot is not installed (`.ci/run` installs `dovecot-imapd` where it can), the tests that
use it are skipped with that reason. As root, Dovecot refuses to store mail as root, so the
mail user is the package's `dovecot` account and the directories are made reachable for it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

DOVECOT = shutil.which("dovecot") or (
    "/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None
)
USER = "replies@example.com"
PASSWORD = "s3cret-imap-pass"


@dataclass(frozen=True)
class Dovecot:
    """Where the server listens and how to log in."""

    host: str
    port: int
    username: str
    password: str
    ca_file: Path | None
    base: Path | None
    tls_port: int | None = None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _certificate(base: Path) -> tuple[Path, Path]:
    cert, key = base / "cert.pem", base / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def _config(base: Path, port: int, tls_port: int, cert: Path, key: Path) -> str:
    if os.geteuid() == 0:
        mail_user = pwd.getpwnam("dovecot")
        users = "default_login_user = dovenull\ndefault_internal_user = dovecot\n"
    else:
        mail_user = pwd.getpwuid(os.geteuid())
        users = (
            f"default_login_user = {mail_user.pw_name}\n"
            f"default_internal_user = {mail_user.pw_name}\n"
        )
    home = base / "home"
    home.mkdir()
    if os.geteuid() == 0:
        os.chown(home, mail_user.pw_uid, mail_user.pw_gid)
    (base / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    return f"""
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
protocols = imap
listen = 127.0.0.1
{users}
first_valid_uid = {min(mail_user.pw_uid, 100) if mail_user.pw_uid else 1}
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {base}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_user.pw_uid} gid={mail_user.pw_gid} home={home}/%n
}}
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
  separator = .
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""


@contextmanager
def dovecot_server() -> Iterator[Dovecot]:
    """Run Dovecot for the duration of the block; skip the test when it is not installed."""
    if DOVECOT is None:
        pytest.skip("Dovecot is not installed (apt-get install dovecot-imapd; .ci/run does it)")
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the test server's certificate")
    base = Path(tempfile.mkdtemp(prefix="dovecot-test-"))
    os.chmod(base, 0o755)
    process = None
    try:
        cert, key = _certificate(base)
        os.chmod(key, 0o644)
        port, tls_port = _free_port(), _free_port()
        config = base / "dovecot.conf"
        config.write_text(_config(base, port, tls_port, cert, key))
        process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                log = (base / "dovecot.log").read_text() if (base / "dovecot.log").exists() else ""
                err = process.stderr.read().decode() if process.stderr else ""
                raise RuntimeError(f"dovecot exited: {err}\n{log}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("dovecot did not start listening") from None
                time.sleep(0.05)
        yield Dovecot("127.0.0.1", port, USER, PASSWORD, cert, base, tls_port)
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(base, ignore_errors=True)
