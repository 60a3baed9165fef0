//! `warden up --config F` with a real config: no demo upstream, no demo key, the loaded routes
//! and identity sources printed; a device key added to the file and SIGHUP sent to the real
//! binary works on its next request, while a load of requests running across the reload is
//! answered in full.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &str = "key-live-1-5b7c9d1e2f304152";
const ADDED: &str = "key-live-2-5b7c9d1e2f304152";

/// An upstream answering 200 `ok` to every request.
async fn upstream() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 2048];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let resp = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                        if s.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    addr
}

fn key(id: &str, key: &str, identity: &str) -> String {
    format!(
        "[[api_keys]]\nid = \"{id}\"\nsha256 = \"{}\"\nidentity = \"{identity}\"\n\
         tenant = \"acme\"\ndevice_type = \"sensor\"\nroles = []\n",
        warden_config::hash_api_key(key)
    )
}

/// Stops the child on every way out of the test.
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &std::process::Child, name: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_with_a_real_config_starts_no_demo_and_sighup_adds_a_key_without_a_failed_request() {
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("warden.toml");
    // The file watch is slowed down so that the reload in this test is SIGHUP's.
    let base = format!(
        "[gateway]\nid = \"gw-live\"\nlisten = \"127.0.0.1:0\"\n\
         [dashboard]\nlisten = \"127.0.0.1:0\"\n\
         [identity]\nreload_interval_ms = 600000\n\
         [[routes]]\nname = \"api\"\nprefix = \"/api\"\nupstream = \"http://{up}\"\nauth = \"api_key\"\n{}",
        key("k1", KEY, "dev-1")
    );
    std::fs::write(&config, &base).expect("config");
    let log = dir.path().join("warden.log");
    let mut child = Kill(
        Command::new(env!("CARGO_BIN_EXE_warden"))
            .arg("up")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn,warden=info,warden_gateway=info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn warden up"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    // Everything printed at start, up to the config line (the last one).
    let mut printed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !printed.iter().any(|l: &String| l.starts_with("config ")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => printed.push(line),
            Err(_) => panic!("no start-up summary: {printed:?}\n{}", logs()),
        }
    }
    let all = printed.join("\n");
    assert!(!all.contains("demo"), "no demo upstream or fleet:\n{all}");
    assert!(!all.contains("curl"), "no demo key:\n{all}");
    assert!(all.contains("routes     1"), "{all}");
    assert!(all.contains(&format!("api /api -> http://{up}")), "{all}");
    assert!(all.contains("identity   1 API keys"), "{all}");
    let gw = printed
        .iter()
        .find_map(|l| l.strip_prefix("gateway    http://"))
        .map(|a| a.trim_end_matches('/').to_string())
        .unwrap_or_else(|| panic!("no gateway address:\n{all}"));

    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let get = {
        let (client, gw) = (client.clone(), gw.clone());
        move |key: &'static str| {
            let (c, url) = (client.clone(), format!("http://{gw}/api/telemetry"));
            async move {
                c.get(url)
                    .header("x-api-key", key)
                    .send()
                    .await
                    .map_or(0, |r| r.status().as_u16())
            }
        }
    };
    assert_eq!(get(KEY).await, 200);
    assert_eq!(get(ADDED).await, 401, "not in the file yet");

    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..6)
        .map(|_| {
            let (get, stop) = (get.clone(), stop.clone());
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    statuses.push(get(KEY).await);
                }
                statuses
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(&config, format!("{base}{}", key("k2", ADDED, "dev-2"))).expect("config");
    signal(&child.0, "HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(ADDED).await != 200 {
        assert!(
            Instant::now() < deadline,
            "the key added by SIGHUP never worked:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for task in load {
        let statuses = task.await.expect("load task");
        assert!(
            statuses.iter().all(|s| *s == 200),
            "a request failed across the reload: {statuses:?}"
        );
        total += statuses.len();
    }
    assert!(total > 20, "the load ran ({total} requests)");
    assert!(child.0.try_wait().expect("wait").is_none(), "still running");
    assert!(logs().contains("SIGHUP"), "{}", logs());
    // Only a key changed: nothing this run added at start (its console token) reads as a
    // change needing a restart.
    assert!(logs().contains("Config applied live."), "{}", logs());
    assert!(!logs().contains("needs a restart"), "{}", logs());

    signal(&child.0, "TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.0.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
}
