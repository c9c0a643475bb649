#!/usr/bin/env bash
# redis.sh start|stop DIR — a throwaway Redis on 127.0.0.1 for development
# and tests. start installs redis-server if missing, runs it on a free port
# with no persistence, and writes DIR/redis.addr (host:port); stop ends the
# pid in DIR/redis.pid and nothing else.
#
# REDIS_PORT=P start uses port P instead of a free one (to restart a server
# on the port its clients know); start fails if P is taken.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -eq 2 ] || die "usage: $0 start|stop DIR"
cmd=$1
dir=$(abs_dir "$2")
pidfile=$dir/redis.pid

redis_pong() { [ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = PONG ]; }

start() {
	if [ -s "$pidfile" ] && pid_alive "$(cat "$pidfile")"; then
		log "already running (pid $(cat "$pidfile")) at $(cat "$dir/redis.addr")"
		return 0
	fi
	ensure_pkgs redis-server:redis-server redis-cli:redis-tools
	local attempt port
	for attempt in 1 2 3; do
		if [ -n "${REDIS_PORT:-}" ]; then
			[ "$attempt" -eq 1 ] || break
			port=$REDIS_PORT
		else
			free_port port
		fi
		rm -f "$pidfile"
		redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
			--daemonize yes --pidfile "$pidfile" --dir "$dir" \
			--logfile "$dir/redis.log" >/dev/null
		if wait_until 15 redis_pong "$port" && wait_until 5 test -s "$pidfile"; then
			echo "127.0.0.1:$port" >"$dir/redis.addr"
			log "redis on 127.0.0.1:$port (pid $(cat "$pidfile"))"
			return 0
		fi
		stop_pidfile "$pidfile" 5
		log "attempt $attempt on port $port failed"
	done
	tail -n 20 "$dir/redis.log" >&2 || true
	die "redis did not start"
}

stop() {
	stop_pidfile "$pidfile" 10
	rm -f "$dir/redis.addr"
}

case $cmd in
start) start ;;
stop) stop ;;
*) die "usage: $0 start|stop DIR" ;;
esac
