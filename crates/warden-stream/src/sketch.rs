//! Mergeable sketches kept per window bucket: distinct counts ([`Hll`]) and quantiles
//! ([`DdSketch`]). Both start small (exact and sparse) and merge across the buckets of a
//! window at evaluation time.

mod ddsketch;
mod hll;

pub use ddsketch::DdSketch;
pub use hll::Hll;

use serde::{Deserialize, Serialize};

/// A sketch slot of a bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Sketch {
    Distinct(Hll),
    Quantiles(DdSketch),
}

impl Sketch {
    /// Approximate heap bytes.
    pub fn heap_bytes(&self) -> usize {
        match self {
            Sketch::Distinct(h) => h.heap_bytes(),
            Sketch::Quantiles(d) => d.heap_bytes(),
        }
    }
}
