#!/usr/bin/env bash
# The image's entrypoint, speaking the protocol Spark's Kubernetes backend (and so the Spark operator) uses to
# start pods: the first argument says the pod's role, the rest comes from Spark.
#
#   driver ARGS...    spark-submit in client mode inside the driver pod, bound to the pod's address
#   executor          the executor JVM; Spark passes what it needs as SPARK_* environment variables
#   anything else     run as given (lookalike serve ..., a shell)
#
# The one Spark of the image is the pyspark package's (SPARK_HOME points into /opt/venv): its jars include
# spark-kubernetes, so no second distribution is needed.
set -euo pipefail

: "${SPARK_HOME:?SPARK_HOME must name the Spark installation (the image sets it)}"
classpath="${SPARK_CONF_DIR:-$SPARK_HOME/conf}:$SPARK_HOME/jars/*${SPARK_EXTRA_CLASSPATH:+:$SPARK_EXTRA_CLASSPATH}:$PWD"
# tini reaps the JVM's and the Python workers' children and forwards SIGTERM, as Kubernetes expects of PID 1.
init=()
if command -v tini >/dev/null; then
    init=(tini -s --)
fi

case "${1:-}" in
    driver)
        shift
        exec "${init[@]}" "$SPARK_HOME/bin/spark-submit" \
            --conf "spark.driver.bindAddress=${SPARK_DRIVER_BIND_ADDRESS:?set by Spark in driver pods}" \
            --conf "spark.executorEnv.SPARK_DRIVER_POD_IP=$SPARK_DRIVER_BIND_ADDRESS" \
            --deploy-mode client "$@"
        ;;
    executor)
        # Spark hands the executor's JVM options over as SPARK_JAVA_OPT_0, SPARK_JAVA_OPT_1, ...
        java_opts=()
        while IFS= read -r name; do
            java_opts+=("${!name}")
        done < <(compgen -v SPARK_JAVA_OPT_ | sort -t_ -k4 -n)
        exec "${init[@]}" "${JAVA_HOME:+$JAVA_HOME/bin/}java" "${java_opts[@]}" \
            -Xms"${SPARK_EXECUTOR_MEMORY:?set by Spark in executor pods}" -Xmx"$SPARK_EXECUTOR_MEMORY" \
            -cp "$classpath" org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
            --driver-url "${SPARK_DRIVER_URL:?set by Spark in executor pods}" \
            --executor-id "$SPARK_EXECUTOR_ID" --cores "$SPARK_EXECUTOR_CORES" --app-id "$SPARK_APPLICATION_ID" \
            --hostname "$SPARK_EXECUTOR_POD_IP" --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID:-0}" \
            --podName "${SPARK_EXECUTOR_POD_NAME:-$HOSTNAME}"
        ;;
    *)
        exec "${init[@]}" "$@"
        ;;
esac
