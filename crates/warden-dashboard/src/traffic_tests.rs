//! The traffic store: bounds, eviction, window.
use super::*;

#[test]
fn the_least_recently_active_subjects_are_forgotten() {
    let t = Traffic::new(32);
    let now = 1_800_000_000_000_000_000;
    let mut e = event(now);
    for i in 0..100 {
        e.identity = format!("dev-{i}");
        t.record(&e, now);
    }
    let fleet = t.fleet(now, 5);
    assert!(fleet.tracked["identity"] <= 32);
    assert!(t.subject(&Subject::identity("dev-99"), now).tracked);
    assert!(!t.subject(&Subject::identity("dev-0"), now).tracked);
    assert_eq!(fleet.series.last().map(|p| p.requests), Some(100));
    e.ts = now - 2 * 3_600_000_000_000;
    t.record(&e, now);
    assert_eq!(
        t.fleet(now, 5).series.last().map(|p| p.requests),
        Some(100),
        "too old"
    );
}

fn event(ts: i64) -> RequestEvent {
    RequestEvent {
        v: warden_event::SCHEMA_VERSION,
        id: "e".into(),
        gateway: "gw".into(),
        seq: 0,
        ts,
        identity: "dev".into(),
        tenant: String::new(),
        device_type: String::new(),
        auth: warden_event::AuthInfo {
            method: warden_event::AuthMethod::ApiKey,
            result: warden_event::AuthResult::Ok,
        },
        client_ip: "10.0.0.1".into(),
        protocol: warden_event::Protocol::Http,
        method: "GET".into(),
        route: "r".into(),
        path: "/".into(),
        status: 200,
        decision: warden_event::Outcome::Allowed,
        latency_us: 1,
        bytes_in: 1,
        bytes_out: 1,
        user_agent: None,
        tls: None,
        reason: Reason::None,
        query: String::new(),
        query_hash: 0,
    }
}

#[test]
fn hostile_timestamps_and_long_strings_are_harmless() {
    let t = Traffic::new(8);
    let now = 1_800_000_000_000_000_000;
    for ts in [i64::MAX, i64::MIN, 0, -1] {
        t.record(&event(ts), now);
    }
    assert_eq!(
        t.fleet(now, 5)
            .series
            .iter()
            .map(|p| p.requests)
            .sum::<u64>(),
        0
    );
    let mut e = event(now);
    e.identity = "é".repeat(400);
    e.route = "r".repeat(1_000);
    t.record(&e, now);
    let held = t.subject(&Subject::identity("é".repeat(256)), now);
    assert!(
        held.tracked,
        "the key is cut at 512 bytes on a character boundary"
    );
    assert!(held.routes[0].value.len() <= MAX_LABEL);
}

#[test]
fn a_subject_keeps_its_last_requests_newest_first() {
    let t = Traffic::new(8);
    let now = 1_800_000_000_000_000_000;
    for i in 0..20i64 {
        let mut e = event(now - 1_000_000_000 * (20 - i));
        e.route = format!("route-{i}-{}", "ü".repeat(20));
        if i == 19 {
            e.status = 403;
            e.reason = Reason::Quarantine;
        }
        t.record(&e, now);
    }
    let view = t.subject(&Subject::identity("dev"), now);
    assert_eq!(view.recent.len(), LAST);
    assert!(
        view.recent.windows(2).all(|w| w[0].t > w[1].t),
        "newest first"
    );
    let newest = &view.recent[0];
    assert!(newest.request.starts_with("GET route-19-"), "{newest:?}");
    assert!(
        newest.request.len() <= LAST_LABEL,
        "cut on a character boundary"
    );
    assert_eq!((newest.status, newest.reason.as_str()), (403, "quarantine"));
    assert_eq!(view.recent[1].reason, "none");
    assert_eq!(view.recent[LAST - 1].request.split('-').nth(1), Some("12"));
}
