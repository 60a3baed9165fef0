use super::*;
use warden_event::SubjectKind;

const MS: u64 = 1_000_000;

fn limits(toml: &str) -> (RateLimits, Arc<ManualClock>) {
    let config = warden_config::WardenConfig::from_toml(&format!(
        "[[routes]]\nname = \"a\"\nprefix = \"/a\"\nupstream = \"http://127.0.0.1:1\"\n\
         [[routes]]\nname = \"b\"\nprefix = \"/b\"\nupstream = \"http://127.0.0.1:1\"\n{toml}"
    ))
    .expect("valid config");
    let clock = Arc::new(ManualClock::default());
    (RateLimits::new(&config.limits, clock.clone()), clock)
}

fn key<'a>(id: Option<&'a str>, dt: &'a str, route: &'a str) -> LimitKey<'a> {
    LimitKey {
        identity: id,
        tenant: "acme",
        device_type: dt,
        route,
        ip: IpAddr::from([127, 0, 0, 1]),
        throttled: None,
    }
}

/// Requests passed out of `n`, one every `step_ms`, starting at `start_ms`.
fn passed(
    l: &RateLimits,
    c: &ManualClock,
    k: &LimitKey<'_>,
    n: u64,
    step_ms: u64,
    start_ms: u64,
) -> usize {
    (0..n)
        .filter(|i| {
            c.set((start_ms + i * step_ms) * MS);
            l.check(k).is_ok()
        })
        .count()
}

#[test]
fn nothing_configured_nothing_limited() {
    let (l, c) = limits("");
    assert_eq!(passed(&l, &c, &key(Some("d"), "", "a"), 1000, 0, 0), 1000);
    assert_eq!(l.check(&key(Some("d"), "", "a")), Ok(None));
}

#[test]
fn identity_limit_is_exact_and_differs_by_device_type() {
    let (l, c) = limits(
        "[limits.identity]\nrate_per_s = 10.0\nburst = 5\n\
         [limits.identity.device_types.camera]\nrate_per_s = 50.0\nburst = 10\n",
    );
    // 100 requests/s for 3 s against 10/s, burst 5: 5 + floor(2.99 × 10) = 34.
    assert_eq!(
        passed(&l, &c, &key(Some("s1"), "sensor", "a"), 300, 10, 0),
        34
    );
    // A camera: 10 + floor(2.99 × 50) = 159 of 300.
    assert_eq!(
        passed(&l, &c, &key(Some("c1"), "camera", "a"), 300, 10, 0),
        159
    );
}

#[test]
fn identity_route_limits_each_route_and_route_overrides_win() {
    let (l, c) = limits(
        "[limits.identity_route]\nrate_per_s = 1.0\nburst = 2\n\
         [limits.identity_route.device_types.sensor]\nrate_per_s = 1.0\nburst = 3\n\
         [limits.identity_route.routes.b]\nrate_per_s = 1.0\nburst = 4\n",
    );
    assert_eq!(passed(&l, &c, &key(Some("d"), "", "a"), 10, 0, 0), 2);
    assert_eq!(
        passed(&l, &c, &key(Some("d"), "sensor", "a"), 10, 0, 0),
        1,
        "same key, its state kept: a burst of 3 leaves one after the 2 used"
    );
    assert_eq!(passed(&l, &c, &key(Some("e"), "sensor", "a"), 10, 0, 0), 3);
    assert_eq!(passed(&l, &c, &key(Some("d"), "sensor", "b"), 10, 0, 0), 4);
}

#[test]
fn ip_limit_only_for_anonymous_and_refusal_refunds() {
    let (l, c) = limits(
        "[limits.ip]\nrate_per_s = 1.0\nburst = 2\n\
         [limits.global]\nrate_per_s = 1.0\nburst = 3\n",
    );
    // Anonymous: global then IP. The IP limit refuses the 3rd; the global count is refunded,
    // so an authenticated caller still gets the global's last request.
    assert_eq!(passed(&l, &c, &key(None, "", "a"), 5, 0, 0), 2);
    assert_eq!(passed(&l, &c, &key(Some("d"), "", "a"), 5, 0, 0), 1);
    let err = l.check(&key(Some("d"), "", "a")).expect_err("limited");
    assert_eq!(err.scope, Scope::Global);
    assert_eq!(err.retry_after_s, 1);
    assert_eq!(
        err.quota,
        Quota {
            limit: 3,
            remaining: 0,
            reset_s: 3
        }
    );
}

#[test]
fn quota_reports_the_tightest_limit() {
    let (l, c) = limits(
        "[limits.tenant]\nrate_per_s = 100.0\nburst = 100\n\
         [limits.identity]\nrate_per_s = 1.0\nburst = 3\n",
    );
    c.set(0);
    let q = l.check(&key(Some("d"), "", "a")).expect("allowed");
    assert_eq!(
        q,
        Some(Quota {
            limit: 3,
            remaining: 2,
            reset_s: 1
        })
    );
}

#[test]
fn throttle_decisions_apply_the_reduced_rate_to_their_subject() {
    let (l, c) = limits("[limits]\nthrottled = { rate_per_s = 2.0, burst = 1 }\n");
    let s = Subject {
        kind: SubjectKind::Identity,
        value: "d".into(),
    };
    let mut k = key(Some("d"), "", "a");
    assert_eq!(passed(&l, &c, &k, 100, 10, 0), 100, "no decision, no limit");
    k.throttled = Some((&s, None));
    // 1 s at 100/s against 2/s, burst 1: 1 + floor(0.99 × 2) = 2.
    assert_eq!(passed(&l, &c, &k, 100, 10, 10_000), 2);
}

#[test]
fn a_throttle_decision_with_its_own_limit_holds_the_subject_to_it() {
    let (l, c) = limits("[limits]\nthrottled = { rate_per_s = 1.0, burst = 5 }\n");
    let s = Subject {
        kind: SubjectKind::Identity,
        value: "d".into(),
    };
    let mut k = key(Some("d"), "", "a");
    // The decision: 10/s, burst 2 (the identity's normal rate); the client sends 20/s for
    // 10 s, twice its normal rate: about half is refused.
    k.throttled = Some((
        &s,
        Some(warden_event::ThrottleLimit {
            per_s: 10.0,
            burst: 2,
        }),
    ));
    let passed_n = passed(&l, &c, &k, 200, 50, 10_000);
    assert!((100..=102).contains(&passed_n), "{passed_n}");
}

#[test]
fn refused_credentials_count_against_the_ip() {
    let (l, c) = limits("[limits.ip]\nrate_per_s = 1.0\nburst = 3\n");
    c.set(0);
    let ip = IpAddr::from([127, 0, 0, 1]);
    assert_eq!(
        (0..10)
            .filter(|_| l.check_unauthenticated(ip).is_ok())
            .count(),
        3
    );
    assert!(
        l.check(&key(None, "", "a")).is_err(),
        "the same bucket as anonymous requests"
    );
    let (none, _) = limits("");
    assert!((0..100).all(|_| none.check_unauthenticated(ip).is_ok()));
}

#[test]
fn a_reload_keeps_every_bucket_and_applies_a_lowered_rate() {
    let (l, c) = limits("[limits.identity]\nrate_per_s = 1.0\nburst = 5\n");
    let k = key(Some("flooder"), "sensor", "a");
    // The flooder spends its burst…
    assert_eq!(passed(&l, &c, &k, 10, 0, 0), 5);
    // …and a reload (same limit) does not give it back.
    let config =
        warden_config::WardenConfig::from_toml("[limits.identity]\nrate_per_s = 1.0\nburst = 5\n")
            .expect("valid config");
    let reloaded = RateLimits::carry_over(&config.limits, &l);
    assert_eq!(passed(&reloaded, &c, &k, 10, 0, 0), 0, "bucket survived");
    // A lowered limit applies at once to a fresh client.
    let lowered =
        warden_config::WardenConfig::from_toml("[limits.identity]\nrate_per_s = 1.0\nburst = 2\n")
            .expect("valid config");
    let lowered = RateLimits::carry_over(&lowered.limits, &reloaded);
    assert_eq!(
        passed(&lowered, &c, &key(Some("new"), "", "a"), 10, 0, 0),
        2
    );
    assert_eq!(passed(&lowered, &c, &k, 10, 0, 0), 0, "still empty");
}
