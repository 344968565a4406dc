#!/usr/bin/env python3
"""Writes a synthetic cluster for hack/bench-sync as a manifest directory.

    cluster.py SERVICES ENDPOINTS OUT

OUT/cluster/node.yaml        the node (node-0)
OUT/cluster/svc-I.yaml       Service svc-I (ClusterIP 10.96.0.0+I, TCP 80)
                             and its EndpointSlice of ENDPOINTS ready
                             endpoints (10.0.0.0+I*ENDPOINTS+E, port 8080)
OUT/change/svc-K.yaml        the same file for K = SERVICES/2 with its first
                             endpoint moved to another address
OUT/change/bench.env         shell variables naming that change
"""

import ipaddress
import os
import sys

CLUSTER_IP_BASE = int(ipaddress.IPv4Address("10.96.0.0"))
ENDPOINT_BASE = int(ipaddress.IPv4Address("10.0.0.0"))
MOVED_BASE = int(ipaddress.IPv4Address("10.200.0.0"))

NODE = """apiVersion: v1
kind: Node
metadata:
  name: node-0
status:
  addresses:
    - type: InternalIP
      address: 192.168.0.10
"""


def addr(n):
    return str(ipaddress.IPv4Address(n))


def service(i, endpoints, moved=None):
    lines = [
        "apiVersion: v1",
        "kind: Service",
        "metadata:",
        f"  name: svc-{i}",
        f"  namespace: ns-{i % 100}",
        "spec:",
        "  type: ClusterIP",
        f"  clusterIP: {addr(CLUSTER_IP_BASE + i)}",
        "  ports:",
        "    - name: http",
        "      protocol: TCP",
        "      port: 80",
        "      targetPort: 8080",
        "---",
        "apiVersion: discovery.k8s.io/v1",
        "kind: EndpointSlice",
        "metadata:",
        f"  name: svc-{i}-abcde",
        f"  namespace: ns-{i % 100}",
        "  labels:",
        f"    kubernetes.io/service-name: svc-{i}",
        "addressType: IPv4",
        "ports:",
        "  - name: http",
        "    protocol: TCP",
        "    port: 8080",
        "endpoints:",
    ]
    for e in range(endpoints):
        n = ENDPOINT_BASE + i * endpoints + e
        if e == 0 and moved is not None:
            n = moved
        lines.append(f"  - addresses: [{addr(n)}]")
        lines.append("    conditions: {ready: true, serving: true, terminating: false}")
        lines.append(f"    nodeName: node-{n % 100}")
    return "\n".join(lines) + "\n"


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    services, endpoints, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    if not (1 <= services <= 60000 and 1 <= endpoints <= 100):
        sys.exit("need 1 <= SERVICES <= 60000 and 1 <= ENDPOINTS <= 100")
    cluster = os.path.join(out, "cluster")
    change = os.path.join(out, "change")
    os.makedirs(cluster)
    os.makedirs(change)
    with open(os.path.join(cluster, "node.yaml"), "w") as f:
        f.write(NODE)
    for i in range(services):
        with open(os.path.join(cluster, f"svc-{i}.yaml"), "w") as f:
            f.write(service(i, endpoints))
    k = services // 2
    with open(os.path.join(change, f"svc-{k}.yaml"), "w") as f:
        f.write(service(k, endpoints, moved=MOVED_BASE + k))
    with open(os.path.join(change, "bench.env"), "w") as f:
        f.write(f"SERVICES={services}\nENDPOINTS={endpoints}\n")
        f.write(f"CHANGED_FILE=svc-{k}.yaml\n")
        f.write(f"CHANGED_VIP={addr(CLUSTER_IP_BASE + k)}\n")
        f.write(f"OLD_ADDRESS={addr(ENDPOINT_BASE + k * endpoints)}\n")
        f.write(f"NEW_ADDRESS={addr(MOVED_BASE + k)}\n")


if __name__ == "__main__":
    main()
