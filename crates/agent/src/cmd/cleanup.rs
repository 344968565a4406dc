//! `kube-ipvs cleanup`: removes everything the agent owns (its virtual
//! servers, addresses, dummy interface and nftables table) and nothing else.

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use kube_ipvs_controller::{plan, DesiredState, Extent, Intent, Op, PlanConfig};
use kube_ipvs_netlink::Operation;

use crate::cli::CleanupArgs;
use crate::dataplane::kernel::KernelDataplane;
use crate::dataplane::Dataplane as _;
use crate::error::Chain;
use crate::firewall::{forward, Firewall};

/// Plans against an empty desired state, which removes exactly what the
/// agent owns, and applies it.
pub async fn cleanup(args: CleanupArgs) -> Result<ExitCode> {
    let (mut dataplane, exists) =
        KernelDataplane::open_existing(&args.dummy_interface).context("opening netlink")?;
    let observed = dataplane.observe().await.context("dumping IPVS")?;
    let node_addresses = dataplane
        .node_addresses()
        .await
        .context("listing node addresses")?;
    let nothing = Intent::new(DesiredState {
        node_addresses: node_addresses.into_iter().collect(),
        ..DesiredState::default()
    });
    let planned = plan(
        &observed,
        &nothing,
        Extent::All,
        &PlanConfig::from(&args),
        &Default::default(),
        std::time::Instant::now(),
    );
    let report = dataplane.apply(&planned.ops).await;
    let mut failed = 0;
    for error in report.results.iter().filter_map(|r| r.as_ref().err()) {
        failed += 1;
        eprintln!("kube-ipvs: {}", Chain(error));
    }
    if let Err(e) = Firewall::new().cleanup() {
        eprintln!("kube-ipvs: {}", Chain(&e));
        failed += 1;
    }
    if let Err(e) = forward::remove_forward() {
        eprintln!("kube-ipvs: {}", Chain(&e));
        failed += 1;
    }
    if exists {
        dataplane
            .route()
            .delete_link(&args.dummy_interface)
            .context("deleting the dummy interface")?;
    }
    let virtual_servers = planned
        .ops
        .iter()
        .filter(|op| matches!(op, Op::Ipvs(Operation::DelService(_))))
        .count();
    let addresses = planned
        .ops
        .iter()
        .filter(|op| matches!(op, Op::UnbindAddress(_)))
        .count();
    println!(
        "removed {virtual_servers} virtual servers and {addresses} addresses{}",
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
