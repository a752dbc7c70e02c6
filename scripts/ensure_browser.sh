#!/usr/bin/env bash
# Make sure Debian's headless-capable Chromium is at /usr/bin/chromium for the browser tests.
# `playwright install` downloads its own browser build, which this network cannot reach, so the
# tests drive the Debian package instead. Installs it with apt-get when missing and root.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ ! -x "$CHROMIUM" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "$CHROMIUM missing and not root: install the Debian packages" \
      "'chromium' and 'fonts-liberation' (apt-get install chromium fonts-liberation)" >&2
    exit 1
  fi
  echo "Chromium not installed: installing"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    chromium fonts-liberation >/dev/null
fi

"$CHROMIUM" --version
