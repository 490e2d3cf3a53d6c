#!/usr/bin/env bash
# Install Debian's redis-server when `redis-server` is not on PATH (idempotent).
# Used by the Redis tests' fixtures and by CI.  The installed service is not needed: the
# fixtures start their own redis-server on a free port.
set -euo pipefail
exec bash "$(dirname "$0")/apt-install.sh" install-redis.sh redis-server:redis-server
