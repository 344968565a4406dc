#!/usr/bin/env bash
# Runs, inside the VM, every Rust kernel test binary copied to /work: each
# one's #[ignore]d tests, one at a time (they share the kernel's IPVS table).
# KERNEL_TEST_ARGS (passed in with VM_PASS_ENV) narrows them, e.g. to a name.
#
# Each binary starts from a clean network: the test binaries build their own
# namespaces, links and tables under fixed names, and one binary's leftovers
# must not be the next one's "File exists".
set -uo pipefail

clean() {
	pkill -x kube-ipvs 2>/dev/null
	ipvsadm -C
	local ns link
	for ns in $(ip netns list | cut -d' ' -f1); do
		ip netns pids "$ns" | xargs -r kill 2>/dev/null
		ip netns del "$ns"
	done
	for link in $(ip -o link show type veth | cut -d: -f2 | cut -d@ -f1); do
		ip link del "$link" 2>/dev/null
	done
	for link in $(ip -o link show type dummy | cut -d: -f2 | cut -d@ -f1); do
		ip link del "$link" 2>/dev/null
	done
	iptables-nft -w -P FORWARD ACCEPT 2>/dev/null
	nft flush ruleset 2>/dev/null
	return 0
}

status=0
for bin in /work/kernel*; do
	[[ -x $bin ]] || continue
	echo "--- $(basename "$bin")"
	clean
	# shellcheck disable=SC2086 # a list of arguments
	"$bin" --ignored --test-threads=1 ${KERNEL_TEST_ARGS:-} || status=1
done
exit $status
