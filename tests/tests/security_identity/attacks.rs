//! The identity attack suite: legitimate controls first (so every refusal below is the
//! attack's), then the TLS, token and key attacks against one gateway, then the events they
//! left: every refusal is a `denied_auth` event of `anonymous` with the method that was tried,
//! and every refused handshake an event with the certificate's fingerprint.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, ensure};
use serde_json::json;
use warden_event::{AuthMethod, AuthResult, Outcome, RequestEvent};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_attacks_get_exact_statuses_and_never_reach_the_upstream() -> anyhow::Result<()> {
    let s = Scenario::start(60_000).await?;
    let c = &s.certs;
    let mut log = Log::new();
    let plain = s.plain_client()?;
    let anon_tls = s.tls_client(None)?;
    let good_tls = s.tls_client(Some(&c.good))?;

    // --- legitimate traffic first: the setup is sound, so refusals below are the attacks' ---
    let resp = log
        .control(
            &s,
            "cert on the mTLS route",
            good_tls.get(s.https("/firmware/v2")),
        )
        .await;
    if let Some(r) = resp {
        ensure!(
            r.version() == reqwest::Version::HTTP_2,
            "h2 by ALPN, got {:?}",
            r.version()
        );
    }
    log.control(
        &s,
        "cert alone on a required route",
        good_tls.get(s.https("/api/t")),
    )
    .await;
    log.control(
        &s,
        "cert plus the same identity's API key",
        good_tls
            .get(s.https("/keys/t"))
            .header("x-api-key", KEY_THERMO1),
    )
    .await;
    log.control(
        &s,
        "anonymous on the open route over TLS",
        anon_tls.get(s.https("/open/x")),
    )
    .await;
    log.control(
        &s,
        "RS256 token",
        plain
            .get(s.http("/tokens/t"))
            .bearer_auth(s.rsa.sign(&claims("user-7"))?),
    )
    .await;
    log.control(
        &s,
        "ES256 token with an audience list",
        plain
            .get(s.http("/api/t"))
            .bearer_auth(s.ec.sign(&claims_with("thermo-1", |m| {
                m.insert("aud".into(), json!(["someone-else", AUDIENCE]));
            }))?),
    )
    .await;
    log.control(
        &s,
        "current key during rotation",
        plain
            .get(s.http("/keys/t"))
            .header("x-api-key", KEY_CURRENT),
    )
    .await;
    log.control(
        &s,
        "new key during rotation",
        plain
            .get(s.http("/keys/t"))
            .header("authorization", format!("ApiKey {KEY_NEW}")),
    )
    .await;

    let tls_rejections = crate::tls::handshake_attacks(&s, &mut log).await?;
    crate::tls::request_attacks(&s, &mut log).await?;
    crate::jwt::attacks(&s, &mut log).await?;
    crate::keys::attacks(&s, &mut log).await?;

    let attacks = log.attacks;
    let refused = log.refused.clone();
    let failures = std::mem::take(&mut log.failures);
    let good_fp = c.good.fingerprint();
    let events = s.stop().await?;
    ensure!(
        failures.is_empty(),
        "{} of {attacks} checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    ensure!(attacks >= 45, "only {attacks} attacks");

    // Every refused request left a denied_auth event with the method that was tried.
    let by_id: HashMap<&str, &RequestEvent> = events.iter().map(|e| (e.id.as_str(), e)).collect();
    for (rid, (name, method)) in &refused {
        let e = by_id
            .get(rid.as_str())
            .with_context(|| format!("{name}: no event"))?;
        ensure!(
            e.decision == Outcome::DeniedAuth && e.status == 401,
            "{name}: {e:?}"
        );
        ensure!(
            e.auth.method == *method && e.auth.result != AuthResult::Ok,
            "{name}: {:?}",
            e.auth
        );
        ensure!(
            e.identity == warden_event::ANONYMOUS,
            "{name}: refused request attributed to {}",
            e.identity
        );
    }
    // Each refused handshake left an event with the certificate's fingerprint and no identity.
    for (fp, reason) in &tls_rejections {
        let n = events
            .iter()
            .filter(|e| {
                e.route == "tls_handshake"
                    && e.tls
                        .as_ref()
                        .and_then(|t| t.client_cert_fingerprint.as_deref())
                        == Some(fp)
            })
            .count();
        ensure!(n == 1, "{reason:?}: {n} handshake events");
    }
    ensure!(
        events
            .iter()
            .filter(|e| e.route == "tls_handshake")
            .all(|e| e.identity == warden_event::ANONYMOUS
                && e.decision == Outcome::DeniedAuth
                && e.auth.method == AuthMethod::ClientCert),
        "handshake events must be anonymous denied_auth client_cert events"
    );
    // Accepted TLS requests carry the TLS version and the certificate fingerprint.
    let tls_ok = events
        .iter()
        .find(|e| e.route == "firmware" && e.status == 200)
        .context("firmware event")?;
    ensure!(
        tls_ok.identity == "thermo-1" && tls_ok.tenant == "acme",
        "{tls_ok:?}"
    );
    ensure!(tls_ok.auth.method == AuthMethod::ClientCert, "{tls_ok:?}");
    let t = tls_ok.tls.as_ref().context("tls info")?;
    ensure!(
        t.version == "TLSv1.3" && t.client_cert_fingerprint.as_deref() == Some(good_fp.as_str()),
        "{t:?}"
    );
    println!("{attacks} identity attacks refused as expected");
    Ok(())
}

#[test]
fn files_referenced_by_the_config_are_checked() -> anyhow::Result<()> {
    let certs = Certs::new()?;
    let files = Files::write(&certs)?;
    std::fs::remove_file(&files.crl)?;
    std::fs::write(&files.registry, "[[identity]]\nid = \"x\"\n")?;
    let errs = config(
        &files,
        "127.0.0.1:9".parse()?,
        "https://127.0.0.1:9/jwks.json",
        1000,
        false,
    )
    .err()
    .context("must fail")?;
    let text = errs.to_string();
    ensure!(
        text.contains("gateway.tls.client_auth.crl_files[0]"),
        "{text}"
    );
    ensure!(text.contains("identity.registry.file"), "{text}");
    let _unused: &Path = files.dir.path();
    Ok(())
}
