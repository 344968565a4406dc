//! Coexisting with an iptables `FORWARD` chain whose policy is `DROP`
//! (Docker sets it; hardened nodes do).
//!
//! The reply of an IPVS connection that was not masqueraded to the node
//! (a pod reaching a Service whose endpoint is on this node, an outside
//! client of a ClusterIP or of a `Local` Service) is routed by the node:
//! it crosses the `FORWARD` hook, where IPVS un-NATs it after the filter
//! chains. In netfilter every base chain of every table sees the packet and
//! a drop anywhere is final, so an accept in kube-ipvs's own nftables table
//! cannot save it from iptables' drop policy.
//!
//! kube-proxy's IPVS mode accepts such traffic in iptables' filter table
//! (its `KUBE-FORWARD` chain: marked packets and `RELATED,ESTABLISHED`).
//! kube-ipvs does the narrowest equivalent, and only where it is needed:
//! when the `FORWARD` chain's policy is `DROP`, one rule at its head,
//! commented as kube-ipvs's, accepts packets in the reply direction of
//! established connections (`--ctstate RELATED,ESTABLISHED --ctdir
//! REPLY`): a reply exists only for a connection whose first packet got
//! through, and for a Service that first packet went through INPUT, where
//! IPVS took it, not through FORWARD. (`-m ipvs --ipvs` cannot serve: a
//! reply is marked as IPVS's only when IPVS un-NATs it, after the filter
//! chains.) With any other policy the rule is removed. Each of iptables-nft and iptables-legacy is handled where
//! it has a filter table (the legacy one only when its module is loaded, so
//! that looking does not create it), for IPv4 and IPv6. `cleanup` removes
//! the rule.

use std::io;
use std::process::Command;

use super::FirewallError;

/// The rule's comment, which marks it as kube-ipvs's.
pub const COMMENT: &str = "kube-ipvs: replies of Service connections";

/// The rule, after the chain name.
fn rule() -> [&'static str; 12] {
    [
        "-m",
        "comment",
        "--comment",
        COMMENT,
        "-m",
        "conntrack",
        "--ctstate",
        "RELATED,ESTABLISHED",
        "--ctdir",
        "REPLY",
        "-j",
        "ACCEPT",
    ]
}

/// One iptables front end: a binary and the family it serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Iptables {
    /// The command (`iptables-nft`, `ip6tables-legacy`...).
    pub command: &'static str,
    /// The `/proc` file whose presence shows the backend holds tables
    /// (legacy only; `None`: ask the command).
    pub loaded: Option<&'static str>,
}

/// The front ends looked at, in order.
pub const FRONT_ENDS: [Iptables; 4] = [
    Iptables {
        command: "iptables-nft",
        loaded: None,
    },
    Iptables {
        command: "ip6tables-nft",
        loaded: None,
    },
    Iptables {
        command: "iptables-legacy",
        loaded: Some("/proc/net/ip_tables_names"),
    },
    Iptables {
        command: "ip6tables-legacy",
        loaded: Some("/proc/net/ip6_tables_names"),
    },
];

/// What one front end's `FORWARD` chain needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardState {
    /// No such command, or no filter table in that backend.
    Absent,
    /// The policy accepts: the rule is not there (removed if it was).
    NotNeeded,
    /// The policy drops: the rule is there (added if it was not).
    Accepting,
}

impl Iptables {
    fn run(&self, args: &[&str]) -> io::Result<std::process::Output> {
        Command::new(self.command).arg("-w").args(args).output()
    }

    fn has_rule(&self) -> io::Result<bool> {
        let mut args = vec!["-C", "FORWARD"];
        args.extend(rule());
        Ok(self.run(&args)?.status.success())
    }

    fn change(&self, op: &str) -> Result<(), FirewallError> {
        let mut args = vec![op, "FORWARD"];
        if op == "-I" {
            args.push("1");
        }
        args.extend(rule());
        let out = self.run(&args).map_err(|source| FirewallError::Iptables {
            command: self.command,
            detail: source.to_string(),
        })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(FirewallError::Iptables {
                command: self.command,
                detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            })
        }
    }

    /// Makes the rule follow the chain's policy.
    pub fn reconcile(&self) -> Result<ForwardState, FirewallError> {
        if let Some(file) = self.loaded {
            let tables = std::fs::read_to_string(file).unwrap_or_default();
            if !tables.lines().any(|t| t == "filter") {
                return Ok(ForwardState::Absent);
            }
        }
        let listing = match self.run(&["-S", "FORWARD"]) {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
            // Not installed, or no filter table: nothing can drop here.
            _ => return Ok(ForwardState::Absent),
        };
        let drops = listing.lines().any(|l| l.trim() == "-P FORWARD DROP");
        let present = self.has_rule().unwrap_or(false);
        match (drops, present) {
            (true, false) => self.change("-I")?,
            (false, true) => self.change("-D")?,
            _ => {}
        }
        Ok(if drops {
            ForwardState::Accepting
        } else {
            ForwardState::NotNeeded
        })
    }

    /// Removes the rule, if it is there.
    pub fn remove(&self) -> Result<(), FirewallError> {
        match self.has_rule() {
            Ok(true) => self.change("-D"),
            _ => Ok(()),
        }
    }
}

/// Makes every front end's rule follow its chain's policy; the states, in
/// the order of [`FRONT_ENDS`].
pub fn reconcile_forward() -> Result<Vec<ForwardState>, FirewallError> {
    FRONT_ENDS.iter().map(Iptables::reconcile).collect()
}

/// Removes the rule from every front end.
pub fn remove_forward() -> Result<(), FirewallError> {
    FRONT_ENDS.iter().try_for_each(Iptables::remove)
}
