//! HyperLogLog distinct counting (Flajolet et al. 2007) with an exact sparse mode: up to
//! [`SPARSE_MAX`] distinct 64-bit hashes are kept as they are (exact counts for the common case
//! of a device using a handful of routes), then the sketch turns into 2^[`P`] one-byte
//! registers (standard error 1.04/√1024 ≈ 3.3 %), with linear counting for small estimates.

use serde::{Deserialize, Serialize};

/// Register index bits.
const P: u32 = 10;
const M: usize = 1 << P;
/// Hashes kept exactly before switching to registers.
pub const SPARSE_MAX: usize = 64;

/// Hashes kept in place, without an allocation: most buckets of a device's window see one or
/// two resources and one address, and a window holds tens of buckets per key.
pub const INLINE: usize = 3;

/// A distinct count: exact (in place, then a vector) up to [`SPARSE_MAX`] hashes, then
/// registers. Persisted as `Sparse`/`Dense` (an in-place set is written as `Sparse`), the
/// format before in-place sets existed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "Persisted", into = "Persisted")]
pub enum Hll {
    /// Up to [`INLINE`] distinct hashes, the first `len` of `hashes`.
    Inline { len: u8, hashes: [u64; INLINE] },
    /// Distinct hashes, unsorted.
    Sparse(Vec<u64>),
    /// Registers: 1 + leading zeros of the hash bits after the index.
    Dense(Vec<u8>),
}

/// [`Hll`] as checkpoints hold it.
#[derive(Serialize, Deserialize)]
enum Persisted {
    Sparse(Vec<u64>),
    Dense(Vec<u8>),
}

impl From<Persisted> for Hll {
    fn from(p: Persisted) -> Self {
        match p {
            Persisted::Sparse(v) if v.len() <= INLINE => {
                let mut h = Hll::default();
                for x in v {
                    h.insert(x);
                }
                h
            }
            Persisted::Sparse(v) => Hll::Sparse(v),
            Persisted::Dense(r) => Hll::Dense(r),
        }
    }
}

impl From<Hll> for Persisted {
    fn from(h: Hll) -> Self {
        match h {
            Hll::Dense(r) => Persisted::Dense(r),
            Hll::Sparse(v) => Persisted::Sparse(v),
            Hll::Inline { len, hashes } => Persisted::Sparse(hashes[..usize::from(len)].to_vec()),
        }
    }
}

/// Equal counts: the same exact hashes in the same order (in place or not), or the same
/// registers.
impl PartialEq for Hll {
    fn eq(&self, o: &Self) -> bool {
        match (self.exact(), o.exact()) {
            (Some(a), Some(b)) => a == b,
            (None, None) => matches!((self, o), (Hll::Dense(a), Hll::Dense(b)) if a == b),
            _ => false,
        }
    }
}

impl Default for Hll {
    fn default() -> Self {
        Hll::Inline {
            len: 0,
            hashes: [0; INLINE],
        }
    }
}

/// MurmurHash3's finaliser: spreads the input hash's entropy over every bit (fast hashers
/// do not promise well-distributed high bits, which HyperLogLog relies on).
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

fn register(hash: u64) -> (usize, u8) {
    let hash = mix(hash);
    let idx = (hash >> (64 - P)) as usize;
    let rest = (hash << P) | (1 << (P - 1));
    (idx, rest.leading_zeros() as u8 + 1)
}

fn registers_of(start: Option<&[u8]>, hashes: &[u64]) -> Vec<u8> {
    let mut regs = start.map_or_else(|| vec![0u8; M], <[u8]>::to_vec);
    for h in hashes {
        let (i, r) = register(*h);
        regs[i] = regs[i].max(r);
    }
    regs
}

impl Hll {
    /// The exact hashes, unless the sketch is registers.
    pub fn exact(&self) -> Option<&[u64]> {
        match self {
            Hll::Inline { len, hashes } => Some(&hashes[..usize::from(*len)]),
            Hll::Sparse(v) => Some(v),
            Hll::Dense(_) => None,
        }
    }

    pub fn insert(&mut self, hash: u64) {
        match self {
            Hll::Inline { len, hashes } => {
                let n = usize::from(*len);
                if hashes[..n].contains(&hash) {
                    return;
                }
                if n < INLINE {
                    hashes[n] = hash;
                    *len += 1;
                    return;
                }
                let mut v = Vec::with_capacity(2 * INLINE);
                v.extend_from_slice(hashes);
                v.push(hash);
                *self = Hll::Sparse(v);
            }
            Hll::Sparse(v) => {
                if v.contains(&hash) {
                    return;
                }
                if v.len() < SPARSE_MAX {
                    v.push(hash);
                    return;
                }
                v.push(hash);
                let regs = registers_of(None, v);
                *self = Hll::Dense(regs);
            }
            Hll::Dense(regs) => {
                let (i, r) = register(hash);
                if regs[i] < r {
                    regs[i] = r;
                }
            }
        }
    }

    /// Merge `other` into `self`.
    pub fn merge(&mut self, other: &Hll) {
        match other {
            Hll::Inline { len, hashes } => {
                for h in &hashes[..usize::from(*len)] {
                    self.insert(*h);
                }
            }
            Hll::Sparse(v) => {
                if let Hll::Sparse(mine) = self
                    && mine.len() + v.len() <= SPARSE_MAX
                {
                    // Stays sparse: no conversion possible, skip the per-hash dispatch.
                    for h in v {
                        if !mine.contains(h) {
                            mine.push(*h);
                        }
                    }
                    return;
                }
                for h in v {
                    self.insert(*h);
                }
            }
            Hll::Dense(theirs) => match self {
                Hll::Dense(mine) => {
                    for (a, b) in mine.iter_mut().zip(theirs) {
                        *a = (*a).max(*b);
                    }
                }
                exact => {
                    let regs = registers_of(Some(theirs), exact.exact().unwrap_or_default());
                    *exact = Hll::Dense(regs);
                }
            },
        }
    }

    /// Estimated distinct count (exact in the exact modes).
    pub fn estimate(&self) -> f64 {
        match self {
            Hll::Inline { len, .. } => f64::from(*len),
            Hll::Sparse(v) => v.len() as f64,
            Hll::Dense(regs) => {
                let m = M as f64;
                let alpha = 0.7213 / (1.0 + 1.079 / m);
                let sum: f64 = regs.iter().map(|r| 2f64.powi(-i32::from(*r))).sum();
                let raw = alpha * m * m / sum;
                let zeros = regs.iter().filter(|r| **r == 0).count();
                if raw <= 2.5 * m && zeros > 0 {
                    m * (m / zeros as f64).ln()
                } else {
                    raw
                }
            }
        }
    }

    /// Make this the exact set `hashes` (distinct, at most [`SPARSE_MAX`]); a sparse sketch
    /// keeps its allocation.
    pub fn set_exact(&mut self, hashes: impl ExactSizeIterator<Item = u64>) {
        let n = hashes.len();
        if let Hll::Sparse(v) = self {
            v.clear();
            v.extend(hashes);
        } else if n <= INLINE {
            let mut a = [0; INLINE];
            for (s, h) in a.iter_mut().zip(hashes) {
                *s = h;
            }
            *self = Hll::Inline {
                len: n as u8,
                hashes: a,
            };
        } else {
            *self = Hll::Sparse(hashes.collect());
        }
    }

    /// The exact set `hashes` (distinct, at most [`SPARSE_MAX`]).
    pub fn from_exact(hashes: impl ExactSizeIterator<Item = u64>) -> Self {
        let mut h = Hll::default();
        h.set_exact(hashes);
        h
    }

    /// Empty the sketch; a sparse one keeps its allocation (accumulators are cleared and
    /// refilled for every window fold).
    pub fn clear(&mut self) {
        match self {
            Hll::Inline { len, .. } => *len = 0,
            Hll::Sparse(v) => v.clear(),
            Hll::Dense(_) => *self = Hll::default(),
        }
    }

    pub fn heap_bytes(&self) -> usize {
        match self {
            Hll::Inline { .. } => 0,
            Hll::Sparse(v) => v.capacity() * 8,
            Hll::Dense(r) => r.capacity(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    fn hash(i: u64) -> u64 {
        foldhash::fast::FixedState::with_seed(7).hash_one(i)
    }

    #[test]
    fn a_few_hashes_stay_in_place_and_persist_as_before() {
        let mut h = Hll::default();
        for i in 0..INLINE as u64 {
            h.insert(hash(i));
            h.insert(hash(i));
        }
        assert!(matches!(h, Hll::Inline { .. }) && h.heap_bytes() == 0);
        assert_eq!(h.estimate(), INLINE as f64);
        // The checkpoint format is the one before in-place sets: a sparse vector.
        let json = serde_json::to_string(&h).expect("serialise");
        assert!(json.starts_with("{\"Sparse\":["), "{json}");
        let back: Hll = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back, h);
        let mut sparse = h.clone();
        sparse.insert(hash(99));
        assert!(matches!(sparse, Hll::Sparse(_)));
        // Merging in-place sets with each other and with the other modes is a union.
        let mut m = Hll::default();
        m.merge(&h);
        m.merge(&sparse);
        assert_eq!(m.estimate(), INLINE as f64 + 1.0);
        let mut dense = Hll::default();
        for i in 0..500 {
            dense.insert(hash(i));
        }
        let mut inline = Hll::default();
        inline.insert(hash(10_000));
        let mut a = inline.clone();
        a.merge(&dense);
        let mut b = dense.clone();
        b.merge(&inline);
        assert_eq!(a, b, "merge commutes across modes");
    }

    #[test]
    fn exact_while_sparse() {
        let mut h = Hll::default();
        for i in 0..64 {
            h.insert(hash(i));
            h.insert(hash(i));
        }
        assert!(matches!(h, Hll::Sparse(_)));
        assert_eq!(h.estimate(), 64.0);
    }

    #[test]
    fn dense_estimates_within_a_few_percent() {
        for n in [100u64, 1_000, 10_000, 200_000] {
            let mut h = Hll::default();
            for i in 0..n {
                h.insert(hash(i));
            }
            let e = h.estimate();
            let err = (e - n as f64).abs() / n as f64;
            assert!(err < 0.08, "n {n}: estimate {e} ({:.1} %)", err * 100.0);
        }
    }

    #[test]
    fn merging_is_a_union() {
        let (mut a, mut b, mut both) = (Hll::default(), Hll::default(), Hll::default());
        for i in 0..50 {
            a.insert(hash(i));
            both.insert(hash(i));
        }
        for i in 25..90 {
            b.insert(hash(i));
            both.insert(hash(i));
        }
        let mut m = a.clone();
        m.merge(&b);
        assert_eq!(
            m, both,
            "sparse + sparse past the limit goes dense the same way"
        );
        assert!((m.estimate() - 90.0).abs() < 8.0, "{}", m.estimate());
        let mut small = Hll::default();
        small.insert(hash(1));
        small.insert(hash(1000));
        let mut s = small.clone();
        s.merge(&b);
        assert!((s.estimate() - 67.0).abs() < 6.0, "{}", s.estimate());
        let mut d = b.clone();
        d.merge(&small);
        assert_eq!(d, s, "merge commutes");
        small.clear();
        assert_eq!(small.estimate(), 0.0);
    }

    #[test]
    fn small_merges_stay_exact_and_clear_empties_either_mode() {
        let (mut a, mut b) = (Hll::default(), Hll::default());
        for i in 0..20 {
            a.insert(hash(i));
        }
        for i in 10..40 {
            b.insert(hash(i));
        }
        a.merge(&b);
        assert!(matches!(a, Hll::Sparse(_)));
        assert_eq!(a.estimate(), 40.0, "duplicates counted once");
        a.clear();
        assert_eq!(a.estimate(), 0.0);
        a.merge(&b);
        assert_eq!(a.estimate(), 30.0, "a cleared sketch merges like a new one");
        let mut dense = Hll::default();
        for i in 0..500 {
            dense.insert(hash(i));
        }
        assert!(matches!(dense, Hll::Dense(_)));
        dense.clear();
        assert_eq!(dense, Hll::default());
    }
}
