//! Assembly of Warden's components into processes: the bus, the gateway, the processor and
//! the dashboard, in one process (`warden up`) or separately. The `warden` binary is a thin
//! CLI over this; the end-to-end tests start the same stacks.

pub mod demo;
pub mod evaluation;
pub mod metrics;
pub mod stack;

pub use stack::{
    ConfigSource, Stack, StackExtras, StackParts, ensure_topics, make_bus, topic_specs,
};
