#!/bin/sh
# A throwaway PostgreSQL cluster for the specs of the PostgreSQL backend.
#
#   spec/pg.sh start DIR   makes a cluster in DIR (initdb), starts it on a
#                          Unix socket in DIR and a free loopback port, and
#                          prints its base URI (postgresql://restock@...)
#   spec/pg.sh stop DIR    stops it (fast) and removes DIR
#   spec/pg.sh ctl DIR stop|start   stops or starts it, keeping its data
#                          (the specs of a database that goes away)
#
# It runs as an unprivileged user: the caller when it is not root, else the
# `postgres` user Debian's postgresql package makes. Durability is off
# (fsync, synchronous commits): a throwaway cluster trades it for speed;
# PG_DURABLE=1 keeps PostgreSQL's defaults (the benchmark's cluster).
set -eu

bindir() {
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
    pg_config --bindir
    return
  fi
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$d" ] || { echo "spec/pg.sh: no PostgreSQL server (apt-get install postgresql)" >&2; exit 1; }
  echo "$d"
}

# Runs a command as the cluster's owner.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

cmd=${1:?usage: spec/pg.sh start|stop|ctl DIR}
dir=${2:?usage: spec/pg.sh start|stop|ctl DIR}
bin=$(bindir)

case "$cmd" in
  start)
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    as_owner "$bin/initdb" -D "$dir/data" -U restock --auth=trust -E UTF8 \
      --locale=C.UTF-8 --no-instructions >"$dir/initdb.log" 2>&1 || {
      cat "$dir/initdb.log" >&2; exit 1; }
    port=$(free_port)
    cat >>"$dir/data/postgresql.conf" <<EOF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
max_connections = 400
shared_buffers = 128MB
log_min_messages = warning
log_statement = none
EOF
    if [ "${PG_DURABLE:-0}" != 1 ]; then
      cat >>"$dir/data/postgresql.conf" <<EOF
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    fi
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
    echo "$port" >"$dir/port"
    # One database for the suite: each server gets a schema of its own
    # in it (spec/support/helpers.lua).
    as_owner "$bin/psql" -X -q -h "$dir" -p "$port" -U restock -d postgres \
      -c "CREATE DATABASE specs" >/dev/null
    echo "postgresql://restock@127.0.0.1:$port/specs"
    ;;
  ctl)
    what=${3:?usage: spec/pg.sh ctl DIR stop|start}
    if [ "$what" = stop ]; then
      as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    else
      as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        start >/dev/null
    fi
    ;;
  stop)
    if [ -f "$dir/data/postmaster.pid" ]; then
      as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop \
        >/dev/null 2>&1 || true
    fi
    case "$dir" in /tmp/*) rm -rf "$dir" ;; esac
    ;;
  *)
    echo "usage: spec/pg.sh start|stop|ctl DIR" >&2
    exit 2
    ;;
esac
