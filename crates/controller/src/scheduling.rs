//! Per-Service scheduler choice, from annotations.
//!
//! `kube-ipvs.io/scheduler` and `kube-ipvs.io/scheduler-flags` take
//! precedence over kube-router's `kube-router.io/service.scheduler` and
//! `kube-router.io/service.schedflags`, which are honoured so Services
//! written for kube-router keep their scheduler.

use std::collections::BTreeMap;

use kube_ipvs_model::{Scheduler, ServiceFlags};

use crate::skip::{SkipKind, SkipReason, Skipped};

/// The scheduler annotation.
pub const SCHEDULER_ANNOTATION: &str = "kube-ipvs.io/scheduler";
/// The scheduler-flags annotation: comma-separated `sh-fallback`,
/// `sh-port`, `mh-fallback`, `mh-port`.
pub const SCHEDULER_FLAGS_ANNOTATION: &str = "kube-ipvs.io/scheduler-flags";
/// kube-router's scheduler annotation.
pub const KUBE_ROUTER_SCHEDULER_ANNOTATION: &str = "kube-router.io/service.scheduler";
/// kube-router's scheduler-flags annotation (`flag-1`, `flag-2`).
pub const KUBE_ROUTER_FLAGS_ANNOTATION: &str = "kube-router.io/service.schedflags";

/// What a Service's annotations ask of its scheduler.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SchedulerRequest {
    /// The scheduler, if the Service names a known one.
    pub scheduler: Option<Scheduler>,
    /// The flags, if the Service asks for some that parse.
    pub flags: Option<FlagRequest>,
}

/// Scheduler flags a Service asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlagRequest {
    /// The annotation they come from.
    pub annotation: &'static str,
    /// The annotation's value, for messages.
    pub value: Box<str>,
    /// The flags.
    pub flags: ServiceFlags,
    /// The scheduler the flag names are for (`sh-*`: sh, `mh-*`: mh);
    /// `None` for kube-router's `flag-N`, which fit either.
    pub scheduler: Option<Scheduler>,
}

fn annotation<'a>(
    annotations: &'a BTreeMap<String, String>,
    names: [&'static str; 2],
) -> Option<(&'static str, &'a str)> {
    names.into_iter().find_map(|name| {
        let value = annotations.get(name)?.trim();
        (!value.is_empty()).then_some((name, value))
    })
}

impl SchedulerRequest {
    /// Reads the annotations of the Service `object`, recording what does
    /// not parse in `skipped`.
    pub fn from_annotations(
        annotations: &BTreeMap<String, String>,
        object: &str,
        skipped: &mut Vec<Skipped>,
    ) -> Self {
        let mut request = SchedulerRequest::default();
        let skip = |reason| Skipped::new(SkipKind::Service, object, reason);
        if let Some((name, value)) = annotation(
            annotations,
            [SCHEDULER_ANNOTATION, KUBE_ROUTER_SCHEDULER_ANNOTATION],
        ) {
            match Scheduler::known(value) {
                Some(s) => request.scheduler = Some(s),
                None => skipped.push(skip(SkipReason::UnknownScheduler {
                    annotation: name,
                    value: value.to_owned(),
                })),
            }
        }
        if let Some((name, value)) = annotation(
            annotations,
            [SCHEDULER_FLAGS_ANNOTATION, KUBE_ROUTER_FLAGS_ANNOTATION],
        ) {
            match parse_flags(value) {
                Ok((flags, scheduler)) => {
                    request.flags = Some(FlagRequest {
                        annotation: name,
                        value: value.into(),
                        flags,
                        scheduler,
                    })
                }
                Err(why) => skipped.push(skip(SkipReason::InvalidSchedulerFlags {
                    annotation: name,
                    value: value.to_owned(),
                    why,
                })),
            }
        }
        request
    }

    /// The scheduler and flags for the Service `object`, given the default
    /// scheduler; flags its scheduler does not take are dropped and recorded
    /// in `skipped`.
    pub fn resolve(
        &self,
        default: &Scheduler,
        object: &str,
        skipped: &mut Vec<Skipped>,
    ) -> (Scheduler, ServiceFlags) {
        let scheduler = self.scheduler.clone().unwrap_or_else(|| default.clone());
        let Some(request) = &self.flags else {
            // kube-proxy sets mh-port on every virtual server when its one
            // scheduler is mh (`pkg/proxy/ipvs/proxier.go` `syncProxyRules`,
            // `FlagSourceHash`); a Service on the node's default does too.
            let implicit = if self.scheduler.is_none() && *default == Scheduler::Mh {
                ServiceFlags::SCHED2
            } else {
                ServiceFlags::empty()
            };
            return (scheduler, implicit);
        };
        let fits =
            scheduler.takes_flags() && request.scheduler.as_ref().is_none_or(|s| *s == scheduler);
        if fits {
            return (scheduler, request.flags);
        }
        skipped.push(Skipped::new(
            SkipKind::Service,
            object,
            SkipReason::SchedulerFlagsMismatch {
                annotation: request.annotation,
                value: request.value.to_string(),
                scheduler: scheduler.clone(),
            },
        ));
        (scheduler, ServiceFlags::empty())
    }
}

fn parse_flags(value: &str) -> Result<(ServiceFlags, Option<Scheduler>), &'static str> {
    let mut flags = ServiceFlags::empty();
    let mut scheduler = None;
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let (flag, for_scheduler) = match name {
            "sh-fallback" => (ServiceFlags::SCHED1, Some(Scheduler::Sh)),
            "sh-port" => (ServiceFlags::SCHED2, Some(Scheduler::Sh)),
            "mh-fallback" => (ServiceFlags::SCHED1, Some(Scheduler::Mh)),
            "mh-port" => (ServiceFlags::SCHED2, Some(Scheduler::Mh)),
            "flag-1" => (ServiceFlags::SCHED1, None),
            "flag-2" => (ServiceFlags::SCHED2, None),
            _ => return Err("unknown flag"),
        };
        if let Some(s) = for_scheduler {
            if scheduler.as_ref().is_some_and(|current| *current != s) {
                return Err("mixes sh and mh flags");
            }
            scheduler = Some(s);
        }
        flags |= flag;
    }
    if flags == ServiceFlags::empty() {
        return Err("no flag");
    }
    Ok((flags, scheduler))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mh_as_the_default_scheduler_hashes_the_port_too_as_kube_proxy() {
        let none = SchedulerRequest::default();
        let mut skipped = Vec::new();
        assert_eq!(
            none.resolve(&Scheduler::Mh, "default/a", &mut skipped),
            (Scheduler::Mh, ServiceFlags::SCHED2)
        );
        assert_eq!(
            none.resolve(&Scheduler::Rr, "default/a", &mut skipped),
            (Scheduler::Rr, ServiceFlags::empty())
        );
        let chosen = SchedulerRequest {
            scheduler: Some(Scheduler::Mh),
            flags: None,
        };
        assert_eq!(
            chosen.resolve(&Scheduler::Rr, "default/a", &mut skipped),
            (Scheduler::Mh, ServiceFlags::empty()),
            "a Service that picks mh itself gets the flags it asks for"
        );
        assert!(skipped.is_empty());
    }

    #[test]
    fn flag_parsing() {
        let sh = Some(Scheduler::Sh);
        let both = ServiceFlags::SCHED1 | ServiceFlags::SCHED2;
        assert_eq!(parse_flags("sh-fallback, sh-port"), Ok((both, sh)));
        assert_eq!(
            parse_flags("mh-port"),
            Ok((ServiceFlags::SCHED2, Some(Scheduler::Mh)))
        );
        assert_eq!(parse_flags("flag-1,flag-2"), Ok((both, None)));
        assert_eq!(parse_flags("sh-port,mh-port"), Err("mixes sh and mh flags"));
        assert_eq!(parse_flags("sh-port,bogus"), Err("unknown flag"));
        assert_eq!(parse_flags(" , "), Err("no flag"));
    }
}
