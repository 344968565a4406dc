//! `kube-ipvs run`: the agent, and `run --once`, which syncs once, prints a
//! JSON summary and exits.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context as _, Result};
use kube_ipvs_controller::{Config, PlanConfig, StreamConfig};
use prometheus::Registry;
use serde::Serialize;

use super::{events, in_own_task, node_name, until_initialized, Initializing};
use crate::agent::{Agent, Timing};
use crate::cli::{CleanupArgs, RunArgs};
use crate::dataplane::kernel::{self, KernelDataplane};
use crate::dataplane::Dataplane;
use crate::drain_state::DrainStore;
use crate::error::Chain;
use crate::firewall::{
    self, FirewallConfig, FirewallFeed, KernelPacketFilter, LocalTraffic, PacketFilter as _,
    Ruleset,
};
use crate::health::Health;
use crate::http::{serve_health, serve_metrics, Limits, MetricsState};
use crate::metrics::Metrics;
use crate::reconcile::Reconciler;
use crate::service_health::ServiceHealth;
use crate::source::SourceEvent;

impl<D: Dataplane> Initializing for Agent<D> {
    fn initialized(&self) -> bool {
        Agent::initialized(self)
    }

    fn handle(&mut self, event: SourceEvent) {
        Agent::handle(self, event);
    }
}

/// Runs the agent until SIGTERM or SIGINT; with `--once`, syncs once;
/// with kube-proxy's `--cleanup`, removes what it programmed; with
/// `--init-only`, sets the kernel up and exits.
pub async fn run(args: RunArgs) -> Result<ExitCode> {
    if args.kube_proxy.cleanup {
        return super::cleanup::cleanup(CleanupArgs::from(&args)).await;
    }
    let started = Instant::now();
    set_oom_score_adj(args.kube_proxy.oom_score_adj);
    let dataplane = kernel::setup(&kernel::Setup::from(&args)).context("setting up the kernel")?;
    if args.kube_proxy.init_only {
        tracing::info!("kernel set up (--init-only); exiting");
        return Ok(ExitCode::SUCCESS);
    }
    let node = node_name(&args.source)?;
    let config = Config {
        node_name: node.clone(),
        streams: StreamConfig::from(&args.streams),
        ..Config::from(&args.mapping)
    };
    let proxy_name = config.service_proxy_name.clone();
    let registry = Registry::new();
    let metrics = Metrics::register(&registry).context("registering metrics")?;
    let health = Health::new(args.ipvs_sync_period * 2);

    let mut reconciler = Reconciler::new(dataplane, PlanConfig::from(&args), metrics.clone());
    if !args.drain_state_file.as_os_str().is_empty() {
        reconciler = reconciler.with_drain_store(DrainStore::new(&args.drain_state_file));
    }
    let mut agent = Agent::new(
        reconciler,
        config,
        Timing::from(&args),
        metrics.clone(),
        health.clone(),
    );
    let stream = events(
        &args.source,
        &node,
        proxy_name.as_deref(),
        &StreamConfig::from(&args.streams),
        args.ipvs_sync_period,
    )
    .await?;
    let firewall_config = FirewallConfig::from(&args);

    if args.once {
        return once(agent, stream, &args, &firewall_config, started).await;
    }
    if !args.no_firewall {
        agent.set_firewall(FirewallFeed::new(
            firewall::worker::spawn(KernelPacketFilter::new(), metrics.clone()),
            firewall_config,
        ));
    }
    agent.set_service_health(
        ServiceHealth::new(health.clone(), metrics.clone()),
        args.service_node_port_range.clone(),
    );
    let hard_fail = args.kube_proxy.bind_address_hard_fail;
    if let Some(addr) = args.metrics_bind_address.0 {
        let state = MetricsState {
            registry: registry.clone(),
            virtual_servers: agent.debug_view(),
            debug_allow_remote: args.debug_allow_remote,
        };
        serve_on(addr, "metrics", hard_fail, move |l| {
            serve_metrics(l, state, Limits::default())
        })
        .await?;
    }
    if let Some(addr) = args.healthz_bind_address.0 {
        let health = health.clone();
        serve_on(addr, "health", hard_fail, move |l| {
            serve_health(l, health, Limits::default())
        })
        .await?;
    }
    tracing::info!(node = %node, "kube-ipvs started");
    agent.run(in_own_task(stream), shutdown_signal()).await;
    Ok(ExitCode::SUCCESS)
}

/// How long a server whose address could not be bound waits to try again.
const REBIND_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// Binds `addr` and serves it in the background. When the address cannot
/// be bound, `--bind-address-hard-fail` makes it an error, as in
/// kube-proxy; without it the failure is logged and binding retried every
/// few seconds while the agent runs.
async fn serve_on<F, R>(
    addr: std::net::SocketAddr,
    what: &'static str,
    hard_fail: bool,
    serve: F,
) -> Result<()>
where
    F: FnOnce(tokio::net::TcpListener) -> R + Send + 'static,
    R: std::future::Future<Output = ()> + Send + 'static,
{
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => {
            tokio::spawn(serve(listener));
            Ok(())
        }
        Err(e) if hard_fail => {
            Err(e).with_context(|| format!("binding {addr} for the {what} server"))
        }
        Err(e) => {
            tracing::error!(%addr, server = what, error = %e, "binding failed; retrying (--bind-address-hard-fail makes this fatal)");
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(REBIND_AFTER).await;
                    match tokio::net::TcpListener::bind(addr).await {
                        Ok(listener) => {
                            tracing::info!(%addr, server = what, "bound");
                            return serve(listener).await;
                        }
                        Err(e) => {
                            tracing::debug!(%addr, server = what, error = %e, "binding failed again")
                        }
                    }
                }
            });
            Ok(())
        }
    }
}

/// Sets the agent's `oom_score_adj`, as kube-proxy does (`--oom-score-adj`,
/// `oomScoreAdj`); a failure (no privilege to lower it) is logged, not fatal.
fn set_oom_score_adj(value: i32) {
    let path = "/proc/self/oom_score_adj";
    if std::fs::read_to_string(path).is_ok_and(|v| v.trim() == value.to_string()) {
        return;
    }
    if let Err(e) = std::fs::write(path, value.to_string()) {
        tracing::info!(value, error = %e, "could not set oom_score_adj");
    }
}

/// What `run --once` prints.
#[derive(Serialize)]
struct OnceReport {
    virtual_servers: usize,
    real_servers: usize,
    addresses: usize,
    writes: usize,
    operations: BTreeMap<&'static str, usize>,
    failures: Vec<String>,
    skipped: Vec<SkippedView>,
    duration_ms: f64,
    /// The process's CPU time (every thread) by phase: reading the source
    /// until its initial state is whole, then the sync (mapping, planning,
    /// the writes and the kernel's work in them); `null` where getrusage
    /// failed.
    cpu_ms: Option<CpuByPhase>,
}

#[derive(Serialize)]
struct CpuByPhase {
    reading: CpuTime,
    syncing: CpuTime,
}

/// User and system CPU time, in milliseconds.
#[derive(Serialize, Clone, Copy)]
struct CpuTime {
    user: f64,
    system: f64,
}

impl CpuTime {
    /// This process's, all threads', so far.
    fn now() -> Option<Self> {
        use nix::sys::resource::{getrusage, UsageWho};
        let usage = getrusage(UsageWho::RUSAGE_SELF).ok()?;
        let ms = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 * 1e3 + t.tv_usec() as f64 / 1e3;
        Some(CpuTime {
            user: ms(usage.user_time()),
            system: ms(usage.system_time()),
        })
    }

    fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user - earlier.user,
            system: self.system - earlier.system,
        }
    }
}

#[derive(Serialize)]
struct SkippedView {
    kind: String,
    object: String,
    reason: String,
}

/// `run --once`'s reader: files the source skipped go into the report.
struct OnceReader {
    agent: Agent<KernelDataplane>,
    skipped: Vec<SkippedView>,
}

impl Initializing for OnceReader {
    fn initialized(&self) -> bool {
        self.agent.initialized()
    }

    fn handle(&mut self, event: SourceEvent) {
        match event {
            SourceEvent::FileSkipped(e) => self.skipped.push(SkippedView {
                kind: "File".into(),
                object: e.path.display().to_string(),
                reason: e.to_string(),
            }),
            event => self.agent.handle(event),
        }
    }
}

/// Syncs once, replaces the nftables table, prints a summary.
async fn once(
    agent: Agent<KernelDataplane>,
    mut stream: futures::stream::BoxStream<'static, SourceEvent>,
    args: &RunArgs,
    firewall_config: &FirewallConfig,
    started: Instant,
) -> Result<ExitCode> {
    let mut reader = OnceReader {
        agent,
        skipped: Vec::new(),
    };
    let cpu_start = CpuTime::now();
    until_initialized(&mut stream, &mut reader).await?;
    let OnceReader {
        mut agent,
        mut skipped,
    } = reader;
    let cpu_read = CpuTime::now();
    let report = agent.full_sync().await.context("syncing")?;
    let cpu_synced = CpuTime::now();
    let mut failures: Vec<String> = report
        .failures
        .iter()
        .map(|e| Chain(&**e).to_string())
        .collect();
    let intent = agent.reconciler().intent();
    if !args.no_firewall {
        // One shot: the table is replaced before the summary, not beside the loop.
        let config = match &firewall_config.local {
            LocalTraffic::NodeCidrs(_) => FirewallConfig {
                local: LocalTraffic::NodeCidrs(agent.snapshot().node().pod_cidrs.clone()),
                ..firewall_config.clone()
            },
            _ => firewall_config.clone(),
        };
        let ruleset = Ruleset::from_intent(intent, &config);
        if let Err(e) =
            tokio::task::block_in_place(|| KernelPacketFilter::new().write_table(&ruleset))
        {
            failures.push(Chain(&e).to_string());
        }
    }
    let (virtual_servers, real_servers) = intent.counts();
    skipped.extend(
        agent
            .snapshot()
            .skipped()
            .chain(agent.last_skipped())
            .map(|s| SkippedView {
                kind: s.kind.as_str().to_owned(),
                object: s.object.clone(),
                reason: s.reason.to_string(),
            }),
    );
    let ok = failures.is_empty();
    let out = OnceReport {
        virtual_servers,
        real_servers,
        addresses: intent.addresses().count(),
        writes: report.writes,
        operations: report.operations.clone(),
        failures,
        skipped,
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        cpu_ms: match (cpu_start, cpu_read, cpu_synced) {
            (Some(start), Some(read), Some(synced)) => Some(CpuByPhase {
                reading: read.since(start),
                syncing: synced.since(read),
            }),
            _ => None,
        },
    };
    println!("{}", serde_json::to_string(&out)?);
    // The process exits next: freeing the state object by object would be
    // work for nothing.
    std::mem::forget(agent);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}
