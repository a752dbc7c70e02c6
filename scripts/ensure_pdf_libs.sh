#!/usr/bin/env bash
# Make sure the system libraries WeasyPrint loads at run time (invoice PDFs) and the DejaVu
# fonts the invoice template names are present. pip cannot install them: WeasyPrint reaches
# Pango, HarfBuzz and fontconfig through cffi. Installs them with apt-get when missing and
# root; says nothing when all are there.
set -euo pipefail

# Debian 12 (bookworm) names. libpango-1.0-0 pulls in libglib2.0-0, libharfbuzz0b and
# fontconfig; harfbuzz-subset is what WeasyPrint subsets embedded fonts with (it warns
# without it). Pillow's wheels bundle their own JPEG and JPEG 2000 decoders; the system
# copies are for a Pillow built from source.
PACKAGES=(
  libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0
  libjpeg62-turbo libopenjp2-7 libffi8 fonts-dejavu-core
)
LIBRARIES=(
  libgobject-2.0.so.0 libpango-1.0.so.0 libpangoft2-1.0.so.0 libharfbuzz.so.0
  libharfbuzz-subset.so.0 libfontconfig.so.1 libffi.so.8 libjpeg.so.62 libopenjp2.so.7
)
FONT="DejaVu Sans"

# Not on a non-root user's PATH on Debian.
LDCONFIG=$(command -v ldconfig || echo /sbin/ldconfig)

missing() {  # prints what is absent, one a line
  local known
  known=$("$LDCONFIG" -p 2>/dev/null | awk 'NR > 1 { print $1 }')
  for lib in "${LIBRARIES[@]}"; do
    grep -qxF "$lib" <<<"$known" || echo "$lib"
  done
  if ! command -v fc-list >/dev/null || ! fc-list -q "$FONT"; then
    echo "font '$FONT'"
  fi
}

absent=$(missing)
[ -z "$absent" ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "WeasyPrint (invoice PDFs) needs, and this machine lacks: ${absent//$'\n'/, }." \
    "Not root: install the Debian packages (apt-get install ${PACKAGES[*]})" >&2
  exit 1
fi
echo "WeasyPrint system libraries missing: installing ${PACKAGES[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  "${PACKAGES[@]}" >/dev/null

absent=$(missing)
if [ -n "$absent" ]; then
  echo "Still missing after apt-get install: ${absent//$'\n'/, }" >&2
  exit 1
fi
