//! Who may use the console: operators sign in with a token (its SHA-256 in the config) and get
//! a server-side session in an HttpOnly, SameSite=Strict cookie; scripts send the token as
//! `Authorization: Bearer`. Every state change made with a session cookie carries the session's
//! CSRF token in `X-CSRF-Token`. Nothing but the sign-in page and the health probe is served
//! without one or the other.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use parking_lot::Mutex;
use ring::rand::SecureRandom;
use sha2::{Digest, Sha256};
use tracing::{info, warn};
use warden_config::{ConsoleRole, DashboardConfig};
use warden_event::audit::AuditLog;

/// The session cookie.
pub(crate) const COOKIE: &str = "warden_session";
/// The header state changes made with a session cookie must carry.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";
/// Sessions kept at most (oldest dropped first): bounds memory whatever sign-ins come.
const MAX_SESSIONS: usize = 10_000;
/// Wait before answering a refused sign-in (tokens are long random strings; this only makes
/// guessing slower still and keeps refused sign-ins from flooding the log).
const REFUSED_DELAY: Duration = Duration::from_millis(300);

/// An operator as a request handler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Operator {
    pub(crate) name: String,
    pub(crate) role: ConsoleRole,
    /// The session's CSRF token (none for bearer requests).
    pub(crate) csrf: Option<String>,
}

impl Operator {
    pub(crate) fn may_act(&self) -> bool {
        self.role == ConsoleRole::Operator
    }
}

struct Session {
    name: String,
    role: ConsoleRole,
    csrf: String,
    created: Instant,
    last: Instant,
}

/// Operators from the config and the live sessions.
pub(crate) struct Auth {
    /// SHA-256 of the token → (name, role).
    operators: HashMap<[u8; 32], (String, ConsoleRole)>,
    sessions: Mutex<HashMap<String, Session>>,
    idle: Duration,
    max: Duration,
    secure: bool,
    /// Where sign-ins are recorded (`[audit]`).
    audit: Option<Arc<AuditLog>>,
    /// Sign-in with the organisation's OpenID Connect provider (`[dashboard.oidc]`).
    oidc: Option<crate::oidc::Oidc>,
}

/// 256 random bits from the operating system, as hex; `None` if the system cannot give them
/// (then nobody signs in).
pub(crate) fn random_hex() -> Option<String> {
    let mut b = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut b).ok()?;
    Some(hex::encode(b))
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Equal strings, in time that does not depend on where they differ.
pub(crate) fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    /// Operators and sessions for `config`; an error when its OpenID Connect settings cannot
    /// be used (a missing client secret, an unreadable CA file).
    pub(crate) fn new(
        config: &DashboardConfig,
        audit: Option<Arc<AuditLog>>,
    ) -> Result<Self, crate::DashboardError> {
        let operators = config
            .operators
            .iter()
            .filter_map(|o| {
                let h: [u8; 32] = hex::decode(&o.token_sha256).ok()?.try_into().ok()?;
                Some((h, (o.name.clone(), o.role)))
            })
            .collect();
        let oidc = config
            .oidc
            .as_ref()
            .map(crate::oidc::Oidc::new)
            .transpose()?;
        Ok(Self {
            operators,
            sessions: Mutex::new(HashMap::new()),
            idle: Duration::from_secs(config.session_idle_s),
            max: Duration::from_secs(config.session_max_s),
            secure: config.secure_cookie,
            audit,
            oidc,
        })
    }

    /// Whether anyone can sign in.
    pub(crate) fn has_operators(&self) -> bool {
        !self.operators.is_empty() || self.oidc.is_some()
    }

    fn operator_of_token(&self, token: &str) -> Option<(String, ConsoleRole)> {
        self.operators.get(&digest(token)).cloned()
    }

    /// Sign in with `token`: the operator's name and role, and a new session (never one the
    /// client brought: no fixation) as the `Set-Cookie` value for it.
    pub(crate) fn sign_in(&self, token: &str) -> Option<(String, ConsoleRole, HeaderValue)> {
        let (name, role) = self.operator_of_token(token)?;
        let cookie = self.start_session(&name, role)?;
        Some((name, role, cookie))
    }

    /// A new session for `name` in `role`, as the `Set-Cookie` value for it.
    fn start_session(&self, name: &str, role: ConsoleRole) -> Option<HeaderValue> {
        let (id, csrf) = (random_hex()?, random_hex()?);
        let now = Instant::now();
        let mut sessions = self.sessions.lock();
        sessions.retain(|_, s| self.live(s, now));
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.last)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            id.clone(),
            Session {
                name: name.to_string(),
                role,
                csrf,
                created: now,
                last: now,
            },
        );
        let cookie = format!(
            "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
            self.max.as_secs(),
            if self.secure { "; Secure" } else { "" }
        );
        HeaderValue::from_str(&cookie).ok()
    }

    /// End the session `id`.
    pub(crate) fn sign_out(&self, id: &str) {
        self.sessions.lock().remove(id);
    }

    /// A `Set-Cookie` value that removes the session cookie.
    pub(crate) fn clear_cookie(&self) -> HeaderValue {
        HeaderValue::from_static("warden_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
    }

    fn live(&self, s: &Session, now: Instant) -> bool {
        now.duration_since(s.last) < self.idle && now.duration_since(s.created) < self.max
    }

    fn session(&self, id: &str) -> Option<Operator> {
        let now = Instant::now();
        let mut sessions = self.sessions.lock();
        let s = sessions.get_mut(id)?;
        if !self.live(s, now) {
            sessions.remove(id);
            return None;
        }
        s.last = now;
        Some(Operator {
            name: s.name.clone(),
            role: s.role,
            csrf: Some(s.csrf.clone()),
        })
    }
}

/// Add an operator named `name` with a fresh random token to `config` and return the token
/// (for all-in-one runs, `warden up`, that have no operators configured). `None` when the
/// system gives no randomness.
pub fn one_time_operator(config: &mut DashboardConfig, name: &str) -> Option<String> {
    let token = random_hex()?;
    config.operators.push(warden_config::OperatorConfig {
        name: name.into(),
        role: ConsoleRole::Operator,
        token_sha256: hex::encode(digest(&token)),
    });
    Some(token)
}

/// The session id in the request's cookies.
pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    cookie(headers, COOKIE)
}

/// The value of cookie `name` in the request's cookies.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Paths served to anyone: the sign-in page and the health probe.
fn public(method: &Method, path: &str) -> bool {
    matches!(
        (method, path),
        (
            &Method::GET,
            "/login" | "/healthz" | "/oidc/start" | "/oidc/callback"
        ) | (&Method::POST, "/login")
    )
}

fn refuse(status: StatusCode, code: &str) -> Response {
    let body = serde_json::json!({ "error": { "status": status.as_u16(), "code": code } });
    (status, axum::Json(body)).into_response()
}

/// The gate in front of every route: who is asking (a session or a bearer token), and for a
/// state change made with a session, its CSRF token. Pages without a session redirect to the
/// sign-in page; the API answers 401.
pub(crate) async fn gate(State(auth): State<Arc<Auth>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if public(req.method(), &path) {
        return next.run(req).await;
    }
    let headers = req.headers();
    let operator = if let Some(token) = bearer(headers) {
        match auth.operator_of_token(token) {
            Some((name, role)) => Some(Operator {
                name,
                role,
                csrf: None,
            }),
            None => {
                warn!(%path, "Console request with an unknown bearer token refused.");
                return refuse(StatusCode::UNAUTHORIZED, "unauthorized");
            }
        }
    } else {
        session_cookie(headers).and_then(|id| auth.session(id))
    };
    let Some(operator) = operator else {
        if path.starts_with("/api/") || req.method() != Method::GET {
            return refuse(StatusCode::UNAUTHORIZED, "unauthorized");
        }
        return Redirect::to("/login").into_response();
    };
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe && let Some(expected) = &operator.csrf {
        let sent = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !same(sent, expected) {
            warn!(%path, operator = %operator.name, "State change without the session's CSRF token refused.");
            return refuse(StatusCode::FORBIDDEN, "csrf");
        }
    }
    req.extensions_mut().insert(operator);
    next.run(req).await
}

const LOGIN: &str = include_str!("login.html");
/// What `/oidc/callback` answers after a sign-in.
const SIGNED_IN: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"refresh\" content=\"0;url=/\"><title>Warden — signed in</title></head>\
<body><p>Signed in. <a href=\"/\">Open the console</a>.</p></body></html>";

/// `GET /login`.
pub(crate) async fn login_page(State(auth): State<Arc<Auth>>) -> Response {
    login_response(StatusCode::OK, "", &auth)
}

fn login_response(status: StatusCode, error: &str, auth: &Auth) -> Response {
    let note = if !auth.has_operators() {
        "No operators are configured: add <code>[[dashboard.operators]]</code> (name, role, \
         token_sha256) or <code>[dashboard.oidc]</code> to the config, or run \
         <code>warden up --demo</code>."
    } else {
        error
    };
    let sso = auth.oidc.as_ref().map_or(String::new(), |o| {
        format!(
            r#"<p><a class="sso" href="/oidc/start">Sign in with {}</a></p><p class="or">or</p>"#,
            crate::render::esc(o.display_name())
        )
    });
    let page = LOGIN.replace("{{note}}", note).replace("{{sso}}", &sso);
    let mut resp = (status, axum::response::Html(page)).into_response();
    crate::api::page_headers(resp.headers_mut());
    resp
}

/// `POST /login` (form field `token`).
pub(crate) async fn login(State(auth): State<Arc<Auth>>, body: Body) -> Response {
    let bytes = axum::body::to_bytes(body, 16 * 1024)
        .await
        .unwrap_or_default();
    let token = form_field(&bytes, "token").unwrap_or_default();
    let signed_in = auth.sign_in(token.trim());
    let record = match &signed_in {
        Some((name, role, _)) => {
            serde_json::json!({ "ok": true, "operator": name, "role": role, "method": "token" })
        }
        None => serde_json::json!({ "ok": false, "method": "token" }),
    };
    record_sign_in(&auth, record).await;
    match signed_in {
        Some((name, _, cookie)) => {
            info!(operator = %name, "Operator signed in to the console.");
            let mut resp = Redirect::to("/").into_response();
            resp.headers_mut().insert(header::SET_COOKIE, cookie);
            resp
        }
        None => {
            warn!("Console sign-in with an unknown token refused.");
            tokio::time::sleep(REFUSED_DELAY).await;
            login_response(
                StatusCode::UNAUTHORIZED,
                "That token is not an operator's.",
                &auth,
            )
        }
    }
}

/// Record a sign-in (the operator's name and role) or a refused one (no name for a refused
/// token: it is nobody's, and is never written) in the audit log, if there is one. A sign-in is
/// not refused when it cannot be recorded (that is logged).
async fn record_sign_in(auth: &Arc<Auth>, payload: serde_json::Value) {
    let Some(log) = auth.audit.clone() else {
        return;
    };
    let appended = tokio::task::spawn_blocking(move || {
        log.append(warden_event::audit::Kind::Signin, &payload)
    })
    .await;
    match appended {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => warn!(error = %e, "A console sign-in could not be written to the audit log."),
        Err(e) => warn!(error = %e, "A console sign-in could not be written to the audit log."),
    }
}

/// `GET /oidc/start`: send the browser to the identity provider, the sign-in's `state` bound
/// to it by a cookie that only `/oidc/callback` receives.
pub(crate) async fn oidc_start(State(auth): State<Arc<Auth>>) -> Response {
    let Some(oidc) = &auth.oidc else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match oidc.start().await {
        Ok((url, state)) => {
            let cookie = format!(
                "{}={state}; Path=/oidc/callback; HttpOnly; SameSite=Lax; Max-Age=600{}",
                crate::oidc::STATE_COOKIE,
                if auth.secure { "; Secure" } else { "" }
            );
            let mut resp = Redirect::to(&url).into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            resp
        }
        Err(e) => {
            warn!(error = %e, "Console sign-in with OpenID Connect could not start.");
            login_response(StatusCode::BAD_GATEWAY, e.public(), &auth)
        }
    }
}

/// `GET /oidc/callback`: the provider sends the browser back; exchange the code, verify the
/// ID token, map the user's groups to a role and start a session.
pub(crate) async fn oidc_callback(
    State(auth): State<Arc<Auth>>,
    headers: HeaderMap,
    query: axum::extract::Query<HashMap<String, String>>,
) -> Response {
    let Some(oidc) = &auth.oidc else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let state_cookie = cookie(&headers, crate::oidc::STATE_COOKIE);
    let result = oidc.finish(&query.0, state_cookie).await;
    let clear = HeaderValue::from_static(
        "warden_oidc=; Path=/oidc/callback; HttpOnly; SameSite=Lax; Max-Age=0",
    );
    let mut resp = match result {
        Ok(user) => match auth.start_session(&user.name, user.role) {
            Some(session) => {
                info!(operator = %user.name, role = ?user.role, "Operator signed in to the console with OpenID Connect.");
                record_sign_in(
                    &auth,
                    serde_json::json!({ "ok": true, "operator": user.name, "role": user.role,
                        "method": "oidc", "sub": user.subject }),
                )
                .await;
                // A page that moves on by itself rather than a redirect: the browser came here
                // from the provider (a cross-site navigation), and a SameSite=Strict cookie is
                // not sent on a redirect that continues it; a navigation started by this page
                // is same-site.
                let mut resp = (StatusCode::OK, axum::response::Html(SIGNED_IN)).into_response();
                crate::api::page_headers(resp.headers_mut());
                resp.headers_mut().append(header::SET_COOKIE, session);
                resp
            }
            None => login_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "No session could be started.",
                &auth,
            ),
        },
        Err(e) => {
            warn!(error = %e, "Console sign-in with OpenID Connect refused.");
            record_sign_in(
                &auth,
                serde_json::json!({ "ok": false, "method": "oidc", "reason": e.code() }),
            )
            .await;
            let status = match e {
                crate::oidc::Refused::NoRole(_) => StatusCode::FORBIDDEN,
                crate::oidc::Refused::Provider(_) => StatusCode::BAD_GATEWAY,
                _ => StatusCode::UNAUTHORIZED,
            };
            login_response(status, e.public(), &auth)
        }
    };
    resp.headers_mut().append(header::SET_COOKIE, clear);
    resp
}

/// `POST /logout`.
pub(crate) async fn logout(State(auth): State<Arc<Auth>>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        auth.sign_out(id);
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, auth.clear_cookie());
    resp
}

/// A field of an `application/x-www-form-urlencoded` body, decoded.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let hex = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_are_decoded() {
        assert_eq!(
            form_field(b"a=1&token=ab%2Bc+d%3D", "token").as_deref(),
            Some("ab+c d=")
        );
        assert_eq!(form_field(b"token=%zz%", "token").as_deref(), Some("%zz%"));
        assert_eq!(form_field(b"x=1", "token"), None);
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; warden_session=abc; b=2"),
        );
        assert_eq!(session_cookie(&h), Some("abc"));
        h.insert(header::COOKIE, HeaderValue::from_static("warden_session="));
        assert_eq!(session_cookie(&h), None);
    }

    #[test]
    fn comparison_is_exact() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
        assert!(!same("", "a"));
    }
}
