#!/bin/sh
# Runs the session benchmarks in interleaved passes (every system once per
# pass, so a noisy neighbour hits all of them alike) and prints, for each
# scenario and system, the median req/s, the store round trips per request
# and the bytes the session adds to each request and response, then the
# ratios the targets name, as medians of per-pass ratios.
# Usage: bench/session/run.sh [passes] [benchtime]
set -e
passes=${1:-5}
benchtime=${2:-1s}
out=$(mktemp)
go test -c -o "$out.test" ./bench/session/
for i in $(seq "$passes"); do
	"$out.test" -test.run '^$' -test.bench BenchmarkSessions -test.benchtime "$benchtime" | grep '^BenchmarkSessions/' >>"$out"
done
awk '
{ name = $1; sub(/^BenchmarkSessions\//, "", name); sub(/-[0-9]+$/, "", name)
  p = ++pass[name]
  for (f = 2; f < NF; f++) {
    if ($(f+1) == "req/s") rps[name, p] = $f
    if ($(f+1) == "rt/op") rt[name] = $f
    if ($(f+1) == "req-B/op") inb[name] = $f
    if ($(f+1) == "resp-B/op") outb[name] = $f
  }
  if (p == 1) order[++n] = name
  if (p > np) np = p }
function median(v, k,   x, y, t) {
  for (x = 1; x <= k; x++) for (y = x + 1; y <= k; y++) if (v[y] + 0 < v[x] + 0) { t = v[x]; v[x] = v[y]; v[y] = t }
  return v[int((k + 1) / 2)] }
function col(name,   v, q) { for (q = 1; q <= np; q++) v[q] = rps[name, q]; return median(v, np) }
function ratio(a, b,   v, q) { for (q = 1; q <= np; q++) v[q] = rps[a, q] / rps[b, q]; return median(v, np) }
END {
  printf "%-20s %10s %6s %8s %8s\n", "scenario/system", "req/s", "rt/op", "req B", "resp B"
  for (o = 1; o <= n; o++) printf "%-20s %10.0f %6.2f %8.0f %8.0f\n", order[o], col(order[o]), rt[order[o]], inb[order[o]], outb[order[o]]
  print ""
  printf "read: redis+near / memory = %.2f\n", ratio("read/redis+near", "read/memory")
  printf "read: nats+near / memory = %.2f\n", ratio("read/nats+near", "read/memory")
  split("read write login", sc, " ")
  for (s = 1; s <= 3; s++) {
    printf "%s: cookie / redis = %.2f, cookie / redis+near = %.2f, cookie / memory = %.2f\n", sc[s],
      ratio(sc[s] "/cookie", sc[s] "/redis"), ratio(sc[s] "/cookie", sc[s] "/redis+near"), ratio(sc[s] "/cookie", sc[s] "/memory")
  }
  for (s = 1; s <= 3; s++) {
    printf "%s: redis / scs+redis = %.2f, redis+near / scs+redis = %.2f, nats / scs+redis = %.2f\n", sc[s],
      ratio(sc[s] "/redis", sc[s] "/scs+redis"), ratio(sc[s] "/redis+near", sc[s] "/scs+redis"), ratio(sc[s] "/nats", sc[s] "/scs+redis")
  }
}' "$out"
rm -f "$out" "$out.test"
