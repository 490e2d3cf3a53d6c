#!/usr/bin/env bash
# Install Debian's chromium (the dashboard's browser test) and prometheus (promtool, for
# the alerting rules test) when they are missing (idempotent).  Called by the test
# fixtures (contrib/dashboard, contrib/prometheus) and usable by CI.  The packaged
# prometheus service is not started: only its promtool binary is used.
set -euo pipefail
exec bash "$(dirname "$0")/apt-install.sh" install-test-tools.sh \
    chromium:chromium promtool:prometheus -- fonts-dejavu-core
