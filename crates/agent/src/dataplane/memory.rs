//! An in-memory dataplane that behaves like the kernel where the reconciler
//! can tell: it refuses duplicates and missing objects, and counts writes.

use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use kube_ipvs_controller::{Observed, ObservedRealServer, ObservedVirtualServer, Op};
use kube_ipvs_netlink::{DumpedRealServer, Operation, VirtualServerKey};

use super::{
    ApplyReport, Dataplane, DataplaneError, OperationFailure, Repaired, VirtualServerDump,
};

/// The shared state behind a [`MemoryDataplane`]; tests hold a clone of the
/// handle to inspect the "kernel" and inject drift or failures.
#[derive(Debug, Default)]
pub struct MemoryKernel {
    /// The IPVS table and the dummy interface's addresses.
    pub state: Observed,
    /// The node's addresses.
    pub node_addresses: Vec<IpAddr>,
    /// How many times the node's addresses were listed alone
    /// ([`Dataplane::node_addresses`]), not as part of a dump.
    pub node_address_listings: usize,
    /// Operations that will fail, once each, when applied.
    pub fail_next: Vec<Op>,
    /// Every write the kernel accepted, in order.
    pub writes: Vec<Op>,
    /// How many full dumps were taken.
    pub dumps: usize,
    /// How many times a list of operations was applied.
    pub applies: usize,
    /// Whether the dummy interface is gone (a test deleted it): binds fail
    /// with ENODEV until [`Dataplane::repair`] recreates it, as in the kernel.
    pub dummy_gone: bool,
    /// How long each dump of real servers takes (as a large table's does
    /// in the kernel), on tokio's clock.
    pub dump_delay: std::time::Duration,
}

/// A [`Dataplane`] over a [`MemoryKernel`].
#[derive(Clone, Debug, Default)]
pub struct MemoryDataplane {
    kernel: Arc<Mutex<MemoryKernel>>,
}

impl MemoryDataplane {
    /// An empty kernel.
    pub fn new() -> Self {
        Self::default()
    }

    /// The kernel, to inspect or change.
    pub fn kernel(&self) -> MutexGuard<'_, MemoryKernel> {
        // A test that panicked while holding the lock has failed already.
        self.kernel.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The kernel's answer: the errno it gives for the same mistake.
fn refuse(op: &Op, errno: i32) -> Result<(), DataplaneError> {
    Err(DataplaneError::operation(
        op,
        OperationFailure::Refused(io::Error::from_raw_os_error(errno)),
    ))
}

const ENOENT: i32 = 2;
const ENODEV: i32 = 19;
const EEXIST: i32 = 17;

impl MemoryKernel {
    fn apply_one(&mut self, op: &Op) -> Result<(), DataplaneError> {
        if let Some(i) = self.fail_next.iter().position(|f| f == op) {
            self.fail_next.remove(i);
            return Err(DataplaneError::operation(
                op,
                OperationFailure::Refused(io::Error::other("injected failure")),
            ));
        }
        if self.dummy_gone && matches!(op, Op::BindAddress(_) | Op::UnbindAddress(_)) {
            return refuse(op, ENODEV);
        }
        let vs = &mut self.state.virtual_servers;
        let ok = match op {
            Op::BindAddress(a) => self.state.addresses.insert(*a),
            Op::UnbindAddress(a) => self.state.addresses.remove(a),
            Op::Ipvs(Operation::NewService(s)) => {
                if vs.contains_key(&s.key) {
                    return refuse(op, EEXIST);
                }
                vs.insert(
                    s.key,
                    ObservedVirtualServer {
                        service: s.clone(),
                        real_servers: Default::default(),
                    },
                );
                true
            }
            Op::Ipvs(Operation::SetService(s)) => {
                vs.get_mut(&s.key).map(|o| o.service = s.clone()).is_some()
            }
            Op::Ipvs(Operation::DelService(k)) => vs.remove(k).is_some(),
            Op::Ipvs(Operation::NewDest(k, d)) => match vs.get_mut(k) {
                Some(o) if !o.real_servers.contains_key(&d.key) => {
                    o.real_servers.insert(
                        d.key,
                        ObservedRealServer {
                            server: *d,
                            counters: Default::default(),
                        },
                    );
                    true
                }
                Some(_) => return refuse(op, EEXIST),
                None => false,
            },
            Op::Ipvs(Operation::SetDest(k, d)) => vs
                .get_mut(k)
                .and_then(|o| o.real_servers.get_mut(&d.key))
                .map(|o| o.server = *d)
                .is_some(),
            Op::Ipvs(Operation::DelDest(k, d)) => vs
                .get_mut(k)
                .and_then(|o| o.real_servers.remove(d))
                .is_some(),
        };
        if !ok {
            return refuse(op, ENOENT);
        }
        self.writes.push(op.clone());
        Ok(())
    }
}

impl Dataplane for MemoryDataplane {
    async fn observe(&mut self) -> Result<Observed, DataplaneError> {
        let mut k = self.kernel();
        k.dumps += 1;
        Ok(k.state.clone())
    }

    async fn observe_virtual_servers(&mut self) -> Result<VirtualServerDump, DataplaneError> {
        let mut k = self.kernel();
        k.dumps += 1;
        Ok(VirtualServerDump {
            virtual_servers: k
                .state
                .virtual_servers
                .values()
                .map(|vs| vs.service.clone())
                .collect(),
            addresses: k.state.addresses.iter().copied().collect(),
            // As the kernel's dump does, from the same listing.
            node_addresses: Some(k.node_addresses.clone()),
        })
    }

    async fn destinations(
        &mut self,
        keys: &[VirtualServerKey],
    ) -> Result<Vec<(VirtualServerKey, Vec<DumpedRealServer>)>, DataplaneError> {
        let delay = self.kernel().dump_delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let k = self.kernel();
        Ok(keys
            .iter()
            .filter_map(|key| {
                let vs = k.state.virtual_servers.get(key)?;
                Some((*key, vs.real_servers.values().map(|&o| o.into()).collect()))
            })
            .collect())
    }

    async fn apply(&mut self, ops: &[Op]) -> ApplyReport {
        let mut k = self.kernel();
        k.applies += 1;
        ApplyReport {
            results: ops.iter().map(|op| k.apply_one(op)).collect(),
            sendmsg_calls: usize::from(!ops.is_empty()),
        }
    }

    async fn repair(&mut self) -> Result<Vec<Repaired>, DataplaneError> {
        let mut k = self.kernel();
        if !k.dummy_gone {
            return Ok(Vec::new());
        }
        k.dummy_gone = false;
        Ok(vec![Repaired::DummyInterface("kube-ipvs0".to_owned())])
    }

    async fn node_addresses(&mut self) -> Result<Vec<IpAddr>, DataplaneError> {
        let mut k = self.kernel();
        k.node_address_listings += 1;
        Ok(k.node_addresses.clone())
    }
}
