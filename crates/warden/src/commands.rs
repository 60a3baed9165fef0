//! One module per subcommand.

pub mod archive;
pub mod audit;
pub mod backend;
pub mod backtest;
pub mod certs;
pub mod check;
pub mod common;
pub mod detectors;
pub mod eval;
pub mod events;
pub mod health;
pub mod parts;
pub mod query;
pub mod series;
pub mod sim_setup;
pub mod simulate;
pub mod topics;
pub mod train;
pub mod up;
