#!/usr/bin/env bash
# Guest half of `hack/bench-memory-kube --from-dir`: the agent's resident
# memory on one manifest file (/work/cluster.yaml, every object a document),
# for `run --once` and for the watching agent after its first sync, and the
# time from a one-line edit of the file (`sed -i`) until the kernel shows
# it. Prints one JSON line (everything else goes to stderr).
# Environment: BENCH_VIP (the changed Service's cluster IP), BENCH_OLD and
# BENCH_NEW (its first endpoint's address before and after the edit).
set -euo pipefail
cd /work
settle=${BENCH_SETTLE:-15}

say() { echo "bench: $*" >&2; }
now_ns() { date +%s%N; }
ms_since() { echo $((($(now_ns) - $1) / 1000000)); }
kib() { sed -n "s/^$1:[[:space:]]*\([0-9]*\) kB/\1/p" "/proc/$2/status"; }

ip link set lo up
mkdir -p /tmp/m
cp cluster.yaml /tmp/m/
size=$(stat -c %s /tmp/m/cluster.yaml)
flags=(--from-dir /tmp/m --hostname-override node-0 --no-firewall --healthz-bind-address '')

start=$(now_ns)
# One malloc arena, as the image sets it (Dockerfile).
MALLOC_ARENA_MAX=1 kube-ipvs run "${flags[@]}" --metrics-bind-address '' --once >once.json 2>once.err &
once=$!
once_hwm=0
while hwm=$(kib VmHWM $once 2>/dev/null) && [[ -n $hwm ]]; do
	once_hwm=$hwm
	sleep 0.1
done
wait $once || {
	cat once.err >&2
	exit 1
}
once_ms=$(ms_since "$start")
say "run --once: ${once_ms} ms, peak ${once_hwm} KiB: $(cat once.json)"
ipvsadm -C

start=$(now_ns)
MALLOC_ARENA_MAX=1 kube-ipvs run "${flags[@]}" --metrics-bind-address 127.0.0.1:10249 >agent.log 2>&1 &
agent=$!
trap 'kill $agent 2>/dev/null || true' EXIT
until grep -q 'sync="full"\|sync=full' agent.log; do
	kill -0 $agent 2>/dev/null || {
		cat agent.log >&2
		exit 1
	}
	sleep 0.2
done
first_sync_ms=$(ms_since "$start")
hwm_first=$(kib VmHWM $agent)
rss_first=$(kib VmRSS $agent)
say "watching agent: first sync after ${first_sync_ms} ms, peak ${hwm_first} KiB"
sleep "$settle"
rss_settled=$(kib VmRSS $agent)

vip="$BENCH_VIP:80"
ipvsadm -Ln -t "$vip" | grep -q "$BENCH_OLD:8080" || {
	say "$BENCH_OLD not behind $vip before the edit"
	exit 1
}
start=$(now_ns)
sed -i "s/- $BENCH_OLD\$/- $BENCH_NEW/" /tmp/m/cluster.yaml
until ipvsadm -Ln -t "$vip" | grep -q "$BENCH_NEW:8080"; do
	if (($(ms_since "$start") > 600000)); then
		say "the edit never reached the kernel"
		cat agent.log >&2
		exit 1
	fi
	sleep 0.1
done
edit_ms=$(ms_since "$start")
sleep 1
hwm_after_edit=$(kib VmHWM $agent)
rss_after_edit=$(kib VmRSS $agent)
edit_line=$(grep -m1 'sync="incremental"\|sync=incremental' agent.log || true)
say "edit: ${edit_ms} ms to the kernel; $edit_line"

printf '{"source":"manifest-file","file_bytes":%d,"services":%d,"endpoints_per_service":%d,' \
	"$size" "${BENCH_SERVICES:-0}" "${BENCH_ENDPOINTS:-0}"
printf '"run_once_ms":%d,"run_once_peak_rss_kib":%d,' "$once_ms" "$once_hwm"
printf '"first_sync_ms":%d,"peak_rss_kib_first_sync":%d,"rss_kib_first_sync":%d,' \
	"$first_sync_ms" "$hwm_first" "$rss_first"
printf '"rss_kib_settled":%d,"settle_s":%d,' "$rss_settled" "$settle"
printf '"edit_to_kernel_ms":%d,"peak_rss_kib_after_edit":%d,"rss_kib_after_edit":%d}\n' \
	"$edit_ms" "$hwm_after_edit" "$rss_after_edit"
