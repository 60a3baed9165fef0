//! MQTT and CoAP devices through the gateway's security chain, with real clients over real
//! sockets: rumqttc (MQTT 3.1.1 and 5.0) on the plain listener, Debian's `mosquitto_pub` and
//! `mosquitto_sub` over TLS with a client certificate, libcoap's `coap-client` and raw UDP
//! datagrams for CoAP. Asserted from both ends: what the device is told (CONNACK, PUBACK and
//! SUBACK codes, DISCONNECT, CoAP response codes) and what the HTTP backend actually
//! received, plus the events on the bus.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use parking_lot::Mutex;
use rumqttc::v5::mqttbytes::QoS as Q5;
use rumqttc::v5::mqttbytes::v5::{
    ConnectReturnCode, Packet as P5, PubAckReason, SubscribeReasonCode,
};
use tokio::sync::mpsc;
use warden_bus::{Bus, EmbeddedBus, EmbeddedConfig, TopicSpec};
use warden_config::{WardenConfig, hash_api_key};
use warden_event::{Outcome, Protocol, RequestEvent};
use warden_tests::pki::{Ca, days};

const KEY_1: &str = "mqtt-device-one-0123456789abcdef";
const KEY_2: &str = "mqtt-device-two-0123456789abcdef";
const TOKEN: &str = "mqtt-admin-token-0123456789abcdef";
const DEVICE_URI: &str = "spiffe://warden.test/device/";

/// What the backend received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    body: Vec<u8>,
    content_type: String,
    api_key: bool,
}

async fn backend() -> anyhow::Result<(SocketAddr, Arc<Mutex<Vec<Seen>>>)> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let s = s.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20)
                .await
                .unwrap_or_default();
            s.lock().push(Seen {
                method: parts.method.to_string(),
                path: parts.uri.to_string(),
                body: body.to_vec(),
                content_type: parts
                    .headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string(),
                api_key: parts.headers.contains_key("x-api-key"),
            });
            if parts.uri.path().ends_with("/fail") {
                (
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "down".to_string(),
                )
            } else if parts.uri.path().ends_with("/big") {
                (axum::http::StatusCode::OK, "x".repeat(4000))
            } else {
                (
                    axum::http::StatusCode::OK,
                    format!("seen {}", parts.uri.path()),
                )
            }
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move { axum::serve(l, app).await });
    Ok((addr, seen))
}

struct Rig {
    mqtt: SocketAddr,
    coap: SocketAddr,
    /// CoAP over DTLS (with `tls`).
    coaps: Option<SocketAddr>,
    mqtts: Option<SocketAddr>,
    admin: SocketAddr,
    bus: Arc<dyn Bus>,
    config: WardenConfig,
    seen: Arc<Mutex<Vec<Seen>>>,
    _files: tempfile::TempDir,
    _stop: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Rig {
    async fn start(tls: Option<(&Ca, &warden_tests::pki::Issued)>) -> anyhow::Result<Self> {
        let (up, seen) = backend().await?;
        let files = tempfile::tempdir()?;
        let policy = files.path().join("policy.toml");
        std::fs::write(
            &policy,
            r#"
[roles.device]
allow = [
  { methods = ["POST"], path = "/api/devices/{identity}/telemetry" },
  { methods = ["POST"], path = "/api/devices/{identity}/fail" },
  { methods = ["GET"], path = "/api/devices/{identity}/config" },
  { methods = ["GET"], path = "/api/devices/{identity}/big" },
]
"#,
        )?;
        let tls_block = match tls {
            Some((ca, server)) => {
                let w = |name: &str, text: &str| -> anyhow::Result<String> {
                    let p = files.path().join(name);
                    std::fs::write(&p, text)?;
                    Ok(p.display().to_string())
                };
                let registry = w(
                    "registry.toml",
                    r#"
[[identity]]
id = "dev-1"
tenant = "acme"
device_type = "sensor"
roles = ["device"]
auth_methods = ["client_cert", "api_key"]

[[identity]]
id = "dev-2"
tenant = "acme"
device_type = "sensor"
roles = ["device"]
auth_methods = ["client_cert", "api_key"]
"#,
                )?;
                format!(
                    r#"
[identity.registry]
file = "{registry}"

[gateway.tls]
listen = "127.0.0.1:0"
cert_file = "{}"
key_file = "{}"
[gateway.tls.client_auth]
ca_files = ["{}"]
identity_field = "san_uri"
identity_prefix = "{DEVICE_URI}"
required = false
"#,
                    w("server.pem", &server.cert_pem)?,
                    w("server.key", &server.key_pem)?,
                    w("ca.pem", &ca.cert_pem)?,
                )
            }
            None => String::new(),
        };
        let text = format!(
            r#"
[gateway]
id = "gw-mqtt"
listen = "127.0.0.1:0"
{tls_block}
[gateway.mqtt]
listen = "127.0.0.1:0"
{tls_listen}
messages_per_s = 5.0
burst_messages = 20
max_keep_alive_s = 30
subscribe = ["devices/{{identity}}/commands/#"]

[[gateway.mqtt.publish]]
topic = "devices/{{identity}}/telemetry"
path = "/api/devices/{{identity}}/telemetry"
content_type = "application/json"

[[gateway.mqtt.publish]]
topic = "devices/{{identity}}/status"
path = "/api/devices/{{identity}}/status"
payload = "json"

[[gateway.mqtt.publish]]
topic = "devices/{{identity}}/fail"
path = "/api/devices/{{identity}}/fail"

[gateway.coap]
listen = "127.0.0.1:0"
{dtls_listen}

[[gateway.coap.resources]]
path = "devices/{{identity}}/telemetry"
to = "/api/devices/{{identity}}/telemetry"
methods = ["POST", "PUT"]
name = "coap-telemetry"

[[gateway.coap.resources]]
path = "devices/{{identity}}/{{what}}"
to = "/api/devices/{{identity}}/{{what}}"
methods = ["GET"]

[admin]
token_sha256 = "{token}"

[rbac]
policy = "{policy}"
reload_interval_ms = 0

[[routes]]
name = "api"
prefix = "/api"
upstream = "http://{up}"

[[api_keys]]
id = "k1"
sha256 = "{k1}"
identity = "dev-1"
tenant = "acme"
device_type = "sensor"
roles = ["device"]

[[api_keys]]
id = "k2"
sha256 = "{k2}"
identity = "dev-2"
tenant = "acme"
device_type = "sensor"
roles = ["device"]
"#,
            dtls_listen = if tls.is_some() {
                "dtls_listen = \"127.0.0.1:0\""
            } else {
                ""
            },
            tls_listen = if tls.is_some() {
                "tls_listen = \"127.0.0.1:0\""
            } else {
                ""
            },
            token = hash_api_key(TOKEN),
            policy = policy.display(),
            k1 = hash_api_key(KEY_1),
            k2 = hash_api_key(KEY_2),
        );
        let config = WardenConfig::from_toml(&text).map_err(|e| anyhow::anyhow!("{e}"))?;
        let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::new(EmbeddedConfig::default()));
        let t = &config.bus.topics;
        let spec = |name: &str, compacted| TopicSpec {
            name: name.to_string(),
            partitions: 1,
            compacted,
            retention_ms: None,
        };
        bus.ensure_topics(&[spec(&t.events, false), spec(&t.decisions, true)])
            .await?;
        let gateway = warden_gateway::Gateway::start(&config, bus.clone()).await?;
        let bind = || tokio::net::TcpListener::bind("127.0.0.1:0");
        let (http, admin_l, mqtt_l) = (bind().await?, bind().await?, bind().await?);
        let mqtts_l = match tls {
            Some(_) => Some(bind().await?),
            None => None,
        };
        let (mqtt, admin) = (mqtt_l.local_addr()?, admin_l.local_addr()?);
        let mqtts = mqtts_l.as_ref().map(|l| l.local_addr()).transpose()?;
        let mut stops = Vec::new();
        let mut stopper = || {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            stops.push(tx);
            async move {
                let _ = rx.await;
            }
        };
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        let coap = udp.local_addr()?;
        let s = stopper();
        tokio::spawn(gateway.coap(&config.gateway.coap).serve(udp, s));
        let coaps = match config.gateway.coap.dtls_listen {
            Some(a) => {
                let dtls = gateway.coap(&config.gateway.coap).bind_dtls(a).await?;
                let addr = dtls.local_addr();
                let s = stopper();
                tokio::spawn(dtls.serve(s));
                Some(addr)
            }
            None => None,
        };
        let server = gateway.mqtt();
        let s = stopper();
        tokio::spawn(server.serve(Some(mqtt_l), mqtts_l, s));
        let s = stopper();
        tokio::spawn(gateway.admin().clone().serve(admin_l, s));
        let s = stopper();
        tokio::spawn(gateway.serve(http, s));
        Ok(Self {
            mqtt,
            coap,
            coaps,
            mqtts,
            admin,
            bus,
            config,
            seen,
            _files: files,
            _stop: stops,
        })
    }

    async fn events(&self) -> anyhow::Result<Vec<RequestEvent>> {
        tokio::time::sleep(Duration::from_millis(300)).await;
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

    async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let r = reqwest::Client::builder()
            .no_proxy()
            .build()?
            .request(method, format!("http://{}{path}", self.admin))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(serde_json::Value::Null)))
    }
}

/// An MQTT 5 client whose packets arrive on a channel (connection errors as `Err`).
async fn v5_client(
    addr: SocketAddr,
    client_id: &str,
    key: &str,
) -> (
    rumqttc::v5::AsyncClient,
    mpsc::UnboundedReceiver<Result<P5, String>>,
) {
    let mut o = rumqttc::v5::MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    o.set_credentials("ignored", key);
    o.set_keep_alive(Duration::from_secs(10));
    let (client, mut el) = rumqttc::v5::AsyncClient::new(o, 64);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(rumqttc::v5::Event::Incoming(p)) => {
                    if tx.send(Ok(p)).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(Err(format!("{e:?}")));
                    return;
                }
            }
        }
    });
    (client, rx)
}

/// The next packet matching `want`, within `wait`.
async fn next<T>(
    rx: &mut mpsc::UnboundedReceiver<Result<P5, String>>,
    wait: Duration,
    mut want: impl FnMut(&Result<P5, String>) -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(p)) => {
                if let Some(t) = want(&p) {
                    return Ok(t);
                }
            }
            Ok(None) => bail!("client stopped"),
            Err(_) => bail!("nothing expected within {wait:?}"),
        }
    }
}

/// Run a client to its end (15 s at most).
async fn run(bin: &'static str, args: Vec<String>) -> anyhow::Result<std::process::Output> {
    let child = std::process::Command::new(bin)
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    Ok(tokio::time::timeout(
        Duration::from_secs(15),
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await???)
}

/// A CoAP request as raw bytes: `confirmable`, message id `id`, method code (`1` GET, `2`
/// POST, `3` PUT), Uri-Path segments, extra options `(number, value)`, payload.
fn coap_request(
    confirmable: bool,
    id: u16,
    method: u8,
    path: &[&str],
    extra: &[(u16, &[u8])],
    payload: &[u8],
) -> Vec<u8> {
    use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
    let mut p = Packet::new();
    p.header.set_type(if confirmable {
        MessageType::Confirmable
    } else {
        MessageType::NonConfirmable
    });
    p.header.message_id = id;
    p.header.code = MessageClass::Request(match method {
        1 => RequestType::Get,
        2 => RequestType::Post,
        3 => RequestType::Put,
        _ => RequestType::Delete,
    });
    p.set_token(vec![0xAB, (id & 0xff) as u8]);
    for s in path {
        p.add_option(CoapOption::UriPath, s.as_bytes().to_vec());
    }
    for (n, v) in extra {
        p.add_option(CoapOption::Unknown(*n), v.to_vec());
    }
    p.payload = payload.to_vec();
    p.to_bytes().expect("encodable request")
}

/// libcoap's command-line client without (D)TLS, or why it cannot run.
fn coap_client() -> anyhow::Result<&'static str> {
    libcoap("coap-client-notls")
}

/// libcoap's command-line client `bin`, or why it cannot run.
fn libcoap(bin: &'static str) -> anyhow::Result<&'static str> {
    if std::process::Command::new(bin).arg("-h").output().is_err() {
        bail!("`{bin}` is not installed (Debian package libcoap3-bin; tests/run.sh installs it)");
    }
    Ok(bin)
}

/// `ca`'s certificate and `device`'s certificate and key as PEM files in `dir`: their paths.
fn device_pki_files(
    dir: &std::path::Path,
    ca: &Ca,
    device: &warden_tests::pki::Issued,
) -> anyhow::Result<(String, String, String)> {
    let w = |name: &str, text: &str| -> anyhow::Result<String> {
        let p = dir.join(name);
        std::fs::write(&p, text)?;
        Ok(p.display().to_string())
    };
    Ok((
        w("ca.pem", &ca.cert_pem)?,
        w("dev.pem", &device.cert_pem)?,
        w("dev.key", &device.key_pem)?,
    ))
}

/// Send `datagram` to `to` and read the answer as a packet (with its size).
async fn coap_packet(
    sock: &tokio::net::UdpSocket,
    to: SocketAddr,
    datagram: &[u8],
) -> anyhow::Result<(usize, coap_lite::Packet)> {
    sock.send_to(datagram, to).await?;
    let mut buf = [0u8; 1500];
    let (n, _) = tokio::time::timeout(Duration::from_secs(10), sock.recv_from(&mut buf)).await??;
    Ok((
        n,
        coap_lite::Packet::from_bytes(&buf[..n]).map_err(|e| anyhow::anyhow!("{e:?}"))?,
    ))
}

/// Send `datagram` to `to` and read the answer: its code (`"4.01"`), type and payload.
async fn coap_exchange(
    sock: &tokio::net::UdpSocket,
    to: SocketAddr,
    datagram: &[u8],
) -> anyhow::Result<(String, coap_lite::MessageType, Vec<u8>, u16)> {
    sock.send_to(datagram, to).await?;
    let mut buf = [0u8; 1500];
    let (n, _) = tokio::time::timeout(Duration::from_secs(10), sock.recv_from(&mut buf))
        .await
        .context("no CoAP answer")??;
    let p = coap_lite::Packet::from_bytes(&buf[..n]).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok((
        p.header.code.to_string(),
        p.header.get_type(),
        p.payload.clone(),
        p.header.message_id,
    ))
}

mod coap;
mod coap_blocks;
mod coap_dtls;
mod mqtt;
mod mqtt_enforcement;
mod mqtt_sessions;
