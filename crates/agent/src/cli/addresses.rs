//! Addresses as kube-proxy reads them: sloppy IPv4 (leading zeros), CIDRs
//! with host bits, and the keywords of `--nodeport-addresses`.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use super::parse_cidr;

/// Leading zeros of IPv4 octets dropped (`010.001.0.0/16` is `10.1.0.0/16`),
/// as Go's sloppy parsers read them: decimal.
pub(super) fn sloppy_ipv4(s: &str) -> String {
    if s.contains(':') {
        return s.to_owned();
    }
    let (address, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let octets: Vec<String> = address
        .split('.')
        .map(|o| {
            let trimmed = o.trim_start_matches('0');
            if trimmed.is_empty() && !o.is_empty() {
                "0".to_owned()
            } else {
                trimmed.to_owned()
            }
        })
        .collect();
    let address = octets.join(".");
    match prefix {
        Some(p) => format!("{address}/{p}"),
        None => address,
    }
}

/// Parses an IP address as kube-proxy does (IPv4 octets may have leading zeros).
pub fn parse_ip(s: &str) -> Result<IpAddr, String> {
    sloppy_ipv4(s.trim())
        .parse()
        .map_err(|e| format!("{s:?} is not an IP address: {e}"))
}

/// `--nodeport-addresses` and the file's `nodePortAddresses`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodePortAddresses {
    /// The CIDRs listed (`all` adds `0.0.0.0/0` and `::/0`).
    pub cidrs: Vec<IpNetwork>,
    /// Whether `primary` is listed: the Node's primary IP of each family.
    pub primary: bool,
    /// Whether `localhost` is listed; IPVS cannot serve NodePorts on
    /// loopback, so it is named in a warning and adds nothing.
    pub localhost: bool,
}

/// Parses a list of node-port address entries (CIDRs, `primary`, `all`, `localhost`).
pub fn parse_nodeport_entries<'a>(
    entries: impl IntoIterator<Item = &'a str>,
) -> Result<NodePortAddresses, String> {
    let mut out = NodePortAddresses::default();
    for entry in entries.into_iter().map(str::trim).filter(|e| !e.is_empty()) {
        match entry {
            "primary" => out.primary = true,
            "localhost" => out.localhost = true,
            "all" => out.cidrs.extend(
                ["0.0.0.0/0", "::/0"].map(|c| c.parse::<IpNetwork>().expect("static CIDR")),
            ),
            cidr => out.cidrs.push(parse_cidr(cidr)?),
        }
    }
    Ok(out)
}

pub(super) fn parse_nodeport_addresses(s: &str) -> Result<NodePortAddresses, String> {
    parse_nodeport_entries(s.split(','))
}
