#!/usr/bin/env bash
# Start PostgreSQL and Redis on 127.0.0.1 when they are not up, and create the databases the
# tests use. Uses the commands this machine kind documents; safe to rerun.
set -uo pipefail
pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

if ! pg_up; then
    echo "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    for _ in $(seq 1 30); do pg_up && break; sleep 1; done
fi
if ! redis_up; then
    echo "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
    for _ in $(seq 1 30); do redis_up && break; sleep 1; done
fi
pg_up || { echo "PostgreSQL is not reachable on 127.0.0.1:5432"; exit 1; }
redis_up || { echo "Redis is not reachable on 127.0.0.1:6379"; exit 1; }
for db in cic_seeding_test; do
    psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1 \
        || psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE $db" >/dev/null
done
echo "services up: PostgreSQL 127.0.0.1:5432, Redis 127.0.0.1:6379"
