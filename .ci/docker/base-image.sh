#!/usr/bin/env bash
# base-image.sh: the Python base images our service images build FROM, made
# without Docker Hub.
#
#   python:3.11-slim-bookworm
#       Debian bookworm minbase + python3 (3.11) + pip + venv + ca-certificates,
#       netbase, tzdata, made with debootstrap from the Debian mirror this
#       machine's apt uses, then `docker import`ed with what a Dockerfile
#       expects of the official image: PATH, LANG=C.UTF-8, PYTHON_VERSION,
#       CMD ["python3"], `python` -> python3, `pip`/`pip3`. Debian's PEP 668
#       EXTERNALLY-MANAGED marker is removed, so `pip install --no-index
#       /path/to.whl` works in a RUN step like it does in the official image
#       (packages go to /usr/local/lib/python3.11/dist-packages, scripts to
#       /usr/local/bin). Docs, man pages and translations are dropped and kept
#       out by a dpkg path-exclude file, as in Debian's own slim images.
#       An image of that name that we did not make (the real official image,
#       from a mirror) is accepted as it is.
#
#   127.0.0.1:5000/prefect-delivery/python-web:3.11   (skip with --no-web)
#       The above plus the sample service's runtime (PD_WEB_PACKAGES, default
#       uvicorn, starlette, sqlalchemy and psycopg pinned to what the project
#       venv runs), baked in
#       so that a service image build is offline and only installs its own
#       wheel: `FROM 127.0.0.1:5000/prefect-delivery/python-web:3.11` then
#       `RUN pip install --no-index /tmp/svc.whl` resolves the service's
#       uvicorn/starlette/sqlalchemy/psycopg requirements against what is
#       already installed.
#       The wheels are fetched once by the host's pip (`pip download`, from
#       PyPI) into the cache and installed with `pip install --no-index`
#       inside a classic-builder `docker build`.
#
# Options:  --push     also push both to 127.0.0.1:5000 (runs registry-up.sh);
#                      the base image is pushed as 127.0.0.1:5000/python:3.11-slim-bookworm
#           --no-web   only the base image
#           --rebuild  debootstrap again, ignoring the cached rootfs tarball and the
#                      existing images (downloaded .debs and wheels are reused)
#           --quiet    no timing line
# Env:      PD_BASE_IMAGE_CACHE  cache dir (default /var/cache/prefect-delivery/base-image):
#                                rootfs-<recipe>.tar (the debootstrapped, tidied
#                                rootfs: re-import takes seconds), debs/, wheels/
#           PD_DEBIAN_MIRROR     override the mirror read from /etc/apt/sources*
#           PD_WEB_PACKAGES      requirement specifiers for python-web
#
# Prints one line: what was done for each image and how long it took.
set -Eeuo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BASE_IMAGE=python:3.11-slim-bookworm
WEB_IMAGE=$PD_REGISTRY/prefect-delivery/python-web:3.11
SUITE=bookworm
INCLUDE=python3,python3-pip,python3-venv,ca-certificates,netbase,tzdata
# Bump when the rootfs recipe below changes: it names the cached tarball.
RECIPE_VERSION=1
CACHE=${PD_BASE_IMAGE_CACHE:-/var/cache/prefect-delivery/base-image}
WEB_PACKAGES=${PD_WEB_PACKAGES:-uvicorn==0.54.0 starlette==1.10.0 sqlalchemy==2.1.9 psycopg==3.3.9 psycopg-binary==3.3.9}
LOG=$PD_CI_LOG_DIR/base-image.log
LABEL_PREFIX=org.prefect-delivery
# Classic builder: what docker-py's images.build uses; BuildKit would need the
# buildx plugin with a recent CLI.
export DOCKER_BUILDKIT=0

push=0 web=1 rebuild=0 quiet=0
for arg in "$@"; do
    case $arg in
    --push) push=1 ;;
    --no-web) web=0 ;;
    --rebuild) rebuild=1 ;;
    --quiet) quiet=1 ;;
    -h | --help)
        sed -n '2,/^set -Eeuo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown option '$arg' (expected --push, --no-web, --rebuild, --quiet)" ;;
    esac
done
[[ $CACHE == /* ]] || die "PD_BASE_IMAGE_CACHE must be an absolute path, got '$CACHE'"

t_total=$(now)
"$PD_CI_DIR/dockerd-up.sh"
mkdir -p "$CACHE"
take_lock base-image 1800

arch=$(dpkg --print-architecture)
recipe_id=$(printf '%s\n' "$RECIPE_VERSION" "$SUITE" minbase "$INCLUDE" "$arch" | sha256sum | cut -c1-12)
ROOTFS_TAR=$CACHE/rootfs-$recipe_id.tar

image_label() { # IMAGE LABEL -> value, empty when unset; fails when the image is missing
    docker image inspect -f "{{index .Config.Labels \"$2\"}}" "$1" 2>/dev/null
}

# The Debian mirror apt uses: first enabled "deb" entry for $SUITE, in apt's
# reading order (sources.list, then sources.list.d/ alphabetically;
# one-line *.list and deb822 *.sources).
debian_mirror() {
    local f uri=
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*; do
        [[ -f $f ]] || continue
        case $f in
        *.list)
            uri=$(awk -v suite="$SUITE" '
                $1 == "deb" {
                    i = 2
                    if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                    if ($(i + 1) == suite) { print $i; exit }
                }' "$f")
            ;;
        *.sources)
            uri=$(awk -v suite="$SUITE" '
                BEGIN { RS = ""; FS = "\n" }
                {
                    types = uris = suites = ""; enabled = "yes"
                    for (i = 1; i <= NF; i++) {
                        if ($i ~ /^[ \t]*#/ || index($i, ":") == 0) continue
                        k = tolower(substr($i, 1, index($i, ":") - 1)); v = substr($i, index($i, ":") + 1)
                        if (k == "types") types = v; else if (k == "uris") uris = v
                        else if (k == "suites") suites = v; else if (k == "enabled") enabled = tolower(v)
                    }
                    gsub(/[ \t]/, "", enabled)
                    if (enabled == "no" || (" " types " ") !~ /[ \t]deb[ \t]/) next
                    if ((" " suites " ") !~ ("[ \t]" suite "[ \t]")) next
                    n = split(uris, u, /[ \t]+/)
                    for (j = 1; j <= n; j++) if (u[j] != "") { print u[j]; exit }
                }' "$f")
            ;;
        esac
        [[ -n $uri ]] && break
    done
    printf '%s' "$uri"
}

# Build the rootfs tarball into the cache with debootstrap.
make_rootfs_tar() {
    local mirror work root proxy
    mirror=${PD_DEBIAN_MIRROR:-$(debian_mirror)}
    [[ -n $mirror ]] || die "no enabled 'deb' source for $SUITE in /etc/apt/sources.list or /etc/apt/sources.list.d/; set PD_DEBIAN_MIRROR=http://<your mirror>/debian"
    [[ $mirror =~ ^(https?|ftp|file):// ]] ||
        die "apt's $SUITE source '$mirror' is not a URL debootstrap can use; set PD_DEBIAN_MIRROR=http://<your mirror>/debian"
    # apt may reach the mirror through a proxy configured for apt only.
    if [[ -z ${http_proxy:-} ]]; then
        proxy=$(apt-config shell p Acquire::http::Proxy | sed -n "s/^p='\(.*\)'$/\1/p")
        [[ -z $proxy || $proxy == DIRECT ]] || export http_proxy=$proxy
    fi

    mkdir -p "$CACHE/debs"
    work=$(mktemp -d "$CACHE/.build.XXXXXX")
    root=$work/rootfs
    # debootstrap mounts proc/sys (and may bind /dev) inside the target: never
    # rm -rf through a mount.
    cleanup_work() {
        local m
        awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r |
            while read -r m; do umount -l "$m" 2>/dev/null || true; done
        rm -rf --one-file-system "$work"
    }
    trap cleanup_work EXIT

    local keyring=()
    [[ -f /usr/share/keyrings/debian-archive-keyring.gpg ]] && keyring=(--keyring=/usr/share/keyrings/debian-archive-keyring.gpg)
    run_logged "$LOG" "debootstrap $SUITE from $mirror" \
        debootstrap --variant=minbase --include="$INCLUDE" --components=main \
        --cache-dir="$CACHE/debs" "${keyring[@]}" "$SUITE" "$root" "$mirror"

    if awk -v w="$work/" 'index($2, w) == 1 { found = 1 } END { exit !found }' /proc/mounts; then
        die "debootstrap left mounts under $root; refusing to archive it"
    fi

    # Make it behave like the official image for a Dockerfile.
    ln -sfn python3 "$root/usr/bin/python"
    [[ -e $root/usr/bin/pip ]] || ln -sfn pip3 "$root/usr/bin/pip"
    rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED
    # Slim: no docs/man/translations now, and none from later apt-get installs.
    cat >"$root/etc/dpkg/dpkg.cfg.d/prefect-delivery-slim" <<'EOF'
# like Debian's slim images (debuerreotype --slimify)
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
    find "$root/usr/share/doc" -mindepth 1 -not -type d -not -name copyright -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$root"/usr/share/{man,groff,info,lintian,linda,locale}/*
    # Package caches and logs of the build; host files debootstrap copied in
    # (docker bind-mounts its own resolv.conf, hostname and hosts).
    rm -rf "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
        "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old "$root"/tmp/* "$root"/var/tmp/*
    find "$root/var/log" -type f -delete
    : >"$root/etc/resolv.conf"
    : >"$root/etc/hostname"

    local pyver
    pyver=$(chroot "$root" /usr/bin/python3 -c 'import platform; print(platform.python_version())') ||
        die "python3 does not run in the new rootfs (see $LOG)"
    [[ $pyver == 3.11.* ]] || die "debootstrapped python3 is $pyver, expected 3.11.x"
    chroot "$root" /usr/bin/python3 -m pip --version >>"$LOG" 2>&1 || die "pip does not run in the new rootfs"
    printf 'PYTHON_VERSION=%s\nMIRROR=%s\n' "$pyver" "$mirror" >"$work/meta"

    run_logged "$LOG" "tar of the rootfs" \
        tar -C "$root" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
        -cf "$work/rootfs.tar" .
    mv -f "$work/meta" "${ROOTFS_TAR%.tar}.meta"
    mv -f "$work/rootfs.tar" "$ROOTFS_TAR" # the .tar appears last: it marks a complete cache entry
    cleanup_work
    trap - EXIT
}

import_base() {
    local pyver
    pyver=$(sed -n 's/^PYTHON_VERSION=//p' "${ROOTFS_TAR%.tar}.meta" 2>/dev/null)
    [[ -n $pyver ]] || die "cache entry ${ROOTFS_TAR%.tar}.meta is incomplete; rerun with --rebuild"
    run_logged "$LOG" "docker import $ROOTFS_TAR" \
        docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change "ENV PYTHON_VERSION=$pyver" \
        --change 'CMD ["python3"]' \
        --change "LABEL $LABEL_PREFIX.recipe=$recipe_id $LABEL_PREFIX.built-by=.ci/docker/base-image.sh" \
        --message "debootstrap --variant=minbase --include=$INCLUDE $SUITE" \
        "$ROOTFS_TAR" "$BASE_IMAGE"
}

# --- python:3.11-slim-bookworm
replaced=() # ids of the images this run re-tags
t=$(now)
have_recipe=$(image_label "$BASE_IMAGE" "$LABEL_PREFIX.recipe") || have_recipe=missing
if ((rebuild == 0)) && [[ $have_recipe != missing && ($have_recipe == "$recipe_id" || -z $have_recipe) ]]; then
    base_how=present
else
    if ((rebuild)) || [[ ! -s $ROOTFS_TAR ]]; then
        make_rootfs_tar
        base_how=debootstrapped
    else
        base_how="imported from cache"
    fi
    replaced+=("$(docker image inspect -f '{{.Id}}' "$BASE_IMAGE" 2>/dev/null || true)")
    import_base
fi
base_line="$BASE_IMAGE $base_how $(since "$t")s"
base_id=$(docker image inspect -f '{{.Id}}' "$BASE_IMAGE")

# --- python-web
web_line=
if ((web)); then
    t=$(now)
    web_key=$(printf '%s\n' "$base_id" "$WEB_PACKAGES" | sha256sum | cut -c1-12)
    if ((rebuild == 0)) && [[ $(image_label "$WEB_IMAGE" "$LABEL_PREFIX.web-key" || true) == "$web_key" ]]; then
        web_how=present
    else
        wheels=$CACHE/wheels/$(printf '%s\n' "$WEB_PACKAGES" | sha256sum | cut -c1-12)
        if ! compgen -G "$wheels/*.whl" >/dev/null; then
            python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
            dl=$(mktemp -d "$CACHE/.wheels.XXXXXX")
            # shellcheck disable=SC2086 # WEB_PACKAGES is a list of specifiers
            run_logged "$LOG" "pip download $WEB_PACKAGES" \
                python3 -m pip download --disable-pip-version-check --dest "$dl" \
                --only-binary=:all: --python-version 3.11 --implementation cp $WEB_PACKAGES
            chmod 755 "$dl"
            mkdir -p "$CACHE/wheels"
            rm -rf "$wheels"
            mv "$dl" "$wheels"
        fi
        replaced+=("$(docker image inspect -f '{{.Id}}' "$WEB_IMAGE" 2>/dev/null || true)")
        ctx=$(mktemp -d)
        trap 'rm -rf "$ctx"' EXIT
        cp -r "$wheels" "$ctx/wheels"
        cat >"$ctx/Dockerfile" <<EOF
FROM $BASE_IMAGE
COPY wheels/ /tmp/wheels/
RUN pip install --no-index --no-cache-dir --disable-pip-version-check /tmp/wheels/*.whl \\
 && pip check \\
 && rm -rf /tmp/wheels
EOF
        # Host network because dockerd runs without a bridge.
        run_logged "$LOG" "docker build $WEB_IMAGE" \
            docker build --network host --force-rm \
            --label "$LABEL_PREFIX.web-key=$web_key" --label "$LABEL_PREFIX.web-packages=$WEB_PACKAGES" \
            -t "$WEB_IMAGE" "$ctx"
        rm -rf "$ctx"
        trap - EXIT
        web_how=built
    fi
    web_id=$(docker image inspect -f '{{.Id}}' "$WEB_IMAGE")
    web_line="; $WEB_IMAGE $web_how $(since "$t")s"
fi

# --- push
push_line=
if ((push)); then
    t=$(now)
    "$PD_CI_DIR/registry-up.sh"
    replaced+=("$(docker image inspect -f '{{.Id}}' "$PD_REGISTRY/$BASE_IMAGE" 2>/dev/null || true)")
    docker tag "$BASE_IMAGE" "$PD_REGISTRY/$BASE_IMAGE"
    run_logged "$LOG" "docker push $PD_REGISTRY/$BASE_IMAGE" docker push "$PD_REGISTRY/$BASE_IMAGE"
    ((web)) && run_logged "$LOG" "docker push $WEB_IMAGE" docker push "$WEB_IMAGE"
    push_line="; pushed to $PD_REGISTRY $(since "$t")s"
fi

# The images we replaced are left untagged: remove exactly those, and only if
# nothing tags them any more (never a general prune: an image pulled by digest
# has no tag either and may be about to run).
for id in "${replaced[@]}"; do
    [[ -n $id ]] || continue
    [[ $id == "$base_id" || $id == "${web_id:-}" ]] && continue
    [[ $(docker image inspect -f '{{len .RepoTags}}' "$id" 2>/dev/null) == 0 ]] || continue
    docker rmi "$id" >/dev/null 2>&1 || true
done

((quiet)) || echo "base-image: $base_line$web_line$push_line; total $(since "$t_total")s"
exit 0
