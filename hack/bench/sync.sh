#!/usr/bin/env bash
# Guest half of hack/bench-sync: runs in the VM with /work/cluster (the
# manifests) and /work/change (the changed file and bench.env), and prints
# one JSON line of figures on stdout (everything else goes to stderr).
#
# 1. cold: `kube-ipvs run --from-dir --once` into an empty kernel (parsing,
#    mapping, address binding and every IPVS write), timed from outside;
# 2. `ipvsadm -R` of the same rules (`ipvsadm -Sn` of step 1) into an empty
#    table, timed the same way;
# 3. watch mode over that state: the first (full) sync's writes, which a
#    restart over an unchanged cluster must keep at zero;
# 4. one endpoint of one Service moved (write and rename of its file): time
#    until the kernel shows it, and the writes it cost;
# 5. peak RSS (VmHWM) of the --once run and of the watching agent.
set -euo pipefail
cd /work
# shellcheck source=/dev/null
source change/bench.env

say() { echo "bench: $*" >&2; }
now_ns() { date +%s%N; }
ms_since() { echo $((($(now_ns) - $1) / 1000000)); }

ip link set lo up
# The manifests move to /tmp: file events on the initramfs root (where the
# PATHs land) do not reach inotify watchers here, on /tmp they do.
cp -r cluster /tmp/cluster
flags=(--from-dir /tmp/cluster --hostname-override node-0 --no-firewall
	--healthz-bind-address '')

# --- 1. cold sync ------------------------------------------------------------
say "cold sync of $SERVICES services x $ENDPOINTS endpoints"
# Peak RSS of a process: its VmHWM, read without forking, at its last poll
# (every 0.1 s) before it exits. (busybox's `time -v` reports ru_maxrss
# four times too large, and GNU time is not in the guest.)
hwm_of() {
	local key value _
	while read -r key value _; do
		[[ $key == VmHWM: ]] && echo "$value" && return
	done <"/proc/$1/status"
}
start=$(now_ns)
kube-ipvs run "${flags[@]}" --metrics-bind-address '' --once >once.json 2>once.err &
once=$!
once_hwm_kib=0
while hwm=$(hwm_of $once 2>/dev/null) && [[ -n $hwm ]]; do
	once_hwm_kib=$hwm
	sleep 0.1
done
wait $once || {
	cat once.err >&2
	exit 1
}
cold_ms=$(ms_since "$start")
once_writes=$(sed -n 's/.*"writes":\([0-9]*\).*/\1/p' once.json)
once_internal_ms=$(sed -n 's/.*"duration_ms":\([0-9.]*\).*/\1/p' once.json)
say "cold: ${cold_ms} ms wall, ${once_writes} writes, agent says ${once_internal_ms} ms, peak RSS ${once_hwm_kib} KiB"

# --- 2. ipvsadm -R -----------------------------------------------------------
ipvsadm -Sn >rules
rule_lines=$(wc -l <rules)
ipvsadm -C
start=$(now_ns)
ipvsadm -R <rules
restore_ms=$(ms_since "$start")
say "ipvsadm -R of $rule_lines lines: ${restore_ms} ms"

# --- 3. watch mode over the restored state -----------------------------------
kube-ipvs run "${flags[@]}" --metrics-bind-address 127.0.0.1:10249 \
	--ipvs-min-sync-period 1s >agent.log 2>&1 &
agent=$!
trap 'kill $agent 2>/dev/null || true' EXIT
start=$(now_ns)
until grep -q 'sync="full"\|sync=full' agent.log; do
	kill -0 $agent 2>/dev/null || {
		cat agent.log >&2
		exit 1
	}
	sleep 0.1
done
restart_ms=$(ms_since "$start")
restart_line=$(grep -m1 'sync="full"\|sync=full' agent.log)
restart_writes=$(sed -n 's/.* writes=\([0-9]*\).*/\1/p' <<<"$restart_line")
say "restart over the same state: $restart_line"

metric_writes() {
	busybox wget -qO- http://127.0.0.1:10249/metrics |
		sed -n 's/^kube_ipvs_netlink_operations_total{.*result="success".*} \([0-9]*\)$/\1/p' |
		awk '{s += $1} END {print s + 0}'
}

# Past --ipvs-min-sync-period, so the change is not held back by it.
sleep 1.5
before=$(metric_writes)

# --- 4. one endpoint moved ---------------------------------------------------
vip="$CHANGED_VIP:80"
ipvsadm -Ln -t "$vip" | grep -q "$OLD_ADDRESS:8080" || {
	say "$OLD_ADDRESS not behind $vip before the change"
	exit 1
}
cp "change/$CHANGED_FILE" "/tmp/cluster/.$CHANGED_FILE.tmp"
polls=0
start=$(now_ns)
mv "/tmp/cluster/.$CHANGED_FILE.tmp" "/tmp/cluster/$CHANGED_FILE"
until ipvsadm -Ln -t "$vip" | grep -q "$NEW_ADDRESS:8080"; do
	polls=$((polls + 1))
	if (($(ms_since "$start") > 60000)); then
		say "the change never reached the kernel"
		cat agent.log >&2
		exit 1
	fi
done
change_ms=$(ms_since "$start")
# What one poll costs (fork + exec of ipvsadm under emulation): the
# resolution of change_ms.
pstart=$(now_ns)
for _ in 1 2 3 4 5; do ipvsadm -Ln -t "$vip" >/dev/null; done
poll_ms=$(($(ms_since "$pstart") / 5))
sleep 0.5
after=$(metric_writes)
change_line=$(grep -m1 'sync="incremental"\|sync=incremental' agent.log || true)
change_writes=$(sed -n 's/.* writes=\([0-9]*\).*/\1/p' <<<"$change_line")
change_sync_ms=$(sed -n 's/.* duration_ms=\([0-9.]*\).*/\1/p' <<<"$change_line")
# The agent logs the sync once the kernel acknowledged it: its timestamp less
# the rename is the latency without the polling's resolution.
change_logged_ms=null
if stamp=$(grep -o '^[0-9T:.-]*Z' <<<"$change_line") && [[ -n $stamp ]]; then
	change_logged_ms=$((($(date -d "$stamp" +%s%N) - start) / 1000000))
fi
say "change: ${change_ms} ms to the kernel ($polls polls of ~${poll_ms} ms), $((after - before)) writes; $change_line"

watch_hwm_kib=$(hwm_of $agent)
watch_rss_kib=$(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' /proc/$agent/status)
kill $agent
wait $agent || true
trap - EXIT

printf '{"services":%d,"endpoints_per_service":%d,"rule_lines":%d,' \
	"$SERVICES" "$ENDPOINTS" "$rule_lines"
printf '"cold_sync_ms":%d,"cold_sync_agent_ms":%s,"cold_sync_writes":%d,' \
	"$cold_ms" "$once_internal_ms" "$once_writes"
printf '"ipvsadm_restore_ms":%d,"cold_vs_restore":%.3f,' \
	"$restore_ms" "$(awk -v a="$cold_ms" -v b="$restore_ms" 'BEGIN {print a / b}')"
printf '"restart_writes":%d,"restart_ms":%d,' "${restart_writes:-0}" "$restart_ms"
printf '"change_to_kernel_ms":%d,"change_poll_ms":%d,"change_logged_ms":%s,"change_sync_ms":%s,' \
	"$change_ms" "$poll_ms" "$change_logged_ms" "${change_sync_ms:-null}"
printf '"change_writes":%d,"change_writes_log":%s,"change_vs_cold":%.4f,' \
	"$((after - before))" "${change_writes:-null}" \
	"$(awk -v a="$change_ms" -v b="$cold_ms" 'BEGIN {print a / b}')"
printf '"once_peak_rss_kib":%d,"watch_peak_rss_kib":%d,"watch_rss_kib":%d}\n' \
	"$once_hwm_kib" "$watch_hwm_kib" "$watch_rss_kib"
