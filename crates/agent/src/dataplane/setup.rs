//! Setting the kernel up for the agent, once at start: the IPVS family
//! (which loads `ip_vs`), the sysctls IPVS and kube-proxy's behaviour need,
//! conntrack's size and timeouts, IPVS timeouts and the dummy interface.

use std::fs;
use std::time::Duration;

use kube_ipvs_netlink::{Ipvs, Route};

use super::kernel::KernelDataplane;

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

/// Sets `/proc/sys/<path>` to `value` unless it holds it already; whether
/// it had to be written.
pub(super) fn sysctl(path: &str, value: &str) -> std::io::Result<bool> {
    let file = format!("/proc/sys/{path}");
    if fs::read_to_string(&file).is_ok_and(|v| v.trim() == value) {
        return Ok(false);
    }
    fs::write(&file, value)?;
    Ok(true)
}

/// The sysctls the agent set, with their values: checked again on every
/// full resync, so a value another program changed is put back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sysctls(Vec<(String, String)>);

impl Sysctls {
    fn set(&mut self, path: &str, value: &str) -> Result<(), SetupError> {
        sysctl(path, value).map_err(|e| SetupError::Sysctl(path.to_owned(), e))?;
        self.0.push((path.to_owned(), value.to_owned()));
        Ok(())
    }

    /// Each sysctl with the value the agent set.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(p, v)| (p.as_str(), v.as_str()))
    }
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
    let mut sysctls = Sysctls::default();
    // conntrack=1 lets netfilter see IPVS connections (masquerade, filters);
    // expire_nodest_conn drops packets of connections whose real server is
    // gone instead of blackholing them; expire_quiescent_template lets
    // persistent clients move off a real server at weight 0.
    sysctls.set("net/ipv4/vs/conntrack", "1")?;
    sysctls.set("net/ipv4/vs/expire_nodest_conn", "1")?;
    sysctls.set("net/ipv4/vs/expire_quiescent_template", "1")?;
    sysctls.set("net/ipv4/ip_forward", "1")?;
    if let Some(mode) = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .and_then(|release| conn_reuse_mode(&release))
    {
        sysctls.set("net/ipv4/vs/conn_reuse_mode", mode)?;
    }
    if settings.strict_arp {
        sysctls.set("net/ipv4/conf/all/arp_ignore", "1")?;
        sysctls.set("net/ipv4/conf/all/arp_announce", "2")?;
    }
    set_conntrack(&settings.conntrack, &mut sysctls)?;
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
    Ok(KernelDataplane::new(
        ipvs,
        route,
        settings.dummy_interface.clone(),
        ifindex,
        sysctls,
    ))
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
fn set_conntrack(settings: &ConntrackSettings, sysctls: &mut Sysctls) -> Result<(), SetupError> {
    if let Some(max) = settings.max(cpu_count()) {
        sysctls.set("net/netfilter/nf_conntrack_max", &max.to_string())?;
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
            sysctls.set(name, &secs(timeout))?;
        }
    }
    if settings.tcp_be_liberal {
        sysctls.set("net/netfilter/nf_conntrack_tcp_be_liberal", "1")?;
    }
    Ok(())
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
