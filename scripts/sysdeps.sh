#!/usr/bin/env bash
# Install the Debian packages the platform needs, only those that are missing.
# PostGIS is matched to the installed PostgreSQL major (postgresql-15-postgis-3 on Debian 12).
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

major=""
if [ -d /usr/lib/postgresql ]; then
  major=$(ls /usr/lib/postgresql | grep -E '^[0-9]+$' | sort -n | tail -1 || true)
fi
want=(gdal-bin chromium chromium-driver wrk fonts-noto-cjk time)  # time: GNU time -v in bench/ingest
if [ -z "$major" ]; then
  want+=(postgresql postgresql-15-postgis-3)
else
  want+=("postgresql-${major}-postgis-3")
fi

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing Debian packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
