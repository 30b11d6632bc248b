#!/usr/bin/env bash
# crictl-tour.sh: walks through what kubelet does to a pod, with crictl,
# against a running Berth (`make run`) and the test registry
# (`go run ./test/registry -addr 127.0.0.1:5000`). Prints every command and
# its output. CRICTL and ENDPOINT override the defaults.
set -euo pipefail
CRICTL=${CRICTL:-crictl}
ENDPOINT=${ENDPOINT:-unix:///run/berth/berth.sock}
IMAGE=${IMAGE:-127.0.0.1:5000/busybox:latest}
dir=$(mktemp -d /tmp/berth-tour.XXXXXX)
pods=()
cleanup() {
  for p in "${pods[@]}"; do c stopp "$p" >/dev/null 2>&1 || true; c rmp "$p" >/dev/null 2>&1 || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
c() { "$CRICTL" --runtime-endpoint "$ENDPOINT" --image-endpoint "$ENDPOINT" -t 30s "$@"; }
run() { echo "\$ crictl $*"; c "$@"; }

cat >"$dir/pod.json" <<JSON
{"metadata": {"name": "tour", "namespace": "default", "uid": "tour-uid"},
 "hostname": "tour", "log_directory": "$dir/logs", "linux": {}}
JSON
ctr() { # name, memory limit, shell script
  python3 -c 'import json, sys; print(json.dumps({"metadata": {"name": sys.argv[1]}, "image": {"image": sys.argv[4]},
    "log_path": sys.argv[1] + ".log", "command": ["/bin/sh", "-c", sys.argv[3]],
    "linux": {"resources": {"memory_limit_in_bytes": int(sys.argv[2])}}}))' "$1" "$2" "$3" "$IMAGE"
}
ctr web 67108864 'echo hello from $(hostname); i=0; while true; do echo tick $i; i=$((i+1)); sleep 1; done' >"$dir/web.json"
ctr three 0 'echo bye >&2; exit 3' >"$dir/three.json"
ctr hog 16777216 'echo filling; exec dd if=/dev/zero of=/dev/null bs=64M count=1' >"$dir/hog.json"

run pull "$IMAGE" >/dev/null
echo "\$ crictl runp pod.json"; POD=$(c runp "$dir/pod.json"); pods+=("$POD"); echo "$POD"
echo "\$ crictl create \$POD web.json pod.json"; WEB=$(c create "$POD" "$dir/web.json" "$dir/pod.json"); echo "$WEB"
run start "$WEB"
THREE=$(c create "$POD" "$dir/three.json" "$dir/pod.json"); c start "$THREE" >/dev/null
HOG=$(c create "$POD" "$dir/hog.json" "$dir/pod.json"); c start "$HOG" >/dev/null
sleep 3
run ps -a
run pods
echo "\$ crictl inspect \$WEB | head -40"; c inspect "$WEB" | head -40
echo "\$ timeout 3 crictl logs -f \$WEB"; timeout 3 "$CRICTL" --runtime-endpoint "$ENDPOINT" logs -f "$WEB" || true
echo "\$ cat $dir/logs/web.log | head -3   # the CRI log format"; head -3 "$dir/logs/web.log"
run exec -s "$WEB" sh -c 'hostname; id; cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max'
echo "\$ crictl exec -s --timeout 1 \$WEB sleep 10   # timeout kills and reaps"; c exec -s --timeout 1 "$WEB" sleep 10 || echo "(exit $?)"
run stats
run statsp
run update --memory 134217728 "$WEB"
run exec -s "$WEB" sh -c 'cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max'
echo "\$ crictl inspect \$THREE | grep -E 'exitCode|reason|\"state\"'"; c inspect "$THREE" | grep -E '"exitCode"|"reason"|"state"'
echo "\$ crictl inspect \$HOG | grep -E 'exitCode|reason|\"state\"'"; c inspect "$HOG" | grep -E '"exitCode"|"reason"|"state"'
echo "\$ time crictl stop --timeout 2 \$WEB"; s=$(date +%s%N); c stop --timeout 2 "$WEB"; echo "took $(( ($(date +%s%N) - s) / 1000000 )) ms"
run rm "$WEB" "$THREE" "$HOG"
run stopp "$POD"
run rmp "$POD"
pods=()
run pods
