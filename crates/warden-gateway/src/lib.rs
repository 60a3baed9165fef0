//! The Warden gateway: authenticates every request, refuses quarantined subjects, proxies the
//! rest to upstream routes, and emits one [`RequestEvent`](warden_event::RequestEvent) per
//! request — accepted or rejected — to the bus without blocking the request path.
//!
//! The request path is a fixed sequence of phases (see [`server`]), each of which may end the
//! request with a [`Reject`]; one rescue point turns that into a generic JSON error with the
//! request id, and the event is emitted when the response body is finished (or dropped).

mod auth;
mod body;
mod emit;
mod error;
mod path;
mod proxy;
mod quarantine;
mod routes;
mod server;

pub use emit::{EmitStats, Emitter};
pub use error::{GatewayError, Reject};
pub use quarantine::{QuarantineSet, Verdict};
pub use server::Gateway;
