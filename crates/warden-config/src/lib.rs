//! Typed configuration of Warden: the gateway/processor/dashboard config ([`WardenConfig`]) and
//! the detection pipelines ([`PipelineConfig`], `pipelines/*.toml`).
//!
//! Loading is strict and reports **every** problem at once, each with its file and key path:
//! the TOML is first checked against the JSON Schema derived from the types (unknown keys,
//! wrong types, missing keys), then deserialised, then checked for semantic problems
//! (duplicate names, dangling references, bad URLs, impossible windows).

mod error;
mod layer;
mod pipeline;
mod schema;
mod warden;

pub use error::{ConfigError, ConfigErrors};
pub use layer::env_overrides;
pub use pipeline::{
    DecisionConfig, DetectorConfig, EwmaZscoreConfig, FeatureConfig, FeatureKind, Mode,
    PipelineConfig, SourceConfig, WindowConfig, WindowKey,
};
pub use warden::{
    ApiKeyConfig, BusConfig, BusKind, DashboardConfig, GatewayConfig, RouteAuth, RouteConfig,
    TopicsConfig, WardenConfig, hash_api_key,
};
