//! Support for Warden's integration tests.

/// A real Kafka-protocol broker (Tansu) on loopback.
pub mod tansu;

/// The end-to-end loop shared by the embedded and Kafka tests.
pub mod e2e;

/// Throw-away CAs, certificates and CRLs for the TLS/mTLS tests.
pub mod pki;

/// HTTPS servers for the tests (identity providers, TLS upstreams).
pub mod https;

/// Scenario runs (simulated fleet and attacks) against a whole stack, evaluated.
pub mod scenarios;

/// Events, pipeline and decisions of the processor durability tests.
pub mod processing;

/// Exported metrics checked against docs/METRICS.md and the Grafana dashboards.
pub mod metrics;

/// ML detectors: benign archives, training, scenario runs and their outcomes.
pub mod ml;

/// The ML loop over real sockets: a served model, a live fleet, the gateway refusing.
pub mod ml_live;

/// A headless Chromium driven over the Chrome DevTools protocol.
pub mod cdp;
