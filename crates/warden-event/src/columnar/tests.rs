use super::*;
use crate::test_events::event;
use crate::{AuthMethod, AuthResult, decode, encode, to_record_batch};

#[test]
fn batches_from_payloads_equal_batches_from_decoded_events() {
    let events: Vec<RequestEvent> = (0..40).map(event).collect();
    let mut b = RequestBatchBuilder::with_capacity(4);
    for e in &events {
        b.push_payload(&encode(e)).expect("decodes");
    }
    assert_eq!(b.len(), events.len());
    let batch = b.finish().expect("batch");
    assert!(b.is_empty());
    assert_eq!(batch, to_record_batch(&events).expect("batch"));
    // The builder is reusable after `finish`.
    b.push_payload(&encode(&events[3])).expect("decodes");
    assert_eq!(
        b.finish().expect("batch"),
        to_record_batch(&events[3..4]).expect("batch")
    );
}

#[test]
fn borrowed_events_are_the_owned_events() {
    for e in (0..12).map(event) {
        let bytes = encode(&e);
        let r = RequestEventRef::decode(&bytes).expect("decodes");
        assert_eq!(r.to_owned_event(), e);
        assert_eq!(r.key(), e.key());
    }
}

#[test]
fn enum_names_are_the_wire_names() {
    let wire = |v: serde_json::Value| v.as_str().unwrap_or_default().to_string();
    for m in [
        AuthMethod::None,
        AuthMethod::ApiKey,
        AuthMethod::Jwt,
        AuthMethod::ClientCert,
    ] {
        assert_eq!(m.as_str(), wire(serde_json::json!(m)));
    }
    for r in [
        AuthResult::NotRequired,
        AuthResult::Missing,
        AuthResult::Ok,
        AuthResult::Failed,
    ] {
        assert_eq!(r.as_str(), wire(serde_json::json!(r)));
    }
    for p in [Protocol::Http, Protocol::Mqtt, Protocol::Coap] {
        assert_eq!(p.as_str(), wire(serde_json::json!(p)));
    }
}

/// The borrowed decoder accepts and refuses exactly what `decode::<RequestEvent>` does.
#[test]
fn accepts_and_refuses_what_decode_does() {
    let base = serde_json::to_value(event(2)).expect("json");
    let mut cases: Vec<Vec<u8>> = Vec::new();
    let mut with = |f: &dyn Fn(&mut serde_json::Map<String, serde_json::Value>)| {
        let mut v = base.clone();
        if let serde_json::Value::Object(m) = &mut v {
            f(m);
        }
        cases.push(serde_json::to_vec(&v).expect("json"));
    };
    with(&|_| {});
    with(&|m| {
        m.remove("v");
    });
    with(&|m| {
        m.insert("v".into(), 3.into());
    });
    with(&|m| {
        m.insert("reason".into(), "because".into());
    });
    with(&|m| {
        m.insert("extra".into(), 1.into());
    });
    with(&|m| {
        m.remove("path");
    });
    with(&|m| {
        m.remove("user_agent");
        m.remove("tls");
    });
    with(&|m| {
        m.insert("user_agent".into(), serde_json::Value::Null);
    });
    with(&|m| {
        m.insert("status".into(), 70000.into());
    });
    with(&|m| {
        m.insert("status".into(), "200".into());
    });
    with(&|m| {
        m.insert("identity".into(), serde_json::Value::Null);
    });
    with(&|m| {
        m.insert("protocol".into(), "gopher".into());
    });
    with(&|m| {
        m.insert("decision".into(), "Allowed".into());
    });
    with(&|m| {
        m.insert(
            "auth".into(),
            serde_json::json!({"method": "jwt", "result": "ok", "x": 1}),
        );
    });
    with(&|m| {
        m.insert("tls".into(), serde_json::json!({"version": "TLSv1.2"}));
    });
    with(&|m| {
        m.insert(
            "tls".into(),
            serde_json::json!({"version": "TLSv1.2", "cipher": "x"}),
        );
    });
    cases.push(br#"{"v":1}"#.to_vec());
    cases.push(b"not json".to_vec());
    cases.push(Vec::new());
    let mut dup = encode(&event(3));
    dup.pop();
    dup.extend_from_slice(br#","seq":4}"#);
    cases.push(dup);
    let mut trailing = encode(&event(3));
    trailing.extend_from_slice(b" {}");
    cases.push(trailing);
    let mut accepted = 0;
    for c in &cases {
        let owned = decode::<RequestEvent>(c);
        let borrowed = RequestEventRef::decode(c);
        assert_eq!(
            owned.is_ok(),
            borrowed.is_ok(),
            "{}: {owned:?} vs {borrowed:?}",
            String::from_utf8_lossy(c)
        );
        if let (Ok(o), Ok(b)) = (owned, borrowed) {
            assert_eq!(b.to_owned_event(), o);
            accepted += 1;
        }
        // Nothing is appended for a refused payload.
        let mut b = RequestBatchBuilder::default();
        let pushed = b.push_payload(c).is_ok();
        assert_eq!(b.len(), usize::from(pushed));
    }
    assert_eq!(accepted, 5, "the valid variants decode");
}

#[test]
fn dictionary_columns_keep_every_value_past_the_scanned_few() {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Int32Type;
    // 60 distinct routes (past the linear scan), repeated, and absent TLS versions (nulls).
    let events: Vec<RequestEvent> = (0..300)
        .map(|i| {
            let mut e = event(i);
            e.route = format!("route-{}", (i * 7) % 60);
            e
        })
        .collect();
    let mut b = RequestBatchBuilder::default();
    for e in &events {
        b.push(e);
    }
    let batch = b.finish().expect("batch");
    let read = |name: &str, row: usize| -> Option<String> {
        let col = batch.column_by_name(name).expect("column");
        let dict = col.as_dictionary::<Int32Type>();
        let values = dict.values().as_string::<i32>();
        dict.is_valid(row)
            .then(|| values.value(dict.keys().value(row) as usize).to_string())
    };
    let routes = batch.column_by_name("route").expect("route");
    assert_eq!(routes.as_dictionary::<Int32Type>().values().len(), 60);
    for (row, e) in events.iter().enumerate() {
        assert_eq!(read("route", row).as_deref(), Some(e.route.as_str()));
        assert_eq!(read("tenant", row).as_deref(), Some(e.tenant.as_str()));
        assert_eq!(read("decision", row).as_deref(), Some(e.decision.as_str()));
        assert_eq!(
            read("auth_method", row).as_deref(),
            Some(e.auth.method.as_str())
        );
        assert_eq!(
            read("auth_result", row).as_deref(),
            Some(e.auth.result.as_str())
        );
        assert_eq!(read("protocol", row).as_deref(), Some(e.protocol.as_str()));
        assert_eq!(
            read("tls_version", row),
            e.tls.as_ref().map(|t| t.version.clone())
        );
    }
    // The next batch starts a fresh dictionary.
    b.push(&events[5]);
    let next = b.finish().expect("batch");
    let routes = next.column_by_name("route").expect("route");
    assert_eq!(routes.as_dictionary::<Int32Type>().values().len(), 1);
    // A column null in every row of a batch (event 5 has no TLS): no values, all null.
    let tls = next.column_by_name("tls_version").expect("tls_version");
    assert!(events[5].tls.is_none());
    assert_eq!(tls.null_count(), 1);
}

#[test]
fn dictionary_values_sharing_their_first_bytes_stay_distinct() {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Int32Type;
    // Same first 8 bytes, different lengths or tails; a 7-byte value against an 8-byte one
    // whose last byte equals the length difference folded into the tag; the empty value.
    let routes = [
        "telemetry",
        "telemetrx",
        "telemetry-long",
        "telemetry-lonG",
        "abcdefg",
        "abcdefg\u{f}",
        "abcdefg\u{0}",
        "",
        "a",
        "telemetry",
        "abcdefg",
        "",
    ];
    let events: Vec<RequestEvent> = routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut e = event(i as u64);
            e.route = (*r).to_string();
            e
        })
        .collect();
    let mut b = RequestBatchBuilder::default();
    for e in &events {
        b.push(e);
    }
    let batch = b.finish().expect("batch");
    let dict = batch
        .column_by_name("route")
        .expect("route")
        .as_dictionary::<Int32Type>();
    let values = dict.values().as_string::<i32>();
    assert_eq!(values.len(), 9, "distinct values");
    for (row, r) in routes.iter().enumerate() {
        assert_eq!(
            values.value(dict.keys().value(row) as usize),
            *r,
            "row {row}"
        );
    }
}
