//! The fleet against the demo upstream, over real sockets.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use warden_sim::{
    FleetConfig, FleetError, FleetStats, FloodConfig, demo_keys, demo_upstream, run_fleet,
};

async fn upstream() -> (String, tokio::task::JoinHandle<std::io::Result<()>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    (
        format!("http://{addr}"),
        tokio::spawn(demo_upstream(listener)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_and_flood_against_the_upstream() {
    let (url, server) = upstream().await;
    let config = FleetConfig {
        gateway: url,
        devices: demo_keys(5, 42),
        period: Duration::from_millis(100),
        seed: 42,
        flood: Some(FloodConfig {
            device: 0,
            start_after: Duration::from_millis(500),
            rate_per_s: 200.0,
        }),
    };
    let stats = Arc::new(FleetStats::new());
    let (stop, stopped) = watch::channel(false);
    let run = tokio::spawn(run_fleet(config, stats.clone(), stopped));
    tokio::time::sleep(Duration::from_millis(750)).await;
    let live = stats.snapshot();
    assert!(
        live.normal_total() > 0 && live.flood_started,
        "live progress: {live}"
    );
    tokio::time::sleep(Duration::from_millis(750)).await;
    stop.send_replace(true);
    let report = run.await.expect("join").expect("fleet");
    server.abort();

    // 4 normal devices × ~15 requests each (no faster than the shortest jittered interval).
    let secs = report.elapsed.as_secs_f64();
    assert_eq!(report.normal_errors, 0, "{report}");
    assert!(report.normal.keys().all(|s| *s == 200), "{report}");
    let most = 4 * (secs / 0.07).ceil() as u64 + 4;
    assert!(
        report.normal_total() > 30 && report.normal_total() <= most,
        "{report}"
    );
    // ~1 s of flood at 200/s, plus ~5 normal requests before it.
    let most = ((secs - 0.5) * 200.0).ceil() as u64 + 1;
    assert!(
        report.flood_sent > 100 && report.flood_sent <= most,
        "{report}"
    );
    assert_eq!(report.flooder_errors, 0, "{report}");
    assert!(report.flooder.keys().all(|s| *s == 200), "{report}");
    assert!(
        report.flood_ok + 5 >= report.flood_sent,
        "drained at stop: {report}"
    );
    assert!(
        report.flooder_total() > report.flood_sent,
        "normal phase first: {report}"
    );
    assert_eq!(report.first_refused_at, None);
    assert!(report.elapsed >= Duration::from_millis(1400));
}

#[tokio::test]
async fn upstream_routes() {
    let (url, server) = upstream().await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let telemetry = client
        .post(format!("{url}/api/devices/sensor-0001/telemetry"))
        .body(vec![b'x'; 3 * 1024 * 1024])
        .send()
        .await
        .expect("telemetry");
    assert_eq!(telemetry.status(), 200);
    assert_eq!(telemetry.text().await.expect("body"), r#"{"ok":true}"#);
    let config = client
        .get(format!("{url}/api/devices/sensor-0001/config"))
        .send()
        .await
        .expect("config");
    assert_eq!(config.status(), 200);
    let config: serde_json::Value = config.json().await.expect("json");
    assert_eq!(config["device"], "sensor-0001");
    let other = client
        .delete(format!("{url}/api/anything/else"))
        .send()
        .await
        .expect("other");
    assert_eq!(other.status(), 200);
    let outside = client
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("outside");
    assert_eq!(outside.status(), 404);
    server.abort();
}

#[tokio::test]
async fn bad_configs_are_refused() {
    let base = FleetConfig {
        gateway: "http://127.0.0.1:1".into(),
        devices: demo_keys(2, 1),
        period: Duration::from_millis(100),
        seed: 1,
        flood: None,
    };
    let run = |config: FleetConfig| {
        run_fleet(config, Arc::new(FleetStats::new()), watch::channel(false).1)
    };
    let flood = |device, rate_per_s| {
        Some(FloodConfig {
            device,
            start_after: Duration::ZERO,
            rate_per_s,
        })
    };
    let cases = [
        (
            FleetConfig {
                gateway: "ftp://x".into(),
                ..base.clone()
            },
            "gateway",
        ),
        (
            FleetConfig {
                period: Duration::ZERO,
                ..base.clone()
            },
            "period",
        ),
        (
            FleetConfig {
                flood: flood(2, 10.0),
                ..base.clone()
            },
            "flood device",
        ),
        (
            FleetConfig {
                flood: flood(0, 0.0),
                ..base.clone()
            },
            "flood rate",
        ),
    ];
    for (config, what) in cases {
        let err = run(config).await.expect_err(what);
        assert!(!matches!(err, FleetError::Client(_)), "{what}: {err}");
    }
}

#[tokio::test]
async fn dropping_the_stop_sender_stops_the_fleet() {
    let (url, server) = upstream().await;
    let config = FleetConfig {
        gateway: url,
        devices: demo_keys(3, 9),
        period: Duration::from_millis(50),
        seed: 9,
        flood: None,
    };
    let (stop, stopped) = watch::channel(false);
    let run = tokio::spawn(run_fleet(config, Arc::new(FleetStats::new()), stopped));
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(stop);
    let report = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("stopped in time")
        .expect("join")
        .expect("fleet");
    assert!(report.normal_ok() > 0 && !report.flood_started, "{report}");
    server.abort();
}
