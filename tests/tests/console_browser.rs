//! The console in a real browser (headless Chromium over the DevTools protocol) against a whole
//! stack on the embedded bus: an operator signs in, watches a flood's alert and quarantine
//! arrive live (server-sent events, no reload), opens the device's page, its alert chart and its
//! traffic chart (server-rendered); a
//! release without the CSRF token and a viewer's release are refused; the operator releases
//! the device from the page and the gateway serves it again over a real socket.
//!
//! Screenshots go to `$WARDEN_ARTIFACTS` (default: `target/tmp/console-browser/`). Without a
//! Chromium the test is skipped with a loud message, unless `WARDEN_REQUIRE_BROWSER` is set
//! (as `tests/run.sh` does), where it fails.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::Value;
use sha2::{Digest, Sha256};
use warden::{Stack, StackParts, ensure_topics, make_bus};
use warden_config::{ConsoleRole, OperatorConfig, WardenConfig};
use warden_sim::{DemoDevice, FleetConfig, FleetStats, FloodConfig};
use warden_tests::cdp::{Browser, Page, find_chromium};
use warden_tests::e2e::{config, fast_pipeline, raw_request};

const OPERATOR_TOKEN: &str = "browser-test-operator-4f1d9c2a";
const VIEWER_TOKEN: &str = "browser-test-viewer-8b3e6d05";

fn operator(name: &str, role: ConsoleRole, token: &str) -> OperatorConfig {
    OperatorConfig {
        name: name.into(),
        role,
        token_sha256: hex::encode(Sha256::digest(token.as_bytes())),
    }
}

/// The Chromium to use, or `None` (after a loud message) when there is none and none is
/// required.
fn chromium_or_skip() -> Option<PathBuf> {
    if let Some(bin) = find_chromium() {
        return Some(bin);
    }
    let required = std::env::var("WARDEN_REQUIRE_BROWSER").is_ok_and(|v| !v.is_empty() && v != "0");
    assert!(
        !required,
        "WARDEN_REQUIRE_BROWSER is set but no Chromium was found (install `chromium`, or set WARDEN_CHROMIUM)"
    );
    eprintln!(
        "\n################################################################################\n\
         ## SKIPPED: the console browser test found no Chromium on PATH                ##\n\
         ## (apt-get install chromium, or WARDEN_CHROMIUM=/path/to/chrome).            ##\n\
         ## tests/run.sh installs it and sets WARDEN_REQUIRE_BROWSER=1.                ##\n\
         ################################################################################\n"
    );
    None
}

fn artifacts_dir() -> PathBuf {
    std::env::var_os("WARDEN_ARTIFACTS").map_or_else(
        || PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-browser"),
        PathBuf::from,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_watches_a_flood_live_and_releases_the_device_from_the_browser() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("warn,warden=info")
        .try_init();
    let Some(bin) = chromium_or_skip() else {
        return;
    };
    let browser = Browser::launch(&bin)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let page = browser.new_page().await.unwrap_or_else(|e| panic!("{e:#}"));
    let outcome = run(&page).await;
    if outcome.is_err() {
        // What the page looked like when it failed.
        let _ = failure_screenshot(&page).await;
    }
    drop(page);
    browser.close().await;
    outcome.unwrap_or_else(|e| panic!("{e:#}"));
}

async fn failure_screenshot(page: &Page) -> anyhow::Result<()> {
    let path = artifacts_dir().join("failure.png");
    page.screenshot(&path).await?;
    let text = page
        .eval("location.href + '\\n' + document.body.innerText")
        .await?;
    eprintln!(
        "{}: the page at the failure:\n{}",
        path.display(),
        text.as_str().unwrap_or_default()
    );
    Ok(())
}

/// A JavaScript string literal.
fn js(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Sign in on the login page with `token`; wait for the console to be live.
async fn sign_in(page: &Page, console: &str, token: &str, who: &str) -> anyhow::Result<()> {
    page.goto(&format!("{console}/login")).await?;
    page.type_into("#token", token).await?;
    page.click("button[type=submit]").await?;
    let wait = Duration::from_secs(15);
    page.wait_for("location.pathname === '/'", wait).await?;
    page.wait_loaded().await?;
    page.wait_for(
        &format!("document.getElementById('who').textContent === {}", js(who)),
        wait,
    )
    .await?;
    page.wait_for(
        "document.getElementById('live').textContent === 'live'",
        wait,
    )
    .await?;
    Ok(())
}

async fn sign_out(page: &Page) -> anyhow::Result<()> {
    page.click("#signout").await?;
    page.wait_for("location.pathname === '/login'", Duration::from_secs(10))
        .await?;
    page.wait_loaded().await
}

/// A release `POST` made by the page's own `fetch` (with its cookies). `csrf` is a JavaScript
/// expression (awaited) for the CSRF header; `None` sends no header. Returns the status.
async fn page_release(page: &Page, identity: &str, csrf: Option<&str>) -> anyhow::Result<u64> {
    let header = csrf.map_or(String::new(), |e| {
        format!("h['X-CSRF-Token'] = await ({e});")
    });
    let status = page
        .eval(&format!(
            "(async () => {{ const h = {{ 'Content-Type': 'application/json' }}; {header} \
             const r = await fetch('/api/quarantine/release', {{ method: 'POST', headers: h, \
             body: JSON.stringify({{ kind: 'identity', value: {}, reason: 'test' }}) }}); \
             return r.status; }})()",
            js(identity)
        ))
        .await?;
    status.as_u64().context("status")
}

/// The gateway's answer to one telemetry request of `d`, over a plain socket.
async fn telemetry_status(gw: std::net::SocketAddr, d: &DemoDevice) -> anyhow::Result<u16> {
    let body = r#"{"t":21.5}"#;
    let req = format!(
        "POST /api/devices/{}/telemetry HTTP/1.1\r\nHost: t\r\nX-Api-Key: {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        d.identity,
        d.key,
        body.len()
    );
    Ok(raw_request(gw, &req).await?.0)
}

/// Whether the console's API holds an alert about `identity`.
async fn api_has_alert(http: &reqwest::Client, console: &str, identity: &str) -> bool {
    let url = format!("{console}/api/alerts?subject=identity:{identity}");
    let Ok(resp) = http.get(url).bearer_auth(VIEWER_TOKEN).send().await else {
        return false;
    };
    resp.json::<Value>()
        .await
        .is_ok_and(|a| a.as_array().is_some_and(|a| !a.is_empty()))
}

async fn run(page: &Page) -> anyhow::Result<()> {
    let shots = artifacts_dir();
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let upstream_addr = upstream.local_addr()?;
    tokio::spawn(warden_sim::demo_upstream(upstream));
    let devices = warden_sim::demo_keys(30, 11);
    let flooder = devices[0].clone();
    let mut cfg = config(
        &WardenConfig::default(),
        "gw-browser",
        upstream_addr,
        &devices,
    );
    cfg.dashboard.operators = vec![
        operator("ops", ConsoleRole::Operator, OPERATOR_TOKEN),
        operator("watcher", ConsoleRole::Viewer, VIEWER_TOKEN),
    ];
    let bus = make_bus(&cfg)?;
    ensure_topics(&*bus, &cfg).await?;
    let stack = Stack::start(
        bus,
        &cfg,
        StackParts {
            gateway: true,
            processor: Some(fast_pipeline()?),
            dashboard: true,
        },
    )
    .await?;
    let gw = stack.gateway_addr.context("gateway")?;
    let console = format!("http://{}", stack.dashboard_addr.context("dashboard")?);
    let http = reqwest::Client::builder().no_proxy().build()?;

    // Anonymous: the console sends the browser to the sign-in page.
    page.goto(&format!("{console}/identities/{}", flooder.identity))
        .await?;
    ensure!(
        page.eval("location.pathname").await? == "/login",
        "an anonymous browser was not sent to /login"
    );
    sign_in(page, &console, OPERATOR_TOKEN, "ops (operator)").await?;
    ensure!(
        !page
            .eval("document.cookie")
            .await?
            .as_str()
            .unwrap_or_default()
            .contains("warden_session"),
        "the session cookie is readable by scripts"
    );
    page.wait_for(
        "document.getElementById('alerts').textContent.includes('no alerts yet')",
        Duration::from_secs(10),
    )
    .await?;
    // The processor's health, drawn on the server: throughput, lag, warm-up, pipeline.
    ensure!(
        page.eval(
            "document.getElementById('processor') !== null \
             && document.getElementById('server').textContent.includes('consumer lag') \
             && document.getElementById('server').textContent.includes('warm-up')"
        )
        .await?
            == serde_json::Value::Bool(true),
        "the overview shows no processor panel"
    );
    // Marks this document: a reload or a navigation would lose it.
    page.eval("window.wardenTestMark = 1").await?;

    // The fleet: 30 devices every 500 ms; device 0 floods at 100 req/s after 8 s.
    let stats = Arc::new(FleetStats::new());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let fleet = tokio::spawn(warden_sim::run_fleet(
        FleetConfig {
            gateway: format!("http://{gw}"),
            devices: devices.clone(),
            period: Duration::from_millis(500),
            seed: 11,
            flood: Some(FloodConfig {
                device: 0,
                start_after: Duration::from_secs(8),
                rate_per_s: 100.0,
            }),
        },
        stats,
        stop_rx,
    ));

    // The alert reaches the API; the open page shows it within seconds, pushed (the page's
    // fallback reload is every 30 s), in the same document.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !api_has_alert(&http, &console, &flooder.identity).await {
        ensure!(Instant::now() < deadline, "no alert about the flooder");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let shown = |table: &str| {
        format!(
            "document.getElementById({}).textContent.includes({})",
            js(table),
            js(&flooder.identity)
        )
    };
    page.wait_for(&shown("alerts"), Duration::from_secs(5))
        .await
        .context("the alert was not pushed to the open page")?;
    page.wait_for(&shown("quarantine"), Duration::from_secs(10))
        .await
        .context("the quarantine was not pushed to the open page")?;
    ensure!(
        page.eval("window.wardenTestMark").await? == 1,
        "the page was reloaded"
    );
    page.wait_for(
        "document.querySelectorAll('#overview-chart rect').length > 0 \
         && document.querySelectorAll('#traffic-chart polyline').length > 0",
        Duration::from_secs(5),
    )
    .await?;
    let size = page.screenshot(&shots.join("console-overview.png")).await?;
    tracing::info!(size, "Overview screenshot saved.");
    ensure!(
        telemetry_status(gw, &flooder).await? == 403,
        "the gateway serves the quarantined device"
    );

    // The device's page, opened from the alert, then by its own URL: decision and chart.
    page.click("#alerts .subject").await?;
    let path = format!("/identities/{}", flooder.identity);
    let on_subject_page = format!(
        "location.pathname === {} && document.getElementById('drill').style.display === 'block' \
         && document.getElementById('drill-decision').textContent.includes('quarantine (active)') \
         && document.querySelectorAll('#drill-chart circle').length > 0",
        js(&path)
    );
    let wait = Duration::from_secs(10);
    page.wait_for(&on_subject_page, wait).await?;
    page.goto(&format!("{console}{path}")).await?;
    page.wait_for(&on_subject_page, wait).await?;
    page.wait_for(
        "document.getElementById('live').textContent === 'live'",
        wait,
    )
    .await?;
    page.eval("document.getElementById('drill').scrollIntoView()")
        .await?;
    page.screenshot(&shots.join("console-subject.png")).await?;
    // The device's traffic over time, drawn on the server from the events topic: the flood
    // is in the request chart, and its route is listed.
    page.wait_for(
        "document.querySelectorAll('#subject-requests polyline').length > 0 \
         && document.getElementById('routes-seen').textContent.includes('POST ')",
        wait,
    )
    .await
    .context("the subject page shows no traffic chart")?;
    page.eval("window.scrollTo(0, 0)").await?;
    page.screenshot(&shots.join("console-subject-traffic.png"))
        .await?;
    // The detectors' scores of the device since they fired on it, charted on the server from
    // the processor's score board (a page drawn before the next complete window has none yet),
    // and its last requests, refused now that it is quarantined.
    let mut charted = false;
    for _ in 0..20 {
        page.goto(&format!("{console}{path}")).await?;
        if page
            .eval(
                "document.querySelectorAll('#subject-scores polyline').length > 0 \
                 && document.getElementById('recent-requests').textContent \
                    .includes('refused: quarantine')",
            )
            .await?
            == serde_json::Value::Bool(true)
        {
            charted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    ensure!(
        charted,
        "the subject page shows no detector scores or no refused last request"
    );
    page.eval("document.getElementById('subject-scores').scrollIntoView()")
        .await?;
    page.screenshot(&shots.join("console-subject-scores.png"))
        .await?;

    // The session's cookie alone (what a forged cross-site request carries) releases nothing.
    ensure!(
        page_release(page, &flooder.identity, None).await? == 403,
        "a release without the CSRF token was accepted"
    );
    ensure!(
        page_release(page, &flooder.identity, Some(&js(&"0".repeat(64)))).await? == 403,
        "a release with a wrong CSRF token was accepted"
    );

    let _ = stop_tx.send(true);
    let report = fleet.await??;
    tracing::info!(%report, "Fleet stopped.");

    // A viewer sees the device but cannot release it, even with its session's CSRF token.
    sign_out(page).await?;
    sign_in(page, &console, VIEWER_TOKEN, "watcher (viewer)").await?;
    page.goto(&format!("{console}{path}")).await?;
    page.wait_for(&on_subject_page, wait).await?;
    page.wait_for(
        "document.querySelector('#quarantine button')?.disabled === true",
        wait,
    )
    .await
    .context("a viewer is offered the release button")?;
    let viewer_csrf = "fetch('/api/session').then((r) => r.json()).then((s) => s.csrf)";
    ensure!(
        page_release(page, &flooder.identity, Some(viewer_csrf)).await? == 403,
        "a viewer's release was accepted"
    );
    sign_out(page).await?;

    // The operator releases the device from its page, giving a reason.
    sign_in(page, &console, OPERATOR_TOKEN, "ops (operator)").await?;
    page.goto(&format!("{console}{path}")).await?;
    page.wait_for(&on_subject_page, wait).await?;
    ensure!(
        telemetry_status(gw, &flooder).await? == 403,
        "the refused releases let the device in"
    );
    page.answer_prompts_with("false positive: firmware update storm");
    page.wait_for(
        "document.querySelector('#quarantine button')?.disabled === false",
        wait,
    )
    .await?;
    page.click("#quarantine button").await?;
    page.wait_for(
        &format!(
            "document.getElementById('status').textContent === {}",
            js(&format!("released identity:{}", flooder.identity))
        ),
        wait,
    )
    .await?;
    page.wait_for(
        "document.getElementById('quarantine').textContent.includes('nobody is quarantined') \
         && document.getElementById('drill-decision').textContent.includes('release (not active)')",
        wait,
    )
    .await?;
    page.screenshot(&shots.join("console-released.png")).await?;

    // The gateway serves the device again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = telemetry_status(gw, &flooder).await?;
        if status / 100 == 2 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the gateway still answers {status} after the release"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The release is on record with who made it and why.
    let alerts: Value = http
        .get(format!(
            "{console}/api/alerts?subject=identity:{}",
            flooder.identity
        ))
        .bearer_auth(VIEWER_TOKEN)
        .send()
        .await?
        .json()
        .await?;
    let audits: Vec<&Value> = alerts
        .as_array()
        .context("alerts")?
        .iter()
        .filter(|x| x["detector"] == "console")
        .collect();
    let [audit] = audits.as_slice() else {
        bail!("one audit record of the release expected: {audits:?}");
    };
    ensure!(
        audit["message"].as_str().is_some_and(|m| {
            m.contains("release by ops (operator)") && m.contains("firmware update storm")
        }),
        "audit record: {audit}"
    );
    let exceptions = page.exceptions();
    if !exceptions.is_empty() {
        bail!("the page threw: {exceptions:?}");
    }
    tracing::info!(dir = %shots.display(), "Screenshots saved.");
    // The browser still holds the live stream open: the stack stops all the same.
    tokio::time::timeout(Duration::from_secs(20), stack.stop())
        .await
        .context("the stack did not stop with a console open")??;
    Ok(())
}
