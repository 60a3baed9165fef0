//! The admin listener over TLS (`[admin.tls]`): operator client certificates (mTLS) as an
//! alternative to the admin token.
//!
//! - The handshake verifies a presented certificate against the operator CAs only
//!   (`client_ca_files`), so a device certificate — or anything from another CA — is refused
//!   there. Without a configured token a certificate is mandatory at the handshake; with one it
//!   is optional (token callers need no certificate).
//! - Each request is then authenticated by its connection's certificate (when it names one of
//!   `allowed_names`, or any name when that list is empty, and is within its validity) or by
//!   the token. A wrong token is refused even next to a good certificate: every credential
//!   presented must hold.
//! - `POST /admin/reload` rebuilds the listener's configuration from the files (a set that does
//!   not load is refused whole). New connections use the new configuration; on connections
//!   opened before, the certificate is verified again against the new CAs on its next request.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use parking_lot::{Mutex, RwLock};
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::UnixTime;
use tokio::net::TcpListener;
use tracing::{debug, warn};
use warden_config::{AdminTlsConfig, CertField, TlsVersion};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::identity::cert::PeerCert;
use crate::tls::{
    TlsStats, accept_loop, classify, read_cert_and_key, read_roots, serve_connection,
};

struct Generation {
    id: u64,
    server: Arc<ServerConfig>,
    verifier: Arc<dyn ClientCertVerifier>,
}

/// The admin listener's TLS state.
pub(crate) struct AdminTls {
    config: AdminTlsConfig,
    token_configured: bool,
    current: RwLock<Arc<Generation>>,
    next_id: AtomicU64,
    stats: Arc<TlsStats>,
}

/// The operator certificate of one admin connection (request extension).
#[derive(Clone)]
pub(crate) struct OperatorConn(Arc<OperatorInner>);

struct OperatorInner {
    peer: PeerCert,
    /// Subject CN, SAN DNS names and SAN URIs of the certificate.
    names: Vec<String>,
    /// (generation, result) of the latest verification.
    verified: Mutex<(u64, bool)>,
}

/// What a request's certificate proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CertAuth {
    /// No certificate on the connection.
    None,
    /// A valid operator certificate, by the name it was admitted under.
    Operator { name: String, fingerprint: String },
    /// A certificate that is not (or no longer) admitted; with its fingerprint.
    Refused {
        fingerprint: String,
        why: &'static str,
    },
}

impl AdminTls {
    /// Build the first configuration; every problem is returned.
    pub(crate) fn new(
        config: &AdminTlsConfig,
        token_configured: bool,
    ) -> Result<Self, Vec<String>> {
        let first = build(config, token_configured, 0)?;
        Ok(Self {
            config: config.clone(),
            token_configured,
            current: RwLock::new(Arc::new(first)),
            next_id: AtomicU64::new(1),
            stats: Arc::new(TlsStats::default()),
        })
    }

    pub(crate) fn stats(&self) -> &Arc<TlsStats> {
        &self.stats
    }

    /// Re-read the files; on failure the current configuration stays.
    pub(crate) fn reload(&self) -> Result<u64, Vec<String>> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let generation = build(&self.config, self.token_configured, id)?;
        *self.current.write() = Arc::new(generation);
        Ok(id)
    }

    fn current(&self) -> Arc<Generation> {
        self.current.read().clone()
    }

    /// What the certificate of `conn` proves for a request at `now` (Unix seconds).
    pub(crate) fn check(&self, conn: Option<&OperatorConn>, now: i64) -> CertAuth {
        let Some(OperatorConn(op)) = conn else {
            return CertAuth::None;
        };
        let fingerprint = op.peer.fingerprint_hex.clone();
        let refused = |why| CertAuth::Refused {
            fingerprint: fingerprint.clone(),
            why,
        };
        if op.peer.check_time(now).is_err() {
            return refused("certificate outside its validity");
        }
        let generation = self.current();
        {
            let mut verified = op.verified.lock();
            if verified.0 != generation.id {
                let ok = match op.peer.chain.split_first() {
                    Some((leaf, intermediates)) => {
                        let at = UnixTime::since_unix_epoch(Duration::from_secs(now.max(0) as u64));
                        generation
                            .verifier
                            .verify_client_cert(leaf, intermediates, at)
                            .is_ok()
                    }
                    None => false,
                };
                *verified = (generation.id, ok);
            }
            if !verified.1 {
                return refused("certificate no longer chains to an operator CA");
            }
        }
        let allowed = &self.config.allowed_names;
        let name = if allowed.is_empty() {
            Some(
                op.names
                    .first()
                    .cloned()
                    .unwrap_or_else(|| format!("sha256:{fingerprint}")),
            )
        } else {
            op.names.iter().find(|n| allowed.contains(n)).cloned()
        };
        match name {
            Some(name) => CertAuth::Operator { name, fingerprint },
            None => refused("certificate names no allowed operator"),
        }
    }
}

fn build(
    config: &AdminTlsConfig,
    token_configured: bool,
    id: u64,
) -> Result<Generation, Vec<String>> {
    let mut problems = Vec::new();
    let (certs, key) = read_cert_and_key(&config.cert_file, &config.key_file, &mut problems);
    let roots = read_roots(&config.client_ca_files, &mut problems);
    let (Some(certs), Some(key)) = (certs, key) else {
        return Err(problems);
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    let provider = Arc::new(crate::tls::provider(config.key_exchange));
    let mut b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    if token_configured {
        b = b.allow_unauthenticated();
    }
    let verifier = b.build().map_err(|e| vec![format!("operator CAs: {e}")])?;
    let versions: &[&rustls::SupportedProtocolVersion] = match config.min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| vec![format!("TLS versions: {e}")])?
        .with_client_cert_verifier(verifier.clone())
        .with_single_cert(certs, key)
        .map_err(|e| vec![format!("admin server certificate and key: {e}")])?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Generation {
        id,
        server: Arc::new(server),
        verifier,
    })
}

/// Subject CNs, SAN DNS names and SAN URIs of a DER certificate.
fn names(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let mut out: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .map(str::to_owned)
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(v) | GeneralName::URI(v) => out.push((*v).to_owned()),
                _ => {}
            }
        }
    }
    out.retain(|n| !n.is_empty() && n.len() <= 256 && !n.chars().any(char::is_control));
    out
}

/// Accept TLS connections for the admin router until `shutdown`, then let open connections
/// finish (up to 10 s).
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Arc<AdminTls>,
    router: Router,
    shutdown: impl Future<Output = ()>,
) {
    let timeout = Duration::from_millis(tls.config.handshake_timeout_ms);
    // The admin listener keeps the default connection limits.
    let tracker = crate::conns::Tracker::new(crate::conns::Limits::new(
        &warden_config::ConnectionLimits::default(),
    ));
    let limits = tracker.limits;
    accept_loop(
        listener,
        shutdown,
        "Admin TLS",
        tracker,
        move |tcp, peer, watcher, conn| {
            let tls = tls.clone();
            let router = router.clone();
            async move {
                let generation = tls.current();
                let acceptor = tokio_rustls::TlsAcceptor::from(generation.server.clone());
                let stream = match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        let reason = classify(&e);
                        tls.stats.count(reason);
                        // Audited like a refused call: an operator's certificate was refused.
                        warn!(
                            target: "warden::audit",
                            client_ip = %peer.ip(),
                            reason = reason.as_str(),
                            "Admin TLS handshake refused."
                        );
                        debug!(%peer, error = %e, "Admin TLS handshake refused.");
                        return;
                    }
                    Err(_) => {
                        tls.stats.count_timeout();
                        return;
                    }
                };
                tls.stats.count_handshake();
                let chain: Vec<_> = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                    .unwrap_or_default();
                let operator = chain.first().map(|leaf| names(leaf)).and_then(|names| {
                    PeerCert::read(chain.clone(), CertField::SubjectCn, "").map(|peer| {
                        OperatorConn(Arc::new(OperatorInner {
                            peer,
                            names,
                            verified: Mutex::new((generation.id, true)),
                        }))
                    })
                });
                let on = crate::tls::Served {
                    watcher,
                    peer,
                    conn,
                    limits,
                };
                serve_connection(stream, router, on, "Admin TLS", move |ext| {
                    if let Some(op) = &operator {
                        ext.insert(op.clone());
                    }
                })
                .await;
            }
        },
    )
    .await;
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    use super::*;

    #[test]
    fn names_are_the_cn_and_the_dns_and_uri_sans() {
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, "ops-alice");
        p.subject_alt_names = vec![
            SanType::DnsName("alice.ops.example".try_into().expect("dns")),
            SanType::URI("urn:warden:operator:alice".try_into().expect("uri")),
            SanType::IpAddress([10, 0, 0, 1].into()),
        ];
        let key = KeyPair::generate().expect("key");
        let der = p.self_signed(&key).expect("cert").der().to_vec();
        assert_eq!(
            names(&der),
            vec![
                "ops-alice".to_string(),
                "alice.ops.example".to_string(),
                "urn:warden:operator:alice".to_string()
            ]
        );
        assert!(names(&[1, 2, 3]).is_empty());
    }
}
