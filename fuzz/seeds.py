#!/usr/bin/env python3
"""Writes the binary seed corpora under fuzz/corpus/ (hack/fuzz runs on them).

  ipvs_genl   the captured ipvsadm and kernel messages of
              crates/netlink/src/packet/tests/captures.rs, each behind a
              netlink header (the captures are the payload after it)
  conntrack   ctnetlink dump datagrams built like the kernel's: one
              IPCTNL_MSG_CT_NEW per entry (IPv4 and IPv6, with a zone),
              then NLMSG_DONE
  rtnetlink   this machine's kernel's RTM_NEWLINK and RTM_NEWADDR dump
              replies (rerunning it on another machine gives other bytes)

The text corpora (duration, cidr, kubeproxy_config) are written by hand; the
manifest target reads manifests/examples. Inputs that once crashed a target
stay in its corpus beside the seeds (conntrack/nftables-newset-crash,
duration/beyond-go-range and duration/overflow), and in the owning crate's
unit tests.
"""
import os
import re
import socket
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
CAPTURES = os.path.join(ROOT, "crates/netlink/src/packet/tests/captures.rs")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def nlmsg(msg_type, payload, flags=0, seq=1):
    return struct.pack("=IHHII", 16 + len(payload), msg_type, flags, seq, 0) + payload


def align(b):
    return b + b"\0" * (-len(b) % 4)


def nla(kind, value, nested=False):
    return align(struct.pack("=HH", 4 + len(value), kind | (0x8000 if nested else 0)) + value)


def ipvs_genl():
    text = open(CAPTURES).read()
    consts = {m[0]: m[1] for m in re.findall(r'const (\w+): &str = "([^"]*)"', text)}

    def spliced(value, env):
        return re.sub(r"\{(\w+)\}", lambda m: env.get(m.group(1), m.group(0)), value)

    values = list(consts.values())
    # Within each test, `let name = "..."` or `format!("...")` with the
    # names before it spliced in, and the strings passed to hex() directly.
    for block in text.split("\nfn ")[1:]:
        env = dict(consts)
        for name, value in re.findall(r'let (\w+) = (?:format!\(\s*)?"([^"]*)"', block):
            env[name] = spliced(value, env)
            values.append(env[name])
        values.extend(spliced(v, env) for v in re.findall(r'hex\(&format!\("([^"]*)"', block))
    n = 0
    for value in values:
        words = "".join(value.split())
        if not re.fullmatch(r"(?:[0-9a-f]{2})+", words):
            continue
        raw = bytes.fromhex(words)
        if len(raw) < 4 or raw[1] != 1:  # the genl header: cmd, version 1
            continue
        write("ipvs_genl", f"capture-{n:02}", nlmsg(0x20, raw, flags=2))
        n += 1
    return n


def ct_tuple(kind, family, src, dst, proto, sport, dport):
    if family == socket.AF_INET:
        ip = nla(1, socket.inet_pton(family, src)) + nla(2, socket.inet_pton(family, dst))
    else:
        ip = nla(3, socket.inet_pton(family, src)) + nla(4, socket.inet_pton(family, dst))
    ports = nla(1, bytes([proto])) + nla(2, struct.pack(">H", sport)) + nla(3, struct.pack(">H", dport))
    return nla(kind, nla(1, ip, True) + nla(2, ports, True), True)


def ct_new(family, orig, reply, zone=None):
    attrs = ct_tuple(1, family, *orig) + ct_tuple(2, family, *reply)
    attrs += nla(3, struct.pack(">I", 0x188))  # CTA_STATUS
    attrs += nla(7, struct.pack(">I", 29))  # CTA_TIMEOUT
    if zone is not None:
        attrs += nla(18, struct.pack(">H", zone))  # CTA_ZONE
    nfgen = struct.pack("=BBH", family, 0, 0)
    return nlmsg((1 << 8) | 0, nfgen + attrs, flags=2)  # IPCTNL_MSG_CT_NEW, NLM_F_MULTI


def conntrack():
    done = nlmsg(3, struct.pack("=i", 0), flags=2)
    v4 = ct_new(socket.AF_INET, ("10.244.2.7", "10.96.0.10", 17, 40000, 53),
                ("10.244.1.5", "10.244.2.7", 17, 5353, 40000))
    v4z = ct_new(socket.AF_INET, ("10.0.0.1", "10.0.0.2", 17, 1000, 53),
                 ("10.0.0.3", "10.0.0.1", 17, 53, 1000), zone=7)
    v4tcp = ct_new(socket.AF_INET, ("192.168.1.2", "10.96.0.1", 6, 51000, 443),
                   ("192.168.1.10", "192.168.1.2", 6, 6443, 51000))
    v6 = ct_new(socket.AF_INET6, ("fd00::2", "fd00:96::a", 17, 40000, 53),
                ("fd00:244::5", "fd00::2", 17, 5353, 40000))
    write("conntrack", "udp4", v4 + done)
    write("conntrack", "udp4-zone-tcp4", v4z + v4tcp + done)
    write("conntrack", "udp6", v6 + done)
    write("conntrack", "done", done)
    return 4


def rtnetlink():
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    n = 0
    for name, msg_type, header in (("link", 18, struct.pack("=BxHiII", 0, 0, 0, 0, 0)),
                                   ("addr", 22, struct.pack("=BBBBI", 0, 0, 0, 0, 0))):
        s.send(nlmsg(msg_type, header, flags=0x301))  # NLM_F_REQUEST | NLM_F_DUMP
        done = False
        while not done:
            data = s.recv(65536)
            while data:
                length, kind = struct.unpack_from("=IH", data)
                if kind == 3:
                    done = True
                    break
                write("rtnetlink", f"{name}-{n:02}", data[:length])
                n += 1
                data = data[(length + 3) & ~3:]
    return n


if __name__ == "__main__":
    print("ipvs_genl", ipvs_genl(), "conntrack", conntrack(), "rtnetlink", rtnetlink(), file=sys.stderr)
