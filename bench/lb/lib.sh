# Shared by the bench/lb scripts (sourced): a scratch directory, processes
# started in the background and killed on exit, median and ratio.
# Before sourcing, set NAME (the scratch directory's prefix).

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=$(mktemp -d "/tmp/$NAME.XXXXXX")
PIDS=()

cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null 2>&1; }

start() { # start NAME CMD...: run in the background, remember the PID
	local name=$1
	shift
	"$@" >"$WORK/$name.log" 2>&1 &
	PIDS+=($!)
	eval "PID_${name//-/_}=$!"
}

median() { tr ' ' '\n' | awk '$1!="" && $1!="-"{print}' | sort -g | awk '{a[NR]=$1} END{ if (NR==0) print "-"; else if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a=="-" || b=="-" || b==0) print "-"; else printf "%.2f", a/b }'; }
