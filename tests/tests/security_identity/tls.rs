//! Client-certificate attacks: refused at the handshake (untrusted CA, expired, not yet valid,
//! revoked, denied fingerprint, missing where required) or per request (no certificate on an
//! mTLS route, a certificate with another identity's header credential, disabled, unregistered
//! or nameless identities).

use std::time::Duration;

use anyhow::{Context, ensure};
use warden_event::{AuthMethod, AuthResult};
use warden_gateway::TlsRejection;
use warden_tests::pki::Issued;

use crate::common::*;

/// Certificates refused at the handshake, each counted under its reason. Returns each refused
/// certificate's fingerprint and reason, for the event checks.
pub(crate) async fn handshake_attacks(
    s: &Scenario,
    log: &mut Log,
) -> anyhow::Result<Vec<(String, TlsRejection)>> {
    let c = &s.certs;
    // --- client certificates: refused at the handshake ---
    let cases: [(&'static str, &Issued, TlsRejection); 5] = [
        (
            "certificate from an untrusted CA",
            &c.rogue,
            TlsRejection::UnknownIssuer,
        ),
        ("expired certificate", &c.expired, TlsRejection::Expired),
        (
            "not-yet-valid certificate",
            &c.future,
            TlsRejection::NotYetValid,
        ),
        (
            "certificate revoked by CRL",
            &c.revoked,
            TlsRejection::Revoked,
        ),
        (
            "denied certificate fingerprint",
            &c.denied,
            TlsRejection::Denied,
        ),
    ];
    for (name, cert, _) in &cases {
        let client = s.tls_client(Some(cert))?;
        log.attack(
            s,
            name,
            Expect::HandshakeRefused,
            AuthMethod::ClientCert,
            client.get(s.https("/api/t")),
        )
        .await;
    }
    // The server counts a refusal just after the client sees the alert.
    let stats = s.identity()?.tls_stats().context("tls stats")?;
    let counted = eventually(Duration::from_secs(2), || {
        let stats = stats.clone();
        let cases = &cases;
        async move { Ok(cases.iter().all(|(_, _, r)| stats.rejected(*r) == 1)) }
    })
    .await;
    if counted.is_err() {
        for (name, _, reason) in &cases {
            log.failures.push(format!(
                "{name}: {reason:?} counted {} times",
                stats.rejected(*reason)
            ));
        }
    }
    Ok(cases
        .iter()
        .map(|(_, cert, r)| (cert.fingerprint(), *r))
        .collect())
}

/// Certificates that complete the handshake but cannot authenticate the request (401).
pub(crate) async fn request_attacks(s: &Scenario, log: &mut Log) -> anyhow::Result<()> {
    let c = &s.certs;
    let plain = s.plain_client()?;
    let anon_tls = s.tls_client(None)?;
    let good_tls = s.tls_client(Some(&c.good))?;
    // --- client certificates: refused per request ---
    let attacks: Vec<(&'static str, u16, AuthMethod, reqwest::RequestBuilder)> = vec![
        (
            "no certificate on an mTLS route (TLS)",
            401,
            AuthMethod::ClientCert,
            anon_tls.get(s.https("/firmware/v2")),
        ),
        (
            "no certificate on an mTLS route (plain HTTP)",
            401,
            AuthMethod::ClientCert,
            plain.get(s.http("/firmware/v2")),
        ),
        (
            "API key instead of a certificate on an mTLS route",
            401,
            AuthMethod::ClientCert,
            anon_tls
                .get(s.https("/firmware/v2"))
                .header("x-api-key", KEY_THERMO1),
        ),
        (
            "certificate with another identity's API key",
            401,
            AuthMethod::ApiKey,
            good_tls
                .get(s.https("/api/t"))
                .header("x-api-key", KEY_CURRENT),
        ),
        (
            "certificate with another identity's token",
            401,
            AuthMethod::Jwt,
            good_tls
                .get(s.https("/api/t"))
                .bearer_auth(s.rsa.sign(&claims("user-7"))?),
        ),
        (
            "certificate without the API key an api_key route needs",
            401,
            AuthMethod::ApiKey,
            good_tls.get(s.https("/keys/t")),
        ),
        (
            "certificate of a disabled identity",
            401,
            AuthMethod::ClientCert,
            s.tls_client(Some(&c.disabled))?.get(s.https("/api/t")),
        ),
        (
            "certificate of an unregistered identity",
            401,
            AuthMethod::ClientCert,
            s.tls_client(Some(&c.ghost))?.get(s.https("/api/t")),
        ),
        (
            "certificate without the identity prefix",
            401,
            AuthMethod::ClientCert,
            s.tls_client(Some(&c.nameless))?.get(s.https("/api/t")),
        ),
    ];
    for (name, code, m, req) in attacks {
        log.attack(s, name, Expect::Status(code), m, req).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_requires_certificates_refuses_handshakes_without_one() -> anyhow::Result<()>
{
    let s = Scenario::start_with(60_000, true).await?;
    let anonymous = s.tls_client(None)?;
    ensure!(
        anonymous.get(s.https("/open/x")).send().await.is_err(),
        "no certificate, no handshake"
    );
    let good = s.tls_client(Some(&s.certs.good))?;
    ensure!(status(good.get(s.https("/open/x"))).await? == 200);
    let stats = s.identity()?.tls_stats().context("tls stats")?;
    eventually(Duration::from_secs(2), || {
        let stats = stats.clone();
        async move { Ok(stats.rejected(TlsRejection::MissingCertificate) == 1) }
    })
    .await?;
    ensure!(s.hits() == 1);
    let events = s.stop().await?;
    let missing: Vec<_> = events
        .iter()
        .filter(|e| e.route == "tls_handshake")
        .collect();
    ensure!(missing.len() == 1, "{missing:?}");
    ensure!(
        missing[0].auth.result == AuthResult::Missing
            && missing[0]
                .tls
                .as_ref()
                .is_some_and(|t| t.client_cert_fingerprint.is_none()),
        "{:?}",
        missing[0]
    );
    Ok(())
}

/// Completes a handshake offering only `groups` and one request on `/open/x`; returns the
/// group the server chose and the response's status line.
async fn handshake_with_groups(
    s: &Scenario,
    groups: Vec<&'static dyn rustls::crypto::SupportedKxGroup>,
) -> anyhow::Result<(Option<rustls::NamedGroup>, String)> {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = groups;
    let mut roots = rustls::RootCertStore::empty();
    for c in warden_config::parse_certs(s.certs.server_ca.cert_pem.as_bytes())
        .map_err(anyhow::Error::msg)?
    {
        roots.add(c)?;
    }
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(s.https).await?;
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1")?.to_owned();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(name, tcp)
        .await?;
    let group = tls
        .get_ref()
        .1
        .negotiated_key_exchange_group()
        .map(|g| g.name());
    tls.write_all(b"GET /open/x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await?;
    let mut response = Vec::new();
    tls.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response);
    Ok((group, text.lines().next().unwrap_or_default().to_string()))
}

/// The listener offers the post-quantum hybrid X25519MLKEM768 (`key_exchange = "hybrid"`, the
/// default) and still serves clients that only know X25519.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_negotiates_post_quantum_hybrid_key_exchange() -> anyhow::Result<()> {
    use rustls::crypto::aws_lc_rs::kx_group;
    let s = Scenario::start(60_000).await?;
    let (group, status) = handshake_with_groups(&s, vec![kx_group::X25519MLKEM768]).await?;
    ensure!(
        group == Some(rustls::NamedGroup::X25519MLKEM768),
        "a client offering only X25519MLKEM768 got {group:?}"
    );
    ensure!(status.starts_with("HTTP/1.1 200"), "{status}");
    let (group, status) = handshake_with_groups(&s, vec![kx_group::X25519]).await?;
    ensure!(group == Some(rustls::NamedGroup::X25519), "{group:?}");
    ensure!(status.starts_with("HTTP/1.1 200"), "{status}");
    ensure!(s.hits() == 2, "upstream hits {}", s.hits());
    s.stop().await?;
    Ok(())
}
