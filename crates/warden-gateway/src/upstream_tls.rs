//! HTTPS to upstreams (`https://` routes): rustls with the ring provider, TLS 1.2 and 1.3,
//! HTTP/1.1 by ALPN; the server's certificate checked against the route's CA bundle
//! (`upstream_tls.ca_file`) or the web PKI roots, for the upstream's host name (or
//! `upstream_tls.server_name`); an optional client certificate for mTLS to the backend.
//!
//! The files are read when the route table is built (at start and on every live reload) and
//! again when any of them changes (checked at most every [`RECHECK`] on the way to a new
//! connection), so a renewed certificate or CA bundle takes effect without a restart;
//! pooled connections made with the previous files finish their life. Files that cannot be
//! used make every new connection of the route fail with the reason (logged, 502), never a
//! connection without the configured checks.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use warden_config::UpstreamTlsConfig;

/// How often the files are checked for changes, at most.
const RECHECK: Duration = Duration::from_secs(2);

/// A route's TLS client settings, reloaded when their files change.
pub struct UpstreamTls {
    /// Name the server's certificate must carry (and sent as SNI when it is a DNS name).
    pub server_name: ServerName<'static>,
    /// Unique per settings object: upstream connections are pooled apart by it.
    pub id: u64,
    files: Vec<PathBuf>,
    ca_file: Option<PathBuf>,
    cert: Option<(PathBuf, PathBuf)>,
    current: ArcSwap<Loaded>,
    /// Milliseconds since `epoch` of the last check of the files.
    checked: AtomicU64,
    epoch: Instant,
}

struct Loaded {
    config: Result<Arc<ClientConfig>, String>,
    stamps: Vec<Option<SystemTime>>,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("server_name", &self.server_name)
            .field("files", &self.files)
            .finish()
    }
}

fn stamps(files: &[PathBuf]) -> Vec<Option<SystemTime>> {
    files
        .iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

impl UpstreamTls {
    /// The settings of a route whose upstream host is `host`; `None` when the name is not a
    /// valid server name (config validation refuses such routes).
    pub fn new(host: &str, c: Option<&UpstreamTlsConfig>) -> Option<Self> {
        let name = c.and_then(|c| c.server_name.clone()).unwrap_or_else(|| {
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string()
        });
        let server_name = ServerName::try_from(name).ok()?;
        let ca_file = c.and_then(|c| c.ca_file.as_ref().map(PathBuf::from));
        let cert = c.and_then(|c| match (&c.cert_file, &c.key_file) {
            (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
            _ => None,
        });
        let mut files: Vec<PathBuf> = ca_file.iter().cloned().collect();
        if let Some((cert, key)) = &cert {
            files.push(cert.clone());
            files.push(key.clone());
        }
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let tls = Self {
            server_name,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            files,
            ca_file,
            cert,
            current: ArcSwap::from_pointee(Loaded {
                config: Err("not loaded".into()),
                stamps: Vec::new(),
            }),
            checked: AtomicU64::new(0),
            epoch: Instant::now(),
        };
        tls.reload();
        Some(tls)
    }

    fn reload(&self) {
        let stamps = stamps(&self.files);
        let config = self.build();
        if let Err(e) = &config {
            tracing::warn!(server = ?self.server_name, error = %e, "Upstream TLS settings cannot be used; connections to this upstream fail until they are fixed.");
        }
        self.current.store(Arc::new(Loaded { config, stamps }));
    }

    fn build(&self) -> Result<Arc<ClientConfig>, String> {
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca_file {
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
                let certs = warden_config::parse_certs(&pem)
                    .map_err(|e| format!("`{}`: {e}", path.display()))?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(format!("`{}`: no usable CA certificate", path.display()));
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let builder =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots);
        let mut config = match &self.cert {
            Some((cert, key)) => {
                let read = |p: &PathBuf| {
                    std::fs::read(p).map_err(|e| format!("cannot read `{}`: {e}", p.display()))
                };
                let chain: Vec<CertificateDer<'static>> = warden_config::parse_certs(&read(cert)?)
                    .map_err(|e| format!("`{}`: {e}", cert.display()))?;
                let key =
                    <PrivateKeyDer<'static> as rustls_pki_types::pem::PemObject>::from_pem_slice(
                        &read(key)?,
                    )
                    .map_err(|e| format!("`{}`: no private key: {e}", key.display()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("client certificate: {e}"))?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// The client config for a new connection (the files read again first if they changed).
    pub fn config(&self) -> Result<Arc<ClientConfig>, String> {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.checked.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= RECHECK.as_millis() as u64
            && self
                .checked
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            && stamps(&self.files) != self.current.load().stamps
        {
            tracing::info!(server = ?self.server_name, "Upstream TLS files changed; reloading them.");
            self.reload();
        }
        self.current.load().config.clone()
    }
}
