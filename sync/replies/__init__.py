"""Customers' e-mail replies, read from the mailbox `[email.inbound]` names and posted on the
tickets they answer.

```
intake.MailIntake      the mailbox, pass by pass (the daemon's thread; one pass in sync --once)
  handler.ReplyHandler one mail: read (inbound_mail), then comment / note / bounce / refuse
    escalation.replies the policy's customer_replies: confirmed closes, not fixed reopens
  store                the mails read and the addresses that bounced (the outbox skips those)
```
The mail server keeps which mails were processed (connectors/mailbox); the records keep what a
mail became (its comment carries the Message-ID as its origin); this package connects the two.
"""
