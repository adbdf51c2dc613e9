# shellcheck shell=bash
# Shared helpers for deploy/local/*.sh. Source it, do not execute it.
#
# Everything lives under the git-ignored state folder (default: <repo>/.state):
#   .state/run/<service>.pid     pidfiles of the daemons started by start.sh
#   .state/log/                  stdout/stderr of nats-server and prometheus
#   .state/nats/                 NATS JetStream store
#   .state/clickhouse/           generated config + data; server logs in log/
#   .state/prometheus/           Prometheus TSDB

if [[ -n "${BP_LIB_LOADED:-}" ]]; then
    return 0
fi
BP_LIB_LOADED=1

BP_LOCAL_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
BP_ROOT=$(cd "$BP_LOCAL_DIR/../.." && pwd -P)
BP_STATE_DIR=${BADGEPULSE_STATE_DIR:-$BP_ROOT/.state}
BP_RUN_DIR=$BP_STATE_DIR/run
BP_LOG_DIR=$BP_STATE_DIR/log

BP_NATS_PORT=${BADGEPULSE_NATS_PORT:-4222}
BP_NATS_MONITOR_PORT=${BADGEPULSE_NATS_MONITOR_PORT:-${NATS_MONITOR_PORT:-8222}}
BP_CH_HTTP_PORT=${BADGEPULSE_CH_HTTP_PORT:-8123}
BP_CH_TCP_PORT=${BADGEPULSE_CH_TCP_PORT:-9000}
BP_CH_INTERSERVER_PORT=${BADGEPULSE_CH_INTERSERVER_PORT:-9009}
BP_PROM_PORT=${BADGEPULSE_PROM_PORT:-9090}

# Seconds to wait for a service to become ready / to exit.
BP_START_TIMEOUT=${BADGEPULSE_START_TIMEOUT:-60}
BP_STOP_TIMEOUT=${BADGEPULSE_STOP_TIMEOUT:-30}

# The Debian packages install some daemons into /usr/sbin, which is not on
# every user's PATH.
case ":$PATH:" in
    *:/usr/sbin:*) ;;
    *) PATH=$PATH:/usr/sbin:/sbin ;;
esac

info() { printf '%s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# require_port NAME VALUE: VALUE must be a TCP port number.
require_port() {
    local name=$1 value=$2
    if ! [[ $value =~ ^[0-9]+$ ]] || ((value < 1 || value > 65535)); then
        die "$name must be a TCP port number (1-65535), got '$value'"
    fi
}

validate_ports() {
    require_port BADGEPULSE_NATS_PORT "$BP_NATS_PORT"
    require_port BADGEPULSE_NATS_MONITOR_PORT "$BP_NATS_MONITOR_PORT"
    require_port BADGEPULSE_CH_HTTP_PORT "$BP_CH_HTTP_PORT"
    require_port BADGEPULSE_CH_TCP_PORT "$BP_CH_TCP_PORT"
    require_port BADGEPULSE_CH_INTERSERVER_PORT "$BP_CH_INTERSERVER_PORT"
    require_port BADGEPULSE_PROM_PORT "$BP_PROM_PORT"
}

# port_in_use PORT: true if something listens on PORT on the loopback
# interface (or on a wildcard address, which also blocks 127.0.0.1:PORT).
port_in_use() {
    local port=$1
    if command -v ss >/dev/null 2>&1; then
        # Skip the header line (older ss versions have no -H).
        if [[ -n "$(ss -ltn "( sport = :$port )" 2>/dev/null | tail -n +2)" ]]; then
            return 0
        fi
    fi
    # Fallback / second opinion: try to connect with bash's /dev/tcp.
    tcp_connects "$port"
}

# tcp_connects PORT: true if a TCP connection to 127.0.0.1:PORT succeeds.
tcp_connects() {
    # shellcheck disable=SC2016 # $1 is expanded by the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

# wait_for_tcp PORT TIMEOUT [PID]: wait until 127.0.0.1:PORT accepts
# connections. Gives up early if PID is given and that process has exited.
wait_for_tcp() {
    local port=$1 timeout=$2 pid=${3:-}
    local deadline=$((SECONDS + timeout))
    while ((SECONDS < deadline)); do
        if tcp_connects "$port"; then
            return 0
        fi
        if [[ -n $pid ]] && ! pid_alive "$pid"; then
            return 1
        fi
        sleep 0.2
    done
    return 1
}

# wait_for_http URL TIMEOUT [PID]: wait until URL answers with HTTP 2xx.
# Gives up early if PID is given and that process has exited.
wait_for_http() {
    local url=$1 timeout=$2 pid=${3:-}
    local deadline=$((SECONDS + timeout))
    while ((SECONDS < deadline)); do
        if curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; then
            return 0
        fi
        if [[ -n $pid ]] && ! pid_alive "$pid"; then
            return 1
        fi
        sleep 0.2
    done
    return 1
}

# pid_alive PID: true if PID exists and is not a zombie.
pid_alive() {
    local stat
    kill -0 "$1" 2>/dev/null || return 1
    read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

# --- locking ---------------------------------------------------------------

# lock_state: serialize start.sh/stop.sh runs on the same state dir. The lock
# is held on fd 9 until the script exits; start_daemon closes fd 9 for the
# daemons, otherwise they would hold the lock forever.
lock_state() {
    mkdir -p "$BP_RUN_DIR"
    exec 9>"$BP_RUN_DIR/lock"
    if ! flock -w 120 9; then
        die "timed out waiting for the lock $BP_RUN_DIR/lock (another start.sh/stop.sh running?)"
    fi
}

# --- pidfile handling ------------------------------------------------------

BP_SERVICES=(nats clickhouse prometheus)

pidfile_for() { printf '%s/%s.pid\n' "$BP_RUN_DIR" "$1"; }

# service_cmd_matches SERVICE PID: true if PID is the daemon start.sh runs for
# SERVICE from *this* state dir (guards against stale pidfiles / pid reuse).
service_cmd_matches() {
    local service=$1 pid=$2 cmdline exe marker
    [[ -r /proc/$pid/cmdline ]] || return 1
    cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
    [[ -n $cmdline ]] || return 1
    exe=${cmdline%% *}
    exe=${exe##*/}
    case $service in
        nats) [[ $exe == nats-server ]] || return 1
            marker=$BP_STATE_DIR/nats ;;
        clickhouse) [[ $exe == clickhouse-server || $exe == clickhouse ]] || return 1
            marker=$BP_STATE_DIR/clickhouse/config.xml ;;
        prometheus) [[ $exe == prometheus ]] || return 1
            marker=$BP_STATE_DIR/prometheus ;;
        *) return 1 ;;
    esac
    [[ $cmdline == *"$marker"* ]]
}

# find_service_pid SERVICE: print the pid of our running daemon for SERVICE.
# Uses the pidfile; if it is missing or stale, looks for an orphaned daemon
# of ours (same state dir) in /proc and re-adopts it.
find_service_pid() {
    local service=$1 pidfile pid proc
    pidfile=$(pidfile_for "$service")
    if [[ -f $pidfile ]]; then
        pid=$(<"$pidfile")
        if [[ $pid =~ ^[0-9]+$ ]] && service_cmd_matches "$service" "$pid"; then
            printf '%s\n' "$pid"
            return 0
        fi
        rm -f "$pidfile"
    fi
    for proc in /proc/[0-9]*; do
        pid=${proc#/proc/}
        if service_cmd_matches "$service" "$pid"; then
            mkdir -p "$BP_RUN_DIR"
            printf '%s\n' "$pid" >"$pidfile"
            printf '%s\n' "$pid"
            return 0
        fi
    done
    return 1
}

# ensure_port_free PORT ENV_VAR: exit 1 with a clear message if PORT is taken.
# Only call it for services that are not already running from our pidfile.
ensure_port_free() {
    local port=$1 env_var=$2
    if port_in_use "$port"; then
        printf 'port %s is already in use by another process (not started by badgepulse); stop it or set %s\n' \
            "$port" "$env_var" >&2
        exit 1
    fi
}

# start_daemon SERVICE LOGFILE CMD...: start CMD detached in the background,
# stdout/stderr appended to LOGFILE, and record its pid in the pidfile.
# Prints the pid.
start_daemon() {
    local service=$1 logfile=$2 pid
    shift 2
    mkdir -p "$BP_RUN_DIR" "$(dirname "$logfile")"
    printf '\n=== %s starting %s ===\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$service" >>"$logfile"
    # setsid: own session, so the daemon survives the terminal that ran
    # start.sh. A background job of a non-interactive shell is never a
    # process-group leader, so setsid execs in place and $! is the daemon.
    setsid "$@" </dev/null >>"$logfile" 2>&1 9>&- &
    pid=$!
    printf '%s\n' "$pid" >"$(pidfile_for "$service")"
    printf '%s\n' "$pid"
}

# stop_service SERVICE: stop our daemon for SERVICE (TERM, then KILL after
# BP_STOP_TIMEOUT seconds) and remove its pidfile. Returns 1 if it survived.
stop_service() {
    local service=$1 pid deadline
    if ! pid=$(find_service_pid "$service"); then
        rm -f "$(pidfile_for "$service")"
        info "$service: not running"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + BP_STOP_TIMEOUT))
    while pid_alive "$pid" && ((SECONDS < deadline)); do
        sleep 0.2
    done
    if pid_alive "$pid"; then
        warn "$service (pid $pid) did not exit after ${BP_STOP_TIMEOUT}s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 1
    fi
    if pid_alive "$pid"; then
        warn "$service (pid $pid) is still running"
        return 1
    fi
    rm -f "$(pidfile_for "$service")"
    info "$service: stopped (pid $pid)"
}

# show_log_tail FILE: print the end of a log file to stderr (for failures).
show_log_tail() {
    local file=$1
    if [[ -f $file ]]; then
        printf -- '--- last lines of %s ---\n' "$file" >&2
        tail -n 25 "$file" >&2
    fi
}

# xml_escape STRING: escape a string for use in XML text.
xml_escape() {
    local s=$1
    s=${s//&/&amp;}
    s=${s//</&lt;}
    s=${s//>/&gt;}
    printf '%s' "$s"
}
