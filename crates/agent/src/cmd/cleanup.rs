//! `kube-ipvs cleanup`: removes everything the agent owns (its virtual
//! servers, addresses, dummy interface and nftables table) and nothing else.
//!
//! Deleting the interface takes every address on it, so `cleanup` first
//! checks that the interface is one the agent could have made: a dummy
//! whose addresses are all the agent's. The agent binds an address only
//! with a virtual server on it, and never unbinds one in
//! `--ipvs-exclude-cidrs`; an address with no virtual server, or an
//! excluded one, means someone else uses the interface. Then `cleanup`
//! refuses and writes nothing at all: no IPVS, no address, no packet filter,
//! no link. kube-proxy's `CleanupLeftovers` refuses a link that is not a
//! dummy too (`DeleteDummyDevice`: "expect dummy device"), but only after it
//! has flushed the whole IPVS table.

use std::fmt;
use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use ipnetwork::IpNetwork;
use kube_ipvs_controller::{plan, DesiredState, Extent, Intent, Observed, Op, PlanConfig};
use kube_ipvs_netlink::Operation;

use crate::cli::CleanupArgs;
use crate::dataplane::kernel::KernelDataplane;
use crate::dataplane::Dataplane as _;
use crate::error::Chain;
use crate::firewall::{forward, Firewall};

/// Plans against an empty desired state, which removes exactly what the
/// agent owns, and applies it.
pub async fn cleanup(args: CleanupArgs) -> Result<ExitCode> {
    let (mut dataplane, link) =
        KernelDataplane::open_existing(&args.dummy_interface).context("opening netlink")?;
    if let Some(link) = &link {
        if link.kind.as_deref() != Some("dummy") {
            return refuse(&Refusal::NotDummy {
                name: link.name.clone(),
                kind: link.kind.clone(),
            });
        }
    }
    let exists = link.is_some();
    let observed = dataplane.observe().await.context("dumping IPVS")?;
    let foreign = foreign_addresses(&observed, &args.ipvs_exclude_cidrs.0);
    if !foreign.is_empty() {
        return refuse(&Refusal::ForeignAddresses {
            name: args.dummy_interface.clone(),
            addresses: foreign,
        });
    }
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

fn refuse(refusal: &Refusal) -> Result<ExitCode> {
    eprintln!("kube-ipvs: {refusal}; nothing was changed");
    Ok(ExitCode::FAILURE)
}

/// Why `cleanup` changes nothing.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The interface is not a dummy, so the agent did not make it.
    #[error("{name} is not a dummy interface (its kind is {}): kube-ipvs never made it and will not remove it", kind.as_deref().unwrap_or("none"))]
    NotDummy {
        /// The interface.
        name: String,
        /// Its `IFLA_INFO_KIND`, if it has one.
        kind: Option<String>,
    },
    /// The dummy interface holds addresses that are not the agent's.
    #[error("{name} holds addresses that are not kube-ipvs's: {}", list(addresses))]
    ForeignAddresses {
        /// The interface.
        name: String,
        /// The addresses, and why each is not the agent's.
        addresses: Vec<(IpAddr, Foreign)>,
    },
}

fn list(addresses: &[(IpAddr, Foreign)]) -> String {
    addresses
        .iter()
        .map(|(a, why)| format!("{a} ({why})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why an address on the dummy interface is not the agent's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Foreign {
    /// No virtual server is on it; the agent binds addresses only for them.
    NoVirtualServer,
    /// It is in `--ipvs-exclude-cidrs`, which the agent never touches.
    Excluded,
}

impl fmt::Display for Foreign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Foreign::NoVirtualServer => "no virtual server uses it",
            Foreign::Excluded => "in --ipvs-exclude-cidrs",
        })
    }
}

/// The addresses on the dummy interface that are not the agent's.
/// (IPv6 link-local addresses, which the kernel gives the link itself, are
/// not in `observed`.)
pub fn foreign_addresses(
    observed: &Observed,
    exclude_cidrs: &[IpNetwork],
) -> Vec<(IpAddr, Foreign)> {
    observed
        .addresses
        .iter()
        .filter_map(|&address| {
            if exclude_cidrs.iter().any(|n| n.contains(address)) {
                Some((address, Foreign::Excluded))
            } else if !observed
                .virtual_servers
                .keys()
                .any(|k| k.address() == Some(address))
            {
                Some((address, Foreign::NoVirtualServer))
            } else {
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use kube_ipvs_controller::ObservedVirtualServer;
    use kube_ipvs_netlink::{Protocol, Scheduler, VirtualServer, VirtualServerKey};

    use super::*;

    fn observed(virtual_servers: &[&str], addresses: &[&str]) -> Observed {
        Observed {
            virtual_servers: virtual_servers
                .iter()
                .map(|a| {
                    let key = VirtualServerKey::inet(Protocol::Tcp, a.parse().unwrap(), 80);
                    let service = VirtualServer::new(key, Scheduler::Rr);
                    let real_servers = Default::default();
                    (
                        key,
                        ObservedVirtualServer {
                            service,
                            real_servers,
                        },
                    )
                })
                .collect(),
            addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn only_virtual_server_addresses_outside_the_excluded_cidrs_are_ours() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let ours = observed(&["10.96.0.1", "fd00::1"], &["10.96.0.1", "fd00::1"]);
        assert_eq!(foreign_addresses(&ours, &[]), []);

        // nodelocaldns's address, say: bound, but no virtual server on it.
        let shared = observed(&["10.96.0.1"], &["10.96.0.1", "169.254.20.10"]);
        assert_eq!(
            foreign_addresses(&shared, &[]),
            [(ip("169.254.20.10"), Foreign::NoVirtualServer)]
        );

        // Excluded: the agent never unbinds it, so it cannot go with the link.
        let exclude = ["10.96.0.0/24".parse().unwrap()];
        assert_eq!(
            foreign_addresses(&ours, &exclude),
            [(ip("10.96.0.1"), Foreign::Excluded)]
        );

        // A virtual server with no address bound is not the link's business.
        assert_eq!(foreign_addresses(&observed(&["10.0.0.5"], &[]), &[]), []);
    }

    #[test]
    fn refusals_name_the_interface_and_the_addresses() {
        let not_dummy = Refusal::NotDummy {
            name: "eth0".into(),
            kind: Some("veth".into()),
        };
        assert_eq!(
            not_dummy.to_string(),
            "eth0 is not a dummy interface (its kind is veth): kube-ipvs never made it and will not remove it"
        );
        let foreign = Refusal::ForeignAddresses {
            name: "kube-ipvs0".into(),
            addresses: vec![
                ("169.254.20.10".parse().unwrap(), Foreign::NoVirtualServer),
                ("10.96.0.1".parse().unwrap(), Foreign::Excluded),
            ],
        };
        assert_eq!(
            foreign.to_string(),
            "kube-ipvs0 holds addresses that are not kube-ipvs's: 169.254.20.10 (no virtual server uses it), 10.96.0.1 (in --ipvs-exclude-cidrs)"
        );
    }
}
