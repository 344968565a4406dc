#!/usr/bin/env bash
# Guest half of hack/bench-memory-kube: serves a generated cluster with
# /work/kube-ipvs-testapi, runs the agent against it in watch mode, and
# prints one JSON line with the agent's resident memory after its first sync
# and a while later (everything else goes to stderr).
set -euo pipefail
cd /work
services=${BENCH_SERVICES:-10000}
endpoints=${BENCH_ENDPOINTS:-10}
settle=${BENCH_SETTLE:-15}

say() { echo "bench: $*" >&2; }
now_ns() { date +%s%N; }
kib() { sed -n "s/^$1:[[:space:]]*\([0-9]*\) kB/\1/p" "/proc/$2/status"; }

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
kube-ipvs run --kubeconfig kubeconfig --hostname-override node-0 --no-firewall \
	--metrics-bind-address 127.0.0.1:10249 --healthz-bind-address '' >agent.log 2>&1 &
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
say "agent peak ${hwm_first} KiB after the first sync, ${hwm_later} KiB ${settle} s later; test API server ${api_rss} KiB"

printf '{"source":"kubernetes","services":%d,"endpoints_per_service":%d,' "$services" "$endpoints"
printf '"virtual_servers":%d,"real_servers":%d,"first_sync_ms":%d,' \
	"$virtual_servers" "$real_servers" "$first_sync_ms"
printf '"peak_rss_kib_first_sync":%d,"rss_kib_first_sync":%d,' "$hwm_first" "$rss_first"
printf '"peak_rss_kib_later":%d,"rss_kib_later":%d,"settle_s":%d}\n' \
	"$hwm_later" "$rss_later" "$settle"
