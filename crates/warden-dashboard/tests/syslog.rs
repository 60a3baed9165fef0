//! Syslog alert sinks against real local receivers: RFC 5424 messages over UDP and over TCP
//! (octet-counted frames), JSON and CEF text, severity floors, a TCP receiver that restarts
//! (reconnection), one that is gone (dead letters), and the counters.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::AsyncReadExt;
use warden_bus::{Bus, EmbeddedBus, EmbeddedConfig, TopicSpec};
use warden_config::{SyslogConfig, SyslogFormat, WardenConfig};
use warden_dashboard::Dashboard;
use warden_dashboard::sink::SinkKind;
use warden_event::{Action, Alert, Decision, Evidence, Severity, Subject};

fn syslog(name: &str, url: &str, format: SyslogFormat) -> SyslogConfig {
    SyslogConfig {
        name: name.into(),
        url: url.into(),
        format,
        facility: 10,
        hostname: Some("warden-test".into()),
        min_severity: "medium".into(),
        decisions: true,
        max_attempts: 3,
        timeout_ms: 1_000,
        queue: 100,
    }
}

async fn start(sinks: Vec<SyslogConfig>) -> (Dashboard, Arc<dyn Bus>, WardenConfig) {
    let mut config = WardenConfig::default();
    config.gateway.decisions_bootstrap_timeout_ms = 5_000;
    config.dashboard.syslog = sinks;
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::new(EmbeddedConfig::default()));
    let t = &config.bus.topics;
    let spec = |name: &str, compacted| TopicSpec {
        name: name.into(),
        partitions: 1,
        compacted,
        retention_ms: None,
    };
    bus.ensure_topics(&[spec(&t.decisions, true), spec(&t.alerts, false)])
        .await
        .expect("topics");
    let dashboard = Dashboard::start(&config, bus.clone()).await.expect("start");
    (dashboard, bus, config)
}

fn alert(id: &str, severity: Severity, subject: Subject) -> Alert {
    Alert {
        v: warden_event::SCHEMA_VERSION,
        id: id.into(),
        // 2026-12-04T09:00:00.250000Z
        ts: 1_796_374_800_250_000_000,
        pipeline: "default".into(),
        detector: "burst".into(),
        subject,
        score: 7.5,
        severity,
        message: "rate=20|burst".into(),
        evidence: Evidence::default(),
        action: Some(Action::Quarantine),
        decision_id: None,
    }
}

fn release(id: &str) -> Decision {
    Decision {
        v: warden_event::SCHEMA_VERSION,
        id: id.into(),
        subject: Subject::identity("dev-9"),
        action: Action::Release,
        until: None,
        reason: "released by alice: checked".into(),
        detector: "console".into(),
        score: 0.0,
        evidence: serde_json::Value::Null,
        decided_at: warden_event::now_ns(),
        limit: None,
    }
}

async fn publish(bus: &Arc<dyn Bus>, topic: &str, payload: Vec<u8>) {
    bus.producer()
        .send(topic, b"dev-9", &payload)
        .await
        .expect("publish");
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Split `<PRI>1 TS HOST APP PROCID MSGID SD TEXT` into its fields.
fn fields(msg: &str) -> (u16, Vec<&str>, &str) {
    let rest = msg.strip_prefix('<').expect("<PRI>");
    let (pri, rest) = rest.split_once('>').expect("PRI>");
    let parts: Vec<&str> = rest.splitn(8, ' ').collect();
    assert_eq!(parts.len(), 8, "{msg}");
    (pri.parse().expect("pri"), parts[..7].to_vec(), parts[7])
}

#[tokio::test]
async fn alerts_and_decisions_reach_a_udp_receiver_as_rfc5424_json() {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("udp://{}", socket.local_addr().expect("addr"));
    let (dashboard, bus, config) = start(vec![syslog("siem", &url, SyslogFormat::Json)]).await;
    let t = &config.bus.topics;
    let low = alert("a-low", Severity::Low, Subject::identity("dev-9"));
    publish(&bus, &t.alerts, warden_event::encode(&low)).await;
    let high = alert("a-high", Severity::High, Subject::identity("dev-9"));
    publish(&bus, &t.alerts, warden_event::encode(&high)).await;
    publish(&bus, &t.decisions, warden_event::encode(&release("d-1"))).await;

    let mut got = Vec::new();
    let mut buf = vec![0u8; 65_536];
    while got.len() < 2 {
        let n = tokio::time::timeout(Duration::from_secs(10), socket.recv(&mut buf))
            .await
            .expect("a datagram")
            .expect("recv");
        got.push(String::from_utf8(buf[..n].to_vec()).expect("utf-8"));
    }
    // Alerts and decisions are read from two topics: either may come first.
    got.sort_by_key(|m| !m.contains(" alert - "));
    // The alert: facility 10 × 8 + critical (2); its JSON carries the whole alert.
    let (pri, head, text) = fields(&got[0]);
    assert_eq!(pri, 82, "{}", got[0]);
    assert_eq!(
        head,
        [
            "1",
            "2026-12-04T09:00:00.250000Z",
            "warden-test",
            "warden",
            &std::process::id().to_string(),
            "alert",
            "-"
        ]
    );
    let body: serde_json::Value = serde_json::from_str(text).expect("json");
    assert_eq!(body["type"], "alert");
    assert_eq!(body["alert"]["id"], "a-high");
    // The release: notice (5).
    let (pri, head, text) = fields(&got[1]);
    assert_eq!((pri, head[5]), (85, "decision"), "{}", got[1]);
    let body: serde_json::Value = serde_json::from_str(text).expect("json");
    assert_eq!(body["decision"]["id"], "d-1");
    // Nothing else came (the low alert is below the floor).
    let more = tokio::time::timeout(Duration::from_millis(300), socket.recv(&mut buf)).await;
    assert!(more.is_err(), "an unexpected datagram");
    let stats = dashboard.sink_stats();
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].0, SinkKind::Syslog);
    assert_eq!(stats[0].2.delivered.load(Ordering::Relaxed), 2);
}

/// A TCP receiver: reads octet-counted frames into `seen`; serves one connection at a time,
/// each until the peer closes or `drop_after` frames (then it closes the connection).
async fn tcp_receiver(
    listener: tokio::net::TcpListener,
    seen: Arc<Mutex<Vec<String>>>,
    drop_after: usize,
) {
    while let Ok((mut s, _)) = listener.accept().await {
        let mut buf = Vec::new();
        let mut frames = 0;
        let mut chunk = [0u8; 4096];
        'conn: while let Ok(n) = s.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            // Parse `LEN SP MSG` frames.
            while let Some(sp) = buf.iter().position(|b| *b == b' ') {
                let len: usize = std::str::from_utf8(&buf[..sp])
                    .expect("len")
                    .parse()
                    .expect("octet count");
                if buf.len() < sp + 1 + len {
                    break;
                }
                let msg = String::from_utf8(buf[sp + 1..sp + 1 + len].to_vec()).expect("utf-8");
                buf.drain(..sp + 1 + len);
                seen.lock().push(msg);
                frames += 1;
                if frames == drop_after {
                    break 'conn;
                }
            }
        }
    }
}

#[tokio::test]
async fn cef_over_tcp_is_framed_reconnects_and_dead_letters_when_the_receiver_is_gone() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    // The receiver closes each connection after one frame: every message after the first
    // needs a new connection.
    let receiver = tokio::spawn(tcp_receiver(listener, seen.clone(), 1));
    let url = format!("tcp://{addr}");
    let (dashboard, bus, config) = start(vec![syslog("arcsight", &url, SyslogFormat::Cef)]).await;
    let t = &config.bus.topics;
    let a1 = alert(
        "a-1",
        Severity::Medium,
        Subject {
            kind: warden_event::SubjectKind::Ip,
            value: "203.0.113.7".into(),
        },
    );
    publish(&bus, &t.alerts, warden_event::encode(&a1)).await;
    wait_for("the first frame", || seen.lock().len() == 1).await;
    publish(&bus, &t.decisions, warden_event::encode(&release("d-2"))).await;
    wait_for("the second frame, on a new connection", || {
        seen.lock().len() == 2
    })
    .await;
    let got = seen.lock().clone();
    let (pri, head, text) = fields(&got[0]);
    assert_eq!((pri, head[5]), (84, "alert"), "{}", got[0]);
    assert_eq!(
        text,
        format!(
            "CEF:0|Warden|Warden|{}|alert:burst|burst alert|5|rt=1796374800250 act=quarantine \
             externalId=a-1 cs2Label=pipeline cs2=default cn1Label=score cn1=7.500 \
             msg=rate\\=20|burst cs1Label=subject cs1=ip:203.0.113.7 src=203.0.113.7",
            env!("CARGO_PKG_VERSION")
        )
    );
    let (_, _, text) = fields(&got[1]);
    assert!(
        text.contains("|decision:release|release decision|3|")
            && text.contains("suser=dev-9")
            && text.contains("msg=released by alice: checked"),
        "{text}"
    );

    // The receiver goes away: the next message is tried max_attempts times, then dead-lettered.
    receiver.abort();
    let _ = receiver.await;
    let stats = dashboard.sink_stats().remove(0).2;
    let failed_before = stats.failed_attempts.load(Ordering::Relaxed);
    let a2 = alert("a-2", Severity::High, Subject::identity("dev-9"));
    publish(&bus, &t.alerts, warden_event::encode(&a2)).await;
    wait_for("a dead letter", || {
        stats.dead_lettered.load(Ordering::Relaxed) == 1
    })
    .await;
    assert_eq!(stats.delivered.load(Ordering::Relaxed), 2);
    // Three attempts failed for it (the closed connection was noticed, not counted).
    let failed = stats.failed_attempts.load(Ordering::Relaxed) - failed_before;
    assert_eq!(failed, 3);
}
