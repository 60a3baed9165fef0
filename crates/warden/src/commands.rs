//! One module per subcommand.

pub mod check;
pub mod common;
pub mod eval;
pub mod parts;
pub mod sim_setup;
pub mod simulate;
pub mod up;
