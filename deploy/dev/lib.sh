# shellcheck shell=bash
# Helpers shared by the deploy/dev scripts. Source it; do not run it.

# log prints a message on stderr, prefixed with the calling script's name.
log() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }

# die logs a message and exits 1.
die() { log "$*"; exit 1; }

# ensure_pkgs BIN:PKG... installs, in one apt-get call, the Debian package
# PKG of each BIN that is not on PATH (a BIN starting with / is a file that
# must exist). Services installed this way are not
# started (policy-rc.d), so no system-wide server appears on a default port.
ensure_pkgs() {
	local want=() pair
	for pair in "$@"; do
		case $pair in
		/*) [ -e "${pair%%:*}" ] || want+=("${pair#*:}") ;;
		*) command -v "${pair%%:*}" >/dev/null 2>&1 || want+=("${pair#*:}") ;;
		esac
	done
	[ "${#want[@]}" -eq 0 ] && return 0
	[ "$(id -u)" -eq 0 ] || die "missing ${want[*]}: run as root or install them with apt-get"
	log "installing ${want[*]}"
	local policy=/usr/sbin/policy-rc.d made_policy=""
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
	fi
	local apt=(apt-get -q -o DPkg::Lock::Timeout=300)
	local rc=0
	{
		DEBIAN_FRONTEND=noninteractive "${apt[@]}" update &&
			DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y --no-install-recommends "${want[@]}"
	} >"${TMPDIR:-/tmp}/danmaku-apt.$$.log" 2>&1 || rc=$?
	[ -n "$made_policy" ] && rm -f "$policy"
	if [ "$rc" -ne 0 ]; then
		tail -n 30 "${TMPDIR:-/tmp}/danmaku-apt.$$.log" >&2
		die "apt-get install ${want[*]} failed (exit $rc)"
	fi
	rm -f "${TMPDIR:-/tmp}/danmaku-apt.$$.log"
}

# port_busy PORT succeeds when something accepts connections on 127.0.0.1:PORT.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port VAR stores in VAR a TCP port that nothing listens on at
# 127.0.0.1. It picks below the kernel's ephemeral range (32768+) so
# outgoing connections do not take it in the meantime, and never repeats a
# port it handed out before in this shell. Another process may still bind
# the port first: callers retry on a bind failure.
free_port() {
	local p i
	for i in $(seq 1 200); do
		p=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
		case " ${DANMAKU_TAKEN_PORTS:-} " in *" $p "*) continue ;; esac
		if ! port_busy "$p"; then
			DANMAKU_TAKEN_PORTS="${DANMAKU_TAKEN_PORTS:-} $p"
			printf -v "$1" '%s' "$p"
			return 0
		fi
	done
	die "no free port found on 127.0.0.1"
}

# wait_until SECONDS CMD... runs CMD every 0.1 s until it succeeds or
# SECONDS pass; it fails in the latter case.
wait_until() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		[ "$SECONDS" -lt "$deadline" ] || return 1
		sleep 0.1
	done
}

# pid_alive PID succeeds when PID is a running (not zombie) process.
pid_alive() {
	kill -0 "$1" 2>/dev/null || return 1
	local state
	state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true)
	[ "$state" != "Z" ]
}

# stop_pidfile FILE [SECONDS] sends SIGTERM to the pid in FILE, waits up to
# SECONDS (default 20) for it to exit, then sends SIGKILL. It removes FILE.
# It only ever signals that one pid.
stop_pidfile() {
	local file=$1 timeout=${2:-20} pid
	[ -s "$file" ] || return 0
	pid=$(tr -dc '0-9' <"$file")
	if [ -n "$pid" ] && pid_alive "$pid"; then
		kill -TERM "$pid" 2>/dev/null || true
		if ! wait_until "$timeout" eval "! pid_alive $pid"; then
			log "pid $pid did not stop in ${timeout}s; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
			wait_until 5 eval "! pid_alive $pid" || log "pid $pid still alive"
		fi
	fi
	rm -f "$file"
}

# abs_dir DIR creates DIR and prints its absolute path.
abs_dir() {
	mkdir -p "$1"
	(cd "$1" && pwd)
}

# NGINX_PKGS are nginx and its njs module (Debian's, loaded with
# load_module), which deploy's TestNginxRoomRouting runs in front of stub
# gateways; NGINX is the binary (in /usr/sbin, off a user's PATH).
NGINX=/usr/sbin/nginx
NGINX_PKGS=("$NGINX:nginx" /usr/lib/nginx/modules/ngx_http_js_module.so:libnginx-mod-http-js)

# RACE_PKGS are what `go test -race` needs besides Go: cgo and a C toolchain.
RACE_PKGS=(gcc:gcc /usr/include/stdio.h:libc6-dev)
