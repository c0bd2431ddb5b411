#!/bin/bash
# tcpool(1) as a user runs it: configuration checks, TIME_WAIT counts
# against a real server, usage errors. Automake's plain test protocol:
# exit 0 pass, 1 fail, 77 skip.
#
# TCPOOL_BIN names the command (make check sets it); the line server is
# taken from the same directory unless TCPOOL_LINESERVER says otherwise.
# TCPOOL_WRAPPER, when set, runs every tcpool command under it, e.g.
# TCPOOL_WRAPPER="valgrind -q --leak-check=full --error-exitcode=99".
# bash, not sh: the client side of the TIME_WAIT test is /dev/tcp.
set -u

bin=${TCPOOL_BIN:-$PWD/tools/tcpool}
lineserver=${TCPOOL_LINESERVER:-$(dirname "$bin")/tcpool-lineserver}
wrapper=${TCPOOL_WRAPPER:-}

if [ ! -x "$bin" ]; then
	echo "check_cli: $bin not built; set TCPOOL_BIN" >&2
	exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/check_cli.XXXXXX") || exit 1
server_pid=
cleanup() {
	[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid"
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

total=0
failed=0

ok() {
	total=$((total + 1))
	echo "ok $total - $1"
}

not_ok() {
	total=$((total + 1))
	failed=$((failed + 1))
	echo "not ok $total - $1"
	shift
	for line in "$@"; do echo "#   $line"; done
}

# run ARGS...: tcpool's stdout, stderr and status in $out, $err, $rc.
run() {
	# shellcheck disable=SC2086 # the wrapper is a command line
	$wrapper "$bin" "$@" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	out=$(cat "$tmp/out")
	err=$(cat "$tmp/err")
}

# expect_rc WANT DESCRIPTION: the last run's status.
expect_rc() {
	if [ "$rc" -eq "$1" ]; then
		ok "$2: exit $1"
	else
		not_ok "$2: exit $rc, expected $1" "stdout: $out" "stderr: $err"
	fi
}

# expect_stderr TEXT DESCRIPTION: the last run's stderr is exactly TEXT.
expect_stderr() {
	if [ "$err" = "$1" ]; then
		ok "$2"
	else
		not_ok "$2" "expected stderr: $1" "got stderr: $err"
	fi
}

# expect_grep PATTERN STREAM DESCRIPTION: STREAM (out or err) matches.
expect_grep() {
	local text
	[ "$2" = out ] && text=$out || text=$err
	if printf '%s\n' "$text" | grep -q -- "$1"; then
		ok "$3"
	else
		not_ok "$3" "no line matching: $1" "$2 was: $text"
	fi
}

# section_lines NAME: the lines of section [NAME] in the last stdout.
section_lines() {
	printf '%s\n' "$out" |
		awk -v h="[$1]" '/^\[/ { in_s = ($0 == h); next } in_s && NF'
}

# expect_in_section NAME LINE: LINE stands, exactly, in section [NAME].
expect_in_section() {
	if section_lines "$1" | grep -qxF -- "$2"; then
		ok "[$1] has '$2'"
	else
		not_ok "[$1] has '$2'" "section was:" "$(section_lines "$1")"
	fi
}

# ---- usage ----

test_usage() {
	run --version
	expect_rc 0 "--version"
	expect_grep '^tcpool [0-9][0-9.]*$' out "--version prints the version"
	run --help
	expect_rc 0 "--help"
	expect_grep '^usage: tcpool check-config FILE' out "--help prints the usage"
	run
	expect_rc 2 "no command"
	expect_grep '^usage:' err "no command: usage on stderr"
	run frobnicate
	expect_rc 2 "unknown command"
	expect_grep "unknown command 'frobnicate'" err "unknown command named"
	run check-config
	expect_rc 2 "check-config without FILE"
	run tw a:1 b:2
	expect_rc 2 "tw with two endpoints"
}

# ---- check-config ----

test_good_config() {
	local f=$tmp/good.conf

	cat >"$f" <<'EOF'
# a realistic file: pool-wide keys, then two endpoints
[pool]
max_total = 64
teardown = abort
max_idle = 4

[endpoint *:11211]
teardown = peer-first
close_request = "quit\r\n"
close_timeout_ms = 300
fallback = close

[endpoint [::1]:6379]
max_idle = 2
EOF
	run check-config "$f"
	expect_rc 0 "good config"
	expect_stderr "" "good config: nothing on stderr"
	expect_in_section pool "max_total = 64"
	expect_in_section pool "teardown = abort"
	expect_in_section pool "max_idle = 4"
	expect_in_section pool "connect_timeout_ms = 2000"
	expect_in_section "endpoint *:11211" "teardown = peer-first"
	expect_in_section "endpoint *:11211" 'close_request = "quit\r\n"'
	expect_in_section "endpoint *:11211" "close_timeout_ms = 300"
	expect_in_section "endpoint *:11211" "fallback = close"
	expect_in_section "endpoint *:11211" "max_idle = 4"
	expect_in_section "endpoint [::1]:6379" "max_idle = 2"
	expect_in_section "endpoint [::1]:6379" "teardown = abort"
	if [ "$(section_lines "endpoint *:11211" | grep -c '^max_total')" -eq 0 ]; then
		ok "max_total only in [pool]"
	else
		not_ok "max_total only in [pool]" "$(section_lines "endpoint *:11211")"
	fi
	# What check-config prints is a configuration file, and the same one.
	printf '%s\n' "$out" >"$tmp/dump.conf"
	local first=$out
	run check-config "$tmp/dump.conf"
	if [ "$rc" -eq 0 ] && [ "$out" = "$first" ]; then
		ok "the printed settings load again, unchanged"
	else
		not_ok "the printed settings load again, unchanged" "exit $rc" "$err"
	fi
}

test_bad_configs() {
	local f=$tmp/bad.conf

	printf '[pool]\nmax_total = 10\nmax_idle = ten\n' >"$f"
	run check-config "$f"
	expect_rc 1 "not a number"
	expect_stderr "$f:3: max_idle: not a number: \"ten\"" \
		"not a number: FILE:LINE: KEY: reason"
	[ -z "$out" ] && ok "bad config: nothing on stdout" ||
		not_ok "bad config: nothing on stdout" "$out"

	printf '[pool]\nmax_idle = 4\n\n[endpoint *:11211]\nteardown = peer-first\n' >"$f"
	run check-config "$f"
	expect_rc 1 "peer-first without close_request"
	expect_grep "^$f:5: .*close_request" err \
		"peer-first without close_request: line 5, names close_request"

	printf '[pool]\nmax_idel = 4\n' >"$f"
	run check-config "$f"
	expect_rc 1 "unknown key"
	expect_stderr "$f:2: max_idel: unknown key" "unknown key named"

	# 192.0.2.1 (TEST-NET-1) is no address of this host: only a bind is
	# tried, no packet is sent.
	printf '[pool]\nsource_address = 127.0.0.2\n\n[endpoint *:6379]\nsource_address = 127.0.0.3, 192.0.2.1\n' >"$f"
	run check-config "$f"
	expect_rc 1 "source_address not local"
	expect_stderr "$f: [endpoint *:6379] source_address: 192.0.2.1 cannot be bound: Cannot assign requested address (not an address of this host)" \
		"source_address not local: section, key, address and why"

	run check-config "$tmp/no-such.conf"
	expect_rc 1 "missing file"
	expect_grep "^$tmp/no-such.conf: No such file or directory" err \
		"missing file: its name and why"
}

# Valid but churning settings: accepted, with a warning naming the section.
test_config_warnings() {
	local f=$tmp/warn.conf

	printf '[pool]\nmax_active = 64\nmax_idle = 4\n\n[endpoint *:11211]\nidle_shrink_ms = 0\n' >"$f"
	run check-config "$f"
	expect_rc 0 "max_idle below max_active: still valid"
	expect_grep "^$f: warning: \[pool\] max_idle: 4 is below max_active (64): .*idle_shrink_ms (5000 ms)" err \
		"max_idle below max_active: warned, with the shrink period"
	expect_grep "^$f: warning: \[endpoint \*:11211\] max_idle: .*idle_shrink_ms is 0" err \
		"max_idle below max_active, shrink off: warned per section"
	expect_in_section pool "max_idle = 4"
}

# ---- tw ----

# start_server: the line server on a free loopback port; sets $port.
start_server() {
	local i line=

	# Emptied here, not by the background job's redirection, which may
	# run after the loop below has read the previous server's line.
	: >"$tmp/server.out"
	"$lineserver" >"$tmp/server.out" 2>&1 &
	server_pid=$!
	for i in $(seq 100); do
		line=$(head -n 1 "$tmp/server.out")
		[ -n "$line" ] && break
		sleep 0.05
	done
	port=${line##*:}
	case $line in
	"listening on 127.0.0.1:"[0-9]*) return 0 ;;
	esac
	echo "check_cli: the line server did not start: $line" >&2
	return 1
}

stop_server() {
	kill "$server_pid" && wait "$server_pid"
	server_pid=
}

# One request, then the client closes first: a client TIME_WAIT.
client_closes_first() {
	local reply

	exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
	echo PING >&3
	read -r -t 5 reply <&3
	exec 3>&-
	[ "$reply" = PONG ]
}

# tw_figure NAME: the "NAME N" figure of the last stdout.
tw_figure() {
	printf '%s\n' "$out" | awk -v k="$1" '$1 == k { print $2 }'
}

test_tw() {
	local n=5 i client server

	if ! [ -x "$lineserver" ]; then
		not_ok "tw: line server $lineserver not built"
		return
	fi
	start_server || { not_ok "tw: line server starts"; return; }
	for i in $(seq "$n"); do
		client_closes_first || { not_ok "tw: request $i answered"; break; }
	done
	# The server's FIN, which completes each client TIME_WAIT, comes
	# a moment after the client's close.
	for i in $(seq 50); do
		run tw "127.0.0.1:$port"
		client=$(tw_figure client)
		[ "$rc" -eq 0 ] && [ "${client:-0}" -ge "$n" ] && break
		sleep 0.1
	done
	expect_rc 0 "tw 127.0.0.1:$port"
	server=$(tw_figure server)
	if [ "${client:-0}" -ge "$n" ] && [ "${server:-x}" -eq 0 ] 2>/dev/null; then
		ok "tw: client $client >= $n, server 0 (the client closed first)"
	else
		not_ok "tw: client >= $n and server 0" "stdout: $out" "stderr: $err"
	fi
	stop_server
	run tw "*:$port"
	expect_rc 0 "tw *:$port"
	[ "$(tw_figure client)" -ge "$n" ] 2>/dev/null &&
		ok "tw: '*' host counts them too" ||
		not_ok "tw: '*' host counts them too" "$out"
	run tw
	expect_rc 0 "tw without an endpoint"
	[ "$(tw_figure total)" -ge "$n" ] 2>/dev/null &&
		ok "tw: namespace total >= $n" || not_ok "tw: namespace total" "$out"
	expect_grep "/proc/net/sockstat" out "tw: the total says where it comes from"
}

test_tw_bad() {
	run tw 127.0.0.1:0
	expect_rc 1 "tw with port 0"
	expect_grep "^tcpool: 127.0.0.1:0: malformed endpoint" err \
		"tw with port 0: pool_strerror text"
	run tw "no-port"
	expect_rc 1 "tw without a port"
	run tw unix:/tmp/x.sock
	expect_rc 1 "tw with a unix endpoint"
	expect_grep "no TIME_WAIT" err "tw with a unix endpoint: says why"
}

# ---- stats ----

# stats_figure SERIES: the value of the series line, in the last stdout.
stats_figure() {
	printf '%s\n' "$out" | awk -v k="$1" '$1 == k { print $2 }'
}

test_stats() {
	local ep

	if ! [ -x "$lineserver" ]; then
		not_ok "stats: line server $lineserver not built"
		return
	fi
	# The last server's "listening on" line must not pass for this one's.
	: >"$tmp/server.out"
	start_server || { not_ok "stats: line server starts"; return; }
	ep=127.0.0.1:$port
	run stats --requests 300 --concurrency 3 --retire-every 10 "$ep"
	expect_rc 0 "stats under load"
	[ "$(stats_figure "tcpool_gets_total{endpoint=\"$ep\"}")" = 300 ] &&
		ok "stats: 300 gets counted" || not_ok "stats: 300 gets counted" "$out"
	[ "$(stats_figure "tcpool_retired_total{endpoint=\"$ep\",policy=\"close\",reason=\"user\"}")" = 30 ] &&
		ok "stats: every 10th retired, by the close policy" ||
		not_ok "stats: every 10th retired" "$out"
	expect_grep '^# TYPE tcpool_connection_lifetime_seconds histogram$' out \
		"stats: histograms"
	expect_grep '^tcpool stats: 300 requests, 0 failed, ' err "stats: summary on stderr"

	printf '[pool]\nteardown = abort\nmax_uses = 4\n' >"$tmp/abort.conf"
	run stats --config "$tmp/abort.conf" --requests 40 --concurrency 1 "$ep"
	expect_rc 0 "stats --config"
	[ "$(stats_figure "tcpool_retired_total{endpoint=\"$ep\",policy=\"abort\",reason=\"max_uses\"}")" = 10 ] &&
		ok "stats --config: its policy and max_uses apply" ||
		not_ok "stats --config: policy and max_uses" "$out"
	run stats --send 'hello\n' --requests 5 "$ep"
	expect_rc 0 "stats --send with an escape"
	stop_server

	# Nothing listens there any more: every request fails, still shown.
	run stats --requests 5 --concurrency 1 "$ep"
	expect_rc 1 "stats against a closed port"
	[ "$(stats_figure "tcpool_connect_failures_total{endpoint=\"$ep\"}")" = 5 ] &&
		ok "stats: connect failures counted" || not_ok "stats: connect failures" "$out"
	expect_grep "^tcpool stats: last failure: connection refused" err \
		"stats: says why it failed"
	run stats
	expect_rc 2 "stats without an endpoint"
	run stats --requests many "$ep"
	expect_rc 2 "stats --requests not a number"
	expect_grep "expected a number, got 'many'" err "stats: bad number named"
	run stats --frobnicate 1 "$ep"
	expect_rc 2 "stats with an unknown option"
	run stats --concurrency 0 "$ep"
	expect_rc 2 "stats --concurrency 0"
	run stats --config "$tmp/none.conf" "$ep"
	expect_rc 1 "stats with a missing config file"
	run stats --requests 1 "nonsense"
	expect_rc 1 "stats with a malformed endpoint"
}

test_usage
test_good_config
test_bad_configs
test_config_warnings
test_tw
test_tw_bad
test_stats

echo "# $((total - failed)) of $total passed"
[ "$failed" -eq 0 ]
