#!/usr/bin/env bash
# Start the database and broker servers tests/test_drivers.py talks to, if they are not
# already accepting connections, then wait (bounded) until each accepts. Idempotent: a
# service whose port already accepts is left alone. Runs as root on the CI machine.
set -u

WAIT_SECONDS=${WAIT_SECONDS:-60}

accepts() {  # accepts PORT: true when something on 127.0.0.1:PORT accepts a TCP connection
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

start_postgres() {
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
}
start_mariadb() {
    # mariadbd wants its socket directory, which tmpfs /run loses across reboots.
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
}
start_redis() {
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log
}
start_rabbitmq() {
    rabbitmq-server -detached
}
start_mosquitto() {
    mosquitto -d -c /etc/mosquitto/mosquitto.conf
}
start_nats() {
    mkdir -p /var/lib/nats-server
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
        -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
}

SERVICES="postgres:5432 mariadb:3306 redis:6379 rabbitmq:5672 mosquitto:1883 nats:4222"

for item in $SERVICES; do
    name=${item%%:*} port=${item##*:}
    if accepts "$port"; then
        echo "services: $name already accepts on 127.0.0.1:$port"
    else
        echo "services: starting $name"
        "start_$name" || echo "services: starting $name failed (exit $?)" >&2
    fi
done

deadline=$((SECONDS + WAIT_SECONDS))
missing=""
for item in $SERVICES; do
    name=${item%%:*} port=${item##*:}
    until accepts "$port"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            missing="$missing $name:$port"
            break
        fi
        sleep 0.5
    done
done

if [ -n "$missing" ]; then
    echo "services: not accepting after ${WAIT_SECONDS}s:$missing" >&2
    exit 1
fi
# RabbitMQ opens its AMQP port before it finishes booting; rabbitmqctl await_startup waits
# for the boot to complete (the tests create users with rabbitmqctl).
if command -v rabbitmqctl >/dev/null; then
    timeout "$WAIT_SECONDS" rabbitmqctl await_startup >/dev/null 2>&1 \
        || echo "services: rabbitmqctl await_startup did not succeed" >&2
fi
echo "services: all accepting"
