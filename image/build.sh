#!/usr/bin/env bash
# Build the Kairos image from the Dockerfile, with whatever this machine has:
#   - a Docker daemon: `docker build` (the base is pulled from the registry as usual);
#   - no daemon: buildah with --isolation chroot (no daemon, no user namespaces needed); when the base
#     image is not in local storage and cannot be pulled, image/base.sh builds it from Debian's archive.
# The health check survives because the image is written in Docker's format (OCI drops HEALTHCHECK).
#
#   image/build.sh [TAG]          # default kairos:latest; IMAGE_BUILDER=docker|buildah to choose
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${1:-kairos:latest}
BASE=docker.io/library/debian:bookworm-slim

builder=${IMAGE_BUILDER:-}
if [ -z "$builder" ]; then
    if command -v docker > /dev/null && docker info > /dev/null 2>&1; then builder=docker
    elif command -v buildah > /dev/null; then builder=buildah
    else
        echo "build.sh: neither a Docker daemon nor buildah is available (apt-get install buildah podman debootstrap)" >&2
        exit 2
    fi
fi

# A CA bundle for pip behind a TLS-inspecting proxy: a build secret, not a layer of the image.
secret=()
cert=${PIP_CERT:-${SSL_CERT_FILE:-}}
if [ -n "$cert" ] && [ -s "$cert" ]; then secret=(--secret "id=pip_cert,src=$cert"); fi

started=$(date +%s)
case "$builder" in
docker)
    docker build "${secret[@]}" -t "$TAG" .
    ;;
buildah)
    if ! buildah inspect --type image "$BASE" > /dev/null 2>&1; then
        if ! buildah pull --quiet "$BASE" > /dev/null 2>&1; then
            echo "build.sh: $BASE cannot be pulled here; building it from Debian's archive (image/base.sh)" >&2
            image/base.sh
        fi
    fi
    buildah bud --isolation chroot --format docker --layers --pull=never "${secret[@]}" -t "$TAG" .
    ;;
*)
    echo "build.sh: IMAGE_BUILDER must be docker or buildah, not $builder" >&2
    exit 2
    ;;
esac
echo "build.sh: $TAG built with $builder in $(( $(date +%s) - started )) s" >&2
