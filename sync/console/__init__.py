"""The operations console: server-rendered pages the daemon serves to support-operations leads.

```
settings   [console]: off unless enabled, users, sessions, proxy sign-in (validated at load)
auth       passwords (argon2), sessions in memory, sign-in throttle, reverse-proxy identity
csrf       a token per session on every form, and the request's origin checked
readmodel  everything the pages show (one module per page), read from the store, ledger, outbox,
           audit log, health board and metrics
actions    what an operator may do (replay, requeue, resolve), each written to the audit log
app        the FastAPI routes: sign-in, pages, actions behind the CSRF checks
wording    the sandboxed, autoescaped templates and the filters that put things into words
server     the console's own listener in the daemon, and the sampler behind the lag plot
```

Nothing here is imported by the rest of `sync/` except the daemon, which starts the server when
`[console] enabled = true`.
"""
