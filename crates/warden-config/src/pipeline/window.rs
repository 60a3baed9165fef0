//! `[[window]]`: event-time windows and what they are keyed by.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// A window: features cover the last `size_ms` of event time and are sampled every `slide_ms`
/// (`slide_ms = size_ms` makes it a tumbling window).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// Window name, referenced by features and detectors.
    pub name: String,
    /// What the window is keyed by: one set of features per key.
    pub key: WindowKey,
    /// Window length, milliseconds.
    pub size_ms: u64,
    /// Sampling step, milliseconds; must divide `size_ms`.
    pub slide_ms: u64,
    /// Events older than the watermark (newest event time seen) by more than this are counted
    /// as late and not used; a slide is complete once the watermark is this far past its end.
    #[serde(default = "default_lateness")]
    pub allowed_lateness_ms: u64,
    /// Keys with no event for this long are forgotten, milliseconds (bounds memory).
    #[serde(default = "default_idle")]
    pub idle_expiry_ms: u64,
    /// Between complete samples, also score every key a batch touched on its window as it
    /// stands (without learning): detectors react within a batch instead of a slide plus the
    /// lateness, for the cost of one feature evaluation per touched key and batch.
    #[serde(default = "yes")]
    pub provisional: bool,
    /// Which keys a complete sample covers: `all` (every key the window holds, at every
    /// slide: a key that went quiet is sampled too, so detectors see drops) or `active` (only
    /// the keys with events in the slide that ends the sample: the cost follows the events,
    /// not the number of keys times the slides, and a key's baseline is its windows as they
    /// stand when it is active). See pipelines/README.md.
    #[serde(default)]
    pub sample: Sampling,
}

/// Which keys a window's complete samples cover (see [`WindowConfig::sample`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// Every key the window holds, at every slide.
    #[default]
    All,
    /// The keys with events in the slide that ends the sample.
    Active,
}

fn yes() -> bool {
    true
}

fn default_lateness() -> u64 {
    2_000
}
fn default_idle() -> u64 {
    600_000
}

/// What a window is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WindowKey {
    /// The authenticated identity (anonymous requests are skipped).
    Identity,
    /// The identity's tenant (requests without a tenant are skipped).
    Tenant,
    /// The matched route.
    Route,
    /// The client IP address (every request, authenticated or not).
    ClientIp,
    /// One key per identity and route (`identity|route`; anonymous requests are skipped).
    IdentityRoute,
}

impl WindowKey {
    /// Name as written in pipelines.
    pub fn as_str(self) -> &'static str {
        match self {
            WindowKey::Identity => "identity",
            WindowKey::Tenant => "tenant",
            WindowKey::Route => "route",
            WindowKey::ClientIp => "client_ip",
            WindowKey::IdentityRoute => "identity_route",
        }
    }

    /// Whether a key of this kind is, or contains, an identity.
    pub fn is_per_identity(self) -> bool {
        matches!(self, WindowKey::Identity | WindowKey::IdentityRoute)
    }
}

impl WindowConfig {
    /// Whether this is a tumbling window (one slide per window).
    pub fn is_tumbling(&self) -> bool {
        self.size_ms == self.slide_ms
    }

    pub(crate) fn check(&self, i: usize, errs: &mut Vec<ConfigError>) {
        let at = |k: &str| format!("window[{i}].{k}");
        if self.name.trim().is_empty() {
            errs.push(ConfigError::new(at("name"), "must not be empty"));
        }
        if self.slide_ms == 0 {
            errs.push(ConfigError::new(at("slide_ms"), "must be at least 1"));
        } else if self.size_ms < self.slide_ms || !self.size_ms.is_multiple_of(self.slide_ms) {
            errs.push(ConfigError::new(
                at("size_ms"),
                format!("must be a multiple of slide_ms ({})", self.slide_ms),
            ));
        } else if self.size_ms / self.slide_ms > 3600 {
            errs.push(ConfigError::new(
                at("size_ms"),
                "at most 3600 slides per window",
            ));
        }
        if self.idle_expiry_ms < self.size_ms {
            errs.push(ConfigError::new(
                at("idle_expiry_ms"),
                "must be at least size_ms",
            ));
        }
        if self.allowed_lateness_ms > 3_600_000 {
            errs.push(ConfigError::new(
                at("allowed_lateness_ms"),
                "at most 3600000 (one hour)",
            ));
        }
    }
}
