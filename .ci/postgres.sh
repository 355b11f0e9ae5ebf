#!/usr/bin/env bash
# Start a throw-away PostgreSQL server for the tests, installing it from the
# distribution's packages when the machine has none. Prints the SQLAlchemy URL.
# Usage: url=$(bash .ci/postgres.sh start DIR PORT); ...; bash .ci/postgres.sh stop DIR
set -euo pipefail
action=${1:?start or stop}
dir=${2:?data directory}
port=${3:-55432}

bindir() {
  local found
  found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$found" ]; then
    echo "installing PostgreSQL from the distribution's packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
    found=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  fi
  echo "$found"
}

# PostgreSQL refuses to run as root: run it as the packages' postgres user.
as_postgres() {
  if [ "$(id -u)" = 0 ]; then
    su postgres -s /bin/bash -c "$*"
  else
    bash -c "$*"
  fi
}

case "$action" in
start)
  bin=$(bindir)
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  if [ ! -f "$dir/PG_VERSION" ]; then
    as_postgres "'$bin/initdb' -D '$dir' -U mg --auth=trust -E UTF8 >/dev/null"
  fi
  as_postgres "'$bin/pg_ctl' -D '$dir' status >/dev/null" ||
    as_postgres "'$bin/pg_ctl' -D '$dir' -l '$dir/server.log' -w -o \"-p $port -k '$dir' -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off\" start >/dev/null"
  echo "postgresql+asyncpg://mg@127.0.0.1:$port/postgres"
  ;;
stop)
  bin=$(bindir)
  as_postgres "'$bin/pg_ctl' -D '$dir' -m fast stop >/dev/null" || true
  ;;
*)
  echo "usage: $0 start|stop DIR [PORT]" >&2
  exit 2
  ;;
esac
