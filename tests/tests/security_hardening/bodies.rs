//! Request bodies: duplicate JSON keys on validated routes, and client body faults reported as
//! client errors (400/408), never as upstream failures (issue 18, items 5 and 7).

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warden_event::Outcome;

use crate::common::{self, DEV1, OPS, parse_responses, post_json, raw};
use crate::harness::{self, recorder};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_json_keys_are_refused_after_unescaping() -> anyhow::Result<()> {
    let up = recorder().await?;
    let dir = tempfile::tempdir()?;
    let gw = common::gateway(harness::config(&up, dir.path())?, &[]).await?;
    let path = "/api/devices/dev-1/telemetry";
    let json = Some("application/json");
    for body in [
        r#"{"t":500,"t":20}"#,
        r#"{"t":500,"\u0074":20}"#,
        r#"{"\u0074":500,"t":20}"#,
    ] {
        let r = raw(gw.addr, &post_json(path, DEV1, json, body)).await?;
        ensure!(
            r.status == 400 && r.body.contains("invalid_body"),
            "{body}: {r:?}"
        );
    }
    let r = raw(gw.addr, &post_json(path, DEV1, json, r#"{"t":21.5}"#)).await?;
    ensure!(r.status == 200, "legit: {r:?}");
    let hits = up.hits();
    ensure!(
        hits.len() == 1 && hits[0].body.as_deref() == Some(&br#"{"t":21.5}"#[..]),
        "only the legitimate body arrived: {hits:?}"
    );
    Ok(())
}

/// Send `head` then `body` on a fresh connection; optionally half-close; read the response.
async fn send(
    addr: std::net::SocketAddr,
    head: &str,
    body: &[u8],
    half_close: bool,
) -> anyhow::Result<(common::Resp, Duration)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let t = Instant::now();
    s.write_all(head.as_bytes()).await?;
    s.write_all(body).await?;
    if half_close {
        s.shutdown().await?;
    }
    let mut buf = Vec::new();
    // Read until the gateway closes, or the first whole response when it keeps the line open.
    let _ = tokio::time::timeout(Duration::from_secs(8), async {
        let mut chunk = [0u8; 4096];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if parse_responses(&buf).is_ok() {
                        break;
                    }
                }
            }
        }
    })
    .await;
    let r = parse_responses(&buf)?
        .into_iter()
        .next()
        .context("no response")?;
    Ok((r, t.elapsed()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_body_faults_are_client_errors_not_upstream_failures() -> anyhow::Result<()> {
    let up = recorder().await?;
    let dir = tempfile::tempdir()?;
    let gw = common::gateway(harness::config(&up, dir.path())?, &[]).await?;
    let a = gw.addr;
    let chunked = |p: &str| {
        format!(
            "POST {p} HTTP/1.1\r\nHost: gw\r\nX-Api-Key: {OPS}\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
    };
    let sized = |p: &str, n: usize| {
        format!("POST {p} HTTP/1.1\r\nHost: gw\r\nX-Api-Key: {OPS}\r\nContent-Length: {n}\r\n\r\n")
    };
    // Streamed to the upstream (no schema on the admin route).
    let cases: Vec<(&str, String, Vec<u8>, bool, u16)> = vec![
        (
            "bad chunk size",
            chunked("/api/admin/b1"),
            b"zz\r\nhello\r\n0\r\n\r\n".to_vec(),
            false,
            400,
        ),
        (
            "chunk overrun",
            chunked("/api/admin/b2"),
            b"3\r\nabcdefgh\r\n0\r\n\r\n".to_vec(),
            false,
            400,
        ),
        (
            "short body, half-close",
            sized("/api/admin/b3", 100),
            b"0123456789".to_vec(),
            true,
            400,
        ),
        (
            "stall mid-body",
            sized("/api/admin/b4", 100),
            b"0123456789".to_vec(),
            false,
            408,
        ),
        // Buffered for a JSON Schema.
        (
            "stall on a validated route",
            format!(
                "POST /api/devices/dev-1/telemetry HTTP/1.1\r\nHost: gw\r\nX-Api-Key: {DEV1}\r\n\
                 Content-Type: application/json\r\nContent-Length: 50\r\n\r\n"
            ),
            br#"{"t":"#.to_vec(),
            false,
            408,
        ),
    ];
    for (name, head, body, half, want) in cases {
        let (r, took) = send(a, &head, &body, half).await.context(name)?;
        ensure!(r.status == want, "{name}: want {want}, got {r:?}");
        r.check_generic().context(name)?;
        ensure!(
            took < Duration::from_secs(5),
            "{name}: answered after {took:?}"
        );
    }
    // Whatever reached the upstream never arrived whole.
    for h in up.hits() {
        ensure!(h.body.is_none(), "a faulty body arrived whole: {h:?}");
    }
    // Evented as invalid requests, never as upstream errors.
    let events = gw.events().await?;
    let faults: Vec<_> = events
        .iter()
        .filter(|e| e.path.starts_with("/api/admin/b") || e.path.ends_with("/telemetry"))
        .collect();
    ensure!(faults.len() == 5, "one event per fault: {faults:?}");
    for e in faults {
        ensure!(
            e.decision == Outcome::Invalid,
            "{} evented as {:?}",
            e.path,
            e.decision
        );
    }
    Ok(())
}
