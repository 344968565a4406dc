# Helpers for the VM suites (sourced by hack/vm-tests/*.sh inside the guest).

fails=0
passes=0

pass() {
	passes=$((passes + 1))
	echo "ok   $*"
}

fail() {
	fails=$((fails + 1))
	echo "FAIL $*"
}

# check DESCRIPTION COMMAND...: passes when the command succeeds.
check() {
	local what=$1
	shift
	if "$@"; then pass "$what"; else fail "$what"; fi
}

# summary: the closing line the CI reads, and the exit status.
summary() {
	echo "$passes passed, $fails failed"
	[[ $fails -eq 0 ]]
}

# backend N: a network namespace bN with a veth pair to the node, address
# 10.244.N.2/24 (node side 10.244.N.1), default route back through the node,
# and busybox httpd answering "bN" on port 80.
backend() {
	local n=$1
	ip netns add "b$n"
	ip link add "vb$n" type veth peer name eth0 netns "b$n"
	ip addr add "10.244.$n.1/24" dev "vb$n"
	ip link set "vb$n" up
	ip -n "b$n" addr add "10.244.$n.2/24" dev eth0
	ip -n "b$n" link set lo up
	ip -n "b$n" link set eth0 up
	ip -n "b$n" route add default via "10.244.$n.1"
	mkdir -p "/srv/b$n"
	echo "b$n" >"/srv/b$n/index.html"
	ip netns exec "b$n" busybox httpd -p 80 -h "/srv/b$n"
}

# get ADDRESS [PORT]: one HTTP request; prints the body's first line.
get() {
	printf 'GET / HTTP/1.0\r\n\r\n' | timeout 5 busybox nc "$1" "${2:-80}" 2>/dev/null | tail -n 1
}

# wait_for DESCRIPTION SECONDS COMMAND...: retries the command every 0.2 s.
wait_for() {
	local what=$1 limit=$2
	shift 2
	local deadline=$((SECONDS + limit))
	until "$@"; do
		if ((SECONDS >= deadline)); then
			fail "$what (not within ${limit}s)"
			return 1
		fi
		sleep 0.2
	done
	pass "$what"
}
