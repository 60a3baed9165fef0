//! The identity phase: every request gets exactly one identity, or is refused.
//!
//! Credentials: a verified client certificate on the connection (mTLS), and at most one header
//! credential — an API key (`X-Api-Key` or `Authorization: ApiKey …`) or a bearer JWT
//! (`Authorization: Bearer …`). Sending both header forms is ambiguous and refused. When a
//! client certificate and a header credential are both presented they must name the same
//! identity. The identity is then admitted by the device registry (status, allowed credential
//! kinds), which also supplies its tenant, device type and roles.
//!
//! Route requirements: `auth = "required"` any credential, `"api_key"` / `"jwt"` that kind in
//! the header, `"none"` nothing (offered credentials are still checked), and
//! `require_mtls = true` a verified client certificate in addition.

pub(crate) mod api_key;
pub(crate) mod cert;
pub(crate) mod jwks;
pub(crate) mod jwt;
pub(crate) mod watch;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, header};
use tracing::{debug, warn};
use warden_config::{CredentialKind, RouteAuth, WardenConfig};
use warden_event::{AuthInfo, AuthMethod, AuthResult};

use crate::Reject;
use crate::live::LiveState;
use crate::registry::{Admission, Registry};
use crate::routes::Route;
use crate::tls::{TlsConn, TlsRuntime, TlsStats};
use jwks::Jwks;
use jwt::JwtVerifier;
pub use watch::ReloadReport;
use watch::{Reloader, Stamps};

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub identity: String,
    pub tenant: String,
    pub device_type: String,
    pub roles: Vec<String>,
    /// How it authenticated: the header credential's kind, or `client_cert` when the
    /// certificate was the only credential or the route requires mTLS.
    pub method: AuthMethod,
    /// Id of the API key used, if any.
    pub key_id: Option<String>,
    /// SHA-256 (hex) of the verified client certificate, if any.
    pub cert_fingerprint: Option<String>,
}

/// A refused identity: what goes in the event and what the client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Denied {
    pub auth: AuthInfo,
    pub reject: Reject,
    /// For the log only.
    pub reason: String,
}

fn denied(
    method: AuthMethod,
    result: AuthResult,
    reject: Reject,
    reason: impl Into<String>,
) -> Denied {
    Denied {
        auth: AuthInfo { method, result },
        reject,
        reason: reason.into(),
    }
}

fn failed(method: AuthMethod, reason: impl Into<String>) -> Denied {
    denied(method, AuthResult::Failed, Reject::BadCredentials, reason)
}

/// Credentials read from the headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeaderCredential {
    None,
    /// Present but unreadable, of an unknown scheme, repeated, or both header forms at once.
    Malformed,
    ApiKey(String),
    Bearer(String),
}

/// Read the header credential.
pub(crate) fn header_credential(headers: &HeaderMap) -> HeaderCredential {
    let mut keys = headers.get_all("x-api-key").iter();
    let mut auths = headers.get_all(header::AUTHORIZATION).iter();
    let (key, auth) = (keys.next(), auths.next());
    if keys.next().is_some() || auths.next().is_some() || (key.is_some() && auth.is_some()) {
        return HeaderCredential::Malformed;
    }
    let token = |s: &str| {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic())).then(|| s.to_owned())
    };
    if let Some(v) = key {
        return match v.to_str().ok().and_then(token) {
            Some(k) => HeaderCredential::ApiKey(k),
            None => HeaderCredential::Malformed,
        };
    }
    let Some(v) = auth else {
        return HeaderCredential::None;
    };
    let Some((scheme, rest)) = v.to_str().ok().and_then(|v| v.split_once(' ')) else {
        return HeaderCredential::Malformed;
    };
    match (scheme, token(rest)) {
        (s, Some(k)) if s.eq_ignore_ascii_case("apikey") => HeaderCredential::ApiKey(k),
        (s, Some(t)) if s.eq_ignore_ascii_case("bearer") => HeaderCredential::Bearer(t),
        _ => HeaderCredential::Malformed,
    }
}

/// An identity claimed by one credential, before the registry.
struct Claimed {
    identity: String,
    tenant: String,
    device_type: String,
    roles: Vec<String>,
    kind: CredentialKind,
    key_id: Option<String>,
}

fn method_of(kind: CredentialKind) -> AuthMethod {
    match kind {
        CredentialKind::ApiKey => AuthMethod::ApiKey,
        CredentialKind::Jwt => AuthMethod::Jwt,
        CredentialKind::ClientCert => AuthMethod::ClientCert,
    }
}

/// The identity phase and everything it reloads.
pub(crate) struct Authenticator {
    jwt: Option<JwtVerifier>,
    registry: Option<Arc<Registry>>,
    tls: Option<Arc<TlsRuntime>>,
}

/// Reload and inspect a running gateway's identity sources.
#[derive(Clone)]
pub struct IdentityHandle {
    reloader: Arc<Reloader>,
    tls: Option<Arc<TlsRuntime>>,
    jwks: Option<Arc<Jwks>>,
    registry: Option<Arc<Registry>>,
}

impl IdentityHandle {
    /// Reload every component whose files changed, now (the background check does the same
    /// every `identity.reload_interval_ms`).
    pub async fn reload_now(&self) -> ReloadReport {
        let r = self.reloader.clone();
        tokio::task::spawn_blocking(move || r.check(false))
            .await
            .unwrap_or_default()
    }

    /// Fetch the JWKS URL now.
    pub async fn refresh_jwks(&self) -> Result<usize, String> {
        match &self.jwks {
            Some(j) => j.refresh().await,
            None => Err("no JWKS URL configured".into()),
        }
    }

    /// Times the JWKS URL was fetched.
    pub fn jwks_fetches(&self) -> u64 {
        self.jwks.as_ref().map_or(0, |j| j.fetches())
    }

    /// TLS listener counters (when TLS is configured).
    pub fn tls_stats(&self) -> Option<Arc<TlsStats>> {
        self.tls.as_ref().map(|t| t.stats().clone())
    }

    /// Registered identities (when a registry is configured).
    pub fn registry_len(&self) -> Option<usize> {
        self.registry.as_ref().map(|r| r.len())
    }
}

/// What [`Authenticator::start`] starts.
pub(crate) struct Started {
    pub authenticator: Authenticator,
    pub handle: IdentityHandle,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Authenticator {
    /// Load every identity source of `config` and start watching their files. Every problem is
    /// returned (the gateway does not start with a broken identity setup).
    pub async fn start(config: &WardenConfig) -> Result<Started, Vec<String>> {
        let mut problems = Vec::new();
        let mut reloader = Reloader::default();
        let mut tasks = Vec::new();

        let registry = match &config.identity.registry {
            Some(rc) => {
                let files = vec![rc.file.clone()];
                let stamps = Stamps::take(&files);
                match Registry::load(rc) {
                    Ok(r) => {
                        let r = Arc::new(r);
                        let w = r.clone();
                        reloader.watch("registry", files, stamps, Box::new(move || w.reload()));
                        Some(r)
                    }
                    Err(e) => {
                        problems.extend(e);
                        None
                    }
                }
            }
            None => None,
        };

        let tls = match &config.gateway.tls {
            Some(tc) => {
                let mut files = vec![tc.cert_file.clone(), tc.key_file.clone()];
                if let Some(ca) = &tc.client_auth {
                    files.extend(ca.ca_files.iter().cloned());
                    files.extend(ca.crl_files.iter().cloned());
                }
                let stamps = Stamps::take(&files);
                let deny_files: Vec<_> = tc
                    .client_auth
                    .as_ref()
                    .and_then(|c| c.deny_fingerprints_file.clone())
                    .into_iter()
                    .collect();
                let deny_stamps = Stamps::take(&deny_files);
                match TlsRuntime::new(tc) {
                    Ok(t) => {
                        let t = Arc::new(t);
                        let w = t.clone();
                        reloader.watch("tls", files, stamps, Box::new(move || w.reload()));
                        if let Some(f) = t.deny_file() {
                            let d = t.deny_list().clone();
                            reloader.watch(
                                "deny_fingerprints",
                                vec![f],
                                deny_stamps,
                                Box::new(move || d.reload()),
                            );
                        }
                        Some(t)
                    }
                    Err(e) => {
                        problems.extend(e);
                        None
                    }
                }
            }
            None => None,
        };

        let mut jwks_handle = None;
        let jwt = match &config.identity.jwt {
            Some(jc) => {
                let secret = match &jc.hs256_secret_file {
                    Some(f) => match std::fs::read(f) {
                        Ok(b) => Some(warden_config::trim_secret(&b).to_vec()),
                        Err(e) => {
                            problems.push(format!("cannot read `{}`: {e}", f.display()));
                            None
                        }
                    },
                    None => None,
                };
                let jwks = if let Some(f) = &jc.jwks_file {
                    let files = vec![f.clone()];
                    let stamps = Stamps::take(&files);
                    match Jwks::from_file(f.clone()) {
                        Ok(j) => {
                            let j = Arc::new(j);
                            let w = j.clone();
                            reloader.watch(
                                "jwks",
                                files,
                                stamps,
                                Box::new(move || w.reload_file()),
                            );
                            Some(j)
                        }
                        Err(e) => {
                            problems.push(e);
                            None
                        }
                    }
                } else if let Some(url) = &jc.jwks_url {
                    let ca = match &jc.jwks_ca_file {
                        Some(f) => match std::fs::read(f) {
                            Ok(b) => Some(b),
                            Err(e) => {
                                problems.push(format!("cannot read `{}`: {e}", f.display()));
                                None
                            }
                        },
                        None => None,
                    };
                    match jwks::https_client(ca.as_deref()) {
                        Ok(client) => {
                            let j = Arc::new(Jwks::from_url(
                                url.clone(),
                                client,
                                Duration::from_millis(jc.jwks_fetch_timeout_ms),
                                Duration::from_millis(jc.jwks_min_refetch_ms),
                            ));
                            if let Err(e) = j.refresh().await {
                                warn!(%url, error = %e, "JWKS not available at start; bearer tokens fail until it is.");
                            }
                            tasks.push(refresh_task(
                                j.clone(),
                                Duration::from_millis(jc.jwks_refresh_ms),
                            ));
                            jwks_handle = Some(j.clone());
                            Some(j)
                        }
                        Err(e) => {
                            problems.push(e);
                            None
                        }
                    }
                } else {
                    None
                };
                Some(JwtVerifier::new(jc, jwks, secret.as_deref()))
            }
            None => None,
        };

        if !problems.is_empty() {
            for t in &tasks {
                t.abort();
            }
            return Err(problems);
        }
        let reloader = Arc::new(reloader);
        if !reloader.is_empty() {
            tasks.push(
                reloader
                    .clone()
                    .spawn(Duration::from_millis(config.identity.reload_interval_ms)),
            );
        }
        Ok(Started {
            authenticator: Self {
                jwt,
                registry: registry.clone(),
                tls: tls.clone(),
            },
            handle: IdentityHandle {
                reloader,
                tls,
                jwks: jwks_handle,
                registry,
            },
            tasks,
        })
    }

    /// The TLS runtime, when a TLS listener is configured.
    pub fn tls(&self) -> Option<&Arc<TlsRuntime>> {
        self.tls.as_ref()
    }

    /// Identify a request to `route` at `now_ns` (nanoseconds since the epoch), with the API
    /// keys and mTLS routes of the request's `live` snapshot. `Ok(None)`: an anonymous request
    /// on a route that allows it.
    pub async fn authenticate(
        &self,
        live: &LiveState,
        headers: &HeaderMap,
        conn: Option<&TlsConn>,
        route: &Route,
        now_ns: i64,
    ) -> Result<(Option<Principal>, AuthInfo), Denied> {
        self.authenticate_for(live, headers, conn, &route.name, route.auth, now_ns)
            .await
    }

    /// Who the presented credentials name, for a request refused before its route was known
    /// (a refused path, no route, a method the route does not allow): any credential the
    /// gateway accepts anywhere is checked, so the event is attributed, and nothing of the
    /// outcome reaches the client. `None` when no valid credential was presented.
    pub async fn attribute(
        &self,
        live: &LiveState,
        headers: &HeaderMap,
        conn: Option<&TlsConn>,
        now_ns: i64,
    ) -> (Option<Principal>, AuthInfo) {
        match self
            .authenticate_for(live, headers, conn, "", RouteAuth::None, now_ns)
            .await
        {
            Ok(found) => found,
            Err(denied) => (None, denied.auth),
        }
    }

    async fn authenticate_for(
        &self,
        live: &LiveState,
        headers: &HeaderMap,
        conn: Option<&TlsConn>,
        route_name: &str,
        route_auth: RouteAuth,
        now_ns: i64,
    ) -> Result<(Option<Principal>, AuthInfo), Denied> {
        let now = now_ns.div_euclid(1_000_000_000);
        let require_mtls = live.mtls_routes.contains(route_name);

        // The client certificate, re-checked for this request.
        let peer = conn.and_then(|c| c.0.peer.as_ref().map(|p| (c, p)));
        let cert = match (peer, &self.tls) {
            (Some((c, p)), Some(tls)) => match tls.check_peer(&c.0, now) {
                Ok(id) => Some((id, p.fingerprint_hex.clone())),
                Err(problem) => return Err(failed(AuthMethod::ClientCert, problem.to_string())),
            },
            _ => None,
        };
        if require_mtls && cert.is_none() {
            return Err(denied(
                AuthMethod::ClientCert,
                AuthResult::Missing,
                Reject::MissingCredentials,
                "route requires a client certificate",
            ));
        }

        let header = header_credential(headers);
        match (route_auth, &header) {
            (auth, HeaderCredential::Malformed) => {
                let reject = if auth == RouteAuth::None {
                    Reject::BadHeader
                } else {
                    Reject::BadCredentials
                };
                return Err(denied(
                    AuthMethod::ApiKey,
                    AuthResult::Failed,
                    reject,
                    "malformed credential header",
                ));
            }
            (RouteAuth::ApiKey, HeaderCredential::Bearer(_)) => {
                return Err(failed(AuthMethod::Jwt, "route accepts API keys only"));
            }
            (RouteAuth::Jwt, HeaderCredential::ApiKey(_)) => {
                return Err(failed(
                    AuthMethod::ApiKey,
                    "route accepts bearer tokens only",
                ));
            }
            (RouteAuth::ApiKey, HeaderCredential::None) => {
                return Err(denied(
                    AuthMethod::ApiKey,
                    AuthResult::Missing,
                    Reject::MissingCredentials,
                    "no API key",
                ));
            }
            (RouteAuth::Jwt, HeaderCredential::None) => {
                return Err(denied(
                    AuthMethod::Jwt,
                    AuthResult::Missing,
                    Reject::MissingCredentials,
                    "no bearer token",
                ));
            }
            (RouteAuth::Required, HeaderCredential::None) if cert.is_none() => {
                return Err(denied(
                    AuthMethod::None,
                    AuthResult::Missing,
                    Reject::MissingCredentials,
                    "no credentials",
                ));
            }
            (RouteAuth::None, HeaderCredential::None) if cert.is_none() => {
                return Ok((
                    None,
                    AuthInfo {
                        method: AuthMethod::None,
                        result: AuthResult::NotRequired,
                    },
                ));
            }
            _ => {}
        }

        let claimed = match header {
            HeaderCredential::ApiKey(k) => match live.keys.authenticate(&k, now) {
                Ok(e) => Some(Claimed {
                    identity: e.identity.clone(),
                    tenant: e.tenant.clone(),
                    device_type: e.device_type.clone(),
                    roles: e.roles.clone(),
                    kind: CredentialKind::ApiKey,
                    key_id: Some(e.id.clone()),
                }),
                Err(e) => return Err(failed(AuthMethod::ApiKey, e.to_string())),
            },
            HeaderCredential::Bearer(t) => {
                let Some(jwt) = &self.jwt else {
                    return Err(failed(AuthMethod::Jwt, "bearer tokens are not configured"));
                };
                match jwt.verify(&t, now).await {
                    Ok(j) => Some(Claimed {
                        identity: j.identity,
                        tenant: j.tenant,
                        device_type: j.device_type,
                        roles: j.roles,
                        kind: CredentialKind::Jwt,
                        key_id: None,
                    }),
                    Err(e) => return Err(failed(AuthMethod::Jwt, e.to_string())),
                }
            }
            HeaderCredential::None | HeaderCredential::Malformed => None,
        };

        let (mut claimed, fingerprint) = match (claimed, cert) {
            (Some(h), Some((cert_id, fp))) => {
                if h.identity != cert_id {
                    return Err(failed(
                        method_of(h.kind),
                        "client certificate and header credential name different identities",
                    ));
                }
                (h, Some(fp))
            }
            (Some(h), None) => (h, None),
            (None, Some((cert_id, fp))) => (
                Claimed {
                    identity: cert_id,
                    tenant: String::new(),
                    device_type: String::new(),
                    roles: vec![],
                    kind: CredentialKind::ClientCert,
                    key_id: None,
                },
                Some(fp),
            ),
            (None, None) => return Err(failed(AuthMethod::None, "no credentials")),
        };

        // Every credential presented must be allowed for the identity; registry attributes win.
        if let Some(registry) = &self.registry {
            let mut kinds = vec![claimed.kind];
            if fingerprint.is_some() && claimed.kind != CredentialKind::ClientCert {
                kinds.push(CredentialKind::ClientCert);
            }
            for kind in kinds {
                match registry.admit(&claimed.identity, kind) {
                    Admission::Registered(e) => {
                        claimed.tenant = e.tenant.clone();
                        claimed.device_type = e.device_type.clone();
                        claimed.roles = e.roles.clone();
                    }
                    Admission::Unregistered => {}
                    Admission::Refused(why) => {
                        debug!(identity = %claimed.identity, why, "Registry refused the identity.");
                        return Err(failed(method_of(kind), why));
                    }
                }
            }
        }

        let method = if require_mtls || claimed.kind == CredentialKind::ClientCert {
            AuthMethod::ClientCert
        } else {
            method_of(claimed.kind)
        };
        Ok((
            Some(Principal {
                identity: claimed.identity,
                tenant: claimed.tenant,
                device_type: claimed.device_type,
                roles: claimed.roles,
                method,
                key_id: claimed.key_id,
                cert_fingerprint: fingerprint,
            }),
            AuthInfo {
                method,
                result: AuthResult::Ok,
            },
        ))
    }
}

fn refresh_task(jwks: Arc<Jwks>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let _ = jwks.refresh().await;
        }
    })
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_bytes(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn reads_every_header_form_and_refuses_ambiguity() {
        use HeaderCredential as C;
        assert_eq!(
            header_credential(&headers(&[("x-api-key", b"k1")])),
            C::ApiKey("k1".into())
        );
        assert_eq!(
            header_credential(&headers(&[("authorization", b"ApiKey k2")])),
            C::ApiKey("k2".into())
        );
        assert_eq!(
            header_credential(&headers(&[("authorization", b"bearer a.b.c")])),
            C::Bearer("a.b.c".into())
        );
        assert_eq!(
            header_credential(&headers(&[("authorization", b"Basic xyz")])),
            C::Malformed
        );
        assert_eq!(
            header_credential(&headers(&[("authorization", b"Bearer")])),
            C::Malformed
        );
        assert_eq!(
            header_credential(&headers(&[("authorization", b"Bearer a b")])),
            C::Malformed
        );
        assert_eq!(
            header_credential(&headers(&[("x-api-key", b"\xff")])),
            C::Malformed
        );
        assert_eq!(
            header_credential(&headers(&[("x-api-key", b" ")])),
            C::Malformed
        );
        assert_eq!(
            header_credential(&headers(&[
                ("x-api-key", b"k1"),
                ("authorization", b"Bearer t")
            ])),
            C::Malformed,
            "two credentials at once"
        );
        assert_eq!(
            header_credential(&headers(&[("x-api-key", b"k1"), ("x-api-key", b"k2")])),
            C::Malformed,
            "a repeated header"
        );
        assert_eq!(header_credential(&HeaderMap::new()), C::None);
    }
}
