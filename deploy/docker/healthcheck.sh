#!/bin/bash
# badgepulse-healthcheck PORT [PATH] [HOST]
#
# Exits 0 if `GET http://HOST:PORT/PATH` answers 200, 1 otherwise. The
# Docker HEALTHCHECK of the badgepulse images: debian:bookworm-slim has no
# curl or wget, so this speaks HTTP/1.1 over bash's /dev/tcp. PATH defaults
# to /healthz, HOST to 127.0.0.1 (the services bind 0.0.0.0 in a container).
set -uo pipefail

port=${1:?usage: badgepulse-healthcheck PORT [PATH] [HOST]}
path=${2:-/healthz}
host=${3:-127.0.0.1}

exec 3<>"/dev/tcp/$host/$port" 2>/dev/null || {
    echo "badgepulse-healthcheck: cannot connect to $host:$port" >&2
    exit 1
}
printf 'GET %s HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n\r\n' "$path" "$host" "$port" >&3
if ! IFS= read -r -t 5 status <&3; then
    echo "badgepulse-healthcheck: no answer from $host:$port$path" >&2
    exit 1
fi
status=${status%$'\r'}
if [[ $status =~ ^HTTP/1\.[01]\ 200( |$) ]]; then
    exit 0
fi
echo "badgepulse-healthcheck: $host:$port$path answered '$status'" >&2
exit 1
