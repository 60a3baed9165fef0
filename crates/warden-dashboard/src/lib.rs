//! The Warden console: sign-in (operators and viewers), live alerts and decisions
//! (server-sent events), a fleet overview, subject pages with URLs of their own, releases and
//! manual quarantines, and alert sinks (signed webhooks).
//!
//! [`Dashboard::start`] reads the alerts and decisions topics from the beginning, then follows
//! both, and follows the events topic for traffic over time ([`traffic`]). Pages are rendered
//! on the server (they show their data without JavaScript). Routes (all but `/login`,
//! `/oidc/*` and `/healthz` need a session or an operator's bearer token;
//! state changes made with a session need its CSRF token):
//!
//! | Method | Path | Answer |
//! |---|---|---|
//! | `GET` | `/`, `/identities/{id}`, `/ips/{ip}`, `/tenants/{t}`, `/keys/{k}`, `/routes/{r}` | the overview, subject pages (`?offset=N` pages their alerts) |
//! | `GET` | `/alerts/{id}`, `/search?q=` | an alert's page (evidence, detectors, decision); search results |
//! | `GET`, `POST` | `/login` | the sign-in page; sign in with a token (form field `token`) |
//! | `GET` | `/oidc/start`, `/oidc/callback` | sign in with the OpenID Connect provider (`[dashboard.oidc]`) |
//! | `POST` | `/logout` | end the session |
//! | `GET` | `/api/session` | who is signed in, and the CSRF token |
//! | `GET` | `/api/alerts?limit=N&offset=M&subject=kind:value` | recent [`Alert`](warden_event::Alert)s, newest first, paged (`x-total-count`) |
//! | `GET` | `/api/alerts/{id}` | one alert with its evidence, the detectors that agreed and the decision |
//! | `GET` | `/api/traffic` | the fleet's traffic per minute, refusals by reason, top talkers |
//! | `GET` | `/api/traffic/{kind}/{value}` | one subject's traffic per minute, routes and peers seen |
//! | `GET` | `/api/search?q=` | identities, IPs and tenants whose value contains `q` |
//! | `GET` | `/api/quarantine` | active decisions ([`ActiveDecision`]) |
//! | `POST` | `/api/quarantine` | quarantine a subject by hand (operators) |
//! | `POST` | `/api/quarantine/release` | body `{"kind","value","reason"}` (a reason is required: `400 reason_required` without): publishes a release, `202` with the decision; `404` when nothing is active (operators) |
//! | `GET` | `/api/devices/{identity}` | that identity's alerts and latest decision |
//! | `GET` | `/api/status` | the processor's health: pipeline and reloads, events/s, lag, bus, models served |
//! | `GET` | `/api/stream` | server-sent events: new alerts and decisions |
//! | `GET` | `/api/openapi.json` | the OpenAPI document of this API |
//! | `GET` | `/healthz` | `ok` |
//!
//! Errors are a generic `{"error": {"status", "code", "request_id"}}`; details only go to the
//! log.
//!
//! With an audit log ([`Dashboard::start_with_audit`]), releases and manual quarantines are
//! recorded there before they are published (`503`, and nothing published, when they cannot
//! be), and so are sign-ins, successful or refused.

mod api;
mod auth;
mod error;
mod health;
mod oidc;
pub mod openapi;
mod pages;
mod render;
mod scores;
mod server;
pub mod sink;
pub use scores::{ScoreLine, ScoreSource};
mod state;
pub mod traffic;
mod views;

pub use api::StatusFn;
pub use auth::one_time_operator;
pub use error::DashboardError;
pub use server::Dashboard;
pub use state::{ActiveDecision, DashboardState};
