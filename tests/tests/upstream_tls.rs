//! HTTPS upstreams over real sockets, certificates made in the test: a route trusting the
//! upstream's CA is served, one trusting another CA gets a 502 and the upstream sees nothing,
//! mTLS to a backend that requires a client certificate works with one and fails without, and
//! a CA bundle replaced on disk takes effect without a restart.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use warden_bus::{Bus, EmbeddedBus, EmbeddedConfig, TopicSpec};
use warden_config::{RouteAuth, RouteConfig, UpstreamTlsConfig, WardenConfig};
use warden_gateway::Gateway;
use warden_tests::pki::{Ca, days, replace_file};

/// An HTTPS upstream counting its requests; with `client_ca`, it requires a client
/// certificate signed by it.
async fn https_upstream(
    ca: &Ca,
    client_ca: Option<&Ca>,
) -> anyhow::Result<(SocketAddr, Arc<AtomicUsize>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = Router::new().fallback(move |uri: axum::http::Uri| {
        let h = h.clone();
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            format!("upstream saw {}", uri.path())
        }
    });
    warden_tests::https::serve(listener, app, ca, client_ca)?;
    Ok((addr, hits))
}

fn route(name: &str, upstream: SocketAddr, tls: UpstreamTlsConfig) -> RouteConfig {
    RouteConfig {
        name: name.into(),
        prefix: format!("/{name}"),
        upstream: format!("https://{upstream}"),
        upstream_tls: Some(tls),
        deprecation: None,
        resilience: Default::default(),
        timeout_ms: 3_000,
        strip_prefix: false,
        auth: RouteAuth::None,
        methods: vec![],
        require_mtls: false,
        forward_bearer: false,
        allow_underscore_headers: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstreams_are_verified_can_use_mtls_and_reload_their_files() -> anyhow::Result<()> {
    let servers = Ca::new("upstream servers")?;
    let rogue = Ca::new("another CA")?;
    let clients = Ca::new("gateway clients")?;
    let gateway_cert = clients.device("urn:warden:gateway:gw-1", "gw-1", 1, days(-1), days(30))?;
    let (plain, plain_hits) = https_upstream(&servers, None).await?;
    let (mtls, mtls_hits) = https_upstream(&servers, Some(&clients)).await?;

    let dir = tempfile::tempdir()?;
    let file = |name: &str, text: &str| -> anyhow::Result<String> {
        let p = dir.path().join(name);
        std::fs::write(&p, text)?;
        Ok(p.display().to_string())
    };
    let servers_ca = file("servers-ca.pem", &servers.cert_pem)?;
    let changing_ca = file("changing-ca.pem", &rogue.cert_pem)?;
    let cert = file("gw.pem", &gateway_cert.cert_pem)?;
    let key = file("gw.key", &gateway_cert.key_pem)?;
    let trust = |ca: &str| UpstreamTlsConfig {
        ca_file: Some(ca.to_string()),
        ..UpstreamTlsConfig::default()
    };

    let config = WardenConfig {
        routes: vec![
            route("trusted", plain, trust(&servers_ca)),
            route("changing", plain, trust(&changing_ca)),
            // The certificate names 127.0.0.1 and localhost: another name is refused.
            route(
                "misnamed",
                plain,
                UpstreamTlsConfig {
                    server_name: Some("api.example.com".into()),
                    ..trust(&servers_ca)
                },
            ),
            route(
                "mtls",
                mtls,
                UpstreamTlsConfig {
                    cert_file: Some(cert.clone()),
                    key_file: Some(key.clone()),
                    ..trust(&servers_ca)
                },
            ),
            route("nocert", mtls, trust(&servers_ca)),
        ],
        ..WardenConfig::default()
    };
    config.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let bus = EmbeddedBus::new(EmbeddedConfig::default());
    let t = &config.bus.topics;
    let spec = |name: &str, compacted| TopicSpec {
        name: name.into(),
        partitions: 1,
        compacted,
        retention_ms: None,
    };
    bus.ensure_topics(&[spec(&t.events, false), spec(&t.decisions, true)])
        .await?;
    let bus: Arc<dyn Bus> = Arc::new(bus);
    let gateway = Gateway::start(&config, bus).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let gw = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(gateway.serve(listener, async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::builder().no_proxy().build()?;
    let get = |path: &str| {
        let (http, url) = (http.clone(), format!("http://{gw}/{path}"));
        async move {
            let resp = http.get(url).send().await?;
            Ok::<_, anyhow::Error>((resp.status().as_u16(), resp.text().await?))
        }
    };

    let (status, body) = get("trusted/x").await?;
    assert_eq!((status, body.as_str()), (200, "upstream saw /trusted/x"));
    let seen = plain_hits.load(Ordering::SeqCst);
    assert_eq!(seen, 1);
    for path in ["changing/x", "misnamed/x"] {
        assert_eq!(get(path).await?.0, 502, "{path}");
    }
    assert_eq!(
        plain_hits.load(Ordering::SeqCst),
        seen,
        "an upstream the route does not trust received nothing"
    );

    let (status, body) = get("mtls/y").await?;
    assert_eq!((status, body.as_str()), (200, "upstream saw /mtls/y"));
    assert_eq!(get("nocert/y").await?.0, 502, "no client certificate");
    assert_eq!(mtls_hits.load(Ordering::SeqCst), 1);

    // The operator fixes the CA bundle on disk: the route trusts the upstream within seconds,
    // with no restart and no reload command.
    replace_file(
        std::path::Path::new(&changing_ca),
        servers.cert_pem.as_bytes(),
    )?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = get("changing/z").await?;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new CA bundle was never used"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Config validation names what is wrong with TLS settings.
    let mut bad = config.clone();
    bad.routes[0].upstream_tls = Some(UpstreamTlsConfig {
        ca_file: Some(dir.path().join("missing.pem").display().to_string()),
        cert_file: Some(cert),
        key_file: None,
        server_name: Some("not a name".into()),
    });
    bad.routes[1].upstream = format!("http://{plain}");
    let errs = bad.validate().err().context("refused")?.to_string();
    for needle in [
        "routes[0].upstream_tls.ca_file",
        "routes[0].upstream_tls.cert_file",
        "routes[0].upstream_tls.server_name",
        "routes[1].upstream_tls",
    ] {
        assert!(errs.contains(needle), "{needle} missing: {errs}");
    }

    let _ = stop.send(());
    served.await??;
    Ok(())
}
