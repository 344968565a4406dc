//! The manifest documents' YAML reader (`source::yaml`): wherever the
//! subset reader answers, its value is the general parser's, so taking the
//! fast path never changes what a manifest means.
#![no_main]

use kube_ipvs::source::yaml;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(value) = yaml::block_subset(text) {
        assert_eq!(yaml::general(text).as_ref(), Ok(&value), "{text:?}");
    }
});
