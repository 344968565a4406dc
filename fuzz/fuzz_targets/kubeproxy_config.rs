//! kube-proxy's `--config` file (`KubeProxyConfiguration`, YAML or JSON)
//! through `kubeproxy_config::parse`: its durations, CIDRs and the rest.
#![no_main]

use std::path::Path;

use kube_ipvs::kubeproxy_config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = kubeproxy_config::parse(Path::new("fuzz.yaml"), text);
});
