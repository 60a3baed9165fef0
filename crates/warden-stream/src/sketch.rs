//! Mergeable sketches kept per window bucket: distinct counts ([`Hll`]) and quantiles
//! ([`DdSketch`]). Both start small (exact and sparse) and merge across the buckets of a
//! window at evaluation time.

mod ddsketch;
mod hll;

pub use ddsketch::DdSketch;
pub use hll::{Hll, SPARSE_MAX};

use serde::{Deserialize, Serialize};

/// A sketch slot of a bucket. Quantile sketches are boxed so that the slot is no larger than
/// an in-place distinct set (32 bytes: windows hold one slot per bucket and per cached fold).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Sketch {
    Distinct(Hll),
    Quantiles(Box<DdSketch>),
}

impl Sketch {
    /// Approximate heap bytes.
    pub fn heap_bytes(&self) -> usize {
        match self {
            Sketch::Distinct(h) => h.heap_bytes(),
            Sketch::Quantiles(d) => std::mem::size_of::<DdSketch>() + d.heap_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_slot_is_four_words() {
        assert_eq!(std::mem::size_of::<super::Sketch>(), 32);
    }
}
