#!/usr/bin/env bash
# deploy/pack-env.sh [OUT]: pack lookalike and its pinned dependencies into a relocatable environment archive
# (default dist/lookalike-env.tar.gz) for spark-submit --archives; deploy/submit.sh ships it when
# LOOKALIKE_ENV_ARCHIVE points at it. Executors unpack it as ./env and run ./env/bin/python.
#
# The archive holds the packages, not the interpreter: nodes need the same Python minor version at the same
# path as here (the container image in deploy/Dockerfile has it). For GPU executors set
# TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 (or your CUDA's) to pack CUDA builds of torch.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$repo/dist/lookalike-env.tar.gz}"
python="${PYTHON:-python3}"
build="$(mktemp -d "${TMPDIR:-/tmp}/lookalike-pack.XXXXXX")"
trap 'rm -rf "$build"' EXIT

"$python" -m venv "$build/env"
pip=("$build/env/bin/pip" install --disable-pip-version-check -q -c "$repo/deploy/constraints.txt")
if [ -n "${TORCH_INDEX_URL:-}" ]; then
    "${pip[@]}" --extra-index-url "$TORCH_INDEX_URL" torch torchvision
fi
# A regular (not editable) install: venv-pack refuses editable packages, and executors have no checkout.
"${pip[@]}" "$repo" venv-pack
mkdir -p "$(dirname "$out")"
"$build/env/bin/venv-pack" -p "$build/env" -o "$out" --force -q
echo "$out ($(du -h "$out" | cut -f1)): spark-submit --archives $out#env --conf spark.pyspark.python=./env/bin/python"
