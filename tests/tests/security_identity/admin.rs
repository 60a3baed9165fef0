//! The admin API authenticated by operator client certificates (mTLS), instead of or next to
//! the admin token: a valid operator certificate is accepted; a device certificate (another
//! CA), a self-made certificate claiming an operator's name, an expired one, or none at all is
//! refused at the handshake; a certificate of the operator CA that names no allowed operator,
//! or any credential that does not hold next to one that does, is refused with 401. No refused
//! call changes anything (the only quarantines are the accepted calls'), and the operator CA
//! reloads through `POST /admin/reload`, reaching connections already open.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::{Value, json};
use warden::{ensure_topics, make_bus};
use warden_bus::Bus;
use warden_config::{WardenConfig, hash_api_key};
use warden_event::{AuthMethod, Outcome, RequestEvent, SubjectKind};
use warden_gateway::{Gateway, QuarantineSet, TlsRejection, TlsStats};
use warden_tests::pki::{Ca, Issued, days, replace_file};

use crate::common::{DEVICE_URI, eventually, upstream};

const TOKEN: &str = "admin-token-7a1c9e3b5d2f4860";
const DEV_KEY: &str = "key-admin-suite-dev-1-0f1e2d3c";

/// The CAs and certificates of the admin scenario.
struct Pki {
    server_ca: Ca,
    ops_ca: Ca,
    device_ca: Ca,
    alice: Issued,
    bob: Issued,
    alice_expired: Issued,
    /// "ops-alice" again, from a CA nobody trusts.
    alice_forged: Issued,
    /// A valid device certificate (the gateway's device CA).
    device: Issued,
}

impl Pki {
    fn new() -> anyhow::Result<Self> {
        let ops_ca = Ca::new("warden test operators")?;
        let device_ca = Ca::new("warden test devices")?;
        let rogue = Ca::new("rogue operators")?;
        let op = |ca: &Ca, name: &str, serial, from, to| {
            ca.device(
                &format!("urn:warden:operator:{name}"),
                name,
                serial,
                from,
                to,
            )
        };
        Ok(Self {
            server_ca: Ca::new("warden test servers")?,
            alice: op(&ops_ca, "ops-alice", 1, days(-1), days(30))?,
            bob: op(&ops_ca, "ops-bob", 2, days(-1), days(30))?,
            alice_expired: op(&ops_ca, "ops-alice", 3, days(-30), days(-1))?,
            alice_forged: op(&rogue, "ops-alice", 1, days(-1), days(30))?,
            device: device_ca.device(
                &format!("{DEVICE_URI}dev-1"),
                "dev-1",
                10,
                days(-1),
                days(30),
            )?,
            ops_ca,
            device_ca,
        })
    }
}

/// A running gateway with its admin API over TLS.
struct AdminGw {
    pki: Pki,
    dir: tempfile::TempDir,
    bus: Arc<dyn Bus>,
    config: WardenConfig,
    admin: SocketAddr,
    gateway: SocketAddr,
    quarantine: Arc<QuarantineSet>,
    admin_stats: Arc<TlsStats>,
    emit: Arc<warden_gateway::EmitStats>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl AdminGw {
    /// `token`: configure the admin token too; `allowed`: `admin.tls.allowed_names`.
    async fn start(token: bool, allowed: &[&str]) -> anyhow::Result<Self> {
        let pki = Pki::new()?;
        let dir = tempfile::tempdir()?;
        let p = |n: &str| dir.path().join(n);
        let server = pki.server_ca.server()?;
        std::fs::write(p("server.pem"), &server.cert_pem)?;
        std::fs::write(p("server.key"), &server.key_pem)?;
        std::fs::write(p("ops-ca.pem"), &pki.ops_ca.cert_pem)?;
        std::fs::write(p("devices-ca.pem"), &pki.device_ca.cert_pem)?;
        let up = upstream().await?;
        let names: Vec<String> = allowed.iter().map(|n| format!("\"{n}\"")).collect();
        let text = format!(
            r#"
[gateway]
id = "gw-admin-mtls"
listen = "127.0.0.1:0"

[gateway.tls]
listen = "127.0.0.1:0"
cert_file = "{server_cert}"
key_file = "{server_key}"
[gateway.tls.client_auth]
ca_files = ["{devices_ca}"]
identity_field = "san_uri"
identity_prefix = "{DEVICE_URI}"

[dashboard]
listen = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"
token_sha256 = "{token}"
[admin.tls]
cert_file = "{server_cert}"
key_file = "{server_key}"
client_ca_files = ["{ops_ca}"]
allowed_names = [{names}]
handshake_timeout_ms = 2000

[[routes]]
name = "api"
prefix = "/api"
upstream = "http://{up}"
auth = "api_key"

[[api_keys]]
id = "k-dev-1"
sha256 = "{dev_key}"
identity = "dev-1"
"#,
            server_cert = p("server.pem").display(),
            server_key = p("server.key").display(),
            devices_ca = p("devices-ca.pem").display(),
            ops_ca = p("ops-ca.pem").display(),
            token = if token {
                hash_api_key(TOKEN)
            } else {
                String::new()
            },
            names = names.join(", "),
            up = up.addr,
            dev_key = hash_api_key(DEV_KEY),
        );
        let config = WardenConfig::from_toml(&text).map_err(|e| anyhow::anyhow!("{e}"))?;
        let bus = make_bus(&config)?;
        ensure_topics(&*bus, &config).await?;
        let gw = Gateway::start(&config, bus.clone()).await?;
        let admin_api = gw.admin().clone();
        ensure!(admin_api.is_tls(), "admin listener must serve TLS");
        let admin_stats = admin_api.tls_stats().context("admin tls stats")?;
        let quarantine = gw.quarantine().clone();
        let emit = gw.emitter().stats().clone();
        let admin_l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let gw_l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let (admin, gateway) = (admin_l.local_addr()?, gw_l.local_addr()?);
        let (stop, rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let tasks = vec![
            tokio::spawn({
                let s = stopped(rx.clone());
                async move { Ok(admin_api.serve(admin_l, s).await?) }
            }),
            tokio::spawn({
                let s = stopped(rx);
                async move { Ok(gw.serve(gw_l, s).await?) }
            }),
        ];
        Ok(Self {
            pki,
            dir,
            bus,
            config,
            admin,
            gateway,
            quarantine,
            admin_stats,
            emit,
            stop,
            tasks,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.admin.port())
    }

    /// An HTTPS client trusting the server CA, presenting `cert` if given.
    fn client(&self, cert: Option<&Issued>) -> anyhow::Result<reqwest::Client> {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(
                self.pki.server_ca.cert_pem.as_bytes(),
            )?)
            .no_proxy()
            .timeout(Duration::from_secs(10));
        if let Some(c) = cert {
            b = b.identity(reqwest::Identity::from_pem(c.identity_pem().as_bytes())?);
        }
        Ok(b.build()?)
    }

    /// A call that would quarantine `victim` if it were accepted.
    fn quarantine_call(
        &self,
        client: &reqwest::Client,
        victim: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let mut r = client
            .post(self.url("/admin/quarantines"))
            .json(&json!({ "subject": { "kind": "identity", "value": victim }, "ttl_s": 600 }));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r
    }

    /// Identities quarantined now.
    fn quarantined(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .quarantine
            .live(warden_event::now_ns())
            .into_iter()
            .filter(|d| d.subject.kind == SubjectKind::Identity)
            .map(|d| d.subject.value.clone())
            .collect();
        v.sort();
        v
    }

    /// The gateway's answer to dev-1's API key.
    async fn device_status(&self) -> anyhow::Result<u16> {
        Ok(reqwest::Client::builder()
            .no_proxy()
            .build()?
            .get(format!("http://{}/api/x", self.gateway))
            .header("x-api-key", DEV_KEY)
            .send()
            .await?
            .status()
            .as_u16())
    }

    /// Stop, and return the admin audit events.
    async fn stop(self) -> anyhow::Result<Vec<RequestEvent>> {
        use std::sync::atomic::Ordering::Relaxed;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.emit.published.load(Relaxed) < self.emit.emitted.load(Relaxed) {
            ensure!(std::time::Instant::now() < deadline, "events not published");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.stop.send(true);
        for t in self.tasks {
            t.await??;
        }
        let mut events = Vec::new();
        warden_bus::read_to_end(
            &*self.bus,
            &self.config.bus.topics.events,
            Duration::from_secs(5),
            |m| {
                if let Ok(e) = warden_event::decode::<RequestEvent>(&m.payload)
                    && e.route == "admin"
                {
                    events.push(e);
                }
            },
        )
        .await?;
        Ok(events)
    }
}

/// What an admin attack must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Status(u16),
    HandshakeRefused,
}

/// Send `req`; compare with `expect`; record a failure otherwise.
async fn check(
    failures: &mut Vec<String>,
    name: &str,
    expect: Expect,
    req: reqwest::RequestBuilder,
) {
    match (req.send().await, expect) {
        (Ok(r), Expect::Status(s)) if r.status().as_u16() == s => {
            if s >= 400 {
                let body: Value = r.json().await.unwrap_or(Value::Null);
                if body["error"]["status"] != s || body["error"]["request_id"].as_str().is_none() {
                    failures.push(format!("{name}: not the generic error body: {body}"));
                }
            }
        }
        (Err(_), Expect::HandshakeRefused) => {}
        (Ok(r), _) => failures.push(format!("{name}: got {}, want {expect:?}", r.status())),
        (Err(e), _) => failures.push(format!("{name}: failed ({e}), want {expect:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_accepts_operator_certificates_and_refuses_everything_else() -> anyhow::Result<()>
{
    // No token configured: an operator certificate is the only way in.
    let g = AdminGw::start(false, &[]).await?;
    let p = &g.pki;
    let alice = g.client(Some(&p.alice))?;
    let mut failures = Vec::new();

    // Refused, each trying to quarantine a victim: none may take effect.
    let attacks: Vec<(&str, Expect, reqwest::RequestBuilder)> = vec![
        (
            "no client certificate",
            Expect::HandshakeRefused,
            g.quarantine_call(&g.client(None)?, "victim-1", None),
        ),
        (
            "device certificate (device CA, not an operator CA)",
            Expect::HandshakeRefused,
            g.quarantine_call(&g.client(Some(&p.device))?, "victim-2", None),
        ),
        (
            "self-made certificate claiming ops-alice",
            Expect::HandshakeRefused,
            g.quarantine_call(&g.client(Some(&p.alice_forged))?, "victim-3", None),
        ),
        (
            "expired operator certificate",
            Expect::HandshakeRefused,
            g.quarantine_call(&g.client(Some(&p.alice_expired))?, "victim-4", None),
        ),
        (
            "device certificate with a made-up token",
            Expect::HandshakeRefused,
            g.quarantine_call(&g.client(Some(&p.device))?, "victim-5", Some(TOKEN)),
        ),
        (
            "plain HTTP to the HTTPS admin listener",
            Expect::HandshakeRefused,
            reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(5))
                .build()?
                .post(format!("http://{}/admin/quarantines", g.admin))
                .json(&json!({ "subject": { "kind": "identity", "value": "victim-6" } })),
        ),
        (
            "operator certificate with a wrong token",
            Expect::Status(401),
            g.quarantine_call(&alice, "victim-7", Some("not-the-token")),
        ),
    ];
    let n_attacks = attacks.len();
    for (name, expect, req) in attacks {
        check(&mut failures, name, expect, req).await;
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n"));
    ensure!(g.quarantined().is_empty(), "{:?}", g.quarantined());

    // The operator: reads, and quarantines dev-1, which the gateway then refuses.
    ensure!(g.device_status().await? == 200);
    let r = alice.get(g.url("/admin/quarantines")).send().await?;
    ensure!(r.status() == 200, "{}", r.status());
    let r = g.quarantine_call(&alice, "dev-1", None).send().await?;
    ensure!(r.status() == 201, "{}", r.status());
    ensure!(g.quarantined() == ["dev-1"], "{:?}", g.quarantined());
    ensure!(g.device_status().await? == 403);

    // Each refused handshake was counted under its reason.
    let stats = g.admin_stats.clone();
    eventually(Duration::from_secs(3), || {
        let s = stats.clone();
        async move {
            Ok(s.rejected(TlsRejection::MissingCertificate) == 1
                && s.rejected(TlsRejection::UnknownIssuer) == 3
                && s.rejected(TlsRejection::Expired) == 1
                && s.rejected(TlsRejection::Protocol) == 1)
        }
    })
    .await
    .with_context(|| {
        format!(
            "admin handshake refusals: missing {} unknown_issuer {} expired {} protocol {}",
            stats.rejected(TlsRejection::MissingCertificate),
            stats.rejected(TlsRejection::UnknownIssuer),
            stats.rejected(TlsRejection::Expired),
            stats.rejected(TlsRejection::Protocol)
        )
    })?;
    let mut text = String::new();
    TlsStats::render_listeners("gw-admin-mtls", &[("admin", &stats)], &mut text);
    ensure!(
        text.contains(
            "warden_gateway_tls_handshakes_refused_total{gateway=\"gw-admin-mtls\",listener=\"admin\",reason=\"unknown_issuer\"} 3"
        ),
        "{text}"
    );

    // Audit: the operator's calls as `admin` by client certificate with its fingerprint; the
    // refused one as `anonymous`.
    let alice_fp = p.alice.fingerprint();
    let events = g.stop().await?;
    ensure!(events.len() == 3, "{events:#?}");
    for e in &events {
        ensure!(e.auth.method == AuthMethod::ClientCert, "{e:?}");
        ensure!(
            e.tls
                .as_ref()
                .and_then(|t| t.client_cert_fingerprint.as_deref())
                == Some(alice_fp.as_str()),
            "{e:?}"
        );
        if e.status == 401 {
            ensure!(
                e.identity == "anonymous" && e.decision == Outcome::DeniedAuth,
                "{e:?}"
            );
        } else {
            ensure!(
                e.identity == "admin" && e.decision == Outcome::Allowed,
                "{e:?}"
            );
        }
    }
    println!("{n_attacks} admin mTLS attacks refused as expected");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_certificates_next_to_the_token_and_operator_ca_reload() -> anyhow::Result<()> {
    // Token configured, and only ops-alice among the operator CA's certificates is admitted.
    let g = AdminGw::start(true, &["ops-alice"]).await?;
    let p = &g.pki;
    let alice = g.client(Some(&p.alice))?;
    let bob = g.client(Some(&p.bob))?;
    let anonymous = g.client(None)?;
    let mut failures = Vec::new();

    let attacks: Vec<(&str, Expect, reqwest::RequestBuilder)> = vec![
        (
            "neither certificate nor token",
            Expect::Status(401),
            g.quarantine_call(&anonymous, "victim-1", None),
        ),
        (
            "operator-CA certificate of a name not allowed",
            Expect::Status(401),
            g.quarantine_call(&bob, "victim-2", None),
        ),
        (
            "not-allowed certificate next to the valid token",
            Expect::Status(401),
            g.quarantine_call(&bob, "victim-3", Some(TOKEN)),
        ),
        (
            "allowed certificate next to a wrong token",
            Expect::Status(401),
            g.quarantine_call(&alice, "victim-4", Some("wrong-token")),
        ),
        (
            "device certificate next to the valid token",
            Expect::HandshakeRefused,
            g.quarantine_call(&g.client(Some(&p.device))?, "victim-5", Some(TOKEN)),
        ),
    ];
    for (name, expect, req) in attacks {
        check(&mut failures, name, expect, req).await;
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n"));
    ensure!(g.quarantined().is_empty(), "{:?}", g.quarantined());

    // Either credential alone works.
    let r = g
        .quarantine_call(&anonymous, "by-token", Some(TOKEN))
        .send()
        .await?;
    ensure!(r.status() == 201, "token alone: {}", r.status());
    let r = g.quarantine_call(&alice, "by-cert", None).send().await?;
    ensure!(r.status() == 201, "certificate alone: {}", r.status());
    ensure!(g.quarantined() == ["by-cert", "by-token"]);

    // The operator CA is replaced (its key leaked): after the reload, alice's connection
    // opened before it is refused on its next request, and a certificate of the new CA works.
    let new_ca = Ca::new("warden test operators, 2nd")?;
    let alice2 = new_ca.device(
        "urn:warden:operator:ops-alice",
        "ops-alice",
        1,
        days(-1),
        days(30),
    )?;
    let ca_file = g.dir.path().join("ops-ca.pem");
    replace_file(&ca_file, new_ca.cert_pem.as_bytes())?;
    let r = anonymous
        .post(g.url("/admin/reload"))
        .bearer_auth(TOKEN)
        .send()
        .await?;
    ensure!(r.status() == 200, "reload: {}", r.status());
    let v: Value = r.json().await?;
    ensure!(v["admin_tls"]["reloaded"] == true, "{v}");
    let r = alice.get(g.url("/admin/quarantines")).send().await?;
    ensure!(
        r.status() == 401,
        "old operator CA on an open connection: {}",
        r.status()
    );
    let alice2 = g.client(Some(&alice2))?;
    ensure!(
        alice2
            .get(g.url("/admin/quarantines"))
            .send()
            .await?
            .status()
            == 200
    );

    // A CA file that does not load is refused whole; the current CA stays.
    replace_file(&ca_file, b"not a certificate")?;
    let v: Value = anonymous
        .post(g.url("/admin/reload"))
        .bearer_auth(TOKEN)
        .send()
        .await?
        .json()
        .await?;
    ensure!(v["admin_tls"]["reloaded"] == false, "{v}");
    ensure!(
        alice2
            .get(g.url("/admin/quarantines"))
            .send()
            .await?
            .status()
            == 200
    );
    ensure!(g.quarantined() == ["by-cert", "by-token"]);
    let events = g.stop().await?;
    ensure!(
        events
            .iter()
            .filter(|e| e.status == 401)
            .all(|e| e.identity == "anonymous" && e.decision == Outcome::DeniedAuth),
        "{events:#?}"
    );
    ensure!(
        events.iter().filter(|e| e.status == 401).count() == 5,
        "4 refused attacks and the stale connection: {events:#?}"
    );
    Ok(())
}
