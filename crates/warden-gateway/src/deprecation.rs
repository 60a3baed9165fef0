//! API versioning and deprecation: a route may name its `version`, the time it is deprecated
//! from and the time it goes away (`sunset_at`). Its responses carry `Deprecation` (RFC 9745,
//! `@<unix seconds>`, also before that time, to announce it), `Sunset` (RFC 8594, an HTTP date)
//! and `Link: <…>; rel="deprecation"`; past the sunset the route answers 410 (unless
//! `refuse_after_sunset = false`). Who still calls a deprecated route is kept, per route, for
//! the operator's list of devices to update (`GET /admin/deprecated`): at most
//! [`MAX_CALLERS`] identities per route, the least recently seen dropped first.

use std::collections::HashMap;

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use parking_lot::Mutex;
use serde::Serialize;
use warden_config::RouteDeprecation;

/// Callers kept per deprecated route.
pub const MAX_CALLERS: usize = 10_000;

/// A route's deprecation settings and the headers they give.
#[derive(Debug, Clone)]
pub struct Deprecation {
    pub version: Option<String>,
    /// Unix seconds.
    pub deprecated_at: Option<i64>,
    pub sunset_at: Option<i64>,
    pub refuse_after_sunset: bool,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Deprecation {
    /// The settings of a validated route; `None` when it declares no deprecation or sunset.
    pub fn of(c: &RouteDeprecation) -> Option<Self> {
        let parse = |t: &Option<String>| {
            t.as_deref()
                .and_then(|t| warden_config::parse_rfc3339(t).ok())
        };
        let (deprecated_at, sunset_at) = (parse(&c.deprecated_at), parse(&c.sunset_at));
        if deprecated_at.is_none() && sunset_at.is_none() {
            return None;
        }
        let mut headers = Vec::new();
        if let Some(at) = deprecated_at
            && let Ok(v) = HeaderValue::from_str(&format!("@{at}"))
        {
            headers.push((HeaderName::from_static("deprecation"), v));
        }
        if let Some(at) = sunset_at
            && let Ok(v) = HeaderValue::from_str(&http_date(at))
        {
            headers.push((HeaderName::from_static("sunset"), v));
        }
        if let Some(link) = &c.link
            && let Ok(v) = HeaderValue::from_str(&format!(
                "<{link}>; rel=\"deprecation\"; type=\"text/html\""
            ))
        {
            headers.push((header::LINK, v));
        }
        Some(Self {
            version: c.version.clone(),
            deprecated_at,
            sunset_at,
            refuse_after_sunset: c.refuse_after_sunset,
            headers,
        })
    }

    /// Add the headers to a response.
    pub fn add_headers(&self, h: &mut HeaderMap) {
        for (k, v) in &self.headers {
            h.append(k.clone(), v.clone());
        }
    }

    /// Whether calls at `now_s` are past the sunset and refused.
    pub fn gone(&self, now_s: i64) -> bool {
        self.refuse_after_sunset && self.sunset_at.is_some_and(|s| now_s >= s)
    }

    /// Whether the route is deprecated at `now_s`.
    pub fn deprecated(&self, now_s: i64) -> bool {
        self.deprecated_at.is_some_and(|d| now_s >= d) || self.sunset_at.is_some_and(|s| now_s >= s)
    }
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` (IMF-fixdate, RFC 9110) of Unix seconds `t`.
pub fn http_date(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = warden_event::audit::civil_from_days(days);
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let weekday = DAYS[usize::try_from(days.rem_euclid(7)).unwrap_or(0)];
    let month = MONTHS[usize::try_from(m.saturating_sub(1)).unwrap_or(0).min(11)];
    format!(
        "{weekday}, {d:02} {month} {y} {:02}:{:02}:{:02} GMT",
        secs / 3_600,
        secs % 3_600 / 60,
        secs % 60
    )
}

/// One caller of a deprecated route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Caller {
    pub identity: String,
    pub requests: u64,
    /// Nanoseconds since the Unix epoch.
    pub last_seen: i64,
}

/// A route's callers: identity → (requests, last seen, ns).
type Callers = HashMap<String, (u64, i64)>;

/// Who calls deprecated routes, per route.
#[derive(Debug, Default)]
pub struct DeprecatedCalls {
    routes: Mutex<HashMap<String, Callers>>,
}

impl DeprecatedCalls {
    /// `identity` called deprecated `route` at `ts` (ns).
    pub fn record(&self, route: &str, identity: &str, ts: i64) {
        let mut routes = self.routes.lock();
        let callers = routes.entry(route.to_string()).or_default();
        if let Some(c) = callers.get_mut(identity) {
            c.0 = c.0.saturating_add(1);
            c.1 = c.1.max(ts);
            return;
        }
        if callers.len() >= MAX_CALLERS
            && let Some(oldest) = callers
                .iter()
                .min_by_key(|(_, c)| c.1)
                .map(|(k, _)| k.clone())
        {
            callers.remove(&oldest);
        }
        callers.insert(identity.to_string(), (1, ts));
    }

    /// The callers of `route`, most recently seen first.
    pub fn callers(&self, route: &str) -> Vec<Caller> {
        let routes = self.routes.lock();
        let mut v: Vec<Caller> = routes
            .get(route)
            .map(|m| {
                m.iter()
                    .map(|(id, (n, ts))| Caller {
                        identity: id.clone(),
                        requests: *n,
                        last_seen: *ts,
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by(|a, b| {
            b.last_seen
                .cmp(&a.last_seen)
                .then(a.identity.cmp(&b.identity))
        });
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_are_imf_fixdate() {
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(1_893_456_000), "Tue, 01 Jan 2030 00:00:00 GMT");
    }

    #[test]
    fn callers_are_bounded_and_newest_first() {
        let calls = DeprecatedCalls::default();
        for i in 0..(MAX_CALLERS as i64 + 5) {
            calls.record("v1", &format!("dev-{i}"), i);
        }
        calls.record("v1", "dev-9", 1_000_000);
        let list = calls.callers("v1");
        assert_eq!(list.len(), MAX_CALLERS);
        assert_eq!((list[0].identity.as_str(), list[0].requests), ("dev-9", 2));
        assert!(
            !list.iter().any(|c| c.identity == "dev-0"),
            "oldest dropped"
        );
        assert!(calls.callers("v2").is_empty());
    }
}
