#!/usr/bin/env bash
# Start PostgreSQL and Redis on 127.0.0.1 when they are not up, and create the databases the
# tests use. Uses the commands this machine kind documents; safe to rerun. The test session
# runs it by itself when something is missing (tests/services.py), so nobody has to.
# Knobs (for the tests of this script; the defaults are what the tests use):
#   CIC_SERVICES_REDIS_PORT (6379), CIC_SERVICES_REDIS_DIR (/var/lib/redis),
#   CIC_SERVICES_REDIS_LOG (/var/log/redis/ci.log), CIC_SERVICES_DATABASES (cic_seeding_test)
set -uo pipefail
redis_port="${CIC_SERVICES_REDIS_PORT:-6379}"
redis_dir="${CIC_SERVICES_REDIS_DIR:-/var/lib/redis}"
redis_log="${CIC_SERVICES_REDIS_LOG:-/var/log/redis/ci.log}"
databases="${CIC_SERVICES_DATABASES:-cic_seeding_test}"
pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null | grep -q PONG; }

if ! pg_up; then
    echo "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    for _ in $(seq 1 30); do pg_up && break; sleep 1; done
fi
if ! redis_up; then
    echo "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$redis_port" --save "" \
        --appendonly no --dir "$redis_dir" --logfile "$redis_log" || true
    for _ in $(seq 1 30); do redis_up && break; sleep 1; done
fi
pg_up || { echo "PostgreSQL is not reachable on 127.0.0.1:5432"; exit 1; }
redis_up || { echo "Redis is not reachable on 127.0.0.1:$redis_port"; exit 1; }
for db in $databases; do
    psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1 \
        || psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE $db" >/dev/null
done
echo "services up: PostgreSQL 127.0.0.1:5432, Redis 127.0.0.1:$redis_port"
