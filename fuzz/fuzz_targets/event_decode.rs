//! Event and decision decoding (compact and JSON): never panics on any input, and an event
//! that decodes survives a round trip through both encodings unchanged (but for `v`: the
//! compact form is always written in the current version's layout).
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_event::{EventFormat, RequestEvent, decode, encode_event};

fuzz_target!(|data: &[u8]| {
    let _ = decode::<warden_event::Decision>(data);
    if warden_event::compact::is_compact(data) {
        let _ = warden_event::compact::decode_ref(&data[1..]);
    }
    let Ok(event) = decode::<RequestEvent>(data) else {
        return;
    };
    for format in [EventFormat::Compact, EventFormat::Json] {
        let bytes = encode_event(&event, format);
        match decode::<RequestEvent>(&bytes) {
            Ok(back) => {
                let expected = match format {
                    EventFormat::Compact => RequestEvent {
                        v: warden_event::SCHEMA_VERSION,
                        ..event.clone()
                    },
                    EventFormat::Json => event.clone(),
                };
                assert_eq!(back, expected, "{format:?} round trip changed the event");
            }
            Err(e) => panic!("{format:?} encoding of a decoded event does not decode: {e}"),
        }
    }
});
