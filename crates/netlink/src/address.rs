//! Addresses: the virtual IPs on the dummy link, and the node's own
//! addresses (for NodePort services).

use std::io;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::{AddressFamily as RouteFamily, RouteNetlinkMessage};

use crate::error::Error;
use crate::route::Route;

/// An address of the node, with the link it is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkAddress {
    /// The link's index.
    pub ifindex: u32,
    /// The address.
    pub address: IpAddr,
}

/// The `RTM_NEWADDR`/`RTM_DELADDR` message for a host address (/32 or /128)
/// on `ifindex`. IPv6 addresses skip duplicate address detection
/// (`IFA_F_NODAD`), or they would stay tentative and unusable for a while.
pub fn host_address_message(ifindex: u32, address: IpAddr) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.index = ifindex;
    msg.header.scope = AddressScope::Universe;
    match address {
        IpAddr::V4(_) => {
            msg.header.family = RouteFamily::Inet;
            msg.header.prefix_len = 32;
            msg.attributes.push(AddressAttribute::Local(address));
            msg.attributes.push(AddressAttribute::Address(address));
        }
        IpAddr::V6(_) => {
            msg.header.family = RouteFamily::Inet6;
            msg.header.prefix_len = 128;
            msg.header.flags = AddressHeaderFlags::Nodad;
            msg.attributes.push(AddressAttribute::Address(address));
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
    }
    msg
}

/// The address a `RTM_NEWADDR` message (a dump entry) gives the link:
/// `IFA_LOCAL`, else `IFA_ADDRESS`.
pub fn address_of(msg: &AddressMessage) -> Option<IpAddr> {
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on
    // point-to-point links and absent locals only for IPv6.
    let local = msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    local.or_else(|| {
        msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })
}

fn is_link_local(address: &IpAddr) -> bool {
    match address {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => (a.segments()[0] & 0xffc0) == 0xfe80,
    }
}

impl Route {
    /// Every address of every link.
    pub fn all_addresses(&mut self) -> Result<Vec<LinkAddress>, Error> {
        // Each reply converted as it is read: the messages of the 10,000
        // addresses of as many Services are never held at once.
        self.dump_each(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            |m| match m {
                RouteNetlinkMessage::NewAddress(a) => address_of(&a).map(|address| LinkAddress {
                    ifindex: a.header.index,
                    address,
                }),
                _ => None,
            },
        )
        .map_err(Error::ListAddresses)
    }

    /// The addresses on link `ifindex`.
    pub fn addresses(&mut self, ifindex: u32) -> Result<Vec<IpAddr>, Error> {
        Ok(self
            .all_addresses()?
            .into_iter()
            .filter(|a| a.ifindex == ifindex)
            .map(|a| a.address)
            .collect())
    }

    /// Adds host addresses to `ifindex`, all in as few `sendmsg` as fit; one
    /// result per address. An address already there is a success.
    pub fn add_addresses(
        &mut self,
        ifindex: u32,
        addresses: &[IpAddr],
    ) -> Result<Vec<Result<(), Error>>, Error> {
        self.address_batch(
            addresses,
            |a| {
                let msg = RouteNetlinkMessage::NewAddress(host_address_message(ifindex, a));
                (msg, NLM_F_CREATE | NLM_F_REPLACE)
            },
            nix::libc::EEXIST,
            |address, source| Error::AddAddress {
                ifindex,
                address,
                source,
            },
        )
    }

    /// Removes host addresses from `ifindex`; one result per address. An
    /// address that is not there is a success.
    pub fn remove_addresses(
        &mut self,
        ifindex: u32,
        addresses: &[IpAddr],
    ) -> Result<Vec<Result<(), Error>>, Error> {
        self.address_batch(
            addresses,
            |a| {
                let msg = RouteNetlinkMessage::DelAddress(host_address_message(ifindex, a));
                (msg, 0)
            },
            nix::libc::EADDRNOTAVAIL,
            |address, source| Error::RemoveAddress {
                ifindex,
                address,
                source,
            },
        )
    }

    /// Sends one request per address in a batch; `done_already` is the errno
    /// that means the address is already as asked, which counts as success.
    fn address_batch(
        &mut self,
        addresses: &[IpAddr],
        request: impl Fn(IpAddr) -> (RouteNetlinkMessage, u16),
        done_already: i32,
        fail: impl Fn(IpAddr, io::Error) -> Error,
    ) -> Result<Vec<Result<(), Error>>, Error> {
        let requests = addresses.iter().map(|a| request(*a)).collect();
        let results = self
            .acked(requests)
            .map_err(|e| fail(addresses.first().copied().unwrap_or([0, 0, 0, 0].into()), e))?;
        Ok(results
            .into_iter()
            .zip(addresses)
            .map(|(r, a)| match r {
                Err(e) if e.raw_os_error() == Some(done_already) => Ok(()),
                r => r.map_err(|e| fail(*a, e)),
            })
            .collect())
    }

    /// Adds one host address (see [`Route::add_addresses`]).
    pub fn add_address(&mut self, ifindex: u32, address: IpAddr) -> Result<(), Error> {
        first(self.add_addresses(ifindex, &[address])?)
    }

    /// Removes one host address (see [`Route::remove_addresses`]).
    pub fn remove_address(&mut self, ifindex: u32, address: IpAddr) -> Result<(), Error> {
        first(self.remove_addresses(ifindex, &[address])?)
    }

    /// The node's addresses on every link but loopback ones and those named
    /// in `exclude` (the dummy link), keeping those inside one of `filter`'s
    /// networks (all if `filter` is empty). Link-local addresses are left
    /// out: a service cannot be reached on them without a zone.
    pub fn local_addresses(
        &mut self,
        exclude: &[&str],
        filter: &[IpNetwork],
    ) -> Result<Vec<IpAddr>, Error> {
        let all = self.all_addresses()?;
        self.local_addresses_among(&all, exclude, filter)
    }

    /// [`Route::local_addresses`] among the addresses of a dump already
    /// made ([`Route::all_addresses`]): only the links are dumped. A caller
    /// that needs the dummy link's addresses too dumps them once for both.
    pub fn local_addresses_among(
        &mut self,
        all: &[LinkAddress],
        exclude: &[&str],
        filter: &[IpNetwork],
    ) -> Result<Vec<IpAddr>, Error> {
        let skipped: Vec<u32> = self
            .links()?
            .into_iter()
            .filter(|l| l.loopback || exclude.contains(&l.name.as_str()))
            .map(|l| l.index)
            .collect();
        let mut addresses: Vec<IpAddr> = all
            .iter()
            .filter(|a| !skipped.contains(&a.ifindex))
            .map(|a| a.address)
            .filter(|a| !is_link_local(a))
            .filter(|a| filter.is_empty() || filter.iter().any(|n| n.contains(*a)))
            .collect();
        addresses.sort();
        addresses.dedup();
        Ok(addresses)
    }
}

fn first(results: Vec<Result<(), Error>>) -> Result<(), Error> {
    results.into_iter().next().unwrap_or(Ok(()))
}
