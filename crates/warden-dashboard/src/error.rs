use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tracing::{debug, warn};

/// Errors starting or serving the dashboard.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// The alerts or decisions topic could not be read to its end in time.
    #[error("reading `{topic}` before serving: {source}")]
    Bootstrap {
        topic: String,
        #[source]
        source: warden_bus::BusError,
    },
    /// The listener failed.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
    /// A setting cannot be used (e.g. a webhook's secret is missing from the environment).
    #[error("{0}")]
    Config(String),
}

/// Why an API request failed. Each maps to one status and a short public code; the detail
/// goes to the log (with the request id), never into the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ApiError {
    /// Malformed body, query or path.
    BadRequest(String),
    /// The decision could not be published.
    Unavailable(String),
    /// The operator's role does not allow it.
    Forbidden(String),
    /// No such subject (or nothing to release).
    NotFound(String),
    /// A release or a manual quarantine without a reason (`400`, code `reason_required`).
    ReasonRequired,
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::ReasonRequired => StatusCode::BAD_REQUEST,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::ReasonRequired => "reason_required",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
        }
    }
}

impl IntoResponse for ApiError {
    /// The generic body `{"error": {"status", "code", "request_id"}}`, with a fresh request id
    /// (also sent as `x-request-id`).
    fn into_response(self) -> Response {
        let request_id = uuid::Uuid::now_v7().to_string();
        let status = self.status();
        match &self {
            ApiError::BadRequest(detail) | ApiError::NotFound(detail) => {
                debug!(%request_id, %detail, "Bad API request.");
            }
            ApiError::ReasonRequired => debug!(%request_id, "Action without a reason refused."),
            ApiError::Forbidden(detail) => warn!(%request_id, %detail, "API request refused."),
            ApiError::Unavailable(detail) => warn!(%request_id, %detail, "API request failed."),
        }
        let body = serde_json::json!({
            "error": { "status": status.as_u16(), "code": self.code(), "request_id": request_id }
        });
        let mut resp = (status, Json(body)).into_response();
        if let Ok(v) = request_id.parse() {
            resp.headers_mut().insert("x-request-id", v);
        }
        resp
    }
}
