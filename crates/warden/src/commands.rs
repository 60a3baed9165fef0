//! One module per subcommand.

pub mod check;
pub mod common;
pub mod parts;
pub mod up;
