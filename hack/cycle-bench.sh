#!/usr/bin/env bash
# make bench-cycle: the crictl pod cycle on Berth and on containerd, measured
# side by side in the same run, plus the memory of the per-container monitor.
#
# Starts, all private and all on loopback: the critest look-alike registry
# (test/conformance/registry) on 127.0.0.1, a `berth serve` and a containerd
# (Debian's, installed from apt when missing, never its system service) each
# with its own root, state and socket in a temporary directory. Pods use the
# host network on both runtimes, so neither needs CNI. Both get the same pod
# and container configs (busybox running `sleep 3600`), with a cgroup parent
# under /berth-cycle-bench-PID/<runtime>/.
#
# Timed with `date +%s%N` around each crictl command (so each figure includes
# one crictl process start), N iterations per runtime, interleaved:
#   start  runp + create + start
#   cycle  runp, create, start, stop (timeout 0: SIGKILL), stopp, rmp, each
#          step timed on its own too
# then N `runc run` of a busybox bundle (hack/runc-bench.sh), and the PSS
# (/proc/PID/smaps_rollup) per pod of Berth's container supervisors (the
# monitor plugin's berth-conmon processes) and pod inits, and of containerd's
# containerd-shim-runc-v2 and pause processes, with M pods running on each.
#
#   N=20 M=10 hack/cycle-bench.sh       (root; WARMUP=1 untimed cycle first)
#
# Everything it starts or creates is stopped and removed on exit, whatever
# the outcome, and a leftover check is printed.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
N=${N:-20} M=${M:-10} WARMUP=${WARMUP:-1}
export PATH=/usr/local/go/bin:$PATH
export GOFLAGS="-buildvcs=false -tags=containers_image_openpgp,exclude_graphdriver_btrfs,exclude_graphdriver_zfs,containers_image_docker_daemon_stub"
B=$PWD/build/cycle-bench
CRICTL=$PWD/build/tools/crictl-v1.37.0
log() { echo "cycle-bench: $*" >&2; }
[ "$(id -u)" = 0 ] || { log "needs root"; exit 1; }

RUN= REG_PID= BERTH_PID= CTRD_PID= POLICY_RC= RUN_CONTAINERD_CREATED=
CG=/berth-cycle-bench-$$
# alive PIDS: whether one of PIDS is still a live (not zombie) process
alive() { local p s; for p in $1; do
  s=$(awk '/^State:/{print $2}' "/proc/$p/status" 2>/dev/null || true); [ -n "$s" ] && [ "$s" != Z ] && return 0; done; return 1; }
cleanup() {
  local rc=$?
  set +e
  [ -n "$POLICY_RC" ] && rm -f /usr/sbin/policy-rc.d
  [ -z "$RUN" ] && return
  # Pods first, while the daemons still run; then the daemons, by PID.
  if [ -n "$BERTH_PID" ] && kill -0 "$BERTH_PID" 2>/dev/null; then
    cc "$RUN/berth.sock" rmp --all --force >/dev/null 2>&1
    kill -TERM "$BERTH_PID"; wait "$BERTH_PID" 2>/dev/null
  fi
  if [ -n "$CTRD_PID" ] && kill -0 "$CTRD_PID" 2>/dev/null; then
    cc "$RUN/containerd.sock" rmp --all --force >/dev/null 2>&1
    kill -TERM "$CTRD_PID"; wait "$CTRD_PID" 2>/dev/null
  fi
  if [ -n "$REG_PID" ] && kill -0 "$REG_PID" 2>/dev/null; then
    kill -TERM "$REG_PID"; wait "$REG_PID" 2>/dev/null
  fi
  # Whatever a failed removal left: containers in this run's runc roots
  # (with their conmon or shim gone they are reparented to init), then this
  # run's shims (their command line names this run's containerd socket).
  local root id p
  for root in "$RUN/containerd/runc/k8s.io" $(find "$RUN/berth-run" -maxdepth 6 -type d -path "*/state/runc" 2>/dev/null); do
    [ -d "$root" ] || continue
    for id in $(runc --root "$root" list -q 2>/dev/null); do
      log "removing leftover container $id"; runc --root "$root" delete --force "$id" >/dev/null 2>&1
    done
  done
  for p in $(pgrep -f -- "-address $RUN/containerd.sock" || true); do
    log "stopping leftover shim $p"; kill -KILL "$p" 2>/dev/null
  done
  # Berth's supervisors exit after their container: give them a moment.
  for _ in $(seq 30); do alive "$(cat "$RUN"/pids.* 2>/dev/null)" || break; sleep 0.1; done
  for p in $(cat "$RUN"/pids.* 2>/dev/null); do
    # Berth's supervisors and pod inits recorded by this run (double-forked,
    # so not our children): only if still the same kind of process.
    if alive "$p" && tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | grep -qE 'berth-conmon|berth-pod-init'; then
      log "stopping leftover $(tr '\0' ' ' <"/proc/$p/cmdline") ($p)"; kill -KILL "$p" 2>/dev/null
    fi
  done
  # Mounts under the run directory, deepest first.
  grep -F " $RUN/" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do
    log "unmounting leftover $m"; umount -l "$m"
  done
  # This run's cgroups in every hierarchy (containerd leaves pod parents
  # behind, as kubelet removes them; Berth leaves the per-runtime parent).
  find /sys/fs/cgroup/*/"${CG#/}" -depth -type d -exec rmdir {} \; 2>/dev/null
  # Shim sockets (containerd-shim-runc-v2 hard-codes /run/containerd/s/);
  # each is sha256(<containerd address>/<namespace>/<sandbox id>).
  for id in $(cat "$RUN"/sandboxes.containerd 2>/dev/null); do
    rm -f "/run/containerd/s/$(printf '%s' "$RUN/containerd.sock/k8s.io/$id" | sha256sum | cut -d' ' -f1)"
  done
  if [ -n "$RUN_CONTAINERD_CREATED" ]; then
    rmdir /run/containerd/s /run/containerd 2>/dev/null
  fi
  for _ in $(seq 30); do alive "$(cat "$RUN"/pids.* 2>/dev/null) $(pgrep -f -- "$RUN" || true)" || break; sleep 0.1; done
  local left
  left=$( { grep -F "$RUN" /proc/self/mountinfo | awk '{print "mount " $5}'
            pgrep -af -- "$RUN" | grep -v pgrep | sed 's/^/process /'
            for p in $(cat "$RUN"/pids.* 2>/dev/null); do alive "$p" && echo "process $p"; done
            ls -d /sys/fs/cgroup/*/"${CG#/}" 2>/dev/null | sed 's/^/cgroup /'; } || true)
  if [ -n "$left" ]; then
    log "LEFTOVERS (kept $RUN):"; echo "$left" >&2
  else
    log "leftover check: no process, mount or cgroup of this run remains"
    rm -rf "$RUN"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools and images (not timed) -------------------------------------------
mkdir -p "$B/helpers"
make --no-print-directory build >/dev/null
make --no-print-directory "${CRICTL#$PWD/}" >/dev/null
if [ ! -x "$B/busybox/bin/busybox" ]; then
  log "fetching Debian's dynamic busybox (extracted, not installed)"
  ( cd "$B" && rm -f busybox_*.deb && apt-get download busybox >/dev/null 2>&1 && dpkg-deb -x busybox_*.deb busybox )
fi
LIBS=$(ldd "$B/busybox/bin/busybox" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\/.*ld-linux/ {print $1}' | paste -sd, -)
for h in pause webserver nnp; do
  CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$B/helpers/$h" "./test/conformance/helpers/$h"
done
go build -o "$B/registry" ./test/conformance/registry
if ! command -v containerd >/dev/null || [ ! -x /usr/bin/containerd-shim-runc-v2 ]; then
  # Keep apt from starting the system service: a daemon this script would
  # not own. policy-rc.d is removed again only if this script wrote it.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod 0755 /usr/sbin/policy-rc.d; POLICY_RC=1
  fi
  log "installing containerd from apt"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends containerd >/dev/null
  if [ -n "$POLICY_RC" ]; then rm -f /usr/sbin/policy-rc.d; POLICY_RC=; fi
fi
command -v runc >/dev/null || { log "runc missing (make deps)"; exit 1; }

# --- daemons -----------------------------------------------------------------
RUN=$(mktemp -d /tmp/berth-cycle-bench.XXXXXX)
[ -d /run/containerd ] || RUN_CONTAINERD_CREATED=1
echo 'debug: false' >"$RUN/crictl.yaml"
cc() { local ep=$1; shift; "$CRICTL" -c "$RUN/crictl.yaml" -r "unix://$ep" -i "unix://$ep" -t 60s "$@"; }
waitfor() { # waitfor FILE PID LOG: until FILE exists, or fail with LOG if PID died
  for _ in $(seq 300); do [ -e "$1" ] && return 0; kill -0 "$2" 2>/dev/null || { cat "$3" >&2; exit 1; }; sleep 0.1; done
  log "timed out waiting for $1"; cat "$3" >&2; exit 1
}

"$B/registry" -addr 127.0.0.1:0 -busybox "$B/busybox/bin/busybox" -libs "$LIBS" -helpers "$B/helpers" \
  -registries-conf "$RUN/registries.conf" -ready "$RUN/registry.addr" >"$RUN/registry.log" 2>&1 &
REG_PID=$!
waitfor "$RUN/registry.addr" "$REG_PID" "$RUN/registry.log"
sleep 0.1
REG=$(cat "$RUN/registry.addr")
case $REG in 127.*) ;; *) log "registry not on loopback: $REG"; exit 1 ;; esac
IMAGE=$REG/registry.k8s.io/e2e-test-images/busybox:1.29-2
PAUSE=$REG/registry.k8s.io/pause:3.9

sed -e "s|^plugin_dir = .*|plugin_dir = \"$PWD/bin\"|" \
    -e "s|^\[plugins.overlay.config\]$|[plugins.overlay.config]\nregistries_conf = \"$RUN/registries.conf\"|" \
    plugins.toml >"$RUN/plugins.toml"
bin/berth serve --config "$RUN/plugins.toml" --listen "$RUN/berth.sock" --root "$RUN/berth-root" \
  --runroot "$RUN/berth-run" >"$RUN/berth.log" 2>&1 &
BERTH_PID=$!

mkdir -p "$RUN/containerd/cni"
cat >"$RUN/containerd.toml" <<EOF
# Private containerd for hack/cycle-bench.sh: own root, state, sockets, runc
# root; no debug or metrics listener; streaming server on loopback; no CNI
# config (the benchmark's pods use the host network).
version = 2
root = "$RUN/containerd/root"
state = "$RUN/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$RUN/containerd.sock"
[ttrpc]
  address = "$RUN/containerd.sock.ttrpc"
[debug]
  address = ""
  level = "warn"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$RUN/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # Negative oom_score_adj (the sandbox's -998) is refused on this host class.
  restrict_oom_score_adj = true
  enable_selinux = false
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "$RUN/containerd/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$RUN/containerd/cni"
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."$REG"]
    endpoint = ["http://$REG"]
EOF
containerd --config "$RUN/containerd.toml" >"$RUN/containerd.log" 2>&1 &
CTRD_PID=$!
waitfor "$RUN/berth.sock" "$BERTH_PID" "$RUN/berth.log"
waitfor "$RUN/containerd.sock" "$CTRD_PID" "$RUN/containerd.log"
for _ in $(seq 100); do cc "$RUN/containerd.sock" version >/dev/null 2>&1 && break; sleep 0.1; done
log "registry $REG, berth $(bin/berth version 2>/dev/null | head -1), $(containerd --version | awk '{print $1, $3}'), $(runc --version | head -1)"

BERTH=$RUN/berth.sock CTRD=$RUN/containerd.sock
for ep in "$BERTH" "$CTRD"; do cc "$ep" pull "$IMAGE" >/dev/null; done
cc "$CTRD" pull "$PAUSE" >/dev/null

# --- configs -----------------------------------------------------------------
# podcfg RUNTIME TAG: a host-network pod; its cgroup parent is this run's.
podcfg() {
  local f=$RUN/cfg/pod-$1-$2.json
  mkdir -p "$RUN/cfg" "$RUN/logs/$1-$2"
  cat >"$f" <<EOF
{"metadata": {"name": "bench-$2", "namespace": "cycle-bench", "uid": "$1-$2-uid", "attempt": 0},
 "log_directory": "$RUN/logs/$1-$2",
 "linux": {"cgroup_parent": "$CG/$1/pod-$2",
           "security_context": {"namespace_options": {"network": 2}}}}
EOF
  echo "$f"
}
CTR=$RUN/cfg/ctr.json
mkdir -p "$RUN/cfg"
cat >"$CTR" <<EOF
{"metadata": {"name": "sleep"}, "image": {"image": "$IMAGE"},
 "command": ["sleep", "3600"], "log_path": "sleep.log", "linux": {}}
EOF
ep_of() { if [ "$1" = berth ]; then echo "$BERTH"; else echo "$CTRD"; fi; }
now() { date +%s%N; }
# rec RUNTIME METRIC START END: one sample, in microseconds
rec() { echo $(( ($4 - $3) / 1000 )) >>"$RUN/t.$1.$2"; }

# start RUNTIME TAG [record]: runp + create + start, timed as one
start() {
  local ep pod ctr cfg t0 t1
  ep=$(ep_of "$1"); cfg=$(podcfg "$1" "$2")
  t0=$(now)
  pod=$(cc "$ep" runp "$cfg")
  ctr=$(cc "$ep" create "$pod" "$CTR" "$cfg")
  cc "$ep" start "$ctr" >/dev/null
  t1=$(now)
  [ -z "${3:-}" ] || rec "$1" start "$t0" "$t1"
  [ "$1" = containerd ] && echo "$pod" >>"$RUN/sandboxes.containerd"
  echo "$pod $ctr"
}
# cycle RUNTIME TAG [record]: runp, create, start, stop, stopp, rmp, each timed
cycle() {
  local ep pod ctr cfg t0 a b c d e f g
  ep=$(ep_of "$1"); cfg=$(podcfg "$1" "$2")
  t0=$(now)
  pod=$(cc "$ep" runp "$cfg"); a=$(now)
  [ "$1" = containerd ] && echo "$pod" >>"$RUN/sandboxes.containerd"
  ctr=$(cc "$ep" create "$pod" "$CTR" "$cfg"); b=$(now)
  cc "$ep" start "$ctr" >/dev/null; c=$(now)
  cc "$ep" stop --timeout 0 "$ctr" >/dev/null; d=$(now)
  cc "$ep" stopp "$pod" >/dev/null; e=$(now)
  cc "$ep" rmp "$pod" >/dev/null; f=$(now)
  if [ -n "${3:-}" ]; then
    rec "$1" cycle "$t0" "$f"
    rec "$1" runp "$t0" "$a"; rec "$1" create "$a" "$b"; rec "$1" start1 "$b" "$c"
    rec "$1" stop "$c" "$d"; rec "$1" stopp "$d" "$e"; rec "$1" rmp "$e" "$f"
  fi
}

# --- timed cycles ------------------------------------------------------------
for w in $(seq "$WARMUP"); do
  for rt in berth containerd; do
    out=$(start "$rt" "warm$w"); pod=${out%% *}; cc "$(ep_of "$rt")" rmp -f "$pod" >/dev/null
    cycle "$rt" "warmc$w"
  done
done
log "$N iterations per runtime, interleaved"
for i in $(seq "$N"); do
  for rt in berth containerd; do
    out=$(start "$rt" "s$i" record); pod=${out%% *}
    cc "$(ep_of "$rt")" rmp -f "$pod" >/dev/null   # not timed
  done
  for rt in berth containerd; do cycle "$rt" "c$i" record; done
  # crictl's own cost: a process start, a connection, one trivial RPC
  for rt in berth containerd; do t0=$(now); cc "$(ep_of "$rt")" version >/dev/null; rec "$rt" noop "$t0" "$(now)"; done
done

# stats FILE: count min median p90 max, in ms (median of an even count is
# the mean of the middle two; p90 is the nearest rank)
stats() {
  sort -n "$1" | awk '{a[NR]=$1} END {
    n=NR; med=(n%2 ? a[(n+1)/2] : (a[n/2]+a[n/2+1])/2); p=int(0.9*n+0.999999); if (p<1) p=1
    printf "%7d %9.1f %9.1f %9.1f %9.1f", n, a[1]/1000, med/1000, a[p]/1000, a[n]/1000 }'
}
median() { sort -n "$1" | awk '{a[NR]=$1} END {n=NR; print (n%2 ? a[(n+1)/2] : (a[n/2]+a[n/2+1])/2)}'; }

echo
echo "Pod cycle, crictl v1.37.0, busybox 'sleep 3600', host network, $N runs each, interleaved (ms)."
echo "Every crictl command is timed from outside, so each includes a crictl start; NET = MEDIAN minus"
echo "the crictl no-op median for each crictl command in the phase (an estimate of the runtime's share)."
printf '%-12s %-26s %7s %9s %9s %9s %9s %9s\n' RUNTIME PHASE SAMPLES MIN MEDIAN P90 MAX NET
noop_b=$(median "$RUN/t.berth.noop") noop_c=$(median "$RUN/t.containerd.noop")
for ph in start:3:"runp+create+start" cycle:6:"runp..rmp (full cycle)" runp:1:"  runp" create:1:"  create" start1:1:"  start" stop:1:"  stop (timeout 0)" stopp:1:"  stopp" rmp:1:"  rmp" noop:0:"crictl version (no-op)"; do
  key=${ph%%:*} rest=${ph#*:}; k=${rest%%:*} name=${rest#*:}
  for rt in berth containerd; do
    noop=$noop_b; [ "$rt" = containerd ] && noop=$noop_c
    printf '%-12s %-26s %s %9.1f\n' "$rt" "$name" "$(stats "$RUN/t.$rt.$key")" "$(echo "($(median "$RUN/t.$rt.$key") - $k * $noop) / 1000" | bc -l)"
  done
done
hack/runc-bench.sh "$B/busybox/bin/busybox" "$N" | awk '{printf "%-12s %-26s %7d %9.1f %9.1f %9.1f %9.1f\n", "runc", "runc run (busybox true)", $6, $7, $8, $9, $10}'
echo
printf 'ratio berth/containerd of medians:'
for ph in start:"runp+create+start" cycle:"full cycle" runp:runp create:create start1:start stop:stop stopp:stopp rmp:rmp; do
  printf ' %s %.2f;' "${ph#*:}" "$(echo "$(median "$RUN/t.berth.${ph%%:*}") / $(median "$RUN/t.containerd.${ph%%:*}")" | bc -l)"
done
echo
printf 'ratio of NET medians (crictl starts taken out): runp+create+start %.2f; full cycle %.2f\n' \
  "$(echo "($(median "$RUN/t.berth.start") - 3 * $noop_b) / ($(median "$RUN/t.containerd.start") - 3 * $noop_c)" | bc -l)" \
  "$(echo "($(median "$RUN/t.berth.cycle") - 6 * $noop_b) / ($(median "$RUN/t.containerd.cycle") - 6 * $noop_c)" | bc -l)"

# --- memory per pod ----------------------------------------------------------
# PSS and RSS in KiB of a list of PIDs, summed
mem() { local p pss=0 rss=0; for p in "$@"; do
  pss=$((pss + $(awk '/^Pss:/{print $2}' "/proc/$p/smaps_rollup"))); rss=$((rss + $(awk '/^Rss:/{print $2}' "/proc/$p/smaps_rollup"))); done
  echo "$pss $rss"; }
echo
echo "Memory with $M pods of one running container each, per pod (PSS from /proc/PID/smaps_rollup; RSS for reference)"
printf '%-12s %-36s %9s %10s %10s\n' RUNTIME PROCESSES COUNT PSS_KiB/POD RSS_KiB/POD
for rt in berth containerd; do
  ep=$(ep_of "$rt"); pods=() mons=() infra=()
  for i in $(seq "$M"); do
    out=$(start "$rt" "m$i"); pod=${out%% *} ctr=${out##* }; pods+=("$pod")
    cpid=$(cc "$ep" inspect -o json "$ctr" | jq -r '.info | (.pid // .info.pid)')
    mons+=("$(awk '/^PPid:/{print $2}' "/proc/$cpid/status")")
    if [ "$rt" = berth ]; then
      infra+=("$(cc "$ep" inspectp -o json "$pod" | jq -r '.info.init_pid')")
    else
      infra+=("$(cc "$ep" inspectp -o json "$pod" | jq -r '.info.pid')")
    fi
    echo "${mons[-1]} ${infra[-1]}" >>"$RUN/pids.$rt"
    [[ "${mons[-1]} ${infra[-1]}" =~ ^[0-9]+\ [0-9]+$ ]] || { log "$rt: no monitor or infra PID for pod $pod"; exit 1; }
  done
  sleep 2
  # The container's parent is its monitor: Berth's supervisor (berth-conmon)
  # or containerd's shim; the infra process is Berth's pod init or pause.
  mname=$(tr '\0' ' ' <"/proc/${mons[0]}/cmdline" | awk '{n=split($1,a,"/"); print a[n], ($2 ~ /^berth/ ? $2 : "")}')
  iname=$(tr '\0' ' ' <"/proc/${infra[0]}/cmdline" | awk '{n=split($1,a,"/"); print a[n], ($2 ~ /^berth/ ? $2 : "")}')
  read -r mp mr < <(mem $(printf '%s\n' "${mons[@]}" | sort -u))
  read -r ip ir < <(mem $(printf '%s\n' "${infra[@]}" | sort -u))
  nm=$(printf '%s\n' "${mons[@]}" | sort -u | wc -l); ni=$(printf '%s\n' "${infra[@]}" | sort -u | wc -l)
  printf '%-12s %-36s %9d %10d %10d\n' "$rt" "monitor: $mname" "$nm" $((mp / M)) $((mr / M))
  printf '%-12s %-36s %9d %10d %10d\n' "$rt" "infra: $iname" "$ni" $((ip / M)) $((ir / M))
  printf '%-12s %-36s %9s %10d %10d\n' "$rt" "monitor + infra" "" $(((mp + ip) / M)) $(((mr + ir) / M))
  for pod in "${pods[@]}"; do cc "$ep" rmp -f "$pod" >/dev/null; done
done
