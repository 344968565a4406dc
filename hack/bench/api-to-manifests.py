#!/usr/bin/env python3
"""Writes what a list/watch API server serves as manifests, for benchmarks
of the directory source with realistic objects (managed fields, last-applied
annotations), as `kubectl get -o yaml` would show them.

    api-to-manifests.py URL OUT split    one file per object: OUT/<kind>-<ns>-<name>.yaml
    api-to-manifests.py URL OUT single   every object in OUT/cluster.yaml,
                                         one YAML document per object

URL is the server (kube-ipvs-testapi's, e.g. http://127.0.0.1:6443). Needs
PyYAML.
"""

import json
import os
import sys
import urllib.request

import yaml

RESOURCES = [
    ("Node", "api/v1/nodes"),
    ("Service", "api/v1/services"),
    ("EndpointSlice", "apis/discovery.k8s.io/v1/endpointslices"),
]

Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def items(url, kind, path):
    with urllib.request.urlopen(f"{url}/{path}") as response:
        listing = json.load(response)
    api_version = listing.get("apiVersion", "v1")
    for item in listing["items"]:
        item.setdefault("kind", kind)
        item.setdefault("apiVersion", api_version)
        yield item


def main():
    if len(sys.argv) != 4 or sys.argv[3] not in ("split", "single"):
        sys.exit(__doc__)
    url, out, mode = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]
    os.makedirs(out, exist_ok=True)
    single = open(os.path.join(out, "cluster.yaml"), "w") if mode == "single" else None
    count = 0
    for kind, path in RESOURCES:
        for item in items(url, kind, path):
            text = yaml.dump(item, Dumper=Dumper, default_flow_style=False)
            if single:
                single.write("---\n" + text)
            else:
                meta = item["metadata"]
                name = "-".join(
                    p for p in (kind.lower(), meta.get("namespace"), meta["name"]) if p
                )
                with open(os.path.join(out, name + ".yaml"), "w") as f:
                    f.write(text)
            count += 1
    if single:
        single.close()
    print(f"{count} objects written to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
