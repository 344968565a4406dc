//! One kernel write the planner emits and the reconciler applies: an IPVS
//! operation, or an address bound or unbound on the dummy interface.

use std::fmt;
use std::net::IpAddr;

use kube_ipvs_model::Operation;

/// One kernel write: an IPVS operation or an address on the dummy interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// An IPVS operation.
    Ipvs(Operation),
    /// Bind an address on the dummy interface.
    BindAddress(IpAddr),
    /// Remove an address from the dummy interface.
    UnbindAddress(IpAddr),
}

impl Op {
    /// A label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Ipvs(op) => op.kind().as_str(),
            Op::BindAddress(_) => "bind_address",
            Op::UnbindAddress(_) => "unbind_address",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Ipvs(op) => op.fmt(f),
            Op::BindAddress(a) => write!(f, "bind address {a}"),
            Op::UnbindAddress(a) => write!(f, "unbind address {a}"),
        }
    }
}
