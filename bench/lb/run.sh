#!/usr/bin/env bash
# Side-by-side load-balancer benchmark, loopback only, one interleaved run.
#
#   bench/lb/run.sh                 # ROUNDS=3 DURATION=10s CONNS=64 by default
#   ROUNDS=5 DURATION=10s bench/lb/run.sh
#   BASELINE=main bench/lb/run.sh   # adds unstuck lb built from git ref main
#
# wrk (keep-alive, -c64) drives, round after round, each target in turn:
# one backend directly, HAProxy, nginx, Caddy (each when installed:
# `apt-get install wrk haproxy nginx caddy`), `unstuck lb` and the bare
# internal/proxy engine, all over the same two Go backends (bench/lb/backend,
# 100-byte body), with and without sticky cookies. It prints the median over
# rounds of req/s, p50/p99 latency and the proxy's CPU microseconds per
# request (utime+stime deltas from /proc/PID/stat, children included), each
# also as a ratio to HAProxy.
#
# Sticky runs send back the cookie the balancer set on a first request, so
# they measure the pinned path: HAProxy `cookie SRV insert`, Caddy
# `lb_policy cookie`, `unstuck lb --sticky cookie`. nginx OSS 1.22 has no
# cookie stickiness (the `sticky` directive is NGINX Plus, or OSS >= 1.29.6),
# so it has no sticky row.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
BASE=${BASE_PORT:-18100}
NAME=unstuck-lb-bench
. "$(dirname "$0")/lib.sh"
need wrk || { echo "wrk not found: apt-get install wrk haproxy nginx caddy" >&2; exit 1; }
need curl || { echo "curl not found" >&2; exit 1; }

B1=$((BASE + 1)) B2=$((BASE + 2))
echo "building in $WORK ..." >&2
(cd "$ROOT" && go build -o "$WORK/backend" ./bench/lb/backend && go build -o "$WORK/engine" ./bench/lb/engine &&
	go build -o "$WORK/unstuck" ./cmd/unstuck)
if [ -n "${BASELINE:-}" ]; then
	mkdir -p "$WORK/old"
	git -C "$ROOT" archive "$BASELINE" | tar -x -C "$WORK/old"
	(cd "$WORK/old" && go build -o "$WORK/unstuck-old" ./cmd/unstuck)
fi

start backend1 "$WORK/backend" -listen "127.0.0.1:$B1"
start backend2 "$WORK/backend" -listen "127.0.0.1:$B2"

TARGETS=() # name:port
TARGETS+=("direct:$B1")

if need haproxy; then
	for sticky in 0 1; do
		port=$((BASE + 10 + sticky)) name=haproxy
		[ $sticky = 1 ] && name=haproxy-sticky
		{
			printf 'global\n  nbthread 2\n  maxconn 4096\n'
			printf 'defaults\n  mode http\n  timeout connect 3s\n  timeout client 60s\n  timeout server 60s\n  option http-keep-alive\n'
			printf 'frontend f\n  bind 127.0.0.1:%s\n  default_backend b\n' "$port"
			printf 'backend b\n  balance roundrobin\n'
			[ $sticky = 1 ] && printf '  cookie SRV insert indirect nocache\n'
			printf '  server s1 127.0.0.1:%s%s\n' "$B1" "$([ $sticky = 1 ] && echo ' cookie s1')"
			printf '  server s2 127.0.0.1:%s%s\n' "$B2" "$([ $sticky = 1 ] && echo ' cookie s2')"
		} >"$WORK/$name.cfg"
		start "$name" haproxy -db -f "$WORK/$name.cfg"
		TARGETS+=("$name:$port")
	done
else
	echo "haproxy not installed: skipped (ratios are then to nothing)" >&2
fi

if need nginx; then
	port=$((BASE + 12))
	mkdir -p "$WORK/nginx"
	cat >"$WORK/nginx.conf" <<EOF
worker_processes 2;
daemon off;
master_process on;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 8192; }
http {
  access_log off;
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
EOF
	start nginx nginx -p "$WORK/nginx" -c "$WORK/nginx.conf"
	TARGETS+=("nginx:$port")
else
	echo "nginx not installed: skipped" >&2
fi

if need caddy; then
	for sticky in 0 1; do
		port=$((BASE + 13 + sticky)) name=caddy policy=round_robin
		[ $sticky = 1 ] && name=caddy-sticky policy=cookie
		cat >"$WORK/$name.Caddyfile" <<EOF
{
	admin off
	auto_https off
}
http://127.0.0.1:$port {
	reverse_proxy 127.0.0.1:$B1 127.0.0.1:$B2 {
		lb_policy $policy
	}
}
EOF
		start "$name" env HOME="$WORK" XDG_DATA_HOME="$WORK" XDG_CONFIG_HOME="$WORK" \
			caddy run --config "$WORK/$name.Caddyfile" --adapter caddyfile
		TARGETS+=("$name:$port")
	done
else
	echo "caddy not installed: skipped (apt-get install caddy)" >&2
fi

for sticky in none cookie; do
	port=$((BASE + 15)) name=unstuck
	[ $sticky = cookie ] && port=$((BASE + 16)) name=unstuck-sticky
	start "$name" "$WORK/unstuck" lb --listen "127.0.0.1:$port" --admin off --sticky "$sticky" \
		--secret bench-secret-0123456789abcdef0123456789 \
		--backend "http://127.0.0.1:$B1" --backend "http://127.0.0.1:$B2"
	TARGETS+=("$name:$port")
	if [ -n "${BASELINE:-}" ]; then
		port=$((port + 10)) name=old-$name
		start "$name" "$WORK/unstuck-old" lb --listen "127.0.0.1:$port" --admin off --sticky "$sticky" \
			--secret bench-secret-0123456789abcdef0123456789 \
			--backend "http://127.0.0.1:$B1" --backend "http://127.0.0.1:$B2"
		TARGETS+=("$name:$port")
	fi
done
port=$((BASE + 17))
start engine "$WORK/engine" -listen "127.0.0.1:$port" -backends "127.0.0.1:$B1,127.0.0.1:$B2"
TARGETS+=("engine:$port")

# Wait until every target answers 200 with the 100-byte body; remember the
# sticky cookie for the sticky ones.
declare -A COOKIE
for t in "${TARGETS[@]}"; do
	name=${t%%:*} port=${t##*:}
	ok=""
	for _ in $(seq 1 100); do
		out=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' "http://127.0.0.1:$port/" 2>/dev/null || true)
		if [ "$out" = "200 100" ]; then ok=1; break; fi
		sleep 0.1
	done
	[ -n "$ok" ] || { echo "$name on :$port does not answer (got '$out'); log:" >&2; cat "$WORK/$name.log" >&2; exit 1; }
	if [[ $name == *-sticky ]]; then
		c=$(curl -s -D - -o /dev/null "http://127.0.0.1:$port/" | tr -d '\r' | awk 'tolower($1)=="set-cookie:"{print $2; exit}' | sed 's/;$//')
		[ -n "$c" ] || { echo "$name set no cookie" >&2; exit 1; }
		COOKIE[$name]=$c
	fi
done

TCK=$(getconf CLK_TCK)
cpu_ticks() { # utime+stime of a process and its children processes (nginx workers)
	local total=0 p
	for p in $1 $(pgrep -P "$1" || true); do
		[ -r "/proc/$p/stat" ] || continue
		total=$((total + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
	done
	echo $total
}
to_ms() { # wrk latency (e.g. 812.00us, 1.20ms, 1.01s) to milliseconds
	awk -v v="$1" 'BEGIN{ u=v; sub(/[0-9.]+/,"",u); n=v+0;
		if (u=="us") n/=1000; else if (u=="s") n*=1000; else if (u=="m") n*=60000; printf "%.3f", n }'
}

declare -A RPS P50 P99 CPU
echo "rounds=$ROUNDS duration=$DURATION conns=$CONNS threads=$THREADS; $(nproc) cores; $(date -u +%FT%TZ); load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for r in $(seq 1 "$ROUNDS"); do
	for t in "${TARGETS[@]}"; do
		name=${t%%:*} port=${t##*:}
		hdr=()
		[ -n "${COOKIE[$name]:-}" ] && hdr=(-H "Cookie: ${COOKIE[$name]}")
		pid=""
		[ "$name" != direct ] && pid=$(eval echo "\$PID_${name//-/_}")
		c0=0
		[ -n "$pid" ] && c0=$(cpu_ticks "$pid")
		out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "${hdr[@]}" "http://127.0.0.1:$port/")
		c1=0
		[ -n "$pid" ] && c1=$(cpu_ticks "$pid")
		reqs=$(echo "$out" | awk '/requests in/{print $1}')
		rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
		p50=$(to_ms "$(echo "$out" | awk '$1=="50%"{print $2}')")
		p99=$(to_ms "$(echo "$out" | awk '$1=="99%"{print $2}')")
		errs=$(echo "$out" | awk '/Non-2xx|Socket errors/{print}' | tr '\n' ' ')
		us="-"
		[ -n "$pid" ] && us=$(awk -v d=$((c1 - c0)) -v t="$TCK" -v n="$reqs" 'BEGIN{printf "%.1f", d/t*1e6/n}')
		RPS[$name]+="$rps " P50[$name]+="$p50 " P99[$name]+="$p99 " CPU[$name]+="$us "
		printf 'round %d %-15s %10s req/s  p50 %8s ms  p99 %8s ms  %6s us CPU/req %s\n' "$r" "$name" "$rps" "$p50" "$p99" "$us" "$errs" >&2
	done
done

echo "load after: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews req/s; CPU us/req is steadier)" >&2
hrps=$(echo "${RPS[haproxy]:-}" | median) hcpu=$(echo "${CPU[haproxy]:-}" | median)
echo
echo "| target | req/s | vs HAProxy | p50 ms | p99 ms | proxy CPU us/req | CPU vs HAProxy |"
echo "|---|---|---|---|---|---|---|"
for t in "${TARGETS[@]}"; do
	name=${t%%:*}
	rps=$(echo "${RPS[$name]}" | median) cpu=$(echo "${CPU[$name]}" | median)
	p50=$(echo "${P50[$name]}" | median) p99=$(echo "${P99[$name]}" | median)
	printf '| %s | %.0f | %s | %s | %s | %s | %s |\n' "$name" "$rps" "$(ratio "$rps" "$hrps")" "$p50" "$p99" "$cpu" "$(ratio "$cpu" "$hcpu")"
done
