//! The watching agent's memory over time, on a host without IPVS: `run`
//! with its flags, against the in-memory dataplane (which keeps its own
//! copy of the IPVS table, so the figures are the agent's plus that copy).
//! Every `WATCH_MEMORY_EVERY` seconds (5) it prints the peak and resident
//! set and the full syncs so far, to tell which phase grows: the first
//! sync, changes from the source, or periodic resyncs. Run it with
//! `MALLOC_ARENA_MAX=1`, as the image does, and drive changes through
//! `kube-ipvs-testapi` (a `PUT` of an EndpointSlice).
//! `WATCH_MEMORY_DUMP_DELAY_MS` makes each dump of real servers take that
//! long, as a large table's does in a slow kernel.
//!
//!     cargo run --release -p kube-ipvs --example watch_memory -- \
//!         --kubeconfig kubeconfig --hostname-override node-0 --ipvs-sync-period 10s

use std::time::Duration;

use clap::Parser;
use kube_ipvs::agent::{Agent, Timing};
use kube_ipvs::cli::RunArgs;
use kube_ipvs::cmd::{events, in_own_task, node_name};
use kube_ipvs::dataplane::MemoryDataplane;
use kube_ipvs::health::Health;
use kube_ipvs::metrics::Metrics;
use kube_ipvs::reconcile::Reconciler;
use kube_ipvs_controller::{Config, PlanConfig, StreamConfig};

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    run: RunArgs,
}

/// A line of /proc/self/status, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse().run;
    kube_ipvs::logging::init(args.log_format, args.kube_proxy.v);
    let every = std::env::var("WATCH_MEMORY_EVERY")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let node = node_name(&args.source)?;
    let config = Config {
        node_name: node.clone(),
        streams: StreamConfig::from(&args.streams),
        ..Config::from(&args.mapping)
    };
    let registry = prometheus::Registry::new();
    let metrics = Metrics::register(&registry)?;
    let health = Health::new(args.ipvs_sync_period * 2);
    let dataplane = MemoryDataplane::new();
    // How long each dump of real servers takes: a resync as slow as the
    // VM's, so that changes come between its parts.
    if let Some(ms) = std::env::var("WATCH_MEMORY_DUMP_DELAY_MS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        dataplane.kernel().dump_delay = Duration::from_millis(ms);
    }
    let kernel = dataplane.clone();
    let reconciler = Reconciler::new(dataplane, PlanConfig::from(&args), metrics.clone());
    let agent = Agent::new(reconciler, config, Timing::from(&args), metrics, health);
    let stream = events(
        &args.source,
        &node,
        None,
        &StreamConfig::from(&args.streams),
        args.ipvs_sync_period,
    )
    .await?;
    let started = std::time::Instant::now();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(every)).await;
            let dumps = {
                let mut kernel = kernel.kernel();
                // The dataplane's log of writes is the tests'; it would grow.
                kernel.writes = Vec::new();
                kernel.dumps
            };
            eprintln!(
                "t={:>4}s peak {} KiB resident {} KiB kernel dumps {dumps}",
                started.elapsed().as_secs(),
                status_kib("VmHWM"),
                status_kib("VmRSS"),
            );
        }
    });
    agent.run(in_own_task(stream), std::future::pending()).await;
    Ok(())
}
