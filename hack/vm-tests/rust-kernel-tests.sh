#!/usr/bin/env bash
# Runs, inside the VM, every Rust kernel test binary copied to /work: each
# one's #[ignore]d tests, one at a time (they share the kernel's IPVS table).
# KERNEL_TEST_ARGS (passed in with VM_PASS_ENV) narrows them, e.g. to a name.
set -uo pipefail
status=0
for bin in /work/kernel*; do
	[[ -x $bin ]] || continue
	echo "--- $(basename "$bin")"
	ipvsadm -C
	# shellcheck disable=SC2086 # a list of arguments
	"$bin" --ignored --test-threads=1 ${KERNEL_TEST_ARGS:-} || status=1
done
exit $status
