use super::*;
use crate::{AuthMethod, AuthResult, TlsInfo, decode, encode, to_record_batch};

fn event(i: u64) -> RequestEvent {
    RequestEvent {
        v: SCHEMA_VERSION,
        id: format!("{i:016x}"),
        gateway: "gw-1".into(),
        seq: i,
        ts: 1_767_603_600_000_000_000 + i as i64,
        identity: if i % 5 == 0 {
            ANONYMOUS.into()
        } else {
            format!("dev-{i}")
        },
        tenant: format!("tenant-{}", i % 3),
        device_type: "camera".into(),
        auth: AuthInfo {
            method: [
                AuthMethod::None,
                AuthMethod::ApiKey,
                AuthMethod::Jwt,
                AuthMethod::ClientCert,
            ][i as usize % 4],
            result: [
                AuthResult::NotRequired,
                AuthResult::Missing,
                AuthResult::Ok,
                AuthResult::Failed,
            ][i as usize % 4],
        },
        client_ip: format!("10.0.0.{}", i % 250),
        protocol: [Protocol::Http, Protocol::Mqtt, Protocol::Coap][i as usize % 3],
        method: "GET".into(),
        route: "telemetry".into(),
        // Escapes and non-ASCII: these strings cannot be borrowed.
        path: if i % 2 == 0 {
            format!("/api/v1/telemetry/\"quoted\"\\{i}\n")
        } else {
            format!("/api/v1/capteur-é/{i}")
        },
        status: 200 + (i % 4) as u16 * 100,
        decision: Outcome::ALL[i as usize % Outcome::ALL.len()],
        latency_us: 800 + i,
        bytes_in: 100,
        bytes_out: 2000 + i,
        user_agent: (i % 3 != 0).then(|| "acme-fw/2.3.1".to_string()),
        tls: (i % 2 == 0).then(|| TlsInfo {
            version: "TLSv1.3".into(),
            client_cert_fingerprint: (i % 4 == 0).then(|| format!("sha256:{i:x}")),
        }),
    }
}

#[test]
fn batches_from_payloads_equal_batches_from_decoded_events() {
    let events: Vec<RequestEvent> = (0..40).map(event).collect();
    let mut b = RequestBatchBuilder::with_capacity(4);
    for e in &events {
        b.push_json(&encode(e)).expect("decodes");
    }
    assert_eq!(b.len(), events.len());
    let batch = b.finish().expect("batch");
    assert!(b.is_empty());
    assert_eq!(batch, to_record_batch(&events).expect("batch"));
    // The builder is reusable after `finish`.
    b.push_json(&encode(&events[3])).expect("decodes");
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
        m.insert("v".into(), 2.into());
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
        let pushed = b.push_json(c).is_ok();
        assert_eq!(b.len(), usize::from(pushed));
    }
    assert_eq!(accepted, 5, "the valid variants decode");
}
