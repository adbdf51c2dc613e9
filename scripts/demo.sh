#!/usr/bin/env bash
# The whole pipeline with demo traffic, from a fresh machine:
#   scripts/demo.sh        install, build, start NATS + ClickHouse + Prometheus
#                          and the three services, send seeded demo traffic,
#                          check the pipeline against it, print the overview
#                          and where to look
#   scripts/demo.sh stop   stop everything (data kept in .state/)
#
# Each run sends its traffic to orgs of its own (`<org>-<run>`, the run
# named by its start time), so the check compares exactly what this run
# added, however many runs the data already holds. A mismatch exits 1.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

CONFIG="$ROOT/deploy/local/badgepulse.toml"
STATE="${BADGEPULSE_STATE_DIR:-$ROOT/.state}"
RUN="$STATE/run"
LOGS="$STATE/logs"
BIN="$CARGO_TARGET_DIR/release"
SERVICES=(aggregator ingest exporter)
API_KEY="demo-admin-key"

stop_services() {
    local s pid
    for s in "${SERVICES[@]}"; do
        if [[ -f $RUN/$s.pid ]] && pid=$(cat "$RUN/$s.pid") && kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid"
            for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            echo "stopped badgepulse-$s"
        fi
        rm -f "$RUN/$s.pid"
    done
}

if [[ ${1:-} == stop ]]; then
    stop_services
    deploy/local/stop.sh
    exit 0
fi

deploy/local/install.sh
echo "== building (release; the first build takes a few minutes)"
cargo build --release --locked --bins -p badgepulse-ingest -p badgepulse-aggregator -p badgepulse-exporter -p badgepulse-loadgen
deploy/local/start.sh

mkdir -p "$RUN" "$LOGS"
stop_services
for s in "${SERVICES[@]}"; do
    "$BIN/badgepulse-$s" --config "$CONFIG" >"$LOGS/$s.log" 2>&1 &
    echo $! >"$RUN/$s.pid"
done
wait_ready() {
    local url=$1 name=$2
    for _ in $(seq 1 300); do
        curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
        sleep 0.2
    done
    echo "$name did not become ready at $url; its log:" >&2
    tail -n 30 "$LOGS/$name.log" >&2
    exit 1
}
# Probes and metrics are on each service's admin listener (8083, 8082,
# 8084), never on the public ones (8080 pixels and events, 8081 the API).
wait_ready http://127.0.0.1:8082/readyz aggregator
wait_ready http://127.0.0.1:8083/readyz ingest
wait_ready http://127.0.0.1:8084/readyz exporter
echo "== services running (logs in $LOGS)"

RUN_ID="$(date -u +%Y%m%dT%H%M%S)"
echo "== sending demo traffic (run $RUN_ID: orgs named <org>-$RUN_ID)"
"$BIN/badgepulse-loadgen" demo --ingest http://127.0.0.1:8080 --ingest-admin http://127.0.0.1:8083 \
    --token demo-platform-token \
    --kid k1 --key demo-pixel-key-0123456789 --seed 42 --run "$RUN_ID" --ledger "$STATE/demo-ledger.json"

echo "== waiting for the aggregator to write everything"
pending() {
    curl -fsS http://127.0.0.1:8082/metrics |
        awk '/^badgepulse_aggregator_consumer_(pending|ack_pending)\{/ {s += $2} END {print s + 0}'
}
for _ in $(seq 1 300); do
    [[ $(pending) == 0 ]] && break
    sleep 0.2
done
sleep 1

echo "== checking the pipeline against what this run sent (the loadgen ledger)"
if ! "$BIN/badgepulse-loadgen" check --ledger "$STATE/demo-ledger.json" --exporter http://127.0.0.1:8081 \
    --api-key "$API_KEY" --clickhouse http://127.0.0.1:8123; then
    echo "the pipeline does not match the traffic of run $RUN_ID; the services' logs are in $LOGS" >&2
    exit 1
fi

ORG="acme-univ-$RUN_ID"
echo "== overview of the last 30 days of $ORG"
curl -fsS -H "Authorization: Bearer $API_KEY" "http://127.0.0.1:8081/api/v1/overview?org=$ORG" | python3 -m json.tool

cat <<TXT

Where to look:
  analytics API    http://127.0.0.1:8081/api/v1/overview?access_token=$API_KEY&org=$ORG
                   (also &from=YYYY-MM-DD&to=YYYY-MM-DD; every org: without org)
  orgs and badges  http://127.0.0.1:8081/api/v1/scopes?access_token=$API_KEY
  exporter metrics http://127.0.0.1:8084/metrics   (admin listener: every org's figures)
  Prometheus       http://127.0.0.1:9090/graph?g0.expr=badgepulse_badge_events_total
  ClickHouse       clickhouse-client --port 9000 -d badgepulse   (or http://127.0.0.1:8123/play)
  ingest           http://127.0.0.1:8083/metrics   pixel URLs: $BIN/badgepulse-ingest --config $CONFIG sign-url --org ...
  aggregator       http://127.0.0.1:8082/metrics
  logs             $LOGS
Stop everything:   scripts/demo.sh stop
TXT
