#!/usr/bin/env bash
# The firewall's kernel tests (crates/agent/tests/kernel_firewall.rs) in the
# VM: masquerade, hairpin, closed VIP ports, source ranges, UDP conntrack
# clean-up, and the sync cost at 5,000 Services.
#
#   cargo test -p kube-ipvs --test kernel_firewall --no-run
#   hack/vm-run hack/vm-tests/firewall.sh target/debug/deps/kernel_firewall-<hash> \
#       [/lib/x86_64-linux-gnu/libgcc_s.so.1]
#
# The guest has the libraries of the kube-ipvs binary; without one, pass
# libgcc_s too (test binaries need it) and it is found in /work.
#
# Extra arguments in FIREWALL_TEST_ARGS go to the test binary (a test name
# to run only that one, for example).
set -euo pipefail

bin=$(find /work -maxdepth 1 -name 'kernel_firewall-*' -type f -perm -u+x | head -n1)
[[ -n $bin ]] || {
	echo "firewall.sh: pass the kernel_firewall test binary to vm-run" >&2
	exit 2
}
[[ ! -e /work/libgcc_s.so.1 ]] || export LD_LIBRARY_PATH=/work
echo "kernel $(uname -r), $(nft --version)"
# shellcheck disable=SC2086 # FIREWALL_TEST_ARGS is a list of arguments
"$bin" --ignored --test-threads=1 --nocapture ${FIREWALL_TEST_ARGS:-}
