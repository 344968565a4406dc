#!/usr/bin/env bash
# How the bytes in captures.rs were captured: run in the VM
# (hack/vm-run crates/netlink/src/packet/tests/capture.sh) on Debian's
# 6.1.0-56-amd64 kernel with ipvsadm v1.31. Each sendmsg/recvmsg line shows
# the decoded nlmsghdr, then the generic-netlink payload as \x.. bytes.
set -x
ip link set lo up
T="strace -f -e trace=sendmsg,recvmsg -xx -s 65535"
$T ipvsadm -A -t 10.0.0.1:80 -s rr
$T ipvsadm -E -t 10.0.0.1:80 -s wrr -p 300 -M 255.255.255.0
$T ipvsadm -a -t 10.0.0.1:80 -r 10.1.0.1:8080 -g -w 5
$T ipvsadm -e -t 10.0.0.1:80 -r 10.1.0.1:8080 -g -w 3 -x 100 -y 10
$T ipvsadm -A -u [2001:db8::1]:53 -s sh -b sh-port,sh-fallback -p 60 -M 64
$T ipvsadm -a -u [2001:db8::1]:53 -r [2001:db8::10]:53 -i -w 2
$T ipvsadm -A -f 7 -s mh -b mh-port
$T ipvsadm -Ln
$T ipvsadm -d -t 10.0.0.1:80 -r 10.1.0.1:8080
$T ipvsadm -D -t 10.0.0.1:80
$T ipvsadm --set 900 120 300
$T ipvsadm -L --timeout
$T ipvsadm -C
