//! The kernel dataplane: IPVS over generic netlink and the dummy interface's
//! addresses over rtnetlink, through the netlink crate.
//!
//! The netlink crate's API is blocking. Each call is one batch or one dump,
//! milliseconds even at scale, and the loop has nothing else to do while it
//! waits for the kernel, so the calls run on the loop's task directly.

use std::collections::{BTreeMap, BTreeSet};
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
    /// The conntrack table's size and timeouts, as kube-proxy sets them.
    pub conntrack: ConntrackSettings,
}

/// kube-proxy's `conntrack` settings: node-wide netfilter sysctls it sets
/// in every mode, so a node keeps them when kube-ipvs replaces it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConntrackSettings {
    /// `nf_conntrack_max` per CPU; 0 leaves the limit alone.
    pub max_per_core: u32,
    /// The least `nf_conntrack_max`, whatever the CPU count.
    pub min: u32,
    /// `nf_conntrack_tcp_timeout_established`; 0 leaves it alone.
    pub tcp_established_timeout: Duration,
    /// `nf_conntrack_tcp_timeout_close_wait`; 0 leaves it alone.
    pub tcp_close_wait_timeout: Duration,
    /// Sets `nf_conntrack_tcp_be_liberal` to 1.
    pub tcp_be_liberal: bool,
    /// `nf_conntrack_udp_timeout`; 0 leaves it alone.
    pub udp_timeout: Duration,
    /// `nf_conntrack_udp_timeout_stream`; 0 leaves it alone.
    pub udp_stream_timeout: Duration,
}

impl ConntrackSettings {
    /// The `nf_conntrack_max` to set for `cpus` CPUs, if any (kube-proxy's
    /// `getConntrackMax`).
    pub fn max(&self, cpus: u32) -> Option<u32> {
        (self.max_per_core > 0).then(|| self.max_per_core.saturating_mul(cpus).max(self.min))
    }
}

/// Why the kernel could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Opening a netlink socket or resolving the IPVS family failed (could
    /// `ip_vs` be loaded, and do we have `CAP_NET_ADMIN`?).
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
    /// Loading a kernel module failed.
    #[error("loading the kernel module {0} (modprobe)")]
    Module(String, #[source] std::io::Error),
}

/// The kernel's IPVS table and the dummy interface.
pub struct KernelDataplane {
    ipvs: Ipvs,
    route: Route,
    dummy: String,
    ifindex: u32,
    /// Scheduler modules already asked for after the kernel lacked them.
    modules_tried: BTreeSet<String>,
}

fn sysctl(path: &str, value: &str) -> Result<(), SetupError> {
    let file = format!("/proc/sys/{path}");
    if fs::read_to_string(&file).is_ok_and(|v| v.trim() == value) {
        return Ok(());
    }
    fs::write(&file, value).map_err(|e| SetupError::Sysctl(path.to_owned(), e))
}

/// Runs `modprobe MODULE`, as ipvsadm does when the kernel lacks IPVS:
/// from a container it needs the host's `/lib/modules` mounted.
pub fn modprobe(module: &str) -> Result<(), SetupError> {
    let failed = |e| SetupError::Module(module.to_owned(), e);
    let output = std::process::Command::new("modprobe")
        .arg(module)
        .output()
        .map_err(failed)?;
    if output.status.success() {
        return Ok(());
    }
    Err(failed(std::io::Error::other(format!(
        "{}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    ))))
}

/// Opens the IPVS generic-netlink family. Looking the family up loads
/// `ip_vs` on kernels that alias the module to it (Linux 5.16 and later);
/// on older ones the family is unknown until `modprobe ip_vs`, which is
/// tried then.
pub fn open_ipvs() -> Result<Ipvs, SetupError> {
    match Ipvs::open() {
        Err(kube_ipvs_netlink::Error::ResolveFamily(e))
            if e.kind() == std::io::ErrorKind::NotFound =>
        {
            tracing::info!("the kernel has no IPVS family yet; loading ip_vs");
            modprobe("ip_vs")?;
            Ipvs::open().map_err(SetupError::Open)
        }
        other => other.map_err(SetupError::Open),
    }
}

/// Sets the kernel up for the agent; returns the dataplane over it.
///
/// The order matters on a node that has never run IPVS: the IPVS family is
/// opened first, which loads `ip_vs` (and `nf_conntrack` with it), and only
/// then do `/proc/sys/net/ipv4/vs/*` and the conntrack sysctls exist. Then
/// the IPVS timeouts and the dummy interface (whose module the kernel loads
/// when the link is created). Scheduler modules load when a virtual server
/// first asks for them (see [`KernelDataplane::apply`]).
pub fn setup(settings: &Setup) -> Result<KernelDataplane, SetupError> {
    let mut ipvs = open_ipvs()?;
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
    set_conntrack(&settings.conntrack)?;
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
        modules_tried: BTreeSet::new(),
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

/// The CPUs this process may run on, as Go's `runtime.NumCPU` counts them
/// (the affinity mask, not a cgroup quota).
fn cpu_count() -> u32 {
    let allowed = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|l| count_cpu_list(l.trim()))
        })
        .filter(|n| *n > 0);
    allowed.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1))
    })
}

/// Counts a kernel CPU list such as `0-3,8,10-11`.
fn count_cpu_list(list: &str) -> u32 {
    list.split(',')
        .filter_map(|part| {
            let part = part.trim();
            match part.split_once('-') {
                Some((a, b)) => Some(b.parse::<u32>().ok()? + 1 - a.parse::<u32>().ok()?),
                None => part.parse::<u32>().ok().map(|_| 1),
            }
        })
        .sum()
}

/// Sets the conntrack table's size and timeouts as kube-proxy does.
fn set_conntrack(settings: &ConntrackSettings) -> Result<(), SetupError> {
    if let Some(max) = settings.max(cpu_count()) {
        sysctl("net/netfilter/nf_conntrack_max", &max.to_string())?;
        // The hash table should hold a quarter of the entries. Like
        // kube-proxy, a read-only /sys (or a network namespace other than
        // the host's, where the parameter cannot be written) is not fatal.
        let hashsize = "/sys/module/nf_conntrack/parameters/hashsize";
        let current = fs::read_to_string(hashsize)
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok());
        if current.is_some_and(|h| h < max / 4) {
            if let Err(e) = fs::write(hashsize, (max / 4).to_string()) {
                tracing::warn!(error = %e, value = max / 4, "could not set the conntrack hash size");
            }
        }
    }
    let secs = |d: Duration| d.as_secs().to_string();
    for (name, timeout) in [
        (
            "net/netfilter/nf_conntrack_tcp_timeout_established",
            settings.tcp_established_timeout,
        ),
        (
            "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
            settings.tcp_close_wait_timeout,
        ),
        (
            "net/netfilter/nf_conntrack_udp_timeout",
            settings.udp_timeout,
        ),
        (
            "net/netfilter/nf_conntrack_udp_timeout_stream",
            settings.udp_stream_timeout,
        ),
    ] {
        if !timeout.is_zero() {
            sysctl(name, &secs(timeout))?;
        }
    }
    if settings.tcp_be_liberal {
        sysctl("net/netfilter/nf_conntrack_tcp_be_liberal", "1")?;
    }
    Ok(())
}

impl KernelDataplane {
    /// A dataplane over an existing dummy interface, for commands that only
    /// read (`dump`) or clean up; `None` when the interface does not exist.
    pub fn open_existing(dummy: &str) -> Result<(Self, bool), SetupError> {
        let ipvs = open_ipvs()?;
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
                modules_tried: BTreeSet::new(),
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
    /// After the kernel refused a virtual server with ENOENT, its scheduler
    /// module is missing and the kernel could not load it itself (it asks
    /// for `ip_vs_<name>` when one is first used): load it, once per
    /// scheduler, so the retry of the next sync finds it.
    fn load_missing_scheduler(&mut self, op: &Op, error: &std::io::Error) {
        let Op::Ipvs(Operation::NewService(vs) | Operation::SetService(vs)) = op else {
            return;
        };
        if error.kind() != std::io::ErrorKind::NotFound {
            return;
        }
        let module = format!("ip_vs_{}", vs.scheduler.name());
        if !self.modules_tried.insert(module.clone()) {
            return;
        }
        match modprobe(&module) {
            Ok(()) => tracing::info!(module, "loaded a scheduler module the kernel lacked"),
            Err(e) => {
                tracing::warn!(error = %crate::error::Chain(&e), "loading a scheduler module failed")
            }
        }
    }

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
                    if let Err(e) = &r {
                        self.load_missing_scheduler(&ops[*i], &e.source);
                    }
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
    use super::*;

    #[test]
    fn conn_reuse_mode_only_where_kube_proxy_sets_it() {
        assert_eq!(conn_reuse_mode("4.19.0-21-amd64"), Some("0"));
        assert_eq!(conn_reuse_mode("5.8.18"), Some("0"));
        assert_eq!(conn_reuse_mode("5.9.0"), None);
        assert_eq!(conn_reuse_mode("6.1.0-57-amd64\n"), None);
        assert_eq!(conn_reuse_mode("4.0.9"), None);
        assert_eq!(conn_reuse_mode("garbage"), None);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(count_cpu_list("0"), 1);
        assert_eq!(count_cpu_list("0-3"), 4);
        assert_eq!(count_cpu_list("0-3,8,10-11"), 7);
        assert_eq!(count_cpu_list(""), 0);
    }

    #[test]
    fn conntrack_max_as_kube_proxy() {
        let settings = ConntrackSettings {
            max_per_core: 32 * 1024,
            min: 128 * 1024,
            ..ConntrackSettings::default()
        };
        assert_eq!(settings.max(2), Some(128 * 1024));
        assert_eq!(settings.max(8), Some(256 * 1024));
        let off = ConntrackSettings {
            max_per_core: 0,
            ..settings
        };
        assert_eq!(off.max(8), None);
    }
}
