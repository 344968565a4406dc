//! CIDRs and addresses as the flags take them (`--exclude-cidrs`,
//! `--nodeport-addresses`, `--bind-address`): `cli::parse_cidr`,
//! `parse_nodeport_entries` and `parse_ip`. A parsed CIDR has no host bits
//! (kube-proxy's `ParseCIDRSloppy`), and its text parses back to itself.
#![no_main]

use kube_ipvs::cli::{parse_cidr, parse_ip, parse_nodeport_entries};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cidr) = parse_cidr(text) {
        assert_eq!(
            cidr.ip(),
            cidr.network(),
            "{text:?}: host bits left in {cidr}"
        );
        assert_eq!(
            parse_cidr(&cidr.to_string()),
            Ok(cidr),
            "{text:?}: {cidr} does not parse back"
        );
    }
    if let Ok(addresses) = parse_nodeport_entries(text.split(',')) {
        for cidr in addresses.cidrs {
            assert_eq!(
                cidr.ip(),
                cidr.network(),
                "{text:?}: host bits left in {cidr}"
            );
        }
    }
    if let Ok(ip) = parse_ip(text) {
        assert_eq!(
            parse_ip(&ip.to_string()),
            Ok(ip),
            "{text:?}: {ip} does not parse back"
        );
    }
});
