//! Console sign-in with OpenID Connect against a real identity provider over HTTPS (discovery,
//! authorization endpoint, token endpoint checking PKCE, single-use codes and the client's
//! secret, JWKS), driven from the browser's side over real sockets: operators and viewers get
//! their roles from their groups, everyone else is refused, and every forged, replayed or
//! misdirected answer leaves the attacker without a session.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parking_lot::Mutex;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use warden_bus::{Bus, EmbeddedBus, EmbeddedConfig, TopicSpec};
use warden_config::{OidcConfig, WardenConfig};
use warden_dashboard::Dashboard;
use warden_tests::pki::Ca;

const CLIENT_ID: &str = "warden-console";
const CLIENT_SECRET: &str = "s3cret/with+odd=chars";

/// What the provider does wrong in the ID tokens it issues (an attacker's forgeries and the
/// mistakes of a misconfigured provider look alike to the console).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Forge {
    None,
    Nonce,
    Audience,
    Expired,
    Issuer,
    UnknownKey,
    Hs256WithPublicKey,
    FutureIat,
    OtherAzp,
}

struct Signer {
    key: EncodingKey,
    kid: String,
    public_pem: String,
}

impl Signer {
    fn ec(kid: &str) -> anyhow::Result<Self> {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        Ok(Self {
            key: EncodingKey::from_ec_der(&kp.serialize_der()),
            kid: kid.into(),
            public_pem: kp.public_key_pem(),
        })
    }

    fn jwk(&self) -> anyhow::Result<Jwk> {
        let mut j = Jwk::from_encoding_key(&self.key, Algorithm::ES256)?;
        j.common.key_id = Some(self.kid.clone());
        Ok(j)
    }
}

struct Grant {
    nonce: String,
    challenge: String,
    redirect_uri: String,
    user: (String, Vec<String>),
}

struct IdpState {
    issuer: String,
    /// Who signs in next: name and groups.
    user: (String, Vec<String>),
    forge: Forge,
    /// Answer the authorization request with `error=access_denied`.
    deny: bool,
    /// Take the client secret only in the form (`client_secret_post`), as discovery says.
    secret_post: bool,
    signer: Signer,
    rogue: Signer,
    /// Keys published in the JWKS.
    published: Vec<Jwk>,
    grants: HashMap<String, Grant>,
    token_calls: usize,
    /// Token requests refused (bad PKCE verifier, reused code, bad client secret…).
    refused: Vec<String>,
}

type Idp = Arc<Mutex<IdpState>>;

fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn now_s() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn form(body: &str) -> HashMap<String, String> {
    body.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect()
}

async fn discovery(State(idp): State<Idp>) -> Response {
    let (issuer, post) = {
        let s = idp.lock();
        (s.issuer.clone(), s.secret_post)
    };
    let methods = if post {
        json!(["client_secret_post"])
    } else {
        json!(["client_secret_basic", "client_secret_post"])
    };
    axum::Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks.json"),
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": methods,
    }))
    .into_response()
}

async fn jwks(State(idp): State<Idp>) -> Response {
    let keys = idp.lock().published.clone();
    axum::Json(JwkSet { keys }).into_response()
}

/// The user "approves" at once; the browser is sent back with a code (or an error).
async fn authorize(State(idp): State<Idp>, Query(q): Query<HashMap<String, String>>) -> Response {
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    if get("response_type") != "code"
        || get("client_id") != CLIENT_ID
        || get("code_challenge_method") != "S256"
        || get("code_challenge").len() != 43
        || get("nonce").is_empty()
        || !get("scope").split(' ').any(|s| s == "openid")
    {
        return (StatusCode::BAD_REQUEST, "bad authorization request").into_response();
    }
    let mut s = idp.lock();
    let redirect = get("redirect_uri");
    if s.deny {
        return Redirect::to(&format!(
            "{redirect}?error=access_denied&state={}",
            get("state")
        ))
        .into_response();
    }
    let code = format!("code-{}", s.grants.len() + s.token_calls * 1000 + 1);
    let user = s.user.clone();
    s.grants.insert(
        code.clone(),
        Grant {
            nonce: get("nonce"),
            challenge: get("code_challenge"),
            redirect_uri: redirect.clone(),
            user,
        },
    );
    Redirect::to(&format!("{redirect}?code={code}&state={}", get("state"))).into_response()
}

async fn token(State(idp): State<Idp>, headers: HeaderMap, body: String) -> Response {
    let f = form(&body);
    let mut s = idp.lock();
    s.token_calls += 1;
    let refuse = |s: &mut IdpState, why: &str| {
        s.refused.push(why.to_string());
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": "invalid_grant", "error_description": why })),
        )
            .into_response()
    };
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!(
            "{CLIENT_ID}:{}",
            // RFC 6749 §2.3.1: the secret is form-encoded before Basic.
            CLIENT_SECRET
                .replace('/', "%2F")
                .replace('+', "%2B")
                .replace('=', "%3D")
        ))
    );
    let authenticated = if s.secret_post {
        headers.get("authorization").is_none()
            && f.get("client_id").map(String::as_str) == Some(CLIENT_ID)
            && f.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET)
    } else {
        headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(basic.as_str())
            && !f.contains_key("client_secret")
    };
    if !authenticated {
        return refuse(&mut s, "client authentication");
    }
    if f.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return refuse(&mut s, "grant_type");
    }
    let Some(grant) = f.get("code").and_then(|c| s.grants.remove(c)) else {
        return refuse(&mut s, "unknown or reused code");
    };
    let verifier = f.get("code_verifier").cloned().unwrap_or_default();
    if b64url(&Sha256::digest(verifier.as_bytes())) != grant.challenge {
        return refuse(&mut s, "PKCE verifier");
    }
    if f.get("redirect_uri") != Some(&grant.redirect_uri) {
        return refuse(&mut s, "redirect_uri");
    }
    let now = now_s();
    let mut claims = json!({
        "iss": s.issuer,
        "aud": CLIENT_ID,
        "sub": format!("sub-{}", grant.user.0),
        "preferred_username": grant.user.0,
        "groups": grant.user.1,
        "iat": now,
        "exp": now + 300,
        "nonce": grant.nonce,
    });
    let c = claims.as_object_mut().expect("object");
    match s.forge {
        Forge::None | Forge::UnknownKey | Forge::Hs256WithPublicKey => {}
        Forge::Nonce => {
            c.insert("nonce".into(), json!("a-nonce-from-another-sign-in"));
        }
        Forge::Audience => {
            c.insert("aud".into(), json!("another-client"));
        }
        Forge::Expired => {
            c.insert("iat".into(), json!(now - 4000));
            c.insert("exp".into(), json!(now - 3600));
        }
        Forge::Issuer => {
            c.insert("iss".into(), json!("https://evil.example"));
        }
        Forge::FutureIat => {
            c.insert("iat".into(), json!(now + 3600));
        }
        Forge::OtherAzp => {
            c.insert("aud".into(), json!([CLIENT_ID, "another-client"]));
            c.insert("azp".into(), json!("another-client"));
        }
    }
    let signed = match s.forge {
        Forge::UnknownKey => {
            let mut h = Header::new(Algorithm::ES256);
            h.kid = Some(s.rogue.kid.clone());
            jsonwebtoken::encode(&h, &claims, &s.rogue.key)
        }
        Forge::Hs256WithPublicKey => {
            let mut h = Header::new(Algorithm::HS256);
            h.kid = Some(s.signer.kid.clone());
            jsonwebtoken::encode(
                &h,
                &claims,
                &EncodingKey::from_secret(s.signer.public_pem.as_bytes()),
            )
        }
        _ => {
            let mut h = Header::new(Algorithm::ES256);
            h.kid = Some(s.signer.kid.clone());
            jsonwebtoken::encode(&h, &claims, &s.signer.key)
        }
    };
    match signed {
        Ok(id_token) => axum::Json(json!({
            "access_token": "opaque",
            "token_type": "Bearer",
            "expires_in": 300,
            "id_token": id_token,
        }))
        .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// The provider over HTTPS (a certificate from `ca`) on a loopback port.
async fn idp(ca: &Ca) -> anyhow::Result<Idp> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let signer = Signer::ec("idp-key-1")?;
    let state = Arc::new(Mutex::new(IdpState {
        issuer: format!("https://127.0.0.1:{}", addr.port()),
        user: ("alice".into(), vec!["warden-ops".into()]),
        forge: Forge::None,
        deny: false,
        secret_post: false,
        published: vec![signer.jwk()?],
        signer,
        rogue: Signer::ec("rogue-key")?,
        grants: HashMap::new(),
        token_calls: 0,
        refused: Vec::new(),
    }));
    let app = Router::new()
        .route(
            "/.well-known/openid-configuration",
            axum::routing::get(discovery),
        )
        .route("/jwks.json", axum::routing::get(jwks))
        .route("/authorize", axum::routing::get(authorize))
        .route("/token", axum::routing::post(token))
        .with_state(state.clone());
    warden_tests::https::serve(listener, app, ca, None)?;
    Ok(state)
}

struct Console {
    url: String,
    /// The browser: no redirects followed, trusts the provider's CA.
    browser: reqwest::Client,
    stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn console(ca: &Ca, idp: &Idp) -> anyhow::Result<Console> {
    let dir = tempfile::tempdir()?;
    let ca_file = dir.path().join("idp-ca.pem");
    std::fs::write(&ca_file, &ca.cert_pem)?;
    let secret_file = dir.path().join("client-secret");
    std::fs::write(&secret_file, format!("{CLIENT_SECRET}\n"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let mut config = WardenConfig::default();
    config.gateway.decisions_bootstrap_timeout_ms = 5_000;
    config.dashboard.operators.clear();
    config.dashboard.oidc = Some(OidcConfig {
        issuer: idp.lock().issuer.clone(),
        client_id: CLIENT_ID.into(),
        client_secret_env: None,
        client_secret_file: Some(secret_file.display().to_string()),
        redirect_url: format!("{url}/oidc/callback"),
        scopes: vec!["openid".into(), "profile".into()],
        name_claim: "preferred_username".into(),
        roles_claim: "groups".into(),
        operator_values: vec!["warden-ops".into()],
        viewer_values: vec!["staff".into()],
        ca_file: Some(ca_file.display().to_string()),
        leeway_s: 30,
        display_name: "Example SSO".into(),
        timeout_ms: 5_000,
    });
    config.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let bus = EmbeddedBus::new(EmbeddedConfig::default());
    let t = &config.bus.topics;
    let spec = |name: &str, compacted| TopicSpec {
        name: name.into(),
        partitions: 1,
        compacted,
        retention_ms: None,
    };
    bus.ensure_topics(&[
        spec(&t.events, false),
        spec(&t.decisions, true),
        spec(&t.alerts, false),
    ])
    .await?;
    let bus: Arc<dyn Bus> = Arc::new(bus);
    let dashboard = Dashboard::start(&config, bus).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(dashboard.serve(listener, async {
        let _ = stopped.await;
    }));
    let root = reqwest::Certificate::from_pem(ca.cert_pem.as_bytes())?;
    let browser = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(root)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    Ok(Console {
        url,
        browser,
        stop,
        _dir: dir,
    })
}

fn location(resp: &reqwest::Response) -> anyhow::Result<String> {
    Ok(resp
        .headers()
        .get(LOCATION)
        .context("no Location")?
        .to_str()?
        .to_string())
}

/// The `name=value` of the cookie `name` the response sets (with a non-empty value).
fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .map(str::trim)
        .find(|kv| {
            kv.split_once('=')
                .is_some_and(|(k, v)| k == name && !v.is_empty())
        })
        .map(str::to_string)
}

/// A sign-in up to the provider sending the browser back: the callback URL and the state
/// cookie the console set.
async fn to_callback(c: &Console) -> anyhow::Result<(String, String)> {
    let start = c
        .browser
        .get(format!("{}/oidc/start", c.url))
        .send()
        .await?;
    if !start.status().is_redirection() {
        bail!("/oidc/start answered {}", start.status());
    }
    let state_cookie = set_cookie(&start, "warden_oidc").context("no state cookie")?;
    let at_idp = c.browser.get(location(&start)?).send().await?;
    if !at_idp.status().is_redirection() {
        bail!("the provider answered {}", at_idp.status());
    }
    let callback = location(&at_idp)?;
    if !callback.starts_with(&format!("{}/oidc/callback?", c.url)) {
        bail!("sent back to {callback}");
    }
    Ok((callback, state_cookie))
}

/// The callback's status and the session cookie it set, if any.
async fn callback(
    c: &Console,
    url: &str,
    cookie: Option<&str>,
) -> anyhow::Result<(StatusCode, Option<String>)> {
    let mut req = c.browser.get(url);
    if let Some(cookie) = cookie {
        req = req.header(COOKIE, cookie);
    }
    let resp = req.send().await?;
    let status = StatusCode::from_u16(resp.status().as_u16())?;
    Ok((status, set_cookie(&resp, "warden_session")))
}

async fn sign_in(c: &Console) -> anyhow::Result<(StatusCode, Option<String>)> {
    let (url, state) = to_callback(c).await?;
    callback(c, &url, Some(&state)).await
}

async fn session(c: &Console, cookie: &str) -> anyhow::Result<Value> {
    let resp = c
        .browser
        .get(format!("{}/api/session", c.url))
        .header(COOKIE, cookie)
        .send()
        .await?;
    if resp.status() != reqwest::StatusCode::OK {
        bail!("/api/session answered {}", resp.status());
    }
    Ok(resp.json().await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_sign_in_with_the_identity_provider_and_forgeries_get_nothing()
-> anyhow::Result<()> {
    let ca = Ca::new("test identity provider")?;
    let idp = idp(&ca).await?;
    let c = console(&ca, &idp).await?;

    // The sign-in page offers the provider; nothing else is served without a session.
    let page = c
        .browser
        .get(format!("{}/login", c.url))
        .send()
        .await?
        .text()
        .await?;
    assert!(page.contains("Sign in with Example SSO"), "{page}");
    let home = c.browser.get(format!("{}/", c.url)).send().await?;
    assert_eq!(location(&home)?, "/login");

    // An operator by group.
    let (status, cookie) = sign_in(&c).await?;
    assert_eq!(status, StatusCode::OK);
    let cookie = cookie.context("an operator gets a session")?;
    let who = session(&c, &cookie).await?;
    assert_eq!(who["name"], "alice", "{who}");
    assert_eq!(who["role"], "operator", "{who}");

    // A viewer by group.
    idp.lock().user = ("bob".into(), vec!["staff".into(), "other".into()]);
    let (_, cookie) = sign_in(&c).await?;
    let who = session(&c, &cookie.context("a viewer gets a session")?).await?;
    assert_eq!(
        (who["name"].as_str(), who["role"].as_str()),
        (Some("bob"), Some("viewer"))
    );

    // Someone the provider knows but the console gives no role.
    idp.lock().user = ("eve".into(), vec!["interns".into()]);
    let (status, cookie) = sign_in(&c).await?;
    assert_eq!((status, cookie), (StatusCode::FORBIDDEN, None));
    idp.lock().user = ("alice".into(), vec!["warden-ops".into()]);

    // Login CSRF: a callback without the browser's state cookie, or with another sign-in's.
    let (url, state) = to_callback(&c).await?;
    assert_eq!(
        callback(&c, &url, None).await?,
        (StatusCode::UNAUTHORIZED, None)
    );
    let (_, other_state) = to_callback(&c).await?;
    assert_eq!(
        callback(&c, &url, Some(&other_state)).await?,
        (StatusCode::UNAUTHORIZED, None)
    );
    // The rightful browser still finishes; replaying the same callback then gets nothing.
    assert_eq!(callback(&c, &url, Some(&state)).await?.0, StatusCode::OK);
    assert_eq!(
        callback(&c, &url, Some(&state)).await?,
        (StatusCode::UNAUTHORIZED, None)
    );

    // A forged state (never started here) and a callback without a code.
    let forged = format!("{}/oidc/callback?code=code-1&state=made-up", c.url);
    assert_eq!(
        callback(&c, &forged, Some("warden_oidc=made-up")).await?,
        (StatusCode::UNAUTHORIZED, None)
    );

    // The user declined at the provider.
    idp.lock().deny = true;
    let (url, state) = to_callback(&c).await?;
    assert_eq!(
        callback(&c, &url, Some(&state)).await?,
        (StatusCode::UNAUTHORIZED, None)
    );
    idp.lock().deny = false;

    // The provider rotates its signing key: the first token with the new kid is verified after
    // one JWKS refetch.
    {
        let mut s = idp.lock();
        let next = Signer::ec("idp-key-2")?;
        s.published = vec![next.jwk()?];
        s.signer = next;
    }
    let (status, cookie) = sign_in(&c).await?;
    assert_eq!(status, StatusCode::OK);
    assert!(cookie.is_some(), "signed in after a key rotation");

    // ID tokens that must not verify.
    for forge in [
        Forge::Nonce,
        Forge::Audience,
        Forge::Expired,
        Forge::Issuer,
        Forge::UnknownKey,
        Forge::Hs256WithPublicKey,
        Forge::FutureIat,
        Forge::OtherAzp,
    ] {
        let calls = {
            let mut s = idp.lock();
            s.forge = forge;
            s.token_calls
        };
        let (status, cookie) = sign_in(&c).await?;
        assert_eq!(
            (status, cookie),
            (StatusCode::UNAUTHORIZED, None),
            "{forge:?}"
        );
        // Refused for the token itself: the code was exchanged.
        assert_eq!(idp.lock().token_calls, calls + 1, "{forge:?}");
    }
    idp.lock().forge = Forge::None;
    let (status, cookie) = sign_in(&c).await?;
    assert_eq!(status, StatusCode::OK);
    assert!(cookie.is_some(), "an honest token is still accepted");

    // The console always proved possession of the PKCE verifier and the client secret: the
    // provider never refused a token request.
    let s = idp.lock();
    assert!(s.refused.is_empty(), "{:?}", s.refused);
    assert!(s.token_calls >= 12, "{} token requests", s.token_calls);
    drop(s);
    let _ = c.stop.send(());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_taking_the_secret_only_in_the_form_gets_it_there() -> anyhow::Result<()> {
    let ca = Ca::new("test identity provider")?;
    let idp = idp(&ca).await?;
    idp.lock().secret_post = true;
    let c = console(&ca, &idp).await?;
    let (status, cookie) = sign_in(&c).await?;
    let refused = idp.lock().refused.clone();
    assert_eq!(status, StatusCode::OK, "{refused:?}");
    assert!(cookie.is_some() && refused.is_empty(), "{refused:?}");
    let _ = c.stop.send(());
    Ok(())
}
