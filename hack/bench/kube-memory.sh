#!/usr/bin/env bash
# Guest half of hack/bench-memory-kube: serves a generated cluster with
# /work/kube-ipvs-testapi, runs the agent against it in watch mode, and
# prints one JSON line (everything else goes to stderr) with:
#   - the agent's resident memory after its first sync and a while later;
#   - the first sync's wall time and the agent's user and system CPU;
#   - BENCH_CHANGES (200) single-endpoint changes, each an EndpointSlice
#     replaced through the API (PUT) once --ipvs-min-sync-period has passed:
#     p50/p99 from the request until the kernel shows it (polled), and until
#     the agent's sync log line, beside the syncs' own durations;
#   - BENCH_IDLE_S (60) seconds standing still: CPU per idle minute and per
#     periodic resync, against one `ipvsadm -Sn` of the same state;
#   - `ipvsadm -R` of the same rules into an empty table, wall time
#     (BENCH_RESTORE=0 skips it: 0 in the output).
set -euo pipefail
cd /work
services=${BENCH_SERVICES:-10000}
endpoints=${BENCH_ENDPOINTS:-10}
settle=${BENCH_SETTLE:-15}
changes=${BENCH_CHANGES:-200}
idle_s=${BENCH_IDLE_S:-60}
tick=100 # USER_HZ

say() { echo "bench: $*" >&2; }
now_ns() { date +%s%N; }
ms_since() { echo $((($(now_ns) - $1) / 1000000)); }
kib() { sed -n "s/^$1:[[:space:]]*\([0-9]*\) kB/\1/p" "/proc/$2/status"; }
# utime and stime of a process, in ticks (fields 14 and 15 of its stat).
cpu_of() {
	local f
	read -ra f <"/proc/$1/stat"
	echo "${f[13]} ${f[14]}"
}
percentile() { # P, then the values
	local p=$1
	shift
	printf '%s\n' "$@" | sort -n | awk -v p="$p" '{v[NR] = $1} END {i = int((NR * p + 99) / 100); if (i < 1) i = 1; print v[i]}'
}
api_url=http://127.0.0.1:6443

ip link set lo up
for f in ca-certificates.crt ca-bundle.crt; do
	[[ -f $f ]] && export SSL_CERT_FILE=$PWD/$f
done
./kube-ipvs-testapi --services "$services" --endpoints-per-service "$endpoints" \
	--listen 127.0.0.1:6443 --kubeconfig-out kubeconfig >testapi.log 2>&1 &
api=$!
agent=
trap 'kill $api $agent 2>/dev/null || true' EXIT
until grep -q serving testapi.log; do
	kill -0 $api 2>/dev/null || {
		cat testapi.log >&2
		exit 1
	}
	sleep 0.2
done
say "test API server up: $(cat testapi.log)"

start=$(now_ns)
# One malloc arena, as the image sets it (Dockerfile).
MALLOC_ARENA_MAX=1 kube-ipvs run --kubeconfig kubeconfig --hostname-override node-0 --no-firewall \
	--metrics-bind-address 127.0.0.1:10249 --healthz-bind-address '' \
	--ipvs-min-sync-period 1s --ipvs-sync-period 30s >agent.log 2>&1 &
agent=$!
until grep -q 'sync="full"\|sync=full' agent.log; do
	kill -0 $agent 2>/dev/null || {
		cat agent.log >&2
		exit 1
	}
	if (($(now_ns) - start > 900 * 1000000000)); then
		say "no full sync after 900 s"
		cat agent.log >&2
		exit 1
	fi
	sleep 0.2
done
first_sync_ms=$((($(now_ns) - start) / 1000000))
read -r cold_user cold_sys <<<"$(cpu_of $agent)"
sync_line=$(grep -m1 'sync="full"\|sync=full' agent.log)
say "first sync after ${first_sync_ms} ms: $sync_line"
hwm_first=$(kib VmHWM $agent)
rss_first=$(kib VmRSS $agent)
sleep "$settle"
hwm_later=$(kib VmHWM $agent)
rss_later=$(kib VmRSS $agent)
api_rss=$(kib VmRSS $api)
virtual_servers=$(ipvsadm -Ln | grep -c '^TCP' || true)
real_servers=$(ipvsadm -Ln | grep -c -- '->.*Masq' || true)
say "agent peak ${hwm_first} KiB after the first sync, ${hwm_later} KiB ${settle} s later; test API server ${api_rss} KiB; CPU to the first sync: user ${cold_user} sys ${cold_sys} ticks"

# --- single-endpoint changes through the API ----------------------------------
name=$(printf 'svc-%05d' $((services / 2)))
ns=$(busybox wget -qO- "$api_url/api/v1/services?fieldSelector=metadata.name=$name" |
	grep -o '"namespace":"[^"]*"' | head -n 1 | cut -d'"' -f4)
vip=$(busybox wget -qO- "$api_url/api/v1/namespaces/$ns/services/$name" |
	grep -o '"clusterIP":"[^"]*"' | head -n 1 | cut -d'"' -f4)
slice_path=/apis/discovery.k8s.io/v1/namespaces/$ns/endpointslices/$name-x7k2p
original=$(busybox wget -qO- "$api_url$slice_path")
old=$(grep -o '"addresses":\["[^"]*"' <<<"$original" | head -n 1 | cut -d'"' -f4)
new=10.255.0.1
moved=${original/\"$old\"/\"$new\"}
say "changes: $ns/$name ($vip:80), $old <-> $new"
put() { # path, body: the answer's status line (bash's /dev/tcp: no HTTP client in the guest)
	local status
	exec 3<>/dev/tcp/127.0.0.1/6443
	printf 'PUT %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' \
		"$1" "${#2}" "$2" >&3
	IFS= read -r status <&3 || true
	exec 3<&- 3>&-
	echo "$status"
}
logged_since() { # start_ns: the newest incremental sync's log line less it
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
latencies=()
logged=()
for ((i = 0; i < changes; i++)); do
	# The address moved back to may still be listed, draining at weight 0:
	# only a weight above 0 is the change.
	if ((i % 2 == 0)); then body=$moved want=$new; else body=$original want=$old; fi
	sleep 1.1
	start=$(now_ns)
	answer=$(put "$slice_path" "$body")
	[[ $answer == *" 200 "* ]] || {
		say "the replace was refused: $answer"
		exit 1
	}
	until ipvsadm -Ln -t "$vip:80" | grep -Eq " $want:8080 +Masq +[1-9]"; do
		if (($(ms_since "$start") > 60000)); then
			say "change $i never reached the kernel"
			cat agent.log >&2
			exit 1
		fi
	done
	latencies+=("$(ms_since "$start")")
	logged+=("$(logged_since "$start")")
done
p50_ms=$(percentile 50 "${latencies[@]}")
p99_ms=$(percentile 99 "${latencies[@]}")
logged_p50_ms=$(percentile 50 "${logged[@]}")
logged_p99_ms=$(percentile 99 "${logged[@]}")
sync_durations=$(grep 'sync="incremental"\|sync=incremental' agent.log | tail -n "$changes" |
	sed -n 's/.* duration_ms=\([0-9.]*\).*/\1/p')
sync_p50_ms=$(percentile 50 $sync_durations)
sync_p99_ms=$(percentile 99 $sync_durations)
say "$changes changes: request to kernel p50 ${p50_ms} ms, p99 ${p99_ms} ms; to the sync's log line p50 ${logged_p50_ms} ms, p99 ${logged_p99_ms} ms; the syncs p50 ${sync_p50_ms} ms, p99 ${sync_p99_ms} ms"
# Where the watching agent's memory grows: after the changes, before standing still.
hwm_changes=$(kib VmHWM $agent)
rss_changes=$(kib VmRSS $agent)
say "agent after the changes: peak ${hwm_changes} KiB, resident ${rss_changes} KiB; $(grep -c 'sync="full"\|sync=full' agent.log) full syncs, $(grep -c 'watch failed' agent.log) watch failures so far"

# --- standing still ---------------------------------------------------------------
read -r u0 s0 <<<"$(cpu_of $agent)"
full0=$(grep -c 'sync="full"\|sync=full' agent.log)
sleep "$idle_s"
read -r u1 s1 <<<"$(cpu_of $agent)"
full1=$(grep -c 'sync="full"\|sync=full' agent.log)
resyncs=$((full1 - full0))
idle_ticks=$((u1 - u0 + s1 - s0))
resync_ms=$(grep 'sync="full"\|sync=full' agent.log | tail -n 1 | sed -n 's/.* duration_ms=\([0-9.]*\).*/\1/p')
start=$(now_ns)
read -ra save_stat < <(sh -c 'ipvsadm -Sn >/dev/null; cat /proc/$$/stat')
save_ms=$(ms_since "$start")
save_ticks=$((save_stat[15] + save_stat[16]))
say "idle ${idle_s} s: ${idle_ticks} ticks (user $((u1 - u0)), sys $((s1 - s0))), ${resyncs} periodic resyncs (the last ${resync_ms} ms); one ipvsadm -Sn: ${save_ticks} ticks (user ${save_stat[15]}, sys ${save_stat[16]}), ${save_ms} ms"
hwm_end=$(kib VmHWM $agent)
rss_end=$(kib VmRSS $agent)
say "agent at the end: peak ${hwm_end} KiB, resident now ${rss_end} KiB"
kill $agent
wait $agent || true
agent=

# --- ipvsadm -R of the same rules ---------------------------------------------------
restore_ms=0
if [[ ${BENCH_RESTORE:-1} == 1 ]]; then
	ipvsadm -Sn >rules
	ipvsadm -C
	start=$(now_ns)
	ipvsadm -R <rules
	restore_ms=$(ms_since "$start")
	say "ipvsadm -R of $(wc -l <rules) lines: ${restore_ms} ms"
fi

printf '{"source":"kubernetes","services":%d,"endpoints_per_service":%d,' "$services" "$endpoints"
printf '"virtual_servers":%d,"real_servers":%d,"first_sync_ms":%d,' \
	"$virtual_servers" "$real_servers" "$first_sync_ms"
printf '"peak_rss_kib_first_sync":%d,"rss_kib_first_sync":%d,' "$hwm_first" "$rss_first"
printf '"peak_rss_kib_later":%d,"rss_kib_later":%d,"settle_s":%d,"peak_rss_kib_after_changes":%d,"rss_kib_after_changes":%d,"peak_rss_kib_end":%d,"rss_kib_end":%d,' \
	"$hwm_later" "$rss_later" "$settle" "$hwm_changes" "$rss_changes" "$hwm_end" "$rss_end"
printf '"cold_user_cpu_ms":%d,"cold_sys_cpu_ms":%d,"cold_user_vs_sys":%.2f,"ipvsadm_restore_ms":%d,"first_sync_vs_restore":%.3f,' \
	"$((cold_user * 1000 / tick))" "$((cold_sys * 1000 / tick))" \
	"$(awk -v u="$cold_user" -v s="$cold_sys" 'BEGIN {print (s > 0) ? u / s : 0}')" \
	"$restore_ms" "$(awk -v a="$first_sync_ms" -v b="$restore_ms" 'BEGIN {print (b > 0) ? a / b : 0}')"
printf '"changes":%d,"change_p50_ms":%d,"change_p99_ms":%d,"change_logged_p50_ms":%s,"change_logged_p99_ms":%s,"change_sync_p50_ms":%s,"change_sync_p99_ms":%s,' \
	"$changes" "$p50_ms" "$p99_ms" "${logged_p50_ms:-null}" "${logged_p99_ms:-null}" "${sync_p50_ms:-null}" "${sync_p99_ms:-null}"
printf '"idle_s":%d,"idle_cpu_ms_per_minute":%d,"idle_resyncs":%d,"resync_ms":%s,"resync_cpu_ms":%s,"ipvsadm_save_cpu_ms":%d,"ipvsadm_save_ms":%d}\n' \
	"$idle_s" "$((idle_ticks * 60000 / tick / idle_s))" "$resyncs" "${resync_ms:-null}" \
	"$( ((resyncs > 0)) && echo $((idle_ticks * 1000 / tick / resyncs)) || echo null)" \
	"$((save_ticks * 1000 / tick))" "$save_ms"
