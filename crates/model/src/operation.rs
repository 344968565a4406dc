//! Kernel write operations, as the reconciler plans them and a batch applies them.

use std::fmt;

use crate::real_server::{RealServer, RealServerKey};
use crate::virtual_server::{VirtualServer, VirtualServerKey};

/// One IPVS write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    /// `IPVS_CMD_NEW_SERVICE`.
    NewService(VirtualServer),
    /// `IPVS_CMD_SET_SERVICE`: scheduler, flags, timeout or netmask changed in place.
    SetService(VirtualServer),
    /// `IPVS_CMD_DEL_SERVICE` (its destinations go with it).
    DelService(VirtualServerKey),
    /// `IPVS_CMD_NEW_DEST`.
    NewDest(VirtualServerKey, RealServer),
    /// `IPVS_CMD_SET_DEST`: weight, thresholds or forwarding changed in place.
    SetDest(VirtualServerKey, RealServer),
    /// `IPVS_CMD_DEL_DEST`.
    DelDest(VirtualServerKey, RealServerKey),
}

impl Operation {
    /// The kind of operation, for logs and metric labels.
    pub fn kind(&self) -> OperationKind {
        match self {
            Operation::NewService(_) => OperationKind::NewService,
            Operation::SetService(_) => OperationKind::SetService,
            Operation::DelService(_) => OperationKind::DelService,
            Operation::NewDest(..) => OperationKind::NewDest,
            Operation::SetDest(..) => OperationKind::SetDest,
            Operation::DelDest(..) => OperationKind::DelDest,
        }
    }

    /// The virtual service the operation is about.
    pub fn service_key(&self) -> &VirtualServerKey {
        match self {
            Operation::NewService(s) | Operation::SetService(s) => &s.key,
            Operation::DelService(k) => k,
            Operation::NewDest(k, _) | Operation::SetDest(k, _) | Operation::DelDest(k, _) => k,
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operation::NewService(s) => write!(f, "new service {} ({})", s.key, s.scheduler),
            Operation::SetService(s) => write!(f, "set service {} ({})", s.key, s.scheduler),
            Operation::DelService(k) => write!(f, "delete service {k}"),
            Operation::NewDest(k, d) => write!(f, "new destination {} of {k}", d.key),
            Operation::SetDest(k, d) => {
                write!(f, "set destination {} of {k} (weight {})", d.key, d.weight)
            }
            Operation::DelDest(k, d) => write!(f, "delete destination {d} of {k}"),
        }
    }
}

/// The kinds of [`Operation`], as `&'static str` labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OperationKind {
    /// New service.
    NewService,
    /// Set service.
    SetService,
    /// Delete service.
    DelService,
    /// New destination.
    NewDest,
    /// Set destination.
    SetDest,
    /// Delete destination.
    DelDest,
}

impl OperationKind {
    /// Every kind.
    pub const ALL: [OperationKind; 6] = [
        OperationKind::NewService,
        OperationKind::SetService,
        OperationKind::DelService,
        OperationKind::NewDest,
        OperationKind::SetDest,
        OperationKind::DelDest,
    ];

    /// A metric-label name.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::NewService => "new_service",
            OperationKind::SetService => "set_service",
            OperationKind::DelService => "del_service",
            OperationKind::NewDest => "new_dest",
            OperationKind::SetDest => "set_dest",
            OperationKind::DelDest => "del_dest",
        }
    }
}
