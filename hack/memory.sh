#!/usr/bin/env bash
# Memory of an idle Berth: starts `berth serve` on a private socket, root and
# runroot, waits for its plugins, then sums PSS (/proc/PID/smaps_rollup) over
# the host and its plugin processes. Needs root and `make build`
# (and `make build-standalone` for PLUGIN_DIR=bin/standalone).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d /tmp/berth-mem.XXXXXX)
pid=
cleanup() {
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
# PLUGIN_DIR=bin/standalone measures the separately built plugins instead.
sed "s|^plugin_dir = .*|plugin_dir = \"$(realpath "${PLUGIN_DIR:-bin}")\"|" plugins.toml >"$tmp/plugins.toml"
./bin/berth serve --config "$tmp/plugins.toml" --listen "$tmp/berth.sock" --root "$tmp/root" --runroot "$tmp/run" >"$tmp/log" 2>&1 &
pid=$!
for _ in $(seq 100); do [ -S "$tmp/berth.sock" ] && break; sleep 0.1; done
sleep "${SETTLE:-3}"
total=0
printf '%-16s %8s %10s %10s\n' PROCESS PID RSS_KiB PSS_KiB
for p in $pid $(pgrep -P "$pid"); do
  name=$(basename "$(readlink /proc/$p/exe)")
  rss=$(awk '/^Rss:/{print $2}' /proc/$p/smaps_rollup)
  pss=$(awk '/^Pss:/{print $2}' /proc/$p/smaps_rollup)
  total=$((total + pss))
  printf '%-16s %8s %10s %10s\n' "$name" "$p" "$rss" "$pss"
done
printf 'total PSS: %d KiB (%.1f MiB)\n' "$total" "$(echo "$total/1024" | bc -l)"
