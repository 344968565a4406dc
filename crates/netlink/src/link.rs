//! The dummy link that holds the virtual IPs (`kube-ipvs0`).

use std::io;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;

use crate::error::Error;
use crate::route::Route;

/// What the kernel says about a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// Its index.
    pub index: u32,
    /// Its name.
    pub name: String,
    /// Its `IFLA_INFO_KIND` ("dummy", "veth"...), if it has one.
    pub kind: Option<String>,
    /// Whether it is administratively up.
    pub up: bool,
    /// Whether it is a loopback device.
    pub loopback: bool,
}

impl Link {
    /// What a `RTM_NEWLINK` message (a dump entry) says about its link.
    pub fn from_message(msg: &LinkMessage) -> Self {
        let mut link = Link {
            index: msg.header.index,
            name: String::new(),
            kind: None,
            up: msg.header.flags.contains(LinkFlags::Up),
            loopback: msg.header.flags.contains(LinkFlags::Loopback),
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(name) => link.name.clone_from(name),
                LinkAttribute::LinkInfo(infos) => {
                    link.kind = infos.iter().find_map(|i| match i {
                        LinkInfo::Kind(kind) => Some(kind.to_string()),
                        _ => None,
                    })
                }
                _ => {}
            }
        }
        link
    }
}

fn by_name(name: &str) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
    msg
}

impl Route {
    /// The link called `name`, if there is one.
    pub fn link(&mut self, name: &str) -> Result<Option<Link>, Error> {
        let lookup = self.request(RouteNetlinkMessage::GetLink(by_name(name)), 0);
        match lookup {
            Ok(replies) => Ok(replies.iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(Link::from_message(link)),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(nix::libc::ENODEV) => Ok(None),
            Err(source) => Err(Error::GetLink {
                name: name.to_owned(),
                source,
            }),
        }
    }

    /// Every link.
    pub fn links(&mut self) -> Result<Vec<Link>, Error> {
        let replies = self
            .dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))
            .map_err(|source| Error::GetLink {
                name: "*".to_owned(),
                source,
            })?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(Link::from_message(link)),
                _ => None,
            })
            .collect())
    }

    /// Creates the dummy link `name` if it is missing, sets it up, and
    /// returns its index. A link of another kind by that name is an error
    /// (`AlreadyExists`): it is never taken over.
    pub fn ensure_dummy(&mut self, name: &str) -> Result<u32, Error> {
        let fail = |source: io::Error| Error::EnsureDummy {
            name: name.to_owned(),
            source,
        };
        let link = match self.link(name)? {
            Some(link) => link,
            None => {
                let mut msg = by_name(name);
                msg.header.flags = LinkFlags::Up;
                msg.header.change_mask = LinkFlags::Up;
                msg.attributes
                    .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                        InfoKind::Dummy,
                    )]));
                self.acked_one(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
                    .map_err(fail)?;
                self.link(name)?
                    .ok_or_else(|| fail(io::Error::from_raw_os_error(nix::libc::ENODEV)))?
            }
        };
        if link.kind.as_deref() != Some("dummy") {
            return Err(fail(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "link {name} exists and is of kind {}, not dummy",
                    link.kind.as_deref().unwrap_or("none")
                ),
            )));
        }
        if !link.up {
            let mut msg = LinkMessage::default();
            msg.header.index = link.index;
            msg.header.flags = LinkFlags::Up;
            msg.header.change_mask = LinkFlags::Up;
            self.acked_one(RouteNetlinkMessage::SetLink(msg), 0)
                .map_err(fail)?;
        }
        Ok(link.index)
    }

    /// Deletes the link `name`; a missing link is not an error.
    pub fn delete_link(&mut self, name: &str) -> Result<(), Error> {
        match self.acked_one(RouteNetlinkMessage::DelLink(by_name(name)), 0) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(nix::libc::ENODEV) => Ok(()),
            Err(source) => Err(Error::DeleteLink {
                name: name.to_owned(),
                source,
            }),
        }
    }

    pub(crate) fn acked_one(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.acked(vec![(msg, flags)])?
            .pop()
            .unwrap_or_else(|| Err(io::Error::other("no acknowledgement")))
    }
}
