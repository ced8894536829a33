# shellcheck shell=bash disable=SC2034 # variables here are used by the sourcing scripts
# Shared helpers for the .ci/docker/*.sh scripts. Sourced, never executed.
#
# Conventions: quiet on success; on failure exactly one line on stderr,
# "<script>: error: <what failed> (<where the details are>)", exit status 1.
# Step output (apt-get, debootstrap, docker build/push, ...) goes to log files
# under $PD_CI_LOG_DIR, never to the terminal.

set -Eeuo pipefail

PD_SCRIPT=${PD_SCRIPT:-$(basename "$0")}
PD_CI_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PD_CI_LOG_DIR=${PD_CI_LOG_DIR:-/var/log/prefect-delivery-ci}
PD_LOCK_DIR=${PD_LOCK_DIR:-/run/lock}

# One engine, one registry: the endpoints every script and test assumes.
PD_DOCKER_SOCK=/var/run/docker.sock
PD_REGISTRY=127.0.0.1:5000

export DEBIAN_FRONTEND=noninteractive
export LC_ALL=C

die() {
    trap - ERR
    printf '%s: error: %s\n' "$PD_SCRIPT" "$*" >&2
    exit 1
}

warn() {
    printf '%s: warning: %s\n' "$PD_SCRIPT" "$*" >&2
}

# Anything that fails without an explicit die() still ends in one clear line.
trap 'die "unexpected failure at line $LINENO: $BASH_COMMAND"' ERR

[[ $(id -u) == 0 ]] || die "must run as root (it installs packages and starts daemons)"

mkdir -p "$PD_CI_LOG_DIR" "$PD_LOCK_DIR"

now() { printf '%s' "$EPOCHREALTIME"; }

# seconds since $1 (a value of now), one decimal
since() {
    local start=$1 end
    end=$(now)
    awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }'
}

# Take an exclusive lock for the rest of the calling process (fd 9).
# Concurrent callers wait instead of racing to start a second daemon.
# Daemons started while it is held must get `9>&-`, or they keep it forever.
take_lock() {
    local name=$1 timeout=${2:-600}
    exec 9>"$PD_LOCK_DIR/prefect-delivery-$name.lock"
    flock -w "$timeout" 9 || die "timed out after ${timeout}s waiting for lock $PD_LOCK_DIR/prefect-delivery-$name.lock"
}

# run_logged LOG DESCRIPTION CMD...: run CMD with its output appended to LOG;
# on failure, die with the last meaningful log line and the log path.
run_logged() {
    local log=$1 desc=$2 rc=0 last
    shift 2
    printf '\n=== %s: %s\n' "$(date -Is)" "$*" >>"$log"
    "$@" >>"$log" 2>&1 </dev/null || rc=$?
    if ((rc != 0)); then
        last=$(grep -v '^[[:space:]]*$' "$log" | tail -n 1 | cut -c1-200)
        die "$desc failed (exit $rc): $last (full log: $log)"
    fi
}

# apt_install PKG...: apt-get update (at most once per hour across all our
# scripts) then install without recommends. Package maintainer scripts are
# not allowed to start services (policy-rc.d exit 101): docker.io and
# docker-registry would otherwise start their default daemons (docker0
# bridge + iptables; a registry on 0.0.0.0:5000 with htpasswd auth) and get
# in the way of the ones these scripts start.
apt_install() {
    local log=$PD_CI_LOG_DIR/apt.log stamp=$PD_LOCK_DIR/prefect-delivery-apt-updated
    command -v apt-get >/dev/null || die "apt-get not found: these scripts expect Debian bookworm; install $* by hand"
    (
        set -Eeuo pipefail
        made_policy=0
        if [[ ! -e /usr/sbin/policy-rc.d ]]; then
            printf '#!/bin/sh\n# temporary, written by %s\nexit 101\n' "$PD_SCRIPT" >/usr/sbin/policy-rc.d
            chmod 755 /usr/sbin/policy-rc.d
            made_policy=1 # read by the EXIT trap
        fi
        trap 'if ((made_policy)); then rm -f /usr/sbin/policy-rc.d; fi' EXIT
        if [[ -z $(find "$stamp" -mmin -60 2>/dev/null) ]]; then
            run_logged "$log" "apt-get update" apt-get -o DPkg::Lock::Timeout=300 update
            touch "$stamp"
        fi
        run_logged "$log" "apt-get install $*" \
            apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "$@"
    ) || exit 1 # the subshell already printed the error line
}

# ensure_cmds CMD:PACKAGE...: install the packages whose command is missing.
ensure_cmds() {
    local spec missing=()
    for spec in "$@"; do
        command -v "${spec%%:*}" >/dev/null 2>&1 || missing+=("${spec#*:}")
    done
    ((${#missing[@]} == 0)) || apt_install "${missing[@]}"
    for spec in "$@"; do
        command -v "${spec%%:*}" >/dev/null 2>&1 ||
            die "${spec%%:*} still missing after apt-get install ${spec#*:}"
    done
}

docker_up() {
    docker info --format '{{.ID}}' >/dev/null 2>&1
}

# A 1 MB image made of the statically linked tini that docker.io depends on:
# lets the scripts run and push a real container image without Docker Hub.
PD_PROBE_IMAGE=prefect-delivery/ci-probe:tini
ensure_probe_image() {
    docker image inspect "$PD_PROBE_IMAGE" >/dev/null 2>&1 && return 0
    local tini
    tini=$(command -v tini-static || echo /usr/bin/tini-static)
    [[ -x $tini ]] || die "no $tini to build the probe image (Debian package tini, a docker.io dependency)"
    tar -C "$(dirname "$tini")" --numeric-owner --transform 's,.*,tini,' -cf - "$(basename "$tini")" |
        docker import --change 'ENTRYPOINT ["/tini"]' --change 'CMD ["--version"]' - "$PD_PROBE_IMAGE" >/dev/null ||
        die "docker import of the probe image $PD_PROBE_IMAGE failed"
}
