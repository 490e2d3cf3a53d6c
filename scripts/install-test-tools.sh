#!/usr/bin/env bash
# Install Debian's chromium (the dashboard's browser test) and prometheus (promtool, for
# the alerting rules test) when they are missing (idempotent).  Called by the test
# fixtures (contrib/dashboard, contrib/prometheus) and usable by CI (root with apt access).
# The packaged prometheus service is not started: only its promtool binary is used.
set -euo pipefail

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-test-tools.sh: chromium and promtool present"
    exit 0
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
        echo "install-test-tools.sh: missing ${missing[*]} and this is not root; run: apt-get install ${missing[*]}" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
# Do not start packaged services from the maintainer scripts (containers have no init).
if [ ! -e /usr/sbin/policy-rc.d ] && [ -z "$SUDO" ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" fonts-dejavu-core >/dev/null
for tool in chromium promtool; do
    command -v "$tool" >/dev/null 2>&1 || { echo "install-test-tools.sh: $tool still not on PATH" >&2; exit 1; }
done
echo "install-test-tools.sh: installed ${missing[*]}"
