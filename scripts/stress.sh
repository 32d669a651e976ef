#!/usr/bin/env bash
# Runs the test suite several times while stress-ng keeps the CPUs busy, to
# bring out the failures that only show under load (a test machine shared
# with other builds, a CI runner). Reports which runs failed and keeps each
# run's output.
#
# Usage: scripts/stress.sh [RUNS] [PACKAGES...]
#   RUNS defaults to 5; PACKAGES to ./...
#   STRESS_CPU: stress-ng CPU workers (default 2).
#   STRESS_OUT: where the run logs go (default a new temporary directory).
#   GO: the go command (default go).
set -uo pipefail

runs=${1:-5}
shift || true
pkgs=("$@")
[ ${#pkgs[@]} -eq 0 ] && pkgs=(./...)
go=${GO:-go}
cpu=${STRESS_CPU:-2}
out=${STRESS_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/unstuck-stress.XXXXXX")}
mkdir -p "$out"

if ! command -v stress-ng >/dev/null 2>&1; then
  echo "stress.sh: stress-ng not found: install it with \`sudo apt-get install -y stress-ng\` (Debian/Ubuntu) or \`brew install stress-ng\` (macOS)" >&2
  exit 1
fi

# Our own load, stopped however the script ends.
stress-ng --cpu "$cpu" --timeout 0 --quiet &
stress_pid=$!
trap 'kill "$stress_pid" 2>/dev/null; wait "$stress_pid" 2>/dev/null' EXIT INT TERM

failed=()
for i in $(seq 1 "$runs"); do
  log="$out/run-$i.log"
  echo "stress.sh: run $i/$runs (load $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || uptime)) -> $log"
  if "$go" test -race -count=1 -timeout 30m "${pkgs[@]}" >"$log" 2>&1; then
    echo "stress.sh: run $i passed"
  else
    failed+=("$i")
    echo "stress.sh: run $i FAILED:"
    grep -E '^(--- FAIL|FAIL|panic:|    [a-z_]+\.go:[0-9]+:)' "$log" | head -40
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "stress.sh: ${#failed[@]} of $runs runs failed: ${failed[*]} (logs in $out)"
  exit 1
fi
echo "stress.sh: all $runs runs passed (logs in $out)"
