#!/bin/bash
# Guest script checking what hack/vm-run promises to the scripts it runs:
#
#   hack/vm-run hack/vm-smoke.sh [PATH...]
#
# Prints one "ok"/"FAIL"/"skip" line per check and a closing
# "N passed, N failed" line; exits 1 if anything failed.
# Everything here happens inside the VM, which has no network interface:
# the addresses below never leave it.
set -uo pipefail

passed=0 failed=0
ok() {
	echo "ok   $*"
	passed=$((passed + 1))
}
fail() {
	echo "FAIL $*"
	failed=$((failed + 1))
}
skip() { echo "skip $*"; }
# check DESCRIPTION COMMAND...: runs COMMAND, output shown only on failure.
check() {
	local what=$1 out
	shift
	if out=$("$@" 2>&1); then
		ok "$what"
	else
		fail "$what"
		printf '%s\n' "$out" | sed 's/^/     | /'
	fi
}

echo "kernel $(uname -r), $(nproc) cpu(s), $(awk '/MemTotal/ { print $2 " kB" }' /proc/meminfo)"

# --- starting state ---------------------------------------------------------------
links=$(ip -o link show | awk -F': ' '{ print $2 }' | tr '\n' ' ')
if [[ $links == "lo " ]] && ip -o link show lo | grep -q 'state DOWN'; then
	ok "only lo exists, and it is down"
else
	fail "only lo exists, and it is down (links: $links)"
	ip -o link show | sed 's/^/     | /'
fi
check "working directory is /work" test "$PWD" = /work
check "the script is at /work/vm-smoke.sh" test -f /work/vm-smoke.sh
echo "/work holds: $(cd /work && ls -A | tr '\n' ' ')"
check "VM_RUN=1 is set" test "${VM_RUN:-}" = 1
check "/proc /sys /dev /run /tmp are mounted" \
	bash -c 'for m in /proc /sys /dev /run /tmp; do grep -q " $m " /proc/mounts || { echo "no $m"; exit 1; }; done'
check "/var/run is /run" test "$(readlink -f /var/run)" = /run

# --- kernel modules -----------------------------------------------------------------
required=(ip_vs ip_vs_rr ip_vs_wrr ip_vs_lc ip_vs_wlc ip_vs_lblc ip_vs_lblcr ip_vs_dh
	ip_vs_sh ip_vs_sed ip_vs_nq ip_vs_mh ip_vs_fo ip_vs_ovf ip_vs_twos
	dummy veth nf_conntrack nf_defrag_ipv4 nf_defrag_ipv6 libcrc32c crc32c_generic
	sctp nfnetlink nf_tables nf_nat nf_conntrack_netlink nft_ct nft_chain_nat nft_masq
	nft_reject nft_reject_inet nft_fib nft_fib_inet)
missing=()
for m in "${required[@]}"; do
	grep -q "^$m " /proc/modules && continue
	# ip_vs_twos only exists from Linux 6.7 on.
	if ! modinfo -n "$m" >/dev/null 2>&1; then
		skip "module $m: not in kernel $(uname -r)"
		continue
	fi
	missing+=("$m")
done
if ((${#missing[@]} == 0)); then
	ok "modules loaded: ip_vs + every scheduler, dummy, veth, nf_conntrack, sctp, nf_tables"
else
	fail "modules not loaded: ${missing[*]}"
fi
# Every scheduler this kernel has, whatever its name, must be loaded.
while read -r f; do
	m=$(basename "$f")
	m=${m%%.ko*}
	[[ $m == ip_vs_ftp || $m == ip_vs_pe_* ]] && continue
	grep -q "^$m " /proc/modules || fail "scheduler module $m is not loaded"
done < <(find "/lib/modules/$(uname -r)/kernel/net/netfilter/ipvs" -name 'ip_vs_*.ko*')
echo "$(wc -l </proc/modules) modules loaded"
check "modprobe loads more (xt_conntrack)" modprobe xt_conntrack

# --- programs ------------------------------------------------------------------------
tools=(bash busybox ip ipvsadm strace nft conntrack modprobe sed awk grep cut sort uniq
	seq sleep cp mkdir cat tail wc tr timeout head ps kill nc httpd env xargs)
absent=()
for t in "${tools[@]}"; do command -v "$t" >/dev/null || absent+=("$t"); done
if ((${#absent[@]} == 0)); then ok "programs on PATH"; else fail "not on PATH: ${absent[*]}"; fi
check "ip is iproute2's" bash -c 'ip -V | grep -q iproute2'
check "timeout runs iproute2's ip, not busybox's" bash -c 'timeout 5 ip -V | grep -q iproute2'
check "/bin/sh runs iproute2's ip" sh -c 'ip -V | grep -q iproute2'
if command -v kube-ipvs >/dev/null; then
	# Whatever its flags do, exec must work (126/127: not executable, missing library).
	kube-ipvs --help >/dev/null 2>&1
	rc=$?
	if ((rc != 126 && rc != 127)); then
		ok "kube-ipvs is on PATH and runs"
	else
		fail "kube-ipvs does not run (status $rc)"
	fi
else
	skip "kube-ipvs is not on PATH (vm-run said why)"
fi

# --- ipvsadm ---------------------------------------------------------------------------
if out=$(ipvsadm -A -t 10.0.0.1:80 -s rr 2>&1 && ipvsadm -Sn 2>&1) &&
	grep -q -- '-A -t 10.0.0.1:80 -s rr' <<<"$out"; then
	ok "ipvsadm -A -t 10.0.0.1:80 -s rr && ipvsadm -Sn"
else
	fail "ipvsadm -A -t 10.0.0.1:80 -s rr && ipvsadm -Sn"
	printf '%s\n' "$out" | sed 's/^/     | /'
fi
ipvsadm -C
check "strace captures ipvsadm's netlink traffic" \
	bash -c 'strace -f -e trace=sendmsg,sendto -o /tmp/ipvsadm.strace ipvsadm -Ln >/dev/null &&
		grep -q sendmsg /tmp/ipvsadm.strace'

# --- interfaces, namespaces, a web server ---------------------------------------------
check "dummy interface kube-ipvs0" ip link add kube-ipvs0 type dummy
ip link set lo up
check "netns with a veth pair" bash -c '
	ip netns add backend &&
	ip link add veth-host type veth peer name veth-be &&
	ip link set veth-be netns backend &&
	ip addr add 10.200.0.1/24 dev veth-host && ip link set veth-host up &&
	ip -n backend addr add 10.200.0.2/24 dev veth-be &&
	ip -n backend link set veth-be up && ip -n backend link set lo up &&
	ip -n backend route add default via 10.200.0.1'
mkdir -p /tmp/www
echo "hello from the backend namespace" >/tmp/www/index.html
check "busybox httpd in the netns" ip netns exec backend busybox httpd -p 80 -h /tmp/www
fetch() { # fetch ADDR PORT -> HTTP response on stdout
	printf 'GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n' | timeout 10 nc "$1" "$2"
}
sleep 0.2
if fetch 10.200.0.2 80 | grep -q "hello from the backend"; then
	ok "nc fetches the page from the root namespace"
else
	fail "nc fetches the page from the root namespace"
fi
# An IPVS virtual service on the dummy interface, NAT to the backend: the
# path kube-ipvs sets up for a ClusterIP service.
if ip addr add 10.96.0.10/32 dev kube-ipvs0 &&
	ipvsadm -A -t 10.96.0.10:80 -s rr &&
	ipvsadm -a -t 10.96.0.10:80 -r 10.200.0.2:80 -m &&
	fetch 10.96.0.10 80 | grep -q "hello from the backend"; then
	ok "IPVS forwards 10.96.0.10:80 to the backend"
else
	fail "IPVS forwards 10.96.0.10:80 to the backend"
	ipvsadm -Ln | sed 's/^/     | /'
fi
ipvsadm -C

# --- nftables, conntrack ------------------------------------------------------------
check "nft list ruleset" nft list ruleset
check "nft nat table with masquerade (modules autoload)" bash -c '
	nft add table ip smoke &&
	nft "add chain ip smoke post { type nat hook postrouting priority 100; }" &&
	nft add rule ip smoke post oifname veth-host masquerade &&
	nft list table ip smoke | grep -q masquerade &&
	nft delete table ip smoke'
check "conntrack -L" conntrack -L

echo "$passed passed, $failed failed"
((failed == 0))
