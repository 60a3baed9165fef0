//! What the live-configuration tests share: an upstream that answers everything and a bus
//! with the gateway's topics.

use std::net::SocketAddr;
use std::sync::Arc;

use warden_bus::{Bus, EmbeddedBus, EmbeddedConfig, TopicSpec};
use warden_config::WardenConfig;

/// An upstream answering 200 `ok` on every path.
#[allow(dead_code)] // not every test binary uses every helper
pub async fn upstream() -> SocketAddr {
    let app = axum::Router::new().fallback(|| async { "ok" });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// An embedded bus with `config`'s events and decisions topics.
pub async fn bus(config: &WardenConfig) -> Arc<dyn Bus> {
    let bus = EmbeddedBus::new(EmbeddedConfig::default());
    let t = &config.bus.topics;
    let spec = |name: &str, compacted| TopicSpec {
        name: name.to_string(),
        partitions: 1,
        compacted,
        retention_ms: None,
    };
    bus.ensure_topics(&[spec(&t.events, false), spec(&t.decisions, true)])
        .await
        .expect("topics");
    Arc::new(bus)
}

/// A gateway serving `config` on a loopback port and its admin API on another; both stop
/// when this is dropped.
#[allow(dead_code)] // not every test binary uses every helper
pub struct Served {
    pub gateway: SocketAddr,
    pub admin: SocketAddr,
    _stop: Vec<tokio::sync::oneshot::Sender<()>>,
}

/// Start a gateway for `config` (on an embedded bus with its topics) and serve it.
#[allow(dead_code)]
pub async fn serve(config: &WardenConfig) -> Served {
    let gateway = warden_gateway::Gateway::start(config, bus(config).await)
        .await
        .expect("gateway");
    let admin = gateway.admin().clone();
    let bind = || async {
        tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
    };
    let (listener, admin_listener) = (bind().await, bind().await);
    let addrs = (
        listener.local_addr().expect("addr"),
        admin_listener.local_addr().expect("addr"),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(admin.serve(admin_listener, async {
        let _ = admin_stopped.await;
    }));
    tokio::spawn(gateway.serve(listener, async {
        let _ = stopped.await;
    }));
    Served {
        gateway: addrs.0,
        admin: addrs.1,
        _stop: vec![stop, admin_stop],
    }
}
