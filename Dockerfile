# escalation-sync: the daemon (`escalation-sync run`) on Python 3.11, as a non-root user.
# Build: docker build -t escalation-sync .   Run with PostgreSQL and Redis: see compose.yaml.

# --- build the wheel ------------------------------------------------------------------------------
FROM python:3.11-slim AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# The source tree less what .dockerignore leaves out (tests, benchmarks, virtualenvs, state).
COPY . .
RUN pip wheel --no-deps --wheel-dir /dist .

# --- the daemon -----------------------------------------------------------------------------------
FROM python:3.11-slim
# The daemon listens on every interface of the container and keeps its state (its runtime file,
# SQLite when no database URL is set) in the volume below.
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ESCALATION_SYNC_WEBHOOKS__HOST=0.0.0.0 \
    ESCALATION_SYNC_WEBHOOKS__PORT=8080 \
    ESCALATION_SYNC_STATE__DIR=/var/lib/escalation-sync

# The wheel with the PostgreSQL driver; the simulators' extra is left out (the daemon does not
# need it).
COPY --from=build /dist /dist
RUN wheel="$(ls /dist/escalation_sync-*.whl)" \
    && pip install "${wheel}[postgres]" \
    && rm -rf /dist

COPY docker/entrypoint.sh /usr/local/bin/escalation-sync-entrypoint
COPY docker/healthcheck.py /usr/local/bin/escalation-sync-healthcheck
RUN chmod 0755 /usr/local/bin/escalation-sync-entrypoint /usr/local/bin/escalation-sync-healthcheck \
    && useradd --system --uid 10001 --user-group --no-create-home --home-dir /var/lib/escalation-sync \
       --shell /usr/sbin/nologin escalation \
    && mkdir -p /var/lib/escalation-sync /etc/escalation-sync \
    && chown escalation:escalation /var/lib/escalation-sync

USER 10001:10001
WORKDIR /var/lib/escalation-sync
VOLUME ["/var/lib/escalation-sync"]
EXPOSE 8080
# GET /healthz answers 200 while the store answers and nothing is wrong; 503 with the reason
# while a system is paused for refused credentials, has failed every call for a while, or the
# queue is stuck ([health] in the configuration): `docker ps` shows the container unhealthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/usr/local/bin/escalation-sync-healthcheck"]
# SIGTERM (Docker's stop signal) stops the daemon gracefully: deliveries in flight are answered.
ENTRYPOINT ["escalation-sync-entrypoint"]
CMD ["run"]
