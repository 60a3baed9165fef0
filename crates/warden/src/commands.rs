//! One module per subcommand.

pub mod archive;
pub mod backtest;
pub mod check;
pub mod common;
pub mod detectors;
pub mod eval;
pub mod events;
pub mod parts;
pub mod query;
pub mod series;
pub mod sim_setup;
pub mod simulate;
pub mod train;
pub mod up;
