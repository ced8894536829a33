#!/usr/bin/env bash
# ensure-packages.sh BIN:PACKAGE ...: install the Debian packages whose command is missing
# (BIN: a command, a path, or a glob of paths: '/usr/lib/postgresql/*/bin/initdb:postgresql').
#
# Installs through apt-get when running as root (or with password-less sudo); otherwise prints a
# one-line instruction and exits 1. `apt-get update` runs at most once per call.
set -euo pipefail
missing=()
for pair in "$@"; do
  bin=${pair%%:*}; pkg=${pair#*:}
  # BIN: a command on PATH, an executable's path, or a glob of paths (e.g. Debian's
  # /usr/lib/postgresql/*/bin/initdb, which is not on PATH and carries the major version)
  if ! command -v "$bin" >/dev/null 2>&1 && ! [ -x "$bin" ] && ! compgen -G "$bin" >/dev/null; then
    missing+=("$pkg")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"
else
  echo "missing system packages: ${missing[*]}. Install them (e.g. \`sudo apt-get install ${missing[*]}\`) and run make again." >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "missing system packages: ${missing[*]}; this machine has no apt-get, install them with its package manager." >&2
  exit 1
fi
echo "installing ${missing[*]} (apt-get)"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
