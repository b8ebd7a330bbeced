#!/usr/bin/env bash
# Build deploy/Dockerfile for real and run the jobs inside the built image, with buildah alone (no Docker engine,
# no container registry): `make image-check`, which a release runs (it is too slow for make test).
#
#   deploy/image/check.sh build     # the base from Debian's packages if missing, then the image
#   deploy/image/check.sh run       # inside the image: a standalone master and two workers started through
#                                   # its entrypoint on the loopback network, `lookalike reindex` of real logos
#                                   # on them, then `lookalike search` of the published index
#   deploy/image/check.sh           # both
#
# IMAGE names the image (default localhost/lookalike:check), BASE_IMAGE its base. The host's pip settings carry
# into the build: its file:// indexes are mounted read-only and its CA bundle (a TLS-intercepting proxy) is
# given to pip with --cert. Needs root, buildah and debootstrap (Debian packages).
set -euo pipefail
cd "$(dirname "$0")/../.."

image="${IMAGE:-localhost/lookalike:check}"
base="${BASE_IMAGE:-localhost/lookalike-base:bookworm}"
python="${PYTHON:-.venv/bin/python}"

build() {
    buildah inspect --type image "$base" >/dev/null 2>&1 || deploy/image/debian-base.sh "$base"
    local args=(--isolation chroot --layers --build-arg BASE_IMAGE="$base" -f deploy/Dockerfile -t "$image")
    local options="" settings url cert
    settings="$(python3 -m pip config list 2>/dev/null || true)"
    for url in $(sed -n "s/^global.extra-index-url='\(.*\)'$/\1/p" <<<"$settings") ${PIP_EXTRA_INDEX_URL:-}; do
        options+=" --extra-index-url $url"
        if [[ "$url" == file://* ]]; then  # a local index: its folder (files beside simple/) into the build
            local folder; folder="$(dirname "${url#file://}")"
            args+=(--volume "$folder:$folder:ro")
        fi
    done
    cert="${PIP_CERT:-$(sed -n "s/^global.cert='\(.*\)'$/\1/p" <<<"$settings")}"
    if [ -n "$cert" ]; then
        args+=(--volume "$cert:/run/host-ca.crt:ro")
        options+=" --cert /run/host-ca.crt"
    fi
    buildah bud "${args[@]}" --build-arg PIP_INSTALL_OPTIONS="$options" .
}

run() {
    data="$(mktemp -d "${TMPDIR:-/var/tmp}/lookalike-image-check.XXXXXX")"
    container="$(buildah from "$image")"
    # On exit, failed or not: the container and the data go (EXIT: set -e leaves the function without returning).
    trap 'buildah rm "$container" >/dev/null; rm -rf "$data"' EXIT
    # Real logos (simple-icons, from npm), written by the host's environment; the image reads them as the user
    # Spark's pods run as.
    "$python" -c "import sys; from pathlib import Path; from lookalike.dev.datasets import simple_icons_catalogue; \
        print(simple_icons_catalogue(Path(sys.argv[1]), limit=200))" "$data/input" > "$data/catalogue"
    chown -R 185:185 "$data"
    # The data folder at the same path inside, so the catalogue's URIs hold there too.
    buildah run --isolation chroot --user 185:185 --volume "$data:$data" \
        --env DATA="$data" --env CATALOGUE="$(cat "$data/catalogue")" "$container" -- \
        /opt/lookalike/deploy/image/entrypoint.sh bash /opt/lookalike/deploy/image/cluster-check.sh
}

case "${1:-all}" in
    build) build ;;
    run) run ;;
    all) build && run ;;
    *) echo "usage: $0 [build|run|all]" >&2; exit 2 ;;
esac
