//! Event-time windows: per key, the buckets (one per slide) of the window's aggregates, and
//! the interning of keys into dense ids detectors index their state by.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use warden_config::{Sampling, WindowConfig};
use warden_detect::KeyId;

use crate::feature::WindowPlan;
use crate::sketch::Sketch;

mod index;
mod running;
use index::KeyIndex;
use running::{Multiset, drop_counted};

/// Buckets of one key, in slot order.
///
/// Aligned to cache lines: the state is two lines (128 bytes), all of which adding an event
/// reads; unaligned, a key's state straddled three lines.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[repr(align(64))]
pub struct KeyState {
    /// The key (stored inline up to 24 bytes: comparing it costs no extra memory access).
    pub name: CompactString,
    /// Event time of the key's first event (since it was last forgotten).
    pub first_event_ns: i64,
    pub last_event_ns: i64,
    /// Peer groups (device type, tenant) as interned ids.
    pub peers: [u32; 2],
    /// Events of slots below this change a bucket that a cached fold of this key (the
    /// provisional prefix, the complete-sample suffixes) holds; kept here so that adding an
    /// event touches only the key's own state (see [`WindowState::refresh_floor`]).
    #[serde(skip, default = "no_floor")]
    cache_floor: i64,
    slots: Vec<i64>,
    /// `slots.len()` × the plan's scalars.
    scalars: Vec<f64>,
    /// `slots.len()` × the plan's sketches.
    sketches: Vec<Sketch>,
}

/// Equal state: `cache_floor` is about the caches beside it, not the key's state.
impl PartialEq for KeyState {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name
            && self.first_event_ns == o.first_event_ns
            && self.last_event_ns == o.last_event_ns
            && self.peers == o.peers
            && self.slots == o.slots
            && self.scalars == o.scalars
            && self.sketches == o.sketches
    }
}

/// The slot below which an event changes a cached fold: the prefix holds the buckets below
/// its slot, the complete-sample suffixes those up to `through`.
fn cache_floor(prefix_slot: Option<i64>, through: Option<i64>) -> i64 {
    prefix_slot
        .unwrap_or(i64::MIN)
        .max(through.map_or(i64::MIN, |t| t.saturating_add(1)))
}

fn no_floor() -> i64 {
    i64::MIN
}

/// Strings interned to dense ids (peer group names).
#[derive(Debug, Clone, Default)]
pub struct Interner {
    ids: foldhash::HashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
}

impl Interner {
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(id) = self.ids.get(s) {
            return *id;
        }
        let id = self.names.len() as u32;
        self.names.push(s.into());
        self.ids.insert(s.into(), id);
        id
    }

    pub fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("", |s| s)
    }
}

/// One window over every key it has seen.
#[derive(Debug, Clone)]
pub struct WindowState {
    pub config: WindowConfig,
    pub slide_ns: i64,
    slides: i64,
    pub lateness_ns: i64,
    idle_ns: i64,
    /// Key → id; the names are the states' (see [`KeyIndex`]).
    ids: KeyIndex,
    states: Vec<Option<KeyState>>,
    free: Vec<KeyId>,
    pub peers: Interner,
    /// Last slot whose complete sample was taken.
    pub sampled_through: Option<i64>,
    nscalars: usize,
    nsketches: usize,
    /// Per key id: its buckets before the newest slot, folded (see
    /// [`WindowState::fold_provisional`]).
    prefix: Vec<Prefix>,
    /// Per key id: partial folds for complete samples (see [`WindowState::fold_complete`]);
    /// empty when the plan's aggregates depend on folding order.
    swag: Vec<Swag>,
    use_swag: bool,
    /// The plan is [`WindowPlan::invertible`]: a key's complete-sample fold is a running total
    /// in its [`Swag`] (`back_scalars` and `distinct`; no `front`).
    running: bool,
    /// `sample = "active"`: slot → the keys that got their first event of that slot (a new
    /// bucket), i.e. the keys its complete sample covers. `None` with `sample = "all"`.
    active: Option<std::collections::BTreeMap<i64, Vec<KeyId>>>,
    /// With `sample = "active"`, every key is trimmed (idle expiry, old buckets) only every
    /// `sweep_slides` slides; the keys a sample covers are trimmed at once.
    sweep_slides: i64,
    last_sweep: Option<i64>,
}

/// How often keys that are not sampled are swept for idle expiry and old buckets, at most
/// (event time): a quiet key keeps at most a window of buckets this long.
const SWEEP_NS: i64 = 60_000_000_000;

/// A key's complete-sample window as a two-stack sliding aggregate: complete samples come
/// slide after slide, each window one bucket newer and one older than the last, so instead of
/// folding every bucket of the window per sample (20 to 60 merges, HyperLogLog unions
/// included), `front` keeps, for each bucket up to `split`, the fold of it and every later
/// bucket up to `split`, and `back` the fold of the buckets after `split`: a sample is one
/// copy and one merge, and the suffixes are rebuilt once all of `front` has left the window
/// (once per window length). Folding in another order gives the same aggregates only when
/// they are order-free (counts, sums of integers, min, max, sketches): see
/// [`WindowPlan::order_free`].
#[derive(Debug, Clone, Default)]
struct Swag {
    /// Newest slot folded in; `None` when nothing is valid (rebuilt on the next sample).
    through: Option<i64>,
    split: i64,
    front_slots: Vec<i64>,
    front_scalars: Vec<f64>,
    front_sketches: Vec<Sketch>,
    back_scalars: Vec<f64>,
    back_sketches: Vec<Sketch>,
    /// With running totals (see `window/running.rs`), per sketch: the window's distinct
    /// hashes and how many buckets hold each; `back_scalars` is the scalars' total.
    distinct: Vec<Multiset>,
}

impl Swag {
    fn heap_bytes(&self) -> usize {
        self.front_slots.capacity() * 8
            + (self.front_scalars.capacity() + self.back_scalars.capacity()) * 8
            + (self.front_sketches.capacity() + self.back_sketches.capacity())
                * std::mem::size_of::<Sketch>()
            + self
                .front_sketches
                .iter()
                .chain(&self.back_sketches)
                .map(Sketch::heap_bytes)
                .sum::<usize>()
            + self.distinct.capacity() * std::mem::size_of::<Multiset>()
            + self
                .distinct
                .iter()
                .map(|m| m.capacity() * std::mem::size_of::<(u64, u32)>())
                .sum::<usize>()
    }
}

/// Fold bucket `i` of `k` into the accumulators.
fn merge_bucket(
    k: &KeyState,
    (ns, nk): (usize, usize),
    i: usize,
    plan: &WindowPlan,
    scalars: &mut [f64],
    sketches: &mut [Sketch],
) {
    plan.fold_scalars(scalars, &k.scalars[i * ns..(i + 1) * ns]);
    merge_sketches(sketches, &k.sketches[i * nk..(i + 1) * nk]);
}

fn merge_sketches(acc: &mut [Sketch], from: &[Sketch]) {
    for (acc, b) in acc.iter_mut().zip(from) {
        match (acc, b) {
            (Sketch::Distinct(a), Sketch::Distinct(b)) => a.merge(b),
            (Sketch::Quantiles(a), Sketch::Quantiles(b)) => a.merge(b),
            _ => {}
        }
    }
}

/// The fold of a key's buckets in the window ending with `slot`, *without* the bucket of
/// `slot` itself: provisional scoring reads the window many times per slot, and only the
/// newest bucket changes between those reads (older ones change only through late events,
/// which invalidate this).
#[derive(Debug, Clone, Default)]
#[repr(align(64))]
struct Prefix {
    slot: Option<i64>,
    scalars: Vec<f64>,
    sketches: Vec<Sketch>,
}

/// Copy `from` into `to`, reusing `to`'s allocations where the modes match.
fn copy_sketches(to: &mut Vec<Sketch>, from: &[Sketch]) {
    use crate::sketch::Hll;
    if to.len() != from.len() {
        to.clear();
        to.extend_from_slice(from);
        return;
    }
    for (a, b) in to.iter_mut().zip(from) {
        match (a, b) {
            (Sketch::Distinct(Hll::Sparse(x)), Sketch::Distinct(Hll::Sparse(y))) => {
                x.clear();
                x.extend_from_slice(y);
            }
            (a, b) => a.clone_from(b),
        }
    }
}

/// Reset accumulators to empty aggregates.
fn reset(plan: &WindowPlan, nsketches: usize, scalars: &mut Vec<f64>, sketches: &mut Vec<Sketch>) {
    scalars.clear();
    plan.new_scalars(scalars);
    if sketches.len() != nsketches {
        sketches.clear();
        plan.new_sketches(sketches);
    } else {
        for s in sketches.iter_mut() {
            match s {
                Sketch::Distinct(h) => h.clear(),
                Sketch::Quantiles(d) => d.clear(),
            }
        }
    }
}

/// Fold `k`'s buckets of slots in `(lo, hi]` into the accumulators (not reset).
fn merge_range(
    k: &KeyState,
    (ns, nk): (usize, usize),
    (lo, hi): (i64, i64),
    plan: &WindowPlan,
    scalars: &mut [f64],
    sketches: &mut [Sketch],
) {
    let from = k.slots.partition_point(|s| *s <= lo);
    for (i, s) in k.slots.iter().enumerate().skip(from) {
        if *s > hi {
            break;
        }
        merge_bucket(k, (ns, nk), i, plan, scalars, sketches);
    }
}

impl WindowState {
    pub fn new(config: &WindowConfig, plan: &WindowPlan) -> Self {
        let ms = |v: u64| {
            i64::try_from(v)
                .unwrap_or(i64::MAX / 1_000_000)
                .saturating_mul(1_000_000)
        };
        Self {
            config: config.clone(),
            slide_ns: ms(config.slide_ms).max(1),
            slides: i64::try_from(config.size_ms / config.slide_ms.max(1))
                .unwrap_or(1)
                .max(1),
            lateness_ns: ms(config.allowed_lateness_ms),
            idle_ns: ms(config.idle_expiry_ms),
            ids: KeyIndex::default(),
            states: Vec::new(),
            free: Vec::new(),
            peers: Interner::default(),
            sampled_through: None,
            nscalars: plan.scalars.len(),
            nsketches: plan.sketches.len(),
            prefix: Vec::new(),
            swag: Vec::new(),
            use_swag: plan.order_free(),
            running: plan.invertible(),
            active: (config.sample == Sampling::Active).then(Default::default),
            sweep_slides: (SWEEP_NS.min(ms(config.idle_expiry_ms) / 4)
                / ms(config.slide_ms).max(1))
            .max(1),
            last_sweep: None,
        }
    }

    /// Whether complete samples cover only the keys active in their slide.
    pub fn samples_active(&self) -> bool {
        self.active.is_some()
    }

    /// The keys a complete sample of `slot` covers with `sample = "active"` (those with events
    /// in `slot`), sorted; forgets the keys listed for `slot` and any earlier slot.
    pub fn active_keys(&mut self, slot: i64, out: &mut Vec<KeyId>) {
        out.clear();
        let Some(active) = self.active.as_mut() else {
            return;
        };
        while let Some(e) = active.first_entry() {
            if *e.key() > slot {
                break;
            }
            let (s, ids) = e.remove_entry();
            if s == slot {
                out.extend(ids);
            }
        }
        out.sort_unstable();
        out.dedup();
        let states = &self.states;
        out.retain(|id| {
            states
                .get(*id as usize)
                .and_then(Option::as_ref)
                .is_some_and(|k| k.slots.binary_search(&slot).is_ok())
        });
    }

    /// Drop the buckets of `ids` that no window ending at or after `slot` covers (the keys a
    /// sample just covered, with `sample = "active"`).
    pub fn trim_keys(&mut self, ids: &[KeyId], slot: i64) {
        let oldest = slot - self.slides;
        let (ns, nk) = (self.nscalars, self.nsketches);
        for id in ids {
            let Some(k) = self.states.get_mut(*id as usize).and_then(Option::as_mut) else {
                continue;
            };
            let n = k.slots.partition_point(|s| *s <= oldest);
            if n > 0 {
                if self.running {
                    let i = *id as usize;
                    drop_counted(self.swag.get_mut(i), self.prefix.get(i), k, n, self.slides);
                }
                k.slots.drain(..n);
                k.scalars.drain(..n * ns);
                k.sketches.drain(..n * nk);
            }
        }
    }

    /// With `sample = "active"`, whether every key should be swept ([`WindowState::trim`])
    /// after the sample of `slot`; records the sweep. Always true with `sample = "all"`.
    pub fn sweep_due(&mut self, slot: i64) -> bool {
        if self.active.is_none() {
            return true;
        }
        match self.last_sweep {
            Some(s) if slot < s + self.sweep_slides => false,
            _ => {
                self.last_sweep = Some(slot);
                true
            }
        }
    }

    fn forget_prefix(&mut self, id: KeyId) {
        if let Some(p) = self.prefix.get_mut(id as usize) {
            *p = Prefix::default();
        }
        if let Some(w) = self.swag.get_mut(id as usize) {
            *w = Swag::default();
        }
        self.refresh_floor(id as usize);
    }

    /// Set `cache_floor` of key `idx` from its cached folds. Must follow every change of the
    /// prefix's slot or the suffixes' `through`.
    fn refresh_floor(&mut self, idx: usize) {
        let prefix = self.prefix.get(idx).and_then(|p| p.slot);
        let through = self.swag.get(idx).and_then(|w| w.through);
        if let Some(Some(k)) = self.states.get_mut(idx) {
            k.cache_floor = cache_floor(prefix, through);
        }
    }

    pub fn slot(&self, ts: i64) -> i64 {
        ts.div_euclid(self.slide_ns)
    }

    /// End of `slot`, nanoseconds.
    pub fn slot_end(&self, slot: i64) -> i64 {
        (slot + 1).saturating_mul(self.slide_ns)
    }

    pub fn slides(&self) -> i64 {
        self.slides
    }

    pub fn size_ns(&self) -> i64 {
        self.slides * self.slide_ns
    }

    pub fn size_secs(&self) -> f64 {
        (self.slides * self.slide_ns) as f64 / 1e9
    }

    /// The id of `key`, created if new.
    pub fn intern(&mut self, key: &str, ts: i64) -> KeyId {
        if let Some(id) = self.ids.get(key, &self.states) {
            return id;
        }
        let state = KeyState {
            name: key.into(),
            first_event_ns: ts,
            last_event_ns: ts,
            cache_floor: no_floor(),
            ..KeyState::default()
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.states[id as usize] = Some(state);
                id
            }
            None => {
                self.states.push(Some(state));
                (self.states.len() - 1) as KeyId
            }
        };
        self.ids.insert(key, id);
        self.forget_prefix(id);
        id
    }

    pub fn id(&self, key: &str) -> Option<KeyId> {
        self.ids.get(key, &self.states)
    }

    pub fn key(&self, id: KeyId) -> Option<&KeyState> {
        self.states.get(id as usize).and_then(Option::as_ref)
    }

    pub fn key_mut(&mut self, id: KeyId) -> Option<&mut KeyState> {
        self.states.get_mut(id as usize).and_then(Option::as_mut)
    }

    pub fn name(&self, id: KeyId) -> &str {
        self.key(id).map_or("", |k| &k.name)
    }

    /// Add row `row` of a batch to `id`'s bucket of `ts`.
    pub fn add(
        &mut self,
        id: KeyId,
        ts: i64,
        plan: &WindowPlan,
        inputs: &crate::feature::BatchInputs,
        row: usize,
    ) {
        let slot = self.slot(ts);
        let (ns, nk) = (self.nscalars, self.nsketches);
        let Some(k) = self.states.get_mut(id as usize).and_then(Option::as_mut) else {
            return;
        };
        if slot < k.cache_floor {
            // A late event changes a bucket the cached prefix folded…
            let prefix = self.prefix.get_mut(id as usize).and_then(|p| {
                if p.slot.is_some_and(|s| slot < s) {
                    p.slot = None;
                }
                p.slot
            });
            let through = self.swag.get_mut(id as usize).and_then(|w| {
                // …or one the complete-sample folds hold.
                if w.through.is_some_and(|t| slot <= t) {
                    w.through = None;
                }
                w.through
            });
            k.cache_floor = cache_floor(prefix, through);
        }
        k.last_event_ns = k.last_event_ns.max(ts);
        k.first_event_ns = k.first_event_ns.min(ts);
        // Buckets are in slot order; a late event lands in an older bucket.
        let pos = match k.slots.last() {
            Some(last) if *last == slot => k.slots.len() - 1,
            _ => k.slots.partition_point(|s| *s < slot),
        };
        if k.slots.get(pos) != Some(&slot) {
            k.slots.insert(pos, slot);
            if let Some(active) = self.active.as_mut() {
                active.entry(slot).or_default().push(id);
            }
            if pos + 1 == k.slots.len() {
                // The newest bucket (events in order): appended in place.
                plan.new_scalars(&mut k.scalars);
                plan.new_sketches(&mut k.sketches);
            } else {
                let mut s = Vec::with_capacity(ns);
                plan.new_scalars(&mut s);
                k.scalars.splice(pos * ns..pos * ns, s);
                let mut sk = Vec::with_capacity(nk);
                plan.new_sketches(&mut sk);
                k.sketches.splice(pos * nk..pos * nk, sk);
            }
        }
        plan.update(
            &mut k.scalars[pos * ns..(pos + 1) * ns],
            &mut k.sketches[pos * nk..(pos + 1) * nk],
            inputs,
            row,
        );
    }

    /// Fold `id`'s buckets of the window ending with `slot` (inclusive) into the accumulators
    /// (reset first).
    pub fn fold(
        &self,
        id: KeyId,
        slot: i64,
        plan: &WindowPlan,
        scalars: &mut Vec<f64>,
        sketches: &mut Vec<Sketch>,
    ) {
        reset(plan, self.nsketches, scalars, sketches);
        let Some(k) = self.key(id) else { return };
        merge_range(
            k,
            (self.nscalars, self.nsketches),
            (slot - self.slides, slot),
            plan,
            scalars,
            sketches,
        );
    }

    /// [`WindowState::fold`] for provisional reads, which come many times per slot: the
    /// buckets before `slot` are folded once per key and slot and kept, so each read costs one
    /// bucket instead of the whole window. Same result as `fold`.
    pub fn fold_provisional(
        &mut self,
        id: KeyId,
        slot: i64,
        plan: &WindowPlan,
        scalars: &mut Vec<f64>,
        sketches: &mut Vec<Sketch>,
    ) {
        let idx = id as usize;
        let Some(k) = self.states.get(idx).and_then(Option::as_ref) else {
            reset(plan, self.nsketches, scalars, sketches);
            return;
        };
        if self.prefix.len() <= idx {
            self.prefix.resize_with(idx + 1, Prefix::default);
        }
        let sizes = (self.nscalars, self.nsketches);
        let p = &mut self.prefix[idx];
        let mut rebuilt = false;
        if p.slot != Some(slot) {
            reset(plan, self.nsketches, &mut p.scalars, &mut p.sketches);
            merge_range(
                k,
                sizes,
                (slot - self.slides, slot - 1),
                plan,
                &mut p.scalars,
                &mut p.sketches,
            );
            p.slot = Some(slot);
            rebuilt = true;
        }
        scalars.clear();
        scalars.extend_from_slice(&p.scalars);
        copy_sketches(sketches, &p.sketches);
        merge_range(k, sizes, (slot - 1, slot), plan, scalars, sketches);
        if rebuilt {
            self.refresh_floor(idx);
        }
    }

    /// [`WindowState::fold`] for complete samples, which come for every key at every slide in
    /// slot order: amortised over a window length, a handful of merges per sample instead of
    /// one per bucket (see [`Swag`]). Same result as `fold` (the plan is order-free; otherwise
    /// it is `fold`).
    pub fn fold_complete(
        &mut self,
        id: KeyId,
        slot: i64,
        plan: &WindowPlan,
        scalars: &mut Vec<f64>,
        sketches: &mut Vec<Sketch>,
    ) {
        if !self.use_swag {
            return self.fold(id, slot, plan, scalars, sketches);
        }
        let idx = id as usize;
        let Some(k) = self.states.get(idx).and_then(Option::as_ref) else {
            reset(plan, self.nsketches, scalars, sketches);
            return;
        };
        if self.swag.len() <= idx {
            self.swag.resize_with(idx + 1, Swag::default);
        }
        let sizes @ (ns, nk) = (self.nscalars, self.nsketches);
        let lo = slot - self.slides;
        let w = &mut self.swag[idx];
        let through_before = w.through;
        if self.running {
            let exact = running::running_total(w, k, plan, (self.slides, slot), sizes);
            if exact {
                scalars.clear();
                scalars.extend_from_slice(&w.back_scalars);
                running::distinct_sketches(plan, w, sketches);
            }
            let changed = w.through != through_before;
            if !exact {
                // More distinct values than stay exact: this sample folds every bucket.
                self.fold(id, slot, plan, scalars, sketches);
            }
            if changed {
                self.refresh_floor(idx);
            }
            return;
        }
        match w.through {
            Some(t) if t == slot && lo < w.split => {}
            Some(t) if t < slot && lo < w.split => {
                // The newer buckets join `back` (one, when samples come slide after slide).
                let a = k.slots.partition_point(|s| *s <= t);
                let b = k.slots.partition_point(|s| *s <= slot);
                if a < b && (w.back_scalars.len() != ns || w.back_sketches.len() != nk) {
                    reset(plan, nk, &mut w.back_scalars, &mut w.back_sketches);
                }
                for i in a..b {
                    merge_bucket(k, sizes, i, plan, &mut w.back_scalars, &mut w.back_sketches);
                }
                w.through = Some(slot);
            }
            _ => {
                // Rebuild: every bucket of the window becomes a suffix of `front`.
                let a = k.slots.partition_point(|s| *s <= lo);
                let b = k.slots.partition_point(|s| *s <= slot);
                let n = b - a;
                w.split = slot;
                w.through = Some(slot);
                w.front_slots.clear();
                w.front_slots.extend_from_slice(&k.slots[a..b]);
                w.front_scalars.clear();
                w.front_scalars.resize(n * ns, 0.0);
                if w.front_sketches.len() != n * nk {
                    w.front_sketches.clear();
                    for _ in 0..n {
                        plan.new_sketches(&mut w.front_sketches);
                    }
                }
                for j in (0..n).rev() {
                    let (this, later) = w.front_scalars.split_at_mut((j + 1) * ns);
                    let this = &mut this[j * ns..];
                    this.copy_from_slice(&k.scalars[(a + j) * ns..(a + j + 1) * ns]);
                    let (sk_this, sk_later) = w.front_sketches.split_at_mut((j + 1) * nk);
                    let sk_this = &mut sk_this[j * nk..];
                    for (x, y) in sk_this.iter_mut().zip(&k.sketches[(a + j) * nk..]) {
                        x.clone_from(y);
                    }
                    if j + 1 < n {
                        plan.fold_scalars(this, &later[..ns]);
                        merge_sketches(sk_this, &sk_later[..nk]);
                    }
                }
                reset(plan, nk, &mut w.back_scalars, &mut w.back_sketches);
            }
        }
        // The window: the suffix from its oldest bucket still in `front`, and `back`.
        let j = w.front_slots.partition_point(|s| *s <= lo);
        if j < w.front_slots.len() {
            scalars.clear();
            scalars.extend_from_slice(&w.front_scalars[j * ns..(j + 1) * ns]);
            copy_sketches(sketches, &w.front_sketches[j * nk..(j + 1) * nk]);
        } else {
            reset(plan, nk, scalars, sketches);
        }
        if w.back_scalars.len() == ns && w.back_sketches.len() == nk {
            plan.fold_scalars(scalars, &w.back_scalars);
            merge_sketches(sketches, &w.back_sketches);
        }
        if w.through != through_before {
            self.refresh_floor(idx);
        }
    }

    /// Whether the complete sample of `slot` folds to what the one of `slot - 1` did for `id`:
    /// that sample was taken by [`WindowState::fold_complete`] (and no late event has changed
    /// a bucket it held since), and no bucket enters (`slot`) or leaves (`slot - slides`) the
    /// window. If so the sample is recorded as taken, and the caller reuses what it read from
    /// the previous fold: a quiet key (most of a sparse fleet, most slides) costs no fold.
    pub fn complete_unchanged(&mut self, id: KeyId, slot: i64) -> bool {
        if !self.use_swag {
            return false;
        }
        let idx = id as usize;
        let Some(w) = self.swag.get_mut(idx) else {
            return false;
        };
        if w.through != Some(slot - 1) {
            return false;
        }
        let Some(k) = self.states.get(idx).and_then(Option::as_ref) else {
            return false;
        };
        let lo = slot - self.slides;
        if k.slots.binary_search(&slot).is_ok() || k.slots.binary_search(&lo).is_ok() {
            return false;
        }
        w.through = Some(slot);
        self.refresh_floor(idx);
        true
    }

    /// Drop buckets no window ending at or after `slot` covers, and keys idle since before
    /// `now_event_ns − idle_expiry`. Returns the forgotten ids (free for reuse).
    pub fn trim(&mut self, slot: i64, now_event_ns: i64) -> Vec<KeyId> {
        let oldest = slot - self.slides;
        let idle_before = now_event_ns - self.idle_ns;
        let (ns, nk) = (self.nscalars, self.nsketches);
        let mut gone = Vec::new();
        for (id, st) in self.states.iter_mut().enumerate() {
            let Some(k) = st else { continue };
            if k.last_event_ns < idle_before {
                self.ids.remove(&k.name, id as KeyId);
                *st = None;
                gone.push(id as KeyId);
                if let Some(p) = self.prefix.get_mut(id) {
                    *p = Prefix::default();
                }
                if let Some(w) = self.swag.get_mut(id) {
                    *w = Swag::default();
                }
                continue;
            }
            if let Some(p) = self.prefix.get_mut(id)
                && p.slot.is_some_and(|s| s < slot)
            {
                p.slot = None;
                k.cache_floor = cache_floor(None, self.swag.get(id).and_then(|w| w.through));
            }
            let n = k.slots.partition_point(|s| *s <= oldest);
            if n > 0 {
                if self.running {
                    drop_counted(
                        self.swag.get_mut(id),
                        self.prefix.get(id),
                        k,
                        n,
                        self.slides,
                    );
                }
                k.slots.drain(..n);
                k.scalars.drain(..n * ns);
                k.sketches.drain(..n * nk);
            }
        }
        self.free.extend(gone.iter().copied());
        gone
    }

    /// Ids of every live key.
    pub fn live(&self, out: &mut Vec<KeyId>) {
        out.clear();
        out.extend(
            self.states
                .iter()
                .enumerate()
                .filter(|(_, s)| s.is_some())
                .map(|(i, _)| i as KeyId),
        );
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Approximate bytes of state: key slots, buckets, sketches and the key index.
    pub fn state_bytes(&self) -> usize {
        let slot = std::mem::size_of::<Option<KeyState>>();
        let keys: usize = self
            .states
            .iter()
            .flatten()
            .map(|k| {
                usize::from(k.name.is_heap_allocated()) * k.name.len()
                    + k.slots.capacity() * 8
                    + k.scalars.capacity() * 8
                    + k.sketches.capacity() * std::mem::size_of::<Sketch>()
                    + k.sketches.iter().map(Sketch::heap_bytes).sum::<usize>()
            })
            .sum();
        let prefix: usize = self
            .prefix
            .iter()
            .map(|p| {
                p.scalars.capacity() * 8
                    + p.sketches.capacity() * std::mem::size_of::<Sketch>()
                    + p.sketches.iter().map(Sketch::heap_bytes).sum::<usize>()
            })
            .sum();
        let swag: usize = self.swag.iter().map(Swag::heap_bytes).sum();
        self.states.capacity() * slot
            + self.prefix.capacity() * std::mem::size_of::<Prefix>()
            + self.swag.capacity() * std::mem::size_of::<Swag>()
            + swag
            + prefix
            + keys
            + self.ids.bytes()
    }
}

#[cfg(test)]
mod tests;

impl WindowState {
    /// Put a saved key back (replacing any state it has); returns its id.
    pub fn restore_key(&mut self, state: KeyState) -> KeyId {
        let id = self.intern(&state.name, state.last_event_ns);
        if let Some(slot) = self.states.get_mut(id as usize) {
            *slot = Some(state);
        }
        self.forget_prefix(id);
        if let Some(active) = self.active.as_mut()
            && let Some(k) = self.states.get(id as usize).and_then(Option::as_ref)
        {
            // Slots not sampled yet cover the key again.
            let done = self.sampled_through.unwrap_or(i64::MIN);
            for s in k.slots.iter().filter(|s| **s > done) {
                active.entry(*s).or_default().push(id);
            }
        }
        id
    }
}
