//! SIGTERM (issue 18, item 10): the real `warden up` binary, with an event archive, gets
//! SIGTERM while requests are in flight. It must stop exactly as on Ctrl-C: the in-flight
//! requests get their responses, every completed request's event reaches the archive, the
//! archive file is closed (no temporary file left), and the process exits successfully.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &str = "key-term-1-5b7c9d1e2f304152";

/// An upstream answering 200; paths containing `slow` answer after `delay`.
async fn upstream(delay: Duration) -> std::net::SocketAddr {
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
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        buf.drain(..end + 4);
                        if head.contains("slow") {
                            tokio::time::sleep(delay).await;
                        }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_closes_the_archive() {
    let up = upstream(Duration::from_millis(1500)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("archive");
    let config = dir.path().join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nid = \"gw-term\"\nlisten = \"127.0.0.1:0\"\n\
             [dashboard]\nlisten = \"127.0.0.1:0\"\n\
             [[routes]]\nname = \"api\"\nprefix = \"/api\"\nupstream = \"http://{up}\"\nauth = \"api_key\"\n\
             [[api_keys]]\nid = \"k1\"\nsha256 = \"{}\"\nidentity = \"dev-1\"\ntenant = \"acme\"\n\
             device_type = \"sensor\"\nroles = []\n",
            warden_config::hash_api_key(KEY)
        ),
    )
    .expect("config");
    let log = dir.path().join("warden.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("up")
        .arg("--config")
        .arg(&config)
        .arg("--archive")
        .arg(&archive)
        .env("RUST_LOG", "warn,warden=info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn warden up");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("gateway    http://") {
                let _ = tx.send(url.trim_end_matches('/').to_string());
            }
        }
    });
    let Ok(gw) = rx.recv_timeout(Duration::from_secs(60)) else {
        let _ = child.kill();
        panic!(
            "no gateway address:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    };
    let client = reqwest::Client::new();
    let get = |path: String| {
        let c = client.clone();
        let url = format!("http://{gw}{path}");
        async move {
            c.get(url)
                .header("x-api-key", KEY)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    };
    for i in 0..10 {
        assert_eq!(get(format!("/api/fast/{i}")).await.ok(), Some(200));
    }
    let slow: Vec<_> = (0..3)
        .map(|i| tokio::spawn(get(format!("/api/slow/{i}"))))
        .collect();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    for s in slow {
        let status = s.await.expect("join");
        assert_eq!(
            status.as_ref().ok(),
            Some(&200),
            "an in-flight request was cut: {status:?}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    let deadline = Instant::now() + Duration::from_secs(40);
    let exit = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "still running 40 s after SIGTERM:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(exit.success(), "exit {exit:?}:\n{logs}");
    let mut files = Vec::new();
    let mut stack = vec![archive.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    assert!(
        files.iter().all(|p| !p.to_string_lossy().ends_with(".tmp")),
        "a temporary archive file was left: {files:?}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["query", "--format", "csv", "--archive"])
        .arg(&archive)
        .arg("SELECT count(*) AS n FROM events WHERE path LIKE '/api/%'")
        .output()
        .expect("warden query");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(|l| l.trim() == "13"),
        "13 completed requests, 13 archived events; query said:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
