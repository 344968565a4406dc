# syntax=docker/dockerfile:1
#
# kube-ipvs node agent image.
#
#   docker build -t ghcr.io/kube-ipvs/kube-ipvs:v0.1.0 .

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
# The cache mounts keep the registry and the target directory between
# builds; the binary is copied out of the target mount in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile dist -p kube-ipvs --locked \
 && install -D -m 0755 target/dist/kube-ipvs /out/kube-ipvs

# Same Debian release as the builder, so the binary finds the glibc it was
# linked against.
FROM debian:bookworm-slim
# modprobe (kmod) loads the IPVS modules from the host's /lib/modules;
# ipvsadm, ip, nft and conntrack show what is programmed on the node
# (`kubectl exec ... -- ipvsadm -Ln`); iptables (nft and legacy) adds the one
# FORWARD rule a node whose FORWARD policy is DROP needs.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates \
      conntrack \
      iproute2 \
      iptables \
      ipvsadm \
      kmod \
      nftables \
 && rm -rf /var/lib/apt/lists/*
COPY --from=builder /out/kube-ipvs /usr/local/bin/kube-ipvs
# One malloc arena: the source is read on another thread than the loop
# syncs on, and glibc's arena per thread kept a second heap's worth of
# freed list pages (first-sync peak at 10,000 Services x 10 endpoints,
# 81 MiB against 59 MiB with one arena; README, Performance).
ENV MALLOC_ARENA_MAX=1
# Root: the capabilities the DaemonSet adds (NET_ADMIN, SYS_MODULE, NET_RAW)
# are effective only for root, as Kubernetes sets no ambient capabilities.
USER 0:0
ENTRYPOINT ["kube-ipvs"]
CMD ["run"]
