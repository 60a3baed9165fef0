//! Names of the non-standard headers the gateway sets, built once: inserting by `&str` copies
//! a custom name into a new allocation on every request (`HeaderName::from(HdrName)`), while
//! a static name is shared.

use axum::http::HeaderName;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_WARDEN_IDENTITY: HeaderName = HeaderName::from_static("x-warden-identity");
pub const X_WARDEN_TENANT: HeaderName = HeaderName::from_static("x-warden-tenant");
pub const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
pub const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
pub const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
