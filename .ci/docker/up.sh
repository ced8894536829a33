#!/usr/bin/env bash
# up.sh: the whole local container infrastructure for tests and demos, in order:
#   dockerd-up.sh    Docker engine on unix:///var/run/docker.sock (no bridge: host networking)
#   registry-up.sh   registry on http://127.0.0.1:5000, push verified
#   base-image.sh    python:3.11-slim-bookworm and 127.0.0.1:5000/prefect-delivery/python-web:3.11,
#                    both pushed to the registry (options are passed on: --no-web, --rebuild)
#   postgres-image.sh 127.0.0.1:5000/prefect-delivery/postgres:15 for migrations_lab's docker
#                    provider, pushed (--rebuild is passed on)
# Idempotent; prints one line with the time each step took.
set -Eeuo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

t0=$(now)
"$PD_CI_DIR/dockerd-up.sh"
t_dockerd=$(since "$t0")
t=$(now)
"$PD_CI_DIR/registry-up.sh"
t_registry=$(since "$t")
t=$(now)
"$PD_CI_DIR/base-image.sh" --push --quiet "$@"
t_base=$(since "$t")
t=$(now)
pg_args=()
for arg in "$@"; do [[ $arg == --rebuild ]] && pg_args+=("$arg"); done
"$PD_CI_DIR/postgres-image.sh" --quiet "${pg_args[@]}"
t_postgres=$(since "$t")
echo "up: dockerd ${t_dockerd}s, registry ${t_registry}s, base images ${t_base}s, postgres image ${t_postgres}s, total $(since "$t0")s"
