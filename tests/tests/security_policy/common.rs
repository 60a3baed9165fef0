//! The suite's harness: a recording upstream, a gateway with the suite's keys and policy,
//! raw HTTP over real sockets.

#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use axum::Router;
use axum::extract::Request;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, Semaphore};
use warden::{Stack, StackParts, ensure_topics, make_bus};
use warden_bus::Bus;
use warden_config::{WardenConfig, hash_api_key};
use warden_event::{Action, Decision, Outcome, RequestEvent, Subject};

pub(crate) const ADMIN_TOKEN: &str = "admin-token-5f0c2a9e41b7d3c8";
pub(crate) const DEV1: &str = "key-dev-1-8c1f0a2b3c4d5e6f";
pub(crate) const DEV2: &str = "key-dev-2-9d2e1b3c4d5e6f70";
pub(crate) const HUB1: &str = "key-hub-1-0e3f2c4d5e6f7081";
pub(crate) const OPS: &str = "key-ops-1-1f403d5e6f708192";
pub(crate) const SENSOR_ADMIN: &str = "key-dev-9-20514e6f708192a3";
pub(crate) const QIDENT: &str = "key-q-ident-3162f708192a3b4";
pub(crate) const QKEY: &str = "key-dev-qk-427308192a3b4c5";
pub(crate) const EVIL: &str = "key-dev-evil-5384192a3b4c5d6";

// === the protected upstream ===

/// Records every request it receives (`METHOD path`, on arrival, before reading the body).
/// Paths ending in `/hold` wait until the test releases them.
#[derive(Clone)]
pub(crate) struct Upstream {
    pub(crate) addr: SocketAddr,
    pub(crate) hits: Arc<Mutex<Vec<String>>>,
    pub(crate) arrived: Arc<Notify>,
    pub(crate) release: Arc<Semaphore>,
}

impl Upstream {
    pub(crate) fn hits(&self) -> Vec<String> {
        self.hits.lock().map(|h| h.clone()).unwrap_or_default()
    }
}

pub(crate) async fn upstream() -> anyhow::Result<Upstream> {
    let up = Upstream {
        addr: "127.0.0.1:0".parse()?,
        hits: Arc::default(),
        arrived: Arc::new(Notify::new()),
        release: Arc::new(Semaphore::new(0)),
    };
    let u = up.clone();
    let app = Router::new().fallback(move |req: Request| {
        let u = u.clone();
        async move {
            let line = format!("{} {}", req.method(), req.uri().path());
            if let Ok(mut h) = u.hits.lock() {
                h.push(line.clone());
            }
            if req.uri().path().ends_with("/hold") {
                u.arrived.notify_one();
                if let Ok(p) = u.release.acquire().await {
                    p.forget();
                }
            }
            let body = axum::body::to_bytes(req.into_body(), 1 << 20)
                .await
                .unwrap_or_default();
            format!("ok {line} {}", body.len())
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(Upstream { addr, ..up })
}

// === the gateway ===

pub(crate) const POLICY: &str = r#"
description = "security suite v1"

[roles.telemetry_writer]
allow = [
  { methods = ["POST"], path = "/api/devices/{identity}/telemetry" },
  { methods = ["GET"], path = "/api/devices/{identity}/config" },
  { methods = ["GET"], path = "/api/devices/{identity}/hold" },
]

[roles.firmware_reader]
allow = [{ methods = ["GET", "HEAD"], path = "/api/firmware/**" }]

[roles.fleet_admin]
allow = [{ methods = ["*"], path = "/api/**" }]

[roles.anonymous]
allow = [{ methods = ["GET"], path = "/public/**" }]

[roles.authenticated]
allow = [{ methods = ["GET"], path = "/public/**" }]

[device_types.temperature_sensor]
roles = ["telemetry_writer"]

[device_types.gateway_hub]
roles = ["telemetry_writer", "firmware_reader"]

[[deny]]
name = "sensors-never-touch-firmware"
methods = ["*"]
path = "/api/firmware/**"
device_types = ["temperature_sensor"]
"#;

pub(crate) const SCHEMA: &str = r#"{
  "type": "object",
  "required": ["t"],
  "properties": { "t": { "type": "number" } },
  "additionalProperties": false
}"#;

pub(crate) fn key_toml(
    id: &str,
    key: &str,
    identity: &str,
    tenant: &str,
    dt: &str,
    roles: &str,
) -> String {
    format!(
        "[[api_keys]]\nid = \"{id}\"\nsha256 = \"{}\"\nidentity = \"{identity}\"\n\
         tenant = \"{tenant}\"\ndevice_type = \"{dt}\"\nroles = [{roles}]\n",
        hash_api_key(key)
    )
}

/// The suite's config: routes to `up`, the keys above, the policy and schema in `dir`, the
/// admin API, then `extra` (more TOML).
pub(crate) fn config(up: &Upstream, dir: &Path, extra: &str) -> anyhow::Result<WardenConfig> {
    config_with(up, dir, "reload_interval_ms = 0\n", extra)
}

/// [`config`] with more keys in `[rbac]`.
pub(crate) fn config_with(
    up: &Upstream,
    dir: &Path,
    rbac: &str,
    extra: &str,
) -> anyhow::Result<WardenConfig> {
    let policy = dir.join("rbac.toml");
    if !policy.exists() {
        std::fs::write(&policy, POLICY)?;
    }
    let schema = dir.join("telemetry.schema.json");
    std::fs::write(&schema, SCHEMA)?;
    let u = up.addr;
    let mut text = format!(
        r#"
[gateway]
id = "gw-sec"
listen = "127.0.0.1:0"

[dashboard]
listen = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"
token_sha256 = "{token}"

[rbac]
policy = "{policy}"
{rbac}

[validation.routes.devices]
max_body_bytes = 256
content_types = ["application/json"]
json_schema = "{schema}"

[validation.routes.firmware]
max_body_bytes = 64

[[routes]]
name = "devices"
prefix = "/api/devices"
upstream = "http://{u}"
auth = "api_key"

[[routes]]
name = "firmware"
prefix = "/api/firmware"
upstream = "http://{u}"
auth = "api_key"
methods = ["GET", "HEAD"]

[[routes]]
name = "admin_api"
prefix = "/api/admin"
upstream = "http://{u}"
auth = "api_key"

[[routes]]
name = "hold"
prefix = "/api/hold"
upstream = "http://{u}"
auth = "api_key"

[[routes]]
name = "public"
prefix = "/public"
upstream = "http://{u}"
auth = "none"
"#,
        token = hash_api_key(ADMIN_TOKEN),
        policy = policy.display(),
        schema = schema.display(),
    );
    let sensor = "temperature_sensor";
    for k in [
        key_toml("k-dev1", DEV1, "dev-1", "acme", sensor, ""),
        key_toml("k-dev2", DEV2, "dev-2", "acme", sensor, ""),
        key_toml("k-hub1", HUB1, "hub-1", "acme", "gateway_hub", ""),
        key_toml("k-ops", OPS, "ops-1", "acme", "console", "\"fleet_admin\""),
        key_toml(
            "k-dev9",
            SENSOR_ADMIN,
            "dev-9",
            "acme",
            sensor,
            "\"fleet_admin\"",
        ),
        key_toml("k-qident", QIDENT, "q-ident", "acme", sensor, ""),
        key_toml("k-qkey", QKEY, "dev-qk", "acme", sensor, ""),
        key_toml("k-evil", EVIL, "dev-evil", "evil", sensor, ""),
    ] {
        text.push_str(&k);
    }
    text.push_str(extra);
    WardenConfig::from_toml(&text).map_err(|e| anyhow::anyhow!("{e}"))
}

pub(crate) struct Gw {
    pub(crate) stack: Stack,
    pub(crate) addr: SocketAddr,
    pub(crate) admin: SocketAddr,
    pub(crate) bus: Arc<dyn Bus>,
    pub(crate) config: WardenConfig,
}

pub(crate) async fn gateway(config: WardenConfig, before: &[Decision]) -> anyhow::Result<Gw> {
    let bus = make_bus(&config)?;
    ensure_topics(&*bus, &config).await?;
    let producer = bus.producer();
    for d in before {
        producer
            .send(
                &config.bus.topics.decisions,
                d.subject.key().as_bytes(),
                &warden_event::encode(d),
            )
            .await?;
    }
    let stack = Stack::start(
        bus.clone(),
        &config,
        StackParts {
            gateway: true,
            ..StackParts::default()
        },
    )
    .await?;
    Ok(Gw {
        addr: stack.gateway_addr.context("gateway address")?,
        admin: stack.admin_addr.context("admin address")?,
        stack,
        bus,
        config,
    })
}

impl Gw {
    /// Every event of this gateway, once all emitted ones are published.
    pub(crate) async fn events(&self) -> anyhow::Result<Vec<RequestEvent>> {
        let stats = self.stack.emit_stats.clone().context("emit stats")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        use std::sync::atomic::Ordering::Relaxed;
        while stats.published.load(Relaxed) < stats.emitted.load(Relaxed) {
            ensure!(Instant::now() < deadline, "events not published in time");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut events = Vec::new();
        warden_bus::read_to_end(
            &*self.bus,
            &self.config.bus.topics.events,
            Duration::from_secs(10),
            |m| {
                if let Ok(e) = warden_event::decode::<RequestEvent>(&m.payload) {
                    events.push(e);
                }
            },
        )
        .await?;
        Ok(events)
    }
}

// === raw HTTP ===

#[derive(Debug)]
pub(crate) struct Resp {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Resp {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The gateway's generic error body: exactly status, code and this response's request id.
    pub(crate) fn check_generic(&self) -> anyhow::Result<()> {
        let v: Value = serde_json::from_str(&self.body)
            .with_context(|| format!("not a JSON error body: {:?}", self.body))?;
        let err = v.get("error").context("no error object")?;
        ensure!(err["status"] == self.status, "status in body: {v}");
        ensure!(
            err["request_id"].as_str() == self.header("x-request-id"),
            "request id in body: {v}"
        );
        let keys: Vec<&String> = err.as_object().context("object")?.keys().collect();
        ensure!(keys.len() == 3 && err["code"].is_string(), "fields: {v}");
        Ok(())
    }
}

/// Parse consecutive HTTP/1.1 responses.
pub(crate) fn parse_responses(mut buf: &[u8]) -> anyhow::Result<Vec<Resp>> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let end = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .context("no end of headers")?;
        let head = std::str::from_utf8(&buf[..end])?;
        buf = &buf[end + 4..];
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .context("status line")?
            .parse()?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let body = if let Some(n) = get("content-length") {
            let n: usize = n.parse()?;
            ensure!(buf.len() >= n, "short body");
            let b = buf[..n].to_vec();
            buf = &buf[n..];
            b
        } else if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            let mut b = Vec::new();
            loop {
                let eol = buf.windows(2).position(|w| w == b"\r\n").context("chunk")?;
                let size = usize::from_str_radix(std::str::from_utf8(&buf[..eol])?.trim(), 16)?;
                buf = &buf[eol + 2..];
                if size == 0 {
                    buf = &buf[2.min(buf.len())..];
                    break;
                }
                b.extend_from_slice(&buf[..size]);
                buf = &buf[size + 2..];
            }
            b
        } else {
            std::mem::take(&mut buf).to_vec()
        };
        out.push(Resp {
            status,
            headers,
            body: String::from_utf8_lossy(&body).to_string(),
        });
    }
    Ok(out)
}

/// Send raw bytes from `from` (an address on the loopback) and read every response until the
/// server closes the connection.
pub(crate) async fn raw_from(
    from: IpAddr,
    addr: SocketAddr,
    req: &[u8],
) -> anyhow::Result<Vec<Resp>> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    let mut s = socket.connect(addr).await?;
    s.write_all(req).await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .context("response timed out")??;
    parse_responses(&buf)
}

pub(crate) async fn raw(addr: SocketAddr, req: &[u8]) -> anyhow::Result<Resp> {
    raw_from(IpAddr::from([127, 0, 0, 1]), addr, req)
        .await?
        .into_iter()
        .next()
        .context("no response")
}

/// A request with `Host` and `Connection: close`; `head` is the request line plus headers
/// (each ending in `\r\n`).
pub(crate) fn req(head: &str, body: &str) -> Vec<u8> {
    format!("{head}Host: gw\r\nConnection: close\r\n\r\n{body}").into_bytes()
}

pub(crate) fn get(path: &str, key: Option<&str>) -> Vec<u8> {
    let auth = key
        .map(|k| format!("X-Api-Key: {k}\r\n"))
        .unwrap_or_default();
    req(&format!("GET {path} HTTP/1.1\r\n{auth}"), "")
}

pub(crate) fn post_json(path: &str, key: &str, ctype: Option<&str>, body: &str) -> Vec<u8> {
    let ct = ctype
        .map(|c| format!("Content-Type: {c}\r\n"))
        .unwrap_or_default();
    req(
        &format!(
            "POST {path} HTTP/1.1\r\nX-Api-Key: {key}\r\n{ct}Content-Length: {}\r\n",
            body.len()
        ),
        body,
    )
}

/// Who refused: the gateway (generic JSON error and an event with this outcome) or hyper's
/// parser (bare status, no event).
#[derive(Debug, Clone, Copy)]
pub(crate) enum By {
    Gateway(Outcome),
    Hyper,
}

pub(crate) struct Attack {
    pub(crate) name: &'static str,
    pub(crate) from: IpAddr,
    pub(crate) request: Vec<u8>,
    pub(crate) status: u16,
    pub(crate) by: By,
}

pub(crate) fn attack(name: &'static str, request: Vec<u8>, status: u16, by: By) -> Attack {
    Attack {
        name,
        from: IpAddr::from([127, 0, 0, 1]),
        request,
        status,
        by,
    }
}

pub(crate) const INVALID: By = By::Gateway(Outcome::Invalid);
pub(crate) const RBAC: By = By::Gateway(Outcome::DeniedRbac);
pub(crate) const AUTH: By = By::Gateway(Outcome::DeniedAuth);
pub(crate) const QUARANTINED: By = By::Gateway(Outcome::Quarantined);

pub(crate) fn decision(subject: Subject, action: Action) -> Decision {
    let now = warden_event::now_ns();
    Decision {
        v: warden_event::SCHEMA_VERSION,
        id: format!("test-{}", subject.key()),
        subject,
        action,
        until: Some(now + 600_000_000_000),
        reason: "test".into(),
        detector: "test".into(),
        score: 0.0,
        evidence: Value::Null,
        decided_at: now,
        limit: None,
    }
}

pub(crate) async fn admin_call(
    gw: &Gw,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> anyhow::Result<(u16, Value)> {
    let mut r = reqwest::Client::new().request(method, format!("http://{}{path}", gw.admin));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await?;
    let status = resp.status().as_u16();
    let v = resp.json::<Value>().await.unwrap_or(Value::Null);
    Ok((status, v))
}
