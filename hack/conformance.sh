#!/usr/bin/env bash
# make conformance / make bench: critest (cri-tools v1.37.0) against a private
# `berth serve`, offline. Builds critest and the look-alike images, serves
# them from a registry on 127.0.0.1 (registry.k8s.io, k8s.gcr.io and gcr.io
# remapped to it, no fallback), runs the suite, writes a report, and stops and
# cleans up everything it started whatever the outcome.
#
#   hack/conformance.sh validate   # FOCUS= and SKIP= pass ginkgo focus/skip through
#   hack/conformance.sh bench      # critest -benchmark, plus runc run for scale
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-validate}
export PATH=/usr/local/go/bin:$PATH
export GOFLAGS="-buildvcs=false -tags=containers_image_openpgp,exclude_graphdriver_btrfs,exclude_graphdriver_zfs,containers_image_docker_daemon_stub"
CRI_TOOLS=v1.37.0
B=$PWD/build/conformance
TOOLS=$PWD/build/tools
mkdir -p "$B" "$TOOLS"
log() { echo "conformance: $*" >&2; }

# --- tools ------------------------------------------------------------------
CRITEST=$TOOLS/critest-$CRI_TOOLS
if [ ! -x "$CRITEST" ]; then
  log "building critest $CRI_TOOLS"
  mod=$B/critest-mod
  mkdir -p "$mod"
  ( cd "$mod"
    [ -f go.mod ] || GOFLAGS= go mod init berth.local/critest >/dev/null 2>&1
    GOFLAGS= go get -t "sigs.k8s.io/cri-tools/cmd/critest@$CRI_TOOLS" >/dev/null 2>&1
    GOFLAGS= go test -c -o "$CRITEST" sigs.k8s.io/cri-tools/cmd/critest )
fi

# --- image inputs -----------------------------------------------------------
if [ ! -x "$B/busybox/bin/busybox" ]; then
  log "fetching Debian's dynamic busybox (extracted, not installed)"
  ( cd "$B" && rm -f busybox_*.deb && apt-get download busybox >/dev/null 2>&1 && dpkg-deb -x busybox_*.deb busybox )
fi
LIBS=$(ldd "$B/busybox/bin/busybox" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\/.*ld-linux/ {print $1}' | paste -sd, -)
mkdir -p "$B/helpers"
for h in pause webserver nnp; do
  CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$B/helpers/$h" "./test/conformance/helpers/$h"
done
make --no-print-directory build/tools/crictl-$CRI_TOOLS >/dev/null
CRICTL=$TOOLS/crictl-$CRI_TOOLS
go build -o "$B/registry" ./test/conformance/registry
go build -o "$B/report" ./test/conformance/report
make --no-print-directory build >/dev/null

# --- run --------------------------------------------------------------------
RUN=$(mktemp -d /tmp/berth-conformance.XXXXXX)
SOCK=$RUN/berth.sock
REG_PID= BERTH_PID=
shm_before=$(awk 'NR > 1 {print $2}' /proc/sysvipc/shm | sort)
inits_before=$(pgrep -f berth-pod-init | sort || true)
cleanup() {
  set +e
  if [ -n "$BERTH_PID" ] && kill -0 "$BERTH_PID" 2>/dev/null; then
    # berth leaves pods running when it stops (by design); a test run must
    # not, so remove what critest left (failed specs skip their cleanup).
    "$CRICTL" --runtime-endpoint "unix://$SOCK" rmp --all --force >/dev/null 2>&1
    kill -TERM "$BERTH_PID"; wait "$BERTH_PID" 2>/dev/null
  fi
  if [ -n "$REG_PID" ] && kill -0 "$REG_PID" 2>/dev/null; then
    kill -TERM "$REG_PID"; wait "$REG_PID" 2>/dev/null
  fi
  # SysV shared memory segments created during the run by critest (the
  # HostIpc specs never remove theirs).
  for id in $(comm -13 <(echo "$shm_before") <(awk 'NR > 1 {print $2}' /proc/sysvipc/shm | sort)); do
    if [ -n "${CRITEST_PID:-}" ] && awk -v id="$id" -v pid="$CRITEST_PID" 'NR > 1 && $2 == id && $5 == pid {found=1} END {exit !found}' /proc/sysvipc/shm; then
      ipcrm -m "$id" 2>/dev/null && log "removed shm segment $id left by critest"
    fi
  done
  leftovers=$( { grep -F "$RUN" /proc/self/mountinfo | awk '{print "mount " $5}';
                 pgrep -af "$RUN" | grep -v "pgrep" | sed 's/^/process /';
                 comm -13 <(echo "$inits_before") <(pgrep -f berth-pod-init | sort) | sed 's/^/pod init /'; } || true)
  if [ -n "$leftovers" ]; then
    log "LEFTOVERS after the run:"; echo "$leftovers" >&2
  else
    log "leftover check: no berth process, mount or shm segment of this run remains"
    rm -rf "$RUN"
  fi
}
trap cleanup EXIT

"$B/registry" -addr 127.0.0.1:0 -busybox "$B/busybox/bin/busybox" -libs "$LIBS" -helpers "$B/helpers" \
  -registries-conf "$RUN/registries.conf" -ready "$RUN/registry.addr" >"$RUN/registry.log" 2>&1 &
REG_PID=$!
for _ in $(seq 300); do [ -s "$RUN/registry.addr" ] && break; kill -0 "$REG_PID" 2>/dev/null || { cat "$RUN/registry.log" >&2; exit 1; }; sleep 0.1; done
log "registry on $(cat "$RUN/registry.addr")"

sed -e "s|^plugin_dir = .*|plugin_dir = \"$PWD/bin\"|" \
    -e "s|^\[plugins.overlay.config\]$|[plugins.overlay.config]\nregistries_conf = \"$RUN/registries.conf\"|" \
    plugins.toml >"$RUN/plugins.toml"
bin/berth serve --config "$RUN/plugins.toml" --listen "$SOCK" --root "$RUN/root" --runroot "$RUN/run" >"$RUN/berth.log" 2>&1 &
BERTH_PID=$!
for _ in $(seq 200); do [ -S "$SOCK" ] && break; kill -0 "$BERTH_PID" 2>/dev/null || { cat "$RUN/berth.log" >&2; exit 1; }; sleep 0.1; done
log "berth serving on $SOCK"

start=$(date +%s)
if [ "$MODE" = bench ]; then
  cat >"$RUN/bench.yaml" <<YAML
containersNumber: 20
containersNumberParallel: 1
containerBenchmarkTimeoutSeconds: 120
podsNumber: 20
podsNumberParallel: 1
podBenchmarkTimeoutSeconds: 120
imagesNumber: 20
imagesNumberParallel: 1
imageBenchmarkTimeoutSeconds: 120
imagePullingBenchmarkImage: registry.k8s.io/e2e-test-images/busybox:1.29-2
imageListingBenchmarkImages:
  - registry.k8s.io/e2e-test-images/busybox:1.29-2
  - registry.k8s.io/pause:3.9
YAML
  mkdir -p "$B/bench"
  rm -f "$B/bench"/*.json
  "$CRITEST" -benchmark --runtime-endpoint "unix://$SOCK" --image-endpoint "unix://$SOCK" \
    -benchmarking-params-file "$RUN/bench.yaml" -benchmarking-output-dir "$B/bench" \
    --ginkgo.no-color --ginkgo.timeout 60m >"$B/critest-bench.log" 2>&1 &
  CRITEST_PID=$!
  wait "$CRITEST_PID" || log "critest -benchmark exited with $? (see $B/critest-bench.log)"
  go run ./test/conformance/benchreport -dir "$B/bench" | tee "$B/bench.txt"
  hack/runc-bench.sh "$B/busybox/bin/busybox" 20 | tee -a "$B/bench.txt"
  exit 0
fi

skip="public image with digest should be pulled and removed"
[ -n "${SKIP:-}" ] && skip="$skip|$SKIP"
args=(--runtime-endpoint "unix://$SOCK" --image-endpoint "unix://$SOCK" --ginkgo.no-color
      --ginkgo.json-report "$RUN/critest.json" --ginkgo.skip "$skip" --ginkgo.timeout 80m)
[ -n "${FOCUS:-}" ] && args+=(--ginkgo.focus "$FOCUS")
log "running critest ${FOCUS:+(focus: $FOCUS) }(skip: $skip)"
set +e
"$CRITEST" "${args[@]}" >"$B/critest.log" 2>&1 &
CRITEST_PID=$!
wait "$CRITEST_PID"
rc=$?
set -e
wall=$(( $(date +%s) - start ))s
cp "$RUN/critest.json" "$B/critest.json" 2>/dev/null || true
cp "$RUN/berth.log" "$B/berth.log"
"$B/report" -json "$B/critest.json" -wall "$wall" -command "make conformance${FOCUS:+ FOCUS='$FOCUS'}${SKIP:+ SKIP='$SKIP'}" | tee "$B/report.txt"
log "report: $B/report.txt, critest output: $B/critest.log, berth log: $B/berth.log"
exit $rc
