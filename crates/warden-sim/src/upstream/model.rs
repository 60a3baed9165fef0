//! What the simulated backend answers to each request under `/api/v1`, as a pure function:
//! the live upstream serves it, and accelerated runs use it to fill in `status` and
//! `bytes_out` of events without any HTTP, so both agree byte for byte.

/// Header a request may carry to make the simulated backend fail with that `5xx` status (how
/// the simulator plays backend failures; the stand-in backend is the only thing reading it).
pub const FAULT_HEADER: &str = "x-sim-fault";
/// Header the simulated backend puts on every response, so a client tells the backend's
/// answers from the gateway's refusals.
pub const UPSTREAM_HEADER: &str = "x-sim-upstream";
/// Bytes of one firmware image chunk.
pub const FIRMWARE_CHUNK: u64 = 64 * 1024;
/// Most rows a history or export request gets.
pub const MAX_ROWS: u64 = 200_000;
/// Bytes of one history row.
pub const HISTORY_ROW: usize = 64;
/// Bytes of one export row.
pub const EXPORT_ROW: usize = 100;

/// A response of the simulated backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: ReplyBody,
}

/// A response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyBody {
    /// A small JSON document.
    Json(String),
    /// `rows` newline-delimited JSON rows of exactly `row_bytes` bytes each (newline
    /// included).
    Rows { rows: u64, row_bytes: usize },
    /// Opaque bytes.
    Binary(u64),
}

impl Reply {
    fn json(status: u16, body: String) -> Self {
        Self {
            status,
            body: ReplyBody::Json(body),
        }
    }

    /// Length of the body in bytes.
    pub fn len(&self) -> u64 {
        match &self.body {
            ReplyBody::Json(s) => s.len() as u64,
            ReplyBody::Rows { rows, row_bytes } => rows * *row_bytes as u64,
            ReplyBody::Binary(n) => *n,
        }
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The content type of the body.
    pub fn content_type(&self) -> &'static str {
        match self.body {
            ReplyBody::Json(_) => "application/json",
            ReplyBody::Rows { .. } => "application/x-ndjson",
            ReplyBody::Binary(_) => "application/octet-stream",
        }
    }
}

/// Row `i` of `row_bytes` bytes (newline included) of a listing named `what`.
pub fn row(what: &str, i: u64, row_bytes: usize) -> String {
    let mut s = format!("{{\"{what}\":{i},\"v\":\"");
    let pad = row_bytes.saturating_sub(s.len() + 3);
    s.extend(std::iter::repeat_n('x', pad));
    s.push_str("\"}\n");
    s
}

/// Whether requests to `path` (under `/api/v1`, without the query) carry a JSON body the
/// backend parses (a malformed one gets `400`).
pub fn expects_json(method: &str, path: &str) -> bool {
    method == "POST" && !path.ends_with("/clips")
}

/// The backend's answer to `method path?query`. `body_ok`: the body parsed (when
/// [`expects_json`]); `fault`: a backend failure to play (a `5xx` status).
pub fn reply(
    method: &str,
    path: &str,
    query: Option<&str>,
    body_ok: bool,
    fault: Option<u16>,
) -> Reply {
    if let Some(status) = fault.filter(|s| (500..600).contains(s)) {
        return Reply::json(status, r#"{"error":"backend unavailable"}"#.into());
    }
    let Some(rest) = path.strip_prefix("/api/v1/") else {
        return not_found();
    };
    let seg: Vec<&str> = rest.split('/').collect();
    let (allowed, reply): (&str, Option<Reply>) = match seg.as_slice() {
        ["telemetry", _] => ("POST", Some(accepted())),
        ["config", id] => ("GET", Some(Reply::json(200, config(id)))),
        ["firmware", "images", ver] => (
            "GET",
            Some(Reply {
                status: if ver.is_empty() { 404 } else { 200 },
                body: ReplyBody::Binary(if ver.is_empty() { 0 } else { FIRMWARE_CHUNK }),
            }),
        ),
        ["firmware", id, "check"] => (
            "GET",
            Some(Reply::json(
                200,
                format!(
                    r#"{{"device":"{id}","latest":"2.4.0","chunks":12,"chunk_bytes":{FIRMWARE_CHUNK}}}"#
                ),
            )),
        ),
        ["media", _, "events"] => ("POST", Some(accepted())),
        ["media", id, "clips"] => (
            "POST",
            Some(Reply::json(
                201,
                format!(r#"{{"clip":"{id}-clip","stored":true}}"#),
            )),
        ),
        ["meters", _, "readings"] => ("POST", Some(accepted())),
        ["meters", _, "history"] => (
            "GET",
            Some(Reply {
                status: 200,
                body: ReplyBody::Rows {
                    rows: limit(query, 48),
                    row_bytes: HISTORY_ROW,
                },
            }),
        ),
        ["ingest", _, "batch"] => ("POST", Some(accepted())),
        ["ingest", _, "commands"] => ("GET", Some(Reply::json(200, r#"{"commands":[]}"#.into()))),
        ["app", "users", id, "devices"] => (
            "GET",
            Some(Reply::json(
                200,
                format!(
                    r#"{{"user":"{id}","devices":[{{"id":"owned-1","kind":"sensor"}},{{"id":"owned-2","kind":"camera"}}]}}"#
                ),
            )),
        ),
        ["app", "devices", id, "state"] => ("GET", Some(Reply::json(200, state(id)))),
        ["app", "devices", _, "commands"] => ("POST", Some(accepted())),
        ["export", _] => (
            "GET",
            Some(Reply {
                status: 200,
                body: ReplyBody::Rows {
                    rows: limit(query, 100),
                    row_bytes: EXPORT_ROW,
                },
            }),
        ),
        _ => ("", None),
    };
    match reply {
        None => not_found(),
        Some(_) if method != allowed => {
            Reply::json(405, r#"{"error":"method not allowed"}"#.into())
        }
        Some(_) if expects_json(method, path) && !body_ok => {
            Reply::json(400, r#"{"error":"malformed body"}"#.into())
        }
        Some(r) => r,
    }
}

fn not_found() -> Reply {
    Reply::json(404, r#"{"error":"not found"}"#.into())
}

fn accepted() -> Reply {
    Reply::json(202, r#"{"accepted":true}"#.into())
}

fn config(id: &str) -> String {
    format!(
        r#"{{"device":"{id}","report_interval_s":30,"unit":"celsius","firmware":"2.3.1","thresholds":{{"low":-10,"high":45}},"ntp":"pool.ntp.org","log_level":"warn"}}"#
    )
}

fn state(id: &str) -> String {
    format!(
        r#"{{"device":"{id}","online":true,"battery_pct":87,"last_seen_s":12,"reading":{{"value":21.4,"unit":"celsius"}},"firmware":"2.3.1","alerts":[]}}"#
    )
}

/// `limit=N` from a query string (default `default`, at most [`MAX_ROWS`]).
fn limit(query: Option<&str>, default: u64) -> u64 {
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("limit="))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(default)
        .min(MAX_ROWS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_by_route_method_and_body() {
        assert_eq!(
            reply("POST", "/api/v1/telemetry/s-1", None, true, None).status,
            202
        );
        assert_eq!(
            reply("POST", "/api/v1/telemetry/s-1", None, false, None).status,
            400
        );
        assert_eq!(
            reply("GET", "/api/v1/telemetry/s-1", None, true, None).status,
            405
        );
        assert_eq!(reply("GET", "/api/v1/admin", None, true, None).status, 404);
        assert_eq!(
            reply("GET", "/api/v1/config/s-1", None, true, Some(503)).status,
            503
        );
        assert_eq!(
            reply("GET", "/api/v1/config/s-1", None, true, Some(200)).status,
            200
        );
        let export = reply(
            "GET",
            "/api/v1/export/acme",
            Some("limit=50000"),
            true,
            None,
        );
        assert_eq!(export.len(), 50_000 * EXPORT_ROW as u64);
        let capped = reply(
            "GET",
            "/api/v1/export/acme",
            Some("x=1&limit=99999999"),
            true,
            None,
        );
        assert_eq!(capped.len(), MAX_ROWS * EXPORT_ROW as u64);
        let history = reply("GET", "/api/v1/meters/m-1/history", None, true, None);
        assert_eq!(history.len(), 48 * HISTORY_ROW as u64);
        let chunk = reply(
            "GET",
            "/api/v1/firmware/images/2.4.0",
            Some("chunk=3"),
            true,
            None,
        );
        assert_eq!(chunk.len(), FIRMWARE_CHUNK);
        // Clip uploads are binary: no JSON check.
        assert_eq!(
            reply("POST", "/api/v1/media/c-1/clips", None, false, None).status,
            201
        );
    }

    #[test]
    fn rows_have_their_exact_size() {
        for (i, n) in [(0, HISTORY_ROW), (123_456, EXPORT_ROW)] {
            let r = row("row", i, n);
            assert_eq!(r.len(), n);
            assert!(r.ends_with("\"}\n"));
            serde_json::from_str::<serde_json::Value>(r.trim()).expect("a JSON row");
        }
    }
}
