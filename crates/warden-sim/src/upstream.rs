//! A stand-in for the backend behind the gateway.

pub mod model;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;
use tokio::net::TcpListener;
use tracing::info;

use model::{FAULT_HEADER, Reply, ReplyBody, UPSTREAM_HEADER};

/// Rows per chunk of a streamed listing.
const ROWS_PER_CHUNK: u64 = 512;
/// Bytes per chunk of a streamed binary body.
const BINARY_CHUNK: usize = 16 * 1024;

/// The demo backend's routes:
/// - everything under `/api/v1/` is the simulated fleet's API ([`model::reply`]: telemetry,
///   config, firmware images, media, meter histories with `?limit=`, industrial ingest, the
///   companion app, and `/api/v1/export/{tenant}?limit=N` whose response grows with `N`);
/// - `POST /api/devices/{id}/telemetry` → `200 {"ok":true}` (the `up --demo` fleet);
/// - `GET /api/devices/{id}/config` → `200` with a small config object;
/// - anything else under `/api` → `200 {"ok":true}`; anything else → `404`.
///
/// Every response carries `x-sim-upstream: 1`. Every request body is read to its end.
pub fn demo_upstream_router() -> Router {
    Router::new()
        .route("/api/v1/{*rest}", any(v1))
        .route("/api/devices/{id}/telemetry", post(telemetry))
        .route("/api/devices/{id}/config", get(config))
        .fallback(fallback)
        .layer(axum::middleware::map_response(mark))
}

/// Serve [`demo_upstream_router`] on `listener` until the task is dropped or aborted.
pub async fn demo_upstream(listener: TcpListener) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    info!(%addr, "Demo upstream listening.");
    axum::serve(listener, demo_upstream_router()).await
}

async fn mark(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(UPSTREAM_HEADER, HeaderValue::from_static("1"));
    resp
}

async fn v1(method: Method, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let path = uri.path();
    let fault = headers
        .get(FAULT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u16>().ok());
    let body_ok = if model::expects_json(method.as_str(), path) {
        let bytes = read(body).await;
        serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok()
    } else {
        drain(body).await;
        true
    };
    let reply = model::reply(method.as_str(), path, uri.query(), body_ok, fault);
    render(reply)
}

/// The HTTP response of a [`Reply`]: listings and binaries are streamed.
fn render(reply: Reply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let content_type = reply.content_type();
    let len = reply.len();
    let body = match reply.body {
        ReplyBody::Json(s) => Body::from(s),
        ReplyBody::Rows { rows, row_bytes } => {
            let chunks = (0..rows.div_ceil(ROWS_PER_CHUNK)).map(move |c| {
                let from = c * ROWS_PER_CHUNK;
                let to = (from + ROWS_PER_CHUNK).min(rows);
                let mut s = String::with_capacity((to - from) as usize * row_bytes);
                for i in from..to {
                    s.push_str(&model::row("row", i, row_bytes));
                }
                Ok::<_, std::convert::Infallible>(Bytes::from(s))
            });
            Body::from_stream(futures::stream::iter(chunks))
        }
        ReplyBody::Binary(n) => {
            static ZEROS: [u8; BINARY_CHUNK] = [0; BINARY_CHUNK];
            let chunks = (0..n.div_ceil(BINARY_CHUNK as u64)).map(move |c| {
                let left = n - c * BINARY_CHUNK as u64;
                let take = left.min(BINARY_CHUNK as u64) as usize;
                Ok::<_, std::convert::Infallible>(Bytes::from_static(&ZEROS[..take]))
            });
            Body::from_stream(futures::stream::iter(chunks))
        }
    };
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
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

/// Read a body to its end (a broken body ends the read with what came).
async fn read(body: Body) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        out.extend_from_slice(&chunk);
    }
    out
}
