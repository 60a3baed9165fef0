//! The duplicate-key check of validated bodies: never panics, and whatever it accepts is JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if warden_gateway::validate::unique_keys(data).is_ok() {
        assert!(serde_json::from_slice::<serde_json::Value>(data).is_ok());
    }
});
