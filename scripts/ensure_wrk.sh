#!/usr/bin/env bash
# Make sure `wrk` (the HTTP load generator `make bench` drives) is on the PATH. Installs
# Debian's package with apt-get when missing and root; says nothing when it is there.
set -euo pipefail

command -v wrk >/dev/null && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "wrk is missing and this is not root: install it (apt-get install wrk)" >&2
  exit 1
fi
echo "wrk missing: installing Debian's wrk"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null
command -v wrk >/dev/null || { echo "wrk still missing after apt-get install" >&2; exit 1; }
