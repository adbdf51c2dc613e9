#!/bin/bash
# badgepulse-entrypoint BINARY [ARG...]
#
# Entrypoint of the badgepulse images. Does the two things a container
# platform needs and the binaries deliberately do not, then execs BINARY:
#
# 1. One config file from several. The binaries read a single --config
#    file; Kubernetes keeps settings in a ConfigMap and keys in a Secret.
#      BADGEPULSE_CONFIG_FILES=/etc/badgepulse/badgepulse.toml:/etc/badgepulse/secret/secrets.toml
#    concatenates those TOML files (in order, each must define different
#    tables) into BADGEPULSE_CONFIG_OUT (default /tmp/badgepulse.toml) and
#    appends `--config <that file>` to the arguments. Do not pass --config
#    yourself as well.
#
# 2. Aggregator partitions from a StatefulSet ordinal (only when BINARY is
#    badgepulse-aggregator). With
#      BADGEPULSE_AGGREGATOR_INSTANCES=N  and  BADGEPULSE__NATS__PARTITIONS=P
#    instance i (BADGEPULSE_AGGREGATOR_INSTANCE, or the trailing -<i> of
#    BADGEPULSE_POD_NAME / HOSTNAME, as in StatefulSet pod names) owns the
#    partitions p in 0..P-1 with p mod N = i, exported as
#    BADGEPULSE__AGGREGATOR__PARTITIONS. Instances 0..N-1 together own every
#    partition exactly once. A single instance (N = 1) gets no list, which
#    means "all". It refuses to start an instance that would own no
#    partition (an empty list would mean "all") or whose ordinal is not
#    below N. An explicit BADGEPULSE__AGGREGATOR__PARTITIONS wins over this
#    mapping.
#
# Without those variables it only execs BINARY with its arguments.
set -euo pipefail

die() {
    printf 'badgepulse-entrypoint: %s\n' "$*" >&2
    exit 64
}

(($# >= 1)) || die "usage: badgepulse-entrypoint BINARY [ARG...]"

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

if [[ ${1##*/} == badgepulse-aggregator && -n ${BADGEPULSE_AGGREGATOR_INSTANCES:-} &&
    -z ${BADGEPULSE__AGGREGATOR__PARTITIONS:-} ]]; then
    instances=$BADGEPULSE_AGGREGATOR_INSTANCES
    is_uint "$instances" && ((instances >= 1)) ||
        die "BADGEPULSE_AGGREGATOR_INSTANCES must be a positive integer, got '$instances'"
    partitions=${BADGEPULSE__NATS__PARTITIONS:-}
    is_uint "$partitions" && ((partitions >= 1)) ||
        die "BADGEPULSE_AGGREGATOR_INSTANCES needs BADGEPULSE__NATS__PARTITIONS (a positive integer), got '$partitions'"
    instance=${BADGEPULSE_AGGREGATOR_INSTANCE:-}
    if [[ -z $instance ]]; then
        name=${BADGEPULSE_POD_NAME:-${HOSTNAME:-$(cat /proc/sys/kernel/hostname)}}
        [[ $name =~ -([0-9]+)$ ]] ||
            die "cannot tell the instance number from the name '$name' (expected <name>-<ordinal>); set BADGEPULSE_AGGREGATOR_INSTANCE"
        instance=${BASH_REMATCH[1]}
    fi
    is_uint "$instance" || die "BADGEPULSE_AGGREGATOR_INSTANCE must be a number, got '$instance'"
    instance=$((10#$instance))
    ((instance < instances)) ||
        die "instance $instance is not below BADGEPULSE_AGGREGATOR_INSTANCES=$instances: scale the StatefulSet and that variable together"
    ((instance < partitions)) ||
        die "instance $instance would own no partition (nats.partitions = $partitions): run at most $partitions instances"
    if ((instances == 1)); then
        printf 'badgepulse-entrypoint: instance 0 of 1 owns every partition of %s\n' "$partitions" >&2
    else
        owned=()
        for ((p = instance; p < partitions; p += instances)); do
            owned+=("$p")
        done
        BADGEPULSE__AGGREGATOR__PARTITIONS=$(IFS=,; printf '%s' "${owned[*]}")
        export BADGEPULSE__AGGREGATOR__PARTITIONS
        printf 'badgepulse-entrypoint: instance %s of %s owns partitions %s of %s\n' \
            "$instance" "$instances" "$BADGEPULSE__AGGREGATOR__PARTITIONS" "$partitions" >&2
    fi
fi

args=("$@")
if [[ -n ${BADGEPULSE_CONFIG_FILES:-} ]]; then
    out=${BADGEPULSE_CONFIG_OUT:-/tmp/badgepulse.toml}
    IFS=: read -r -a files <<<"$BADGEPULSE_CONFIG_FILES"
    tmp="$out.tmp.$$"
    : >"$tmp" || die "cannot write $tmp (is its folder writable?)"
    for f in "${files[@]}"; do
        [[ -n $f ]] || continue
        [[ -r $f ]] || die "config file '$f' (from BADGEPULSE_CONFIG_FILES) is not readable"
        {
            printf '# ---- %s\n' "$f"
            cat "$f"
            printf '\n'
        } >>"$tmp"
    done
    mv -f "$tmp" "$out"
    args+=(--config "$out")
fi

exec "${args[@]}"
