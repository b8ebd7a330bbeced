#!/usr/bin/env bash
# Make the image's base from Debian's own packages, for builds where no container registry is reachable:
# debootstrap's minimal Debian bookworm with its Python 3.11, imported into buildah's local storage.
#
#   deploy/image/debian-base.sh [TAG]        # default localhost/lookalike-base:bookworm
#   buildah bud --build-arg BASE_IMAGE=localhost/lookalike-base:bookworm -f deploy/Dockerfile .
#
# Needs root, debootstrap and buildah (both Debian packages). DEBIAN_MIRROR picks the mirror.
set -euo pipefail

tag="${1:-localhost/lookalike-base:bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
work="$(mktemp -d "${TMPDIR:-/var/tmp}/lookalike-base.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# python3-venv: the Dockerfile makes /opt/venv with it; the rest of the image's packages come in its own layer.
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$work/rootfs" "$mirror"
cat > "$work/rootfs/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security} bookworm-security main
SOURCES
rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
tar -C "$work/rootfs" --numeric-owner -cf "$work/rootfs.tar" .

container="$(buildah from scratch)"
trap 'buildah rm "$container" >/dev/null; rm -rf "$work"' EXIT
buildah add "$container" "$work/rootfs.tar" /
buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
    --cmd /bin/bash "$container"
buildah commit --rm "$container" "$tag"
trap 'rm -rf "$work"' EXIT
