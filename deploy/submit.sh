#!/usr/bin/env bash
# deploy/submit.sh JOB [ARGS...] — spark-submit one lookalike job.
#
# JOB is one of: embed, build_index, reindex, similarity_join, export_shards (jobs/JOB.py); ARGS are the
# job's own arguments (`lookalike JOB --help`). Everything about the cluster comes from the environment:
#
#   LOOKALIKE_MASTER       Spark master URL (default local[*]): spark://host:7077, k8s://https://..., yarn
#   LOOKALIKE_DEPLOY_MODE  client (default) or cluster
#   LOOKALIKE_PROPERTIES   a spark-defaults style file (deploy/conf/*.conf): executors, memory, GPUs
#   LOOKALIKE_ENV_ARCHIVE  a packed environment (deploy/pack-env.sh): shipped with --archives and unpacked as
#                          ./env on every executor, so the cluster needs no Python packages of its own
#   LOOKALIKE_PYTHON       without an archive: the Python that driver and executors run (default: this
#                          checkout's .venv, which must exist at the same path on every node)
#   SPARK_HOME             where bin/spark-submit is (default: spark-submit on PATH, else the pyspark package's)
#   LOOKALIKE_SUBMIT_ARGS  extra spark-submit arguments, word-split (e.g. "--conf spark.executor.instances=8")
#   LOOKALIKE_IMAGE_HOME   on Kubernetes, where the image holds lookalike (default /opt/lookalike): the job runs
#                          as local://$LOOKALIKE_IMAGE_HOME/jobs/JOB.py, with the interpreter the image's
#                          properties file names (nothing of this checkout is uploaded or imposed)
#   LOOKALIKE_DRY_RUN      set: print the spark-submit command instead of running it
#
# A reindex in cluster deploy mode exits with the code its run recorded in the store (spark-submit itself says 1
# for any failed application): 75 another run holds the lease, 143 stopped, 3 refused, ... (`lookalike --help`).
#
# S3 credentials are never passed on the command line: executors take them from the standard AWS
# environment, profile or instance role (forward AWS_* with spark.executorEnv.* in the properties file).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    sed -n '2,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 2
fi
job="${1//-/_}"
shift
script="$repo/jobs/$job.py"
if [[ "$job" == _* ]] || [ ! -f "$script" ]; then
    echo "submit.sh: no job '$job'; one of: $(cd "$repo/jobs" && ls [a-z]*.py | sed 's/\.py$//' | tr '\n' ' ')" >&2
    exit 2
fi

venv_python="$repo/.venv/bin/python"
if [ -n "${SPARK_HOME:-}" ]; then
    submit="$SPARK_HOME/bin/spark-submit"
elif command -v spark-submit >/dev/null; then
    submit="$(command -v spark-submit)"
else
    py="${LOOKALIKE_PYTHON:-$venv_python}"
    SPARK_HOME="$("$py" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
    export SPARK_HOME
    submit="$SPARK_HOME/bin/spark-submit"
fi

master="${LOOKALIKE_MASTER:-local[*]}"
if [ -n "${LOOKALIKE_ENV_ARCHIVE:-}" ] && [[ "$master" == local* ]]; then
    echo "submit.sh: LOOKALIKE_ENV_ARCHIVE needs a cluster master ($master runs its executors here, where the" \
         "archive is never unpacked as ./env); unset it for local runs, which use LOOKALIKE_PYTHON (default" \
         "this checkout's .venv)" >&2
    exit 2
fi
args=(--master "$master" --deploy-mode "${LOOKALIKE_DEPLOY_MODE:-client}"
      --name "lookalike-$job" --conf spark.ui.showConsoleProgress=false)
if [ -n "${LOOKALIKE_PROPERTIES:-}" ]; then
    # --load-spark-defaults: the cluster's own spark-defaults.conf (its queue, its event log) still applies under
    # ours; a properties file alone makes spark-submit skip it.
    args+=(--properties-file "$LOOKALIKE_PROPERTIES" --load-spark-defaults)
fi
if [[ "$master" == k8s://* ]] && [ "${LOOKALIKE_DEPLOY_MODE:-client}" != "cluster" ]; then
    echo "submit.sh: on Kubernetes the job runs from the image (local:///opt/lookalike/jobs/...), which exists only" \
         "in cluster deploy mode: set LOOKALIKE_DEPLOY_MODE=cluster (or run the Spark operator's deploy/k8s/reindex.yaml)" >&2
    exit 2
fi
if [[ "$master" == k8s://* ]] && [ -n "${LOOKALIKE_ENV_ARCHIVE:-}" ]; then
    echo "submit.sh: on Kubernetes the image holds the environment and an archive would be ignored: unset" \
         "LOOKALIKE_ENV_ARCHIVE (rebuild the image to change what it runs)" >&2
    exit 2
fi
if [[ "$master" == k8s://* ]]; then
    # The driver and executors are pods of the image: the job is a path inside it, and the interpreter is the
    # one the image's properties file sets (spark.pyspark.python), never this checkout's.
    script="local://${LOOKALIKE_IMAGE_HOME:-/opt/lookalike}/jobs/$job.py"
elif [ -n "${LOOKALIKE_ENV_ARCHIVE:-}" ]; then
    # Executors unpack the archive as ./env; a client-mode driver runs the same environment unpacked locally
    # (LOOKALIKE_PYTHON), a cluster-mode driver the shipped one.
    args+=(--archives "$LOOKALIKE_ENV_ARCHIVE#env" --conf spark.pyspark.python=./env/bin/python)
    if [ "${LOOKALIKE_DEPLOY_MODE:-client}" = "cluster" ]; then
        args+=(--conf spark.pyspark.driver.python=./env/bin/python)
    else
        args+=(--conf "spark.pyspark.driver.python=${LOOKALIKE_PYTHON:-$venv_python}")
    fi
else
    py="${LOOKALIKE_PYTHON:-$venv_python}"
    args+=(--conf "spark.pyspark.python=$py" --conf "spark.pyspark.driver.python=$py")
fi
# shellcheck disable=SC2206  # word splitting of the extra arguments is the point
extra=(${LOOKALIKE_SUBMIT_ARGS:-})
if [ -n "${LOOKALIKE_DRY_RUN:-}" ]; then
    printf '%q ' "$submit" "${args[@]}" "${extra[@]}" "$script" "$@"
    echo
    exit 0
fi
if [ "${LOOKALIKE_DEPLOY_MODE:-client}" != "cluster" ] || [ "$job" != "reindex" ]; then
    exec "$submit" "${args[@]}" "${extra[@]}" "$script" "$@"
fi
# In cluster mode the driver runs on the cluster, and spark-submit returns 1 for any failed application (YARN), so
# a scheduler could not tell "another run holds the lease" (75) or "stopped" (143) from a bad call (2): read the
# code the run recorded in the store instead.
started="$(date +%s)"
rc=0
"$submit" "${args[@]}" "${extra[@]}" "$script" "$@" || rc=$?
if [ "$rc" -ne 0 ]; then
    status=(status)
    while [ $# -gt 0 ]; do
        case "$1" in
            --store|--store-option|--index|--name) status+=("$1" "$2"); shift 2 ;;
            *) shift ;;
        esac
    done
    "${LOOKALIKE_PYTHON:-$venv_python}" -m lookalike.cli.main "${status[@]}" --run-outcome-since "$started" >&2 || rc=$?
fi
exit "$rc"
