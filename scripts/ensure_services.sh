#!/usr/bin/env bash
# Make sure PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) answer before the tests.
# Starts them when installed but stopped; installs them with apt-get when missing and root.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {  # name port
  for _ in $(seq 1 60); do
    port_open "$2" && { echo "$1 is up on 127.0.0.1:$2"; return 0; }
    sleep 0.5
  done
  echo "$1 did not come up on 127.0.0.1:$2" >&2
  return 1
}

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "$* missing and not root: install it, or start it on localhost" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  port_open 5432 && { echo "PostgreSQL is up on 127.0.0.1:5432"; return; }
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "PostgreSQL not installed: installing"
    apt_install postgresql
    version=$(ls /etc/postgresql | sort -V | tail -n1)
    # The tests connect as postgres over TCP without a password, as on the dev machines.
    sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' \
      "/etc/postgresql/$version/main/pg_hba.conf"
  fi
  version=$(ls /etc/postgresql | sort -V | tail -n1)
  echo "Starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for PostgreSQL 5432
}

ensure_redis() {
  port_open 6379 && { echo "Redis is up on 127.0.0.1:6379"; return; }
  if ! command -v redis-server >/dev/null; then
    echo "Redis not installed: installing"
    apt_install redis-server
  fi
  dir=/var/lib/redis; [ -w "$dir" ] || dir=$(mktemp -d)
  log=/var/log/redis/ci.log; [ -w "$(dirname "$log")" ] || log="$dir/redis.log"
  echo "Starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir "$dir" --logfile "$log"
  wait_for Redis 6379
}

ensure_postgres
ensure_redis
