use warden_config::{PipelineConfig, Sampling, WindowConfig, WindowKey};
use warden_event::{AuthInfo, AuthMethod, AuthResult, Outcome, Protocol, RequestEvent};

use super::*;
use crate::feature::{Compiler, WindowPlan};

const S: i64 = 1_000_000_000;

fn plan() -> WindowPlan {
    plan_of(RUNNING)
}

/// Features of the test plans: a count, an error ratio, distinct paths and (two-stack folds,
/// since a quantile sketch cannot be taken back out) a percentile.
const TWO_STACK: &[&str] = &["n", "errors", "paths", "p90"];
/// Running totals, with a distinct count.
const RUNNING: &[&str] = &["n", "errors", "paths"];
/// Running totals of scalars only.
const SCALARS: &[&str] = &["n", "errors"];

fn plan_of(features: &[&str]) -> WindowPlan {
    let p = PipelineConfig::from_toml(
        r#"
name = "t"
[[window]]
name = "w"
key = "identity"
size_ms = 3000
slide_ms = 1000
[[feature]]
name = "n"
window = "w"
type = "count"
[[feature]]
name = "errors"
window = "w"
type = "error_ratio"
[[feature]]
name = "paths"
window = "w"
type = "distinct"
field = "path"
[[feature]]
name = "p90"
window = "w"
type = "percentile"
field = "bytes_out"
quantile = 0.9
[[detector]]
name = "d"
type = "threshold"
feature = "n"
above = 100
[decision]
quarantine_ttl_s = 60
"#,
    )
    .expect("pipeline");
    let c = Compiler::new().expect("compiler");
    let mut plan = WindowPlan::default();
    for f in p.feature.iter().filter(|f| features.contains(&f.name())) {
        plan.add(&c, f).expect("feature");
    }
    assert_eq!(plan.invertible(), !features.contains(&"p90"));
    plan
}

fn window(plan: &WindowPlan) -> WindowState {
    WindowState::new(
        &WindowConfig {
            name: "w".into(),
            key: WindowKey::Identity,
            size_ms: 3000,
            slide_ms: 1000,
            allowed_lateness_ms: 0,
            idle_expiry_ms: 10_000,
            provisional: true,
            sample: Sampling::All,
        },
        plan,
    )
}

fn event(ts: i64, status: u16, path: &str) -> RequestEvent {
    RequestEvent {
        v: warden_event::SCHEMA_VERSION,
        id: "e".into(),
        gateway: "gw".into(),
        seq: 0,
        ts,
        identity: "k".into(),
        tenant: String::new(),
        device_type: String::new(),
        auth: AuthInfo {
            method: AuthMethod::ApiKey,
            result: AuthResult::Ok,
        },
        client_ip: "10.0.0.1".into(),
        protocol: Protocol::Http,
        method: "GET".into(),
        route: "r".into(),
        path: path.into(),
        status,
        decision: Outcome::Allowed,
        latency_us: 1,
        bytes_in: 0,
        bytes_out: 0,
        user_agent: None,
        tls: None,
        reason: warden_event::Reason::None,
        query: String::new(),
        query_hash: 0,
    }
}

/// Features (n, errors, paths) of `id` over the window ending with `slot`.
fn features(w: &WindowState, plan: &WindowPlan, id: KeyId, slot: i64) -> Vec<f64> {
    let (mut sc, mut sk) = (Vec::new(), Vec::new());
    w.fold(id, slot, plan, &mut sc, &mut sk);
    let mut values = vec![0.0; plan.values.len()];
    plan.read_values(&sc, &sk, &mut values);
    let mut out = Vec::new();
    plan.features(&values, 1, w.size_secs(), 0, &mut out)
        .expect("features");
    out
}

#[test]
fn slides_cover_the_last_size_of_time_and_late_events_land_in_their_slot() {
    let plan = plan();
    let mut w = window(&plan);
    let events = [
        event(0, 200, "/a"),
        event(S, 500, "/b"),
        event(S + 1, 200, "/a"),
        event(2 * S, 503, "/c"),
        event(3 * S, 200, "/d"),
        event(S / 2, 200, "/late"),
    ];
    let batch = warden_event::to_record_batch(&events).expect("batch");
    let inputs = plan.evaluate(&batch).expect("inputs");
    let id = w.intern("k", 0);
    for (i, e) in events.iter().enumerate() {
        w.add(id, e.ts, &plan, &inputs, i);
    }
    assert_eq!(features(&w, &plan, id, 2), vec![5.0, 0.4, 4.0]);
    assert_eq!(
        features(&w, &plan, id, 3),
        vec![4.0, 0.5, 4.0],
        "slot 0 left the window"
    );
    let nobody = w.intern("other", 3 * S);
    let f = features(&w, &plan, nobody, 3);
    assert_eq!(f[0], 0.0);
    assert!(f[1].is_nan(), "no ratio of nothing");
    assert_eq!(w.key(id).map(|k| k.first_event_ns), Some(0));
}

#[test]
fn trim_drops_old_buckets_and_forgets_idle_keys_whose_ids_are_reused() {
    let plan = plan();
    let mut w = window(&plan);
    let batch = warden_event::to_record_batch(&[event(2 * S, 200, "/a")]).expect("batch");
    let inputs = plan.evaluate(&batch).expect("inputs");
    let id = w.intern("k", 2 * S);
    w.add(id, 2 * S, &plan, &inputs, 0);
    assert!(w.trim(5, 5 * S).is_empty());
    assert_eq!(features(&w, &plan, id, 2)[0], 0.0, "old buckets trimmed");
    assert_eq!(w.trim(20, 20 * S), vec![id]);
    assert_eq!(w.len(), 0);
    assert_eq!(w.id("k"), None);
    let again = w.intern("new", 21 * S);
    assert_eq!(again, id, "ids are reused");
    assert_eq!(w.name(again), "new");
    assert!(w.state_bytes() > 0);
}

#[test]
fn provisional_folds_match_full_folds_through_late_events_and_id_reuse() {
    let plan = plan();
    let mut w = window(&plan);
    let id = w.intern("k", 0);
    let add = |w: &mut WindowState, ts: i64, status: u16, path: &str| {
        let batch = warden_event::to_record_batch(&[event(ts, status, path)]).expect("batch");
        let inputs = plan.evaluate(&batch).expect("inputs");
        w.add(id, ts, &plan, &inputs, 0);
    };
    let check = |w: &mut WindowState, slot: i64| {
        let (mut a, mut ak) = (Vec::new(), Vec::new());
        let (mut b, mut bk) = (Vec::new(), Vec::new());
        w.fold(id, slot, &plan, &mut a, &mut ak);
        w.fold_provisional(id, slot, &plan, &mut b, &mut bk);
        assert_eq!(a, b, "scalars at slot {slot}");
        assert_eq!(ak, bk, "sketches at slot {slot}");
        a
    };
    add(&mut w, 0, 200, "/a");
    add(&mut w, S, 500, "/b");
    add(&mut w, 2 * S, 200, "/c");
    assert_eq!(check(&mut w, 2)[0], 3.0);
    // More events in the newest bucket: the cached prefix still holds.
    add(&mut w, 2 * S + 1, 200, "/d");
    assert_eq!(check(&mut w, 2)[0], 4.0);
    // A late event in an older bucket of the window invalidates it.
    add(&mut w, S + 5, 503, "/e");
    assert_eq!(check(&mut w, 2)[0], 5.0);
    assert_eq!(features(&w, &plan, id, 2), vec![5.0, 0.4, 5.0]);
    // The window slides.
    add(&mut w, 3 * S, 200, "/a");
    assert_eq!(check(&mut w, 3)[0], 5.0, "slot 0 left, slot 3 came");
    // Trim and idle expiry: a reused id does not inherit the old key's prefix.
    assert_eq!(w.trim(30, 30 * S), vec![id]);
    let again = w.intern("new", 31 * S);
    assert_eq!(again, id);
    let (mut b, mut bk) = (Vec::new(), Vec::new());
    w.fold_provisional(again, 31, &plan, &mut b, &mut bk);
    assert_eq!(b[0], 0.0);
    add(&mut w, 31 * S, 200, "/z");
    assert_eq!(check(&mut w, 31)[0], 1.0);
    assert_eq!(check(&mut w, 33)[0], 1.0);
    assert_eq!(check(&mut w, 34)[0], 0.0, "left the window");
}

/// A seeded xorshift: `next(n)` is uniform-ish in `0..n`.
fn xorshift(mut rng: u64) -> impl FnMut(u64) -> u64 {
    move |n| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    }
}

/// Values comparable with `==` when both are NaN (an empty window's percentile).
fn nan_eq(v: Vec<f64>) -> Vec<Option<f64>> {
    v.into_iter().map(|x| (!x.is_nan()).then_some(x)).collect()
}

/// The plan's values of folded aggregates.
fn read(plan: &WindowPlan, scalars: &[f64], sketches: &[Sketch]) -> Vec<f64> {
    let mut v = vec![0.0; plan.values.len()];
    plan.read_values(scalars, sketches, &mut v);
    v
}

#[test]
fn complete_folds_match_full_folds_through_late_events_gaps_and_id_reuse() {
    for features in [TWO_STACK, RUNNING, SCALARS] {
        complete_folds_match_full_folds(&plan_of(features));
    }
}

fn complete_folds_match_full_folds(plan: &WindowPlan) {
    let plan = plan.clone();
    assert!(plan.order_free());
    let mut w = window(&plan);
    let mut id = w.intern("k", 0);
    let mut next = xorshift(0x2545_f491_4f6c_dd1du64);
    let values = |sc: &[f64], sk: &[Sketch]| read(&plan, sc, sk);
    let (mut folds, mut rebuilt) = (0, 0);
    let mut sampled: Option<i64> = None;
    for slot in 0..400i64 {
        // A few events, some late (older slots), some ahead of the sampled slot.
        for _ in 0..next(4) {
            let at = (slot - next(3) as i64).max(0) * S + next(1000) as i64;
            let status = if next(5) == 0 { 503 } else { 200 };
            let path = format!("/p{}", next(if slot % 50 < 25 { 3 } else { 90 }));
            let batch = warden_event::to_record_batch(&[event(at, status, &path)]).expect("batch");
            let inputs = plan.evaluate(&batch).expect("inputs");
            w.add(id, at, &plan, &inputs, 0);
        }
        // Complete samples two slots behind, one per slot, with the odd gap and repeat.
        let mut s = slot - 2;
        match next(20) {
            0 => s += 1,
            1 => s = sampled.unwrap_or(s),
            _ => {}
        }
        if s < 0 {
            continue;
        }
        let (mut a, mut ak) = (Vec::new(), Vec::new());
        let (mut b, mut bk) = (Vec::new(), Vec::new());
        w.fold(id, s, &plan, &mut a, &mut ak);
        w.fold_complete(id, s, &plan, &mut b, &mut bk);
        assert_eq!(a, b, "scalars at slot {s}");
        assert_eq!(
            nan_eq(values(&a, &ak)),
            nan_eq(values(&b, &bk)),
            "values at slot {s}"
        );
        folds += 1;
        if sampled != Some(s - 1) && sampled != Some(s) {
            rebuilt += 1;
        }
        sampled = Some(s);
        // Running totals: now and then buckets are trimmed ahead of the samples (as a sweep of
        // keys not sampled does with `sample = "active"`); a total that counted them must not
        // subtract them later. (The two-stack folds keep what they folded; a full fold cannot.)
        let trim_at = if plan.invertible() && next(25) == 0 {
            s + 2
        } else {
            s
        };
        assert!(w.trim(trim_at, s * S).is_empty());
        // Now and then the key is forgotten and its id reused by another.
        if slot % 97 == 96 {
            assert_eq!(w.trim(slot + 100, (slot + 100) * S), vec![id]);
            id = w.intern("other", slot * S);
        }
    }
    assert!(
        folds > 350 && rebuilt > 5,
        "{:?}: {folds} folds, {rebuilt} gaps",
        plan.names
    );
}

#[test]
fn key_states_are_two_cache_lines() {
    assert_eq!(std::mem::size_of::<Option<KeyState>>(), 128);
    assert_eq!(std::mem::align_of::<Option<KeyState>>(), 64);
    assert_eq!(std::mem::size_of::<Prefix>(), 64);
}

#[test]
fn active_sampling_covers_the_keys_with_events_in_the_slot() {
    let plan = plan();
    let config = WindowConfig {
        name: "w".into(),
        key: WindowKey::Identity,
        size_ms: 3000,
        slide_ms: 1000,
        allowed_lateness_ms: 0,
        idle_expiry_ms: 10_000,
        provisional: true,
        sample: Sampling::Active,
    };
    let mut w = WindowState::new(&config, &plan);
    assert!(w.samples_active());
    let batch = warden_event::to_record_batch(&[event(0, 200, "/a")]).expect("batch");
    let inputs = plan.evaluate(&batch).expect("inputs");
    let (a, b) = (w.intern("a", 0), w.intern("b", 0));
    w.add(a, 0, &plan, &inputs, 0);
    w.add(a, 10, &plan, &inputs, 0);
    w.add(b, 0, &plan, &inputs, 0);
    w.add(a, S, &plan, &inputs, 0);
    w.add(a, 3 * S, &plan, &inputs, 0);
    w.add(b, 3 * S + 5, &plan, &inputs, 0);
    let mut ids = Vec::new();
    w.active_keys(0, &mut ids);
    assert_eq!(
        ids,
        vec![a, b],
        "both had events in slot 0, listed once each"
    );
    w.active_keys(1, &mut ids);
    assert_eq!(ids, vec![a]);
    w.active_keys(2, &mut ids);
    assert!(ids.is_empty(), "nobody had events in slot 2");
    // Samples with gaps between them still fold the whole window.
    let (mut x, mut xk) = (Vec::new(), Vec::new());
    let (mut y, mut yk) = (Vec::new(), Vec::new());
    w.fold_complete(a, 1, &plan, &mut x, &mut xk);
    w.fold_complete(a, 3, &plan, &mut x, &mut xk);
    w.fold(a, 3, &plan, &mut y, &mut yk);
    assert_eq!(x, y);
    w.trim_keys(&[a], 3);
    assert_eq!(features(&w, &plan, a, 3)[0], 2.0, "slots 1 and 3");
    assert_eq!(w.key(a).map(|k| k.slots.len()), Some(2), "slot 0 dropped");
    w.active_keys(3, &mut ids);
    assert_eq!(ids, vec![a, b]);
    // Every key is swept at the first sample, then once per sweep period.
    assert!(w.sweep_due(3));
    assert!(!w.sweep_due(4));
    // A restored key is sampled again for the slots not yet sampled.
    w.sampled_through = Some(2);
    let saved = w.key(b).cloned().expect("b");
    w.restore_key(saved);
    w.active_keys(3, &mut ids);
    assert_eq!(ids, vec![b]);
}

#[test]
fn a_late_event_after_every_bucket_was_dropped_keeps_events_in_their_own_buckets() {
    let plan = plan();
    let mut w = window(&plan);
    let batch = warden_event::to_record_batch(&[event(0, 200, "/a")]).expect("batch");
    let inputs = plan.evaluate(&batch).expect("inputs");
    let a = w.intern("a", 10 * S);
    w.add(a, 10 * S + 500, &plan, &inputs, 0);
    // The sample of slot 14 drops every bucket (the key stays: it is not idle yet).
    w.trim(14, 14 * S);
    assert_eq!(w.key(a).map(|k| k.slots.len()), Some(0));
    // A late event older than the newest one, then events of the slot of that newest one
    // and of a new slot: each lands in its own bucket.
    w.add(a, 9 * S, &plan, &inputs, 0);
    w.add(a, 10 * S + 700, &plan, &inputs, 0);
    w.add(a, 10 * S + 800, &plan, &inputs, 0);
    w.add(a, 11 * S, &plan, &inputs, 0);
    assert_eq!(w.key(a).map(|k| k.slots.clone()), Some(vec![9, 10, 11]));
    assert_eq!(features(&w, &plan, a, 9)[0], 1.0);
    assert_eq!(features(&w, &plan, a, 10)[0], 3.0);
    assert_eq!(features(&w, &plan, a, 11)[0], 4.0);
    // A restored key (here with a newest event time ahead of its buckets) keeps adding to
    // its own buckets.
    let mut saved = w.key(a).cloned().expect("a");
    saved.last_event_ns = 30 * S;
    let id = w.restore_key(saved);
    w.add(id, 11 * S + 1, &plan, &inputs, 0);
    w.add(id, 12 * S, &plan, &inputs, 0);
    assert_eq!(
        w.key(id).map(|k| k.slots.clone()),
        Some(vec![9, 10, 11, 12])
    );
    assert_eq!(features(&w, &plan, id, 12)[0], 5.0, "slots 10 to 12");
}

/// [`WindowState::complete_unchanged`]: whenever it lets a sample reuse the previous one's
/// values, they are the values of a full fold — through quiet spells, late events into held
/// buckets, gaps and repeats between samples, and a key forgotten with its id reused.
#[test]
fn reused_complete_samples_equal_full_folds() {
    for features in [TWO_STACK, RUNNING, SCALARS] {
        reused_complete_samples(&plan_of(features));
    }
}

fn reused_complete_samples(plan: &WindowPlan) {
    let plan = plan.clone();
    let mut w = window(&plan);
    let mut id = w.intern("k", 0);
    let mut next = xorshift(0x9e37_79b9_7f4a_7c15u64);
    let values = |sc: &[f64], sk: &[Sketch]| read(&plan, sc, sk);
    let (mut reused, mut folded) = (0, 0);
    let mut last: Option<(i64, Vec<f64>)> = None;
    for slot in 0..2000i64 {
        // Sparse: most slots have no event; now and then a late one into a held bucket.
        if next(4) == 0 {
            let at = (slot - next(4) as i64).max(0) * S + next(1000) as i64;
            let path = format!("/p{}", next(5));
            let batch = warden_event::to_record_batch(&[event(at, 200, &path)]).expect("batch");
            let inputs = plan.evaluate(&batch).expect("inputs");
            w.add(id, at, &plan, &inputs, 0);
        }
        let mut s = slot - 1;
        match next(30) {
            0 => s += 1,
            1 => s = last.as_ref().map_or(s, |l| l.0),
            _ => {}
        }
        if s < 0 {
            continue;
        }
        let (mut a, mut ak) = (Vec::new(), Vec::new());
        w.fold(id, s, &plan, &mut a, &mut ak);
        let full = values(&a, &ak);
        let prev = last.as_ref().filter(|l| l.0 == s - 1);
        if let Some(prev) = prev
            && w.complete_unchanged(id, s)
        {
            assert_eq!(
                nan_eq(prev.1.clone()),
                nan_eq(full.clone()),
                "reused at slot {s}"
            );
            reused += 1;
        } else {
            let (mut b, mut bk) = (Vec::new(), Vec::new());
            w.fold_complete(id, s, &plan, &mut b, &mut bk);
            assert_eq!(
                nan_eq(values(&b, &bk)),
                nan_eq(full.clone()),
                "folded at slot {s}"
            );
            folded += 1;
        }
        last = Some((s, full));
        // A quiet spell longer than the idle expiry forgets the key; its id is reused.
        if w.trim(s, s * S) == vec![id] {
            id = w.intern("other", s * S);
            last = None;
        }
    }
    assert!(
        reused > 300 && folded > 300,
        "{reused} reused, {folded} folded"
    );
}

/// Running distinct sets stay exact up to the sketches' exact limit; past it (a bucket of
/// registers, or buckets whose union is too large) the sample is a full fold, and the running
/// total resumes once the window is small again.
#[test]
fn running_distinct_sets_fall_back_to_folds_past_the_exact_limit() {
    let plan = plan_of(RUNNING);
    let mut w = window(&plan);
    let id = w.intern("k", 0);
    let add = |w: &mut WindowState, slot: i64, paths: std::ops::Range<usize>| {
        for p in paths {
            let at = slot * S + p as i64;
            let batch =
                warden_event::to_record_batch(&[event(at, 200, &format!("/p{p}"))]).expect("batch");
            let inputs = plan.evaluate(&batch).expect("inputs");
            w.add(id, at, &plan, &inputs, 0);
        }
    };
    // Slots 0–1: 40 paths each, 80 together (past the exact 64, no bucket of registers);
    // slot 4: 70 paths (a bucket of registers); then a few each.
    add(&mut w, 0, 0..40);
    add(&mut w, 1, 40..80);
    add(&mut w, 2, 0..2);
    add(&mut w, 4, 100..170);
    for slot in 5..12 {
        add(&mut w, slot, 0..3);
    }
    for slot in 0..12 {
        let (mut a, mut ak) = (Vec::new(), Vec::new());
        let (mut b, mut bk) = (Vec::new(), Vec::new());
        w.fold(id, slot, &plan, &mut a, &mut ak);
        w.fold_complete(id, slot, &plan, &mut b, &mut bk);
        assert_eq!(read(&plan, &a, &ak), read(&plan, &b, &bk), "slot {slot}");
    }
    let (mut b, mut bk) = (Vec::new(), Vec::new());
    w.fold_complete(id, 11, &plan, &mut b, &mut bk);
    assert_eq!(
        read(&plan, &b, &bk)[2],
        3.0,
        "exact again once the window is small"
    );
}
