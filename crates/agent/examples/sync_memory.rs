//! The agent's cold sync against the in-memory dataplane, for heap profiles
//! on a host without IPVS (`heaptrack`, `valgrind --tool=massif`): reads the
//! source named by `run`'s flags until its initial state is whole, runs one
//! full sync, and prints what it wrote.
//!
//!     cargo run --release -p kube-ipvs --example sync_memory -- \
//!         --kubeconfig kubeconfig --hostname-override node-0

use clap::Parser;
use kube_ipvs::agent::{Agent, Timing};
use kube_ipvs::cli::RunArgs;
use kube_ipvs::cmd::{events, node_name, until_initialized};
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
    let reconciler = Reconciler::new(
        MemoryDataplane::new(),
        PlanConfig::from(&args),
        metrics.clone(),
    );
    let mut agent = Agent::new(reconciler, config, Timing::from(&args), metrics, health);
    let mut stream = events(
        &args.source,
        &node,
        None,
        &StreamConfig::from(&args.streams),
        args.ipvs_sync_period,
    )
    .await?;
    until_initialized(&mut stream, &mut agent).await?;
    let report = agent.full_sync().await?;
    eprintln!("writes {}", report.writes);
    Ok(())
}
