//! Sliding windows kept as rings of per-slide buckets, updated incrementally.

use std::collections::{HashMap, VecDeque};

use warden_config::{FeatureKind, WindowConfig, WindowKey};

/// Counts of one slide of one key.
#[derive(Debug, Clone, Default)]
struct Bucket {
    slot: i64,
    count: u64,
    denied: u64,
    /// Events at or above each error threshold the window's features use.
    errors: Vec<u64>,
}

#[derive(Debug, Default)]
struct KeyWindow {
    buckets: VecDeque<Bucket>,
    last_event_ns: i64,
}

/// Aggregates of a window for one key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Aggregate {
    pub count: u64,
    pub denied: u64,
    pub errors: Vec<u64>,
}

/// One window of the pipeline, over every key it has seen.
#[derive(Debug)]
pub struct WindowState {
    pub name: String,
    pub key: WindowKey,
    slide_ns: i64,
    slides: i64,
    pub lateness_ns: i64,
    idle_ns: i64,
    /// Distinct error thresholds (statuses) features of this window use.
    pub thresholds: Vec<u16>,
    keys: HashMap<String, KeyWindow>,
    /// Last slot whose complete sample was taken.
    pub sampled_through: Option<i64>,
}

impl WindowState {
    pub fn new(config: &WindowConfig, thresholds: Vec<u16>) -> Self {
        let slide_ns = (config.slide_ms as i64).max(1) * 1_000_000;
        Self {
            name: config.name.clone(),
            key: config.key,
            slide_ns,
            slides: (config.size_ms / config.slide_ms.max(1)).max(1) as i64,
            lateness_ns: config.allowed_lateness_ms as i64 * 1_000_000,
            idle_ns: config.idle_expiry_ms as i64 * 1_000_000,
            thresholds,
            keys: HashMap::new(),
            sampled_through: None,
        }
    }

    pub fn slot(&self, ts: i64) -> i64 {
        ts.div_euclid(self.slide_ns)
    }

    /// End of `slot`, in nanoseconds.
    pub fn slot_end(&self, slot: i64) -> i64 {
        (slot + 1) * self.slide_ns
    }

    pub fn size_secs(&self) -> f64 {
        (self.slides * self.slide_ns) as f64 / 1e9
    }

    pub fn slides(&self) -> i64 {
        self.slides
    }

    /// Add one event.
    pub fn add(&mut self, key: &str, ts: i64, status: u16, denied: bool) {
        let slot = self.slot(ts);
        let n = self.thresholds.len();
        let errors: Vec<bool> = self.thresholds.iter().map(|t| status >= *t).collect();
        let w = match self.keys.get_mut(key) {
            Some(w) => w,
            None => self.keys.entry(key.to_string()).or_default(),
        };
        w.last_event_ns = w.last_event_ns.max(ts);
        // Buckets are in slot order; late events land in an older bucket.
        let pos = w.buckets.partition_point(|b| b.slot < slot);
        if w.buckets.get(pos).is_none_or(|b| b.slot != slot) {
            w.buckets.insert(
                pos,
                Bucket {
                    slot,
                    errors: vec![0; n],
                    ..Bucket::default()
                },
            );
        }
        let b = &mut w.buckets[pos];
        b.count += 1;
        b.denied += u64::from(denied);
        for (e, hit) in b.errors.iter_mut().zip(errors) {
            *e += u64::from(hit);
        }
    }

    /// Aggregate of `key` over the window ending with `slot` (inclusive).
    pub fn aggregate(&self, key: &str, slot: i64) -> Aggregate {
        let mut agg = Aggregate {
            errors: vec![0; self.thresholds.len()],
            ..Aggregate::default()
        };
        if let Some(w) = self.keys.get(key) {
            for b in w
                .buckets
                .iter()
                .filter(|b| b.slot > slot - self.slides && b.slot <= slot)
            {
                agg.count += b.count;
                agg.denied += b.denied;
                for (a, e) in agg.errors.iter_mut().zip(&b.errors) {
                    *a += e;
                }
            }
        }
        agg
    }

    /// Drop buckets that no window ending at or after `slot` covers, and keys idle since
    /// before `now_event_ns - idle`. Returns the forgotten keys.
    pub fn trim(&mut self, slot: i64, now_event_ns: i64) -> Vec<String> {
        let oldest = slot - self.slides;
        let idle_before = now_event_ns - self.idle_ns;
        let mut gone = Vec::new();
        self.keys.retain(|k, w| {
            while w.buckets.front().is_some_and(|b| b.slot <= oldest) {
                w.buckets.pop_front();
            }
            let keep = w.last_event_ns >= idle_before;
            if !keep {
                gone.push(k.clone());
            }
            keep
        });
        gone
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.keys.keys()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.keys.len()
    }
}

/// The value of a feature from a window aggregate.
pub fn feature_value(kind: FeatureKind, agg: &Aggregate, error_idx: usize, size_secs: f64) -> f64 {
    let ratio = |n: u64| {
        if agg.count == 0 {
            0.0
        } else {
            n as f64 / agg.count as f64
        }
    };
    match kind {
        FeatureKind::Rate => agg.count as f64 / size_secs,
        FeatureKind::Count => agg.count as f64,
        FeatureKind::ErrorRatio => ratio(agg.errors.get(error_idx).copied().unwrap_or(0)),
        FeatureKind::DeniedRatio => ratio(agg.denied),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window() -> WindowState {
        WindowState::new(
            &WindowConfig {
                name: "w".into(),
                key: WindowKey::Identity,
                size_ms: 3000,
                slide_ms: 1000,
                allowed_lateness_ms: 0,
                idle_expiry_ms: 10_000,
            },
            vec![500],
        )
    }

    const S: i64 = 1_000_000_000;

    #[test]
    fn slides_cover_the_last_size_of_time() {
        let mut w = window();
        for (t, status) in [(0, 200), (S, 500), (S + 1, 200), (2 * S, 503), (3 * S, 200)] {
            w.add("k", t, status, false);
        }
        let a = w.aggregate("k", 2);
        assert_eq!((a.count, a.errors[0]), (4, 2));
        let a = w.aggregate("k", 3);
        assert_eq!((a.count, a.errors[0]), (4, 2), "slot 0 left the window");
        assert_eq!(
            feature_value(FeatureKind::Rate, &a, 0, w.size_secs()),
            4.0 / 3.0
        );
        assert_eq!(
            feature_value(FeatureKind::ErrorRatio, &a, 0, w.size_secs()),
            0.5
        );
        assert_eq!(
            w.aggregate("other", 3),
            Aggregate {
                errors: vec![0],
                ..Default::default()
            }
        );
    }

    #[test]
    fn late_events_land_in_their_slot_and_trim_forgets_idle_keys() {
        let mut w = window();
        w.add("k", 2 * S, 200, false);
        w.add("k", S, 200, true);
        assert_eq!(w.aggregate("k", 1).count, 1);
        assert_eq!(w.aggregate("k", 2).denied, 1);
        assert!(w.trim(5, 5 * S).is_empty());
        assert_eq!(w.aggregate("k", 2).count, 0, "old buckets trimmed");
        assert_eq!(w.trim(20, 20 * S), vec!["k".to_string()]);
        assert_eq!(w.len(), 0);
    }
}
