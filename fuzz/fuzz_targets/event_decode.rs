//! Event and decision decoding (compact and JSON): never panics on any input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = warden_event::decode::<warden_event::RequestEvent>(data);
    let _ = warden_event::decode::<warden_event::Decision>(data);
});
