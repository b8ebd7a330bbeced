#!/usr/bin/env bash
# Runs inside the built image (deploy/image/check.sh run), through its entrypoint, as Spark's pods run (UID 185):
# a standalone master and two one-core workers on the loopback network, the embed job submitted with the
# image's spark-submit, the nightly reindex on the same cluster (it finds every image embedded and carries
# them), and a search of the published index. Any failure fails the check. DATA is the data folder (the same
# path outside and inside), CATALOGUE its images table.
set -euo pipefail
: "${DATA:?}" "${CATALOGUE:?}"
export SPARK_LOCAL_IP=127.0.0.1 HOME="$DATA/home"
mkdir -p "$HOME" "$DATA/logs"
python -c 'import sys, torch, pyspark, faiss; print("image:", sys.executable, sys.version.split()[0], "torch",
    torch.__version__, "pyspark", pyspark.__version__, "faiss", faiss.__version__)'
java -version 2>&1 | head -1

port=7177
daemons=()
trap 'kill "${daemons[@]}" 2>/dev/null || true' EXIT
"$SPARK_HOME/bin/spark-class" org.apache.spark.deploy.master.Master --host 127.0.0.1 --port "$port" \
    --webui-port 8180 > "$DATA/logs/master.log" 2>&1 &
daemons+=($!)
for i in 1 2; do
    "$SPARK_HOME/bin/spark-class" org.apache.spark.deploy.worker.Worker --host 127.0.0.1 --cores 1 --memory 3g \
        --webui-port $((8180 + i)) --work-dir "$DATA/worker$i" "spark://127.0.0.1:$port" \
        > "$DATA/logs/worker$i.log" 2>&1 &
    daemons+=($!)
done
for _ in $(seq 120); do
    [ "$(grep -c 'Registering worker' "$DATA/logs/master.log" || true)" -ge 2 ] && break
    sleep 1
done
grep -c 'Registering worker' "$DATA/logs/master.log" | grep -qx 2 || { cat "$DATA/logs/"*.log; exit 1; }
echo "cluster: master and 2 workers up"

master="spark://127.0.0.1:$port"
time "$SPARK_HOME/bin/spark-submit" --master "$master" --conf spark.executor.memory=1g \
    /opt/lookalike/jobs/embed.py --images "$CATALOGUE" --store "$DATA/store" --images-per-task 50
time lookalike reindex --master "$master" --images "$CATALOGUE" --store "$DATA/store" --index logos \
    --queries 50 --json > "$DATA/reindex.json"
python - "$DATA/reindex.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
print("reindex:", report["status"], report["images"])
assert report["status"] == "published" and report["images"]["indexed"] == report["images"]["listed"], report
PY
query="$(find "$DATA/input" -name '*.png' | sort | head -1)"
lookalike search --store "$DATA/store" --index logos --cache-dir "$DATA/cache" --k 3 --json "$query" \
    > "$DATA/search.json"
python - "$DATA/search.json" "$query" <<'PY'
import json, sys
top = json.load(open(sys.argv[1]))["results"][0]["hits"][0]
print("search: rank 1", top["image_id"], "cosine", top["cosine"], "inliers", top.get("inliers"))
assert top["uri"] == sys.argv[2] and top["cosine"] > 0.99, top
PY
echo "image check passed"
