#!/usr/bin/env bash
# Start or stop a throwaway PostgreSQL server for the test suite.
#
#   eval "$(bash .ci/postgres.sh start)"   # starts it, prints `export AGENT_RESUME_PG_DSN=...`
#   bash .ci/postgres.sh stop              # stops it and deletes its data directory
#
# The server runs as a non-root user (`postgres`, created when missing) on a
# temporary data directory, listens on 127.0.0.1 at a free port and on a Unix
# socket in that directory, and trusts local connections (it is a test server).
# When no initdb is found under /usr/lib/postgresql/*/bin, Debian's
# `postgresql` package is installed (CI runs as root on a fresh machine).
# The state of a running server is kept in $AGENT_RESUME_PG_STATE
# (default /tmp/agent-resume-pg.state) so that `stop` finds it.
# AGENT_RESUME_PG_FSYNC=on starts it with fsync on (what users run; for
# benchmarks); the default, off, is faster for tests.
# Progress goes to stderr; only the export line goes to stdout.
set -euo pipefail

STATE=${AGENT_RESUME_PG_STATE:-/tmp/agent-resume-pg.state}
PG_USER=postgres

log() { echo "postgres.sh: $*" >&2; }

find_bin() {
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

as_user() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u "$PG_USER" -- "$@"
    else
        "$@"
    fi
}

start() {
    local bin
    if ! bin=$(find_bin); then
        log "no PostgreSQL server found; installing Debian's postgresql package"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq postgresql >&2
        bin=$(find_bin)
    fi
    if [ "$(id -u)" = 0 ]; then
        if ! id "$PG_USER" >/dev/null 2>&1; then
            useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER"
        fi
    else
        PG_USER=$(id -un)
    fi
    local dir port
    dir=$(mktemp -d /tmp/agent-resume-pg.XXXXXX)
    chown "$PG_USER" "$dir" 2>/dev/null || true
    chmod 700 "$dir"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_user "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-locale >/dev/null
    as_user "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-h 127.0.0.1 -p $port -k $dir -c fsync=${AGENT_RESUME_PG_FSYNC:-off} -c max_connections=200" start >/dev/null
    as_user "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -q \
        -c "CREATE DATABASE agent_resume" >/dev/null
    printf 'BIN=%q\nDIR=%q\nPORT=%q\nUSER_=%q\n' "$bin" "$dir" "$port" "$PG_USER" >"$STATE"
    log "PostgreSQL started in $dir on 127.0.0.1:$port"
    echo "export AGENT_RESUME_PG_DSN=postgresql://postgres@127.0.0.1:$port/agent_resume"
}

stop() {
    if [ ! -f "$STATE" ]; then
        log "no server to stop ($STATE not found)"
        return 0
    fi
    # shellcheck disable=SC1090
    . "$STATE"
    PG_USER=$USER_
    as_user "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null || true
    rm -rf "$DIR" "$STATE"
    log "PostgreSQL stopped"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: bash .ci/postgres.sh start|stop" >&2; exit 2 ;;
esac
