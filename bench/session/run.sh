#!/bin/sh
# Runs the session benchmarks in interleaved passes (every system once per
# pass, so a noisy neighbour hits all of them alike) and prints, for each
# scenario and system, the median req/s and rt/op over the passes.
# Usage: bench/session/run.sh [passes] [benchtime]
set -e
passes=${1:-3}
benchtime=${2:-1s}
out=$(mktemp)
go test -c -o "$out.test" ./bench/session/
for i in $(seq "$passes"); do
	"$out.test" -test.run '^$' -test.bench BenchmarkSessions -test.benchtime "$benchtime" | grep '^BenchmarkSessions/' >>"$out"
done
awk '
{ name=$1; sub(/^BenchmarkSessions\//, "", name); sub(/-[0-9]+$/, "", name)
  for (i = 2; i < NF; i++) { if ($(i+1) == "req/s") rps[name] = rps[name] " " $i; if ($(i+1) == "rt/op") rt[name] = $i }
  if (!(name in seen)) { seen[name] = 1; order[++n] = name } }
function median(s,   a, k, x, y, t) { k = split(s, a, " "); for (x = 1; x <= k; x++) for (y = x + 1; y <= k; y++) if (a[y] + 0 < a[x] + 0) { t = a[x]; a[x] = a[y]; a[y] = t } return a[int((k + 1) / 2)] }
END { printf "%-22s %10s %7s   all passes (req/s)\n", "scenario/system", "req/s", "rt/op"
  for (o = 1; o <= n; o++) printf "%-22s %10.0f %7.2f  %s\n", order[o], median(rps[order[o]]), rt[order[o]], rps[order[o]] }
' "$out"
rm -f "$out" "$out.test"
