#!/usr/bin/env bash
# Run a command with no network but the loopback: in a network namespace of its own (unshare, as root or in a user
# namespace), where only `lo` exists. `make unit` runs under it, so a test that needs the package index (or any
# other host) fails there instead of passing by luck; mark such a test `network`. Where no namespace can be made
# (a container without the privilege), the command runs as is, with a note.
#   bash ci/offline.sh COMMAND [ARG...]
set -euo pipefail
inside='ip link set lo up 2>/dev/null || true; exec "$@"'
if command -v unshare >/dev/null && unshare -n true 2>/dev/null; then
  exec unshare -n sh -c "$inside" sh "$@"
elif command -v unshare >/dev/null && unshare -rn true 2>/dev/null; then
  exec unshare -rn sh -c "$inside" sh "$@"
fi
echo "note: no network namespace can be made here (unshare): running with the network" >&2
exec "$@"
