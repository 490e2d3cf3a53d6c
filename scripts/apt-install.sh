#!/usr/bin/env bash
# Install Debian packages for the commands that are missing (idempotent), for the test
# fixtures and CI (root with apt access, or passwordless sudo).  Packaged services are
# not started: the fixtures run their own processes on 127.0.0.1.
#
#   scripts/apt-install.sh NAME COMMAND:PACKAGE... [-- EXTRA_PACKAGE...]
#
# NAME prefixes the messages; EXTRA_PACKAGEs are installed along with any missing one.
set -euo pipefail

name=$1; shift
commands=(); missing=(); extra=()
while [ $# -gt 0 ]; do
    if [ "$1" = "--" ]; then shift; extra=("$@"); break; fi
    commands+=("${1%%:*}")
    command -v "${1%%:*}" >/dev/null 2>&1 || missing+=("${1#*:}")
    shift
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo "$name: ${commands[*]} present"
    exit 0
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
        echo "$name: missing ${missing[*]} and this is not root; run: apt-get install ${missing[*]}" >&2
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
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" "${extra[@]}" >/dev/null
for tool in "${commands[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || { echo "$name: $tool still not on PATH" >&2; exit 1; }
done
echo "$name: installed ${missing[*]}"
