#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine: PostgreSQL server
# programs (the tests start a private cluster) and Chromium (browser tests).
set -euo pipefail
need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
if [ -n "${QINBA_NEED_CHROMIUM:-1}" ] && ! [ -x /usr/lib/chromium/chromium ]; then need+=(chromium); fi
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "missing: ${need[*]}; install with: sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
echo "installing ${need[*]} (apt)..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
