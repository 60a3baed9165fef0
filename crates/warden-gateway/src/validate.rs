//! Input validation: header count and size (431), per-route body size (413, decided on the
//! declared length before reading anything), content-type allow list (415), and JSON Schema
//! validation of request bodies (400), for which the body is buffered up to the route's limit
//! only on routes that have a schema.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use warden_config::{ConfigError, ConfigErrors, RouteValidation, WardenConfig};

use crate::Reject;

mod json;
pub use json::unique_keys;

/// Header limits (they apply to every request).
#[derive(Debug, Clone, Copy)]
pub struct HeaderLimits {
    pub max_headers: usize,
    pub max_header_bytes: usize,
}

impl HeaderLimits {
    pub fn new(config: &WardenConfig) -> Self {
        Self {
            max_headers: config.validation.max_headers,
            max_header_bytes: config.validation.max_header_bytes,
        }
    }

    /// 431 when there are too many header fields or they are too large together; 400 when
    /// both `Content-Length` and `Transfer-Encoding` are present. (hyper 1.12 already drops
    /// `Content-Length` in that case, frames the body by `Transfer-Encoding` and closes the
    /// connection after the response; this refusal is defence in depth should a request ever
    /// arrive here with both.)
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Reject> {
        if headers.contains_key(header::TRANSFER_ENCODING)
            && headers.contains_key(header::CONTENT_LENGTH)
        {
            return Err(Reject::AmbiguousLength);
        }
        if headers.len() > self.max_headers {
            return Err(Reject::HeadersTooLarge);
        }
        let bytes: usize = headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum();
        if bytes > self.max_header_bytes {
            return Err(Reject::HeadersTooLarge);
        }
        Ok(())
    }
}

/// The validation rules of one route.
#[derive(Debug, Clone)]
pub struct RouteRules {
    /// Largest body, bytes.
    pub max_body: u64,
    /// Allowed media types (empty: any).
    content_types: Vec<String>,
    /// Compiled JSON Schema of request bodies.
    schema: Option<Arc<jsonschema::Validator>>,
}

impl RouteRules {
    /// Rules of a route without a `[validation.routes.X]` entry.
    pub fn default_for(config: &WardenConfig) -> Self {
        Self::with_limit(config.gateway.max_body_bytes)
    }

    /// Only a body size limit.
    pub fn with_limit(max_body: u64) -> Self {
        Self {
            max_body,
            content_types: Vec::new(),
            schema: None,
        }
    }

    pub fn has_schema(&self) -> bool {
        self.schema.is_some()
    }

    /// The declared body length against the route's limit (413 before reading anything);
    /// an unreadable `Content-Length` is a bad header.
    pub fn check_declared_length(&self, headers: &HeaderMap) -> Result<(), Reject> {
        let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
        let Some(first) = values.next() else {
            return Ok(());
        };
        let n = first
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or(Reject::BadHeader)?;
        if values.next().is_some() {
            return Err(Reject::BadHeader);
        }
        if n > self.max_body {
            return Err(Reject::BodyTooLarge);
        }
        Ok(())
    }

    /// Whether a request with (`has_body`) or without a body may have these headers: a body
    /// needs an allowed `Content-Type` when the route lists any (415).
    pub fn check_content_type(&self, headers: &HeaderMap, has_body: bool) -> Result<(), Reject> {
        if self.content_types.is_empty() || !has_body {
            return Ok(());
        }
        let media = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .ok_or(Reject::UnsupportedMediaType)?;
        if self.content_types.contains(&media) {
            Ok(())
        } else {
            Err(Reject::UnsupportedMediaType)
        }
    }

    /// Read the body up to the route's limit (413 beyond it, without reading further; 408
    /// when the client sends nothing for `idle`; 400 when its body is malformed or cut short)
    /// and, on a route with a schema, parse it as JSON — refusing duplicate object keys,
    /// compared after unescaping, at any depth — and check it (400). Returns the bytes to
    /// forward.
    pub async fn read_and_validate(&self, body: Body, idle: Duration) -> Result<Bytes, Reject> {
        let limit = usize::try_from(self.max_body).unwrap_or(usize::MAX);
        let mut body = body;
        // A body in one frame (the common case) is kept as it came, without a copy.
        let mut first: Option<Bytes> = None;
        let mut buf = BytesMut::new();
        loop {
            match tokio::time::timeout(idle, body.frame()).await {
                Err(_) => return Err(Reject::ClientTimeout),
                Ok(None) => break,
                Ok(Some(Err(_))) => return Err(Reject::ClientBody),
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        let have = first.as_ref().map_or(0, Bytes::len) + buf.len();
                        if have.saturating_add(data.len()) > limit {
                            return Err(Reject::BodyTooLarge);
                        }
                        match first.take() {
                            None if buf.is_empty() => first = Some(data),
                            earlier => {
                                if let Some(e) = earlier {
                                    buf.extend_from_slice(&e);
                                }
                                buf.extend_from_slice(&data);
                            }
                        }
                    }
                }
            }
        }
        let bytes = first.unwrap_or_else(|| buf.freeze());
        let Some(schema) = &self.schema else {
            return Ok(bytes);
        };
        let value = json::parse_unique(&bytes).map_err(|_| Reject::BadBody)?;
        if schema.is_valid(&value) {
            Ok(bytes)
        } else {
            Err(Reject::BadBody)
        }
    }
}

/// Compile the rules of every route, reading JSON Schema files. Every problem is reported with
/// its key.
pub fn compile(config: &WardenConfig) -> Result<HashMap<String, RouteRules>, ConfigErrors> {
    let mut out = HashMap::new();
    let mut errs = Vec::new();
    for route in &config.routes {
        let rules = match config.validation.routes.get(&route.name) {
            None => RouteRules::default_for(config),
            Some(v) => match compile_route(config, &route.name, v) {
                Ok(r) => r,
                Err(e) => {
                    errs.push(e);
                    continue;
                }
            },
        };
        out.insert(route.name.clone(), rules);
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(ConfigErrors(errs))
    }
}

fn compile_route(
    config: &WardenConfig,
    name: &str,
    v: &RouteValidation,
) -> Result<RouteRules, ConfigError> {
    let schema = match &v.json_schema {
        None => None,
        Some(file) => Some(Arc::new(load_schema(Path::new(file)).map_err(
            |reason| ConfigError::new(format!("validation.routes.{name}.json_schema"), reason),
        )?)),
    };
    Ok(RouteRules {
        max_body: v.max_body_bytes.unwrap_or(config.gateway.max_body_bytes),
        content_types: v.content_types.clone(),
        schema,
    })
}

fn load_schema(path: &Path) -> Result<jsonschema::Validator, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("`{}` is not JSON: {e}", path.display()))?;
    jsonschema::validator_for(&value)
        .map_err(|e| format!("`{}` is not a valid JSON Schema: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const IDLE: Duration = Duration::from_secs(5);

    fn rules(content_types: &[&str], schema: Option<serde_json::Value>) -> RouteRules {
        RouteRules {
            max_body: 64,
            content_types: content_types.iter().map(|s| s.to_string()).collect(),
            schema: schema.map(|s| Arc::new(jsonschema::validator_for(&s).expect("schema"))),
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    #[test]
    fn header_limits() {
        let l = HeaderLimits {
            max_headers: 3,
            max_header_bytes: 300,
        };
        assert_eq!(l.check(&headers(&[("a", "1"), ("b", "2")])), Ok(()));
        let many = headers(&[("a", "1"), ("a", "2"), ("b", "3"), ("c", "4")]);
        assert_eq!(
            l.check(&many),
            Err(Reject::HeadersTooLarge),
            "duplicates count"
        );
        let smuggle = headers(&[("content-length", "4"), ("transfer-encoding", "chunked")]);
        assert_eq!(l.check(&smuggle), Err(Reject::AmbiguousLength));
        let big = "x".repeat(300);
        assert_eq!(
            l.check(&headers(&[("a", &big)])),
            Err(Reject::HeadersTooLarge)
        );
    }

    #[test]
    fn declared_length() {
        let r = rules(&[], None);
        assert_eq!(
            r.check_declared_length(&headers(&[("content-length", "64")])),
            Ok(())
        );
        assert_eq!(
            r.check_declared_length(&headers(&[("content-length", "65")])),
            Err(Reject::BodyTooLarge)
        );
        assert_eq!(
            r.check_declared_length(&headers(&[("content-length", "x")])),
            Err(Reject::BadHeader)
        );
        assert_eq!(
            r.check_declared_length(&headers(&[
                ("content-length", "5"),
                ("content-length", "5")
            ])),
            Err(Reject::BadHeader)
        );
    }

    #[test]
    fn content_types() {
        let r = rules(&["application/json"], None);
        let json = headers(&[("content-type", "Application/JSON; charset=utf-8")]);
        assert_eq!(r.check_content_type(&json, true), Ok(()));
        let text = headers(&[("content-type", "text/plain")]);
        assert_eq!(
            r.check_content_type(&text, true),
            Err(Reject::UnsupportedMediaType)
        );
        assert_eq!(
            r.check_content_type(&HeaderMap::new(), true),
            Err(Reject::UnsupportedMediaType),
            "a body without a type"
        );
        assert_eq!(
            r.check_content_type(&text, false),
            Ok(()),
            "no body, no check"
        );
        assert_eq!(rules(&[], None).check_content_type(&text, true), Ok(()));
    }

    #[tokio::test]
    async fn schema_validation() {
        let r = rules(
            &[],
            Some(serde_json::json!({
                "type": "object",
                "required": ["t"],
                "properties": {"t": {"type": "number"}},
                "additionalProperties": false
            })),
        );
        let ok = r.read_and_validate(Body::from(r#"{"t":21.5}"#), IDLE).await;
        assert_eq!(ok.as_deref(), Ok(&br#"{"t":21.5}"#[..]));
        for bad in [
            r#"{"t":"hot"}"#,
            r#"{"t":1,"x":2}"#,
            "{not json",
            "",
            r#"{"t":500,"t":20}"#,
            r#"{"t":500,"\u0074":20}"#,
        ] {
            assert_eq!(
                r.read_and_validate(Body::from(bad), IDLE).await,
                Err(Reject::BadBody),
                "{bad}"
            );
        }
        let big = format!(r#"{{"t":1{}}}"#, " ".repeat(100));
        assert_eq!(
            r.read_and_validate(Body::from(big), IDLE).await,
            Err(Reject::BodyTooLarge)
        );
    }
}
