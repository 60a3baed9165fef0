//! Live runs: the plan's requests sent over HTTP through a gateway, each at its planned time.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderName, HeaderValue};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::ScenarioConfig;
use crate::labels::{Labels, RunMode};
use crate::plan::{Auth, Payload, Plan, Planned, SimRequest};
use crate::profile::BodyKind;
use crate::record::{Recorder, RunInfo, Seen};
use crate::upstream::model::{FAULT_HEADER, UPSTREAM_HEADER};

/// Largest body the simulator sends (clips are below it).
const MAX_BODY: usize = 1 << 20;
static ZEROS: [u8; MAX_BODY] = [0; MAX_BODY];

/// How to run live.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// Base URL of the gateway, `http://host:port`.
    pub gateway: String,
    /// Base URL of the gateway's TLS listener, `https://host:port`, for the devices with client
    /// certificates (required when the fleet has some).
    pub gateway_tls: Option<String>,
    /// Requests in flight at most (when reached, later requests wait: they are counted late
    /// if they leave more than a second after their time).
    pub max_in_flight: usize,
    /// Time allowed for one request, connect to end of response.
    pub request_timeout: Duration,
}

impl LiveOptions {
    pub fn new(gateway: impl Into<String>) -> Self {
        Self {
            gateway: gateway.into(),
            gateway_tls: None,
            max_in_flight: 512,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a run cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("gateway `{0}` is not an http:// URL")]
    Gateway(String),
    #[error(
        "the fleet's cameras authenticate with client certificates: give the gateway's TLS listener (an https:// URL){0}"
    )]
    GatewayTls(String),
    #[error(
        "the fleet has {0} MQTT device(s): MQTT devices are simulated in accelerated runs only (`warden eval`, `warden simulate --accelerated`); a live run sends HTTP"
    )]
    MqttLive(usize),
    #[error("client certificates: {0}")]
    Pki(#[from] crate::pki::PkiError),
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("building events: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("detection: {0}")]
    Detection(crate::accelerated::DetectError),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("issuing the fleet's tokens: {0}")]
    Token(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Run `plan` against the gateway; returns the labels once every request has ended (or
/// `cancel` fired: the run then stops early and the labels say so by their `ended_at`).
/// `recorder` (made with [`Recorder::new`] on this plan) is updated live for progress.
pub async fn run_live(
    scenario: &ScenarioConfig,
    seed: u64,
    mut plan: Plan,
    options: &LiveOptions,
    recorder: Arc<Recorder>,
    cancel: CancellationToken,
) -> Result<Labels, SimError> {
    let gateway = options.gateway.trim_end_matches('/').to_string();
    match reqwest::Url::parse(&gateway) {
        Ok(url) if url.scheme() == "http" && url.has_host() => {}
        _ => return Err(SimError::Gateway(options.gateway.clone())),
    }
    let fleet = plan.fleet();
    let mqtt = fleet
        .devices
        .iter()
        .filter(|d| d.device_type.is_mqtt())
        .count();
    if mqtt > 0 {
        return Err(SimError::MqttLive(mqtt));
    }
    let senders = Senders::new(fleet, &gateway, options)?;
    let permits = Arc::new(Semaphore::new(options.max_in_flight.max(1)));
    let started = Instant::now();
    let started_at = warden_event::now_ns();
    info!(scenario = %scenario.name, devices = fleet.devices.len(), %gateway, "Simulation started.");
    let mut tasks = JoinSet::new();
    let mut stopped = false;
    for p in plan.by_ref() {
        let due = started + Duration::from_nanos(p.at_ns.max(0) as u64);
        tokio::select! {
            _ = cancel.cancelled() => { stopped = true; break; }
            _ = sleep_until(due) => {}
        }
        let permit = tokio::select! {
            _ = cancel.cancelled() => { stopped = true; break; }
            permit = permits.clone().acquire_owned() => permit,
        };
        let Ok(permit) = permit else { break };
        let late = Instant::now().saturating_duration_since(due) > Duration::from_secs(1);
        recorder.sending(late);
        let request = senders.build(&p);
        let recorder = recorder.clone();
        tasks.spawn(async move {
            let sent_ns = warden_event::now_ns();
            let seen = send(request, &recorder).await;
            recorder.record(p.source, sent_ns, warden_event::now_ns(), seen);
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    // The run lasts its whole duration, even when its last request came earlier.
    if !stopped {
        let end = started + Duration::from_nanos(plan.duration_ns().max(0) as u64);
        tokio::select! {
            _ = cancel.cancelled() => stopped = true,
            _ = sleep_until(end) => {}
        }
    }
    let drain = if stopped {
        Duration::from_secs(2)
    } else {
        options.request_timeout
    };
    if tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        warn!(
            left = tasks.len(),
            "Requests still in flight at the end; abandoned."
        );
        tasks.abort_all();
    }
    let ended_at = warden_event::now_ns();
    let labels = recorder.labels(
        scenario,
        &plan,
        RunInfo {
            seed,
            mode: RunMode::Live,
            target: Some(gateway),
            started_at,
            ended_at,
        },
    );
    info!(sent = labels.summary.sent, "Simulation ended.");
    Ok(labels)
}

/// HTTP clients of a run: one for the devices that present a header (API key, bearer
/// token) over plain HTTP, and one per device with a client certificate, on the TLS listener.
struct Senders {
    client: reqwest::Client,
    gateway: String,
    /// Per device: its credential header.
    headers: Vec<Option<(HeaderName, HeaderValue)>>,
    /// Per device: its mTLS client, and the TLS listener's base URL.
    tls: Vec<Option<reqwest::Client>>,
    tls_gateway: String,
}

impl Senders {
    fn new(fleet: &crate::Fleet, gateway: &str, options: &LiveOptions) -> Result<Self, SimError> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(options.request_timeout)
            .pool_max_idle_per_host(options.max_in_flight)
            .build()?;
        let headers = fleet
            .credential_headers(warden_event::now_ns() / 1_000_000_000)
            .map_err(|e| SimError::Token(e.to_string()))?
            .into_iter()
            .map(|h| {
                h.map(|(name, value)| {
                    (
                        HeaderName::from_static(name),
                        HeaderValue::from_str(&value)
                            .unwrap_or(HeaderValue::from_static("invalid")),
                    )
                })
            })
            .collect();
        let mut tls = vec![None; fleet.devices.len()];
        let mut tls_gateway = String::new();
        if fleet.uses_client_certs() {
            let url = options.gateway_tls.as_deref().unwrap_or_default();
            match reqwest::Url::parse(url) {
                Ok(u) if u.scheme() == "https" && u.has_host() => {}
                _ => {
                    return Err(SimError::GatewayTls(if url.is_empty() {
                        String::new()
                    } else {
                        format!(" (not `{url}`)")
                    }));
                }
            }
            tls_gateway = url.trim_end_matches('/').to_string();
            let pki = fleet.pki()?;
            let root = reqwest::Certificate::from_pem(pki.ca_pem().as_bytes())?;
            for d in fleet
                .devices
                .iter()
                .filter(|d| d.credential == crate::Credential::ClientCert)
            {
                let cert = pki.device(&d.identity)?;
                tls[d.index] = Some(
                    reqwest::Client::builder()
                        .no_proxy()
                        .use_rustls_tls()
                        .tls_built_in_root_certs(false)
                        .add_root_certificate(root.clone())
                        .identity(reqwest::Identity::from_pem(cert.identity_pem().as_bytes())?)
                        .timeout(options.request_timeout)
                        .pool_max_idle_per_host(4)
                        .build()?,
                );
            }
        }
        Ok(Self {
            client,
            gateway: gateway.to_string(),
            headers,
            tls,
            tls_gateway,
        })
    }

    /// The HTTP request of a planned request.
    fn build(&self, p: &Planned) -> reqwest::RequestBuilder {
        let r: &SimRequest = &p.request;
        let method =
            reqwest::Method::from_bytes(r.method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let tls = match &r.auth {
            Auth::Device(d) => self.tls.get(*d).and_then(Option::as_ref),
            _ => None,
        };
        let (client, base) = match tls {
            Some(c) => (c, &self.tls_gateway),
            None => (&self.client, &self.gateway),
        };
        let mut req = client
            .request(method, format!("{base}{}", r.path))
            .header("x-forwarded-for", r.ip.to_string())
            .header("user-agent", r.user_agent);
        match &r.auth {
            Auth::None => {}
            Auth::Device(d) => {
                if let Some(Some((name, value))) = self.headers.get(*d) {
                    req = req.header(name.clone(), value.clone());
                }
            }
            Auth::Key(k) => req = req.header("x-api-key", k.as_str()),
        }
        finish(req, r)
    }
}

/// Fault header and body of a request.
fn finish(mut req: reqwest::RequestBuilder, r: &SimRequest) -> reqwest::RequestBuilder {
    if let Some(f) = r.fault {
        req = req.header(FAULT_HEADER, f.to_string());
    }
    match body(&r.body) {
        Some((content_type, bytes)) => req.header("content-type", content_type).body(bytes),
        None => req,
    }
}

/// The bytes of a payload: JSON padded to its size (cut short when malformed), or zeros.
pub fn body(p: &Payload) -> Option<(&'static str, Bytes)> {
    let len = (p.len as usize).min(MAX_BODY);
    match p.kind {
        BodyKind::Empty => None,
        BodyKind::Binary => Some((
            "application/octet-stream",
            Bytes::from_static(&ZEROS[..len]),
        )),
        BodyKind::Json => {
            let mut s = String::from("{\"v\":21.5,\"ok\":true,\"pad\":\"");
            let pad = len.saturating_sub(s.len() + 2);
            s.extend(std::iter::repeat_n('x', pad));
            s.push_str("\"}");
            if p.malformed {
                s.truncate(s.len() / 2);
            }
            Some(("application/json", Bytes::from(s)))
        }
    }
}

/// Send a request and read its response to the end.
async fn send(request: reqwest::RequestBuilder, recorder: &Recorder) -> Seen {
    match request.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let upstream = resp.headers().contains_key(UPSTREAM_HEADER);
            // A body cut short still counts as answered with this status.
            let _ = resp.bytes().await;
            match (upstream, status) {
                (true, s) => Seen::Through(s),
                (false, 403) => Seen::Refused,
                (false, s) => Seen::Gateway(s),
            }
        }
        Err(e) => {
            let kind = if e.is_timeout() {
                "timeout"
            } else if e.is_connect() {
                "connect"
            } else if e.is_body() || e.is_decode() {
                "body"
            } else {
                "request"
            };
            tracing::debug!(error = %e, kind, "Request failed.");
            recorder.failure(kind);
            Seen::Failed
        }
    }
}
