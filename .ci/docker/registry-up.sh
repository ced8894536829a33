#!/usr/bin/env bash
# registry-up.sh: a CNCF distribution registry (Debian's docker-registry, 2.8)
# on http://127.0.0.1:5000, and proof that the local Docker engine can push to it.
#
# - Installs docker-registry when missing (its packaged service is not started:
#   its default config listens on 0.0.0.0:5000 and demands htpasswd auth).
# - Runs it without systemd, detached (setsid + nohup), as root, with our own
#   config: $PD_REGISTRY_STATE_DIR/config.yml (default
#   /var/lib/prefect-delivery-registry), blobs under .../data, bound to
#   127.0.0.1:5000 only, no auth, manifest deletion enabled (tests clean up).
#   Log: /var/log/registry-ci.log. Pid: $PD_REGISTRY_STATE_DIR/registry.pid.
# - Whatever already answers GET /v2/ with 200 on 127.0.0.1:5000 (say the
#   Debian service, reconfigured without auth) is accepted as it is.
# - Docker trusts it without TLS because dockerd treats 127.0.0.0/8 as insecure
#   by default; that is verified by pushing a 1 MB probe image every run
#   (already-present layers make it take well under a second).
set -Eeuo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STATE_DIR=${PD_REGISTRY_STATE_DIR:-/var/lib/prefect-delivery-registry}
REGISTRY_LOG=${PD_REGISTRY_LOG:-/var/log/registry-ci.log}
PIDFILE=$STATE_DIR/registry.pid
log_offset=0
URL=http://$PD_REGISTRY/v2/
WAIT_SECONDS=30

ensure_cmds docker-registry:docker-registry curl:curl

# HTTP status of GET /v2/, or 000 when nothing answers.
v2_status() {
    curl -sS -o /dev/null -w '%{http_code}' --max-time 3 "$URL" 2>/dev/null || true
}

start_registry() {
    mkdir -p "$STATE_DIR/data" "$(dirname "$REGISTRY_LOG")"
    local cfg=$STATE_DIR/config.yml tmp
    tmp=$(mktemp "$cfg.XXXXXX")
    cat >"$tmp" <<EOF
# Written by .ci/docker/registry-up.sh; rewritten on every start.
version: 0.1
log:
  level: info
  fields:
    service: prefect-delivery-registry
storage:
  filesystem:
    rootdirectory: $STATE_DIR/data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: $PD_REGISTRY
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
EOF
    mv -f "$tmp" "$cfg"
    log_offset=$(stat -c %s "$REGISTRY_LOG" 2>/dev/null || echo 0)
    printf '\n=== %s: %s starts docker-registry serve %s\n' "$(date -Is)" "$PD_SCRIPT" "$cfg" >>"$REGISTRY_LOG"
    # REGISTRY_* variables would override the config file: drop them.
    local unset_args=() v
    for v in $(compgen -e | grep '^REGISTRY_' || true); do unset_args+=(-u "$v"); done
    setsid nohup env "${unset_args[@]}" docker-registry serve "$cfg" >>"$REGISTRY_LOG" 2>&1 </dev/null 9>&- &
    echo $! >"$PIDFILE"
}

our_pid() {
    local pid
    [[ -s $PIDFILE ]] || return 1
    pid=$(<"$PIDFILE")
    [[ $pid =~ ^[0-9]+$ && $(cat "/proc/$pid/comm" 2>/dev/null) == docker-registry ]] || return 1
    printf '%s' "$pid"
}

if [[ $(v2_status) != 200 ]]; then
    take_lock registry
    status=$(v2_status)
    if [[ $status != 200 ]]; then
        if [[ $status != 000 ]] && ! our_pid >/dev/null; then
            die "127.0.0.1:5000 answers GET /v2/ with HTTP $status, not 200: another registry (Debian's docker-registry service with its default htpasswd config?) holds the port; stop it (/etc/init.d/docker-registry stop or systemctl stop docker-registry) and rerun"
        fi
        if ! pid=$(our_pid); then
            if ss -Hltn 'sport = :5000' 2>/dev/null | grep -q .; then
                die "port 5000 is taken by a process that is not an HTTP registry: $(ss -Hltnp 'sport = :5000' | head -n 1 | tr -s ' ' | cut -c1-200)"
            fi
            start_registry
            pid=$(<"$PIDFILE")
        fi
        deadline=$((SECONDS + WAIT_SECONDS))
        while ((SECONDS < deadline)); do
            [[ $(v2_status) == 200 ]] && break
            if ! kill -0 "$pid" 2>/dev/null; then
                last=$(tail -c "+$((log_offset + 1))" "$REGISTRY_LOG" | grep -E 'level=(fatal|error|panic)|panic:|^[a-z].*: ' | tail -n 1 | cut -c1-240 || true)
                die "docker-registry exited during startup: ${last:-see log} (full log: $REGISTRY_LOG)"
            fi
            sleep 0.25
        done
        [[ $(v2_status) == 200 ]] || die "docker-registry (pid $pid) did not answer $URL within ${WAIT_SECONDS}s (full log: $REGISTRY_LOG)"
    fi
    exec 9>&- # release the lock before the push check
fi

# Prove the engine can push to it over plain HTTP.
"$PD_CI_DIR/dockerd-up.sh"
ensure_probe_image
docker tag "$PD_PROBE_IMAGE" "$PD_REGISTRY/$PD_PROBE_IMAGE"
if ! out=$(docker push "$PD_REGISTRY/$PD_PROBE_IMAGE" 2>&1); then
    if grep -q 'HTTP response to HTTPS client' <<<"$out"; then
        die "dockerd does not treat $PD_REGISTRY as insecure (its default for 127.0.0.0/8): add --insecure-registry=$PD_REGISTRY to its flags or \"insecure-registries\" in /etc/docker/daemon.json"
    fi
    die "docker push $PD_REGISTRY/$PD_PROBE_IMAGE failed: $(tail -n 1 <<<"$out" | cut -c1-240)"
fi
exit 0
