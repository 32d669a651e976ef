#!/usr/bin/env bash
# HTTP/2 side by side with HAProxy, loopback only, one interleaved run.
#
#   bench/lb/h2.sh                  # ROUNDS=3 DURATION=10 CONNS=32 STREAMS=10 by default
#   ROUNDS=5 bench/lb/h2.sh
#
# h2load (Debian's nghttp2-client) drives, round after round, each target in
# turn: HAProxy 2.6 and `unstuck lb`, both over TLS with ALPN h2 and both
# over cleartext h2c with prior knowledge, in front of the same two Go
# backends (bench/lb/backend, HTTP/1.1, 100-byte body). Both proxies speak
# HTTP/1.1 keep-alive to the backends. It prints the median over rounds of
# req/s and the proxy's CPU microseconds per request (utime+stime deltas from
# /proc/PID/stat), each also as a ratio to HAProxy in the same mode, and the
# load average before and after: the machine is shared, so only the ratios
# of one interleaved run mean anything.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
STREAMS=${STREAMS:-10}
THREADS=${THREADS:-2}
BASE=${BASE_PORT:-18200}
NAME=unstuck-h2-bench
. "$(dirname "$0")/lib.sh"
need h2load || { echo "h2load not found: apt-get install nghttp2-client" >&2; exit 1; }
need haproxy || { echo "haproxy not found: apt-get install haproxy" >&2; exit 1; }
need openssl || { echo "openssl not found" >&2; exit 1; }

B1=$((BASE + 1)) B2=$((BASE + 2))
echo "building in $WORK ..." >&2
(cd "$ROOT" && go build -o "$WORK/backend" ./bench/lb/backend && go build -o "$WORK/unstuck" ./cmd/unstuck)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=localhost \
	-keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
cat "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/both.pem"

start backend1 "$WORK/backend" -listen "127.0.0.1:$B1"
start backend2 "$WORK/backend" -listen "127.0.0.1:$B2"

# HAProxy: one process, 2 threads; TLS with ALPN h2 and h2c on a second frontend.
HT=$((BASE + 10)) HC=$((BASE + 11))
cat >"$WORK/haproxy.cfg" <<EOF
global
  nbthread 2
  maxconn 4096
defaults
  mode http
  timeout connect 3s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
frontend tls
  bind 127.0.0.1:$HT ssl crt $WORK/both.pem alpn h2,http/1.1
  default_backend b
frontend h2c
  bind 127.0.0.1:$HC proto h2
  default_backend b
backend b
  balance roundrobin
  server s1 127.0.0.1:$B1
  server s2 127.0.0.1:$B2
EOF
start haproxy haproxy -db -f "$WORK/haproxy.cfg"

# unstuck lb: one process, TLS (ALPN h2, http/1.1); another with h2c.
UT=$((BASE + 20)) UC=$((BASE + 21))
for mode in tls h2c; do
	port=$UT
	[ $mode = h2c ] && port=$UC
	{
		printf 'listen: "127.0.0.1:%s"\nadmin: {listen: "off"}\nsticky: {mode: none}\n' "$port"
		[ $mode = tls ] && printf 'tls: {cert: %s, key: %s}\n' "$WORK/cert.pem" "$WORK/key.pem"
		[ $mode = h2c ] && printf 'http2: {h2c: true}\n'
		printf 'backends:\n  - {url: "http://127.0.0.1:%s"}\n  - {url: "http://127.0.0.1:%s"}\n' "$B1" "$B2"
	} >"$WORK/unstuck-$mode.yaml"
	start "unstuck-$mode" "$WORK/unstuck" lb --config "$WORK/unstuck-$mode.yaml"
done

# name:pid-name:url
TARGETS=("haproxy-tls:haproxy:https://127.0.0.1:$HT/" "unstuck-tls:unstuck_tls:https://127.0.0.1:$UT/"
	"haproxy-h2c:haproxy:http://127.0.0.1:$HC/" "unstuck-h2c:unstuck_h2c:http://127.0.0.1:$UC/")

for t in "${TARGETS[@]}"; do
	name=${t%%:*} url=${t#*:*:}
	ok=""
	for _ in $(seq 1 100); do
		if h2load -n 4 -c 1 "$url" 2>/dev/null | grep -q '4 succeeded'; then ok=1; break; fi
		sleep 0.1
	done
	[ -n "$ok" ] || { echo "$name ($url) does not answer over HTTP/2; logs:" >&2; cat "$WORK"/*.log >&2; exit 1; }
done

TCK=$(getconf CLK_TCK)
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }

declare -A RPS CPU
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
echo "rounds=$ROUNDS duration=${DURATION}s conns=$CONNS streams=$STREAMS threads=$THREADS; $(nproc) cores; $(date -u +%FT%TZ); load before: $LOAD_BEFORE" >&2
for r in $(seq 1 "$ROUNDS"); do
	for t in "${TARGETS[@]}"; do
		name=${t%%:*} rest=${t#*:} url=${t#*:*:}
		pidvar="PID_${rest%%:*}"
		pid=${!pidvar}
		c0=$(cpu_ticks "$pid")
		out=$(h2load -D "$DURATION" --warm-up-time=1 -c "$CONNS" -m "$STREAMS" -t "$THREADS" "$url" 2>&1)
		c1=$(cpu_ticks "$pid")
		rps=$(echo "$out" | awk '/^finished in/{print $4}')
		done_=$(echo "$out" | awk '/^requests:/{print $6}')
		ok=$(echo "$out" | awk '/^requests:/{print $8}')
		codes=$(echo "$out" | awk '/^status codes:/{print $3, $4}')
		us=$(awk -v d=$((c1 - c0)) -v t="$TCK" -v n="$ok" -v s="$DURATION" 'BEGIN{ if (n>0) printf "%.1f", d/t*1e6/n; else print "-" }')
		RPS[$name]+="$rps " CPU[$name]+="$us "
		printf 'round %d %-12s %10s req/s  %6s us CPU/req  (%s done, %s ok, 2xx: %s)\n' "$r" "$name" "$rps" "$us" "$done_" "$ok" "$codes" >&2
	done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

echo "load after: $LOAD_AFTER" >&2
echo
echo "load average before $LOAD_BEFORE, after $LOAD_AFTER; $(nproc) cores"
echo
echo "| target | req/s | vs HAProxy (same mode) | proxy CPU us/req | CPU vs HAProxy |"
echo "|---|---|---|---|---|"
for t in "${TARGETS[@]}"; do
	name=${t%%:*}
	mode=${name#*-}
	rps=$(echo "${RPS[$name]}" | median) cpu=$(echo "${CPU[$name]}" | median)
	hrps=$(echo "${RPS[haproxy-$mode]}" | median) hcpu=$(echo "${CPU[haproxy-$mode]}" | median)
	printf '| %s | %.0f | %s | %s | %s |\n' "$name" "$rps" "$(ratio "$rps" "$hrps")" "$cpu" "$(ratio "$cpu" "$hcpu")"
done
