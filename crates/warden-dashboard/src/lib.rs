//! The Warden dashboard: live alerts, the subjects currently quarantined (with a release
//! button), and a drill-down per device.
//!
//! [`Dashboard::start`] reads the alerts and decisions topics from the beginning, then follows
//! both; the page at `/` polls the JSON API every 2 s:
//!
//! | Method | Path | Answer |
//! |---|---|---|
//! | `GET` | `/api/alerts?limit=N&subject=kind:value` | recent [`Alert`](warden_event::Alert)s, newest first |
//! | `GET` | `/api/quarantine` | active decisions ([`ActiveDecision`]) |
//! | `POST` | `/api/quarantine/release` | body `{"kind","value"}`: publishes a release, `202` with the decision |
//! | `GET` | `/api/devices/{identity}` | that identity's alerts and latest decision |
//! | `GET` | `/healthz` | `ok` |
//!
//! Errors are a generic `{"error": {"status", "code", "request_id"}}`; details only go to the
//! log. The release endpoint only takes `application/json`, which browsers cannot send
//! cross-origin without a CORS preflight (which the dashboard never grants).

mod api;
mod auth;
mod error;
pub mod openapi;
mod server;
pub mod sink;
mod state;

pub use api::StatusFn;
pub use auth::one_time_operator;
pub use error::DashboardError;
pub use server::Dashboard;
pub use state::{ActiveDecision, DashboardState};
