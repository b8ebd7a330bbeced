#!/usr/bin/env bash
# deploy/pack-env.sh [OUT]: pack lookalike and its pinned dependencies into a relocatable environment archive
# (default dist/lookalike-env.tar.gz) for spark-submit --archives; deploy/submit.sh ships it when
# LOOKALIKE_ENV_ARCHIVE points at it. Executors unpack it as ./env and run ./env/bin/python.
#
# The archive holds the packages, not the interpreter: nodes need the same Python minor version at the same
# path as here (the container image in deploy/Dockerfile has it). PyPI's torch wheels are CUDA 13 builds, for GPU
# executors; for CPU-only executors set TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu to pack the much
# smaller CPU builds.
#
# LOOKALIKE_BASE_SITE_PACKAGES=DIR packs lookalike alone, ~26 MB (its bundled models) instead of gigabytes: its
# dependencies are imported from DIR, a site-packages folder that every node already has at that path (a
# base environment baked into the node image). The archive's own packages come first on sys.path.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$repo/dist/lookalike-env.tar.gz}"
python="${PYTHON:-python3}"
build="$(mktemp -d "${TMPDIR:-/tmp}/lookalike-pack.XXXXXX")"
trap 'rm -rf "$build"' EXIT

"$python" -m venv "$build/env"
pip=("$build/env/bin/pip" install --disable-pip-version-check -q -c "$repo/deploy/constraints.txt")
base="${LOOKALIKE_BASE_SITE_PACKAGES:-}"
if [ -n "$base" ]; then
    if [ ! -d "$base" ]; then
        echo "pack-env.sh: LOOKALIKE_BASE_SITE_PACKAGES=$base is not a folder" >&2
        exit 2
    fi
    # A regular (not editable) install: venv-pack refuses editable packages, and executors have no checkout.
    "${pip[@]}" --no-deps "$repo" venv-pack
    site="$("$build/env/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    # Appended after the archive's own site-packages at start-up, by an import line of a .pth file (venv-pack
    # refuses a .pth line naming a folder, taking it for an editable install; a sitecustomize.py is shadowed by
    # the system's on Debian's Python). The base's own .pth files are not read, so an editable lookalike there
    # cannot shadow the packed one.
    printf 'import sys; sys.path.append(%s)\n' "$("$build/env/bin/python" -c 'import sys; print(repr(sys.argv[1]))' "$base")" \
        > "$site/lookalike-base-site-packages.pth"
else
    if [ -n "${TORCH_INDEX_URL:-}" ]; then
        "${pip[@]}" --extra-index-url "$TORCH_INDEX_URL" torch torchvision
    fi
    # What executors and the driver run: the jobs on Spark, word spaces, training (no serving, no reports).
    "${pip[@]}" "$repo[spark,words,train]" venv-pack
fi
mkdir -p "$(dirname "$out")"
"$build/env/bin/venv-pack" -p "$build/env" -o "$out" --force -q
echo "$out ($(du -h "$out" | cut -f1)): spark-submit --archives $out#env --conf spark.pyspark.python=./env/bin/python"
