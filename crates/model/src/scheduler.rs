//! IPVS schedulers by their kernel names, with an `Other` fallback for a
//! name this crate does not know.

use std::fmt;
use std::str::FromStr;

/// An IPVS scheduler (`IPVS_SVC_ATTR_SCHED_NAME`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Scheduler {
    /// Round robin.
    #[default]
    Rr,
    /// Weighted round robin.
    Wrr,
    /// Least connection.
    Lc,
    /// Weighted least connection.
    Wlc,
    /// Locality-based least connection.
    Lblc,
    /// Locality-based least connection with replication.
    Lblcr,
    /// Destination hashing.
    Dh,
    /// Source hashing.
    Sh,
    /// Shortest expected delay.
    Sed,
    /// Never queue.
    Nq,
    /// Maglev hashing.
    Mh,
    /// Weighted failover.
    Fo,
    /// Weighted overflow.
    Ovf,
    /// Power of two random choices.
    Twos,
    /// A scheduler this crate does not know by name.
    Other(String),
}

impl Scheduler {
    /// Every scheduler this crate knows by name.
    pub const KNOWN: [Scheduler; 14] = [
        Scheduler::Rr,
        Scheduler::Wrr,
        Scheduler::Lc,
        Scheduler::Wlc,
        Scheduler::Lblc,
        Scheduler::Lblcr,
        Scheduler::Dh,
        Scheduler::Sh,
        Scheduler::Sed,
        Scheduler::Nq,
        Scheduler::Mh,
        Scheduler::Fo,
        Scheduler::Ovf,
        Scheduler::Twos,
    ];

    /// The kernel's name of the scheduler.
    pub fn name(&self) -> &str {
        match self {
            Scheduler::Rr => "rr",
            Scheduler::Wrr => "wrr",
            Scheduler::Lc => "lc",
            Scheduler::Wlc => "wlc",
            Scheduler::Lblc => "lblc",
            Scheduler::Lblcr => "lblcr",
            Scheduler::Dh => "dh",
            Scheduler::Sh => "sh",
            Scheduler::Sed => "sed",
            Scheduler::Nq => "nq",
            Scheduler::Mh => "mh",
            Scheduler::Fo => "fo",
            Scheduler::Ovf => "ovf",
            Scheduler::Twos => "twos",
            Scheduler::Other(name) => name,
        }
    }

    /// The known scheduler of that name, or `None`.
    pub fn known(name: &str) -> Option<Self> {
        Self::KNOWN.into_iter().find(|s| s.name() == name)
    }

    /// Whether the `sched1`/`sched2` flags mean something for this scheduler.
    pub fn takes_flags(&self) -> bool {
        matches!(self, Scheduler::Sh | Scheduler::Mh)
    }
}

impl FromStr for Scheduler {
    type Err = std::convert::Infallible;

    /// Never fails: an unknown name becomes [`Scheduler::Other`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::known(s).unwrap_or_else(|| Scheduler::Other(s.to_owned())))
    }
}

impl fmt::Display for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
