//! `kube-ipvs-testapi`: serves a generated cluster over the Kubernetes
//! list/watch API, for benchmarks of the agent.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use kube_ipvs_testapi::{generate, ClusterSpec, TestApiServer};

/// Serve a generated cluster of Services, EndpointSlices and Nodes.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Number of ClusterIP Services, each with one TCP port.
    #[arg(long, default_value_t = 100)]
    services: usize,
    /// Ready endpoints in the one EndpointSlice of each Service.
    #[arg(long, default_value_t = 10)]
    endpoints_per_service: usize,
    /// Number of Nodes (`node-0`, `node-1`, ...).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Write a kubeconfig pointing at the server here.
    #[arg(long)]
    kubeconfig_out: Option<PathBuf>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let server = TestApiServer::bind(args.listen)
        .await
        .context("starting the server")?;
    let spec = ClusterSpec {
        services: args.services,
        endpoints_per_service: args.endpoints_per_service,
        nodes: args.nodes,
    };
    for (kind, object) in generate(spec) {
        server
            .apply_json(kind, object)
            .context("storing a generated object")?;
    }
    if let Some(path) = &args.kubeconfig_out {
        server
            .write_kubeconfig(path)
            .context("writing the kubeconfig")?;
    }
    tracing::info!(addr = %server.addr(), services = args.services, endpoints = args.services * args.endpoints_per_service, "serving");
    println!("serving {} at {}", spec.services, server.url());
    tokio::signal::ctrl_c()
        .await
        .context("waiting for ctrl-c")?;
    Ok(())
}
