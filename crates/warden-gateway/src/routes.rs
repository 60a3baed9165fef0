//! Route table: longest whole-segment prefix wins.

use std::time::Duration;

use axum::http::uri::Authority;
use axum::http::{HeaderValue, Method, Uri};
use warden_config::{RouteAuth, RouteConfig};

/// A compiled route.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    prefix: String,
    upstream: Uri,
    /// The upstream's `host:port`, and the same as a `Host` header value.
    authority: Authority,
    host: HeaderValue,
    pub timeout: Duration,
    strip_prefix: bool,
    pub auth: RouteAuth,
    methods: Vec<Method>,
    /// Forward a bearer token to the upstream.
    pub forward_bearer: bool,
    /// Accept header names with `_`.
    pub allow_underscore_headers: bool,
    /// TLS to an `https://` upstream.
    pub tls: Option<std::sync::Arc<crate::upstream_tls::UpstreamTls>>,
    /// Version, deprecation and sunset.
    pub deprecation: Option<crate::deprecation::Deprecation>,
    /// Extra attempts for requests that can be sent again.
    pub retries: u32,
    /// Passive health of the upstream (ejection after consecutive failures) and the verdict
    /// of its active health checks.
    pub health: std::sync::Arc<crate::health::UpstreamHealth>,
    /// Active health checks of the upstream, when configured.
    pub probe: Option<crate::health::Probe>,
    /// The settings `health` depends on: a reload keeps the state while they are unchanged.
    resilience: warden_config::RouteResilience,
}

impl Route {
    pub fn allows(&self, method: &Method) -> bool {
        self.methods.is_empty() || self.methods.contains(method)
    }

    /// The request target to send upstream (origin form: path and query) for `path`, which
    /// starts with this route's prefix.
    pub fn upstream_target(&self, path: &str, query: Option<&str>) -> Option<Uri> {
        let rest = if self.strip_prefix {
            path.get(self.prefix.len().min(path.len())..).unwrap_or("")
        } else {
            path
        };
        let base = self.upstream.path().trim_end_matches('/');
        // One allocation: the string becomes the URI's bytes without a copy.
        let mut pq =
            String::with_capacity(base.len() + 1 + rest.len() + query.map_or(0, |q| q.len() + 1));
        pq.push_str(base);
        if !rest.starts_with('/') {
            pq.push('/');
        }
        pq.push_str(rest);
        if let Some(q) = query {
            pq.push('?');
            pq.push_str(q);
        }
        Uri::builder().path_and_query(pq).build().ok()
    }

    /// The upstream's `host:port`.
    pub fn upstream_authority(&self) -> &Authority {
        &self.authority
    }

    /// The `Host` header for the upstream.
    pub fn upstream_host(&self) -> &HeaderValue {
        &self.host
    }
}

/// Routes sorted by descending prefix length.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// Compile validated route configs (invalid ones were refused by config validation).
    pub fn new(configs: &[RouteConfig]) -> Self {
        let mut routes: Vec<Route> = configs
            .iter()
            .filter_map(|c| {
                let upstream: Uri = c.upstream.parse().ok()?;
                let authority = upstream.authority()?.clone();
                // `host[:port]` only (config validation refuses `user@` in upstreams).
                let host = match authority.port() {
                    Some(port) => format!("{}:{port}", authority.host()),
                    None => authority.host().to_string(),
                };
                let host = HeaderValue::from_str(&host).ok()?;
                let tls = if upstream.scheme_str() == Some("https") {
                    Some(std::sync::Arc::new(crate::upstream_tls::UpstreamTls::new(
                        authority.host(),
                        c.upstream_tls.as_ref(),
                    )?))
                } else {
                    None
                };
                let base = upstream.path().trim_end_matches('/').to_string();
                let probe = c
                    .resilience
                    .health_check
                    .as_ref()
                    .and_then(|h| crate::health::Probe::new(h, &base));
                Some(Route {
                    resilience: c.resilience.clone(),
                    probe,
                    tls,
                    retries: c.resilience.retries,
                    health: std::sync::Arc::new(crate::health::UpstreamHealth::new(
                        c.resilience.eject_after_failures,
                        Duration::from_millis(c.resilience.eject_for_ms),
                    )),
                    deprecation: c
                        .deprecation
                        .as_ref()
                        .and_then(crate::deprecation::Deprecation::of),
                    name: c.name.clone(),
                    prefix: c.prefix.trim_end_matches('/').to_string(),
                    upstream,
                    authority,
                    host,
                    timeout: Duration::from_millis(c.timeout_ms),
                    strip_prefix: c.strip_prefix,
                    auth: c.auth,
                    methods: c
                        .methods
                        .iter()
                        .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
                        .collect(),
                    forward_bearer: c.forward_bearer,
                    allow_underscore_headers: c.allow_underscore_headers,
                })
            })
            .collect();
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        Self { routes }
    }

    /// Compile `configs` like [`RouteTable::new`], keeping `previous`'s upstream health for
    /// each route of the same name, upstream and resilience settings (a key change through
    /// the admin API does not mark a down upstream up again).
    pub fn carry_over(configs: &[RouteConfig], previous: &RouteTable) -> Self {
        let mut table = Self::new(configs);
        for r in &mut table.routes {
            if let Some(old) = previous.routes.iter().find(|o| {
                o.name == r.name && o.upstream == r.upstream && o.resilience == r.resilience
            }) {
                r.health = old.health.clone();
            }
        }
        table
    }

    /// Every route, longest prefix first.
    pub fn all(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }

    /// The route serving `path`: its prefix equals the path or is followed by `/` in it.
    pub fn find(&self, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| {
            r.prefix.is_empty()
                || path == r.prefix
                || (path.starts_with(&r.prefix)
                    && path.as_bytes().get(r.prefix.len()) == Some(&b'/'))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, prefix: &str, upstream: &str, strip: bool) -> RouteConfig {
        RouteConfig {
            name: name.into(),
            prefix: prefix.into(),
            upstream: upstream.into(),
            upstream_tls: None,
            deprecation: None,
            resilience: Default::default(),
            timeout_ms: 1000,
            strip_prefix: strip,
            auth: RouteAuth::ApiKey,
            methods: vec![],
            require_mtls: false,
            forward_bearer: false,
            allow_underscore_headers: false,
        }
    }

    #[test]
    fn longest_whole_segment_prefix_wins() {
        let t = RouteTable::new(&[
            route("api", "/api", "http://a:1", false),
            route("admin", "/api/admin", "http://b:2", false),
        ]);
        assert_eq!(t.find("/api/x").map(|r| r.name.as_str()), Some("api"));
        assert_eq!(
            t.find("/api/admin/x").map(|r| r.name.as_str()),
            Some("admin")
        );
        assert_eq!(t.find("/api").map(|r| r.name.as_str()), Some("api"));
        assert!(t.find("/apix").is_none(), "prefix must end on a segment");
        assert!(t.find("/other").is_none());
    }

    #[test]
    fn upstream_target_joins_base_and_strips() {
        let t = RouteTable::new(&[route("api", "/api/", "http://up:9/base/", true)]);
        let r = t.find("/api/v1/x").expect("route");
        assert_eq!(
            r.upstream_target("/api/v1/x", Some("a=1"))
                .expect("uri")
                .to_string(),
            "/base/v1/x?a=1"
        );
        assert_eq!(r.upstream_authority().as_str(), "up:9");
        assert_eq!(r.upstream_host(), "up:9");
        let keep = RouteTable::new(&[route("api", "/api", "http://up:9", false)]);
        let r = keep.find("/api/v1").expect("route");
        assert_eq!(
            r.upstream_target("/api/v1", None).expect("uri").to_string(),
            "/api/v1"
        );
    }

    #[test]
    fn a_reload_keeps_the_upstream_health_of_unchanged_routes() {
        let old = RouteTable::new(&[
            route("api", "/api", "http://a:1", false),
            route("other", "/other", "http://b:2", false),
        ]);
        let new = RouteTable::carry_over(
            &[
                route("api", "/api", "http://a:1", false),
                route("other", "/other", "http://b:3", false),
            ],
            &old,
        );
        let health = |t: &RouteTable, p: &str| t.find(p).expect("route").health.clone();
        assert!(std::sync::Arc::ptr_eq(
            &health(&old, "/api"),
            &health(&new, "/api")
        ));
        assert!(
            !std::sync::Arc::ptr_eq(&health(&old, "/other"), &health(&new, "/other")),
            "another upstream starts afresh"
        );
    }
}
