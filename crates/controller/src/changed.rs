//! What a change to the snapshot affects: the Services and stream-services
//! entries to map again, or everything.

use std::collections::BTreeSet;

use crate::service_ref::{ServiceRef, StreamEntryRef};

/// The Services a change affects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changed {
    /// The Services whose desired state may differ (or whose endpoints
    /// changed).
    pub services: BTreeSet<ServiceRef>,
    /// The stream-services entries added, changed or removed.
    /// [`crate::stream_services::affected`] adds what depends on them.
    pub streams: BTreeSet<StreamEntryRef>,
    /// Whether every Service may differ (the node's zone or addresses changed).
    pub all: bool,
}

impl Changed {
    /// A change of one Service.
    pub fn service(service: ServiceRef) -> Self {
        Changed {
            services: BTreeSet::from([service]),
            ..Changed::default()
        }
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        !self.all && self.services.is_empty() && self.streams.is_empty()
    }

    /// Whether `service` may differ.
    pub fn affects(&self, service: &ServiceRef) -> bool {
        self.all || self.services.contains(service)
    }

    /// Adds another change.
    pub fn merge(&mut self, other: Changed) {
        self.all |= other.all;
        self.services.extend(other.services);
        self.streams.extend(other.streams);
    }
}
