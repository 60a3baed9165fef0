//! Authorization, path, validation, smuggling, quarantine, rate-limit, load-shedding and admin
//! attacks against a real gateway over real sockets (raw TCP, so nothing is normalised by a
//! client library). Every attack asserts its exact status — the gateway's generic JSON error
//! when the gateway refused it, hyper's bare status when hyper's parser did — and, at the end,
//! that the upstream saw exactly the legitimate requests and nothing else. Reload tests change
//! the policy under a running gateway with a request in flight.

mod common;
mod enforcement;

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::json;
use warden_event::{Action, Decision, Outcome, RequestEvent, Subject};

use common::*;

// === the suite ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_get_their_exact_status_and_never_reach_the_upstream() -> anyhow::Result<()> {
    let up = upstream().await?;
    let dir = tempfile::tempdir()?;
    let config = config(&up, dir.path(), "")?;
    // A quarantine from the processor, on the bus before the gateway starts.
    let gw = gateway(
        config,
        &[decision(Subject::identity("q-ident"), Action::Quarantine)],
    )
    .await?;
    let a = gw.addr;

    // Quarantines through the admin API (published as decisions, applied at once).
    for (kind, value) in [
        ("api_key", "k-qkey"),
        ("tenant", "evil"),
        ("ip", "127.0.0.2"),
    ] {
        let (status, v) = admin_call(
            &gw,
            reqwest::Method::POST,
            "/admin/quarantines",
            Some(ADMIN_TOKEN),
            Some(json!({ "subject": { "kind": kind, "value": value }, "ttl_s": 600 })),
        )
        .await?;
        ensure!(status == 201, "admin quarantine {kind}: {status} {v}");
    }

    // Legitimate requests first: the setup works, and these are the only upstream hits.
    let legit: Vec<(Vec<u8>, &str)> = vec![
        (
            post_json(
                "/api/devices/dev-1/telemetry",
                DEV1,
                Some("application/json"),
                r#"{"t":21.5}"#,
            ),
            "POST /api/devices/dev-1/telemetry",
        ),
        (
            get("/api/devices/dev-1/config", Some(DEV1)),
            "GET /api/devices/dev-1/config",
        ),
        (
            get("/api/devices/dev-1/config/", Some(DEV1)),
            "GET /api/devices/dev-1/config/",
        ),
        (
            get("/api/devices/dev-2/config", Some(DEV2)),
            "GET /api/devices/dev-2/config",
        ),
        (
            get("/api/firmware/v2.bin", Some(HUB1)),
            "GET /api/firmware/v2.bin",
        ),
        (get("/api/admin/users", Some(OPS)), "GET /api/admin/users"),
        (get("/public/info", None), "GET /public/info"),
        (
            get("/public/caf%C3%A9", Some(DEV1)),
            "GET /public/caf%C3%A9",
        ),
        (
            req(
                "POST /api/devices/dev-1/telemetry HTTP/1.1\r\nX-Api-Key: key-dev-1-8c1f0a2b3c4d5e6f\r\n\
                 Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n",
                "5\r\n{\"t\":\r\n5\r\n 19.5\r\n1\r\n}\r\n0\r\n\r\n",
            ),
            "POST /api/devices/dev-1/telemetry",
        ),
    ];
    let mut expected_hits = Vec::new();
    for (request, hit) in &legit {
        let r = raw(a, request).await?;
        ensure!(r.status == 200, "legit {hit}: {} {}", r.status, r.body);
        ensure!(
            r.body.starts_with(&format!("ok {hit}")),
            "upstream answer: {}",
            r.body
        );
        expected_hits.push(hit.to_string());
    }
    // A legitimate reply carries no rate-limit headers when no limit is configured.
    ensure!(
        raw(a, &get("/api/devices/dev-1/config", Some(DEV1)))
            .await?
            .header("ratelimit-limit")
            .is_none()
    );
    expected_hits.push("GET /api/devices/dev-1/config".into());

    let q2 = IpAddr::from([127, 0, 0, 2]);
    let many_headers = |n: usize| {
        let extra: String = (0..n).map(|i| format!("X-Filler-{i}: v\r\n")).collect();
        req(
            &format!("GET /api/devices/dev-1/config HTTP/1.1\r\nX-Api-Key: {DEV1}\r\n{extra}"),
            "",
        )
    };
    let mut attacks = vec![
        // --- path tricks: refused, never normalised into another route ---
        attack("dot-dot into another device", get("/api/devices/dev-1/../dev-2/config", Some(DEV1)), 400, INVALID),
        attack("encoded dot-dot", get("/api/devices/%2e%2e/admin", Some(DEV1)), 400, INVALID),
        attack("upper-case encoded dot-dot", get("/api/firmware/%2E%2E/admin/users", Some(DEV1)), 400, INVALID),
        attack("double slash prefix", get("//api/admin/users", Some(DEV1)), 400, INVALID),
        attack("double slash inside", get("/api//admin/users", Some(DEV1)), 400, INVALID),
        attack("encoded slash", get("/api%2Fadmin/users", Some(DEV1)), 400, INVALID),
        attack("encoded slash dot-dot", get("/api/devices/dev-1%2F..%2F..%2Fadmin", Some(DEV1)), 400, INVALID),
        attack("encoded letter", get("/api/devices/%64ev-2/config", Some(DEV1)), 400, INVALID),
        attack("semicolon dot-dot", get("/api/devices/dev-1/config;/../../admin", Some(DEV1)), 400, INVALID),
        attack("encoded NUL", get("/api/admin%00/users", Some(DEV1)), 400, INVALID),
        attack("double encoding", get("/api/devices/dev-1/%252e%252e/admin", Some(DEV1)), 400, INVALID),
        attack("backslash", get("/api/devices/dev-1/config\\..\\..\\admin", Some(DEV1)), 400, INVALID),
        attack("case variant of a route", get("/API/admin/users", Some(DEV1)), 404, INVALID),
        attack("absolute-form target", get("http://evil.example/api/admin/users", Some(DEV1)), 403, RBAC),
        // --- authorization: BOLA, device types, deny rules, default deny ---
        attack("another device's telemetry (BOLA)", post_json("/api/devices/dev-2/telemetry", DEV1, Some("application/json"), r#"{"t":1}"#), 403, RBAC),
        attack("another device's config (BOLA)", get("/api/devices/dev-2/config", Some(DEV1)), 403, RBAC),
        attack("firmware for a sensor", get("/api/firmware/v2.bin", Some(DEV1)), 403, RBAC),
        attack("firmware for a sensor, trailing slash", get("/api/firmware/", Some(DEV1)), 403, RBAC),
        attack("deny wins over an admin role", get("/api/firmware/v2.bin", Some(SENSOR_ADMIN)), 403, RBAC),
        attack("admin route for a device", get("/api/admin/users", Some(DEV1)), 403, RBAC),
        attack("method not granted", req(&format!("DELETE /api/devices/dev-1/config HTTP/1.1\r\nX-Api-Key: {DEV1}\r\n"), ""), 403, RBAC),
        attack("anonymous on a device route", get("/api/devices/anonymous/config", None), 401, AUTH),
        attack("forged key", get("/api/admin/users", Some("key-forged-000000000000000")), 401, AUTH),
        attack("method not allowed on the route", req(&format!("PUT /api/firmware/v2.bin HTTP/1.1\r\nX-Api-Key: {HUB1}\r\nContent-Length: 0\r\n"), ""), 405, INVALID),
        attack("admin API path on the gateway", get("/admin/quarantines", None), 404, INVALID),
        // --- input validation ---
        attack("wrong content type", post_json("/api/devices/dev-1/telemetry", DEV1, Some("text/plain"), r#"{"t":1}"#), 415, INVALID),
        attack("missing content type", post_json("/api/devices/dev-1/telemetry", DEV1, None, r#"{"t":1}"#), 415, INVALID),
        attack("invalid JSON", post_json("/api/devices/dev-1/telemetry", DEV1, Some("application/json"), r#"{"t":"#), 400, INVALID),
        attack("schema violation", post_json("/api/devices/dev-1/telemetry", DEV1, Some("application/json"), r#"{"t":"hot"}"#), 400, INVALID),
        attack("extra property", post_json("/api/devices/dev-1/telemetry", DEV1, Some("application/json"), r#"{"t":1,"cmd":"reboot"}"#), 400, INVALID),
        attack("declared oversize body, not sent", req(&format!("POST /api/devices/dev-1/telemetry HTTP/1.1\r\nX-Api-Key: {DEV1}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n"), ""), 413, INVALID),
        attack("chunked oversize body", req(&format!("POST /api/devices/dev-1/telemetry HTTP/1.1\r\nX-Api-Key: {DEV1}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"), &format!("12c\r\n{{\"t\":{}1}}\r\n0\r\n\r\n", " ".repeat(293))), 413, INVALID),
        attack("oversize on a small route", req(&format!("GET /api/firmware/v2.bin HTTP/1.1\r\nX-Api-Key: {HUB1}\r\nContent-Length: 1000\r\n"), ""), 413, INVALID),
        // --- headers and smuggling ---
        attack("too many headers", many_headers(70), 431, INVALID),
        attack("too many headers for hyper", many_headers(120), 431, By::Hyper),
        attack("oversize header", req(&format!("GET /api/devices/dev-1/config HTTP/1.1\r\nX-Api-Key: {DEV1}\r\nX-Big: {}\r\n", "a".repeat(20_000)), ""), 431, INVALID),
        attack("obs-fold", req(&format!("GET /api/devices/dev-1/config HTTP/1.1\r\nX-Api-Key: {DEV1}\r\nX-Folded: a\r\n b\r\n"), ""), 400, By::Hyper),
        attack("conflicting Content-Lengths", req(&format!("POST /api/devices/dev-1/telemetry HTTP/1.1\r\nX-Api-Key: {DEV1}\r\nContent-Type: application/json\r\nContent-Length: 7\r\nContent-Length: 8\r\n"), r#"{"t":1}"#), 400, By::Hyper),
        attack("non-chunked Transfer-Encoding", req(&format!("POST /api/devices/dev-1/telemetry HTTP/1.1\r\nX-Api-Key: {DEV1}\r\nTransfer-Encoding: gzip\r\n"), ""), 400, By::Hyper),
        attack("chunked not last", req(&format!("POST /api/devices/dev-1/telemetry HTTP/1.1\r\nX-Api-Key: {DEV1}\r\nTransfer-Encoding: chunked, identity\r\n"), ""), 400, By::Hyper),
        attack("Transfer-Encoding in HTTP/1.0", format!("POST /api/devices/dev-1/telemetry HTTP/1.0\r\nX-Api-Key: {DEV1}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").into_bytes(), 400, By::Hyper),
        attack("space before colon", req(&format!("POST /api/devices/dev-1/telemetry HTTP/1.1\r\nX-Api-Key: {DEV1}\r\nContent-Length : 7\r\n"), r#"{"t":1}"#), 400, By::Hyper),
        attack("signed Content-Length", req(&format!("POST /api/devices/dev-1/telemetry HTTP/1.1\r\nX-Api-Key: {DEV1}\r\nContent-Length: +7\r\n"), r#"{"t":1}"#), 400, By::Hyper),
        // --- quarantined subjects ---
        attack("quarantined identity (from the bus)", get("/api/devices/q-ident/config", Some(QIDENT)), 403, QUARANTINED),
        attack("quarantined API key", get("/api/devices/dev-qk/config", Some(QKEY)), 403, QUARANTINED),
        attack("quarantined tenant", get("/api/devices/dev-evil/config", Some(EVIL)), 403, QUARANTINED),
    ];
    attacks.push(Attack {
        name: "quarantined IP, anonymous",
        from: q2,
        request: get("/public/info", None),
        status: 403,
        by: QUARANTINED,
    });
    attacks.push(Attack {
        name: "quarantined IP, valid key",
        from: q2,
        request: get("/api/devices/dev-1/config", Some(DEV1)),
        status: 403,
        by: QUARANTINED,
    });

    let mut ids: Vec<(String, &'static str, Outcome, u16)> = Vec::new();
    for at in &attacks {
        let resps = raw_from(at.from, a, &at.request)
            .await
            .with_context(|| at.name)?;
        let r = resps
            .first()
            .with_context(|| format!("{}: no response", at.name))?;
        ensure!(
            r.status == at.status,
            "{}: got {}, want {} ({})",
            at.name,
            r.status,
            at.status,
            r.body
        );
        match at.by {
            By::Gateway(outcome) => {
                r.check_generic().with_context(|| at.name)?;
                let id = r.header("x-request-id").context("request id")?.to_string();
                ids.push((id, at.name, outcome, r.status));
            }
            By::Hyper => ensure!(
                r.header("x-request-id").is_none() && r.body.is_empty(),
                "{}: expected hyper's own refusal, got {r:?}",
                at.name
            ),
        }
    }

    // Request smuggling with both framings, in both orders, and a second request hidden in
    // the body: hyper frames the body by `Transfer-Encoding`, drops `Content-Length`, answers
    // the first request and closes the connection (RFC 9112 §6.1), so the hidden request is
    // never read — by the gateway or by the upstream.
    for (order, framing) in [
        (
            "TE.CL",
            "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
        ),
        (
            "CL.TE",
            "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
        ),
    ] {
        let smuggle = format!(
            "POST /api/devices/dev-1/telemetry HTTP/1.1\r\nHost: gw\r\nX-Api-Key: {DEV1}\r\n\
             Content-Type: application/json\r\n{framing}\r\n\
             8\r\n{{\"t\":42}}\r\n0\r\n\r\nGET /api/admin/users HTTP/1.1\r\nHost: gw\r\n\r\n"
        );
        let resps = raw_from(IpAddr::from([127, 0, 0, 1]), a, smuggle.as_bytes()).await?;
        let statuses: Vec<u16> = resps.iter().map(|r| r.status).collect();
        ensure!(statuses == [200], "{order} smuggling: {statuses:?}");
        ensure!(
            resps[0].body.ends_with(" 8") && resps[0].header("connection") == Some("close"),
            "{order}: the chunked body went upstream and the connection closed: {resps:?}"
        );
        expected_hits.push("POST /api/devices/dev-1/telemetry".into());
    }

    // Admin API without or with a wrong token.
    let admin_attacks: Vec<(&str, Vec<u8>)> = vec![
        ("no token", req("GET /admin/quarantines HTTP/1.1\r\n", "")),
        (
            "wrong token",
            req(
                "GET /admin/quarantines HTTP/1.1\r\nAuthorization: Bearer not-the-token\r\n",
                "",
            ),
        ),
        (
            "basic scheme",
            req(
                &format!(
                    "GET /admin/quarantines HTTP/1.1\r\nAuthorization: Basic {ADMIN_TOKEN}\r\n"
                ),
                "",
            ),
        ),
        (
            "token in the query",
            req(
                &format!("GET /admin/quarantines?token={ADMIN_TOKEN} HTTP/1.1\r\n"),
                "",
            ),
        ),
        (
            "release with a wrong token",
            req(
                "DELETE /admin/quarantines/identity/q-ident HTTP/1.1\r\nAuthorization: Bearer x\r\n",
                "",
            ),
        ),
        (
            "quarantine with a wrong token",
            req(
                "POST /admin/quarantines HTTP/1.1\r\nAuthorization: Bearer x\r\nContent-Type: application/json\r\nContent-Length: 50\r\n",
                r#"{"subject":{"kind":"identity","value":"dev-2"}}   "#,
            ),
        ),
        (
            "reload without a token",
            req("POST /admin/reload HTTP/1.1\r\nContent-Length: 0\r\n", ""),
        ),
    ];
    for (name, request) in &admin_attacks {
        let r = raw(gw.admin, request).await?;
        ensure!(r.status == 401, "admin {name}: {} {}", r.status, r.body);
        r.check_generic().with_context(|| *name)?;
        ensure!(
            r.header("www-authenticate").is_some(),
            "admin {name}: challenge"
        );
    }
    // The refused admin calls changed nothing.
    ensure!(
        raw(a, &get("/api/devices/dev-2/config", Some(DEV2)))
            .await?
            .status
            == 200
    );
    expected_hits.push("GET /api/devices/dev-2/config".into());
    ensure!(
        raw(a, &get("/api/devices/q-ident/config", Some(QIDENT)))
            .await?
            .status
            == 403,
        "still quarantined"
    );

    let total = attacks.len() + 2 + admin_attacks.len();
    println!("{total} attack requests, each with its exact status");
    ensure!(total >= 55, "only {total} attacks");

    // The upstream saw the legitimate requests and nothing else.
    let hits = up.hits();
    ensure!(
        hits == expected_hits,
        "upstream hits differ:\n got {hits:#?}\nwant {expected_hits:#?}"
    );

    // Every refusal by the gateway left one event with the right outcome and status.
    let events = gw.events().await?;
    let by_id: HashMap<&str, &RequestEvent> = events.iter().map(|e| (e.id.as_str(), e)).collect();
    for (id, name, outcome, status) in &ids {
        let e = by_id
            .get(id.as_str())
            .with_context(|| format!("{name}: no event"))?;
        ensure!(
            e.decision == *outcome && e.status == *status,
            "{name}: event {:?}/{} want {outcome:?}/{status}",
            e.decision,
            e.status
        );
    }
    // Admin calls are audited as events too.
    let audit: Vec<&RequestEvent> = events.iter().filter(|e| e.route == "admin").collect();
    ensure!(
        audit.len() == 3 + admin_attacks.len(),
        "{} admin events",
        audit.len()
    );
    ensure!(
        audit
            .iter()
            .filter(|e| e.status == 401)
            .all(|e| e.decision == Outcome::DeniedAuth && e.identity == "anonymous")
    );
    ensure!(
        audit
            .iter()
            .filter(|e| e.status == 201)
            .all(|e| e.identity == "admin" && e.decision == Outcome::Allowed)
    );
    gw.stack.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_insensitive_paths_refuse_mixed_case() -> anyhow::Result<()> {
    let up = upstream().await?;
    let dir = tempfile::tempdir()?;
    let gw = gateway(
        config(&up, dir.path(), "[paths]\ncase = \"insensitive\"\n")?,
        &[],
    )
    .await?;
    for path in [
        "/API/admin/users",
        "/api/Devices/dev-1/config",
        "/api/devices/DEV-2/config",
    ] {
        let r = raw(gw.addr, &get(path, Some(DEV1))).await?;
        ensure!(r.status == 400, "{path}: {}", r.status);
        r.check_generic()?;
    }
    ensure!(
        raw(gw.addr, &get("/api/devices/dev-1/config", Some(DEV1)))
            .await?
            .status
            == 200
    );
    ensure!(up.hits() == ["GET /api/devices/dev-1/config"]);
    gw.stack.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_is_exact_over_real_sockets() -> anyhow::Result<()> {
    let up = upstream().await?;
    let dir = tempfile::tempdir()?;
    let extra = "[limits.identity]\nrate_per_s = 20.0\nburst = 5\n";
    let gw = gateway(config(&up, dir.path(), extra)?, &[]).await?;
    let client = reqwest::Client::new();
    let url = format!("http://{}/api/devices/dev-1/config", gw.addr);
    // Warm the connection so the measured window holds only paced requests.
    let warm = client
        .get(format!("http://{}/public/info", gw.addr))
        .send()
        .await?;
    ensure!(warm.status() == 200);

    let n = 80u32;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (mut passed, mut limited) = (0u32, 0u32);
    let mut first = None;
    let mut last = Instant::now();
    let mut seen_429 = None;
    for _ in 0..n {
        tick.tick().await;
        let now = Instant::now();
        first.get_or_insert(now);
        last = now;
        let r = client.get(&url).header("x-api-key", DEV1).send().await?;
        match r.status().as_u16() {
            200 => {
                passed += 1;
                ensure!(r.headers().get("ratelimit-limit").is_some_and(|v| v == "5"));
            }
            429 => {
                limited += 1;
                let h = |k: &str| {
                    r.headers()
                        .get(k)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                seen_429.get_or_insert((
                    h("retry-after"),
                    h("ratelimit-limit"),
                    h("ratelimit-remaining"),
                ));
            }
            s => bail!("unexpected {s}"),
        }
    }
    let elapsed = last
        .duration_since(first.context("no request")?)
        .as_secs_f64();
    let expected = 5.0 + (20.0 * elapsed).floor();
    println!("{passed} of {n} passed over {elapsed:.3} s; expected {expected}");
    ensure!(passed + limited == n);
    ensure!(
        (f64::from(passed) - expected).abs() <= 1.0,
        "{passed} passed, expected {expected} ± 1"
    );
    let (retry, limit, remaining) = seen_429.context("no 429")?;
    ensure!(
        retry.as_deref() == Some("1")
            && limit.as_deref() == Some("5")
            && remaining.as_deref() == Some("0")
    );
    // Another device has its own bucket.
    let other = client
        .get(format!("http://{}/api/devices/dev-2/config", gw.addr))
        .header("x-api-key", DEV2)
        .send()
        .await?;
    ensure!(other.status() == 200);
    let hits = up.hits().len() as u32;
    ensure!(
        hits == passed + 2,
        "upstream saw {hits}: throttled requests must not reach it"
    );
    let events = gw.events().await?;
    let throttled = events
        .iter()
        .filter(|e| e.decision == Outcome::Throttled)
        .count() as u32;
    ensure!(
        throttled == limited,
        "{throttled} throttled events for {limited} 429s"
    );
    gw.stack.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttle_decisions_and_load_shedding() -> anyhow::Result<()> {
    let up = upstream().await?;
    let dir = tempfile::tempdir()?;
    let extra = "[limits]\nthrottled = { rate_per_s = 0.5, burst = 2 }\n\
                 ip = { rate_per_s = 0.5, burst = 3 }\n\
                 [limits.routes.hold]\nmax_in_flight = 1\n";
    let gw = gateway(config(&up, dir.path(), extra)?, &[]).await?;
    let a = gw.addr;

    // A `throttle` decision (as the processor publishes it) reduces dev-2 to 2 requests now.
    let (s, v) = admin_call(
        &gw,
        reqwest::Method::POST,
        "/admin/quarantines",
        Some(ADMIN_TOKEN),
        Some(json!({"subject": {"kind": "identity", "value": "dev-2"}, "action": "throttle", "ttl_s": 60})),
    )
    .await?;
    ensure!(s == 201, "{s} {v}");
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(
            raw(a, &get("/api/devices/dev-2/config", Some(DEV2)))
                .await?
                .status,
        );
    }
    ensure!(
        statuses == [200, 200, 429, 429, 429],
        "throttled: {statuses:?}"
    );
    ensure!(
        raw(a, &get("/api/devices/dev-1/config", Some(DEV1)))
            .await?
            .status
            == 200
    );

    // Guessing keys: refused credentials count against the client IP's limit.
    let mut statuses = Vec::new();
    for i in 0..5 {
        let forged = format!("key-guess-{i:016}");
        statuses.push(
            raw(a, &get("/api/devices/dev-1/config", Some(&forged)))
                .await?
                .status,
        );
    }
    ensure!(
        statuses == [401, 401, 401, 429, 429],
        "key guessing: {statuses:?}"
    );

    // Load shedding: one request in flight on `hold`; the next is answered 503 at once.
    let held = tokio::spawn(async move { raw(a, &get("/api/hold/x/hold", Some(OPS))).await });
    tokio::time::timeout(Duration::from_secs(10), up.arrived.notified()).await?;
    let shed = raw(a, &get("/api/hold/y", Some(OPS))).await?;
    ensure!(shed.status == 503, "shed: {}", shed.status);
    shed.check_generic()?;
    ensure!(shed.header("retry-after") == Some("1"));
    up.release.add_permits(1);
    ensure!(held.await??.status == 200, "the held request completes");
    ensure!(
        raw(a, &get("/api/hold/y", Some(OPS))).await?.status == 200,
        "slot released"
    );
    let hits = up.hits();
    ensure!(
        hits.iter().filter(|h| *h == "GET /api/hold/y").count() == 1,
        "the shed request never reached the upstream: {hits:?}"
    );
    gw.stack.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_reloads_take_effect_without_failing_requests_in_flight() -> anyhow::Result<()> {
    let up = upstream().await?;
    let dir = tempfile::tempdir()?;
    // The shadow policy is stricter: it grants telemetry only.
    let shadow = dir.path().join("shadow.toml");
    std::fs::write(
        &shadow,
        "[roles.telemetry_writer]\nallow = [{ methods = [\"POST\"], path = \"/api/devices/{identity}/telemetry\" }]\n\
         [device_types.temperature_sensor]\nroles = [\"telemetry_writer\"]\n",
    )?;
    let rbac = format!(
        "shadow_policy = \"{}\"\nreload_interval_ms = 100\n",
        shadow.display()
    );
    let gw = gateway(config_with(&up, dir.path(), &rbac, "")?, &[]).await?;
    let a = gw.addr;
    let policy = dir.path().join("rbac.toml");

    // Shadow mode: allowed, but counted as a would-be denial with its request id.
    let r = raw(a, &get("/api/devices/dev-1/config", Some(DEV1))).await?;
    ensure!(r.status == 200);
    let rid = r.header("x-request-id").context("id")?.to_string();
    let (s, v) = admin_call(
        &gw,
        reqwest::Method::GET,
        "/admin/rbac/shadow",
        Some(ADMIN_TOKEN),
        None,
    )
    .await?;
    ensure!(s == 200 && v["would_deny"] == 1, "shadow: {v}");
    ensure!(v["recent"][0]["request_id"] == rid.as_str(), "shadow: {v}");

    // A request in flight under the old policy…
    let held =
        tokio::spawn(async move { raw(a, &get("/api/devices/dev-1/hold", Some(DEV1))).await });
    tokio::time::timeout(Duration::from_secs(10), up.arrived.notified()).await?;
    // …while the policy file changes to one without the config grant; the watcher reloads it.
    let v2 = POLICY.replace(
        "  { methods = [\"GET\"], path = \"/api/devices/{identity}/config\" },\n",
        "",
    );
    ensure!(v2 != POLICY);
    std::fs::write(&policy, &v2)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = raw(a, &get("/api/devices/dev-1/config", Some(DEV1))).await?;
        if r.status == 403 {
            break;
        }
        ensure!(
            r.status == 200 && Instant::now() < deadline,
            "reload not applied: {}",
            r.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    up.release.add_permits(1);
    let done = held.await??;
    ensure!(
        done.status == 200,
        "in-flight request failed: {}",
        done.status
    );

    // An invalid policy is refused by the admin reload (422) and the current rules stay.
    std::fs::write(
        &policy,
        "[roles.x]\nallow = [{ methods = [\"get\"], path = \"nope\" }]\n",
    )?;
    let (s, v) = admin_call(
        &gw,
        reqwest::Method::POST,
        "/admin/reload",
        Some(ADMIN_TOKEN),
        None,
    )
    .await?;
    ensure!(
        s == 422 && v["error"]["code"] == "invalid_policy",
        "bad reload: {s} {v}"
    );
    ensure!(
        raw(a, &get("/api/devices/dev-1/config", Some(DEV1)))
            .await?
            .status
            == 403
    );

    // Back to v1 through the admin API.
    std::fs::write(&policy, POLICY)?;
    let (s, v) = admin_call(
        &gw,
        reqwest::Method::POST,
        "/admin/reload",
        Some(ADMIN_TOKEN),
        None,
    )
    .await?;
    ensure!(s == 200, "reload: {s} {v}");
    ensure!(
        raw(a, &get("/api/devices/dev-1/config", Some(DEV1)))
            .await?
            .status
            == 200
    );

    // The effective policy of a device, as the admin API shows it.
    let (s, v) = admin_call(
        &gw,
        reqwest::Method::GET,
        "/admin/policy/dev-1",
        Some(ADMIN_TOKEN),
        None,
    )
    .await?;
    ensure!(s == 200, "{s} {v}");
    let enforced = &v["rbac"]["enforced"];
    ensure!(
        enforced["roles"] == json!(["authenticated", "telemetry_writer"]),
        "{v}"
    );
    ensure!(
        enforced["allow"]
            .as_array()
            .context("allow")?
            .iter()
            .any(|r| r["path"] == "/api/devices/dev-1/telemetry"),
        "{v}"
    );
    ensure!(
        enforced["deny"][0]["name"] == "sensors-never-touch-firmware",
        "{v}"
    );
    up.release.add_permits(8);
    gw.stack.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_releases_are_published_as_decisions() -> anyhow::Result<()> {
    let up = upstream().await?;
    let dir = tempfile::tempdir()?;
    let gw = gateway(config(&up, dir.path(), "")?, &[]).await?;
    let a = gw.addr;
    let token = Some(ADMIN_TOKEN);
    let (s, _) = admin_call(&gw, reqwest::Method::POST, "/admin/quarantines", token, Some(json!({"subject": {"kind": "identity", "value": "dev-2"}, "ttl_s": 60, "reason": "manual"}))).await?;
    ensure!(s == 201);
    ensure!(
        raw(a, &get("/api/devices/dev-2/config", Some(DEV2)))
            .await?
            .status
            == 403
    );
    let (s, v) = admin_call(&gw, reqwest::Method::GET, "/admin/quarantines", token, None).await?;
    ensure!(
        s == 200 && v["decisions"][0]["subject"]["value"] == "dev-2",
        "{v}"
    );
    let (s, _) = admin_call(
        &gw,
        reqwest::Method::DELETE,
        "/admin/quarantines/identity/dev-2",
        token,
        None,
    )
    .await?;
    ensure!(s == 200);
    ensure!(
        raw(a, &get("/api/devices/dev-2/config", Some(DEV2)))
            .await?
            .status
            == 200
    );
    // Bad admin input: generic 400s.
    for body in [
        json!({"subject": {"kind": "route", "value": "x"}}),
        json!({"subject": {"kind": "ip", "value": "not-an-ip"}}),
        json!({"subject": {"kind": "identity", "value": "d"}, "ttl_s": 0}),
        json!({"subject": {"kind": "identity", "value": "d"}, "bogus": 1}),
    ] {
        let (s, v) = admin_call(
            &gw,
            reqwest::Method::POST,
            "/admin/quarantines",
            token,
            Some(body.clone()),
        )
        .await?;
        ensure!(
            s == 400 && v["error"]["code"] == "bad_request",
            "{body}: {s} {v}"
        );
    }
    // Both decisions are on the decisions topic, for every other gateway and the processor.
    let mut decisions = Vec::new();
    warden_bus::read_to_end(
        &*gw.bus,
        &gw.config.bus.topics.decisions,
        Duration::from_secs(10),
        |m| {
            if let Ok(d) = warden_event::decode::<Decision>(&m.payload) {
                decisions.push(d);
            }
        },
    )
    .await?;
    let actions: Vec<Action> = decisions
        .iter()
        .filter(|d| d.subject.value == "dev-2")
        .map(|d| d.action)
        .collect();
    ensure!(
        actions.contains(&Action::Release) && decisions.iter().all(|d| d.detector == "admin"),
        "{decisions:?}"
    );
    gw.stack.stop().await
}
