//! What the kernel holds, as the reconciler last saw it: one dump, then kept
//! up to date by the operations that succeeded.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use kube_ipvs_model::{
    DumpedRealServer, DumpedVirtualServer, Operation, RealServer, RealServerCounters,
    RealServerKey, VirtualServer, VirtualServerKey,
};

use crate::op::Op;
use crate::vec_map::{Keyed, KeyedVec};

/// The connection counts of a real server, the only counters the planner
/// reads (a drained real server goes when they reach zero). The traffic
/// counters of a dump are not kept: at 100,000 real servers they were
/// four-fifths of the cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Connections {
    /// Established connections.
    pub active_connections: u32,
    /// Connections in other states (closing, `TIME_WAIT`, UDP flows).
    pub inactive_connections: u32,
}

impl From<RealServerCounters> for Connections {
    fn from(c: RealServerCounters) -> Self {
        Connections {
            active_connections: c.active_connections,
            inactive_connections: c.inactive_connections,
        }
    }
}

impl From<ObservedRealServer> for DumpedRealServer {
    /// The real server with its connection counts; traffic counters zero.
    fn from(o: ObservedRealServer) -> Self {
        DumpedRealServer {
            server: o.server,
            counters: RealServerCounters {
                active_connections: o.counters.active_connections,
                inactive_connections: o.counters.inactive_connections,
                ..Default::default()
            },
        }
    }
}

/// A real server in the kernel: its configuration and connection counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObservedRealServer {
    /// Its configuration.
    pub server: RealServer,
    /// Its connections at the last dump.
    pub counters: Connections,
}

impl Keyed for ObservedRealServer {
    type Key = RealServerKey;

    fn key(&self) -> &RealServerKey {
        &self.server.key
    }
}

impl From<DumpedRealServer> for ObservedRealServer {
    fn from(d: DumpedRealServer) -> Self {
        ObservedRealServer {
            server: d.server,
            counters: d.counters.into(),
        }
    }
}

/// A virtual server in the kernel with its real servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedVirtualServer {
    /// Its configuration.
    pub service: VirtualServer,
    /// Its real servers, with the connections of the last dump (a sorted
    /// vector: most virtual servers have a handful).
    pub real_servers: KeyedVec<ObservedRealServer>,
}

/// The kernel's IPVS table and the dummy interface's addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// Every virtual server, owned or not.
    pub virtual_servers: BTreeMap<VirtualServerKey, ObservedVirtualServer>,
    /// The addresses bound on the dummy interface.
    pub addresses: BTreeSet<IpAddr>,
}

impl Observed {
    /// Packs the maps a sync filled one virtual server and address at a
    /// time into full nodes ([`crate::dense`]).
    pub fn pack(&mut self) {
        crate::dense::pack(&mut self.virtual_servers);
        crate::dense::pack_set(&mut self.addresses);
    }

    /// Builds the observed state from one dump of services with their
    /// destinations and one listing of the dummy interface's addresses.
    pub fn from_dump(
        dump: impl IntoIterator<Item = (DumpedVirtualServer, Vec<DumpedRealServer>)>,
        addresses: impl IntoIterator<Item = IpAddr>,
    ) -> Self {
        Self::from_compact_dump(
            dump.into_iter().map(|(vs, dests)| {
                let real_servers = dests.into_iter().map(ObservedRealServer::from).collect();
                (vs, real_servers)
            }),
            addresses,
        )
    }

    /// Builds the observed state from a dump whose real servers were kept
    /// compact as they were read ([`ObservedRealServer`]s by key).
    pub fn from_compact_dump(
        dump: impl IntoIterator<Item = (DumpedVirtualServer, KeyedVec<ObservedRealServer>)>,
        addresses: impl IntoIterator<Item = IpAddr>,
    ) -> Self {
        let virtual_servers = dump
            .into_iter()
            .map(|(vs, real_servers)| {
                let mut service = vs.service;
                service.flags = service.flags.configurable();
                (
                    service.key,
                    ObservedVirtualServer {
                        service,
                        real_servers,
                    },
                )
            })
            .collect();
        Observed {
            virtual_servers,
            addresses: addresses.into_iter().collect(),
        }
    }

    /// Takes a dump of the virtual servers alone (the first step of a full
    /// resync in parts) and of the dummy interface's addresses: the cache
    /// then holds exactly the dumped virtual servers, each with the real
    /// servers the cache had for it, until its own dump refreshes them.
    /// Returns the dumped virtual servers the cache did not know, whose real
    /// servers are unknown (empty) until dumped.
    pub fn take_virtual_server_dump(
        &mut self,
        virtual_servers: impl IntoIterator<Item = VirtualServer>,
        addresses: impl IntoIterator<Item = IpAddr>,
    ) -> BTreeSet<VirtualServerKey> {
        let mut before = std::mem::take(&mut self.virtual_servers);
        let mut unknown = BTreeSet::new();
        self.virtual_servers = virtual_servers
            .into_iter()
            .map(|mut service| {
                service.flags = service.flags.configurable();
                let real_servers = match before.remove(&service.key) {
                    Some(cached) => cached.real_servers,
                    None => {
                        unknown.insert(service.key);
                        KeyedVec::default()
                    }
                };
                (
                    service.key,
                    ObservedVirtualServer {
                        service,
                        real_servers,
                    },
                )
            })
            .collect();
        self.addresses = addresses.into_iter().collect();
        unknown
    }

    /// Replaces the real servers of a virtual server the cache holds with a
    /// fresh dump of them; one it does not hold (gone since) is left out.
    pub fn refresh_real_servers(&mut self, key: &VirtualServerKey, dumped: Vec<DumpedRealServer>) {
        if let Some(vs) = self.virtual_servers.get_mut(key) {
            vs.real_servers = dumped.into_iter().map(ObservedRealServer::from).collect();
        }
    }

    /// The number of real servers across every virtual server.
    pub fn real_server_count(&self) -> usize {
        self.virtual_servers
            .values()
            .map(|v| v.real_servers.len())
            .sum()
    }

    /// Records an operation the kernel accepted, so the next incremental
    /// plan starts from what the kernel now holds without a dump.
    pub fn record(&mut self, op: &Op) {
        match op {
            Op::BindAddress(a) => {
                self.addresses.insert(*a);
            }
            Op::UnbindAddress(a) => {
                self.addresses.remove(a);
            }
            Op::Ipvs(op) => self.record_ipvs(op),
        }
    }

    /// [`Self::record`] of each operation in turn; the real servers of a
    /// run of them added to one virtual server (as a plan adds them) are
    /// recorded with one lookup of the virtual server, not one each.
    pub fn record_all<'o>(&mut self, ops: impl IntoIterator<Item = &'o Op>) {
        let mut ops = ops.into_iter().peekable();
        while let Some(op) = ops.next() {
            let Some((key, dest)) = dest_of(op) else {
                self.record(op);
                continue;
            };
            let mut vs = self.virtual_servers.get_mut(key);
            let mut dest = Some(dest);
            while let Some(d) = dest {
                if let Some(vs) = &mut vs {
                    vs.record_dest(d);
                }
                dest = ops
                    .next_if(|next| dest_of(next).is_some_and(|(k, _)| k == key))
                    .and_then(|next| dest_of(next).map(|(_, d)| d));
            }
        }
    }

    fn record_ipvs(&mut self, op: &Operation) {
        match op {
            Operation::NewService(s) | Operation::SetService(s) => {
                self.virtual_servers
                    .entry(s.key)
                    .and_modify(|o| o.service = s.clone())
                    .or_insert_with(|| ObservedVirtualServer {
                        service: s.clone(),
                        real_servers: KeyedVec::new(),
                    });
            }
            Operation::DelService(k) => {
                self.virtual_servers.remove(k);
            }
            Operation::NewDest(k, d) | Operation::SetDest(k, d) => {
                if let Some(vs) = self.virtual_servers.get_mut(k) {
                    vs.record_dest(d);
                }
            }
            Operation::DelDest(k, d) => {
                if let Some(vs) = self.virtual_servers.get_mut(k) {
                    vs.real_servers.remove(d);
                }
            }
        }
    }
}

/// The virtual server and real server of an operation that adds or changes
/// a real server.
fn dest_of(op: &Op) -> Option<(&VirtualServerKey, &RealServer)> {
    match op {
        Op::Ipvs(Operation::NewDest(k, d) | Operation::SetDest(k, d)) => Some((k, d)),
        _ => None,
    }
}

impl ObservedVirtualServer {
    /// A real server added or changed, keeping the connections last dumped
    /// of the one it replaces.
    fn record_dest(&mut self, server: &RealServer) {
        let counters = self
            .real_servers
            .get(&server.key)
            .map_or(Connections::default(), |o| o.counters);
        self.real_servers.insert(
            server.key,
            ObservedRealServer {
                server: *server,
                counters,
            },
        );
    }
}
