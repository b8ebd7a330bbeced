#!/usr/bin/env bash
# Graceful decommissioning of an executor pod (spark.decommission.enabled, spark.kubernetes.decommission.script,
# whose default is this path: /opt/decom.sh in the image). Kubernetes runs it as the pod's preStop hook: it asks
# the executor JVM to decommission (SIGPWR), so that Spark moves its work and blocks elsewhere, then waits for the
# JVM to exit, up to the pod's termination grace period.
set -uo pipefail
log=/dev/termination-log
pid="$(pgrep -f org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend | head -n 1)"
if [ -z "$pid" ]; then
    echo "decom.sh: no executor JVM in this pod" | tee -a "$log" 2>/dev/null
    exit 0
fi
echo "decom.sh: decommissioning executor pid $pid" | tee -a "$log" 2>/dev/null
kill -s PWR "$pid"
while kill -0 "$pid" 2>/dev/null; do
    sleep 1
done
echo "decom.sh: executor pid $pid exited" | tee -a "$log" 2>/dev/null
