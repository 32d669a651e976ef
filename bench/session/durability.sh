#!/bin/sh
# Runs BenchmarkDurability in interleaved passes (async, wait1 and wait2
# once each per pass, so a noisy neighbour hits them alike, in an order
# that rotates from pass to pass) and prints the
# median us/req (one client) and req/s (64 clients) of each, then the
# costs as medians of per-pass ratios against async.
# Usage: bench/session/durability.sh [passes] [benchtime]
set -e
passes=${1:-5}
benchtime=${2:-1s}
out=$(mktemp)
go test -c -o "$out.test" ./bench/session/
for i in $(seq "$passes"); do
	DURABILITY_ROTATE=$i "$out.test" -test.run '^$' -test.bench BenchmarkDurability -test.benchtime "$benchtime" | grep '^BenchmarkDurability/' >>"$out"
done
awk '
{ name = $1; sub(/^BenchmarkDurability\//, "", name); sub(/-[0-9]+$/, "", name)
  p = ++pass[name]
  for (f = 2; f < NF; f++) {
    if ($(f+1) == "req/s") v[name, p] = $f
    if ($(f+1) == "us/req") v[name, p] = $f
  }
  if (p == 1) order[++n] = name
  if (p > np) np = p }
function median(a, k,   x, y, t) {
  for (x = 1; x <= k; x++) for (y = x + 1; y <= k; y++) if (a[y] + 0 < a[x] + 0) { t = a[x]; a[x] = a[y]; a[y] = t }
  return a[int((k + 1) / 2)] }
function col(name,   a, q) { for (q = 1; q <= np; q++) a[q] = v[name, q]; return median(a, np) }
function ratio(x, y,   a, q) { for (q = 1; q <= np; q++) a[q] = v[x, q] / v[y, q]; return median(a, np) }
END {
  printf "%-28s %10s\n", "benchmark", "median"
  for (o = 1; o <= n; o++) printf "%-28s %10.1f %s\n", order[o], col(order[o]), (order[o] ~ /^latency/ ? "us/req" : "req/s")
  print ""
  split("read write login", sc, " ")
  for (s = 1; s <= 3; s++) {
    printf "%s: latency wait1/async = %.2f, wait2/async = %.2f; throughput wait1/async = %.2f, wait2/async = %.2f\n", sc[s],
      ratio("latency/" sc[s] "/wait1", "latency/" sc[s] "/async"), ratio("latency/" sc[s] "/wait2", "latency/" sc[s] "/async"),
      ratio("throughput/" sc[s] "/wait1", "throughput/" sc[s] "/async"), ratio("throughput/" sc[s] "/wait2", "throughput/" sc[s] "/async")
  }
}' "$out"
rm -f "$out" "$out.test"
