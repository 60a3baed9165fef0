use super::*;
use crate::test_events::event;
use crate::{Decision, RequestBatchBuilder, RequestEventRef, decode, encode, to_record_batch};

#[test]
fn compact_events_decode_to_the_same_event_owned_and_borrowed() {
    for e in (0..40).map(event) {
        let bytes = encode_event(&e, EventFormat::Compact);
        assert!(is_compact(&bytes));
        assert_eq!(decode::<RequestEvent>(&bytes).expect("owned"), e);
        let r = RequestEventRef::decode(&bytes).expect("borrowed");
        assert_eq!(r.to_owned_event(), e);
        // JSON is still JSON.
        let json = encode_event(&e, EventFormat::Json);
        assert_eq!(json, encode(&e));
        assert!(!is_compact(&json));
        assert!(
            bytes.len() < json.len(),
            "{} vs {}",
            bytes.len(),
            json.len()
        );
    }
}

#[test]
fn unescaped_strings_are_borrowed_from_compact_payloads() {
    let e = event(1);
    let bytes = encode_event(&e, EventFormat::Compact);
    let r = RequestEventRef::decode(&bytes).expect("decodes");
    // Compact strings have no escapes: every one can borrow from the payload.
    let ua = r.user_agent.as_ref().expect("event 1 has a user agent");
    for s in [&r.id, &r.identity, &r.client_ip, &r.path, &r.route, ua] {
        assert!(matches!(s, std::borrow::Cow::Borrowed(_)), "{s}");
    }
    // Also in JSON, for strings without escapes.
    let json = encode(&e);
    let r = RequestEventRef::decode(&json).expect("decodes");
    let ua = r.user_agent.as_ref().expect("event 1 has a user agent");
    assert!(matches!(ua, std::borrow::Cow::Borrowed(_)));
}

#[test]
fn a_topic_may_mix_both_forms_in_one_batch() {
    let events: Vec<RequestEvent> = (0..30).map(event).collect();
    let mut b = RequestBatchBuilder::default();
    for (i, e) in events.iter().enumerate() {
        let format = if i % 2 == 0 {
            EventFormat::Compact
        } else {
            EventFormat::Json
        };
        b.push_payload(&encode_event(e, format)).expect("decodes");
    }
    assert_eq!(
        b.finish().expect("batch"),
        to_record_batch(&events).expect("batch")
    );
}

#[test]
fn damaged_compact_payloads_are_refused_and_append_nothing() {
    let good = encode_event(&event(2), EventFormat::Compact);
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("tag only", vec![COMPACT_TAG]),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("one byte short", good[..good.len() - 1].to_vec()),
        ("trailing", [good.as_slice(), &[0]].concat()),
    ];
    // A future schema version: `v` is the first varint after the tag.
    let mut future = good.clone();
    future[1] = 3;
    cases.push(("version 3", future));
    // An enum variant index this build does not know (`protocol` of event 2 is `coap` = 2):
    // find the byte by changing the event and comparing the encodings.
    let mut other = event(2);
    other.protocol = crate::Protocol::Http;
    let other = encode_event(&other, EventFormat::Compact);
    let at = good
        .iter()
        .zip(&other)
        .position(|(a, b)| a != b)
        .expect("the protocol byte differs");
    let mut bad_enum = good.clone();
    bad_enum[at] = 9;
    cases.push(("unknown enum variant", bad_enum));
    // Invalid UTF-8 in a string (the id starts after the tag, `v` and the id's length).
    let mut bad_utf8 = good.clone();
    bad_utf8[3] = 0xFF;
    cases.push(("invalid UTF-8", bad_utf8));
    for (what, c) in &cases {
        assert!(decode::<RequestEvent>(c).is_err(), "{what}: owned accepted");
        assert!(
            RequestEventRef::decode(c).is_err(),
            "{what}: borrowed accepted"
        );
        let mut b = RequestBatchBuilder::default();
        assert!(b.push_payload(c).is_err(), "{what}");
        assert!(b.is_empty(), "{what}: appended");
    }
    // Objects without a compact form refuse it instead of misreading it.
    assert!(matches!(
        decode::<Decision>(&good),
        Err(DecodeError::NoCompactForm)
    ));
}

#[test]
fn the_format_is_configured_by_name() {
    #[derive(Deserialize)]
    struct C {
        f: EventFormat,
    }
    let c: C = serde_json::from_str(r#"{"f":"json"}"#).expect("json");
    assert_eq!(c.f, EventFormat::Json);
    let c: C = serde_json::from_str(r#"{"f":"compact"}"#).expect("compact");
    assert_eq!(c.f, EventFormat::Compact);
    assert!(serde_json::from_str::<C>(r#"{"f":"avro"}"#).is_err());
}

/// The reference: postcard's own decoder, the whole body, a known version. A version 1 body
/// ends before the version 2 fields: it is read with them appended at their defaults (reason
/// 0, empty query, hash 0), and the reason is inferred as the fast decoder does.
fn postcard_decode(body: &[u8]) -> Option<RequestEvent> {
    let v1 = postcard::take_from_bytes::<u32>(body).is_ok_and(|(v, _)| v == 1);
    let padded = if v1 {
        [body, &[0, 0, 0]].concat()
    } else {
        body.to_vec()
    };
    let (e, rest) = postcard::take_from_bytes::<RequestEventRef>(&padded).ok()?;
    if !rest.is_empty() || e.v != if v1 { 1 } else { crate::SCHEMA_VERSION } {
        return None;
    }
    let mut owned = e.to_owned_event();
    if v1 {
        owned.reason = crate::Reason::infer(owned.decision, owned.status);
    }
    Some(owned)
}

#[test]
fn the_fast_decoder_reads_exactly_what_postcard_reads() {
    // Every event variant, then thousands of damaged copies (bytes changed, cut, inserted,
    // removed): both decoders must accept the same ones and read the same event.
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (mut accepted, mut refused) = (0, 0);
    for i in 0..64 {
        let mut e = event(i);
        // Large and negative integers (multi-byte varints, zigzag).
        e.seq = u64::MAX >> (i % 64);
        e.ts = if i % 2 == 0 {
            -(i as i64)
        } else {
            i64::MAX - i as i64
        };
        e.status = u16::MAX - i as u16;
        let body = encode_event(&e, EventFormat::Compact)[1..].to_vec();
        assert_eq!(decode_ref(&body).expect("valid").to_owned_event(), e);
        for _ in 0..300 {
            let mut m = body.clone();
            for _ in 0..=next() % 3 {
                let at = (next() as usize) % m.len().max(1);
                match next() % 4 {
                    0 if !m.is_empty() => m[at] = next() as u8,
                    1 if !m.is_empty() => m[at] ^= 1 << (next() % 8),
                    2 => m.insert(at.min(m.len()), next() as u8),
                    _ => m.truncate(at),
                }
            }
            let fast = decode_ref(&m).ok().map(|e| e.to_owned_event());
            let reference = postcard_decode(&m);
            assert_eq!(fast, reference, "{m:02x?}");
            if fast.is_some() {
                accepted += 1;
            } else {
                refused += 1;
            }
        }
    }
    // Both outcomes were exercised.
    assert!(
        accepted > 100 && refused > 1000,
        "{accepted} accepted, {refused} refused"
    );
}

#[test]
fn varints_past_their_width_are_refused() {
    let e = event(4);
    let body = encode_event(&e, EventFormat::Compact)[1..].to_vec();
    // `v` (a u32) spelled with 6 bytes, and with a 5th byte carrying too many bits.
    for v in [
        vec![0x81, 0x80, 0x80, 0x80, 0x80, 0x00],
        vec![0x81, 0x80, 0x80, 0x80, 0x10],
    ] {
        let m = [v.as_slice(), &body[1..]].concat();
        assert!(decode_ref(&m).is_err());
        assert!(postcard_decode(&m).is_none());
    }
    // A redundant but in-width spelling of 2 is read as 2 by both.
    let m = [&[0x82, 0x00][..], &body[1..]].concat();
    assert_eq!(
        decode_ref(&m).ok().map(|e| e.to_owned_event()),
        postcard_decode(&m)
    );
    assert!(decode_ref(&m).is_ok());
}

#[test]
fn version_1_events_are_read_in_both_forms_with_their_reason_inferred() {
    let mut e = event(7);
    e.reason = crate::Reason::None;
    e.query = String::new();
    e.query_hash = 0;
    e.decision = crate::Outcome::Quarantined;
    e.status = 403;
    // Compact: a version 1 body is a version 2 body without the three last fields (here all
    // zero bytes) and with `v` = 1.
    let body = encode_event(&e, EventFormat::Compact)[1..].to_vec();
    assert_eq!(&body[body.len() - 3..], &[0, 0, 0]);
    let mut v1 = body[..body.len() - 3].to_vec();
    v1[0] = 1;
    let payload = [&[COMPACT_TAG][..], &v1].concat();
    let mut expected = e.clone();
    expected.v = 1;
    expected.reason = crate::Reason::Quarantine;
    assert_eq!(
        decode::<RequestEvent>(&payload).expect("v1 compact"),
        expected
    );
    assert_eq!(
        RequestEventRef::decode(&payload)
            .expect("v1 compact")
            .to_owned_event(),
        expected
    );
    // JSON: the fields are absent.
    let mut json = serde_json::to_value(&e).expect("json");
    {
        let obj = json.as_object_mut().expect("object");
        for k in ["reason", "query", "query_hash"] {
            obj.remove(k);
        }
        obj.insert("v".into(), 1.into());
    }
    let bytes = serde_json::to_vec(&json).expect("bytes");
    assert_eq!(decode::<RequestEvent>(&bytes).expect("v1 json"), expected);
    assert_eq!(
        RequestEventRef::decode(&bytes)
            .expect("v1 json")
            .to_owned_event(),
        expected
    );
    // And a version this build does not know is refused.
    json["v"] = 3.into();
    let bytes = serde_json::to_vec(&json).expect("bytes");
    assert!(matches!(
        decode::<RequestEvent>(&bytes),
        Err(DecodeError::Version { found: 3 })
    ));
}

/// Found by fuzzing (fuzz/corpus/event_decode/regression-v1-json): an event read from a
/// version 1 JSON object, written compact, did not decode ("3 bytes after the end"): the body
/// had version 2's layout but said `v` = 1.
#[test]
fn version_1_events_re_encode_in_both_forms() {
    let mut json = serde_json::to_value(event(0)).expect("json");
    json["v"] = 1.into();
    let old: RequestEvent = decode(&serde_json::to_vec(&json).expect("bytes")).expect("v1 json");
    assert_eq!(old.v, 1);
    let compact = encode_event(&old, EventFormat::Compact);
    let back = decode::<RequestEvent>(&compact).expect("compact re-encoding decodes");
    assert_eq!(back.v, crate::SCHEMA_VERSION);
    assert_eq!(RequestEvent { v: 1, ..back }, old);
    let again = decode::<RequestEvent>(&encode_event(&old, EventFormat::Json)).expect("json");
    assert_eq!(again, old);
}
