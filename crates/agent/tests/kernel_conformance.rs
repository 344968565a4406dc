//! kube-proxy conformance with real traffic, in the VM: each case drives
//! the agent (`kube-ipvs run --from-dir`) with manifests, sends traffic from
//! a client outside the node (and from pods on it where the case is about
//! pods), and asserts what the backend saw: which pod answered and the
//! client address it saw. Each case's doc comment names the kube-proxy
//! function it mirrors. Run as root in the VM, one test at a time
//! (`hack/test` does).
//!
//! - `lab`: the network namespaces and the pods' servers.
//! - `manifests`: Services and EndpointSlices as the cases need them.
//! - `beside`: beside kube-proxy and the node's own services
//!   (`--service-proxy-name`, node addresses as Service IPs, iptables
//!   policies, UDP conntrack).
//! - `local`: `Local` traffic policies, health check node ports, node
//!   health and topology hints.

#[path = "kernel_conformance/beside.rs"]
mod beside;
#[path = "kernel_conformance/lab.rs"]
#[allow(dead_code, reason = "each case uses a part of the lab")]
mod lab;
#[path = "kernel_conformance/local.rs"]
mod local;
#[path = "kernel_conformance/manifests.rs"]
mod manifests;
#[path = "kernel_agent/support.rs"]
#[allow(dead_code, reason = "shared with the agent's kernel tests")]
mod support;
