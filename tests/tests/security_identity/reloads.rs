//! Reloads under a running gateway, without a restart: CRL and deny-list changes reach open
//! connections and new handshakes, the background watcher picks changes up by itself, the
//! registry and the server certificate reload (a bad file is refused whole), reloads with
//! requests in flight fail none of them, and JWKS rotation works without letting unknown
//! `kid`s flood the IdP.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, ensure};
use jsonwebtoken::jwk::JwkSet;
use warden_tests::pki::replace_file;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crl_and_deny_list_changes_reach_open_connections_and_new_handshakes() -> anyhow::Result<()>
{
    let s = Scenario::start(60_000).await?;
    let good = s.tls_client(Some(&s.certs.good))?;
    ensure!(status(good.get(s.https("/firmware/a"))).await? == 200);

    // Revoke thermo-1 (serial 1) alongside thermo-2: the open h2 connection's next request is
    // refused, and a new connection is refused at the handshake.
    replace_file(&s.files.crl, s.certs.device_ca.crl(&[1, 2], 2)?.as_bytes())?;
    let report = s.identity()?.reload_now().await;
    ensure!(report.reloaded == vec!["tls"], "{report:?}");
    ensure!(
        status(good.get(s.https("/firmware/a"))).await? == 401,
        "open connection"
    );
    let fresh = s.tls_client(Some(&s.certs.good))?;
    ensure!(
        fresh.get(s.https("/firmware/a")).send().await.is_err(),
        "new handshake"
    );

    // A CRL that does not parse is refused as a whole: the previous one stays in force.
    replace_file(
        &s.files.crl,
        b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
    )?;
    let report = s.identity()?.reload_now().await;
    ensure!(
        report.failed.len() == 1 && report.failed[0].0 == "tls",
        "{report:?}"
    );
    ensure!(status(good.get(s.https("/firmware/a"))).await? == 401);

    // Un-revoke: a new connection works again.
    replace_file(&s.files.crl, s.certs.device_ca.crl(&[2], 3)?.as_bytes())?;
    ensure!(s.identity()?.reload_now().await.reloaded == vec!["tls"]);
    let again = s.tls_client(Some(&s.certs.good))?;
    ensure!(status(again.get(s.https("/firmware/a"))).await? == 200);

    // Deny thermo-1's fingerprint: its open connection is refused on the next request.
    replace_file(
        &s.files.deny,
        format!(
            "{}\n{}\n",
            s.certs.denied.fingerprint(),
            s.certs.good.fingerprint()
        )
        .as_bytes(),
    )?;
    ensure!(s.identity()?.reload_now().await.reloaded == vec!["deny_fingerprints"]);
    ensure!(status(again.get(s.https("/firmware/a"))).await? == 401);
    let hits = s.hits();
    s.stop().await?;
    ensure!(
        hits == 2,
        "upstream reached {hits} times, expected the 2 accepted requests"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_watcher_picks_up_changes_without_a_call() -> anyhow::Result<()> {
    let s = Scenario::start(100).await?;
    let plain = s.plain_client()?;
    let token = s.rsa.sign(&claims("user-7"))?;
    ensure!(status(plain.get(s.http("/tokens/t")).bearer_auth(&token)).await? == 200);
    replace_file(
        &s.files.registry,
        REGISTRY
            .replace(
                "roles = [\"operator\"]",
                "roles = [\"operator\"]\nstatus = \"disabled\"",
            )
            .as_bytes(),
    )?;
    eventually(Duration::from_secs(5), || async {
        Ok(status(plain.get(s.http("/tokens/t")).bearer_auth(&token)).await? == 401)
    })
    .await
    .context("registry change not picked up")?;
    s.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_reload_applies_and_a_bad_registry_is_refused_whole() -> anyhow::Result<()> {
    let s = Scenario::start(60_000).await?;
    let plain = s.plain_client()?;
    let req = || plain.get(s.http("/keys/t")).header("x-api-key", KEY_NEW);
    ensure!(status(req()).await? == 200);

    // Disable thermo-6.
    let disabled = REGISTRY.replace(
        "id = \"thermo-6\"\ntenant = \"acme\"",
        "id = \"thermo-6\"\ntenant = \"acme\"\nstatus = \"disabled\"",
    );
    ensure!(disabled != REGISTRY);
    replace_file(&s.files.registry, disabled.as_bytes())?;
    ensure!(s.identity()?.reload_now().await.reloaded == vec!["registry"]);
    ensure!(status(req()).await? == 401);

    // An invalid registry (unknown key, duplicate id, bad method) is refused with every
    // problem; the disabled state stays.
    let bad = format!(
        "{disabled}\n[[identity]]\nid = \"thermo-1\"\nauth_methods = [\"password\"]\ncolour = \"red\"\n"
    );
    replace_file(&s.files.registry, bad.as_bytes())?;
    let report = s.identity()?.reload_now().await;
    ensure!(report.failed.len() == 1, "{report:?}");
    ensure!(
        report.failed[0].1.len() >= 2,
        "every problem listed: {report:?}"
    );
    ensure!(status(req()).await? == 401);
    ensure!(s.identity()?.registry_len() == Some(8));

    // Re-enable; only API keys are allowed for thermo-6, so a token for it stays refused.
    replace_file(&s.files.registry, REGISTRY.as_bytes())?;
    ensure!(s.identity()?.reload_now().await.reloaded == vec!["registry"]);
    ensure!(status(req()).await? == 200);
    ensure!(
        status(
            plain
                .get(s.http("/api/t"))
                .bearer_auth(s.rsa.sign(&claims("thermo-6"))?)
        )
        .await?
            == 401
    );
    s.stop().await?;
    Ok(())
}

/// SHA-256 of the certificate a TLS server presents.
async fn served_fingerprint(s: &Scenario) -> anyhow::Result<String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in warden_config::parse_certs(s.certs.server_ca.cert_pem.as_bytes())
        .map_err(anyhow::Error::msg)?
    {
        roots.add(c)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(s.https).await?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls_pki_types::ServerName::try_from("127.0.0.1")?.to_owned(),
            tcp,
        )
        .await?;
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .context("no certificate")?;
    Ok(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        leaf.as_ref(),
    )))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_certificate_reload_keeps_open_connections_and_refuses_a_mismatched_key()
-> anyhow::Result<()> {
    let s = Scenario::start(60_000).await?;
    let good = s.tls_client(Some(&s.certs.good))?;
    ensure!(status(good.get(s.https("/api/a"))).await? == 200);
    let before = served_fingerprint(&s).await?;

    let next = s.certs.server_ca.server()?;
    replace_file(&s.files.server_key, next.key_pem.as_bytes())?;
    replace_file(&s.files.server_cert, next.cert_pem.as_bytes())?;
    ensure!(s.identity()?.reload_now().await.reloaded == vec!["tls"]);
    let after = served_fingerprint(&s).await?;
    ensure!(
        after == hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&next.der)),
        "new certificate served"
    );
    ensure!(after != before);
    // The connection opened before the reload still works.
    ensure!(status(good.get(s.https("/api/b"))).await? == 200);

    // A certificate whose key does not match is refused; the current pair stays.
    let other = s.certs.server_ca.server()?;
    replace_file(&s.files.server_cert, other.cert_pem.as_bytes())?;
    let report = s.identity()?.reload_now().await;
    ensure!(report.failed.len() == 1, "{report:?}");
    ensure!(served_fingerprint(&s).await? == after);
    s.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_while_requests_are_in_flight_fail_none_of_them() -> anyhow::Result<()> {
    let s = Arc::new(Scenario::start(60_000).await?);
    let good = s.tls_client(Some(&s.certs.good))?;
    let plain = s.plain_client()?;
    let token = s.rsa.sign(&claims("thermo-1"))?;
    let mut tasks = Vec::new();
    for i in 0..24 {
        let req = match i % 3 {
            0 => good.get(s.https("/firmware/slow")),
            1 => plain.get(s.http("/api/slow")).bearer_auth(&token),
            _ => plain.get(s.http("/keys/slow")).header("x-api-key", KEY_NEW),
        };
        tasks.push(tokio::spawn(async move {
            req.send().await.map(|r| r.status().as_u16())
        }));
    }
    // While they wait on the slow upstream: swap the server certificate, the CRL, the deny
    // list and the registry (all still admitting these identities).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let next = s.certs.server_ca.server()?;
    replace_file(&s.files.server_key, next.key_pem.as_bytes())?;
    replace_file(&s.files.server_cert, next.cert_pem.as_bytes())?;
    replace_file(&s.files.crl, s.certs.device_ca.crl(&[2, 3], 5)?.as_bytes())?;
    replace_file(
        &s.files.deny,
        format!("{}\n", s.certs.denied.fingerprint()).as_bytes(),
    )?;
    replace_file(
        &s.files.registry,
        format!("{REGISTRY}\n# touched\n").as_bytes(),
    )?;
    let report = s.identity()?.reload_now().await;
    ensure!(
        report.failed.is_empty() && report.reloaded.len() == 3,
        "{report:?}"
    );
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(
            t.await?
                .map_err(|e| anyhow::anyhow!("in-flight request failed: {e}"))?,
        );
    }
    ensure!(codes.iter().all(|c| *c == 200), "{codes:?}");
    // And new requests after the reload still pass.
    ensure!(status(good.get(s.https("/firmware/x"))).await? == 200);
    let s = Arc::into_inner(s).context("scenario still shared")?;
    s.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_rotation_is_picked_up_and_unknown_kids_cannot_flood_the_idp() -> anyhow::Result<()> {
    let s = Scenario::start(60_000).await?;
    let plain = s.plain_client()?;
    let start_fetches = s.idp.hits.load(Ordering::SeqCst);
    ensure!(
        start_fetches == 1,
        "one fetch at start, got {start_fetches}"
    );

    // The IdP publishes a new key and signs with it: the first token with the new kid makes
    // the gateway refetch, and it is accepted.
    let rotated = Signer::rsa("rsa-2")?;
    s.idp.keys.set(serde_json::to_string(&JwkSet {
        keys: vec![s.rsa.jwk()?, s.ec.jwk()?, rotated.jwk()?],
    })?);
    ensure!(
        status(
            plain
                .get(s.http("/tokens/t"))
                .bearer_auth(rotated.sign(&claims("user-7"))?)
        )
        .await?
            == 200
    );
    ensure!(s.idp.hits.load(Ordering::SeqCst) == 2);

    // Made-up kids: all refused, and no more fetches within jwks_min_refetch_ms.
    for i in 0..20 {
        let fake = Signer::ec(&format!("made-up-{i}"))?;
        ensure!(
            status(
                plain
                    .get(s.http("/tokens/t"))
                    .bearer_auth(fake.sign(&claims("user-7"))?)
            )
            .await?
                == 401
        );
    }
    ensure!(
        s.idp.hits.load(Ordering::SeqCst) == 2,
        "refetches were not rate-limited"
    );
    ensure!(s.identity()?.jwks_fetches() == 2);

    // A scheduled refresh that removes the old key retires its tokens.
    s.idp.keys.set(serde_json::to_string(&JwkSet {
        keys: vec![rotated.jwk()?],
    })?);
    s.identity()?
        .refresh_jwks()
        .await
        .map_err(anyhow::Error::msg)?;
    ensure!(
        status(
            plain
                .get(s.http("/tokens/t"))
                .bearer_auth(s.rsa.sign(&claims("user-7"))?)
        )
        .await?
            == 401
    );
    ensure!(
        status(
            plain
                .get(s.http("/tokens/t"))
                .bearer_auth(rotated.sign(&claims("user-7"))?)
        )
        .await?
            == 200
    );
    s.stop().await?;
    Ok(())
}
