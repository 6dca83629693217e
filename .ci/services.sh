#!/usr/bin/env bash
# Installs and starts what the end-to-end tests need on a clean machine:
#   - a private PostgreSQL cluster on a free loopback port (store tests run against it too)
#   - Debian's chromium (the analysts' page is tested in a headless browser)
# Prints the variables to export; sourced by .ci/run.
set -euo pipefail

need_apt=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
PGDATA=$(mktemp -d /tmp/tagger-pg.XXXXXX)
PGPORT=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
chown postgres "$PGDATA"
# PostgreSQL refuses to run as root: the cluster belongs to the postgres user.
runuser -u postgres -- "$PGBIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA" -o "-p $PGPORT -k /tmp -c listen_addresses=127.0.0.1" -l "$PGDATA/log" -w start >/dev/null
runuser -u postgres -- "$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" tagger_test

export TAGGER_TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:$PGPORT/tagger_test"
export TAGGER_TEST_CHROMIUM="$(command -v chromium)"
echo "services: postgres on $PGPORT ($PGDATA), chromium at $TAGGER_TEST_CHROMIUM"
