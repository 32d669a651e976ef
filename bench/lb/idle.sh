#!/usr/bin/env bash
# Memory per idle keep-alive client connection, side by side, one run.
#
#   bench/lb/idle.sh                   # CONNS=10000
#   BASELINE=main bench/lb/idle.sh     # also unstuck lb built from git ref main
#
# For each proxy in turn (HAProxy, nginx, `unstuck lb`, and with BASELINE
# the same lb built from that ref), bench/lb/idleclient opens CONNS
# keep-alive connections, sends one GET on each, reads the answer and
# leaves them idle. The proxy's RSS (VmRSS of the process and its children)
# is read before, just after the last answer, and again SETTLE seconds
# later; the table gives the growth per connection. Kernel socket buffers
# are not in RSS, for any of them. unstuck lb parks a connection idle for
# 5 s (its goroutine ends), so the SETTLE reading is the one to compare.
set -euo pipefail

CONNS=${CONNS:-10000}
SETTLE=${SETTLE:-15}
BASE=${BASE_PORT:-18300}
NAME=unstuck-lb-idle
. "$(dirname "$0")/lib.sh"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge $((CONNS + 1000)) ] ||
	{ echo "ulimit -n is $(ulimit -n): too low for CONNS=$CONNS (raise the hard limit)" >&2; exit 1; }

B1=$((BASE + 1)) B2=$((BASE + 2))
echo "building in $WORK ..." >&2
(cd "$ROOT" && go build -o "$WORK/backend" ./bench/lb/backend && go build -o "$WORK/idleclient" ./bench/lb/idleclient &&
	go build -o "$WORK/unstuck" ./cmd/unstuck)
if [ -n "${BASELINE:-}" ]; then
	mkdir -p "$WORK/old"
	git -C "$ROOT" archive "$BASELINE" | tar -x -C "$WORK/old"
	(cd "$WORK/old" && go build -o "$WORK/unstuck-old" ./cmd/unstuck)
fi

start backend1 "$WORK/backend" -listen "127.0.0.1:$B1"
start backend2 "$WORK/backend" -listen "127.0.0.1:$B2"
max=$((CONNS + 1000))

TARGETS=()
if need haproxy; then
	port=$((BASE + 10))
	cat >"$WORK/haproxy.cfg" <<EOC
global
  nbthread 2
  maxconn $max
  no strict-limits
defaults
  mode http
  maxconn $max
  timeout connect 3s
  timeout client 120s
  timeout server 60s
  option http-keep-alive
frontend f
  bind 127.0.0.1:$port
  default_backend b
backend b
  balance roundrobin
  server s1 127.0.0.1:$B1
  server s2 127.0.0.1:$B2
EOC
	TARGETS+=("haproxy:$port:haproxy -db -f $WORK/haproxy.cfg")
fi
if need nginx; then
	port=$((BASE + 11))
	mkdir -p "$WORK/nginx"
	cat >"$WORK/nginx.conf" <<EOC
worker_processes 2;
worker_rlimit_nofile $(ulimit -n);
daemon off;
master_process on;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections $max; }
http {
  access_log off;
  keepalive_timeout 120s;
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
	TARGETS+=("nginx:$port:nginx -p $WORK/nginx -c $WORK/nginx.conf")
fi
lbcfg() { # lbcfg PORT: a config allowing max connections
	cat >"$WORK/lb-$1.yaml" <<EOC
listen: 127.0.0.1:$1
admin: {listen: "off"}
sticky: {mode: none}
timeouts: {client_idle: 120s}
limits: {max_conns: $max}
backends:
  - url: http://127.0.0.1:$B1
  - url: http://127.0.0.1:$B2
EOC
	echo "$WORK/lb-$1.yaml"
}
port=$((BASE + 12))
TARGETS+=("unstuck:$port:$WORK/unstuck lb --config $(lbcfg $port)")
if [ -n "${BASELINE:-}" ]; then
	port=$((BASE + 13))
	TARGETS+=("unstuck-$BASELINE:$port:$WORK/unstuck-old lb --config $(lbcfg $port)")
fi

rss_kib() { # VmRSS of a process and its children, KiB
	local total=0 p
	for p in $1 $(pgrep -P "$1" || true); do
		[ -r "/proc/$p/status" ] || continue
		total=$((total + $(awk '/^VmRSS:/{print $2}' "/proc/$p/status")))
	done
	echo $total
}

echo "conns=$CONNS settle=${SETTLE}s; $(nproc) cores; $(date -u +%FT%TZ); load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
declare -A R0 R1 R2
for t in "${TARGETS[@]}"; do
	name=${t%%:*} rest=${t#*:}
	port=${rest%%:*} cmd=${rest#*:}
	# shellcheck disable=SC2086
	start "$name" $cmd
	pid=$(eval echo "\$PID_${name//-/_}")
	for _ in $(seq 1 100); do
		curl -s -o /dev/null "http://127.0.0.1:$port/" && break
		sleep 0.1
	done
	for _ in $(seq 1 20); do
		curl -sf -o /dev/null "http://127.0.0.1:$port/" || { echo "$name does not answer; log:" >&2; cat "$WORK/$name.log" >&2; exit 1; }
	done
	sleep 1
	R0[$name]=$(rss_kib "$pid")
	coproc CLIENT { "$WORK/idleclient" -addr "127.0.0.1:$port" -n "$CONNS" 2>&1; }
	read -r line <&"${CLIENT[0]}" || true
	[ "$line" = ready ] || { echo "$name: idle client failed: $line" >&2; cat "$WORK/$name.log" >&2; exit 1; }
	R1[$name]=$(rss_kib "$pid")
	sleep "$SETTLE"
	R2[$name]=$(rss_kib "$pid")
	cpid=$CLIENT_PID
	exec {CLIENT[1]}>&-
	wait "$cpid" 2>/dev/null || true
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	printf '%-15s RSS %7d KiB before, %7d KiB with %d idle conns, %7d KiB %ss later\n' \
		"$name" "${R0[$name]}" "${R1[$name]}" "$CONNS" "${R2[$name]}" "$SETTLE" >&2
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

per() { awk -v a="$1" -v b="$2" -v n="$CONNS" 'BEGIN{printf "%.2f", (b-a)/n}'; }
h=""
[ -n "${R0[haproxy]:-}" ] && h=$(per "${R0[haproxy]}" "${R2[haproxy]}")
echo
echo "| proxy | RSS before MiB | +KiB per idle conn (at once) | +KiB per idle conn (${SETTLE}s later) | vs HAProxy |"
echo "|---|---|---|---|---|"
for t in "${TARGETS[@]}"; do
	name=${t%%:*}
	k1=$(per "${R0[$name]}" "${R1[$name]}") k2=$(per "${R0[$name]}" "${R2[$name]}")
	printf '| %s | %.1f | %s | %s | %s |\n' "$name" "$(awk -v k="${R0[$name]}" 'BEGIN{print k/1024}')" "$k1" "$k2" "$(ratio "$k2" "${h:--}")"
done
