#!/usr/bin/env bash
# Install Debian's redis-server when `redis-server` is not on PATH (idempotent).
# Used by the Redis tests' fixtures and by CI (root with apt access).  The installed
# service is not needed: the fixtures start their own redis-server on a free port.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
    echo "install-redis.sh: $(redis-server --version | head -n1)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
        echo "install-redis.sh: redis-server is missing and this is not root; run: apt-get install redis-server" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
# Do not start the packaged service from the maintainer scripts (containers have no init).
if [ ! -e /usr/sbin/policy-rc.d ] && [ -z "$SUDO" ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null
command -v redis-server >/dev/null 2>&1 || { echo "install-redis.sh: redis-server still not on PATH" >&2; exit 1; }
echo "install-redis.sh: installed $(redis-server --version | head -n1)"
