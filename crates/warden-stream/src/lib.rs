//! The stream processor: consume request events, build windowed features per key as Arrow
//! record batches flow through, run the pipeline's detectors, and publish quarantine
//! decisions and alerts. Offsets are committed only after the decisions and alerts a batch
//! caused are acknowledged by the bus (at-least-once).

mod columns;
mod engine;
mod policy;
mod runner;
mod window;

pub use engine::{Engine, EngineStats, Output};
pub use runner::{Processor, ProcessorStats, StreamError};
