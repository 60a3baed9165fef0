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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_messages_go_through_the_whole_chain_to_the_backend() -> anyhow::Result<()> {
    let rig = Rig::start(None).await?;

    // MQTT 3.1.1: QoS 1 to the device's own telemetry topic reaches the backend as the rule
    // says, with the exact payload, without the device's key, and is acknowledged.
    let mut o = rumqttc::MqttOptions::new("dev-1", "127.0.0.1", rig.mqtt.port());
    o.set_credentials("dev-1", KEY_1);
    let (c4, mut el4) = rumqttc::AsyncClient::new(o, 16);
    let payload = br#"{"t":21.5}"#.to_vec();
    c4.publish(
        "devices/dev-1/telemetry",
        rumqttc::QoS::AtLeastOnce,
        false,
        payload.clone(),
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ev = tokio::time::timeout_at(deadline.into(), el4.poll())
            .await
            .context("no PUBACK (3.1.1)")??;
        if let rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)) = ev {
            break;
        }
    }
    {
        let seen = rig.seen.lock();
        let s = seen.first().context("backend saw nothing")?;
        assert_eq!(s.method, "POST");
        assert_eq!(s.path, "/api/devices/dev-1/telemetry");
        assert_eq!(s.body, payload);
        assert_eq!(s.content_type, "application/json");
        assert!(
            !s.api_key,
            "the device's API key must not reach the backend"
        );
    }
    c4.disconnect().await?;

    // MQTT 5: another device's topic, a topic RBAC does not allow, an unknown topic: refused
    // with reason codes, and the backend sees none of them.
    let (c5, mut rx) = v5_client(rig.mqtt, "dev-1:probe", KEY_1).await;
    next(&mut rx, Duration::from_secs(10), |p| match p {
        Ok(P5::ConnAck(a)) if a.code == ConnectReturnCode::Success => Some(()),
        _ => None,
    })
    .await
    .context("CONNACK")?;
    let before = rig.seen.lock().len();
    for (topic, want) in [
        ("devices/dev-2/telemetry", PubAckReason::NotAuthorized),
        ("devices/dev-1/status", PubAckReason::NotAuthorized),
        ("devices/dev-1/unknown", PubAckReason::TopicNameInvalid),
        ("devices/dev-1/fail", PubAckReason::UnspecifiedError),
    ] {
        c5.publish(topic, Q5::AtLeastOnce, false, b"x".to_vec())
            .await?;
        let got = next(&mut rx, Duration::from_secs(10), |p| match p {
            Ok(P5::PubAck(a)) => Some(a.reason),
            _ => None,
        })
        .await?;
        assert_eq!(got, want, "PUBACK for {topic}");
    }
    let after: Vec<String> = rig.seen.lock()[before..]
        .iter()
        .map(|s| s.path.clone())
        .collect();
    assert_eq!(
        after,
        vec!["/api/devices/dev-1/fail".to_string()],
        "only the allowed topic reached the backend"
    );

    // Commands downstream: an allowed subscription is granted, another device's refused; the
    // admin API delivers to the subscribed session.
    c5.subscribe("devices/dev-1/commands/#", Q5::AtLeastOnce)
        .await?;
    c5.subscribe("devices/dev-2/commands/#", Q5::AtLeastOnce)
        .await?;
    let mut codes = Vec::new();
    for _ in 0..2 {
        codes.push(
            next(&mut rx, Duration::from_secs(10), |p| match p {
                Ok(P5::SubAck(a)) => Some(a.return_codes.clone()),
                _ => None,
            })
            .await?,
        );
    }
    assert_eq!(
        codes[0],
        vec![SubscribeReasonCode::Success(Q5::AtLeastOnce)]
    );
    assert_eq!(codes[1], vec![SubscribeReasonCode::NotAuthorized]);
    let (status, body) = rig
        .admin(
            reqwest::Method::POST,
            "/admin/mqtt/publish",
            serde_json::json!({"identity": "dev-1", "topic": "devices/dev-1/commands/reboot", "payload": "now", "qos": 1}),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    let cmd = next(&mut rx, Duration::from_secs(10), |p| match p {
        Ok(P5::Publish(p)) => Some((p.topic.clone(), p.payload.clone())),
        _ => None,
    })
    .await?;
    assert_eq!(&cmd.0[..], b"devices/dev-1/commands/reboot");
    assert_eq!(&cmd.1[..], b"now");

    // The connection's message limit: a burst past it is refused with `quota exceeded`.
    let mut quota = 0;
    for _ in 0..40 {
        c5.publish(
            "devices/dev-1/telemetry",
            Q5::AtLeastOnce,
            false,
            b"{}".to_vec(),
        )
        .await?;
    }
    for _ in 0..40 {
        let r = next(&mut rx, Duration::from_secs(10), |p| match p {
            Ok(P5::PubAck(a)) => Some(a.reason),
            _ => None,
        })
        .await?;
        if r == PubAckReason::QuotaExceeded {
            quota += 1;
        }
    }
    assert!(
        quota >= 10,
        "a burst of 40 against a burst allowance of 20: {quota} refused"
    );

    // Wrong key, and a client id naming another device: refused at CONNECT.
    let (_bad, mut brx) = v5_client(rig.mqtt, "dev-1", "not-a-key").await;
    let e = next(&mut brx, Duration::from_secs(10), |p| match p {
        Ok(P5::ConnAck(a)) => Some(format!("{:?}", a.code)),
        Err(e) => Some(e.clone()),
        _ => None,
    })
    .await?;
    assert!(e.contains("BadUserNamePassword"), "{e}");
    let (_spoof, mut srx) = v5_client(rig.mqtt, "dev-2", KEY_1).await;
    let e = next(&mut srx, Duration::from_secs(10), |p| match p {
        Ok(P5::ConnAck(a)) => Some(format!("{:?}", a.code)),
        Err(e) => Some(e.clone()),
        _ => None,
    })
    .await?;
    assert!(e.contains("ClientIdentifierNotValid"), "{e}");

    // Quarantine: the open session is disconnected at once, a reconnect is refused.
    let (status, body) = rig
        .admin(
            reqwest::Method::POST,
            "/admin/quarantines",
            serde_json::json!({"subject": {"kind": "identity", "value": "dev-1"}, "ttl_s": 60}),
        )
        .await?;
    assert!(status < 300, "{status} {body}");
    let t0 = Instant::now();
    let why = next(&mut rx, Duration::from_secs(5), |p| match p {
        Ok(P5::Disconnect(d)) => Some(format!("{:?}", d.reason_code)),
        Err(e) => Some(e.clone()),
        _ => None,
    })
    .await
    .context("the quarantined session stayed open")?;
    assert!(why.contains("AdministrativeAction"), "{why}");
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "disconnected after {:?}",
        t0.elapsed()
    );
    let (_again, mut arx) = v5_client(rig.mqtt, "dev-1", KEY_1).await;
    let e = next(&mut arx, Duration::from_secs(10), |p| match p {
        Ok(P5::ConnAck(a)) => Some(format!("{:?}", a.code)),
        Err(e) => Some(e.clone()),
        _ => None,
    })
    .await?;
    assert!(e.contains("NotAuthorized"), "{e}");

    // Events: every CONNECT, PUBLISH and SUBSCRIBE, as MQTT, attributed.
    let events = rig.events().await?;
    let mqtt: Vec<&RequestEvent> = events
        .iter()
        .filter(|e| e.protocol == Protocol::Mqtt)
        .collect();
    let find = |method: &str, path: &str, outcome: Outcome| {
        mqtt.iter()
            .any(|e| e.method == method && e.path == path && e.decision == outcome)
    };
    assert!(find("CONNECT", "dev-1", Outcome::Allowed));
    assert!(find("POST", "devices/dev-1/telemetry", Outcome::Allowed));
    assert!(
        mqtt.iter().any(|e| e.path == "devices/dev-1/telemetry"
            && e.route == "devices/{identity}/telemetry"
            && e.identity == "dev-1"
            && e.bytes_in == payload.len() as u64),
        "a translated message is evented with its rule as the route"
    );
    assert!(find(
        "PUBLISH",
        "devices/dev-2/telemetry",
        Outcome::DeniedRbac
    ));
    assert!(find("POST", "devices/dev-1/status", Outcome::DeniedRbac));
    assert!(find(
        "PUBLISH",
        "devices/dev-1/telemetry",
        Outcome::Throttled
    ));
    assert!(find(
        "SUBSCRIBE",
        "devices/dev-2/commands/#",
        Outcome::DeniedRbac
    ));
    assert!(find("CONNECT", "dev-1", Outcome::Quarantined));
    assert!(
        mqtt.iter()
            .any(|e| e.method == "CONNECT" && e.decision == Outcome::DeniedAuth)
    );
    Ok(())
}

/// Debian's mosquitto clients, over TLS with a client certificate and no password: the
/// certificate is the identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_clients_over_tls_with_a_client_certificate() -> anyhow::Result<()> {
    for bin in ["mosquitto_pub", "mosquitto_sub"] {
        if std::process::Command::new(bin)
            .arg("--help")
            .output()
            .is_err()
        {
            bail!(
                "`{bin}` is not installed (Debian package mosquitto-clients; tests/run.sh installs it)"
            );
        }
    }
    let ca = Ca::new("mqtt test CA")?;
    let server = ca.server()?;
    let device = ca.device(
        &format!("{DEVICE_URI}dev-1"),
        "dev-1",
        7,
        days(-1),
        days(30),
    )?;
    let rig = Rig::start(Some((&ca, &server))).await?;
    let mqtts = rig.mqtts.context("TLS listener")?;
    let dir = tempfile::tempdir()?;
    let w = |name: &str, text: &str| -> anyhow::Result<String> {
        let p = dir.path().join(name);
        std::fs::write(&p, text)?;
        Ok(p.display().to_string())
    };
    let (ca_f, cert_f, key_f) = (
        w("ca.pem", &ca.cert_pem)?,
        w("dev.pem", &device.cert_pem)?,
        w("dev.key", &device.key_pem)?,
    );
    let port = mqtts.port().to_string();
    let tls_args: Vec<String> = [
        "-h",
        "localhost",
        "-p",
        &port,
        "--cafile",
        &ca_f,
        "--cert",
        &cert_f,
        "--key",
        &key_f,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();

    // A subscriber for commands, then a command through the admin API.
    let mut sub = std::process::Command::new("mosquitto_sub");
    sub.args(&tls_args)
        .args([
            "-i",
            "dev-1:cmd",
            "-V",
            "mqttv5",
            "-t",
            "devices/dev-1/commands/#",
            "-C",
            "1",
            "-W",
            "15",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let sub = sub.spawn()?;
    let sub = tokio::task::spawn_blocking(move || sub.wait_with_output());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = rig
            .admin(
                reqwest::Method::POST,
                "/admin/mqtt/publish",
                serde_json::json!({"identity": "dev-1", "topic": "devices/dev-1/commands/ping", "payload": "hello"}),
            )
            .await?;
        if status == 200 {
            break;
        }
        if Instant::now() > deadline {
            bail!("the subscriber never connected (admin publish answered {status})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = tokio::time::timeout(Duration::from_secs(20), sub).await???;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "hello",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // QoS 1 publish, MQTT 3.1.1 and 5.0: delivered to the backend.
    for (version, body) in [("mqttv311", "{\"v\":311}"), ("mqttv5", "{\"v\":5}")] {
        let mut args = tls_args.clone();
        args.extend(
            [
                "-i",
                "dev-1",
                "-V",
                version,
                "-q",
                "1",
                "-t",
                "devices/dev-1/telemetry",
                "-m",
                body,
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        let out = run("mosquitto_pub", args).await?;
        assert!(
            out.status.success(),
            "{version}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            rig.seen
                .lock()
                .iter()
                .any(|s| s.body == body.as_bytes() && s.path == "/api/devices/dev-1/telemetry"),
            "{version}: the backend did not get the message"
        );
    }

    // Without a certificate or password: refused.
    let args = [
        "-h",
        "localhost",
        "-p",
        &port,
        "--cafile",
        &ca_f,
        "-i",
        "dev-1",
        "-q",
        "1",
        "-t",
        "devices/dev-1/telemetry",
        "-m",
        "x",
    ];
    let out = run(
        "mosquitto_pub",
        args.iter().map(|s| s.to_string()).collect(),
    )
    .await?;
    assert!(!out.status.success(), "an anonymous client was accepted");
    // Plain listener, wrong password: refused.
    let plain = rig.mqtt.port().to_string();
    let args = [
        "-h",
        "127.0.0.1",
        "-p",
        &plain,
        "-i",
        "dev-1",
        "-u",
        "dev-1",
        "-P",
        "wrong",
        "-q",
        "1",
        "-t",
        "devices/dev-1/telemetry",
        "-m",
        "x",
    ];
    let out = run(
        "mosquitto_pub",
        args.iter().map(|s| s.to_string()).collect(),
    )
    .await?;
    assert!(!out.status.success(), "a wrong password was accepted");
    let n = rig.seen.lock().iter().filter(|s| s.body == b"x").count();
    assert_eq!(n, 0, "refused clients reached the backend");

    let events = rig.events().await?;
    assert!(events.iter().any(|e| e.protocol == Protocol::Mqtt
        && e.identity == "dev-1"
        && e.tls.as_ref().is_some_and(
            |t| t.client_cert_fingerprint.as_deref() == Some(device.fingerprint().as_str())
        )));
    Ok(())
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

/// libcoap's command-line client, or why it cannot run.
fn coap_client() -> anyhow::Result<&'static str> {
    let client = "coap-client-notls";
    if std::process::Command::new(client)
        .arg("-h")
        .output()
        .is_err()
    {
        bail!(
            "`{client}` is not installed (Debian package libcoap3-bin; tests/run.sh installs it)"
        );
    }
    Ok(client)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coap_requests_go_through_the_whole_chain_to_the_backend() -> anyhow::Result<()> {
    let client = coap_client()?;
    let rig = Rig::start(None).await?;
    let base = format!("coap://127.0.0.1:{}", rig.coap.port());
    let key_opt = format!("65001,{KEY_1}");

    // libcoap's client: a confirmable POST with the key in the credential option reaches the
    // backend with its exact payload and content type; a non-confirmable GET returns the
    // backend's body.
    let args: Vec<String> = [
        "-m",
        "post",
        "-O",
        &key_opt,
        "-t",
        "json",
        "-e",
        "{\"t\":7}",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("{base}/devices/dev-1/telemetry")])
    .collect();
    let out = run(client, args).await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    {
        let seen = rig.seen.lock();
        let s = seen
            .iter()
            .find(|s| s.path == "/api/devices/dev-1/telemetry")
            .context("the backend did not get the POST")?;
        assert_eq!(s.method, "POST");
        assert_eq!(s.body, b"{\"t\":7}");
        assert_eq!(s.content_type, "application/json");
        assert!(!s.api_key, "the device's key must not reach the backend");
    }
    let args: Vec<String> = ["-N", "-O", &key_opt]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("{base}/devices/dev-1/config")])
        .collect();
    let out = run(client, args).await?;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "seen /api/devices/dev-1/config",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Uri-Query options become the backend request's query string.
    let args: Vec<String> = ["-N", "-O", &key_opt]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("{base}/devices/dev-1/config?since=5&unit=C")])
        .collect();
    let out = run(client, args).await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        rig.seen
            .lock()
            .iter()
            .any(|s| s.path == "/api/devices/dev-1/config?since=5&unit=C"),
        "the query reached the backend: {:?}",
        rig.seen
            .lock()
            .iter()
            .map(|s| s.path.clone())
            .collect::<Vec<_>>()
    );

    // Raw datagrams, from the attacker's side.
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let key = KEY_1.as_bytes();
    // An argument's own `&`, `#` and spaces stay inside it (percent-encoded): no parameter
    // can be smuggled into the backend's query.
    let (code, ..) = coap_exchange(
        &sock,
        rig.coap,
        &coap_request(
            true,
            20,
            1,
            &["devices", "dev-1", "config"],
            &[(65001, key), (15, b"a=b&admin=1#x y")],
            b"",
        ),
    )
    .await?;
    assert_eq!(code, "2.05");
    assert!(
        rig.seen
            .lock()
            .iter()
            .any(|s| s.path == "/api/devices/dev-1/config?a=b%26admin=1%23x%20y"),
        "{:?}",
        rig.seen
            .lock()
            .iter()
            .map(|s| s.path.clone())
            .collect::<Vec<_>>()
    );
    // A query that is not UTF-8 is refused before anything else.
    let (code, ..) = coap_exchange(
        &sock,
        rig.coap,
        &coap_request(
            true,
            21,
            1,
            &["devices", "dev-1", "config"],
            &[(65001, key), (15, &[0xff, 0xfe])],
            b"",
        ),
    )
    .await?;
    assert_eq!(code, "4.00");
    let before = rig.seen.lock().len();
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (
            coap_request(true, 1, 2, &["devices", "dev-1", "telemetry"], &[], b"x"),
            "4.01",
            "no credential",
        ),
        (
            coap_request(
                true,
                2,
                2,
                &["devices", "dev-1", "telemetry"],
                &[(65001, b"wrong-key")],
                b"x",
            ),
            "4.01",
            "wrong key",
        ),
        (
            coap_request(
                true,
                3,
                2,
                &["devices", "dev-2", "telemetry"],
                &[(65001, key)],
                b"x",
            ),
            "4.03",
            "another device's resource",
        ),
        (
            coap_request(
                true,
                4,
                2,
                &["devices", "dev-1", "nothing", "here"],
                &[(65001, key)],
                b"x",
            ),
            "4.04",
            "no resource",
        ),
        (
            coap_request(
                true,
                5,
                2,
                &["devices", "dev-1", "config"],
                &[(65001, key)],
                b"x",
            ),
            "4.05",
            "method not allowed on the resource",
        ),
        (
            coap_request(
                true,
                6,
                1,
                &["devices", "dev-1", "secrets"],
                &[(65001, key)],
                b"",
            ),
            "4.03",
            "RBAC refuses the translated path",
        ),
        (
            coap_request(
                true,
                7,
                3,
                &["devices", "dev-1", "telemetry"],
                &[(65001, key), (27, &[0x0e])],
                b"x",
            ),
            "4.02",
            "Block1 (block-wise) is not supported",
        ),
        (
            coap_request(
                true,
                8,
                1,
                &["devices", "dev-1", "big"],
                &[(65001, key)],
                b"",
            ),
            "2.05",
            "a response larger than a datagram: its first block",
        ),
        (
            coap_request(
                true,
                9,
                1,
                &["devices", "..", "config"],
                &[(65001, key)],
                b"",
            ),
            "4.03",
            "a dot segment for the identity",
        ),
    ];
    for (datagram, want, what) in &cases {
        let (code, ty, _, id) = coap_exchange(&sock, rig.coap, datagram).await?;
        assert_eq!(&code, want, "{what}");
        assert_eq!(
            ty,
            coap_lite::MessageType::Acknowledgement,
            "{what}: a piggybacked ACK"
        );
        assert_eq!(id, u16::from_be_bytes([datagram[2], datagram[3]]), "{what}");
    }
    let reached: Vec<String> = rig.seen.lock()[before..]
        .iter()
        .map(|s| s.path.clone())
        .collect();
    assert_eq!(
        reached,
        vec!["/api/devices/dev-1/big".to_string()],
        "only the allowed GET reached the backend"
    );

    // A confirmable request resent with the same message id is answered again from the cache,
    // and reaches the backend once.
    let post = coap_request(
        true,
        100,
        2,
        &["devices", "dev-1", "telemetry"],
        &[(65001, key)],
        b"once",
    );
    let first = coap_exchange(&sock, rig.coap, &post).await?;
    let second = coap_exchange(&sock, rig.coap, &post).await?;
    assert_eq!(first.0, "2.04");
    assert_eq!(first, second);
    let n = rig.seen.lock().iter().filter(|s| s.body == b"once").count();
    assert_eq!(n, 1, "a retransmission reached the backend again");

    // A malformed confirmable datagram (token length 15, reserved) gets a Reset.
    let (_, ty, _, _) = coap_exchange(
        &sock,
        rig.coap,
        &[
            0x4f, 0x02, 0x12, 0x34, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
        ],
    )
    .await?;
    assert_eq!(ty, coap_lite::MessageType::Reset);

    // Quarantine: refused with 4.03, nothing forwarded.
    let (status, body) = rig
        .admin(
            reqwest::Method::POST,
            "/admin/quarantines",
            serde_json::json!({"subject": {"kind": "identity", "value": "dev-1"}, "ttl_s": 60}),
        )
        .await?;
    assert!(status < 300, "{status} {body}");
    let (code, ..) = coap_exchange(
        &sock,
        rig.coap,
        &coap_request(
            true,
            200,
            2,
            &["devices", "dev-1", "telemetry"],
            &[(65001, key)],
            b"after",
        ),
    )
    .await?;
    assert_eq!(code, "4.03");
    assert_eq!(
        rig.seen
            .lock()
            .iter()
            .filter(|s| s.body == b"after")
            .count(),
        0
    );

    let events = rig.events().await?;
    let coap: Vec<&RequestEvent> = events
        .iter()
        .filter(|e| e.protocol == Protocol::Coap)
        .collect();
    assert!(coap.iter().any(|e| e.route == "coap-telemetry"
        && e.path == "devices/dev-1/telemetry"
        && e.identity == "dev-1"
        && e.decision == Outcome::Allowed));
    assert!(coap.iter().any(|e| e.decision == Outcome::DeniedAuth));
    assert!(
        coap.iter()
            .any(|e| e.decision == Outcome::Quarantined && e.identity == "dev-1")
    );
    assert!(
        coap.iter()
            .any(|e| e.path == "devices/dev-2/telemetry" && e.decision == Outcome::DeniedRbac)
    );
    Ok(())
}

/// One MQTT device of the end-to-end test: QoS 0 messages on `topics` (one after another)
/// every `period`, at `flood` per second instead from `flood_after`; reports when its session
/// ended (the gateway disconnected it) and whether a reconnect was refused.
async fn mqtt_device(
    addr: SocketAddr,
    identity: String,
    key: String,
    topics: Vec<String>,
    period: Duration,
    flood: Option<(Duration, f64)>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Option<Duration>> {
    let mut o = rumqttc::MqttOptions::new(identity.clone(), addr.ip().to_string(), addr.port());
    o.set_credentials(identity.clone(), key);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_inflight(1000);
    let (client, mut el) = rumqttc::AsyncClient::new(o, 10_000);
    let started = Instant::now();
    let ended = Arc::new(Mutex::new(None::<Duration>));
    let e = ended.clone();
    tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(_) => {}
                Err(_) => {
                    *e.lock() = Some(started.elapsed());
                    return;
                }
            }
        }
    });
    let mut i = 0usize;
    while !*stop.borrow() && ended.lock().is_none() {
        let topic = &topics[i % topics.len()];
        i += 1;
        let _ = client.try_publish(
            topic.as_str(),
            rumqttc::QoS::AtMostOnce,
            false,
            br#"{"t":20.5}"#.to_vec(),
        );
        let wait = match flood {
            Some((after, rate)) if started.elapsed() >= after => {
                Duration::from_secs_f64(1.0 / rate)
            }
            _ => period,
        };
        tokio::time::sleep(wait).await;
    }
    let _ = client.disconnect().await;
    let ended = *ended.lock();
    Ok(ended)
}

/// The whole loop over MQTT: devices publish through the gateway, the processor (the shipped
/// default pipeline, shorter warm-up) judges their events like any others, and a device that
/// floods, and one that walks other devices' topics, are quarantined and disconnected while
/// the rest keep their sessions; a device reconnecting again and again raises a
/// `reconnect_storm` alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_floods_and_topic_enumeration_are_quarantined_end_to_end() -> anyhow::Result<()> {
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let up = upstream.local_addr()?;
    tokio::spawn(warden_sim::demo_upstream(upstream));
    let devices = warden_sim::demo_keys(24, 5);
    let mut base = WardenConfig::default();
    base.gateway.mqtt = warden_config::MqttConfig {
        listen: Some("127.0.0.1:0".parse()?),
        messages_per_s: 1000.0,
        burst_messages: 1000,
        publish: vec![warden_config::MqttPublishRule {
            topic: "devices/{identity}/telemetry".into(),
            method: "POST".into(),
            path: "/api/devices/{identity}/telemetry".into(),
            payload: warden_config::PayloadMode::Raw,
            content_type: Some("application/json".into()),
            name: None,
        }],
        ..Default::default()
    };
    let config = warden_tests::e2e::config(&base, "gw-mqtt-e2e", up, &devices);
    let bus = warden::make_bus(&config)?;
    warden::ensure_topics(&*bus, &config).await?;
    let stack = warden::Stack::start(
        bus.clone(),
        &config,
        warden::StackParts {
            gateway: true,
            processor: Some(warden_tests::e2e::fast_pipeline()?),
            dashboard: false,
        },
    )
    .await?;
    let mqtt = stack.mqtt_addr.context("MQTT listener")?;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let own = |d: &warden_sim::DemoDevice| vec![format!("devices/{}/telemetry", d.identity)];
    let mut tasks = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        if i == 2 {
            // The flapping device, below.
            tasks.push(tokio::spawn(async { anyhow::Ok(None) }));
            continue;
        }
        let (topics, flood) = match i {
            // Floods at 100 messages/s after 10 s.
            0 => (own(d), Some((Duration::from_secs(10), 100.0))),
            // Walks the other devices' telemetry topics at 10/s after 10 s.
            1 => (
                devices
                    .iter()
                    .map(|o| format!("devices/{}/telemetry", o.identity))
                    .chain((0..200).map(|n| format!("devices/sensor-{:04}/telemetry", 1000 + n)))
                    .collect(),
                Some((Duration::from_secs(10), 10.0)),
            ),
            _ => (own(d), None),
        };
        tasks.push(tokio::spawn(mqtt_device(
            mqtt,
            d.identity.clone(),
            d.key.clone(),
            topics,
            Duration::from_millis(500),
            flood,
            stop.clone(),
        )));
    }
    // A flapping device: connects, and disconnects, every 400 ms for 25 s.
    let flapper = devices[2].clone();
    let flapping = tokio::spawn(async move {
        let t0 = Instant::now();
        let mut accepted = 0usize;
        while t0.elapsed() < Duration::from_secs(25) {
            let mut o = rumqttc::MqttOptions::new(
                flapper.identity.clone(),
                mqtt.ip().to_string(),
                mqtt.port(),
            );
            o.set_credentials(flapper.identity.clone(), flapper.key.clone());
            let (c, mut el) = rumqttc::AsyncClient::new(o, 10);
            if let Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)))) =
                tokio::time::timeout(Duration::from_secs(5), el.poll()).await
            {
                accepted += 1;
            }
            let _ = c.disconnect().await;
            let _ = tokio::time::timeout(Duration::from_millis(200), el.poll()).await;
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        accepted
    });
    // Until both attackers are disconnected (at most 60 s), then a little longer.
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && tasks.iter().take(2).any(|t| !t.is_finished()) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let accepted = flapping.await?;
    let _ = stop_tx.send(true);
    let mut ended = Vec::new();
    for t in tasks {
        ended.push(t.await??);
    }
    let mut storms = Vec::new();
    warden_bus::read_to_end(
        &*bus,
        &config.bus.topics.alerts,
        Duration::from_secs(10),
        |m| {
            if let Ok(a) = warden_event::decode::<warden_event::Alert>(&m.payload)
                && a.detector == "reconnect_storm"
            {
                storms.push(a.subject.value);
            }
        },
    )
    .await?;
    let q = stack.quarantine.clone().context("quarantine set")?;
    let live: Vec<String> = q
        .active(warden_event::now_ns())
        .into_iter()
        .map(|s| s.value)
        .collect();
    stack.stop().await?;
    let flooder = ended[0].context("the flooding device was never disconnected")?;
    assert!(
        flooder > Duration::from_secs(10),
        "disconnected before it flooded: {flooder:?}"
    );
    assert!(
        ended[1].is_some(),
        "the topic-walking device was never disconnected"
    );
    for (i, e) in ended.iter().enumerate().skip(3) {
        assert!(
            e.is_none(),
            "normal device {i} was disconnected after {e:?}"
        );
    }
    assert!(
        accepted > 40,
        "the flapping device connected {accepted} times"
    );
    assert_eq!(
        storms.first(),
        Some(&devices[2].identity),
        "reconnect_storm alerts: {storms:?}"
    );
    assert!(
        live.contains(&devices[0].identity),
        "flooder not quarantined: {live:?}"
    );
    assert!(
        live.contains(&devices[1].identity),
        "enumerator not quarantined: {live:?}"
    );
    for d in &devices[2..] {
        assert!(!live.contains(&d.identity), "{} quarantined", d.identity);
    }
    Ok(())
}

/// A GET whose response is larger than a datagram comes block-wise (RFC 7959 Block2):
/// libcoap's client reassembles it by itself; from raw datagrams, every block carries the
/// same ETag and the total size, a smaller block size asked for is honoured, each block
/// request goes through the chain to the backend again, and a block past the end, BERT, and
/// Block2 on a POST are refused with 4.02.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coap_large_responses_come_block_wise() -> anyhow::Result<()> {
    use coap_lite::{CoapOption, Packet};
    let client = coap_client()?;
    let rig = Rig::start(None).await?;
    let base = format!("coap://127.0.0.1:{}", rig.coap.port());
    let key_opt = format!("65001,{KEY_1}");
    let before = rig.seen.lock().len();
    let args: Vec<String> = ["-O", &key_opt]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("{base}/devices/dev-1/big")])
        .collect();
    let out = run(client, args).await?;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "x".repeat(4000),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reached = rig.seen.lock().len() - before;
    assert!(
        reached >= 4,
        "each of the four blocks was a request through the chain: {reached}"
    );

    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let key = KEY_1.as_bytes();
    let get = |id: u16, block: Option<&[u8]>| {
        let mut extra: Vec<(u16, &[u8])> = vec![(65001, key)];
        if let Some(b) = block {
            extra.push((23, b));
        }
        coap_request(true, id, 1, &["devices", "dev-1", "big"], &extra, b"")
    };
    let exchange = |datagram: Vec<u8>| {
        let sock = &sock;
        async move {
            sock.send_to(&datagram, rig.coap).await?;
            let mut buf = [0u8; 1500];
            let (n, _) =
                tokio::time::timeout(Duration::from_secs(10), sock.recv_from(&mut buf)).await??;
            anyhow::Ok((
                n,
                Packet::from_bytes(&buf[..n]).map_err(|e| anyhow::anyhow!("{e:?}"))?,
            ))
        }
    };
    let opt = |p: &Packet, o: CoapOption| p.get_first_option(o).cloned().unwrap_or_default();
    let mut body = Vec::new();
    let mut etags = Vec::new();
    for num in 0u8..4 {
        // NUM, M = 0, SZX 6 (1024 bytes); block 0 also without asking.
        let (n, p) = exchange(get(
            200 + u16::from(num),
            (num > 0).then_some(&[(num << 4) | 6][..]),
        ))
        .await?;
        assert!(n <= 1280, "a block fits a datagram: {n}");
        assert_eq!(p.header.code.to_string(), "2.05");
        let more = num < 3;
        assert_eq!(
            opt(&p, CoapOption::Block2),
            vec![(num << 4) | (u8::from(more) << 3) | 6],
            "block {num}"
        );
        assert_eq!(opt(&p, CoapOption::Size2), 4000u16.to_be_bytes().to_vec());
        etags.push(opt(&p, CoapOption::ETag));
        body.extend_from_slice(&p.payload);
    }
    assert_eq!(body, "x".repeat(4000).into_bytes());
    assert!(etags.iter().all(|e| e.len() == 8 && *e == etags[0]));
    // 64-byte blocks when asked: NUM 5, SZX 2.
    let (_, p) = exchange(get(210, Some(&[(5 << 4) | 2]))).await?;
    assert_eq!(p.payload.len(), 64);
    assert_eq!(opt(&p, CoapOption::Block2), vec![(5 << 4) | 8 | 2]);
    for (datagram, what) in [
        (get(211, Some(&[(9 << 4) | 6])), "a block past the end"),
        (get(212, Some(&[0x07])), "BERT"),
        (
            coap_request(
                true,
                213,
                2,
                &["devices", "dev-1", "telemetry"],
                &[(65001, key), (23, &[0x06])],
                b"{}",
            ),
            "Block2 on a POST",
        ),
    ] {
        let (_, p) = exchange(datagram).await?;
        assert_eq!(p.header.code.to_string(), "4.02", "{what}");
    }
    Ok(())
}
