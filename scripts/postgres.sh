#!/usr/bin/env bash
# A throw-away PostgreSQL server for tests and benchmarks, on loopback only, with its data in .pgdata/.
# Usage: scripts/postgres.sh start|stop|status|url
#   start  installs the server from Debian packages if no postgres/initdb binary is found, initdb's .pgdata/
#          (owned by the `postgres` system user when run as root: postgres refuses to run as root), starts it on
#          127.0.0.1 on a free port (PLANNER_PG_PORT, default 55432, else the next free one), creates the database
#          planner_test, and prints its URL on stdout (the only thing printed on stdout). Idempotent.
#   stop   stops the server (the data stays in .pgdata/).
#   url    prints the URL of the running server.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="${PLANNER_PGDATA:-$PWD/.pgdata}"  # state: port, password; the cluster is in $ROOT/data
PGDATA="$ROOT/data"
DB=planner_test
PGUSER_NAME=postgres
log() { echo "postgres.sh: $*" >&2; }

find_bin() {
  local p
  for name in pg_ctl initdb postgres; do
    p="$(command -v "$name" 2>/dev/null || true)"
    if [ -n "$p" ] && [ -x "$(dirname "$(readlink -f "$p")")/pg_ctl" ]; then
      dirname "$(readlink -f "$p")"
      return 0
    fi
  done
  p="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  [ -n "$p" ] && [ -x "$p/pg_ctl" ] && { echo "$p"; return 0; }
  return 1
}

ensure_installed() {
  if ! BIN="$(find_bin)"; then
    log "no PostgreSQL binaries found; installing the Debian package"
    if [ "$(id -u)" = 0 ]; then
      apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >&2
    else
      sudo apt-get update >&2 && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >&2
    fi
    BIN="$(find_bin)" || { log "PostgreSQL still not found after install"; exit 1; }
  fi
}

# Run a command as the server's owner: the postgres system user when we are root, else ourselves.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u "$PGUSER_NAME" -- "$@"
  else
    "$@"
  fi
}

ensure_user() {
  if [ "$(id -u)" = 0 ] && ! id "$PGUSER_NAME" >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/postgresql --shell /bin/bash "$PGUSER_NAME"
  fi
}

port_free() {
  python3 -c 'import socket,sys
s=socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()' "$1"
}

pick_port() {
  local port="${PLANNER_PG_PORT:-55432}"
  for _ in $(seq 1 50); do
    if port_free "$port"; then echo "$port"; return 0; fi
    port=$((port + 1))
  done
  log "no free port found near ${PLANNER_PG_PORT:-55432}"
  exit 1
}

running() { [ -f "$PGDATA/PG_VERSION" ] && as_owner "$BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; }

url() {
  local port password
  port="$(cat "$ROOT/port")"
  password="$(cat "$ROOT/password")"
  echo "postgresql+psycopg://${PGUSER_NAME}:${password}@127.0.0.1:${port}/${DB}"
}

init_cluster() {
  [ -f "$PGDATA/PG_VERSION" ] && return 0
  log "initdb into $PGDATA"
  mkdir -p "$PGDATA"
  python3 -c 'import secrets; print(secrets.token_hex(12))' > "$ROOT/pwfile"
  chmod 700 "$ROOT" "$PGDATA"
  if [ "$(id -u)" = 0 ]; then chown -R "$PGUSER_NAME" "$ROOT"; fi
  as_owner "$BIN/initdb" -D "$PGDATA" -U "$PGUSER_NAME" --pwfile="$ROOT/pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >&2 \
    || as_owner "$BIN/initdb" -D "$PGDATA" -U "$PGUSER_NAME" --pwfile="$ROOT/pwfile" \
      --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C >&2
  mv "$ROOT/pwfile" "$ROOT/password"
}

start() {
  ensure_installed
  ensure_user
  init_cluster
  if ! running; then
    local port
    port="$(pick_port)"
    echo "$port" > "$ROOT/port"
    if [ "$(id -u)" = 0 ]; then chown "$PGUSER_NAME" "$ROOT/port"; fi
    log "starting on 127.0.0.1:$port"
    as_owner "$BIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w -t 60 \
      -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$PGDATA -c fsync=off" start >&2
  fi
  local port
  port="$(cat "$ROOT/port")"
  if [ "$(as_owner "$BIN/psql" -h "$PGDATA" -p "$port" -U "$PGUSER_NAME" -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]; then
    as_owner "$BIN/createdb" -h "$PGDATA" -p "$port" -U "$PGUSER_NAME" "$DB"
  fi
  url
}

stop() {
  if BIN="$(find_bin)" && running; then
    as_owner "$BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >&2
  else
    log "not running"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) BIN="$(find_bin)" && running && { log "running"; url; } || { log "not running"; exit 3; } ;;
  url) BIN="$(find_bin)"; running || { log "not running (use: $0 start)"; exit 3; }; url ;;
  *) echo "usage: $0 start|stop|status|url" >&2; exit 2 ;;
esac
