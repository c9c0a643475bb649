#!/usr/bin/env bash
# env.sh up|down DIR — the whole local test environment on 127.0.0.1.
# env.sh deps     — only install what `go test -race` needs (gcc, libc6-dev).
#
# up installs what is missing (redis-server, clickhouse-server/-client, kcat,
# chromium, nginx with its njs module, and gcc for the race detector, in one
# apt-get call), starts Redis, ClickHouse and the
# Kafka-protocol broker on free ports with all their files under DIR, and
# writes DIR/env, a file to source:
#
#	export DANMAKU_TEST_REDIS=127.0.0.1:P
#	export DANMAKU_TEST_CLICKHOUSE=127.0.0.1:P   (native protocol)
#	export DANMAKU_TEST_KAFKA=127.0.0.1:P
#	export DANMAKU_TEST_NGINX=/usr/sbin/nginx    (tests start their own)
#
# down stops exactly the processes whose pid files are in DIR.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

usage="usage: $0 up|down DIR, or $0 deps"
if [ "${1:-}" = deps ] && [ $# -eq 1 ]; then
	ensure_pkgs "${RACE_PKGS[@]}"
	exit 0
fi
[ $# -eq 2 ] || die "$usage"
cmd=$1
dir=$(abs_dir "$2")

down() {
	local rc=0
	"$here/kafka.sh" stop "$dir" & local k=$!
	"$here/clickhouse.sh" stop "$dir" & local c=$!
	"$here/redis.sh" stop "$dir" & local r=$!
	wait "$k" || rc=1
	wait "$c" || rc=1
	wait "$r" || rc=1
	rm -f "$dir/env"
	return "$rc"
}

up() {
	local start=$SECONDS
	rm -f "$dir/env"
	# The broker needs only Go: build and start it while apt-get runs.
	"$here/kafka.sh" start "$dir" & local k=$!
	local rc=0
	# Debian's nginx starts a system nginx on port 80 at install unless
	# policy-rc.d forbids it (ensure_pkgs adds one where there is none): one
	# that was not running before and runs now, the install started; stop
	# it (the tests start nginx of their own).
	local sys_nginx=""
	[ -s /run/nginx.pid ] && sys_nginx=$(cat /run/nginx.pid)
	ensure_pkgs redis-server:redis-server redis-cli:redis-tools \
		clickhouse-server:clickhouse-server clickhouse-client:clickhouse-client \
		kcat:kcat chromium:chromium "${NGINX_PKGS[@]}" "${RACE_PKGS[@]}" || rc=1
	if [ -z "$sys_nginx" ] && [ -s /run/nginx.pid ]; then
		log "the nginx install started a system nginx (pid $(cat /run/nginx.pid)); stopping it"
		invoke-rc.d nginx stop >/dev/null 2>&1 || stop_pidfile /run/nginx.pid
	fi
	if [ "$rc" -eq 0 ]; then
		"$here/redis.sh" start "$dir" & local r=$!
		"$here/clickhouse.sh" start "$dir" & local c=$!
		wait "$r" || rc=1
		wait "$c" || rc=1
	fi
	wait "$k" || rc=1
	if [ "$rc" -ne 0 ]; then
		log "start failed; stopping what was started"
		down || true
		return 1
	fi
	{
		echo "# Written by deploy/dev/env.sh up $dir; stop with: deploy/dev/env.sh down $dir"
		echo "export DANMAKU_TEST_REDIS=$(cat "$dir/redis.addr")"
		echo "export DANMAKU_TEST_CLICKHOUSE=$(cat "$dir/clickhouse.addr")"
		echo "export DANMAKU_TEST_KAFKA=$(cat "$dir/kafka.addr")"
		echo "export DANMAKU_TEST_CHROMIUM=$(command -v chromium)"
		echo "export DANMAKU_TEST_NGINX=$NGINX"
	} >"$dir/env.tmp"
	mv "$dir/env.tmp" "$dir/env"
	log "test servers up in $((SECONDS - start))s; source $dir/env"
}

case $cmd in
up) up ;;
down) down ;;
*) die "$usage" ;;
esac
