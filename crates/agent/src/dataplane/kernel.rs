//! The kernel dataplane: IPVS over generic netlink and the dummy interface's
//! addresses over rtnetlink, through the netlink crate.
//!
//! The netlink crate's API is blocking. Each call is one batch or one dump,
//! milliseconds even at scale, and the loop has nothing else to do while it
//! waits for the kernel, so the calls run on the loop's task directly.

use std::collections::BTreeMap;
use std::fs;
use std::net::IpAddr;
use std::time::Duration;

use kube_ipvs_controller::{Observed, Op};
use kube_ipvs_netlink::{DumpedRealServer, Ipvs, Operation, Route, Stats, VirtualServerKey};

use super::{ApplyReport, Dataplane, DataplaneError, OperationFailure};

/// System settings applied once at start.
#[derive(Clone, Debug, Default)]
pub struct Setup {
    /// The dummy interface the virtual IPs are bound on.
    pub dummy_interface: String,
    /// `--ipvs-strict-arp`.
    pub strict_arp: bool,
    /// `--ipvs-tcp-timeout` (zero keeps the kernel's).
    pub tcp_timeout: Duration,
    /// `--ipvs-tcpfin-timeout` (zero keeps the kernel's).
    pub tcpfin_timeout: Duration,
    /// `--ipvs-udp-timeout` (zero keeps the kernel's).
    pub udp_timeout: Duration,
}

/// Why the kernel could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Opening a netlink socket or resolving the IPVS family failed (is
    /// the `ip_vs` module loaded, and do we have `CAP_NET_ADMIN`?).
    #[error("opening netlink")]
    Open(#[source] kube_ipvs_netlink::Error),
    /// Creating or finding the dummy interface failed.
    #[error("ensuring the dummy interface {0}")]
    Dummy(String, #[source] kube_ipvs_netlink::Error),
    /// Setting the IPVS timeouts failed.
    #[error("setting IPVS timeouts")]
    Timeouts(#[source] kube_ipvs_netlink::Error),
    /// Writing a sysctl failed.
    #[error("writing sysctl {0}")]
    Sysctl(String, #[source] std::io::Error),
}

/// The kernel's IPVS table and the dummy interface.
pub struct KernelDataplane {
    ipvs: Ipvs,
    route: Route,
    dummy: String,
    ifindex: u32,
}

fn sysctl(path: &str, value: &str) -> Result<(), SetupError> {
    let file = format!("/proc/sys/{path}");
    if fs::read_to_string(&file).is_ok_and(|v| v.trim() == value) {
        return Ok(());
    }
    fs::write(&file, value).map_err(|e| SetupError::Sysctl(path.to_owned(), e))
}

/// Sets the kernel up for the agent: sysctls, IPVS timeouts and the dummy
/// interface; returns the dataplane over it.
pub fn setup(settings: &Setup) -> Result<KernelDataplane, SetupError> {
    // conntrack=1 lets netfilter see IPVS connections (masquerade, filters);
    // expire_nodest_conn drops packets of connections whose real server is
    // gone instead of blackholing them; expire_quiescent_template lets
    // persistent clients move off a real server at weight 0.
    sysctl("net/ipv4/vs/conntrack", "1")?;
    sysctl("net/ipv4/vs/expire_nodest_conn", "1")?;
    sysctl("net/ipv4/vs/expire_quiescent_template", "1")?;
    sysctl("net/ipv4/ip_forward", "1")?;
    if let Some(mode) = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .and_then(|release| conn_reuse_mode(&release))
    {
        sysctl("net/ipv4/vs/conn_reuse_mode", mode)?;
    }
    if settings.strict_arp {
        sysctl("net/ipv4/conf/all/arp_ignore", "1")?;
        sysctl("net/ipv4/conf/all/arp_announce", "2")?;
    }
    let mut ipvs = Ipvs::open().map_err(SetupError::Open)?;
    if !settings.tcp_timeout.is_zero()
        || !settings.tcpfin_timeout.is_zero()
        || !settings.udp_timeout.is_zero()
    {
        let secs = |d: Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
        let timeouts = kube_ipvs_netlink::Timeouts {
            tcp: secs(settings.tcp_timeout),
            tcp_fin: secs(settings.tcpfin_timeout),
            udp: secs(settings.udp_timeout),
        };
        ipvs.set_timeouts(&timeouts).map_err(SetupError::Timeouts)?;
    }
    let mut route = Route::open().map_err(SetupError::Open)?;
    let ifindex = route
        .ensure_dummy(&settings.dummy_interface)
        .map_err(|e| SetupError::Dummy(settings.dummy_interface.clone(), e))?;
    Ok(KernelDataplane {
        ipvs,
        route,
        dummy: settings.dummy_interface.clone(),
        ifindex,
    })
}

/// The `conn_reuse_mode` kube-proxy sets for a kernel release, if any
/// (`pkg/proxy/ipvs/proxier.go` `NewProxier`): 0 from 4.1 up to 5.9, where
/// mode 1 with conntrack delayed a reused connection's first SYN by a
/// second; from 5.9 on the kernel's is left as it is.
pub fn conn_reuse_mode(release: &str) -> Option<&'static str> {
    let mut parts = release.trim().split(['.', '-']);
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts.next()?.parse().ok()?;
    ((4, 1) <= (major, minor) && (major, minor) < (5, 9)).then_some("0")
}

impl KernelDataplane {
    /// A dataplane over an existing dummy interface, for commands that only
    /// read (`dump`) or clean up; `None` when the interface does not exist.
    pub fn open_existing(dummy: &str) -> Result<(Self, bool), SetupError> {
        let ipvs = Ipvs::open().map_err(SetupError::Open)?;
        let mut route = Route::open().map_err(SetupError::Open)?;
        let link = route
            .link(dummy)
            .map_err(|e| SetupError::Dummy(dummy.to_owned(), e))?;
        let exists = link.is_some();
        Ok((
            KernelDataplane {
                ipvs,
                route,
                dummy: dummy.to_owned(),
                ifindex: link.map_or(0, |l| l.index),
            },
            exists,
        ))
    }

    /// The IPVS handle.
    pub fn ipvs(&mut self) -> &mut Ipvs {
        &mut self.ipvs
    }

    /// The rtnetlink handle.
    pub fn route(&mut self) -> &mut Route {
        &mut self.route
    }

    /// One dump with the services' traffic counters too (for `dump --stats`).
    pub fn observe_with_stats(
        &mut self,
    ) -> Result<(Observed, BTreeMap<VirtualServerKey, Stats>), DataplaneError> {
        let dump = self.ipvs.dump_all().map_err(DataplaneError::DumpIpvs)?;
        let stats = dump
            .iter()
            .map(|d| (d.service.service.key, d.service.stats))
            .collect();
        let addresses = if self.ifindex == 0 {
            Vec::new()
        } else {
            self.route
                .addresses(self.ifindex)
                .map_err(DataplaneError::DumpAddresses)?
                .into_iter()
                // The kernel gives the link an IPv6 link-local address each
                // time it comes up; it is not a Service's, and not ours to remove.
                .filter(|a| !is_ipv6_link_local(a))
                .collect()
        };
        let observed = Observed::from_dump(
            dump.into_iter().map(|d| (d.service, d.destinations)),
            addresses,
        );
        Ok((observed, stats))
    }
}

fn is_ipv6_link_local(address: &IpAddr) -> bool {
    matches!(address, IpAddr::V6(a) if (a.segments()[0] & 0xffc0) == 0xfe80)
}

impl Dataplane for KernelDataplane {
    async fn observe(&mut self) -> Result<Observed, DataplaneError> {
        self.observe_with_stats().map(|(observed, _)| observed)
    }

    async fn destinations(
        &mut self,
        keys: &[VirtualServerKey],
    ) -> Result<Vec<(VirtualServerKey, Vec<DumpedRealServer>)>, DataplaneError> {
        keys.iter()
            .map(|key| {
                self.ipvs
                    .destinations(key)
                    .map(|d| (*key, d))
                    .map_err(|e| DataplaneError::DumpDestinations(*key, e))
            })
            .collect()
    }

    async fn apply(&mut self, ops: &[Op]) -> ApplyReport {
        let mut results: Vec<Option<Result<(), DataplaneError>>> =
            (0..ops.len()).map(|_| None).collect();
        let mut sendmsg_calls = 0;

        // The plan orders binds, then IPVS writes, then unbinds; each group
        // goes to the kernel as one batch.
        let binds: Vec<(usize, IpAddr)> = pick(ops, |op| match op {
            Op::BindAddress(a) => Some(*a),
            _ => None,
        });
        // Indices only: the batch is copied once, in `apply_ipvs`.
        let ipvs: Vec<(usize, ())> = pick(ops, |op| matches!(op, Op::Ipvs(_)).then_some(()));
        let unbinds: Vec<(usize, IpAddr)> = pick(ops, |op| match op {
            Op::UnbindAddress(a) => Some(*a),
            _ => None,
        });

        self.apply_addresses(&binds, true, ops, &mut results, &mut sendmsg_calls);
        self.apply_ipvs(&ipvs, ops, &mut results, &mut sendmsg_calls);
        self.apply_addresses(&unbinds, false, ops, &mut results, &mut sendmsg_calls);
        ApplyReport {
            results: results
                .into_iter()
                .zip(ops)
                .map(|(r, op)| {
                    r.unwrap_or_else(|| {
                        Err(DataplaneError::operation(op, OperationFailure::NotApplied))
                    })
                })
                .collect(),
            sendmsg_calls,
        }
    }

    async fn node_addresses(&mut self) -> Result<Vec<IpAddr>, DataplaneError> {
        self.route
            .local_addresses(&[self.dummy.as_str()], &[])
            .map_err(DataplaneError::NodeAddresses)
    }
}

fn pick<T>(ops: &[Op], f: impl Fn(&Op) -> Option<T>) -> Vec<(usize, T)> {
    ops.iter()
        .enumerate()
        .filter_map(|(i, op)| f(op).map(|t| (i, t)))
        .collect()
}

impl KernelDataplane {
    /// Binds (`add`) or unbinds `group` on the dummy interface in one batch.
    fn apply_addresses(
        &mut self,
        group: &[(usize, IpAddr)],
        add: bool,
        ops: &[Op],
        results: &mut [Option<Result<(), DataplaneError>>],
        sendmsg_calls: &mut usize,
    ) {
        if group.is_empty() {
            return;
        }
        let addresses: Vec<IpAddr> = group.iter().map(|(_, a)| *a).collect();
        let before = self.route.syscalls().sendmsg;
        let outcome = if add {
            self.route.add_addresses(self.ifindex, &addresses)
        } else {
            self.route.remove_addresses(self.ifindex, &addresses)
        };
        *sendmsg_calls += self.route.syscalls().sendmsg.saturating_sub(before);
        match outcome {
            Ok(per_address) => {
                for ((i, _), r) in group.iter().zip(per_address) {
                    results[*i] = Some(r.map_err(|e| DataplaneError::operation(&ops[*i], e)));
                }
            }
            Err(e) => {
                // The batch failed as a whole: each operation carries the error.
                let e = std::sync::Arc::new(e);
                for (i, _) in group {
                    results[*i] = Some(Err(DataplaneError::operation(
                        &ops[*i],
                        OperationFailure::Batch(e.clone()),
                    )));
                }
            }
        }
    }

    fn apply_ipvs(
        &mut self,
        ipvs: &[(usize, ())],
        ops: &[Op],
        results: &mut [Option<Result<(), DataplaneError>>],
        sendmsg_calls: &mut usize,
    ) {
        if ipvs.is_empty() {
            return;
        }
        let batch: Vec<Operation> = ipvs
            .iter()
            .filter_map(|(i, ())| match &ops[*i] {
                Op::Ipvs(o) => Some(o.clone()),
                _ => None,
            })
            .collect();
        match self.ipvs.apply(&batch) {
            Ok(report) => {
                *sendmsg_calls += report.sendmsg_calls;
                for ((i, _), r) in ipvs.iter().zip(report.results) {
                    results[*i] = Some(r.map_err(|e| {
                        DataplaneError::operation(&ops[*i], OperationFailure::Refused(e.source))
                    }));
                }
            }
            Err(e) => {
                let e = std::sync::Arc::new(e);
                for (i, _) in ipvs {
                    results[*i] = Some(Err(DataplaneError::operation(
                        &ops[*i],
                        OperationFailure::Batch(e.clone()),
                    )));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::conn_reuse_mode;

    #[test]
    fn conn_reuse_mode_only_where_kube_proxy_sets_it() {
        assert_eq!(conn_reuse_mode("4.19.0-21-amd64"), Some("0"));
        assert_eq!(conn_reuse_mode("5.8.18"), Some("0"));
        assert_eq!(conn_reuse_mode("5.9.0"), None);
        assert_eq!(conn_reuse_mode("6.1.0-57-amd64\n"), None);
        assert_eq!(conn_reuse_mode("4.0.9"), None);
        assert_eq!(conn_reuse_mode("garbage"), None);
    }
}
