#!/usr/bin/env bash
# Build debian:bookworm-slim from Debian's archive, for machines that cannot pull from a container
# registry (no daemon, no Docker Hub). The result is stored in the local containers storage under the
# name the Dockerfile uses, docker.io/library/debian:bookworm-slim, so the Dockerfile builds unchanged.
#
# What it makes, step by step, is what Debian's official slim images are: a minbase bootstrap of
# bookworm, dpkg told to skip documentation, manuals and translations (and those removed), apt told
# to keep no package cache or lists, and sources for bookworm, bookworm-updates and the security archive.
#
#   image/base.sh                 # MIRROR=... to use another Debian mirror; KEEP_ROOTFS=1 keeps the tree
set -euo pipefail

NAME=${BASE_NAME:-docker.io/library/debian:bookworm-slim}
SUITE=bookworm
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}

for tool in debootstrap podman; do
    command -v "$tool" > /dev/null || { echo "base.sh: $tool is missing (apt-get install debootstrap podman buildah)" >&2; exit 2; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/kairos-base.XXXXXX")
root="$work/rootfs"
trap '[ -n "${KEEP_ROOTFS:-}" ] || rm -rf "$work"' EXIT

started=$(date +%s)
echo "base.sh: bootstrapping $SUITE (minbase) from $MIRROR" >&2
debootstrap --variant=minbase "$SUITE" "$root" "$MIRROR" > "$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; echo "base.sh: debootstrap failed" >&2; exit 1; }

# slim: no documentation, manuals or translations, now or in any later apt-get install
cat > "$root/etc/dpkg/dpkg.cfg.d/docker" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/info/*
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
CFG
find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$root"/usr/share/info/* "$root"/usr/share/man/* "$root"/usr/share/groff/* \
    "$root"/usr/share/linda/* "$root"/usr/share/lintian/*
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +

# apt: keep no downloaded packages, no translations; sources like the official image's
cat > "$root/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG
echo 'Acquire::Languages "none";' > "$root/etc/apt/apt.conf.d/docker-no-languages"
echo 'Acquire::GzipIndexes "true";' > "$root/etc/apt/apt.conf.d/docker-gzip-indexes"
rm -f "$root/etc/apt/sources.list"
cat > "$root/etc/apt/sources.list.d/debian.sources" <<CFG
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
CFG
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/tmp/* "$root"/root/.cache
: > "$root/etc/machine-id"

tar --numeric-owner -C "$root" -c . | podman import --quiet \
    --change 'CMD ["bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    - "$NAME" > /dev/null
size=$(podman image inspect --format '{{.Size}}' "$NAME")
echo "base.sh: $NAME built from $MIRROR in $(( $(date +%s) - started )) s, $(( size / 1000000 )) MB" >&2
