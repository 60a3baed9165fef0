use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Versioned;

/// One request seen by a gateway, accepted or rejected (topic `warden.events`, key = identity,
/// or the client IP for anonymous requests).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestEvent {
    /// Schema version of this object.
    #[serde(default = "crate::default_version")]
    pub v: u32,
    /// Unique id of the event (also the request id returned to the client).
    pub id: String,
    /// Id of the gateway instance that saw the request.
    pub gateway: String,
    /// Per-gateway sequence number, consecutive from 0 at gateway start: a gap means loss.
    pub seq: u64,
    /// Start of the request, nanoseconds since the Unix epoch.
    pub ts: i64,
    /// Authenticated identity (device id, key id or token subject), or `anonymous`.
    pub identity: String,
    /// Tenant of the identity (empty when unknown).
    pub tenant: String,
    /// Device type of the identity (empty when unknown).
    pub device_type: String,
    /// How the client tried to authenticate and with what result.
    pub auth: AuthInfo,
    /// Client IP address as seen by the gateway.
    pub client_ip: String,
    /// Protocol the device used.
    pub protocol: Protocol,
    /// Request method (HTTP method, or the MQTT/CoAP verb mapped to one).
    pub method: String,
    /// Matched route name (never the raw path), or `unmatched`.
    pub route: String,
    /// Request path (without the query string).
    pub path: String,
    /// Status returned to the client.
    pub status: u16,
    /// What the gateway decided.
    pub decision: Outcome,
    /// Time from request start to the end of the response, microseconds.
    pub latency_us: u64,
    /// Request body bytes received.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// `User-Agent` header, if any.
    pub user_agent: Option<String>,
    /// TLS details when the request came over TLS.
    pub tls: Option<TlsInfo>,
    /// Why the gateway refused the request (`none` when it was served). Read from version 1
    /// events, it is inferred from `decision` and `status` ([`Reason::infer`]).
    #[serde(default)]
    pub reason: Reason,
    /// The shape of the query string: its parameter names, in order, each with the class of
    /// its value (`page=int&sort=str`), never the values themselves (see [`crate::query`]).
    /// Empty without a query.
    #[serde(default)]
    pub query: String,
    /// A keyed 32-bit hash of the whole query string, names and values (0 without a query):
    /// distinct queries on one path count as distinct resources without the values being
    /// recorded.
    #[serde(default)]
    pub query_hash: u32,
}

impl Versioned for RequestEvent {
    fn version(&self) -> u32 {
        self.v
    }

    fn decode_compact(body: &[u8]) -> Result<Self, crate::DecodeError> {
        crate::compact::decode_owned(body)
    }

    fn upgrade(&mut self) {
        if self.v < 2 {
            self.reason = Reason::infer(self.decision, self.status);
        }
    }
}

impl RequestEvent {
    /// The bus key of this event: the identity, or the client IP for anonymous requests, so one
    /// device's events stay ordered on one partition.
    pub fn key(&self) -> &str {
        if self.identity == ANONYMOUS {
            &self.client_ip
        } else {
            &self.identity
        }
    }
}

/// Identity recorded for requests without valid credentials.
pub const ANONYMOUS: &str = "anonymous";

/// Authentication method and result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthInfo {
    pub method: AuthMethod,
    pub result: AuthResult,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    None,
    ApiKey,
    Jwt,
    ClientCert,
}

impl AuthMethod {
    /// The wire name (as serialised).
    pub const fn as_str(self) -> &'static str {
        match self {
            AuthMethod::None => "none",
            AuthMethod::ApiKey => "api_key",
            AuthMethod::Jwt => "jwt",
            AuthMethod::ClientCert => "client_cert",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthResult {
    /// No credentials were required or offered.
    NotRequired,
    /// No credentials were offered where they were required.
    Missing,
    Ok,
    /// Credentials were offered and refused (unknown, expired, revoked, forged).
    Failed,
}

impl AuthResult {
    /// The wire name (as serialised).
    pub const fn as_str(self) -> &'static str {
        match self {
            AuthResult::NotRequired => "not_required",
            AuthResult::Missing => "missing",
            AuthResult::Ok => "ok",
            AuthResult::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Http,
    Mqtt,
    Coap,
}

impl Protocol {
    /// The wire name (as serialised).
    pub const fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Mqtt => "mqtt",
            Protocol::Coap => "coap",
        }
    }
}

/// The gateway's decision on a request.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Allowed,
    DeniedAuth,
    DeniedRbac,
    Throttled,
    Quarantined,
    Invalid,
    /// Accepted but the upstream failed (502/504).
    UpstreamError,
}

impl Outcome {
    pub const ALL: [Outcome; 7] = [
        Outcome::Allowed,
        Outcome::DeniedAuth,
        Outcome::DeniedRbac,
        Outcome::Throttled,
        Outcome::Quarantined,
        Outcome::Invalid,
        Outcome::UpstreamError,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::DeniedAuth => "denied_auth",
            Outcome::DeniedRbac => "denied_rbac",
            Outcome::Throttled => "throttled",
            Outcome::Quarantined => "quarantined",
            Outcome::Invalid => "invalid",
            Outcome::UpstreamError => "upstream_error",
        }
    }
}

/// Why a request was refused: who in the gateway refused it, so detectors can tell a client's
/// behaviour (a wrong key, a forbidden route, an unknown path) from Warden's own enforcement
/// (a quarantine, a throttle, a rate limit, load shedding), which they do not count as the
/// client's errors unless a pipeline asks for it.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Not refused: served (or failed upstream, see `upstream`).
    #[default]
    None,
    /// Credentials missing or refused (401), or a refused client certificate.
    Auth,
    /// The RBAC policy does not allow the request (403).
    Rbac,
    /// A quarantined identity, key, tenant or client IP (403).
    Quarantine,
    /// The reduced rate of a subject under a `throttle` decision (429).
    Throttle,
    /// A configured rate limit (429).
    RateLimit,
    /// Load shedding: too many requests in flight (503).
    Overload,
    /// Invalid request: headers, body size, media type or body against the route's schema.
    Invalid,
    /// A path refused by normalisation (dot segments, encoded separators…) (400).
    Path,
    /// No route serves the path, or the route does not allow the method (404/405).
    Route,
    /// The upstream failed or timed out (502/504).
    Upstream,
}

impl Reason {
    pub const ALL: [Reason; 11] = [
        Reason::None,
        Reason::Auth,
        Reason::Rbac,
        Reason::Quarantine,
        Reason::Throttle,
        Reason::RateLimit,
        Reason::Overload,
        Reason::Invalid,
        Reason::Path,
        Reason::Route,
        Reason::Upstream,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::None => "none",
            Reason::Auth => "auth",
            Reason::Rbac => "rbac",
            Reason::Quarantine => "quarantine",
            Reason::Throttle => "throttle",
            Reason::RateLimit => "rate_limit",
            Reason::Overload => "overload",
            Reason::Invalid => "invalid",
            Reason::Path => "path",
            Reason::Route => "route",
            Reason::Upstream => "upstream",
        }
    }

    /// The reason of a name (as serialised).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// Whether the refusal is Warden's own enforcement (quarantine, throttle, rate limit,
    /// load shedding) rather than something the client did wrong.
    pub const fn is_enforcement(self) -> bool {
        matches!(
            self,
            Reason::Quarantine | Reason::Throttle | Reason::RateLimit | Reason::Overload
        )
    }

    /// The reason of a version 1 event, which had none: from its decision and status (a 429
    /// is taken as a rate limit, a 503 as load shedding, a 404 or 405 as a route refusal, any
    /// other invalid request as `invalid`).
    pub const fn infer(decision: Outcome, status: u16) -> Self {
        match decision {
            Outcome::Allowed => Reason::None,
            Outcome::DeniedAuth => Reason::Auth,
            Outcome::DeniedRbac => Reason::Rbac,
            Outcome::Quarantined => Reason::Quarantine,
            Outcome::Throttled if status == 503 => Reason::Overload,
            Outcome::Throttled => Reason::RateLimit,
            Outcome::UpstreamError => Reason::Upstream,
            Outcome::Invalid => match status {
                404 | 405 => Reason::Route,
                _ => Reason::Invalid,
            },
        }
    }
}

/// TLS session details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsInfo {
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: String,
    /// SHA-256 fingerprint (hex) of the client certificate, when one was presented.
    pub client_cert_fingerprint: Option<String>,
}
