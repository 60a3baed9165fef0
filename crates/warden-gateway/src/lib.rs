//! The Warden gateway: authenticates every request, refuses quarantined subjects, proxies the
//! rest to upstream routes, and emits one [`RequestEvent`](warden_event::RequestEvent) per
//! request — accepted or rejected — to the bus without blocking the request path.
//!
//! The request path is a fixed sequence of phases (see [`server`]), each of which may end the
//! request with a [`Reject`]; one rescue point turns that into a generic JSON error with the
//! request id, and the event is emitted when the response body is finished (or dropped).

mod admin;
mod body;
mod coap;
mod conns;
pub mod deprecation;
mod emit;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
mod hygiene;
mod identity;
mod live;
pub mod metrics;
pub mod mqtt;
mod names;
pub mod path;
#[cfg(test)]
mod props;
mod proxy;
mod quarantine;
pub mod ratelimit;
pub mod rbac;
mod registry;
mod routes;
mod server;
mod shed;
mod spool;
mod tls;
pub mod upstream;
pub mod upstream_tls;
pub mod validate;

pub use admin::Admin;
pub use conns::ConnStats;
pub use emit::{EmitStats, Emitter, EventTopic};
pub use error::{GatewayError, Reject};
pub use identity::{IdentityHandle, Principal, ReloadReport};
/// JSON Web Key Sets (the console verifies OpenID Connect ID tokens with the same code).
pub mod jwks {
    pub use crate::identity::jwks::{JwkKey, Jwks, KeySet, https_client};
}
pub use live::{ConfigLoader, KeyChangeError, LiveConfig, LiveReport};
pub use quarantine::{LiveDecision, QuarantineSet, Verdict};
pub use server::{CoapServer, Gateway, MqttServer, request_id};
pub use tls::{Rejection as TlsRejection, TlsStats};

/// The TLS crates this gateway is built with, so benches and tools can build a matching client
/// (same rustls version and crypto provider) without depending on them directly.
#[doc(hidden)]
pub mod reexport {
    pub use rustls;
    pub use rustls_pki_types;
    pub use tokio_rustls;
}
