"""A ready-made estate of simulators: Jira with a DS support project, a ServiceNow instance with
the support roles, a Slack workspace with the same people, and an SMTP sink, seeded so that the
example configuration works against it.

Used by `escalation-sync simulators`, the demo and the benchmarks.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from urllib.parse import urlsplit

from simulators.jira import JiraSimulator
from simulators.jira.state import StatusDef, TransitionDef, Workflow
from simulators.mail.sink import MailSink
from simulators.servicenow import ServiceNowSimulator
from simulators.slack import SlackSimulator

# Statuses the example mapping names, reachable from anywhere as support workflows usually are.
# Resolving and closing go through Jira's resolve screen, which requires a resolution (the
# classic workflow's "Resolve Issue" screen); cancelling sets "Won't Do" itself.
SUPPORT_WORKFLOW = Workflow(
    statuses=(
        StatusDef("10000", "To Do", "new"),
        StatusDef("3", "In Progress", "indeterminate"),
        StatusDef("10010", "Waiting", "indeterminate"),
        StatusDef("10001", "Done", "done"),
        StatusDef("6", "Closed", "done"),
        StatusDef("10011", "Cancelled", "done"),
    ),
    transitions=(
        TransitionDef("11", "Start Progress", "In Progress"),
        TransitionDef("21", "Wait for Support", "Waiting"),
        TransitionDef("31", "Resolve", "Done", screen=("resolution",), required=("resolution",)),
        TransitionDef("41", "Reopen", "To Do", resolution=""),
        TransitionDef("51", "Close", "Closed", screen=("resolution",), required=("resolution",)),
        TransitionDef("61", "Cancel", "Cancelled", resolution="Won't Do"),
    ),
    initial="To Do",
)

# The Jira projects: DS (the example configuration's), and those the shipped policy presets
# escalate to, so a preset can be tried against the simulators as it is.
PROJECTS: tuple[tuple[str, str], ...] = (
    ("DS", "Dev Support"),
    ("ESC", "Escalation tasks"),
    ("L2", "Escalation resources"),
    ("VENDOR", "Vendor support"),
    ("FTE", "FastTrack escalations"),
    ("SW", "Software team"),
    ("HW", "Hardware team"),
    ("ENGLEAD", "Engineering leads"),
)

# Fields an admin adds to route escalations inside a project (the policy's queue and assignment
# group): the first custom fields of a fresh site, so the example configuration's ids
# (customfield_10050, customfield_10051) name them.
ROUTING_FIELDS: tuple[str, ...] = ("Escalation queue", "Assignment group")


def add_routing_fields(jira: JiraSimulator) -> list[str]:
    """Add the routing fields to every project's screens; returns their ids, in order."""
    return [jira.add_custom_field(name, "textfield") for name in ROUTING_FIELDS]


SN_INTEGRATION_USER = "escalation.sync"
SN_INTEGRATION_PASSWORD = "sim-sn-password"
JIRA_API_TOKEN = "sim-api-token"
JIRA_WEBHOOK_SECRET = "sim-jira-webhook-secret"
SN_WEBHOOK_SECRET = "sim-servicenow-webhook-secret"
# Every seeded ServiceNow person logs in with this password, so anyone trying a configuration
# can act as them over the Table API (the integration user has a password of its own).
SN_PEOPLE_PASSWORD = "sim-password"


@dataclass(frozen=True, slots=True)
class Person:
    """A seeded ServiceNow user."""

    user_name: str
    name: str
    email: str
    role: str = ""


L1_ENGINEER = Person("lee.l1", "Lee Support", "lee@example.com", "L1 support engineer")
SME = Person("sme.alice", "Alice Expert", "alice@example.com", "SME, approves escalations")
SECOND_SME = Person("sme.bob", "Bob Expert", "bob@example.com", "SME, approves escalations")
CUSTOMER = Person("carol.customer", "Carol Customer", "carol@customer.example", "customer")
# Every mailbox of the sink's IMAP side: log in with the recipient address and this password.
MAIL_SINK_IMAP_PASSWORD = "sink"
# The example configuration's from_address: customers' replies reach this mailbox.
SUPPORT_ADDRESS = "support@example.com"
# The Dev Support crew lead the DS procedure adds to every escalation channel (Slack only).
CREW_LEAD = Person("dana.lead", "Dana Lead", "dana@example.com", "Dev Support crew lead")
# Where the DS procedure has escalations announced.
ESCALATIONS_CHANNEL = "sre-escalations"


class SimulatedEstate:
    """Jira, ServiceNow and an SMTP sink, started together and seeded."""

    def __init__(
        self,
        *,
        jira_port: int = 0,
        servicenow_port: int = 0,
        smtp_port: int = 0,
        mail_api_port: int = 0,
        imap_port: int = 0,
        slack_port: int = 0,
    ) -> None:
        self.jira = JiraSimulator(port=jira_port)
        self.servicenow = ServiceNowSimulator(port=servicenow_port)
        self.slack = SlackSimulator(port=slack_port)
        # The sink also serves what it receives over IMAP, so replies can be read back.
        self.mail = MailSink(
            smtp_port=smtp_port,
            api_port=mail_api_port,
            imap_port=imap_port,
            imap_password=MAIL_SINK_IMAP_PASSWORD,
        )
        self.sn_users: dict[str, str] = {}

    def start(self) -> SimulatedEstate:
        """Start them all and seed them; stops what started if one fails."""
        try:
            self.jira.start()
            self.servicenow.start()
            self.slack.start()
            self.mail.start()
        except BaseException:
            self.stop()
            raise
        self._seed()
        return self

    def stop(self) -> None:
        """Stop everything (safe to call twice)."""
        for stop in (self.mail.stop, self.slack.stop, self.servicenow.stop, self.jira.stop):
            with contextlib.suppress(Exception):
                stop()

    def __enter__(self) -> SimulatedEstate:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _seed(self) -> None:
        for key, name in PROJECTS:
            self.jira.add_project(key, name, workflow=SUPPORT_WORKFLOW)
        add_routing_fields(self.jira)
        sn = self.servicenow
        # The example mapping keeps tags, the escalation type, the region and the account's
        # sponsor in custom columns, created as an admin would.
        for column in ("u_labels", "u_escalation_type", "u_region", "u_sponsor"):
            sn.add_column("incident", column)
        # Not an admin: itil to resolve and write incidents, itil_admin to close them (what
        # the example mapping does when Jira closes an issue).
        integration = sn.add_user(
            SN_INTEGRATION_USER,
            name="Escalation Sync",
            password=SN_INTEGRATION_PASSWORD,
            roles=("itil", "itil_admin"),
        )
        self.sn_users[SN_INTEGRATION_USER] = integration["sys_id"]
        for person in (L1_ENGINEER, SME, SECOND_SME, CUSTOMER):
            record = sn.add_user(
                person.user_name, name=person.name, email=person.email, password=SN_PEOPLE_PASSWORD
            )
            self.sn_users[person.user_name] = record["sys_id"]
        # Everyone who works the ticket is in Slack; the customer is not.
        engineer = self.jira.engineer
        slack = self.slack
        for person in (L1_ENGINEER, SME, SECOND_SME, CREW_LEAD):
            slack.add_user(person.user_name, person.name, person.email)
        slack.add_user(engineer.name or "erin", engineer.display_name, engineer.email)
        slack.add_channel(ESCALATIONS_CHANNEL, members=[slack.bot])

    def point_webhooks_at(self, base_url: str) -> None:
        """Register Jira's admin webhook and install the Business Rule, both signed."""
        self.jira.register_webhook(f"{base_url}/webhooks/jira", secret=JIRA_WEBHOOK_SECRET)
        self.servicenow.set_webhook(
            f"{base_url}/webhooks/servicenow",
            SN_WEBHOOK_SECRET,
            integration_user=SN_INTEGRATION_USER,
        )

    def urls(self) -> dict[str, str]:
        """Where each simulator listens."""
        return {
            "jira": self.jira.url,
            "servicenow": self.servicenow.url,
            "smtp": f"smtp://127.0.0.1:{self.mail.smtp_port}",
            "imap": f"imap://127.0.0.1:{self.mail.imap_port}",
            "mail_api": f"{self.mail.api_url}/messages",
            "slack": self.slack.api_url,
        }

    def environment(self) -> dict[str, str]:
        """The secrets, as the environment variables the configuration reads them from."""
        return {
            "ESCALATION_SYNC_JIRA__API_TOKEN": JIRA_API_TOKEN,
            "ESCALATION_SYNC_JIRA__WEBHOOK_SECRET": JIRA_WEBHOOK_SECRET,
            "ESCALATION_SYNC_SERVICENOW__PASSWORD": SN_INTEGRATION_PASSWORD,
            "ESCALATION_SYNC_SERVICENOW__WEBHOOK_SECRET": SN_WEBHOOK_SECRET,
        }

    def config_overrides(self, webhooks_to: str | None = None) -> str:
        """TOML for every key of config.example.toml that names these simulators: connections,
        the SMTP sink (and its IMAP side, as the replies mailbox), the links posted into the
        records and, given the daemon's base URL the webhooks go to, where the daemon
        listens."""
        lines = [
            "[jira]",
            f'jql = "project in ({", ".join(key for key, _ in PROJECTS)})"',
            f'base_url = "{self.jira.url}"',
            f'email = "{self.jira.integration.email}"',
            f'integration_user = "{self.jira.integration.account_id}"',
            "",
            "[servicenow]",
            f'instance_url = "{self.servicenow.url}"',
            f'username = "{SN_INTEGRATION_USER}"',
            f'integration_user = "{SN_INTEGRATION_USER}"',
            "",
            "[email.smtp]",
            'host = "127.0.0.1"',
            f"port = {self.mail.smtp_port}",
            'security = "none"',
            "",
            "# Customers' replies: mail sent to the support address, read back over IMAP",
            "[email.inbound]",
            'kind = "imap"',
            "[email.inbound.imap]",
            'host = "127.0.0.1"',
            f"port = {self.mail.imap_port}",
            'security = "none"',
            f'username = "{SUPPORT_ADDRESS}"',
            f'password = "{MAIL_SINK_IMAP_PASSWORD}"',
            "",
            "# A chat channel per escalation (with [escalation.chat] enabled = true)",
            "[notify.slack]",
            f'base_url = "{self.slack.api_url}"',
        ]
        if webhooks_to:
            daemon = urlsplit(webhooks_to)
            lines += [
                "",
                "[webhooks]",
                f'host = "{daemon.hostname or "127.0.0.1"}"',
                f"port = {daemon.port or (443 if daemon.scheme == 'https' else 80)}",
            ]
        lines += [
            "",
            "# The links each record gets to its pair",
            "[mapping.systems.jira.ref]",
            'id = "id"',
            'key = "key"',
            f'url_template = "{self.jira.url}/browse/{{key}}"',
            "",
            "[mapping.systems.servicenow.ref]",
            'id = "sys_id"',
            'key = "number"',
            f'url_template = "{self.servicenow.url}/nav_to.do?uri=incident.do?sys_id={{id}}"',
        ]
        return "\n".join(lines)

    def people(self) -> list[tuple[str, str, str, str]]:
        """Who can act in the simulators over HTTP basic auth: (system, login, secret, role)."""
        engineer = self.jira.engineer
        rows = [
            ("ServiceNow", p.user_name, SN_PEOPLE_PASSWORD, p.role)
            for p in (L1_ENGINEER, SME, SECOND_SME, CUSTOMER)
        ]
        rows.append(("Jira", engineer.email, engineer.api_token or "", "engineer"))
        return rows
