use super::*;

const MS: u64 = 1_000_000;

fn params(rate_per_s: f64, burst: u32) -> Params {
    Params::new(Rate { rate_per_s, burst })
}

fn allowed(o: Outcome) -> bool {
    matches!(o, Outcome::Allowed { .. })
}

#[test]
fn exact_count_at_a_known_rate() {
    // 10/s with a burst of 5, offered 100/s for 2 s: burst + rate × elapsed pass, exactly.
    let t = GcraTable::new(1024);
    let p = params(10.0, 5);
    let key = t.hash("dev-1");
    let passed = (0..200u64)
        .filter(|i| allowed(t.acquire(key, p, 10 * MS * i)))
        .count();
    assert_eq!(passed, 5 + 19, "t = 0 … 1990 ms: 5 + floor(1.99 × 10)");
}

#[test]
fn burst_from_idle_then_one_per_interval() {
    let t = GcraTable::new(64);
    let p = params(2.0, 3);
    let k = t.hash("k");
    let now = 5_000 * MS;
    for want in [2, 1, 0] {
        assert_eq!(
            t.acquire(k, p, now),
            Outcome::Allowed {
                remaining: want,
                reset_ns: (3 - want as u64) * 500 * MS
            }
        );
    }
    assert_eq!(
        t.acquire(k, p, now),
        Outcome::Limited {
            retry_after_ns: 500 * MS,
            reset_ns: 1500 * MS
        }
    );
    assert!(!allowed(t.acquire(k, p, now + 499 * MS)));
    assert!(allowed(t.acquire(k, p, now + 500 * MS)));
    assert!(!allowed(t.acquire(k, p, now + 500 * MS)));
    // Idle long enough to refill completely: the whole burst again, no more.
    let later = now + 10_000 * MS;
    assert_eq!(
        (0..10).filter(|_| allowed(t.acquire(k, p, later))).count(),
        3
    );
}

#[test]
fn refund_gives_back_one_request() {
    let t = GcraTable::new(64);
    let p = params(1.0, 1);
    let k = t.hash("k");
    assert!(allowed(t.acquire(k, p, 0)));
    assert!(!allowed(t.acquire(k, p, 0)));
    t.refund(k, p, 0);
    assert!(allowed(t.acquire(k, p, 0)));
}

#[test]
fn an_evicted_key_does_not_come_back_with_a_full_bucket() {
    // One set of 8 slots: flooding it with new keys must evict the throttled key.
    let t = GcraTable::new(WAYS);
    assert_eq!(t.capacity(), WAYS);
    let p = params(1.0, 5);
    let attacker = t.hash("attacker");
    let now = 1_000 * MS;
    while allowed(t.acquire(attacker, p, now)) {}
    // Other keys deeper in debt than the attacker (a slower rate), so the attacker's bucket is
    // the fullest and the one evicted.
    let slow = params(0.1, 1);
    for i in 0..100 {
        let k = t.hash(format!("other-{i}"));
        t.acquire(k, slow, now);
    }
    assert!(
        !t.set(attacker).lock().keys.contains(&attacker),
        "the attacker was evicted"
    );
    assert!(
        !allowed(t.acquire(attacker, p, now)),
        "back after eviction: still limited"
    );
    // Once its bucket would have refilled, the key is treated as new again.
    assert!(allowed(t.acquire(attacker, p, now + 10_000 * MS)));
}

#[test]
fn evicting_full_buckets_costs_nothing() {
    let t = GcraTable::new(WAYS);
    let p = params(100.0, 2);
    for i in 0..WAYS {
        t.acquire(t.hash(i), p, 0);
    }
    // Long after: every tracked bucket is full again, so evicting them raises no floor.
    let later = 1_000 * MS;
    let fresh = t.hash("fresh");
    assert_eq!(
        (0..5)
            .filter(|_| allowed(t.acquire(fresh, p, later)))
            .count(),
        2,
        "a new key gets exactly its burst"
    );
    assert_eq!(t.set(fresh).lock().floor, 0);
}

#[test]
fn memory_per_key_is_bounded_and_documented() {
    let per_key = std::mem::size_of::<Mutex<Set>>() as f64 / WAYS as f64;
    assert!(per_key <= BYTES_PER_KEY as f64, "{per_key} bytes per key");
    let t = GcraTable::new(100_000);
    assert_eq!(t.capacity(), 131_072);
    assert_eq!(
        t.memory_bytes(),
        131_072 / WAYS * std::mem::size_of::<Mutex<Set>>()
    );
    assert!(t.memory_bytes() <= 131_072 * BYTES_PER_KEY);
}

#[test]
fn fractional_rates() {
    let t = GcraTable::new(64);
    let p = params(0.5, 1);
    assert_eq!(p.interval_ns, 2_000 * MS);
    let k = t.hash("slow");
    assert!(allowed(t.acquire(k, p, 0)));
    assert!(!allowed(t.acquire(k, p, 1_999 * MS)));
    assert!(allowed(t.acquire(k, p, 2_000 * MS)));
}

#[test]
fn occupancy_and_evictions_are_counted() {
    let t = GcraTable::new(8);
    let p = params(1.0, 1);
    assert_eq!(t.occupancy(0), (0, 0));
    // One set of 8 ways: 8 keys take every slot, each bucket emptied by its request.
    for k in 1..=8u64 {
        t.acquire(k, p, 0);
    }
    assert_eq!(t.occupancy(0), (8, 8));
    assert_eq!(t.evictions(), 0);
    // A ninth key while all eight are still limited: one of them loses its slot.
    t.acquire(9, p, 0);
    assert_eq!(t.evictions(), 1);
    // Ten seconds on, every bucket is full again: tracked, not active; a new key evicts
    // nobody who was being limited.
    assert_eq!(t.occupancy(10_000_000_000), (8, 0));
    t.acquire(10, p, 10_000_000_000);
    assert_eq!(t.evictions(), 1);
}
