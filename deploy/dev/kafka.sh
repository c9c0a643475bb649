#!/usr/bin/env bash
# kafka.sh start|stop DIR — the project's Kafka-protocol broker
# (deploy/kafkabroker, built on franz-go's kfake) on 127.0.0.1 for
# development and tests. start builds it into DIR, runs it on a free port
# with its data in DIR/kafka-data (kept across restarts), and writes
# DIR/kafka.addr (host:port); stop ends the pid in DIR/kafka.pid and nothing
# else. DANMAKU_TOPIC_PREFIX, when set, is prepended to the topic names.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -eq 2 ] || die "usage: $0 start|stop DIR"
cmd=$1
dir=$(abs_dir "$2")
pidfile=$dir/kafka.pid
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

start() {
	if [ -s "$pidfile" ] && pid_alive "$(cat "$pidfile")"; then
		log "already running (pid $(cat "$pidfile")) at $(cat "$dir/kafka.addr")"
		return 0
	fi
	command -v go >/dev/null 2>&1 || PATH=$PATH:/usr/local/go/bin
	(cd "$root" && go build -o "$dir/kafkabroker" ./deploy/kafkabroker)
	rm -f "$dir/kafka.addr"
	# setsid: a Ctrl-C at the terminal reaches the caller's trap, which
	# stops the broker by pid, rather than the broker itself.
	# GOMEMLIMIT: under 52 bench gateways on a loaded machine the broker's
	# heap grew to 10-18 GB in three runs (once OOM-killed); with a 2 GiB
	# soft limit it stayed under 41 MB in the same runs (BENCHMARKS.md).
	GOMEMLIMIT=${GOMEMLIMIT:-2GiB} setsid "$dir/kafkabroker" --addr 127.0.0.1:0 --addr-file "$dir/kafka.addr" \
		--data-dir "$dir/kafka-data" --topic-prefix "${DANMAKU_TOPIC_PREFIX:-}" \
		>"$dir/kafka.log" 2>&1 </dev/null &
	local pid=$!
	echo "$pid" >"$pidfile"
	local deadline=$((SECONDS + 30))
	while pid_alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do
		if [ -s "$dir/kafka.addr" ]; then
			log "kafka-protocol broker on $(cat "$dir/kafka.addr") (pid $pid)"
			return 0
		fi
		sleep 0.1
	done
	tail -n 20 "$dir/kafka.log" >&2 || true
	stop_pidfile "$pidfile" 10
	die "kafka broker did not start"
}

stop() {
	stop_pidfile "$pidfile" 20
	rm -f "$dir/kafka.addr"
}

case $cmd in
start) start ;;
stop) stop ;;
*) die "usage: $0 start|stop DIR" ;;
esac
