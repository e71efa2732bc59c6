"""SMTP sink for tests and the demo: stores messages, lists them over HTTP."""

from simulators.mail.sink import MailSink, StoredMessage

__all__ = ["MailSink", "StoredMessage"]
