#!/usr/bin/env bash
# Start a local PostgreSQL server for gapscope's store tests and export its URL.
#
#   source .ci/postgres.sh      # exports GAPSCOPE_TEST_PG_URL for the following `make test`
#   bash .ci/postgres.sh        # same work; prints the URL (export it yourself)
#
# What it does, idempotently (a second run changes nothing and prints the same URL):
#   1. installs Debian's `postgresql` package with apt-get when no server binaries exist
#      (needs root, or sudo);
#   2. starts a server that listens on 127.0.0.1 only: the Debian cluster through
#      pg_ctlcluster when that tool exists, else a private data directory through pg_ctl;
#   3. creates a login role and a database for the tests (the role may CREATE DATABASE, so
#      the tests can make one throw-away database per test);
#   4. exports GAPSCOPE_TEST_PG_URL=postgresql+psycopg://ROLE:PASSWORD@127.0.0.1:PORT/DB
#
# Settings (environment, all optional):
#   GAPSCOPE_PG_PORT (5432)  GAPSCOPE_PG_ROLE (gapscope)  GAPSCOPE_PG_PASSWORD (gapscope)
#   GAPSCOPE_PG_DB (gapscope_test)  GAPSCOPE_PG_DIR (/var/tmp/gapscope-pg, pg_ctl path only)
#   GAPSCOPE_PG_MODE (auto | pg_ctl: skip the Debian cluster tools, use a private data dir)
# The password is a throw-away credential for a server reachable from this machine only.

_gapscope_pg_main() {
    local port="${GAPSCOPE_PG_PORT:-5432}"
    local role="${GAPSCOPE_PG_ROLE:-gapscope}"
    local password="${GAPSCOPE_PG_PASSWORD:-gapscope}"
    local db="${GAPSCOPE_PG_DB:-gapscope_test}"
    local datadir="${GAPSCOPE_PG_DIR:-/var/tmp/gapscope-pg}"
    local log="[postgres.sh]"

    # Identifiers go into SQL below; keep them to plain names.
    local name
    for name in "$role" "$db"; do
        if ! [[ "$name" =~ ^[a-z_][a-z0-9_]*$ ]]; then
            echo "$log role/database name must match [a-z_][a-z0-9_]*, got '$name'" >&2
            return 1
        fi
    done
    if [[ "$password" == *"'"* ]]; then
        echo "$log GAPSCOPE_PG_PASSWORD must not contain a single quote" >&2
        return 1
    fi

    local asroot=()
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null 2>&1; then asroot=(sudo -n); else asroot=(false); fi
    fi

    # 1. install ---------------------------------------------------------------------------
    if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
        echo "$log installing Debian's postgresql package" >&2
        "${asroot[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || return 1
        "${asroot[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends postgresql >&2 || return 1
    fi
    local ver
    ver="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
    local bindir="/usr/lib/postgresql/$ver/bin"

    # run a command as the postgres OS user
    _gapscope_as_pg() {
        if [ "$(id -un)" = postgres ]; then
            "$@"
        elif [ "$(id -u)" = 0 ]; then
            local q
            q="$(printf '%q ' "$@")"
            su postgres -s /bin/sh -c "$q"
        else
            sudo -n -u postgres "$@"
        fi
    }

    # 2. start -----------------------------------------------------------------------------
    local sockdir
    if [ "${GAPSCOPE_PG_MODE:-auto}" != pg_ctl ] && command -v pg_ctlcluster >/dev/null 2>&1 \
            && [ -d /etc/postgresql ]; then
        if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -qx "$ver main"; then
            echo "$log creating cluster $ver/main on port $port" >&2
            "${asroot[@]}" pg_createcluster "$ver" main --port "$port" >&2 || return 1
        fi
        # listen on 127.0.0.1 only, on $port: a drop-in read after postgresql.conf
        local dropin="/etc/postgresql/$ver/main/conf.d/gapscope.conf"
        local want
        want="$(printf "listen_addresses = '127.0.0.1'\nport = %s\n" "$port")"
        if [ "$(cat "$dropin" 2>/dev/null)" != "$want" ]; then
            printf '%s\n' "$want" | "${asroot[@]}" tee "$dropin" >/dev/null || return 1
            "${asroot[@]}" pg_conftool "$ver" main set port "$port" >&2 || return 1
            if pg_lsclusters -h | awk -v v="$ver" '$1==v && $2=="main" {print $4}' | grep -q online; then
                "${asroot[@]}" pg_ctlcluster "$ver" main restart >&2 || return 1
            fi
        fi
        if ! pg_lsclusters -h | awk -v v="$ver" '$1==v && $2=="main" {print $4}' | grep -q online; then
            echo "$log starting cluster $ver/main" >&2
            "${asroot[@]}" pg_ctlcluster "$ver" main start >&2 || return 1
        fi
        sockdir=/var/run/postgresql
    else
        sockdir="$datadir"
        if [ ! -f "$datadir/PG_VERSION" ]; then
            echo "$log initdb $datadir" >&2
            "${asroot[@]}" mkdir -p "$datadir" || return 1
            "${asroot[@]}" chown postgres: "$datadir" || return 1
            _gapscope_as_pg "$bindir/initdb" -D "$datadir" -A peer --auth-host=scram-sha-256 >&2 || return 1
        fi
        if ! _gapscope_as_pg "$bindir/pg_ctl" -D "$datadir" status >/dev/null 2>&1; then
            echo "$log starting server in $datadir" >&2
            _gapscope_as_pg "$bindir/pg_ctl" -D "$datadir" -w -l "$datadir/server.log" \
                -o "-c listen_addresses=127.0.0.1 -p $port -k $datadir" start >&2 || return 1
        fi
    fi

    local i
    for i in $(seq 1 60); do
        if "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port"; then break; fi
        sleep 0.5
    done
    if ! "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port"; then
        echo "$log server on 127.0.0.1:$port did not become ready" >&2
        return 1
    fi

    # 3. role and database -----------------------------------------------------------------
    _gapscope_as_pg "$bindir/psql" -q -X -v ON_ERROR_STOP=1 -h "$sockdir" -p "$port" -d postgres >&2 <<SQL || return 1
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$role') THEN
    CREATE ROLE $role LOGIN CREATEDB PASSWORD '$password';
  ELSE
    ALTER ROLE $role LOGIN CREATEDB PASSWORD '$password';
  END IF;
END
\$\$;
SQL
    if ! _gapscope_as_pg "$bindir/psql" -X -tA -h "$sockdir" -p "$port" -d postgres \
            -c "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
        _gapscope_as_pg "$bindir/createdb" -h "$sockdir" -p "$port" -O "$role" "$db" >&2 || return 1
    fi

    # 4. export ----------------------------------------------------------------------------
    export GAPSCOPE_TEST_PG_URL="postgresql+psycopg://$role:$password@127.0.0.1:$port/$db"
    echo "$GAPSCOPE_TEST_PG_URL"
    return 0
}

_gapscope_pg_main
_gapscope_pg_status=$?
unset -f _gapscope_pg_main _gapscope_as_pg
if [ "${BASH_SOURCE[0]}" != "$0" ]; then
    # sourced: hand the status to the caller without exiting its shell
    return "$_gapscope_pg_status" 2>/dev/null || true
else
    exit "$_gapscope_pg_status"
fi
