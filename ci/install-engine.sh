#!/usr/bin/env bash
# The container tooling from Debian's apt, installed only when a piece is missing (seconds when all is there):
# podman + runc (build and run the images), debootstrap (the base image when no registry is reachable),
# docker-registry (the local OCI registry the release test pushes to and pulls from).
set -euo pipefail
missing=0
for tool in podman runc debootstrap docker-registry; do command -v "$tool" >/dev/null || missing=1; done
if [ "$missing" = 1 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc catatonit slirp4netns uidmap debootstrap \
    docker-registry >/dev/null
fi
