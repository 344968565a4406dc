//! The `kube-ipvs` binary: wires flags, sources, the kernel, metrics and the
//! loop together. The logic lives in the library.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use clap::Parser as _;
use futures::StreamExt as _;
use kube_ipvs::agent::{Agent, Timing};
use kube_ipvs::cli::{
    CleanupArgs, Cli, Command, DumpArgs, LogFormat, MappingArgs, Output, PlanArgs, RunArgs,
    SourceArgs,
};
use kube_ipvs::dataplane::kernel::{self, KernelDataplane};
use kube_ipvs::dataplane::Dataplane as _;
use kube_ipvs::firewall;
use kube_ipvs::health::Health;
use kube_ipvs::http::{serve_health, serve_metrics, MetricsState};
use kube_ipvs::metrics::Metrics;
use kube_ipvs::output::{self, Document};
use kube_ipvs::reconcile::Reconciler;
use kube_ipvs::source::{self, SourceEvent};
use kube_ipvs_controller::{desired, node_object_addresses, Config, Intent, PlanConfig, Snapshot};
use kube_ipvs_netlink::VirtualServerKey;
use prometheus::Registry;
use serde::Serialize;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = match &cli.command {
        Command::Run(run) => run.log_format,
        _ => LogFormat::Text,
    };
    init_logging(log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kube-ipvs: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kube-ipvs: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Run(args) => run(*args).await,
        Command::Plan(args) => plan(args).await,
        Command::Dump(args) => dump(args).await,
        Command::Cleanup(args) => cleanup(args).await,
    }
}

fn node_name(source: &SourceArgs) -> Result<String> {
    if let Some(name) = &source.hostname_override {
        return Ok(name.trim().to_lowercase());
    }
    let name =
        std::fs::read_to_string("/proc/sys/kernel/hostname").context("reading the host name")?;
    Ok(name.trim().to_lowercase())
}

fn mapping_config(mapping: &MappingArgs, node_name: String) -> Config {
    Config {
        node_name,
        scheduler: mapping.ipvs_scheduler.clone(),
        service_proxy_name: (!mapping.service_proxy_name.is_empty())
            .then(|| mapping.service_proxy_name.clone()),
        nodeport_addresses: mapping.nodeport_addresses.0.clone(),
    }
}

/// The events of the configured source: a watched directory or the API.
async fn events(
    source: &SourceArgs,
    node: &str,
) -> Result<futures::stream::BoxStream<'static, SourceEvent>> {
    Ok(match &source.from_dir {
        Some(dir) => source::dir_source(dir.clone()).boxed(),
        None => {
            let client = source::client(source.kubeconfig.as_deref())
                .await
                .context("connecting to the Kubernetes API")?;
            source::kube_source(client, node).boxed()
        }
    })
}

/// Reads the sources until every kind has delivered its initial state.
async fn initial_snapshot<D: kube_ipvs::dataplane::Dataplane>(
    agent: &mut Agent<D>,
    stream: &mut futures::stream::BoxStream<'static, SourceEvent>,
) -> Result<()> {
    while !agent.initialized() {
        match stream.next().await {
            Some(event) => agent.handle(event),
            None => bail!("the source ended before delivering its initial state"),
        }
    }
    Ok(())
}

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
}

#[derive(Serialize)]
struct SkippedView {
    kind: String,
    object: String,
    reason: String,
}

async fn run(args: RunArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let node = node_name(&args.source)?;
    let config = mapping_config(&args.mapping, node.clone());
    let registry = Registry::new();
    let metrics = Metrics::register(&registry).context("registering metrics")?;
    let health = Health::new(args.ipvs_sync_period * 2);

    let setup = kernel::Setup {
        dummy_interface: args.dummy_interface.clone(),
        strict_arp: args.ipvs_strict_arp,
        tcp_timeout: args.ipvs_tcp_timeout,
        tcpfin_timeout: args.ipvs_tcpfin_timeout,
        udp_timeout: args.ipvs_udp_timeout,
    };
    let dataplane = kernel::setup(&setup).context("setting up the kernel")?;
    let plan_config = PlanConfig {
        node_port_range: args.service_node_port_range.clone(),
        exclude_cidrs: args.ipvs_exclude_cidrs.0.clone(),
        graceful_period: args.ipvs_graceful_period,
        ..Default::default()
    };
    let reconciler = Reconciler::new(dataplane, plan_config, metrics.clone());
    let timing = Timing {
        min_sync_period: args.ipvs_min_sync_period,
        sync_period: args.ipvs_sync_period,
        ..Default::default()
    };
    let mut agent = Agent::new(reconciler, config, timing, metrics.clone(), health.clone());

    let mut stream = events(&args.source, &node).await?;
    let firewall_config = firewall::FirewallConfig {
        cluster_cidrs: args.cluster_cidr.0.clone(),
        masquerade_all: args.masquerade_all,
        ..Default::default()
    };
    if !args.no_firewall && !args.once {
        agent.set_firewall(
            firewall::worker::spawn(metrics.clone()),
            firewall_config.clone(),
        );
    }

    if args.once {
        let mut skipped = Vec::new();
        let files = stream.by_ref();
        while !agent.initialized() {
            match files.next().await {
                Some(SourceEvent::FileSkipped(e)) => skipped.push(SkippedView {
                    kind: "File".into(),
                    object: e.path.display().to_string(),
                    reason: e.to_string(),
                }),
                Some(event) => agent.handle(event),
                None => bail!("the source ended before delivering its initial state"),
            }
        }
        let mut report = agent.full_sync().await.context("syncing")?;
        if !args.no_firewall {
            // One shot: the table is replaced before the summary, not beside the loop.
            let ruleset = agent.ruleset(&firewall_config);
            if let Err(e) = tokio::task::block_in_place(|| firewall::Firewall::new().sync(&ruleset))
            {
                report.failures.push(format!(
                    "replacing the nftables table: {}",
                    kernel::error_chain(&e)
                ));
            }
        }
        let intent = agent.reconciler().intent();
        let (virtual_servers, real_servers) = intent.counts();
        let addresses = intent.addresses().count();
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
        let out = OnceReport {
            virtual_servers,
            real_servers,
            addresses,
            writes: report.writes,
            operations: report.operations.clone(),
            failures: report.failures.clone(),
            skipped,
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        };
        println!("{}", serde_json::to_string(&out)?);
        return Ok(if report.ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }

    if let Some(addr) = args.metrics_bind_address.0 {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let state = MetricsState {
            registry: registry.clone(),
            virtual_servers: agent.debug_view(),
        };
        tokio::spawn(serve_metrics(listener, state));
    }
    if let Some(addr) = args.healthz_bind_address.0 {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        tokio::spawn(serve_health(listener, health.clone()));
    }
    tracing::info!(node = %node, "kube-ipvs started");
    agent.run(stream, shutdown_signal()).await;
    Ok(ExitCode::SUCCESS)
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

async fn plan(args: PlanArgs) -> Result<ExitCode> {
    let node = node_name(&args.source)?;
    let config = mapping_config(&args.mapping, node.clone());
    let mut snapshot = Snapshot::new();
    let mut stream = events(&args.source, &node).await?;
    // The same event handling as the agent, on a dataplane that is never used.
    let mut agent = Agent::new(
        Reconciler::new(
            kube_ipvs::dataplane::MemoryDataplane::new(),
            PlanConfig::default(),
            Metrics::unregistered(),
        ),
        config.clone(),
        Timing::default(),
        Metrics::unregistered(),
        Health::new(std::time::Duration::MAX),
    );
    initial_snapshot(&mut agent, &mut stream).await?;
    snapshot.clone_from(agent.snapshot());
    // Off the node, NodePorts listen on the addresses of the Node object.
    let node_addresses = snapshot_node_addresses(&args.source, &node).await?;
    snapshot.set_node_addresses(node_addresses);
    let desired = desired(&snapshot, &config);
    for skip in snapshot.skipped().chain(&desired.skipped) {
        eprintln!("skipped: {skip}");
    }
    print_document(&output::from_intent(&Intent::new(desired)), args.output)?;
    Ok(ExitCode::SUCCESS)
}

/// The addresses of the Node object named `node`, from the source.
async fn snapshot_node_addresses(source: &SourceArgs, node: &str) -> Result<Vec<std::net::IpAddr>> {
    match &source.from_dir {
        Some(dir) => {
            let contents =
                source::load_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
            Ok(contents
                .nodes
                .iter()
                .find(|n| n.metadata.name.as_deref() == Some(node))
                .map(node_object_addresses)
                .unwrap_or_default())
        }
        None => {
            let client = source::client(source.kubeconfig.as_deref()).await?;
            let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client);
            Ok(nodes
                .get_opt(node)
                .await
                .context("reading the Node")?
                .as_ref()
                .map(node_object_addresses)
                .unwrap_or_default())
        }
    }
}

fn print_document(doc: &Document, format: Output) -> Result<()> {
    let text = match format {
        Output::Table => output::table(doc),
        Output::Json => serde_json::to_string_pretty(doc)? + "\n",
    };
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(())
}

async fn dump(args: DumpArgs) -> Result<ExitCode> {
    let (mut dataplane, _) =
        KernelDataplane::open_existing("kube-ipvs0").context("opening netlink")?;
    let (observed, stats) = dataplane.observe_with_stats().context("dumping IPVS")?;
    let names = service_names(&args).await;
    print_document(
        &output::from_observed(&observed, &names, &stats, args.stats),
        args.output,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Which Service each virtual server serves: from a directory, or from the
/// agent running on this node. Best effort: an unnamed dump is still a dump.
async fn service_names(args: &DumpArgs) -> BTreeMap<VirtualServerKey, String> {
    let doc: Option<Document> = if let Some(dir) = &args.from_dir {
        let node = node_name(&SourceArgs {
            kubeconfig: None,
            from_dir: None,
            hostname_override: None,
        })
        .unwrap_or_default();
        match source::load_dir(dir) {
            Ok(contents) => {
                let mut snapshot = Snapshot::new();
                snapshot.replace_services(contents.services.iter());
                snapshot.replace_slices(contents.endpoint_slices.iter());
                Some(output::from_intent(&Intent::new(desired(
                    &snapshot,
                    &Config::new(node),
                ))))
            }
            Err(e) => {
                eprintln!("kube-ipvs: reading {}: {e}", dir.display());
                None
            }
        }
    } else if let Some(addr) = args.metrics_bind_address.0 {
        fetch_debug_view(addr).await
    } else {
        None
    };
    doc.map(|d| {
        d.virtual_servers
            .into_iter()
            .filter_map(|v| {
                let protocol = match v.protocol.as_str() {
                    "TCP" => kube_ipvs_netlink::Protocol::Tcp,
                    "UDP" => kube_ipvs_netlink::Protocol::Udp,
                    "SCTP" => kube_ipvs_netlink::Protocol::Sctp,
                    _ => return None,
                };
                let key = VirtualServerKey::inet(protocol, v.address?.parse().ok()?, v.port?);
                Some((key, v.service?))
            })
            .collect()
    })
    .unwrap_or_default()
}

/// `GET /debug/virtual-servers` from the local agent.
async fn fetch_debug_view(addr: std::net::SocketAddr) -> Option<Document> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let connect = tokio::net::TcpStream::connect(addr);
    let mut stream = tokio::time::timeout(std::time::Duration::from_secs(2), connect)
        .await
        .ok()?
        .ok()?;
    let request =
        format!("GET /debug/virtual-servers HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut response),
    )
    .await
    .ok()?
    .ok()?;
    let text = String::from_utf8(response).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    serde_json::from_str(body).ok()
}

async fn cleanup(args: CleanupArgs) -> Result<ExitCode> {
    let (mut dataplane, exists) =
        KernelDataplane::open_existing(&args.dummy_interface).context("opening netlink")?;
    let observed = dataplane.observe().await.context("dumping IPVS")?;
    let node_addresses = dataplane
        .node_addresses()
        .await
        .context("listing node addresses")?;
    let config = PlanConfig {
        node_addresses: node_addresses.into_iter().collect(),
        node_port_range: args.service_node_port_range.clone(),
        exclude_cidrs: args.ipvs_exclude_cidrs.0.clone(),
        ..Default::default()
    };
    // Planning against an empty desired state removes exactly what the agent owns.
    let planned = kube_ipvs_controller::plan(
        &observed,
        &Intent::default(),
        kube_ipvs_controller::Extent::All,
        &config,
        &Default::default(),
        std::time::Instant::now(),
    );
    let report = dataplane.apply(&planned.ops).await;
    let mut failed = 0;
    for (op, result) in planned.ops.iter().zip(&report.results) {
        if let Err(e) = result {
            failed += 1;
            eprintln!("kube-ipvs: {op}: {e}");
        }
    }
    if let Err(e) = firewall::Firewall::new().cleanup() {
        eprintln!(
            "kube-ipvs: removing the nftables table: {}",
            kernel::error_chain(&e)
        );
        failed += 1;
    }
    if exists {
        dataplane
            .route()
            .delete_link(&args.dummy_interface)
            .context("deleting the dummy interface")?;
    }
    println!(
        "removed {} virtual servers and {} addresses{}",
        planned
            .ops
            .iter()
            .filter(|op| op.kind() == "del_service")
            .count(),
        planned
            .ops
            .iter()
            .filter(|op| op.kind() == "unbind_address")
            .count(),
        if exists {
            format!(", and {}", args.dummy_interface)
        } else {
            String::new()
        }
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
