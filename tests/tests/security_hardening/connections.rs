//! Connections that never speak (issue 18, item 9): silent connections and HTTP/2 preface
//! tricklers are closed at the first-request deadline, idle keep-alive connections at the idle
//! timeout, and a flood of silent connections — from one address or from many — neither keeps
//! its descriptors nor locks out a client with a real request.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{self, get, parse_responses, raw_from};
use crate::harness::{self, recorder};

async fn connect_from(from: IpAddr, to: SocketAddr) -> anyhow::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    Ok(socket.connect(to).await?)
}

/// Whether the gateway closed `s` (EOF or reset) within `wait`.
async fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    let mut b = [0u8; 512];
    loop {
        match tokio::time::timeout(wait, s.read(&mut b)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_tricklers_and_idle_keepalives_are_closed() -> anyhow::Result<()> {
    let up = recorder().await?;
    let dir = tempfile::tempdir()?;
    let mut c = harness::config(&up, dir.path())?;
    c.gateway.connections.first_request_timeout_ms = 400;
    c.gateway.connections.idle_timeout_ms = 700;
    let gw = common::gateway(c, &[]).await?;
    let a = gw.addr;
    let start = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(TcpStream::connect(a).await?);
    }
    // An HTTP/2 client that trickles its preface, a byte every 50 ms (bounded: 3 s).
    let mut trickler = TcpStream::connect(a).await?;
    let trickle = tokio::spawn(async move {
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";
        for b in preface.iter().cycle().take(60) {
            if trickler.write_all(&[*b]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        closed_within(&mut trickler, Duration::from_millis(10)).await
    });
    // A complete HTTP/2 preface and settings, then nothing: no request, so no reprieve.
    let mut h2_silent = TcpStream::connect(a).await?;
    h2_silent
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await?;
    for s in &mut silent {
        ensure!(
            closed_within(s, Duration::from_secs(3)).await,
            "a silent connection stayed open"
        );
    }
    ensure!(
        closed_within(&mut h2_silent, Duration::from_secs(3)).await,
        "an HTTP/2 connection without a request stayed open"
    );
    ensure!(trickle.await?, "the preface trickler was never cut");
    let took = start.elapsed();
    ensure!(took < Duration::from_secs(3), "closed after {took:?}");

    // A keep-alive connection that served a request is closed after the idle timeout.
    let mut ka = TcpStream::connect(a).await?;
    ka.write_all(b"GET /public/x HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), ka.read(&mut buf))
        .await
        .context("response")??;
    let r = parse_responses(&buf[..n])?;
    ensure!(r.first().map(|r| r.status) == Some(200), "{r:?}");
    let idle_from = Instant::now();
    ensure!(
        closed_within(&mut ka, Duration::from_secs(3)).await,
        "an idle keep-alive connection stayed open"
    );
    ensure!(
        idle_from.elapsed() >= Duration::from_millis(500),
        "closed before its idle timeout: {:?}",
        idle_from.elapsed()
    );
    let stats = gw.stack.conn_stats.clone().context("conn stats")?;
    let timed_out = stats.timed_out.load(std::sync::atomic::Ordering::Relaxed);
    ensure!(timed_out >= 23, "timed out: {timed_out}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_floods_do_not_lock_out_a_real_client() -> anyhow::Result<()> {
    let up = recorder().await?;
    let dir = tempfile::tempdir()?;
    let mut c = harness::config(&up, dir.path())?;
    c.gateway.connections.first_request_timeout_ms = 60_000;
    c.gateway.connections.max_per_ip = 10;
    c.gateway.connections.max_total = 30;
    let gw = common::gateway(c, &[]).await?;
    let a = gw.addr;
    let flooder: IpAddr = [127, 0, 0, 2].into();
    // One address opens 50 silent connections: it keeps at most 10 (its oldest go first).
    let mut flood = Vec::new();
    for _ in 0..50 {
        flood.push(connect_from(flooder, a).await?);
    }
    // Let the gateway accept everything the kernel queued.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut open = 0;
    for s in &mut flood {
        if !closed_within(s, Duration::from_millis(30)).await {
            open += 1;
        }
    }
    ensure!(
        open <= 10,
        "{open} silent connections of one address still open"
    );
    // Many addresses fill the global cap with silent connections...
    let mut many = Vec::new();
    for i in 3..8u8 {
        for _ in 0..10 {
            many.push(connect_from([127, 0, 0, i].into(), a).await?);
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // ...and a real client still gets in at once, from a fresh address and from the flooder's.
    for from in [IpAddr::from([127, 0, 0, 1]), flooder] {
        let t = Instant::now();
        let r = raw_from(from, a, &get("/public/ok", None)).await?;
        ensure!(
            r.first().map(|r| r.status) == Some(200),
            "locked out from {from}: {r:?}"
        );
        ensure!(
            t.elapsed() < Duration::from_secs(2),
            "slow: {:?}",
            t.elapsed()
        );
    }
    let mut still = 0;
    for s in flood.iter_mut().chain(many.iter_mut()) {
        if !closed_within(s, Duration::from_millis(20)).await {
            still += 1;
        }
    }
    ensure!(
        still <= 30,
        "{still} silent connections open over a cap of 30"
    );
    ensure!(
        up.hits_under("/public/ok").len() == 2,
        "both real requests arrived"
    );
    Ok(())
}
