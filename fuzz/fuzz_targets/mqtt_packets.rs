//! MQTT packets as the listener reads them after CONNECT (3.1.1 or 5.0, by the first byte),
//! and the HTTP paths translated PUBLISH packets become.
//!
//! Properties: nothing panics; reading always makes progress; every translated path starts
//! with the rule's prefix and has no dot segment (a topic cannot climb out of its route).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((first, rest)) = data.split_first() else {
        return;
    };
    let out = warden_gateway::fuzzing::mqtt_read(rest, first & 1 == 1);
    for p in out.paths {
        assert!(p.starts_with("/api/dev-1/"), "{p}");
        assert!(
            !p.split(['/', '?']).any(|s| s == ".." || s == "."),
            "dot segment in {p}"
        );
    }
});
