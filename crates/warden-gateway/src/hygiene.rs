//! Request-head hygiene: what a backend could read differently from the gateway is refused
//! (400) before identity and RBAC, and what the gateway consumed never reaches the upstream.
//!
//! - **Methods** are case-sensitive tokens (RFC 9110 §9.1): `delete` is not `DELETE` to the
//!   gateway's RBAC, but some frameworks upper-case it. Only methods written in upper case
//!   (letters and `-`) are accepted; `delete`, `Delete`, `get` get 400.
//! - **Host**: an HTTP/1.1 request without exactly one valid `Host` gets 400 (RFC 9112 §3.2);
//!   an HTTP/2 request needs `:authority` or one `Host`.
//! - **Header names with `_`** are refused unless the route allows them: CGI/WSGI backends
//!   read `X_Warden_Identity` as `X-Warden-Identity`.
//! - **Method overrides** (`X-HTTP-Method-Override`, `X-Method-Override`, `X-HTTP-Method`,
//!   `?_method=`) are refused, or authorized like the real method
//!   ([`MethodOverride::Authorize`]).
//! - **Before proxying** every credential the gateway reads (`X-Api-Key`, `Authorization`) is
//!   removed — a bearer token stays only on routes with `forward_bearer` — and so is every
//!   variant (any case, `_` for `-`) of the gateway's own headers.

use axum::http::uri::Authority;
use axum::http::{HeaderMap, HeaderName, Method, Request, Version, header};
use warden_config::MethodOverride;

use crate::Reject;
use crate::routes::Route;

/// Header names (lower case, `-`) that ask a backend to run another method.
const OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-method-override",
    "x-http-method",
];

/// Header names the gateway sets or consumes, besides the `x-warden-` family.
const OWNED: [&str; 4] = [
    "x-api-key",
    "x-request-id",
    "x-forwarded-for",
    "authorization",
];

/// Refuse a method that is not an upper-case token.
pub fn check_method(method: &Method) -> Result<(), Reject> {
    let s = method.as_str();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase() || b == b'-') {
        Ok(())
    } else {
        Err(Reject::BadMethod)
    }
}

/// Exactly one valid `Host` on HTTP/1.1; `:authority` or one valid `Host` on HTTP/2.
pub fn check_host<B>(req: &Request<B>) -> Result<(), Reject> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let (first, second) = (hosts.next(), hosts.next());
    if second.is_some() {
        return Err(Reject::BadHost);
    }
    match first {
        Some(v) => {
            let valid = v
                .to_str()
                .ok()
                .is_some_and(|s| !s.is_empty() && s.parse::<Authority>().is_ok());
            if valid { Ok(()) } else { Err(Reject::BadHost) }
        }
        None if req.version() == Version::HTTP_2 && req.uri().authority().is_some() => Ok(()),
        None if req.version() == Version::HTTP_10 || req.version() == Version::HTTP_09 => Ok(()),
        None => Err(Reject::BadHost),
    }
}

/// A header name as a CGI/WSGI backend reads it: lower case, `_` as `-`.
fn cgi_name(name: &HeaderName) -> std::borrow::Cow<'_, str> {
    let s = name.as_str();
    if s.contains('_') {
        std::borrow::Cow::Owned(s.replace('_', "-"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// Header names with `_`, refused unless `route` allows them.
pub fn check_header_names(headers: &HeaderMap, route: &Route) -> Result<(), Reject> {
    if route.allow_underscore_headers || !headers.keys().any(|k| k.as_str().contains('_')) {
        Ok(())
    } else {
        Err(Reject::BadHeader)
    }
}

/// The method a request asks the backend to run instead of its own, if any: `Ok(None)` when
/// there is no override; [`Reject::MethodOverride`] when overrides are refused, malformed,
/// or disagree with each other.
pub fn method_override(
    headers: &HeaderMap,
    query: Option<&str>,
    mode: MethodOverride,
) -> Result<Option<Method>, Reject> {
    let mut asked: Vec<&[u8]> = headers
        .iter()
        .filter(|(k, _)| OVERRIDE_HEADERS.contains(&cgi_name(k).as_ref()))
        .map(|(_, v)| v.as_bytes())
        .collect();
    let mut from_query = Vec::new();
    for pair in query.unwrap_or("").split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if is_method_param(name) {
            from_query.push(value);
        }
    }
    asked.extend(from_query.iter().map(|v| v.as_bytes()));
    let Some(first) = asked.first() else {
        return Ok(None);
    };
    if mode == MethodOverride::Refuse || asked.iter().any(|v| v != first) {
        return Err(Reject::MethodOverride);
    }
    let m = Method::from_bytes(first).map_err(|_| Reject::MethodOverride)?;
    check_method(&m).map_err(|_| Reject::MethodOverride)?;
    Ok(Some(m))
}

/// `_method` in any case, with any of its bytes percent-encoded.
fn is_method_param(name: &str) -> bool {
    if !name.contains('%') {
        return name.eq_ignore_ascii_case("_method");
    }
    let b = name.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out.eq_ignore_ascii_case(b"_method")
}

/// Remove what the upstream must not see: consumed credentials (a bearer token stays where
/// the route forwards it) and client-sent variants of the gateway's own headers.
pub fn strip_for_upstream(headers: &mut HeaderMap, route: &Route) {
    let keep_bearer = route.forward_bearer
        && headers.get_all(header::AUTHORIZATION).iter().count() == 1
        && headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"));
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| {
            let n = cgi_name(k);
            if n == "authorization" && k.as_str() == "authorization" && keep_bearer {
                return false;
            }
            n.starts_with("x-warden-") || OWNED.contains(&n.as_ref())
        })
        .cloned()
        .collect();
    for k in doomed {
        headers.remove(k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                h.append(k, v);
            }
        }
        h
    }

    #[test]
    fn methods_must_be_upper_case_tokens() {
        for ok in ["GET", "DELETE", "PROPFIND", "VERSION-CONTROL"] {
            let m = Method::from_bytes(ok.as_bytes()).expect("token");
            assert_eq!(check_method(&m), Ok(()), "{ok}");
        }
        for bad in ["delete", "Delete", "gEt", "GET1", "X_Y"] {
            let m = Method::from_bytes(bad.as_bytes()).expect("token");
            assert_eq!(check_method(&m), Err(Reject::BadMethod), "{bad}");
        }
    }

    #[test]
    fn host_rules() {
        let req = |v: Version, hosts: &[&str], uri: &str| {
            let mut b = Request::builder().version(v).uri(uri);
            for h in hosts {
                b = b.header("host", *h);
            }
            b.body(()).expect("request")
        };
        assert_eq!(check_host(&req(Version::HTTP_11, &["gw"], "/")), Ok(()));
        assert_eq!(check_host(&req(Version::HTTP_11, &["gw:80"], "/")), Ok(()));
        assert_eq!(
            check_host(&req(Version::HTTP_11, &[], "/")),
            Err(Reject::BadHost)
        );
        assert_eq!(
            check_host(&req(Version::HTTP_11, &["a", "b"], "/")),
            Err(Reject::BadHost)
        );
        assert_eq!(
            check_host(&req(Version::HTTP_11, &["a b"], "/")),
            Err(Reject::BadHost)
        );
        assert_eq!(check_host(&req(Version::HTTP_10, &[], "/")), Ok(()));
        assert_eq!(check_host(&req(Version::HTTP_2, &[], "http://gw/")), Ok(()));
        assert_eq!(
            check_host(&req(Version::HTTP_2, &[], "/")),
            Err(Reject::BadHost)
        );
    }

    #[test]
    fn overrides_refused_or_authorized() {
        use MethodOverride::*;
        let none = headers(&[("x-other", "1")]);
        assert_eq!(method_override(&none, Some("a=1"), Refuse), Ok(None));
        for (h, q) in [
            (headers(&[("x-http-method-override", "DELETE")]), None),
            (headers(&[("X-Method-Override", "DELETE")]), None),
            (headers(&[("x-http-method", "DELETE")]), None),
            (headers(&[("x_http_method_override", "DELETE")]), None),
            (none.clone(), Some("a=1&_method=DELETE")),
            (none.clone(), Some("_METHOD=DELETE")),
            (none.clone(), Some("%5Fmethod=DELETE")),
            (none.clone(), Some("%5f%6Dethod=DELETE")),
        ] {
            assert_eq!(
                method_override(&h, q, Refuse),
                Err(Reject::MethodOverride),
                "{h:?} {q:?}"
            );
            assert_eq!(
                method_override(&h, q, Authorize),
                Ok(Some(Method::DELETE)),
                "{h:?} {q:?}"
            );
        }
        let conflict = headers(&[("x-http-method-override", "GET")]);
        assert_eq!(
            method_override(&conflict, Some("_method=DELETE"), Authorize),
            Err(Reject::MethodOverride)
        );
        let lower = headers(&[("x-http-method-override", "delete")]);
        assert_eq!(
            method_override(&lower, None, Authorize),
            Err(Reject::MethodOverride)
        );
    }

    fn route(forward_bearer: bool) -> Route {
        let c = warden_config::RouteConfig {
            name: "r".into(),
            prefix: "/".into(),
            upstream: "http://up:1".into(),
            upstream_tls: None,
            deprecation: None,
            resilience: Default::default(),
            timeout_ms: 1000,
            strip_prefix: false,
            auth: warden_config::RouteAuth::Required,
            methods: vec![],
            require_mtls: false,
            forward_bearer,
            allow_underscore_headers: false,
        };
        crate::routes::RouteTable::new(&[c])
            .find("/")
            .cloned()
            .expect("route")
    }

    #[test]
    fn credentials_and_owned_variants_are_stripped() {
        let sent = [
            ("x-api-key", "k"),
            ("authorization", "Bearer t"),
            ("X_Warden_Identity", "admin"),
            ("x-warden-tenant", "evil"),
            ("X_Api_Key", "k"),
            ("x_request_id", "r"),
            ("accept", "*/*"),
        ];
        let mut h = headers(&sent);
        strip_for_upstream(&mut h, &route(false));
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["accept"]);
        let mut h = headers(&sent);
        strip_for_upstream(&mut h, &route(true));
        assert_eq!(
            h.get("authorization").map(|v| v.as_bytes()),
            Some(&b"Bearer t"[..]),
            "forwarded where the route says so"
        );
        let mut h = headers(&[("authorization", "ApiKey k")]);
        strip_for_upstream(&mut h, &route(true));
        assert!(h.is_empty(), "an API key is never forwarded");
    }
}
