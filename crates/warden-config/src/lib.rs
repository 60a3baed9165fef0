//! Typed configuration of Warden: the gateway/processor/dashboard config ([`WardenConfig`]) and
//! the detection pipelines ([`PipelineConfig`], `pipelines/*.toml`).
//!
//! Loading is strict and reports **every** problem at once, each with its file and key path:
//! the TOML is first checked against the JSON Schema derived from the types (unknown keys,
//! wrong types, missing keys), then deserialised, then checked for semantic problems
//! (duplicate names, dangling references, bad URLs, impossible windows).

mod at_rest;
mod coap;
mod dashboard;
mod error;
mod identity;
mod layer;
mod mqtt;
mod oidc;
mod pipeline;
mod policy;
mod schema;
mod warden;

pub use at_rest::AtRestConfig;
pub use coap::{CoapConfig, CoapResource};
pub use error::{ConfigError, ConfigErrors};
pub use identity::{
    AdminTlsConfig, CertField, ClaimsConfig, ClientAuthConfig, CredentialKind, IdentityConfig,
    IdentityStatus, JwtAlgorithm, JwtConfig, KeyExchange, RegistryConfig, RegistryEntry,
    RegistryFile, TlsConfig, TlsVersion, UnknownIdentity, check_jwks, parse_certs, parse_crls,
    parse_fingerprint, parse_fingerprint_list, parse_rfc3339, trim_secret,
};
pub use layer::env_overrides;
pub use mqtt::{ClientIdRule, MqttConfig, MqttPublishRule, PayloadMode};
pub use pipeline::{
    AuthFailuresConfig, CardinalityConfig, CohortConfig, Combine, CountFeature, CusumConfig,
    Cyclic, DecisionConfig, DetectorAction, DetectorConfig, Direction, ErrorRatioFeature,
    EwmaZscoreConfig, FeatureConfig, Field, FieldFeature, FilterConfig, HourOfDayFeature,
    MAX_ML_FEATURES, MadConfig, MlConfig, Mode, NoveltyConfig, NoveltyField, PeerGroup,
    PeerPercentileConfig, PercentileFeature, PipelineConfig, RatioFeature, Sampling, SourceConfig,
    SqlFeature, ThresholdConfig, WindowConfig, WindowKey,
};
pub use policy::{
    AdminConfig, DenyRule, DeviceTypeBinding, Grant, KeyedRate, LimitsConfig, PathCase,
    PathsConfig, ROLE_ANONYMOUS, ROLE_AUTHENTICATED, Rate, RbacConfig, RbacPolicy, RoleConfig,
    RouteLimits, RouteValidation, ValidationConfig,
};
/// Parse TOML text into `T` strictly, reporting **every** unknown key, wrong type and missing
/// key with its path — the structural checks config and pipeline files get (used for other
/// strictly validated files, e.g. the simulator's scenarios). Semantic checks are the caller's.
pub fn parse_strict<T: schemars::JsonSchema + serde::de::DeserializeOwned>(
    text: &str,
) -> Result<T, ConfigErrors> {
    schema::check_and_parse(schema::parse_toml(text)?)
}

pub use warden::{
    ApiKeyConfig, AuditConfig, BusConfig, BusKind, ConnectionLimits, ConsoleRole, DashboardConfig,
    FsyncMode, GatewayConfig, HealthCheck, MethodOverride, MetricsConfig, OidcConfig,
    OperatorConfig, RouteAuth, RouteConfig, RouteDeprecation, RouteResilience, SpoolEnabled,
    SpoolOverflow, SpoolSettings, SyslogConfig, SyslogFormat, TopicsConfig, UpstreamTlsConfig,
    WardenConfig, WebhookConfig, hash_api_key,
};
