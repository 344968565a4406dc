//! The manifest documents' YAML reader (`source::yaml`): wherever the
//! subset reader answers, its value is the general parser's, so taking the
//! fast path never changes what a manifest means; and a document read
//! straight into its type (`Manifest::from_common`) holds what the long way
//! through that value makes of it.
#![no_main]

use kube_ipvs::source::manifest::Manifest;
use kube_ipvs::source::yaml;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(value) = yaml::block_subset(text) {
        assert_eq!(yaml::general(text).as_ref(), Ok(&value), "{text:?}");
    }
    if let Some(fast) = Manifest::from_common(text) {
        let mut slow = Manifest::default();
        let value = yaml::document(text).expect("read typed, so YAML");
        assert_eq!(slow.add(value), Ok(()), "{text:?}");
        assert_eq!(fast, slow, "{text:?}");
    }
});
