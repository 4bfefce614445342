#!/usr/bin/env bash
# One digest of everything the image is built and proven from (not the Python packages: a code change is
# proven by the test suite, and the Dockerfile imports serving.app at build time). CI runs `make image-test`
# when this digest differs from .ci/image-proven, the digest of the last proven build.
set -euo pipefail
cd "$(dirname "$0")/.."
sha256sum Dockerfile docker-compose.yml .dockerignore pyproject.toml constraints.txt image/*.sh image/*.py \
    | sha256sum | cut -d' ' -f1
