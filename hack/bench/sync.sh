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
# 5. BENCH_CHANGES (200) more single-endpoint changes, one at a time, each
#    after --ipvs-min-sync-period has passed: p50/p99 from the rename until
#    the kernel shows it (polled), beside the syncs' own durations;
# 6. standing still for BENCH_IDLE_S (60) seconds with --ipvs-sync-period
#    30s: the agent's CPU per idle minute and per periodic resync, against
#    the CPU of one `ipvsadm -Sn` of the same state;
# 7. peak RSS (VmHWM) of the --once run and of the watching agent, and the
#    cold sync's CPU split: the agent's user time against its system time
#    (the kernel's work for its netlink writes runs in its sendmsg calls).
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
# utime and stime of a process, in clock ticks (fields 14 and 15 of stat;
# the command name, field 2, holds no space here).
cpu_of() {
	local f
	read -ra f <"/proc/$1/stat"
	echo "${f[13]} ${f[14]}"
}
# USER_HZ: 100 on every Linux architecture the guest runs (no getconf there).
tick=100
hwm_of() {
	local key value _
	while read -r key value _; do
		[[ $key == VmHWM: ]] && echo "$value" && return
	done <"/proc/$1/status"
}
start=$(now_ns)
# One malloc arena, as the image sets it (Dockerfile).
MALLOC_ARENA_MAX=1 kube-ipvs run "${flags[@]}" --metrics-bind-address '' --once >once.json 2>once.err &
once=$!
once_hwm_kib=0
once_cpu="0 0"
while hwm=$(hwm_of $once 2>/dev/null) && [[ -n $hwm ]]; do
	once_hwm_kib=$hwm
	once_cpu=$(cpu_of $once 2>/dev/null || echo "$once_cpu")
	sleep 0.1
done
read -r once_user_ticks once_sys_ticks <<<"$once_cpu"
wait $once || {
	cat once.err >&2
	exit 1
}
cold_ms=$(ms_since "$start")
once_writes=$(sed -n 's/.*"writes":\([0-9]*\).*/\1/p' once.json)
once_internal_ms=$(sed -n 's/.*"duration_ms":\([0-9.]*\).*/\1/p' once.json)
# The agent's own CPU split (getrusage): reading the manifests until the
# initial state is whole, then the sync (mapping, planning, writes).
cpu_phase() { # PHASE FIELD
	sed -n "s/.*\"$1\":{\"user\":\([0-9.]*\),\"system\":\([0-9.]*\)}.*/\\$2/p" once.json | cut -d. -f1
}
read_user_ms=$(cpu_phase reading 1) read_sys_ms=$(cpu_phase reading 2)
sync_user_ms=$(cpu_phase syncing 1) sync_sys_ms=$(cpu_phase syncing 2)
say "cold, by the agent's getrusage: reading user ${read_user_ms} ms sys ${read_sys_ms} ms; syncing user ${sync_user_ms} ms sys ${sync_sys_ms} ms"
say "cold: ${cold_ms} ms wall, ${once_writes} writes, agent says ${once_internal_ms} ms, peak RSS ${once_hwm_kib} KiB, CPU user ${once_user_ticks} sys ${once_sys_ticks} ticks (of 1/${tick} s, at its last poll)"

# --- 2. ipvsadm -R -----------------------------------------------------------
# BENCH_RESTORE=0 skips it (at 50,000 Services it alone takes most of an
# hour under emulation); the watch mode then starts over the cold sync's state.
rule_lines=null restore_ms=null
if [[ ${BENCH_RESTORE:-1} != 0 ]]; then
	ipvsadm -Sn >rules
	rule_lines=$(wc -l <rules)
	ipvsadm -C
	start=$(now_ns)
	ipvsadm -R <rules
	restore_ms=$(ms_since "$start")
	say "ipvsadm -R of $rule_lines lines: ${restore_ms} ms"
fi

# --- 3. watch mode over the restored state -----------------------------------
MALLOC_ARENA_MAX=1 kube-ipvs run "${flags[@]}" --metrics-bind-address 127.0.0.1:10249 \
	--ipvs-min-sync-period 1s --ipvs-sync-period 30s >agent.log 2>&1 &
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
# The watching agent's memory phase by phase: which one raises the peak.
memory_of() { # PHASE
	say "memory after $1: peak $(hwm_of $agent) KiB, resident $(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' /proc/$agent/status) KiB, full syncs $(grep -c 'sync="full"\|sync=full' agent.log)"
}
memory_of "the restart's sync"

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

# --- 5. many single changes -----------------------------------------------------
changes=${BENCH_CHANGES:-200}
cp "/tmp/cluster/$CHANGED_FILE" change/moved.yaml
cp cluster/"$CHANGED_FILE" change/original.yaml
latencies=()
logged=()
# The agent's sync log line for a change: its timestamp (taken once the
# kernel acknowledged the writes) less the rename, in ms.
# The kernel may show the change before the line is written: a line older
# than the rename is the previous change's, and is read again.
logged_since() { # start_ns
	local line stamp ms tries=0
	while ((tries < 40)); do
		line=$(grep 'sync="incremental"\|sync=incremental' agent.log | tail -n 1)
		stamp=$(grep -o '^[0-9T:.-]*Z' <<<"$line") || return 0
		ms=$((($(date -d "$stamp" +%s%N) - $1) / 1000000))
		((ms >= 0)) && echo "$ms" && return 0
		tries=$((tries + 1))
		sleep 0.05
	done
}
for ((i = 0; i < changes; i++)); do
	if ((i % 2 == 0)); then
		file=original.yaml want=$OLD_ADDRESS
	else
		file=moved.yaml want=$NEW_ADDRESS
	fi
	# Past --ipvs-min-sync-period since the last sync: the change must go
	# out as soon as it arrives. The address moved back to may still be
	# listed, draining at weight 0: only a weight above 0 is the change.
	sleep 1.1
	cp "change/$file" "/tmp/cluster/.$CHANGED_FILE.tmp"
	log_lines=$(wc -l <agent.log)
	start=$(now_ns)
	mv "/tmp/cluster/.$CHANGED_FILE.tmp" "/tmp/cluster/$CHANGED_FILE"
	until ipvsadm -Ln -t "$vip" | grep -Eq " $want:8080 +Masq +[1-9]"; do
		if (($(ms_since "$start") > 60000)); then
			say "change $i never reached the kernel"
			exit 1
		fi
	done
	latencies+=("$(ms_since "$start")")
	logged+=("$(logged_since "$start")")
	# A slow change shows what the agent logged meanwhile.
	if ((latencies[-1] > 3000)); then
		say "change $i took ${latencies[-1]} ms; the agent logged:"
		tail -n "+$((log_lines + 1))" agent.log | head -n 30 >&2
	fi
done
say "the agent's warnings: $(grep -c ' WARN ' agent.log || true)"
grep ' WARN ' agent.log | head -n 20 >&2 || true
percentile() { # P, then the values
	local p=$1
	shift
	printf '%s\n' "$@" | sort -n | awk -v p="$p" '{v[NR] = $1} END {i = int((NR * p + 99) / 100); if (i < 1) i = 1; print v[i]}'
}
p50_ms=$(percentile 50 "${latencies[@]}")
p99_ms=$(percentile 99 "${latencies[@]}")
logged_p50_ms=$(percentile 50 "${logged[@]}")
logged_p99_ms=$(percentile 99 "${logged[@]}")
sync_durations=$(grep 'sync="incremental"\|sync=incremental' agent.log | tail -n "$changes" |
	sed -n 's/.* duration_ms=\([0-9.]*\).*/\1/p')
sync_p50_ms=$(percentile 50 $sync_durations)
sync_p99_ms=$(percentile 99 $sync_durations)
memory_of "$changes changes"
say "$changes changes: rename to kernel p50 ${p50_ms} ms, p99 ${p99_ms} ms (polls of ~${poll_ms} ms); rename to the sync's log line p50 ${logged_p50_ms} ms, p99 ${logged_p99_ms} ms; the syncs themselves p50 ${sync_p50_ms} ms, p99 ${sync_p99_ms} ms"

# --- 6. standing still -----------------------------------------------------------
idle_s=${BENCH_IDLE_S:-60}
read -r u0 s0 <<<"$(cpu_of $agent)"
full0=$(grep -c 'sync="full"\|sync=full' agent.log)
sleep "$idle_s"
read -r u1 s1 <<<"$(cpu_of $agent)"
full1=$(grep -c 'sync="full"\|sync=full' agent.log)
resyncs=$((full1 - full0))
idle_cpu_ticks=$((u1 - u0 + s1 - s0))
resync_ms=$(grep 'sync="full"\|sync=full' agent.log | tail -n 1 | sed -n 's/.* duration_ms=\([0-9.]*\).*/\1/p')
# One ipvsadm -Sn of the same state: its user and system CPU, from the
# waited-for children's times (cutime, cstime: fields 16 and 17) of a shell
# that ran it, and its wall time. (The guest's `times` reports nothing.)
start=$(now_ns)
read -ra save_stat < <(sh -c 'ipvsadm -Sn >/dev/null; cat /proc/$$/stat')
save_ms=$(ms_since "$start")
save_user_ticks=${save_stat[15]}
save_sys_ticks=${save_stat[16]}
save_ticks=$((save_user_ticks + save_sys_ticks))
say "idle ${idle_s} s: ${idle_cpu_ticks} ticks of CPU, ${resyncs} periodic resyncs (the last ${resync_ms} ms); one ipvsadm -Sn: ${save_ticks} ticks (user ${save_user_ticks}, sys ${save_sys_ticks}), ${save_ms} ms"

memory_of "standing still"
watch_hwm_kib=$(hwm_of $agent)
watch_rss_kib=$(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' /proc/$agent/status)
kill $agent
wait $agent || true
trap - EXIT

printf '{"services":%d,"endpoints_per_service":%d,"rule_lines":%s,' \
	"$SERVICES" "$ENDPOINTS" "$rule_lines"
printf '"cold_sync_ms":%d,"cold_sync_agent_ms":%s,"cold_sync_writes":%d,' \
	"$cold_ms" "$once_internal_ms" "$once_writes"
printf '"ipvsadm_restore_ms":%s,"cold_vs_restore":%s,' \
	"$restore_ms" "$([[ $restore_ms == null ]] && echo null ||
		awk -v a="$cold_ms" -v b="$restore_ms" 'BEGIN {printf "%.3f", a / b}')"
printf '"restart_writes":%d,"restart_ms":%d,' "${restart_writes:-0}" "$restart_ms"
printf '"change_to_kernel_ms":%d,"change_poll_ms":%d,"change_logged_ms":%s,"change_sync_ms":%s,' \
	"$change_ms" "$poll_ms" "$change_logged_ms" "${change_sync_ms:-null}"
printf '"change_writes":%d,"change_writes_log":%s,"change_vs_cold":%.4f,' \
	"$((after - before))" "${change_writes:-null}" \
	"$(awk -v a="$change_ms" -v b="$cold_ms" 'BEGIN {print a / b}')"
printf '"changes":%d,"change_p50_ms":%d,"change_p99_ms":%d,"change_logged_p50_ms":%s,"change_logged_p99_ms":%s,"change_sync_p50_ms":%s,"change_sync_p99_ms":%s,' \
	"$changes" "$p50_ms" "$p99_ms" "${logged_p50_ms:-null}" "${logged_p99_ms:-null}" "${sync_p50_ms:-null}" "${sync_p99_ms:-null}"
printf '"idle_s":%d,"idle_cpu_ms":%d,"idle_cpu_ms_per_minute":%d,"idle_resyncs":%d,"resync_ms":%s,"resync_cpu_ms":%s,"ipvsadm_save_cpu_ms":%d,"ipvsadm_save_ms":%d,' \
	"$idle_s" "$((idle_cpu_ticks * 1000 / tick))" "$((idle_cpu_ticks * 60000 / tick / idle_s))" "$resyncs" \
	"${resync_ms:-null}" "$( ((resyncs > 0)) && echo $((idle_cpu_ticks * 1000 / tick / resyncs)) || echo null)" \
	"$((save_ticks * 1000 / tick))" "$save_ms"
printf '"cold_user_cpu_ms":%d,"cold_sys_cpu_ms":%d,"cold_user_vs_sys":%.2f,' \
	"$((once_user_ticks * 1000 / tick))" "$((once_sys_ticks * 1000 / tick))" \
	"$(awk -v u="$once_user_ticks" -v s="$once_sys_ticks" 'BEGIN {print (s > 0) ? u / s : 0}')"
printf '"cold_reading_user_ms":%s,"cold_reading_sys_ms":%s,"cold_syncing_user_ms":%s,"cold_syncing_sys_ms":%s,' \
	"${read_user_ms:-null}" "${read_sys_ms:-null}" "${sync_user_ms:-null}" "${sync_sys_ms:-null}"
printf '"once_peak_rss_kib":%d,"watch_peak_rss_kib":%d,"watch_rss_kib":%d}\n' \
	"$once_hwm_kib" "$watch_hwm_kib" "$watch_rss_kib"
