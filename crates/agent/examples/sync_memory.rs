//! The agent's cold sync against a dataplane that accepts every write and
//! keeps none (so a profile shows the agent's memory alone), for heap
//! profiles on a host without IPVS (`heaptrack`, `valgrind --tool=massif`):
//! reads the source named by `run`'s flags until its initial state is
//! whole, runs one full sync, and prints what it wrote. Run it with
//! `MALLOC_ARENA_MAX=1`, as the image does.
//!
//!     cargo run --release -p kube-ipvs --example sync_memory -- \
//!         --kubeconfig kubeconfig --hostname-override node-0

use clap::Parser;
use kube_ipvs::agent::{Agent, Timing};
use kube_ipvs::cli::RunArgs;
use kube_ipvs::cmd::{events, node_name, until_initialized};
use kube_ipvs::dataplane::{ApplyReport, Dataplane, DataplaneError, Repaired, VirtualServerDump};
use kube_ipvs::health::Health;
use kube_ipvs::metrics::Metrics;
use kube_ipvs::reconcile::Reconciler;
use kube_ipvs_controller::{Config, PlanConfig, StreamConfig};
use kube_ipvs_controller::{Observed, Op};
use kube_ipvs_netlink::{DumpedRealServer, VirtualServerKey};

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    run: RunArgs,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse().run;
    let node = node_name(&args.source)?;
    let config = Config {
        node_name: node.clone(),
        streams: StreamConfig::from(&args.streams),
        ..Config::from(&args.mapping)
    };
    let registry = prometheus::Registry::new();
    let metrics = Metrics::register(&registry)?;
    let health = Health::new(args.ipvs_sync_period * 2);
    let reconciler = Reconciler::new(Accepting, PlanConfig::from(&args), metrics.clone());
    let mut agent = Agent::new(reconciler, config, Timing::from(&args), metrics, health);
    let mut stream = events(
        &args.source,
        &node,
        None,
        &StreamConfig::from(&args.streams),
        args.ipvs_sync_period,
    )
    .await?;
    // As `run` reads it; SYNC_MEMORY_INLINE_SOURCE=1 polls it from the
    // agent's own task instead, for comparison.
    if std::env::var_os("SYNC_MEMORY_INLINE_SOURCE").is_none() {
        stream = kube_ipvs::cmd::in_own_task(stream);
    }
    until_initialized(&mut stream, &mut agent).await?;
    let report = agent.full_sync().await?;
    eprintln!("writes {}", report.writes);
    Ok(())
}

/// An empty kernel that takes every write and remembers none.
struct Accepting;

impl Dataplane for Accepting {
    async fn observe(&mut self) -> Result<Observed, DataplaneError> {
        Ok(Observed::default())
    }

    async fn observe_virtual_servers(&mut self) -> Result<VirtualServerDump, DataplaneError> {
        Ok(VirtualServerDump::default())
    }

    async fn destinations(
        &mut self,
        _: &[VirtualServerKey],
    ) -> Result<Vec<(VirtualServerKey, Vec<DumpedRealServer>)>, DataplaneError> {
        Ok(Vec::new())
    }

    async fn apply(&mut self, ops: &[Op]) -> ApplyReport {
        ApplyReport {
            results: ops.iter().map(|_| Ok(())).collect(),
            sendmsg_calls: 1,
        }
    }

    async fn repair(&mut self) -> Result<Vec<Repaired>, DataplaneError> {
        Ok(Vec::new())
    }

    async fn node_addresses(&mut self) -> Result<Vec<std::net::IpAddr>, DataplaneError> {
        Ok(Vec::new())
    }
}
