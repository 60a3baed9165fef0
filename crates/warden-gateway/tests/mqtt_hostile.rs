//! The MQTT listener from the attacker's side, over raw sockets: garbage, unsupported protocol
//! levels, oversized and malformed packets, QoS 2, a second CONNECT, connections that never
//! CONNECT, and a client id taken over — each ends with a clear refusal or a closed connection,
//! never a panic, and nothing reaches the backend.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warden_config::{WardenConfig, hash_api_key};

const KEY: &str = "mqtt-hostile-key-0123456789abcdef";

struct Rig {
    mqtt: SocketAddr,
    hits: Arc<AtomicUsize>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn rig() -> Rig {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let h = h.clone();
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            "ok"
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let up = l.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(l, app).await });
    let text = format!(
        r#"
[gateway.mqtt]
listen = "127.0.0.1:0"
connect_timeout_ms = 300
max_packet_bytes = 1024

[[gateway.mqtt.publish]]
topic = "devices/{{identity}}/telemetry"
path = "/api/{{identity}}"

[[routes]]
name = "api"
prefix = "/api"
upstream = "http://{up}"

[[api_keys]]
id = "k1"
sha256 = "{key}"
identity = "dev-1"
roles = []
"#,
        key = hash_api_key(KEY),
    );
    let config = WardenConfig::from_toml(&text).expect("valid config");
    let gateway = warden_gateway::Gateway::start(&config, common::bus(&config).await)
        .await
        .expect("gateway");
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mqtt = l.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = gateway.mqtt();
    tokio::spawn(server.serve(Some(l), None, async {
        let _ = stopped.await;
    }));
    // The gateway itself must outlive the test (its emitter, decision follower).
    tokio::spawn(async move {
        let _keep = gateway;
        futures::future::pending::<()>().await
    });
    Rig {
        mqtt,
        hits,
        _stop: stop,
    }
}

fn packet(p: v4::Packet) -> Vec<u8> {
    let mut b = BytesMut::new();
    p.write(&mut b, usize::MAX).expect("encode");
    b.to_vec()
}

fn connect(client_id: &str, key: &str) -> Vec<u8> {
    let mut c = v4::Connect::new(client_id);
    c.set_login("dev-1", key);
    packet(v4::Packet::Connect(c))
}

/// Everything the server sends until it closes the connection (5 s at most).
async fn until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut all))
        .await
        .expect("the server did not close the connection");
    all
}

async fn connected(addr: SocketAddr, client_id: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(&connect(client_id, KEY)).await.expect("write");
    let mut ack = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut ack))
        .await
        .expect("CONNACK in time")
        .expect("CONNACK");
    assert_eq!(ack, [0x20, 0x02, 0x00, 0x00], "CONNACK accepted");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_are_closed_and_reach_nothing() {
    let rig = rig().await;

    // Not MQTT at all.
    let mut s = TcpStream::connect(rig.mqtt).await.expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    assert!(until_closed(&mut s).await.is_empty());

    // MQTT 3.1 (`MQIsdp`, level 3): refused with `unacceptable protocol version`.
    let mut s = TcpStream::connect(rig.mqtt).await.expect("connect");
    let mut v31 = vec![0x10, 0x00, 0x00, 0x06];
    v31.extend_from_slice(b"MQIsdp");
    v31.extend_from_slice(&[0x03, 0x02, 0x00, 0x3c, 0x00, 0x01, b'x']);
    v31[1] = (v31.len() - 2) as u8;
    s.write_all(&v31).await.expect("write");
    assert_eq!(until_closed(&mut s).await, vec![0x20, 0x02, 0x00, 0x01]);

    // No CONNECT within `connect_timeout_ms`: closed.
    let mut s = TcpStream::connect(rig.mqtt).await.expect("connect");
    let t0 = std::time::Instant::now();
    assert!(until_closed(&mut s).await.is_empty());
    assert!(t0.elapsed() < Duration::from_secs(3));

    // A CONNECT trickled a byte at a time is still read (framing across reads).
    let mut s = TcpStream::connect(rig.mqtt).await.expect("connect");
    for b in connect("dev-1", KEY) {
        s.write_all(&[b]).await.expect("write");
    }
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).await.expect("CONNACK");
    assert_eq!(ack, [0x20, 0x02, 0x00, 0x00]);
    s.write_all(&[0xC0, 0x00]).await.expect("PINGREQ");
    let mut pong = [0u8; 2];
    s.read_exact(&mut pong).await.expect("PINGRESP");
    assert_eq!(pong, [0xD0, 0x00]);

    // A packet declaring more than `max_packet_bytes`: closed before it is read.
    let mut s = connected(rig.mqtt, "dev-1").await;
    s.write_all(&[0x30, 0xff, 0xff, 0xff, 0x7f])
        .await
        .expect("write");
    assert!(until_closed(&mut s).await.is_empty());

    // A malformed PUBLISH (topic length past the packet's end): closed.
    let mut s = connected(rig.mqtt, "dev-1").await;
    s.write_all(&[0x30, 0x03, 0x00, 0x10, b'a'])
        .await
        .expect("write");
    assert!(until_closed(&mut s).await.is_empty());

    // QoS 2 is not supported: closed (3.1.1 has no DISCONNECT from the server).
    let mut s = connected(rig.mqtt, "dev-1").await;
    let p = v4::Publish::new(
        "devices/dev-1/telemetry",
        rumqttc::mqttbytes::QoS::ExactlyOnce,
        "x",
    );
    let mut p = p;
    p.pkid = 1;
    s.write_all(&packet(v4::Packet::Publish(p)))
        .await
        .expect("write");
    assert!(until_closed(&mut s).await.is_empty());

    // A second CONNECT on a connection: a protocol error, closed.
    let mut s = connected(rig.mqtt, "dev-1").await;
    s.write_all(&connect("dev-1", KEY)).await.expect("write");
    assert!(until_closed(&mut s).await.is_empty());

    // A server-to-client packet from a client: closed.
    let mut s = connected(rig.mqtt, "dev-1").await;
    s.write_all(&[0x20, 0x02, 0x00, 0x00]).await.expect("write");
    assert!(until_closed(&mut s).await.is_empty());

    // The same client id again: the first session is closed (taken over), the second serves.
    let mut first = connected(rig.mqtt, "dev-1:a").await;
    let mut second = connected(rig.mqtt, "dev-1:a").await;
    assert!(until_closed(&mut first).await.is_empty());
    second.write_all(&[0xC0, 0x00]).await.expect("PINGREQ");
    let mut pong = [0u8; 2];
    second.read_exact(&mut pong).await.expect("PINGRESP");
    assert_eq!(pong, [0xD0, 0x00]);

    assert_eq!(
        rig.hits.load(Ordering::SeqCst),
        0,
        "nothing reached the backend"
    );
}
