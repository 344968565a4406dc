#!/usr/bin/env bash
# The guest half of hack/demo; hack/vm-run runs it in the VM with the
# examples at /work/examples. It builds a small node: a bridge cni0 with one
# network namespace per endpoint ("pod") of six example Services, each
# running busybox httpd that answers with its own name, and a namespace
# "client" outside the node on 192.168.0.0/24 (the node is 192.168.0.10,
# as the example Node says). Then it runs the agent on the examples and
# sends traffic through the virtual IPs. Exits non-zero if any check fails.
set -euo pipefail

examples=/work/examples
agent_log=/tmp/kube-ipvs.log
# NodePorts only on the node's 192.168.0.0/24 address (kube-proxy's flag),
# not on the bridge's, and ingress-nginx's TCP and UDP services
# (examples/ingress-nginx-tcp-services.yaml): the same flags go to `plan`
# for the comparison.
mapping=(--hostname-override node-1 --nodeport-addresses 192.168.0.0/24
	--tcp-services-configmap ingress-nginx/tcp-services
	--udp-services-configmap ingress-nginx/udp-services
	--publish-service ingress-nginx/ingress-nginx-controller)

step() { printf '\n==> %s\n' "$*"; }
fail() {
	echo "demo: FAILED: $*"
	if [[ -s $agent_log ]]; then
		echo "--- last lines of the agent's log"
		tail -n 20 "$agent_log"
	fi
	exit 1
}

# pod NAME ADDRESS PORT: a namespace on cni0 answering NAME over HTTP.
pod() {
	local name=$1 address=$2 port=$3
	ip netns add "$name"
	ip link add "veth-$name" type veth peer name eth0 netns "$name"
	ip link set "veth-$name" master cni0 up
	ip -n "$name" addr add "$address/16" dev eth0
	ip -n "$name" link set lo up
	ip -n "$name" link set eth0 up
	ip -n "$name" route add default via 10.244.0.1
	mkdir -p "/srv/$name"
	echo "$name" >"/srv/$name/index.html"
	ip netns exec "$name" busybox httpd -p "$port" -h "/srv/$name"
}

# get ADDRESS PORT: one HTTP request; prints the answer's body, or
# "no-answer".
get() {
	local body
	body=$(printf 'GET / HTTP/1.0\r\n\r\n' | timeout 5 busybox nc "$1" "$2" 2>/dev/null | tail -n 1) || true
	echo "${body:-no-answer}"
}

# requests N ADDRESS PORT [NETNS]: N requests; prints the answers, one a line.
requests() {
	local n=$1 address=$2 port=$3 netns=${4:-} i
	for ((i = 0; i < n; i++)); do
		if [[ -n $netns ]]; then
			ip netns exec "$netns" bash -c "$(declare -f get); get $address $port"
		else
			get "$address" "$port"
		fi
	done
}

# tally: "name xN" per distinct line of stdin.
tally() { sort | uniq -c | awk '{ printf "%s%s x%d", sep, $2, $1; sep = ", " } END { print "" }'; }

# wait_until SECONDS COMMAND...: retries every 0.2 s; false on timeout.
wait_until() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@"; do
		((SECONDS < deadline)) || return 1
		sleep 0.2
	done
}

healthy() {
	local answer
	answer=$(printf 'GET /healthz HTTP/1.0\r\n\r\n' | timeout 2 busybox nc 127.0.0.1 10256 2>/dev/null) || true
	[[ $answer == "HTTP/1."?" 200 "* ]]
}

# plan and dump tables without the connection counters and header lines.
normalize() { awk 'NR > 2 { if ($1 == "->") print "  ->", $2, $3, $4; else print }'; }

step "network: bridge cni0 (10.244.0.1/16) with 12 pods, client 192.168.0.100 -> node 192.168.0.10"
ip link set lo up
ip link add cni0 type bridge
ip addr add 10.244.0.1/16 dev cni0
ip link set cni0 up
pod web-1 10.244.1.10 8080
pod web-2 10.244.2.11 8080
pod web-3 10.244.3.12 8080
pod shop-1 10.244.1.20 8080
pod shop-2 10.244.2.21 8080
pod cart-1 10.244.1.40 8080
pod cart-2 10.244.2.41 8080
pod shard-1 10.244.1.60 9090
pod shard-2 10.244.2.61 9090
pod shard-3 10.244.3.62 9090
pod xyz-10000 10.244.1.130 10000
pod xyz-20000 10.244.2.131 20000
ip netns add client
ip link add ext0 type veth peer name eth0 netns client
ip addr add 192.168.0.10/24 dev ext0
ip link set ext0 up
ip -n client addr add 192.168.0.100/24 dev eth0
ip -n client link set lo up
ip -n client link set eth0 up
ip -n client route add default via 192.168.0.10
[[ $(get 10.244.1.10 8080) == web-1 ]] || fail "pod web-1 does not answer on 10.244.1.10:8080"

step "kube-ipvs run --from-dir examples ${mapping[*]}"
started=$SECONDS
kube-ipvs run --from-dir "$examples" "${mapping[@]}" --ipvs-min-sync-period 100ms \
	>"$agent_log" 2>&1 &
agent=$!
wait_until 60 healthy || fail "the agent did not report healthy on :10256/healthz within 60 s"
echo "healthy on :10256/healthz after $((SECONDS - started)) s; $(find "$examples" -name '*.yaml' | wc -l) manifest files"

step "kube-ipvs dump"
kube-ipvs dump

step "plan (desired, from the files) vs dump (the kernel)"
plan=$(kube-ipvs plan --from-dir "$examples" "${mapping[@]}" | normalize)
dump=$(kube-ipvs dump | normalize)
if [[ $plan != "$dump" ]]; then
	diff <(echo "$plan") <(echo "$dump") || true
	fail "plan and dump differ"
fi
echo "identical: $(grep -vc '^  ->' <<<"$plan") virtual servers, $(grep -c '^  ->' <<<"$plan") real servers"
echo "ipvsadm agrees: $(ipvsadm -Ln | grep -cE '^(TCP|UDP|SCTP)') virtual servers in ipvsadm -Ln"

step "web: ClusterIP 10.96.10.1:80, round robin; 9 requests from the node"
answers=$(requests 9 10.96.10.1 80)
echo "$answers" | tally
[[ $(echo "$answers" | tally) == "web-1 x3, web-2 x3, web-3 x3" ]] ||
	fail "round robin over web-1..3 expected"

step "shop: NodePort 192.168.0.10:30080; 4 requests from the client 192.168.0.100"
answers=$(requests 4 192.168.0.10 30080 client)
echo "$answers" | tally
[[ $(echo "$answers" | tally) == "shop-1 x2, shop-2 x2" ]] || fail "NodePort to shop-1 and shop-2 expected"

step "cart: sessionAffinity ClientIP (persistent 600); 6 requests from the node"
answers=$(requests 6 10.96.10.4 80)
echo "$answers" | tally
[[ $(echo "$answers" | sort -u | wc -l) == 1 && $answers == cart-* ]] ||
	fail "one cart backend for every request expected"

step "shard: scheduler mh (Maglev source hashing) by annotation; 6 requests from the node"
answers=$(requests 6 10.96.10.6 9090)
echo "$answers" | tally
[[ $(echo "$answers" | sort -u | wc -l) == 1 && $answers == shard-* ]] ||
	fail "one shard backend for every request expected"

step "tcp-services: ports 10000 and 20000 of one load-balancer IP (203.0.113.50), each to its own Service; 4 requests each from the client"
answers=$(
	requests 2 203.0.113.50 10000 client
	requests 2 192.168.0.10 31010 client
)
echo "$answers" | tally
[[ $(echo "$answers" | tally) == "xyz-10000 x4" ]] || fail "203.0.113.50:10000 and node port 31010 to xyz-10000 only expected"
answers=$(
	requests 2 203.0.113.50 20000 client
	requests 2 192.168.0.10 32010 client
)
echo "$answers" | tally
[[ $(echo "$answers" | tally) == "xyz-20000 x4" ]] || fail "203.0.113.50:20000 and node port 32010 to xyz-20000 only expected"

step "remove web-3 (10.244.3.12) from examples/clusterip-web.yaml"
edited=$EPOCHREALTIME
sed -i '/addresses: \[10.244.3.12\]/,/zone: zone-c/d' "$examples/clusterip-web.yaml"
gone() { ! ipvsadm -Ln -t 10.96.10.1:80 | grep -qE '10\.244\.3\.12:8080 +Masq +1 '; }
wait_until 30 gone || fail "10.244.3.12 still takes new connections 30 s later"
echo "in the kernel $(awk -v a="$edited" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s after the edit (ipvsadm -Ln -t 10.96.10.1:80):"
ipvsadm -Ln -t 10.96.10.1:80 | sed 's/ *$//'
echo "web-3 is at weight 0: it takes no new connections and is deleted once its"
echo "connections are gone or after --ipvs-graceful-period (30s)."
answers=$(requests 6 10.96.10.1 80)
echo "$answers" | tally
[[ $(echo "$answers" | tally) == "web-1 x3, web-2 x3" ]] || fail "only web-1 and web-2 expected"

step "metrics on :10249/metrics (kube-proxy's names and kube-ipvs's)"
printf 'GET /metrics HTTP/1.0\r\n\r\n' | timeout 5 busybox nc 127.0.0.1 10249 |
	grep -E '^(kubeproxy_sync_proxy_rules_(duration_seconds_count|endpoint_changes_total|service_changes_total)|kube_ipvs_(virtual|real)_servers) ' ||
	fail "no metrics on 127.0.0.1:10249/metrics"

step "stop the agent (the kernel keeps forwarding), then kube-ipvs cleanup"
kill -TERM "$agent"
wait "$agent" || true
answer=$(get 10.96.10.1 80)
[[ $answer == web-* ]] || fail "web stopped answering when the agent stopped"
echo "web still answers with the agent stopped: $answer"
kube-ipvs cleanup
echo "after cleanup: $(ipvsadm -Ln | grep -cE '^(TCP|UDP|SCTP)' || true) virtual servers, kube-ipvs0 $(ip link show kube-ipvs0 >/dev/null 2>&1 && echo present || echo gone)"

echo
echo "demo: OK: kube-ipvs programmed the examples into IPVS and real traffic went through them"
