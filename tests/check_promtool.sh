#!/bin/bash
# pool_stats_format's text as Prometheus reads it: `tcpool stats` runs a
# pool under load against built-in line servers (IPv4 with close, IPv4
# with peer-first, IPv6 with abort, a unix socket whose path holds a
# double quote and a backslash, and one whose path is not UTF-8), and
# `promtool check metrics` must accept what it prints. Automake's plain protocol: 0 pass, 1 fail, 77
# skip. Without promtool: skip, or fail when $CI is set (CI installs it,
# tools/install-deps).
set -u

bin=${TCPOOL_BIN:-$PWD/tools/tcpool}
lineserver=${TCPOOL_LINESERVER:-$(dirname "$bin")/tcpool-lineserver}

if ! command -v promtool >/dev/null 2>&1; then
	if [ -n "${CI:-}" ]; then
		echo "check_promtool: promtool not found (Debian package prometheus; tools/install-deps)" >&2
		exit 1
	fi
	echo "check_promtool: promtool not found: skipped" >&2
	exit 77
fi
if [ ! -x "$bin" ] || [ ! -x "$lineserver" ]; then
	echo "check_promtool: $bin or $lineserver not built" >&2
	exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/check_promtool.XXXXXX") || exit 1
pids=
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null && wait "$p"; done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# serve NAME ARGS...: start a line server, its endpoint in $endpoint.
serve() {
	local name=$1 i
	shift
	# Made here: the background job opens it only once it runs.
	: >"$tmp/$name.out"
	"$lineserver" "$@" >"$tmp/$name.out" 2>&1 &
	pids="$pids $!"
	for i in $(seq 100); do
		endpoint=$(sed -n 's/^listening on //p' "$tmp/$name.out")
		[ -n "$endpoint" ] && return 0
		sleep 0.05
	done
	echo "check_promtool: line server $name did not start:" >&2
	cat "$tmp/$name.out" >&2
	exit 1
}

serve v4 --quit close
v4=$endpoint
serve pf --quit close
pf=$endpoint
serve v6 --bind ::1 --quit close
v6=$endpoint
serve unix --unix "$tmp/m\"e\\t.sock" --quit close
ux=$endpoint
# Not UTF-8 (a stray \xff): shown as the text \xff, or promtool
# rejects the whole scrape.
serve bin --unix "$tmp/b"$'\xff'"n.sock" --quit close
bx=$endpoint

cat >"$tmp/pool.conf" <<CONF
[pool]
max_idle = 2
[endpoint $pf]
teardown = peer-first
close_request = "quit\\n"
[endpoint $v6]
teardown = abort
CONF

"$bin" stats --config "$tmp/pool.conf" --requests 2000 --concurrency 4 \
	--retire-every 7 "$v4" "$pf" "$v6" "$ux" "$bx" >"$tmp/metrics" 2>"$tmp/err"
rc=$?
if [ "$rc" -ne 0 ]; then
	echo "check_promtool: tcpool stats failed ($rc):" >&2
	cat "$tmp/err" >&2
	exit 1
fi

fail=0
if ! promtool check metrics <"$tmp/metrics" >"$tmp/promtool" 2>&1; then
	echo "check_promtool: promtool check metrics rejected the text:" >&2
	cat "$tmp/promtool" >&2
	fail=1
fi
# What the load must have left in it, escaped as the format says.
want() {
	if ! grep -qF -- "$1" "$tmp/metrics"; then
		echo "check_promtool: missing: $1" >&2
		fail=1
	fi
}
want "tcpool_gets_total{endpoint=\"$v4\"} 400"
want "tcpool_gets_total{endpoint=\"$v6\"} 400"
want "tcpool_gets_total{endpoint=\"unix:$tmp/m\\\"e\\\\t.sock\"} 400"
want "tcpool_gets_total{endpoint=\"unix:$tmp/b\\\\xffn.sock\"} 400"
want "tcpool_retired_total{endpoint=\"$pf\",policy=\"peer-first\",reason=\"user\"}"
want "tcpool_retired_total{endpoint=\"$v6\",policy=\"abort\",reason=\"surplus\"}"
want "tcpool_drain_seconds_bucket{endpoint=\"$pf\",le=\"+Inf\"}"
want "# TYPE tcpool_connection_lifetime_seconds histogram"
[ "$fail" -eq 0 ] && echo "check_promtool: $(grep -vc '^#' "$tmp/metrics") series pass promtool check metrics"
exit "$fail"
