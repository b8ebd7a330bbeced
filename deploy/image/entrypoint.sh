#!/usr/bin/env bash
# The image's entrypoint, speaking the protocol Spark's Kubernetes backend (and so the Spark operator) uses to
# start pods: the first argument says the pod's role, the rest comes from Spark.
#
#   driver ARGS...    spark-submit in client mode inside the driver pod, bound to the pod's address
#   executor          the executor JVM; Spark passes what it needs as SPARK_* environment variables
#   classpath         print the executor's class path (to see what a pod would load)
#   anything else     run as given (lookalike serve ..., a shell)
#
# The one Spark of the image is the pyspark package's (SPARK_HOME points into /opt/venv): its jars include
# spark-kubernetes, so no second distribution is needed. As in Apache Spark's own image: the class path takes
# the Spark and Hadoop configuration folders, spark.executor.extraClassPath (SPARK_CLASSPATH) and a Hadoop
# distribution's (SPARK_DIST_CLASSPATH); a UID without a passwd entry (OpenShift's random UIDs) gets one, since
# Java, Hadoop and Python's getpass ask for the user's name; JAVA_HOME is found from the java on PATH on any
# architecture; decommissioning runs /opt/decom.sh.
set -euo pipefail

: "${SPARK_HOME:?SPARK_HOME must name the Spark installation (the image sets it)}"

if [ -z "${JAVA_HOME:-}" ] && command -v java >/dev/null; then
    JAVA_HOME="$(java -XshowSettings:properties -version 2>&1 | awk '/java.home =/ {print $3}')"
    export JAVA_HOME
fi

classpath="${SPARK_CONF_DIR:-$SPARK_HOME/conf}"
classpath+="${HADOOP_CONF_DIR:+:$HADOOP_CONF_DIR}"
classpath+="${SPARK_CLASSPATH:+:$SPARK_CLASSPATH}"
classpath+=":$SPARK_HOME/jars/*"
classpath+="${SPARK_EXTRA_CLASSPATH:+:$SPARK_EXTRA_CLASSPATH}"
classpath+="${SPARK_DIST_CLASSPATH:+:$SPARK_DIST_CLASSPATH}"
classpath+=":$PWD"  # SPARK-43540: files shipped with the job

# A name for a UID that /etc/passwd does not know, through nss_wrapper (package libnss-wrapper).
if ! getent passwd "$(id -u)" >/dev/null 2>&1; then
    for wrapper in /usr/lib/*/libnss_wrapper.so /usr/lib/libnss_wrapper.so /lib/*/libnss_wrapper.so; do
        if [ -s "$wrapper" ]; then
            NSS_WRAPPER_PASSWD="$(mktemp)"
            NSS_WRAPPER_GROUP="$(mktemp)"
            printf 'spark:x:%s:%s:%s:%s:/usr/sbin/nologin\n' "$(id -u)" "$(id -g)" "${SPARK_USER_NAME:-anonymous uid}" \
                "${HOME:-/tmp}" > "$NSS_WRAPPER_PASSWD"
            printf 'spark:x:%s:\n' "$(id -g)" > "$NSS_WRAPPER_GROUP"
            export LD_PRELOAD="$wrapper${LD_PRELOAD:+:$LD_PRELOAD}" NSS_WRAPPER_PASSWD NSS_WRAPPER_GROUP
            break
        fi
    done
fi

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
    classpath)
        echo "$classpath"
        ;;
    *)
        exec "${init[@]}" "$@"
        ;;
esac
