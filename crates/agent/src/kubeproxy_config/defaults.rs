//! kube-proxy's defaults for zero fields (`pkg/proxy/apis/config/v1alpha1/
//! defaults.go`, `pkg/cluster/ports`, `pkg/kubelet/qos`).

use std::time::Duration;

/// `healthzBindAddress`'s port (`ports.ProxyHealthzPort`).
pub const HEALTHZ_PORT: u16 = 10256;
/// `metricsBindAddress`'s port (`ports.ProxyStatusPort`).
pub const METRICS_PORT: u16 = 10249;
/// `ipvs.syncPeriod`.
pub const SYNC_PERIOD: Duration = Duration::from_secs(30);
/// `clientConnection.qps`.
pub const QPS: f32 = 5.0;
/// `clientConnection.burst`.
pub const BURST: i32 = 10;
/// `iptables.masqueradeBit`.
pub const MASQUERADE_BIT: i32 = 14;
/// `oomScoreAdj` (`qos.KubeProxyOOMScoreAdj`).
pub const OOM_SCORE_ADJ: i32 = -999;
/// `conntrack.maxPerCore`.
pub const CONNTRACK_MAX_PER_CORE: i32 = 32 * 1024;
/// `conntrack.min`.
pub const CONNTRACK_MIN: i32 = 128 * 1024;
/// `conntrack.tcpEstablishedTimeout`.
pub const CONNTRACK_TCP_ESTABLISHED: Duration = Duration::from_secs(24 * 3600);
/// `conntrack.tcpCloseWaitTimeout`.
pub const CONNTRACK_TCP_CLOSE_WAIT: Duration = Duration::from_secs(3600);
