#!/usr/bin/env bash
# Benchmark: the view pixel of badgepulse-ingest, publishing durably to
# JetStream, against nginx's empty_gif with an access log (the baseline a
# user would otherwise deploy), both driven by wrk in the same run.
#
#   bench/ingest.sh [DURATION_SECONDS] [CONNECTIONS] [ROUNDS]
#
# Each round runs wrk for DURATION_SECONDS against nginx, then against
# ingest. On a shared VM the machine's speed drifts by a third within a
# minute, so the ratio is taken within each round and the median round is
# reported. Prints requests/s, p99 latency and peak RSS of both, and the
# ratios.
# Targets (issue 3): ingest >= 0.7x nginx requests/s, p99 < 10 ms at 64
# connections, RSS < 64 MiB.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/env.sh"
cd "$ROOT"
DURATION=${1:-20}
CONNECTIONS=${2:-64}
ROUNDS=${3:-5}
THREADS=2

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need+=(nginx-light)
if ((${#need[@]})); then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
deploy/local/install.sh
cargo build --release --locked -q -p badgepulse-ingest

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 200); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.05; done; echo "not ready: $1" >&2; exit 1; }
peak_rss_kib() { # sum of VmHWM over the given pids
    local total=0 p v
    for p in "$@"; do
        v=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

NATS_PORT=$(free_port)
/usr/sbin/nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$WORK/nats" >"$WORK/nats.log" 2>&1 &
PIDS+=($!)
INGEST_PORT=$(free_port)
INGEST_ADMIN_PORT=$(free_port)
cat >"$WORK/ingest.toml" <<TOML
[nats]
url = "nats://127.0.0.1:$NATS_PORT"
[ingest]
bind = "127.0.0.1:$INGEST_PORT"
admin_bind = "127.0.0.1:$INGEST_ADMIN_PORT"
# One benchmark client: lift the per-client limit out of the way.
rate_limit_per_minute = 1000000000
[ingest.pixel_keys]
k1 = "benchmark-pixel-key-0123456789"
TOML
"$CARGO_TARGET_DIR/release/badgepulse-ingest" --config "$WORK/ingest.toml" >"$WORK/ingest.log" 2>&1 &
INGEST_PID=$!
PIDS+=("$INGEST_PID")
wait_http "http://127.0.0.1:$INGEST_ADMIN_PORT/readyz"
URL_PATH=$("$CARGO_TARGET_DIR/release/badgepulse-ingest" --config "$WORK/ingest.toml" sign-url \
    --org bench --issuer i1 --badge-class b1 --assertion a1 | head -1 | sed "s|^http://127.0.0.1:8080||")

NGINX_PORT=$(free_port)
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<NGINX
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 4096; }
http {
    access_log $WORK/nginx/access.log;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location = /p.gif { empty_gif; add_header Cache-Control no-store; }
    }
}
NGINX
/usr/sbin/nginx -c "$WORK/nginx/nginx.conf" -g 'daemon off;' &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
wait_http "http://127.0.0.1:$NGINX_PORT/p.gif"

UA="Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
run_wrk() { # URL -> "requests_per_sec p99_ms"
    # The previous target's writes (nginx's access log, JetStream's files)
    # reach the disk now, not during this target's run.
    sync
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "User-Agent: $UA" \
        -H "Referer: https://www.linkedin.com/feed/" "$1" >"$WORK/wrk.out"
    local rps p99
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$WORK/wrk.out")
    p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; print v}' "$WORK/wrk.out")
    echo "$rps $p99"
}

echo "wrk: $THREADS threads, $CONNECTIONS connections, ${DURATION}s per target and round, $ROUNDS rounds, on $(nproc) cores"
: >"$WORK/rounds"
for round in $(seq 1 "$ROUNDS"); do
    read -r NGINX_RPS NGINX_P99 < <(run_wrk "http://127.0.0.1:$NGINX_PORT/p.gif")
    read -r INGEST_RPS INGEST_P99 < <(run_wrk "http://127.0.0.1:$INGEST_PORT$URL_PATH")
    echo "$NGINX_RPS $NGINX_P99 $INGEST_RPS $INGEST_P99" >>"$WORK/rounds"
    printf 'round %d: nginx %.0f req/s (p99 %.2f ms), ingest %.0f req/s (p99 %.2f ms), ratio %.2f\n' "$round" "$NGINX_RPS" "$NGINX_P99" "$INGEST_RPS" "$INGEST_P99" \
        "$(awk -v a="$INGEST_RPS" -v b="$NGINX_RPS" 'BEGIN {print a / b}')"
done
# The median round by ratio (the upper one of an even count).
read -r NGINX_RPS NGINX_P99 INGEST_RPS INGEST_P99 < <(
    awk '{print $3 / $1, $0}' "$WORK/rounds" | sort -g | awk -v n="$ROUNDS" 'NR == int(n / 2) + 1 {print $2, $3, $4, $5}')
NGINX_RSS=$(peak_rss_kib "$NGINX_PID" $(pgrep -P "$NGINX_PID" || true))
INGEST_RSS=$(peak_rss_kib "$INGEST_PID")
sleep 1
METRICS=$(curl -fsS "http://127.0.0.1:$INGEST_ADMIN_PORT/metrics")
ACCEPTED=$(awk '/^badgepulse_ingest_beacons_total\{kind="view",outcome="accepted"\}/ {print $2}' <<<"$METRICS")
# Every other outcome of the view pixel: a pixel answered but dropped
# (buffer full) would flatter the ratio, so it is printed next to it.
OTHER=$(awk '/^badgepulse_ingest_beacons_total\{kind="view"/ && !/accepted/ && $2 > 0 {sub(/.*outcome="/, ""); sub(/"\}/, ""); printf "%s%s", sep, $0; sep = ", "}' <<<"$METRICS")
BATCHES=$(awk '/^badgepulse_ingest_batch_size_count/ {print $2}' <<<"$METRICS")
PUBLISHED=$(awk '/^badgepulse_ingest_batch_size_sum/ {print $2}' <<<"$METRICS")

printf '\nmedian round:\n%-34s %14s %10s %12s\n' target "requests/s" "p99 ms" "peak RSS MiB"
printf '%-34s %14.0f %10.2f %12.1f\n' "nginx empty_gif + access_log" "$NGINX_RPS" "$NGINX_P99" "$(awk -v a="$NGINX_RSS" 'BEGIN {print a / 1024}')"
printf '%-34s %14.0f %10.2f %12.1f\n' "badgepulse-ingest /p.gif" "$INGEST_RPS" "$INGEST_P99" "$(awk -v a="$INGEST_RSS" 'BEGIN {print a / 1024}')"
printf '\ningest / nginx requests/s: %.2f (target >= 0.70)\n' "$(awk -v a="$INGEST_RPS" -v b="$NGINX_RPS" 'BEGIN {print a / b}')"
printf 'ingest p99: %.2f ms (target < 10; worst round %.2f ms), peak RSS: %.1f MiB (target < 64)\n' "$INGEST_P99" \
    "$(awk 'BEGIN {m = 0} $4 > m {m = $4} END {print m}' "$WORK/rounds")" "$(awk -v a="$INGEST_RSS" 'BEGIN {print a / 1024}')"
printf 'beacons accepted: %s; published with PubAck: %s in %s JetStream messages; other outcomes: %s\n' "${ACCEPTED:-?}" "${PUBLISHED:-?}" "${BATCHES:-?}" "${OTHER:-none}"
