//! Go durations as the flags and the configuration file take them
//! (`cli::parse_duration`): any text gives a duration or an error, and a
//! duration is one Go can hold (at most 2^63-1 nanoseconds).
#![no_main]

use std::time::Duration;

use kube_ipvs::cli::parse_duration;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(duration) = parse_duration(text) {
        assert!(
            duration <= Duration::from_nanos(i64::MAX as u64),
            "{text:?} parsed to {duration:?}, more than Go's time.Duration holds"
        );
    }
});
