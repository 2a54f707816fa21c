#!/usr/bin/env bash
# Fill DIR with the images' build context: the sources both Dockerfiles copy, plus this machine's CA bundle as
# build-ca.pem when one exists (a TLS-intercepting proxy may stand between the build and PyPI; E2E_CA_BUNDLE
# names another). The bundle is never committed. Used by ci/e2e and ci/release.sh.
#   bash ci/build-context.sh DIR
set -euo pipefail
cd "$(dirname "$0")/.."
ctx=${1:?usage: ci/build-context.sh DIR}
cp -r pyproject.toml README.md initcontainer server-image "$ctx/"
find "$ctx" -name __pycache__ -prune -exec rm -rf {} +
ca=${E2E_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
if [ -f "$ca" ]; then cp "$ca" "$ctx/build-ca.pem"; fi
