#!/usr/bin/env bash
# Install the Debian binary packages nhgw needs to build, test and run its dev stack.
# Only missing packages are installed, so this is safe (and fast, < 1 s) to call from
# every build or CI run; machines are not guaranteed to keep what a session installed.
set -euo pipefail

# Keep this one list; add packages here.
#   node-llhttp:   ships llhttp's C sources (/usr/share/llhttp), compiled by ops/deps.sh
#   dpkg-dev:      apt-get source / dpkg-source, ops/deps.sh's fallback when ../shared/deps is absent
#   libclang-rt-14-dev: sanitizer runtimes for clang builds
PACKAGES="build-essential clang libclang-rt-14-dev llvm pkg-config
  libevent-dev libnats-dev libjansson-dev zlib1g-dev node-llhttp
  nodejs npm nats-server redis-server openssl xz-utils ca-certificates dpkg-dev gnuplot-nox
  prometheus
  golang-go golang-github-masterminds-sprig-dev golang-k8s-sigs-yaml-dev
  tmux"

# A node/npm not installed from Debian (e.g. NodeSource's nodejs, which bundles npm and
# conflicts with Debian's npm) is good enough: don't fight it with apt.
tool_works() {
  case $1 in
    nodejs) command -v node >/dev/null 2>&1 && node --version >/dev/null 2>&1 ;;
    npm)    command -v npm >/dev/null 2>&1 && npm --version >/dev/null 2>&1 ;;
    *)      return 1 ;;
  esac
}

# One dpkg-query for all packages keeps the everything-installed path cheap. It exits
# non-zero when some package is unknown to dpkg; those are simply absent from its output.
# shellcheck disable=SC2086
installed=$(dpkg-query -W -f='${Package} ${Status}\n' $PACKAGES 2>/dev/null \
  | awk '$2 == "install" && $4 == "installed" { print $1 }' || true)

missing=()
for p in $PACKAGES; do
  if grep -qxF "$p" <<<"$installed"; then continue; fi
  if tool_works "$p"; then continue; fi
  missing+=("$p")
done

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-packages: missing Debian packages: ${missing[*]}" >&2
  echo "install-packages: as root run: apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

echo "install-packages: installing ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends "${missing[@]}"
