//! A stand-in for the backend behind the gateway.

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use futures::StreamExt;
use serde_json::json;
use tokio::net::TcpListener;
use tracing::info;

/// The demo backend's routes:
/// - `POST /api/devices/{id}/telemetry` → `200 {"ok":true}`;
/// - `GET /api/devices/{id}/config` → `200` with a small config object;
/// - anything else under `/api` → `200 {"ok":true}`; anything else → `404`.
///
/// Every request body is read to its end and discarded (no size limit).
pub fn demo_upstream_router() -> Router {
    Router::new()
        .route("/api/devices/{id}/telemetry", post(telemetry))
        .route("/api/devices/{id}/config", get(config))
        .fallback(fallback)
}

/// Serve [`demo_upstream_router`] on `listener` until the task is dropped or aborted.
pub async fn demo_upstream(listener: TcpListener) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    info!(%addr, "Demo upstream listening.");
    axum::serve(listener, demo_upstream_router()).await
}

async fn telemetry(body: Body) -> impl IntoResponse {
    drain(body).await;
    (StatusCode::OK, Json(json!({ "ok": true })))
}

async fn config(Path(id): Path<String>, body: Body) -> impl IntoResponse {
    drain(body).await;
    Json(json!({ "device": id, "report_interval_s": 10, "unit": "celsius", "firmware": "1.4.2" }))
}

async fn fallback(uri: Uri, body: Body) -> impl IntoResponse {
    drain(body).await;
    let path = uri.path();
    if path == "/api" || path.starts_with("/api/") {
        (StatusCode::OK, Json(json!({ "ok": true })))
    } else {
        (StatusCode::NOT_FOUND, Json(json!({ "ok": false })))
    }
}

/// Read a body to its end, discarding it (a broken body just ends the read).
async fn drain(body: Body) {
    let mut stream = body.into_data_stream();
    while let Some(Ok(_)) = stream.next().await {}
}
