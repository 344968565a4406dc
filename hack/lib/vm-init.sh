#!/bin/bash
# /init of the hack/vm-run guest: runs as PID 1 straight out of the initramfs.
#
# Channels (see hack/vm-run for the host side):
#   /dev/console = ttyS0  kernel log and this file's diagnostics -> host log file
#   /dev/ttyS1            the script's stdout+stderr             -> vm-run's stdout
#   /dev/ttyS2            "EXIT=<status>" and timing lines       -> parsed by vm-run
# Keeping the exit status on its own port means script output can never be
# mistaken for the marker, and nothing has to be filtered out of the stream.
#
# No `set -e`: PID 1 must always reach the end, report a status and power off
# (if it died, the kernel would panic and vm-run could only say "no status").
set -u

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/libexec/busybox
export HOME=/root TMPDIR=/tmp LANG=C.UTF-8
umask 022

out=/dev/ttyS1
status=/dev/ttyS2
uptime_s() { local u _; read -r u _ </proc/uptime; echo "$u"; }
say() { echo "vm-init: [$(uptime_s 2>/dev/null)] $*"; }  # -> console log

# Busybox is called by full name so that nothing here depends on PATH order.
bb=/bin/busybox
$bb mount -t proc -o nosuid,nodev,noexec proc /proc
$bb mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
$bb mount -t devtmpfs -o mode=0755,nosuid devtmpfs /dev
mkdir -p /dev/pts /dev/shm
$bb mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
$bb mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
$bb mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
$bb mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
# devtmpfs lacks these; bash's process substitution and `>/dev/stderr` need them.
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
# `ip netns` keeps its bind mounts here (/var/run is a symlink to /run).
mkdir -p /run/netns /run/lock
$bb hostname vm
say "mounted filesystems"

# Raw mode: no \n -> \r\n translation, so the host sees the bytes as written.
stty -F "$out" raw -echo 2>/dev/null || say "stty $out failed"
stty -F "$status" raw -echo 2>/dev/null || say "stty $status failed"

# Modules listed by vm-run at image build time, in load order. modprobe
# resolves dependencies and softdeps (libcrc32c -> crc32c) from modules.dep,
# which vm-run generated with depmod for exactly the modules in the image.
if [[ -r /etc/vm-run/modules ]]; then
	mapfile -t modules </etc/vm-run/modules
	if ! modprobe -a "${modules[@]}" 2>/dev/null; then
		# Find out which ones failed, and tell the script's reader.
		for m in "${modules[@]}"; do
			if ! err=$(modprobe "$m" 2>&1); then
				echo "vm-run: warning: failed to load kernel module $m: $err" >"$out"
			fi
		done
	fi
fi
say "loaded modules"

# Per-run settings written by vm-run: VM_RUN_SCRIPT and passed-through env.
# shellcheck disable=SC1091
[[ -r /etc/vm-run/run.env ]] && . /etc/vm-run/run.env
echo "BOOT=$(uptime_s)" >"$status"

rc=127
if [[ -n "${VM_RUN_SCRIPT:-}" && -f "/work/$VM_RUN_SCRIPT" ]]; then
	say "running /work/$VM_RUN_SCRIPT"
	cd /work && {
		VM_RUN=1 bash "/work/$VM_RUN_SCRIPT" </dev/null >"$out" 2>&1
		rc=$?
	}
else
	echo "vm-run: no script found in the guest (VM_RUN_SCRIPT=${VM_RUN_SCRIPT:-})" >"$out"
fi
say "script exited with $rc"

# tcsetattr(TCSADRAIN) (what stty does) returns only once the UART has sent
# everything written so far; powering off before that could lose output tail.
stty -F "$out" raw 2>/dev/null
echo "DONE=$(uptime_s)" >"$status"
echo "EXIT=$rc" >"$status"
stty -F "$status" raw 2>/dev/null

# ACPI power-off makes qemu exit; reboot is the fallback (qemu runs with
# -no-reboot, so a reset exits too).
$bb poweroff -f
sleep 1
$bb reboot -f
