//! Running totals for complete samples of [`WindowPlan::invertible`] windows (counts, integer
//! sums, distinct counts): from one sample to the next, the buckets that enter the window are
//! added and those that leave taken back out, so a key keeps one total instead of a copy of
//! its buckets (the two-stack folds of [`Swag`]).
//!
//! - Scalars: a sum per aggregate, exact for integers below 2^53 (refolded past 2^52).
//! - Distinct counts: the window's distinct hashes, each with the number of buckets holding
//!   it (a hash leaves when its last bucket does). Exact up to [`SPARSE_MAX`] hashes, as the
//!   buckets' sketches are; past that, or when a bucket's sketch is registers, the sample is
//!   a full fold (the window's count is a HyperLogLog estimate then) and the next one tries
//!   the running total again.
//! - Refolded from the buckets when there is no previous total: the first sample, a late
//!   event into a counted bucket, a counted bucket trimmed before the sample that would have
//!   taken it out ([`drop_counted`]).

use super::{KeyState, Prefix, Swag, cache_floor};
use crate::feature::WindowPlan;
use crate::sketch::{Hll, SPARSE_MAX, Sketch};

/// Totals past this magnitude are refolded rather than updated: `f64` adds and subtracts
/// integers exactly only below 2^53.
const EXACT_TOTAL: f64 = (1u64 << 52) as f64;

/// A window's distinct hashes of one sketch, with the number of its buckets holding each.
pub(super) type Multiset = Vec<(u64, u32)>;

/// Count `hashes` in; `false` when the set would pass [`SPARSE_MAX`] distinct hashes.
fn count_in(ms: &mut Multiset, hashes: &[u64]) -> bool {
    for &h in hashes {
        if let Some(e) = ms.iter_mut().find(|e| e.0 == h) {
            e.1 += 1;
        } else if ms.len() < SPARSE_MAX {
            ms.push((h, 1));
        } else {
            return false;
        }
    }
    true
}

/// Count `hashes` out (each was counted in).
fn count_out(ms: &mut Multiset, hashes: &[u64]) {
    for &h in hashes {
        if let Some(i) = ms.iter().position(|e| e.0 == h) {
            ms[i].1 = ms[i].1.saturating_sub(1);
            if ms[i].1 == 0 {
                ms.swap_remove(i);
            }
        }
    }
}

/// The exact hashes of sketch `j` of bucket `i`; `None` for registers (or a quantile sketch,
/// which an invertible plan has not).
fn bucket_hashes(k: &KeyState, nk: usize, i: usize, j: usize) -> Option<&[u64]> {
    match k.sketches.get(i * nk + j)? {
        Sketch::Distinct(h) => h.exact(),
        Sketch::Quantiles(_) => None,
    }
}

/// Add or take out bucket `i`; `false` when a distinct set cannot stay exact.
fn apply(
    w: &mut Swag,
    k: &KeyState,
    plan: &WindowPlan,
    (ns, nk): (usize, usize),
    i: usize,
    add: bool,
) -> bool {
    let bucket = &k.scalars[i * ns..(i + 1) * ns];
    if add {
        plan.fold_scalars(&mut w.back_scalars, bucket);
    } else {
        plan.unfold_scalars(&mut w.back_scalars, bucket);
    }
    for j in 0..nk {
        let (Some(hashes), Some(ms)) = (bucket_hashes(k, nk, i, j), w.distinct.get_mut(j)) else {
            return false;
        };
        if add {
            if !count_in(ms, hashes) {
                return false;
            }
        } else {
            count_out(ms, hashes);
        }
    }
    true
}

/// Bring `w`'s running total to the window `(slot - slides, slot]` of `k`. `false` when it
/// cannot be kept exactly (the caller folds the window instead; the total is dropped).
pub(super) fn running_total(
    w: &mut Swag,
    k: &KeyState,
    plan: &WindowPlan,
    (slides, slot): (i64, i64),
    sizes @ (ns, nk): (usize, usize),
) -> bool {
    let lo = slot - slides;
    let pp = |x: i64| k.slots.partition_point(|s| *s <= x);
    let valid = w.back_scalars.len() == ns
        && w.distinct.len() == nk
        && w.back_scalars.iter().all(|v| v.abs() < EXACT_TOTAL);
    let ok = match w.through {
        Some(t) if t == slot && valid => true,
        Some(t) if t < slot && valid => {
            // Left: counted before (after t - slides, up to t), not now (up to lo). Entered:
            // after t (and after lo), up to slot.
            (pp(t - slides)..pp(t.min(lo))).all(|i| apply(w, k, plan, sizes, i, false))
                && (pp(t.max(lo))..pp(slot)).all(|i| apply(w, k, plan, sizes, i, true))
        }
        _ => {
            w.back_scalars.clear();
            plan.new_scalars(&mut w.back_scalars);
            w.distinct.resize_with(nk, Vec::new);
            w.distinct.iter_mut().for_each(Vec::clear);
            (pp(lo)..pp(slot)).all(|i| apply(w, k, plan, sizes, i, true))
        }
    };
    w.through = ok.then_some(slot);
    ok
}

/// The sample's sketches from the running distinct sets (accumulators reused).
pub(super) fn distinct_sketches(plan: &WindowPlan, w: &Swag, sketches: &mut Vec<Sketch>) {
    if sketches.len() != w.distinct.len() {
        sketches.clear();
        plan.new_sketches(sketches);
    }
    for (s, ms) in sketches.iter_mut().zip(&w.distinct) {
        match s {
            Sketch::Distinct(h) => h.set_exact(ms.iter().map(|e| e.0)),
            other => *other = Sketch::Distinct(Hll::from_exact(ms.iter().map(|e| e.0))),
        }
    }
}

/// Before `k`'s first `n` buckets are dropped: a running total that counts one of them can
/// no longer take it out, so it is dropped too (refolded at the next sample).
pub(super) fn drop_counted(
    w: Option<&mut Swag>,
    prefix: Option<&Prefix>,
    k: &mut KeyState,
    n: usize,
    slides: i64,
) {
    let Some(w) = w else { return };
    if let (Some(t), Some(newest)) = (w.through, n.checked_sub(1).and_then(|i| k.slots.get(i)))
        && *newest > t - slides
    {
        w.through = None;
        k.cache_floor = cache_floor(prefix.and_then(|p| p.slot), None);
    }
}
