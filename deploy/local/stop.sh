#!/usr/bin/env bash
# Stop the daemons started by deploy/local/start.sh (found via the pidfiles in
# .state/run, or by their command line pointing into .state/) and wait for
# them to exit. Data is kept.
#   --clean   also delete the whole state folder (.state/) afterwards.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    printf 'usage: %s [--clean]\n' "$0"
}

clean=0
for arg in "$@"; do
    case $arg in
        --clean) clean=1 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done

if [[ -d $BP_STATE_DIR ]]; then
    lock_state
fi

failed=0
# Reverse start order: Prometheus, ClickHouse, NATS.
for ((i = ${#BP_SERVICES[@]} - 1; i >= 0; i--)); do
    stop_service "${BP_SERVICES[i]}" || failed=1
done

if ((failed)); then
    if ((clean)); then
        die "some services could not be stopped; not deleting $BP_STATE_DIR"
    fi
    die "some services could not be stopped"
fi

if ((clean)); then
    # Refuse anything that does not look like our state folder.
    case $BP_STATE_DIR in
        "" | / | "$BP_ROOT" | "$HOME") die "refusing to delete '$BP_STATE_DIR'" ;;
    esac
    if [[ -e $BP_STATE_DIR ]]; then
        rm -rf -- "$BP_STATE_DIR"
        info "removed $BP_STATE_DIR"
    fi
fi
