"""SMTP transport against real SMTP servers on 127.0.0.1: the mail sink, and a TLS server."""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from connectors.email import (
    Identity,
    InvalidAddress,
    OutgoingEmail,
    SmtpSender,
    SmtpSettings,
    make_message_id,
    thread_root_id,
)
from connectors.errors import RetryableError, TransportFailed
from simulators.mail import MailSink

IDENTITY = Identity("support@example.com", "Acme Support", reply_to="help@example.com")


@pytest.fixture(scope="module")
def sink() -> Iterator[MailSink]:
    with MailSink() as running:
        yield running


@pytest.fixture(autouse=True)
def _clean(request: pytest.FixtureRequest) -> None:
    if "sink" in request.fixturenames:
        request.getfixturevalue("sink").clear()


def _plain(sink: MailSink) -> SmtpSender:
    return SmtpSender(
        SmtpSettings(host="127.0.0.1", port=sink.smtp_port, security="none"), IDENTITY
    )


def _email(key: str = "INC0010001|escalated|1", to: str = "customer@example.org") -> OutgoingEmail:
    root = thread_root_id("INC0010001", "example.com")
    return OutgoingEmail(
        to=(to,),
        subject="[INC0010001] Your request has been escalated",
        text="Plain text part\n",
        html="<p>HTML part</p>\n",
        message_id=make_message_id(key, "example.com"),
        in_reply_to=root,
        references=(root,),
        headers=(("X-Escalation-Sync-Ticket", "INC0010001"),),
    )


def test_message_arrives_with_headers_parts_and_threading(sink: MailSink) -> None:
    """SMTP delivers From, Subject, Message-ID, thread headers and both parts to the sink."""
    message = _email()
    assert _plain(sink).send(message) == message.message_id
    [got] = sink.messages()
    headers = dict(got.headers)
    assert headers["From"] == "Acme Support <support@example.com>"
    assert headers["To"] == "customer@example.org"
    assert headers["Reply-To"] == "help@example.com"
    assert headers["Subject"] == "[INC0010001] Your request has been escalated"
    assert headers["Message-ID"] == message.message_id
    assert headers["In-Reply-To"] == thread_root_id("INC0010001", "example.com")
    assert headers["References"] == thread_root_id("INC0010001", "example.com")
    assert headers["Auto-Submitted"] == "auto-generated"
    assert headers["X-Escalation-Sync-Ticket"] == "INC0010001"
    assert "multipart/alternative" in headers["Content-Type"]
    assert got.text == "Plain text part\n"
    assert got.html == "<p>HTML part</p>\n"
    assert got.rcpt_tos == ["customer@example.org"]
    assert got.mail_from == "support@example.com"


def test_copied_recipients_get_a_cc_header_and_the_message(sink: MailSink) -> None:
    """Stakeholders copied on a notice are in the Cc header and among the envelope recipients."""
    message = replace(_email(to="cxp@example.com"), cc=("lead@example.com", "vp@example.com"))
    _plain(sink).send(message)
    [got] = sink.messages()
    assert dict(got.headers)["Cc"] == "lead@example.com, vp@example.com"
    assert sorted(got.rcpt_tos) == ["cxp@example.com", "lead@example.com", "vp@example.com"]


def test_two_updates_of_one_ticket_share_the_thread(sink: MailSink) -> None:
    """Two messages of the same ticket have distinct Message-IDs and the same thread root."""
    sender = _plain(sink)
    sender.send(_email("INC0010001|escalated|1"))
    sender.send(_email("INC0010001|public_update|2"))
    first, second = sink.messages()
    assert first.message_id != second.message_id
    assert dict(first.headers)["References"] == dict(second.headers)["References"]


def test_injection_in_subject_and_display_name_adds_no_header(sink: MailSink) -> None:
    """CR/LF in the subject or the sender name cannot add a Bcc or any other header."""
    identity = Identity("support@example.com", "Acme\r\nBcc: thief@evil.example")
    sender = SmtpSender(
        SmtpSettings(host="127.0.0.1", port=sink.smtp_port, security="none"), identity
    )
    message = _email()
    evil = OutgoingEmail(
        to=message.to,
        subject="[INC0010001] Disk full\r\nBcc: thief@evil.example\nX-Injected: 1",
        text=message.text,
        message_id=message.message_id,
    )
    sender.send(evil)
    [got] = sink.messages()
    names = [name.lower() for name, _ in got.headers]
    assert "bcc" not in names and "x-injected" not in names
    assert got.rcpt_tos == ["customer@example.org"]
    assert "\n" not in (got.subject or "")
    assert got.subject == "[INC0010001] Disk full Bcc: thief@evil.example X-Injected: 1"


@pytest.mark.parametrize(
    "address",
    ["not-an-address", "a@b", "two@@example.org", "x@example.org\r\nBcc: y@example.org", " "],
)
def test_bad_recipient_refused_before_connecting(address: str) -> None:
    """A malformed recipient raises InvalidAddress naming the problem, with no SMTP traffic."""
    sender = SmtpSender(SmtpSettings(host="127.0.0.1", port=1, security="none"), IDENTITY)
    with pytest.raises(InvalidAddress, match="invalid recipient address"):
        sender.send(_email(to=address))


def test_permanent_and_transient_refusals_are_typed(sink: MailSink) -> None:
    """A 550 at RCPT is a permanent InvalidAddress; a 451 is a RetryableError."""
    sink.refuse("gone@example.org", 550, "5.1.1 User unknown")
    sink.refuse("later@example.org", 451, "4.3.0 Try again later")
    with pytest.raises(InvalidAddress, match="550"):
        _plain(sink).send(_email(to="gone@example.org"))
    with pytest.raises(RetryableError) as info:
        _plain(sink).send(_email(to="later@example.org"))
    assert info.value.status == 451
    assert sink.messages() == []


def test_refused_connection_is_transient() -> None:
    """No server listening is a TransportFailed, so the outbox retries later."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sender = SmtpSender(SmtpSettings(host="127.0.0.1", port=port, security="none"), IDENTITY)
    with pytest.raises(TransportFailed):
        sender.send(_email())


def test_starttls_required_when_configured(sink: MailSink) -> None:
    """A server without STARTTLS is refused instead of falling back to clear text."""
    sender = SmtpSender(SmtpSettings(host="127.0.0.1", port=sink.smtp_port), IDENTITY)
    with pytest.raises(TransportFailed, match="STARTTLS"):
        sender.send(_email())
    assert sink.messages() == []


def test_settings_rules(tmp_path: Path) -> None:
    """Clear text only to localhost, one of password/password_file, default ports per mode."""
    with pytest.raises(ValueError, match="localhost"):
        SmtpSettings(host="smtp.example.com", security="none")
    secret = tmp_path / "smtp-password"
    secret.write_text("s3cret\n")
    with pytest.raises(ValueError, match="password_file"):
        SmtpSettings(password="x", password_file=secret)  # type: ignore[arg-type]
    assert SmtpSettings(password_file=secret).password_value() == "s3cret"
    assert SmtpSettings(security="tls").effective_port == 465
    assert SmtpSettings().effective_port == 587
    assert "s3cret" not in repr(SmtpSettings(password="s3cret"))  # type: ignore[arg-type]


# --- TLS: a local CA, a server certificate for 127.0.0.1, aiosmtpd with STARTTLS / TLS ---------


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pki")
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Mail CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": folder / "ca.pem", "cert": folder / "cert.pem", "key": folder / "key.pem"}
    paths["ca"].write_bytes(_pem(ca))
    paths["cert"].write_bytes(_pem(cert))
    paths["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


class _Recorder:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes, Any]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            (
                envelope.mail_from,
                list(envelope.rcpt_tos),
                envelope.content,
                getattr(session.auth_data, "login", None) if session.authenticated else None,
            )
        )
        return "250 OK"


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
    ok = (
        isinstance(data, LoginPassword)
        and data.login == b"mailer"
        and data.password == b"correct horse"
    )
    return AuthResult(success=ok, handled=False, auth_data=data if ok else None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(params=["starttls", "tls"])
def tls_server(
    request: pytest.FixtureRequest, pki: dict[str, Path]
) -> Iterator[tuple[str, int, _Recorder]]:
    mode = str(request.param)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(pki["cert"], pki["key"])
    recorder = _Recorder()
    kwargs: dict[str, Any] = {"authenticator": _authenticator, "auth_required": True}
    if mode == "starttls":
        kwargs.update(tls_context=server_ctx, require_starttls=True)
    else:
        # The connection is TLS from the first byte; aiosmtpd only knows about STARTTLS.
        kwargs.update(ssl_context=server_ctx, auth_require_tls=False)
    controller = Controller(recorder, hostname="127.0.0.1", port=_free_port(), **kwargs)
    controller.start()
    try:
        yield mode, controller.port, recorder
    finally:
        controller.stop()


def _tls_sender(mode: str, port: int, **extra: Any) -> SmtpSender:
    settings = SmtpSettings(
        host="127.0.0.1",
        port=port,
        security=mode,
        username="mailer",
        **extra,  # type: ignore[arg-type]
    )
    return SmtpSender(settings, IDENTITY)


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_tls_with_trusted_ca_and_auth(
    tls_server: tuple[str, int, _Recorder], pki: dict[str, Path]
) -> None:
    """STARTTLS and implicit TLS deliver when the CA is trusted and the login is accepted."""
    mode, port, recorder = tls_server
    sender = _tls_sender(mode, port, password="correct horse", ca_file=pki["ca"])
    sender.send(_email())
    [(mail_from, rcpt, content, login)] = recorder.messages
    assert (mail_from, rcpt, login) == ("support@example.com", ["customer@example.org"], b"mailer")
    parsed = message_from_bytes(content, policy=policy.default)
    assert parsed["Message-ID"] == _email().message_id


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_untrusted_certificate_is_refused(tls_server: tuple[str, int, _Recorder]) -> None:
    """Without the private CA the certificate does not verify and nothing is sent."""
    mode, port, recorder = tls_server
    sender = _tls_sender(mode, port, password="correct horse")
    with pytest.raises(TransportFailed, match="certificate not trusted"):
        sender.send(_email())
    assert recorder.messages == []


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_wrong_password_is_auth_failure(
    tls_server: tuple[str, int, _Recorder], pki: dict[str, Path]
) -> None:
    """A refused login is AuthFailed, and the password is not in the error text."""
    from connectors.errors import AuthFailed

    mode, port, recorder = tls_server
    sender = _tls_sender(mode, port, password="wrong-pass-123", ca_file=pki["ca"])
    with pytest.raises(AuthFailed) as info:
        sender.send(_email())
    assert "wrong-pass-123" not in str(info.value)
    assert recorder.messages == []


def test_email_section_rules() -> None:
    """Empty [email] means off; enabled needs from_address; unknown keys are refused."""
    from pydantic import ValidationError

    from connectors.email import EmailSettings, build_sender

    off = EmailSettings.model_validate({})
    assert not off.enabled
    with pytest.raises(RetryableError):
        build_sender(off).send(_email())
    with pytest.raises(ValidationError, match="from_address is required"):
        EmailSettings.model_validate({"transport": "smtp"})
    with pytest.raises(ValidationError, match="Extra inputs"):
        EmailSettings.model_validate({"from_address": "s@example.com", "form_name": "typo"})
    with pytest.raises(ValidationError, match=r"\[email.graph\]"):
        EmailSettings.model_validate({"from_address": "s@example.com", "transport": "graph"})
    with pytest.raises(ValidationError, match="invalid recipient address"):
        EmailSettings.model_validate(
            {"from_address": "s@example.com", "management_recipients": ["boss at example"]}
        )
    on = EmailSettings.model_validate({"from_address": "Support@Example.COM"})
    assert isinstance(build_sender(on), SmtpSender)
    assert on.id_domain == "example.com"


class _DropAfter:
    """Stores what it gets, then drops the connection at the named stage without replying."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.received: list[bytes] = []

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.stage == "rcpt":
            server.transport.close()
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(envelope.content)
        server.transport.close()
        return "250 OK"


@pytest.mark.parametrize(("stage", "error"), [("rcpt", TransportFailed), ("data", None)])
def test_connection_lost_before_or_after_hand_over(stage: str, error: Any) -> None:
    """Lost before DATA: TransportFailed (safe to resend); after DATA: DeliveryUncertain."""
    from connectors.email import DeliveryUncertain

    handler = _DropAfter(stage)
    controller = Controller(handler, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        sender = SmtpSender(
            SmtpSettings(host="127.0.0.1", port=controller.port, security="none"), IDENTITY
        )
        expected = error or DeliveryUncertain
        with pytest.raises(expected) as info:
            sender.send(_email())
        assert isinstance(info.value, DeliveryUncertain) == (stage == "data")
        assert len(handler.received) == (1 if stage == "data" else 0)
    finally:
        controller.stop()


def test_long_subject_is_not_folded_into_a_leading_space() -> None:
    """A subject longer than 78 characters reaches the reader exactly as written."""
    from email import message_from_bytes
    from email import policy as email_policy

    from connectors.email import Identity, OutgoingEmail, build_mime

    subject = "[INC0010002] Update on your request: Checkout fails for all EU customers today"
    message = OutgoingEmail(
        to=("carol@customer.example",),
        subject=subject,
        text="x",
        message_id="<a@example.com>",
        in_reply_to="<root@example.com>",
    )
    raw = build_mime(message, Identity(from_address="support@example.com")).as_bytes()
    parsed = message_from_bytes(raw, policy=email_policy.default)
    assert str(parsed["Subject"]) == subject
