//! Resident memory of a snapshot of 10,000 Services with 100,000 endpoints,
//! and of the desired state computed from it. The agent's whole resident
//! set must stay under 64 MiB. Read from `/proc/self/status`, so the figure
//! includes what the allocator keeps after the Kubernetes objects are
//! dropped: an upper bound of what the snapshot holds.

use kube_ipvs_benches::{config, snapshot};
use kube_ipvs_controller::desired;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn main() {
    let start = rss_kib();
    let snapshot = snapshot(10_000, 10);
    let with_snapshot = rss_kib();
    let state = desired(&snapshot, &config());
    let with_state = rss_kib();
    println!("process at start: {}", mib(start));
    println!(
        "snapshot of {} services, {} endpoints: +{}",
        snapshot.service_count(),
        snapshot.endpoint_count(),
        mib(with_snapshot - start)
    );
    println!(
        "desired state, {} virtual servers: +{}",
        state.virtual_servers().len(),
        mib(with_state - with_snapshot)
    );
    let real_servers: usize = state
        .virtual_servers()
        .values()
        .map(|(_, vs)| vs.real_servers.len())
        .sum();
    println!("real servers: {real_servers}");
    println!("total: {}", mib(with_state));
}
