#!/usr/bin/env bash
# clickhouse.sh start|stop DIR — a throwaway ClickHouse server on 127.0.0.1
# for development and tests. start installs clickhouse-server and
# clickhouse-client if missing, writes config.xml and users.xml into DIR
# (data, logs and temp files stay under DIR), starts the server on free
# native and HTTP ports, and writes DIR/clickhouse.addr (host:port of the
# native protocol) and DIR/clickhouse.http (host:port of HTTP). stop ends
# the pid in DIR/clickhouse.pid and nothing else.
#
# CLICKHOUSE_PORT=P (and optionally CLICKHOUSE_HTTP_PORT=H) start uses these
# ports instead of free ones, to restart a server on the port its clients
# know; the data under DIR survives a stop and start.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -eq 2 ] || die "usage: $0 start|stop DIR"
cmd=$1
dir=$(abs_dir "$2")/clickhouse
mkdir -p "$dir"
pidfile=$dir/../clickhouse.pid

write_config() {
	local tcp=$1 http=$2
	mkdir -p "$dir/data" "$dir/tmp" "$dir/user_files" "$dir/format_schemas" "$dir/log"
	cat >"$dir/config.xml" <<XML
<?xml version="1.0"?>
<!-- Written by deploy/dev/clickhouse.sh; regenerated on every start. -->
<yandex>
    <logger>
        <level>warning</level>
        <log>$dir/log/clickhouse-server.log</log>
        <errorlog>$dir/log/clickhouse-server.err.log</errorlog>
        <size>100M</size>
        <count>2</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>$tcp</tcp_port>
    <http_port>$http</http_port>
    <max_connections>1024</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>
    <path>$dir/data/</path>
    <tmp_path>$dir/tmp/</tmp_path>
    <user_files_path>$dir/user_files/</user_files_path>
    <format_schema_path>$dir/format_schemas/</format_schema_path>
    <users_config>$dir/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
    <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
    <max_session_timeout>3600</max_session_timeout>
    <default_session_timeout>60</default_session_timeout>
</yandex>
XML
	cat >"$dir/users.xml" <<'XML'
<?xml version="1.0"?>
<!-- Written by deploy/dev/clickhouse.sh: user "default", no password, loopback only. -->
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <use_uncompressed_cache>0</use_uncompressed_cache>
            <load_balancing>random</load_balancing>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>::1</ip>
                <ip>127.0.0.1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
XML
}

ch_ready() { clickhouse-client --host 127.0.0.1 --port "$1" -q 'SELECT 1'; }

start() {
	if [ -s "$pidfile" ] && pid_alive "$(cat "$pidfile")"; then
		log "already running (pid $(cat "$pidfile")) at $(cat "$dir/../clickhouse.addr")"
		return 0
	fi
	ensure_pkgs clickhouse-server:clickhouse-server clickhouse-client:clickhouse-client
	local attempt tcp http pid deadline
	for attempt in 1 2 3; do
		if [ -n "${CLICKHOUSE_PORT:-}" ]; then
			[ "$attempt" -eq 1 ] || break
			tcp=$CLICKHOUSE_PORT
			if [ -n "${CLICKHOUSE_HTTP_PORT:-}" ]; then http=$CLICKHOUSE_HTTP_PORT; else free_port http; fi
		else
			free_port tcp
			free_port http
		fi
		write_config "$tcp" "$http"
		# setsid: a Ctrl-C at the terminal reaches the caller's trap,
		# which stops the server by pid, rather than the server itself.
		setsid clickhouse-server --config-file="$dir/config.xml" \
			>"$dir/log/stdout.log" 2>&1 </dev/null &
		pid=$!
		echo "$pid" >"$pidfile"
		deadline=$((SECONDS + 60))
		while pid_alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do
			if ch_ready "$tcp" >/dev/null 2>&1; then
				echo "127.0.0.1:$tcp" >"$dir/../clickhouse.addr"
				echo "127.0.0.1:$http" >"$dir/../clickhouse.http"
				log "clickhouse on 127.0.0.1:$tcp (native), 127.0.0.1:$http (http), pid $pid"
				return 0
			fi
			sleep 0.2
		done
		log "attempt $attempt (tcp $tcp, http $http) failed; server log:"
		tail -n 20 "$dir/log/clickhouse-server.err.log" "$dir/log/stdout.log" >&2 2>/dev/null || true
		stop_pidfile "$pidfile" 30
	done
	die "clickhouse did not start"
}

stop() {
	stop_pidfile "$pidfile" 30
	rm -f "$dir/../clickhouse.addr" "$dir/../clickhouse.http"
}

case $cmd in
start) start ;;
stop) stop ;;
*) die "usage: $0 start|stop DIR" ;;
esac
