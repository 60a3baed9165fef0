use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use warden_event::{Outcome, Reason};

/// Errors starting a gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("bus: {0}")]
    Bus(#[from] warden_bus::BusError),
    #[error("reading live decisions before serving: {0}")]
    Bootstrap(warden_bus::BusError),
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
    #[error("policy files: {0}")]
    Policy(warden_config::ConfigErrors),
    #[error("identity setup: {}", .0.join("; "))]
    Identity(Vec<String>),
    #[error("event spool: {0}")]
    Spool(#[from] warden_bus::spool::SpoolError),
    #[error("encryption at rest: {0}")]
    AtRest(warden_config::ConfigError),
}

/// Why a request was refused or failed. Each maps to one status, a short public code, and the
/// outcome recorded in the event; details stay in the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// The raw path is not in normal form (dot segments, `//`, encoded separators…).
    BadPath,
    /// A header the gateway reads is not valid.
    BadHeader,
    /// No route serves the path.
    NoRoute,
    /// The route does not allow the method.
    MethodNotAllowed,
    /// The route's API version is past its sunset.
    Gone,
    /// Credentials required but absent.
    MissingCredentials,
    /// Credentials offered but refused.
    BadCredentials,
    /// The subject is quarantined.
    Quarantined,
    /// The body is larger than allowed.
    BodyTooLarge,
    /// The upstream did not answer in time.
    UpstreamTimeout,
    /// The upstream could not be reached or failed mid-response.
    UpstreamUnavailable,
    /// The RBAC policy does not allow the request (same public code as a quarantine, so a
    /// client cannot tell which).
    Forbidden,
    /// A rate limit refused the request: 429 with `Retry-After` and `RateLimit-*`.
    Throttled {
        retry_after_s: u64,
        /// The limit's burst (`RateLimit-Limit`).
        limit: u32,
        /// Seconds until the quota is whole again (`RateLimit-Reset`).
        reset_s: u64,
        /// The limit of a `throttle` decision, not a configured limit.
        by_decision: bool,
    },
    /// Too many requests in flight (load shedding): 503 with `Retry-After: 1`.
    Overloaded,
    /// The body is not valid for the route (not JSON, or against its JSON Schema).
    BadBody,
    /// The body's media type is not allowed on the route.
    UnsupportedMediaType,
    /// Too many request header fields, or too large together.
    HeadersTooLarge,
    /// Both `Content-Length` and `Transfer-Encoding`: the framing is ambiguous (request
    /// smuggling); 400 and the connection is closed (RFC 9112 §6.1).
    AmbiguousLength,
    /// The method is not an upper-case token (`delete`, `Delete`): 400.
    BadMethod,
    /// No `Host`, several, or an invalid one (RFC 9112 §3.2): 400.
    BadHost,
    /// A method-override header or `?_method=` that is refused (or malformed): 400.
    MethodOverride,
    /// The client's request body was malformed or cut short (bad chunk, half-close): 400, a
    /// client fault, never an upstream failure.
    ClientBody,
    /// The client stalled while sending its request body: 408.
    ClientTimeout,
}

impl Reject {
    pub fn status(self) -> StatusCode {
        match self {
            Reject::BadPath
            | Reject::BadHeader
            | Reject::AmbiguousLength
            | Reject::BadMethod
            | Reject::BadHost
            | Reject::MethodOverride
            | Reject::ClientBody => StatusCode::BAD_REQUEST,
            Reject::ClientTimeout => StatusCode::REQUEST_TIMEOUT,
            Reject::NoRoute => StatusCode::NOT_FOUND,
            Reject::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Reject::Gone => StatusCode::GONE,
            Reject::MissingCredentials | Reject::BadCredentials => StatusCode::UNAUTHORIZED,
            Reject::Quarantined => StatusCode::FORBIDDEN,
            Reject::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Reject::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Reject::UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            Reject::Forbidden => StatusCode::FORBIDDEN,
            Reject::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            Reject::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Reject::BadBody => StatusCode::BAD_REQUEST,
            Reject::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Reject::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        }
    }

    /// Short public code in the error body.
    pub fn code(self) -> &'static str {
        match self {
            Reject::BadPath => "bad_path",
            Reject::BadHeader | Reject::AmbiguousLength => "bad_header",
            Reject::NoRoute => "not_found",
            Reject::MethodNotAllowed => "method_not_allowed",
            Reject::Gone => "gone",
            Reject::MissingCredentials => "unauthenticated",
            Reject::BadCredentials => "unauthenticated",
            Reject::Quarantined => "forbidden",
            Reject::BodyTooLarge => "payload_too_large",
            Reject::UpstreamTimeout => "upstream_timeout",
            Reject::UpstreamUnavailable => "bad_gateway",
            Reject::Forbidden => "forbidden",
            Reject::Throttled { .. } => "rate_limited",
            Reject::Overloaded => "overloaded",
            Reject::BadBody => "invalid_body",
            Reject::UnsupportedMediaType => "unsupported_media_type",
            Reject::HeadersTooLarge => "headers_too_large",
            Reject::BadMethod => "bad_method",
            Reject::BadHost => "bad_host",
            Reject::MethodOverride => "method_override",
            Reject::ClientBody => "bad_request_body",
            Reject::ClientTimeout => "request_timeout",
        }
    }

    pub fn outcome(self) -> Outcome {
        match self {
            Reject::BadPath
            | Reject::BadHeader
            | Reject::NoRoute
            | Reject::MethodNotAllowed
            | Reject::Gone
            | Reject::BodyTooLarge
            | Reject::BadBody
            | Reject::UnsupportedMediaType
            | Reject::HeadersTooLarge
            | Reject::AmbiguousLength
            | Reject::BadMethod
            | Reject::BadHost
            | Reject::MethodOverride
            | Reject::ClientBody
            | Reject::ClientTimeout => Outcome::Invalid,
            Reject::Forbidden => Outcome::DeniedRbac,
            Reject::Throttled { .. } | Reject::Overloaded => Outcome::Throttled,
            Reject::MissingCredentials | Reject::BadCredentials => Outcome::DeniedAuth,
            Reject::Quarantined => Outcome::Quarantined,
            Reject::UpstreamTimeout | Reject::UpstreamUnavailable => Outcome::UpstreamError,
        }
    }

    /// Who refused the request, for the event.
    pub fn reason(self) -> Reason {
        match self {
            Reject::BadPath => Reason::Path,
            Reject::NoRoute | Reject::MethodNotAllowed | Reject::Gone => Reason::Route,
            Reject::BadHeader
            | Reject::AmbiguousLength
            | Reject::BodyTooLarge
            | Reject::BadBody
            | Reject::UnsupportedMediaType
            | Reject::HeadersTooLarge
            | Reject::BadMethod
            | Reject::BadHost
            | Reject::MethodOverride
            | Reject::ClientBody
            | Reject::ClientTimeout => Reason::Invalid,
            Reject::MissingCredentials | Reject::BadCredentials => Reason::Auth,
            Reject::Quarantined => Reason::Quarantine,
            Reject::Forbidden => Reason::Rbac,
            Reject::Throttled {
                by_decision: true, ..
            } => Reason::Throttle,
            Reject::Throttled { .. } => Reason::RateLimit,
            Reject::Overloaded => Reason::Overload,
            Reject::UpstreamTimeout | Reject::UpstreamUnavailable => Reason::Upstream,
        }
    }

    /// The generic client response: `{"error": {"status", "code", "request_id"}}`.
    pub fn into_response(self, request_id: &str) -> Response {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            error: Error<'a>,
        }
        #[derive(serde::Serialize)]
        struct Error<'a> {
            status: u16,
            code: &'a str,
            request_id: &'a str,
        }
        let status = self.status();
        // Serialised from borrowed fields: no intermediate `serde_json::Value` tree.
        let body = Body {
            error: Error {
                status: status.as_u16(),
                code: self.code(),
                request_id,
            },
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if matches!(self, Reject::MissingCredentials | Reject::BadCredentials) {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("ApiKey realm=\"warden\""),
            );
        }
        match self {
            Reject::Throttled {
                retry_after_s,
                limit,
                reset_s,
                ..
            } => {
                let h = resp.headers_mut();
                h.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
                h.insert(crate::names::RATELIMIT_LIMIT, HeaderValue::from(limit));
                h.insert(crate::names::RATELIMIT_REMAINING, HeaderValue::from(0u32));
                h.insert(crate::names::RATELIMIT_RESET, HeaderValue::from(reset_s));
            }
            Reject::Overloaded => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(1u32));
            }
            Reject::AmbiguousLength | Reject::ClientBody | Reject::ClientTimeout => {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        resp
    }
}
