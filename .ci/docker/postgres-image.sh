#!/usr/bin/env bash
# postgres-image.sh: a PostgreSQL server image for migrations_lab's docker
# provider (migrations_lab/postgres_docker.py), made without Docker Hub.
#
#   127.0.0.1:5000/prefect-delivery/postgres:15
#       FROM python:3.11-slim-bookworm (base-image.sh, run first) + Debian's
#       postgresql-15, installed by apt-get inside a classic-builder
#       `docker build --network host` from the same sources the host's apt
#       uses (its sources.list/sources.list.d files and the keyrings they
#       name are copied into the build; apt's HTTP proxy is passed on).
#       Debian's postinst creates no cluster (create_main_cluster = false).
#       Its entrypoint follows the official postgres image's contract as far
#       as the lab (and a plain `docker run`) uses it:
#         - env POSTGRES_PASSWORD (required unless POSTGRES_HOST_AUTH_METHOD=trust),
#           POSTGRES_USER (default postgres), POSTGRES_DB (default $POSTGRES_USER),
#           POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD (default scram-sha-256),
#           PGDATA (default /var/lib/postgresql/data);
#         - command `postgres -c key=value ...` (or just `-c ...`); any other
#           command is exec'd as it is;
#         - as root it prepares $PGDATA and re-executes itself as the
#           unprivileged postgres user (uid/gid 999 as in the official image;
#           setpriv, so postgres stays PID 1);
#         - on first start (no $PGDATA/PG_VERSION): initdb as postgres with the
#           superuser password from a pipe (never in argv), local (unix socket)
#           connections trusted, every TCP connection scram-sha-256; then, only
#           when there is something to do, a socket-only temporary server
#           creates $POSTGRES_DB and runs /docker-entrypoint-initdb.d/*.sh|*.sql;
#         - then `exec postgres ARGS...` as postgres. STOPSIGNAL SIGINT.
#       Deliberate differences from the official image: TCP from 127.0.0.1
#       needs the password too (the official image trusts it, which under
#       host networking would mean any local process), listen_addresses keeps
#       PostgreSQL's default (localhost) instead of '*', and there is no
#       VOLUME (the data lives and dies with the container).
#
# Idempotent and cached: the image carries a label with the hash of its
# recipe (this script's Dockerfile and entrypoint, the base image id, the apt
# sources); a warm run only compares that label and the registry's digest.
#
# Options:  --no-push  build/check the local image only (no registry-up.sh)
#           --rebuild  build again even when the image is up to date (picks up
#                      new Debian postgresql-15 point releases)
#           --quiet    no timing line
# Env:      PD_DEBIAN_MIRROR  use only "deb $PD_DEBIAN_MIRROR bookworm main"
#                             instead of the host's apt sources
#
# Prints one line: what was done (present / built, pushed or already in the
# registry) and how long it took.
set -Eeuo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BASE_IMAGE=python:3.11-slim-bookworm
PG_MAJOR=15
REPO=prefect-delivery/postgres
IMAGE=$PD_REGISTRY/$REPO:$PG_MAJOR
# Bump when the build below changes in a way the hashed texts do not show.
RECIPE_VERSION=1
LOG=$PD_CI_LOG_DIR/postgres-image.log
LABEL_PREFIX=org.prefect-delivery
# Classic builder, like base-image.sh (BuildKit would need the buildx plugin).
export DOCKER_BUILDKIT=0

push=1 rebuild=0 quiet=0
for arg in "$@"; do
    case $arg in
    --no-push) push=0 ;;
    --rebuild) rebuild=1 ;;
    --quiet) quiet=1 ;;
    -h | --help)
        sed -n '2,/^set -Eeuo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown option '$arg' (expected --no-push, --rebuild, --quiet)" ;;
    esac
done

t_total=$(now)
"$PD_CI_DIR/dockerd-up.sh"
"$PD_CI_DIR/base-image.sh" --no-web --quiet
take_lock postgres-image 1800
if ((push)); then ensure_cmds curl:curl; fi

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT

# --- the build context: apt sources, entrypoint, Dockerfile -----------------

# The host's apt sources and the keyring files they name (Signed-By / signed-by=),
# at the same paths, under $ctx/apt-root.
collect_apt_sources() {
    local root=$ctx/apt-root f key
    mkdir -p "$root/etc/apt/sources.list.d"
    if [[ -n ${PD_DEBIAN_MIRROR:-} ]]; then
        [[ $PD_DEBIAN_MIRROR =~ ^(https?|ftp)://[^[:space:]]+$ ]] ||
            die "PD_DEBIAN_MIRROR='$PD_DEBIAN_MIRROR' is not an http(s)/ftp URL; set e.g. PD_DEBIAN_MIRROR=http://deb.debian.org/debian"
        printf 'deb %s bookworm main\n' "$PD_DEBIAN_MIRROR" >"$root/etc/apt/sources.list"
        return 0
    fi
    [[ -s /etc/apt/sources.list ]] && cp /etc/apt/sources.list "$root/etc/apt/sources.list"
    for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] && cp "$f" "$root/etc/apt/sources.list.d/"
    done
    grep -rqsE '^[[:space:]]*(deb[[:space:]]|Types:(.*[[:space:]])?deb([[:space:]]|$))' "$root/etc/apt" ||
        die "the host's apt has no 'deb' source in /etc/apt/sources.list or /etc/apt/sources.list.d/; set PD_DEBIAN_MIRROR=http://<your mirror>/debian"
    while read -r key; do
        [[ -f $key ]] || continue
        mkdir -p "$root$(dirname "$key")"
        cp "$key" "$root$key"
    done < <(grep -rhoiE '(signed-by=|^signed-by:[[:space:]]*)/[^],[:space:]]+' "$root/etc/apt" |
        sed -E 's/^[^/]*//' | sort -u)
}

write_entrypoint() {
    cat >"$ctx/docker-entrypoint.sh" <<'ENTRYPOINT'
#!/usr/bin/env bash
# Entrypoint of 127.0.0.1:5000/prefect-delivery/postgres:15, written by
# .ci/docker/postgres-image.sh (see there): the official postgres image's
# contract for POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB /
# POSTGRES_INITDB_ARGS / POSTGRES_HOST_AUTH_METHOD and `postgres -c k=v ...`.
set -Eeuo pipefail

export PGDATA=${PGDATA:-/var/lib/postgresql/data}
SOCKET_DIR=/var/run/postgresql

say() { printf '%s\n' "$*"; }
fail() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# `docker run IMAGE -c k=v` means `postgres -c k=v`; anything else runs as it is.
if [[ ${1:-} == -* ]]; then
    set -- postgres "$@"
fi
if [[ ${1:-} != postgres ]]; then
    exec "$@"
fi

if [[ $(id -u) == 0 ]]; then
    mkdir -p "$PGDATA" "$SOCKET_DIR"
    chown postgres:postgres "$PGDATA" "$SOCKET_DIR"
    chmod 700 "$PGDATA"
    chmod 3777 "$SOCKET_DIR"
    export HOME=/var/lib/postgresql
    exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

init_cluster() {
    local user=${POSTGRES_USER:-postgres} auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
    local db=${POSTGRES_DB:-${POSTGRES_USER:-postgres}} f
    if [[ -z ${POSTGRES_PASSWORD:-} && $auth != trust ]]; then
        fail "Database is uninitialized and superuser password is not specified. Set POSTGRES_PASSWORD to a non-empty value (or POSTGRES_HOST_AUTH_METHOD=trust, never on a shared host)."
    fi
    # POSTGRES_INITDB_ARGS is shell words, as in the official image (eval keeps its
    # quoting); the password reaches initdb through a pipe, never through argv.
    # shellcheck disable=SC2016 # expanded by the eval below
    local initdb='initdb --username="$user" --auth-local=trust --auth-host="$auth"'
    if [[ -n ${POSTGRES_PASSWORD:-} ]]; then
        # shellcheck disable=SC2016
        initdb+=' --pwfile=<(printf "%s\n" "$POSTGRES_PASSWORD")'
    fi
    eval "$initdb ${POSTGRES_INITDB_ARGS:-}"
    {
        printf '\n'
        [[ $auth == trust ]] && printf '# warning: trust is enabled for all connections\n'
        printf 'host all all all %s\n' "$auth"
    } >>"$PGDATA/pg_hba.conf"

    local scripts=()
    for f in /docker-entrypoint-initdb.d/*; do
        [[ -f $f ]] && scripts+=("$f")
    done
    if [[ $db != postgres || ${#scripts[@]} -gt 0 ]]; then
        # A temporary server on the unix socket only, with the caller's settings.
        local port=${PGPORT:-5432}
        pg_ctl -D "$PGDATA" -w -o "$(printf '%q ' "${@:2}" -c listen_addresses= -p "$port")" start
        (
            export PGHOST=$SOCKET_DIR PGPORT=$port PGUSER=$user
            psql=(psql -X -v ON_ERROR_STOP=1 --no-password --dbname=postgres)
            if [[ $db != postgres ]]; then
                "${psql[@]}" --set db="$db" <<<'CREATE DATABASE :"db";'
            fi
            for f in "${scripts[@]}"; do
                case $f in
                *.sh)
                    say "running $f"
                    if [[ -x $f ]]; then "$f"; else
                        # shellcheck disable=SC1090
                        source "$f"
                    fi
                    ;;
                *.sql)
                    say "running $f"
                    "${psql[@]}" --dbname="$db" -f "$f"
                    ;;
                *) say "ignoring $f" ;;
                esac
            done
        )
        pg_ctl -D "$PGDATA" -m fast -w stop
    fi
    say "PostgreSQL init process complete; ready for start up."
}

if [[ ! -s $PGDATA/PG_VERSION ]]; then
    init_cluster "$@"
fi
exec "$@"
ENTRYPOINT
    chmod 755 "$ctx/docker-entrypoint.sh"
}

write_dockerfile() {
    cat >"$ctx/Dockerfile" <<EOF
FROM $BASE_IMAGE
ENV PG_MAJOR=$PG_MAJOR
ENV PATH=/usr/lib/postgresql/$PG_MAJOR/bin:\$PATH
ENV PGDATA=/var/lib/postgresql/data
COPY apt-root/ /tmp/apt-root/
RUN set -eu \\
 && rm -f /etc/apt/sources.list /etc/apt/sources.list.d/* \\
 && cp -a /tmp/apt-root/. / && rm -rf /tmp/apt-root \\
 && groupadd -r --gid=999 postgres \\
 && useradd -r -g postgres --uid=999 --home-dir=/var/lib/postgresql --shell=/bin/bash postgres \\
 && install -d -o postgres -g postgres -m 755 /var/lib/postgresql \\
 && mkdir -p /etc/postgresql-common/createcluster.d \\
 && echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/prefect-delivery.conf \\
 && printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d \\
 && apt-get -q update \\
 && DEBIAN_FRONTEND=noninteractive apt-get -q install -y --no-install-recommends postgresql-$PG_MAJOR \\
 && rm -f /usr/sbin/policy-rc.d \\
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb /var/log/apt/* \\
 && postgres --version \\
 && install -d -o postgres -g postgres -m 3777 /var/run/postgresql \\
 && install -d -o postgres -g postgres -m 700 "\$PGDATA" \\
 && mkdir -p /docker-entrypoint-initdb.d
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENTRYPOINT ["docker-entrypoint.sh"]
STOPSIGNAL SIGINT
EXPOSE 5432
CMD ["postgres"]
EOF
}

image_label() { # IMAGE LABEL -> value, empty when unset; fails when the image is missing
    docker image inspect -f "{{index .Config.Labels \"$2\"}}" "$1" 2>/dev/null
}

# Digest of $IMAGE in the registry, empty when it is not there.
registry_digest() {
    curl -fsS -I --max-time 5 \
        -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
        "http://$PD_REGISTRY/v2/$REPO/manifests/$PG_MAJOR" 2>/dev/null |
        tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" { print $2 }' || true
}

collect_apt_sources
write_entrypoint
write_dockerfile
base_id=$(docker image inspect -f '{{.Id}}' "$BASE_IMAGE")
key=$({
    printf '%s\n' "$RECIPE_VERSION" "$base_id"
    (cd "$ctx" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
} | sha256sum | cut -c1-12)

# --- build ---------------------------------------------------------------------
t=$(now)
old_id=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
if ((rebuild == 0)) && [[ -n $old_id && $(image_label "$IMAGE" "$LABEL_PREFIX.postgres-key" || true) == "$key" ]]; then
    build_how=present
else
    proxy=${http_proxy:-$(apt-config shell p Acquire::http::Proxy | sed -n "s/^p='\(.*\)'$/\1/p")}
    [[ $proxy == DIRECT ]] && proxy=
    # Host network because dockerd runs without a bridge.
    run_logged "$LOG" "docker build $IMAGE" \
        docker build --network host --force-rm --build-arg "http_proxy=$proxy" \
        --label "$LABEL_PREFIX.postgres-key=$key" \
        --label "$LABEL_PREFIX.built-by=.ci/docker/postgres-image.sh" \
        -t "$IMAGE" "$ctx"
    build_how=built
fi
new_id=$(docker image inspect -f '{{.Id}}' "$IMAGE")
build_line="$IMAGE $build_how"
if [[ $build_how == built ]]; then
    # The proof that the new image runs at all, and its version for the summary.
    pg_version=$(docker run --rm --network none --entrypoint postgres "$IMAGE" --version 2>>"$LOG") ||
        die "postgres --version does not run in the new $IMAGE (see $LOG)"
    # "postgres (PostgreSQL) 15.x (Debian ...)" -> 15.x
    read -r _ _ pg_version _ <<<"$pg_version"
    build_line+=" (PostgreSQL $pg_version)"
fi
build_line+=" $(since "$t")s"

# The image we replaced is left untagged: remove exactly that one, if nothing
# else tags it (never a general prune).
if [[ -n $old_id && $old_id != "$new_id" && $(docker image inspect -f '{{len .RepoTags}}' "$old_id" 2>/dev/null) == 0 ]]; then
    docker rmi "$old_id" >/dev/null 2>&1 || true
fi

# --- push ----------------------------------------------------------------------
push_line=
if ((push)); then
    t=$(now)
    "$PD_CI_DIR/registry-up.sh"
    remote=$(registry_digest)
    if [[ -n $remote ]] && docker image inspect -f '{{join .RepoDigests "\n"}}' "$IMAGE" |
        grep -qxF "$PD_REGISTRY/$REPO@$remote"; then
        push_line="; already in $PD_REGISTRY $(since "$t")s"
    else
        run_logged "$LOG" "docker push $IMAGE" docker push "$IMAGE"
        push_line="; pushed to $PD_REGISTRY $(since "$t")s"
    fi
fi

((quiet)) || echo "postgres-image: $build_line$push_line; total $(since "$t_total")s"
exit 0
