#!/usr/bin/env bash
# dockerd-up.sh: make sure a Docker engine answers on unix:///var/run/docker.sock.
#
# Installs Debian's docker.io when dockerd is missing, and starts dockerd
# detached (setsid + nohup, log in /var/log/dockerd-ci.log) when `docker info`
# fails. An engine that already answers is used as it is, whatever its flags.
#
# dockerd flags, as found on the CI sandbox (Debian bookworm, docker.io
# 20.10.24, kernel 6.18 in a VM, PID 1 is not systemd, cgroup v1 hybrid,
# iptables-nft present):
#   --bridge=none         no docker0 bridge, no veth pairs, no NAT: every
#                         container runs with network_mode="host" and reaches
#                         the registry and its peers on 127.0.0.1 (DESIGN.md).
#   --iptables=false      never touch the host firewall (--ip6tables is off by
#                         default in 20.10); nothing needs NAT without a bridge.
#   --ip-masq=false       goes with --iptables=false.
#   --storage-driver=X    probed, not assumed: a real overlay mount is tried on
#                         the data-root filesystem. overlay2 works here (ext4
#                         root, overlay in /proc/filesystems). Fallbacks:
#                         fuse-overlayfs (needs the binary and /dev/fuse),
#                         then vfs (slow, full copy per layer, but always works).
#                         Override with PD_DOCKER_STORAGE_DRIVER.
#   --exec-opt native.cgroupdriver=cgroupfs
#                         only when PID 1 is not systemd: the systemd cgroup
#                         driver needs a running systemd. cgroup v1 here, so
#                         no cgroup v2 delegation is needed; memory/cpu/pids
#                         limits work (checked with --memory/--cpus/--pids-limit).
#   --host=unix:///var/run/docker.sock --pidfile=/var/run/docker.pid
#                         explicit defaults, so a second start is detected.
# Not needed here: --userland-proxy (no published ports with host networking),
# --insecure-registry (127.0.0.0/8 is insecure by default; registry-up.sh
# checks that a push to 127.0.0.1:5000 works), rootless mode, --iptables on.
#
# After a start, a container is run once (a 1 MB image made from the
# statically linked tini that docker.io depends on) so that a runtime or
# cgroup problem fails here, with the dockerd log, not in the first test.
set -Eeuo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DOCKERD_LOG=${PD_DOCKERD_LOG:-/var/log/dockerd-ci.log}
DATA_ROOT=/var/lib/docker
PIDFILE=/var/run/docker.pid
WAIT_SECONDS=60

ensure_cmds dockerd:docker.io docker:docker.io

docker_up && exit 0

if [[ -n ${DOCKER_HOST:-} && $DOCKER_HOST != "unix://$PD_DOCKER_SOCK" ]]; then
    die "DOCKER_HOST=$DOCKER_HOST does not answer; this script only manages the local engine at unix://$PD_DOCKER_SOCK (unset DOCKER_HOST)"
fi

take_lock dockerd
docker_up && exit 0 # another caller started it while we waited for the lock

# Does a real overlay mount work on the data-root filesystem?
overlay_works() {
    local d rc=0
    d=$(mktemp -d "$DATA_ROOT/.overlay-probe.XXXXXX")
    mkdir "$d/lower" "$d/upper" "$d/work" "$d/merged"
    echo probe >"$d/lower/f"
    if mount -t overlay overlay -o "lowerdir=$d/lower,upperdir=$d/upper,workdir=$d/work" "$d/merged" 2>/dev/null; then
        { echo x >"$d/merged/g" && [[ -f $d/upper/g ]] && grep -q probe "$d/merged/f"; } || rc=1
        umount "$d/merged" || rc=1
    else
        rc=1
    fi
    rm -rf --one-file-system "$d"
    return "$rc"
}

pick_storage_driver() {
    if [[ -n ${PD_DOCKER_STORAGE_DRIVER:-} ]]; then
        echo "$PD_DOCKER_STORAGE_DRIVER"
    elif overlay_works; then
        echo overlay2
    elif command -v fuse-overlayfs >/dev/null && [[ -c /dev/fuse ]]; then
        warn "kernel overlay mount failed on $DATA_ROOT; using fuse-overlayfs"
        echo fuse-overlayfs
    else
        warn "kernel overlay mount failed on $DATA_ROOT and no fuse-overlayfs; using vfs (slow, disk hungry)"
        echo vfs
    fi
}

# A dockerd that is still starting up (or hung) owns the pidfile: wait for it
# rather than start a second one, which would refuse to run anyway.
# A pidfile naming any other process (stale, pid reused) would make dockerd
# refuse to start: drop it.
dockerd_pid=
if [[ -s $PIDFILE ]]; then
    old=$(<"$PIDFILE")
    if [[ $old =~ ^[0-9]+$ ]] && [[ $(cat "/proc/$old/comm" 2>/dev/null) == dockerd ]]; then
        dockerd_pid=$old
    else
        rm -f "$PIDFILE"
    fi
fi

started=0
log_offset=0
if [[ -z $dockerd_pid ]]; then
    mkdir -p "$DATA_ROOT" "$(dirname "$DOCKERD_LOG")"
    driver=$(pick_storage_driver)
    flags=(
        --host="unix://$PD_DOCKER_SOCK"
        --pidfile="$PIDFILE"
        --data-root="$DATA_ROOT"
        --bridge=none
        --iptables=false
        --ip-masq=false
        --storage-driver="$driver"
    )
    [[ -d /run/systemd/system ]] || flags+=(--exec-opt native.cgroupdriver=cgroupfs)
    log_offset=$(stat -c %s "$DOCKERD_LOG" 2>/dev/null || echo 0)
    printf '\n=== %s: %s starts dockerd %s\n' "$(date -Is)" "$PD_SCRIPT" "${flags[*]}" >>"$DOCKERD_LOG"
    # setsid: own session, so the engine outlives this script and its terminal.
    setsid nohup dockerd "${flags[@]}" >>"$DOCKERD_LOG" 2>&1 </dev/null 9>&- &
    dockerd_pid=$!
    started=1
fi

deadline=$((SECONDS + WAIT_SECONDS))
while ((SECONDS < deadline)); do
    docker_up && break
    if ! kill -0 "$dockerd_pid" 2>/dev/null; then
        last=$(tail -c "+$((log_offset + 1))" "$DOCKERD_LOG" | grep -E 'level=(fatal|error)|failed' | tail -n 1 | cut -c1-240 || true)
        die "dockerd exited during startup: ${last:-see log} (full log: $DOCKERD_LOG)"
    fi
    sleep 0.25
done
docker_up || die "dockerd (pid $dockerd_pid) did not answer 'docker info' within ${WAIT_SECONDS}s (full log: $DOCKERD_LOG)"

# Smoke test after a start: can the engine actually run a container here?
if ((started)); then
    ensure_probe_image
    out=$(docker run --rm --network host "$PD_PROBE_IMAGE" 2>&1) ||
        die "dockerd runs but cannot start a container: $(tail -n 1 <<<"$out" | cut -c1-240) (full log: $DOCKERD_LOG)"
    [[ $out == *tini* ]] || die "probe container printed '$out' instead of the tini version"
fi
exit 0
