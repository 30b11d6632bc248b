#!/usr/bin/env bash
# runc-bench.sh BUSYBOX N: for scale next to critest's benchmark, times N
# `runc run` of a busybox bundle running `true` (create, start, wait, delete
# in one command), and prints min, median, p90 and max.
set -euo pipefail
bb=$1 n=${2:-20}
dir=$(mktemp -d /tmp/berth-runc-bench.XXXXXX)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/bundle/rootfs/bin"
cp "$bb" "$dir/bundle/rootfs/bin/busybox"
# Debian's dynamic busybox needs its libraries; copy them at their paths.
for lib in $(ldd "$bb" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\/.*ld-linux/ {print $1}'); do
  mkdir -p "$dir/bundle/rootfs$(dirname "$lib")"; cp -L "$lib" "$dir/bundle/rootfs$lib"
done
ln -s busybox "$dir/bundle/rootfs/bin/true"
( cd "$dir/bundle" && runc spec && sed -i 's/"terminal": true/"terminal": false/; s/"sh"/"\/bin\/true"/' config.json )
times=()
for i in $(seq "$n"); do
  s=$(date +%s%N)
  runc --root "$dir/state" run --bundle "$dir/bundle" "berth-bench-$$-$i" >/dev/null
  times+=($(( ($(date +%s%N) - s) / 1000 )))
done
printf '%s\n' "${times[@]}" | sort -n | awk -v n="$n" '{a[NR]=$1} END {
  printf "%-36s %-18s %7d %8.2fms %8.2fms %8.2fms %8.2fms\n", "runc run (busybox true)", "run", n, a[1]/1000, a[int(0.5*(n-1)+1.5)]/1000, a[int(0.9*(n-1)+1.5)]/1000, a[n]/1000 }'
