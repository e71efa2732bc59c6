#!/bin/sh
# The container's entry point: `escalation-sync ARGS` (`run` unless other arguments are given).
#
# libpq (under psycopg) reads the database password from PGPASSWORD, not from a file; containers
# hand secrets over as files, so PGPASSWORD_FILE names one and it is read here. The password then
# stays out of the configuration file, the database URL and the image.
set -eu
if [ -n "${PGPASSWORD_FILE:-}" ]; then
    PGPASSWORD="$(cat "$PGPASSWORD_FILE")"
    export PGPASSWORD
    unset PGPASSWORD_FILE
fi
exec escalation-sync "$@"
