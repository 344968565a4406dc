//! What applies to IPVS as a whole rather than to one service: the
//! connection timeouts and what the kernel reports about itself.

/// The global IPVS connection timeouts (`ipvsadm --set`), in seconds; in a
/// request, 0 leaves a timeout unchanged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Timeouts {
    /// Established TCP connections.
    pub tcp: u32,
    /// TCP connections after a FIN.
    pub tcp_fin: u32,
    /// UDP "connections".
    pub udp: u32,
}

/// What `IPVS_CMD_GET_INFO` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpvsInfo {
    /// `IP_VS_VERSION_CODE`, e.g. `0x010201`.
    pub version: u32,
    /// Size of the connection hash table.
    pub connection_table_size: u32,
}

impl IpvsInfo {
    /// The version as `ipvsadm` prints it ("1.2.1").
    pub fn version_string(&self) -> String {
        let v = self.version;
        format!("{}.{}.{}", (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff)
    }
}
