#!/usr/bin/env bash
# Large bodies through each proxy, side by side, one interleaved run.
#
#   bench/lb/large.sh                     # ROUNDS=3 DURATION=5s CONNS=16
#   BASELINE=main bench/lb/large.sh       # also unstuck lb built from git ref main
#
# Cases: 64 KiB and 1 MiB responses (GET /?n=...), and 1 MiB uploads (POST
# with a 1 MiB body, 100-byte answer). wrk drives each proxy in turn, round
# after round: HAProxy, nginx, `unstuck lb` (and with BASELINE the same lb
# built from that ref), over the same two Go backends (bench/lb/backend).
# It prints the median req/s, MiB/s of body moved, and the proxy's CPU
# microseconds per MiB moved, with ratios to HAProxy.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-16}
THREADS=${THREADS:-2}
BASE=${BASE_PORT:-18400}
NAME=unstuck-lb-large
. "$(dirname "$0")/lib.sh"
need wrk || { echo "wrk not found: apt-get install wrk haproxy nginx" >&2; exit 1; }

B1=$((BASE + 1)) B2=$((BASE + 2))
echo "building in $WORK ..." >&2
(cd "$ROOT" && go build -o "$WORK/backend" ./bench/lb/backend && go build -o "$WORK/unstuck" ./cmd/unstuck)
if [ -n "${BASELINE:-}" ]; then
	mkdir -p "$WORK/old"
	git -C "$ROOT" archive "$BASELINE" | tar -x -C "$WORK/old"
	(cd "$WORK/old" && go build -o "$WORK/unstuck-old" ./cmd/unstuck)
fi
start backend1 "$WORK/backend" -listen "127.0.0.1:$B1"
start backend2 "$WORK/backend" -listen "127.0.0.1:$B2"

TARGETS=()
if need haproxy; then
	port=$((BASE + 10))
	printf 'global\n  nbthread 2\n  maxconn 4096\ndefaults\n  mode http\n  timeout connect 3s\n  timeout client 60s\n  timeout server 60s\n  option http-keep-alive\nfrontend f\n  bind 127.0.0.1:%s\n  default_backend b\nbackend b\n  balance roundrobin\n  server s1 127.0.0.1:%s\n  server s2 127.0.0.1:%s\n' \
		"$port" "$B1" "$B2" >"$WORK/haproxy.cfg"
	start haproxy haproxy -db -f "$WORK/haproxy.cfg"
	TARGETS+=("haproxy:$port")
fi
if need nginx; then
	port=$((BASE + 11))
	mkdir -p "$WORK/nginx"
	cat >"$WORK/nginx.conf" <<EOC
worker_processes 2;
daemon off;
master_process on;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 8192; }
http {
  access_log off;
  client_max_body_size 16m;
  client_body_buffer_size 2m; # in memory: the workers cannot write the root-owned scratch directory
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  upstream b { server 127.0.0.1:$B1; server 127.0.0.1:$B2; keepalive 128; }
  server {
    listen 127.0.0.1:$port;
    location / { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
EOC
	start nginx nginx -p "$WORK/nginx" -c "$WORK/nginx.conf"
	TARGETS+=("nginx:$port")
fi
port=$((BASE + 12))
start unstuck "$WORK/unstuck" lb --listen "127.0.0.1:$port" --admin off --sticky none \
	--backend "http://127.0.0.1:$B1" --backend "http://127.0.0.1:$B2"
TARGETS+=("unstuck:$port")
if [ -n "${BASELINE:-}" ]; then
	port=$((BASE + 13))
	start unstuck_old "$WORK/unstuck-old" lb --listen "127.0.0.1:$port" --admin off --sticky none \
		--backend "http://127.0.0.1:$B1" --backend "http://127.0.0.1:$B2"
	TARGETS+=("unstuck_old:$port")
fi
for t in "${TARGETS[@]}"; do
	port=${t##*:}
	for _ in $(seq 1 100); do
		[ "$(curl -s -o /dev/null -w '%{size_download}' "http://127.0.0.1:$port/?n=65536" 2>/dev/null || true)" = 65536 ] && break
		sleep 0.1
	done
done

cat >"$WORK/upload.lua" <<'EOC'
wrk.method = "POST"
wrk.body = string.rep("u", 1048576)
wrk.headers["Content-Type"] = "application/octet-stream"
EOC
CASES=("resp64k:/?n=65536:65536:" "resp1m:/?n=1048576:1048576:" "upload1m:/:1048576:$WORK/upload.lua")

TCK=$(getconf CLK_TCK)
cpu_ticks() {
	local total=0 p
	for p in $1 $(pgrep -P "$1" || true); do
		[ -r "/proc/$p/stat" ] || continue
		total=$((total + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
	done
	echo $total
}

declare -A RPS MIBS CPU
echo "rounds=$ROUNDS duration=$DURATION conns=$CONNS threads=$THREADS; $(nproc) cores; $(date -u +%FT%TZ); load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for r in $(seq 1 "$ROUNDS"); do
	for cs in "${CASES[@]}"; do
		IFS=: read -r case path bytes script <<<"$cs"
		for t in "${TARGETS[@]}"; do
			name=${t%%:*} port=${t##*:}
			pid=$(eval echo "\$PID_${name//-/_}")
			sc=()
			[ -n "$script" ] && sc=(-s "$script")
			c0=$(cpu_ticks "$pid")
			out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" "${sc[@]}" "http://127.0.0.1:$port$path")
			c1=$(cpu_ticks "$pid")
			reqs=$(echo "$out" | awk '/requests in/{print $1}')
			rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
			errs=$(echo "$out" | awk '/Non-2xx|Socket errors/{print}' | tr '\n' ' ')
			mibs=$(awk -v r="$rps" -v b="$bytes" 'BEGIN{printf "%.1f", r*b/1048576}')
			us=$(awk -v d=$((c1 - c0)) -v t="$TCK" -v n="$reqs" -v b="$bytes" 'BEGIN{printf "%.1f", d/t*1e6/(n*b/1048576)}')
			RPS[$case.$name]+="$rps " MIBS[$case.$name]+="$mibs " CPU[$case.$name]+="$us "
			printf 'round %d %-9s %-12s %9s req/s %8s MiB/s %8s us CPU/MiB %s\n' "$r" "$case" "$name" "$rps" "$mibs" "$us" "$errs" >&2
		done
	done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

echo
echo "| case | proxy | req/s | MiB/s | vs HAProxy | CPU us/MiB | CPU vs HAProxy |"
echo "|---|---|---|---|---|---|---|"
for cs in "${CASES[@]}"; do
	case=${cs%%:*}
	hm=$(echo "${MIBS[$case.haproxy]:-}" | median) hc=$(echo "${CPU[$case.haproxy]:-}" | median)
	for t in "${TARGETS[@]}"; do
		name=${t%%:*}
		rps=$(echo "${RPS[$case.$name]}" | median) m=$(echo "${MIBS[$case.$name]}" | median) c=$(echo "${CPU[$case.$name]}" | median)
		printf '| %s | %s | %.0f | %s | %s | %s | %s |\n' "$case" "$name" "$rps" "$m" "$(ratio "$m" "$hm")" "$c" "$(ratio "$c" "$hc")"
	done
done
