#!/usr/bin/env bash
# tcpmem.sh — give this host the TCP memory of a gateway host before a bench.
#
# A bench on loopback charges the gateway's send queues and the harness's
# receive queues (19,000 viewers' backlogs, gigabytes at 1000 msg/s) to one
# kernel's TCP memory, net.ipv4.tcp_mem, which is global to the host (not
# per network namespace). The kernel's default on a 24 GiB host, 2.2 GiB at
# most and pressure from 1.5 GiB, is below such a backlog: under pressure
# the kernel drops what arrives for every socket above its fair share and
# the senders back off on retransmit timers, so deliveries collapse
# (bench/kernel.go). This raises each of the three values to
# docs/host-tuning.md's (never lowers one) and leaves them: run as root; as
# another user it only says what is missing. Each bench result reports the
# pressure and drops the kernel counted (kernel TCP). TCP_MEM_FILE names
# another file to act on (the tests').
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

# want is docs/host-tuning.md's net.ipv4.tcp_mem (pages: min, pressure, max).
want=(1048576 1572864 2097152)
file=${TCP_MEM_FILE:-/proc/sys/net/ipv4/tcp_mem}

[ $# -eq 0 ] || die "usage: $0"
[ -r "$file" ] || { log "no $file: nothing to raise"; exit 0; }
read -r -a have <"$file"
new=() low=""
for i in 0 1 2; do
	if [ "${have[$i]}" -lt "${want[$i]}" ]; then
		new+=("${want[$i]}") low=1
	else
		new+=("${have[$i]}")
	fi
done
[ -z "$low" ] && exit 0
if ! printf '%s %s %s\n' "${new[@]}" 2>/dev/null >"$file"; then
	log "net.ipv4.tcp_mem is ${have[*]} pages, below ${want[*]} (docs/host-tuning.md), and cannot be raised here:" \
		"a bench that backs up on loopback may stall on TCP memory pressure (see its kernel TCP line)"
	exit 0
fi
log "raised net.ipv4.tcp_mem from ${have[*]} to ${new[*]} pages (docs/host-tuning.md)"
