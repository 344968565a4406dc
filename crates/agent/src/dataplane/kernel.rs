//! The kernel dataplane: IPVS over generic netlink and the dummy interface's
//! addresses over rtnetlink, through the netlink crate.
//!
//! The netlink crate's API is blocking. Each call is one batch or one dump,
//! milliseconds even at scale, and the loop has nothing else to do while it
//! waits for the kernel, so the calls run on the loop's task directly.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use kube_ipvs_controller::{KeyedVec, Observed, ObservedRealServer, Op};
use kube_ipvs_netlink::{
    address::LinkAddress, link::Link, DumpedRealServer, Ipvs, Operation, RealServerKey, Route,
    Stats, VirtualServerKey,
};

use super::setup::sysctl;
pub use super::setup::{
    conn_reuse_mode, modprobe, open_ipvs, setup, ConntrackSettings, Setup, SetupError, Sysctls,
};
use super::{
    ApplyReport, Dataplane, DataplaneError, OperationFailure, Repaired, VirtualServerDump,
};

/// The traffic counters of one dump, for `dump --stats`.
#[derive(Debug, Default)]
pub struct TrafficStats {
    /// Per virtual server.
    pub virtual_servers: BTreeMap<VirtualServerKey, Stats>,
    /// Per real server of a virtual server.
    pub real_servers: BTreeMap<(VirtualServerKey, RealServerKey), Stats>,
}

/// The kernel's IPVS table and the dummy interface.
pub struct KernelDataplane {
    ipvs: Ipvs,
    route: Route,
    dummy: String,
    ifindex: u32,
    /// Scheduler modules already asked for after the kernel lacked them.
    modules_tried: BTreeSet<String>,
    /// The sysctls set at start, put back when changed.
    sysctls: Sysctls,
}

impl KernelDataplane {
    /// A dataplane over handles [`setup`] opened.
    pub(super) fn new(
        ipvs: Ipvs,
        route: Route,
        dummy: String,
        ifindex: u32,
        sysctls: Sysctls,
    ) -> Self {
        KernelDataplane {
            ipvs,
            route,
            dummy,
            ifindex,
            modules_tried: BTreeSet::new(),
            sysctls,
        }
    }

    /// A dataplane over an existing interface, for commands that only read
    /// (`dump`) or clean up, with what the kernel says of the interface
    /// (`None` when it does not exist). Nothing checks that it is a dummy:
    /// the caller decides whether that matters before it writes.
    pub fn open_existing(dummy: &str) -> Result<(Self, Option<Link>), SetupError> {
        let ipvs = open_ipvs()?;
        let mut route = Route::open().map_err(SetupError::Open)?;
        let link = route
            .link(dummy)
            .map_err(|e| SetupError::Dummy(dummy.to_owned(), e))?;
        Ok((
            KernelDataplane {
                ipvs,
                route,
                dummy: dummy.to_owned(),
                ifindex: link.as_ref().map_or(0, |l| l.index),
                modules_tried: BTreeSet::new(),
                sysctls: Sysctls::default(),
            },
            link,
        ))
    }

    /// The IPVS handle.
    pub fn ipvs(&mut self) -> &mut Ipvs {
        &mut self.ipvs
    }

    /// The rtnetlink handle.
    pub fn route(&mut self) -> &mut Route {
        &mut self.route
    }

    /// One dump with the services' traffic counters too (for `dump --stats`).
    pub fn observe_with_stats(&mut self) -> Result<(Observed, TrafficStats), DataplaneError> {
        let mut stats = TrafficStats::default();
        let observed = self.observe_dump(Some(&mut stats))?;
        Ok((observed, stats))
    }

    /// One dump; the traffic counters go to `stats` when asked for (the
    /// reconciler keeps connection counts only).
    fn observe_dump(
        &mut self,
        stats: Option<&mut TrafficStats>,
    ) -> Result<Observed, DataplaneError> {
        // Each virtual server's real servers become the cache's compact
        // form as soon as their dump is read; the traffic counters are
        // copied out only when asked for.
        let mut stats = stats;
        let dump = self
            .ipvs
            .dump_all_with(|key, destinations| {
                if let Some(stats) = stats.as_deref_mut() {
                    stats.real_servers.extend(
                        destinations
                            .iter()
                            .map(|rs| ((*key, rs.server.key), rs.counters.stats)),
                    );
                }
                destinations
                    .into_iter()
                    .map(ObservedRealServer::from)
                    .collect::<KeyedVec<_>>()
            })
            .map_err(DataplaneError::DumpIpvs)?;
        if let Some(stats) = stats {
            stats
                .virtual_servers
                .extend(dump.iter().map(|(vs, _)| (vs.service.key, vs.stats)));
        }
        let addresses = self.dummy_addresses()?;
        Ok(Observed::from_compact_dump(dump, addresses))
    }

    /// The addresses bound on the dummy interface.
    fn dummy_addresses(&mut self) -> Result<Vec<IpAddr>, DataplaneError> {
        if self.ifindex == 0 {
            return Ok(Vec::new());
        }
        let all = self
            .route
            .all_addresses()
            .map_err(DataplaneError::DumpAddresses)?;
        Ok(self.dummy_addresses_among(&all))
    }

    /// The dummy interface's addresses among those of a dump of every link.
    fn dummy_addresses_among(&self, all: &[LinkAddress]) -> Vec<IpAddr> {
        if self.ifindex == 0 {
            return Vec::new();
        }
        all.iter()
            .filter(|a| a.ifindex == self.ifindex)
            .map(|a| a.address)
            // The kernel gives the link an IPv6 link-local address each
            // time it comes up; it is not a Service's, and not ours to remove.
            .filter(|a| !is_ipv6_link_local(a))
            .collect()
    }
}

fn is_ipv6_link_local(address: &IpAddr) -> bool {
    matches!(address, IpAddr::V6(a) if (a.segments()[0] & 0xffc0) == 0xfe80)
}

impl Dataplane for KernelDataplane {
    async fn observe(&mut self) -> Result<Observed, DataplaneError> {
        self.observe_dump(None)
    }

    async fn destinations(
        &mut self,
        keys: &[VirtualServerKey],
    ) -> Result<Vec<(VirtualServerKey, Vec<DumpedRealServer>)>, DataplaneError> {
        let dumped = self
            .ipvs
            .destinations_with(keys, |key, d| (*key, d))
            .map_err(|e| match e {
                kube_ipvs_netlink::Error::DumpDestinations { service, .. } => {
                    DataplaneError::DumpDestinations(service, e)
                }
                e => DataplaneError::DumpIpvs(e),
            })?;
        Ok(dumped)
    }

    async fn observe_virtual_servers(&mut self) -> Result<VirtualServerDump, DataplaneError> {
        let virtual_servers = self
            .ipvs
            .services()
            .map_err(DataplaneError::DumpIpvs)?
            .into_iter()
            .map(|d| d.service)
            .collect();
        // One listing of every address gives the dummy interface's and the
        // node's own: at 10,000 Services the dummy holds 10,000, and a
        // second listing for the node's cost as much again. When the links
        // cannot be listed, the caller lists the node's addresses itself
        // (and reports why that fails).
        let all = self
            .route
            .all_addresses()
            .map_err(DataplaneError::DumpAddresses)?;
        let node_addresses = self
            .route
            .local_addresses_among(&all, &[self.dummy.as_str()], &[])
            .ok();
        Ok(VirtualServerDump {
            virtual_servers,
            addresses: self.dummy_addresses_among(&all),
            node_addresses,
        })
    }

    async fn apply(&mut self, ops: &[Op]) -> ApplyReport {
        let mut results: Vec<Option<Result<(), DataplaneError>>> =
            (0..ops.len()).map(|_| None).collect();
        let mut sendmsg_calls = 0;

        // The plan orders binds, then IPVS writes, then unbinds; each group
        // goes to the kernel as one batch.
        let binds: Vec<(usize, IpAddr)> = pick(ops, |op| match op {
            Op::BindAddress(a) => Some(*a),
            _ => None,
        });
        // Indices only: the batch is copied once, in `apply_ipvs`.
        let ipvs: Vec<(usize, ())> = pick(ops, |op| matches!(op, Op::Ipvs(_)).then_some(()));
        let unbinds: Vec<(usize, IpAddr)> = pick(ops, |op| match op {
            Op::UnbindAddress(a) => Some(*a),
            _ => None,
        });

        self.apply_addresses(&binds, true, ops, &mut results, &mut sendmsg_calls);
        self.apply_ipvs(&ipvs, ops, &mut results, &mut sendmsg_calls);
        self.apply_addresses(&unbinds, false, ops, &mut results, &mut sendmsg_calls);
        ApplyReport {
            results: results
                .into_iter()
                .zip(ops)
                .map(|(r, op)| {
                    r.unwrap_or_else(|| {
                        Err(DataplaneError::operation(op, OperationFailure::NotApplied))
                    })
                })
                .collect(),
            sendmsg_calls,
        }
    }

    async fn repair(&mut self) -> Result<Vec<Repaired>, DataplaneError> {
        let mut repaired = Vec::new();
        let was_up = self
            .route
            .link(&self.dummy)
            .map_err(|e| DataplaneError::Dummy(self.dummy.clone(), e))?
            .is_some_and(|l| l.up && l.index == self.ifindex);
        let ifindex = self
            .route
            .ensure_dummy(&self.dummy)
            .map_err(|e| DataplaneError::Dummy(self.dummy.clone(), e))?;
        if !was_up {
            // A new link holds none of the addresses: the dump that follows
            // sees that, and the plan binds them again.
            self.ifindex = ifindex;
            repaired.push(Repaired::DummyInterface(self.dummy.clone()));
        }
        for (path, value) in self.sysctls.iter() {
            match sysctl(path, value) {
                Ok(true) => repaired.push(Repaired::Sysctl(path.to_owned())),
                Ok(false) => {}
                Err(e) => return Err(DataplaneError::Sysctl(path.to_owned(), e)),
            }
        }
        Ok(repaired)
    }

    async fn node_addresses(&mut self) -> Result<Vec<IpAddr>, DataplaneError> {
        self.route
            .local_addresses(&[self.dummy.as_str()], &[])
            .map_err(DataplaneError::NodeAddresses)
    }
}

fn pick<T>(ops: &[Op], f: impl Fn(&Op) -> Option<T>) -> Vec<(usize, T)> {
    ops.iter()
        .enumerate()
        .filter_map(|(i, op)| f(op).map(|t| (i, t)))
        .collect()
}

impl KernelDataplane {
    /// After the kernel refused a virtual server with ENOENT, its scheduler
    /// module is missing and the kernel could not load it itself (it asks
    /// for `ip_vs_<name>` when one is first used): load it, once per
    /// scheduler, so the retry of the next sync finds it.
    fn load_missing_scheduler(&mut self, op: &Op, error: &std::io::Error) {
        let Op::Ipvs(Operation::NewService(vs) | Operation::SetService(vs)) = op else {
            return;
        };
        if error.kind() != std::io::ErrorKind::NotFound {
            return;
        }
        let module = format!("ip_vs_{}", vs.scheduler.name());
        if !self.modules_tried.insert(module.clone()) {
            return;
        }
        match modprobe(&module) {
            Ok(()) => tracing::info!(module, "loaded a scheduler module the kernel lacked"),
            Err(e) => {
                tracing::warn!(error = %crate::error::Chain(&e), "loading a scheduler module failed")
            }
        }
    }

    /// Binds (`add`) or unbinds `group` on the dummy interface in one batch.
    fn apply_addresses(
        &mut self,
        group: &[(usize, IpAddr)],
        add: bool,
        ops: &[Op],
        results: &mut [Option<Result<(), DataplaneError>>],
        sendmsg_calls: &mut usize,
    ) {
        if group.is_empty() {
            return;
        }
        let addresses: Vec<IpAddr> = group.iter().map(|(_, a)| *a).collect();
        let before = self.route.syscalls().sendmsg;
        let outcome = if add {
            self.route.add_addresses(self.ifindex, &addresses)
        } else {
            self.route.remove_addresses(self.ifindex, &addresses)
        };
        *sendmsg_calls += self.route.syscalls().sendmsg.saturating_sub(before);
        match outcome {
            Ok(per_address) => {
                for ((i, _), r) in group.iter().zip(per_address) {
                    results[*i] = Some(r.map_err(|e| DataplaneError::operation(&ops[*i], e)));
                }
            }
            Err(e) => {
                // The batch failed as a whole: each operation carries the error.
                let e = std::sync::Arc::new(e);
                for (i, _) in group {
                    results[*i] = Some(Err(DataplaneError::operation(
                        &ops[*i],
                        OperationFailure::Batch(e.clone()),
                    )));
                }
            }
        }
    }

    fn apply_ipvs(
        &mut self,
        ipvs: &[(usize, ())],
        ops: &[Op],
        results: &mut [Option<Result<(), DataplaneError>>],
        sendmsg_calls: &mut usize,
    ) {
        if ipvs.is_empty() {
            return;
        }
        let batch: Vec<Operation> = ipvs
            .iter()
            .filter_map(|(i, ())| match &ops[*i] {
                Op::Ipvs(o) => Some(o.clone()),
                _ => None,
            })
            .collect();
        match self.ipvs.apply(&batch) {
            Ok(report) => {
                *sendmsg_calls += report.sendmsg_calls;
                for ((i, _), r) in ipvs.iter().zip(report.results) {
                    if let Err(e) = &r {
                        self.load_missing_scheduler(&ops[*i], &e.source);
                    }
                    results[*i] = Some(r.map_err(|e| {
                        DataplaneError::operation(&ops[*i], OperationFailure::Refused(e.source))
                    }));
                }
            }
            Err(e) => {
                let e = std::sync::Arc::new(e);
                for (i, _) in ipvs {
                    results[*i] = Some(Err(DataplaneError::operation(
                        &ops[*i],
                        OperationFailure::Batch(e.clone()),
                    )));
                }
            }
        }
    }
}
