#!/usr/bin/env bash
# Runs, inside the VM, every Rust kernel test binary copied to /work: each
# one's #[ignore]d tests, one at a time (they share the kernel's IPVS table).
set -uo pipefail
status=0
for bin in /work/kernel*; do
	[[ -x $bin ]] || continue
	echo "--- $(basename "$bin")"
	ipvsadm -C
	"$bin" --ignored --test-threads=1 || status=1
done
exit $status
