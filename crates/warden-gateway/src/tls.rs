//! The TLS listener: rustls (ring provider), TLS 1.2/1.3, HTTP/1.1 and HTTP/2 by ALPN, device
//! certificates (mTLS) with CRLs and a fingerprint deny list — all reloadable.
//!
//! Reload model: every change of the certificate, key, CA bundles or CRLs builds a complete new
//! rustls `ServerConfig` (a *generation*); new connections use the newest generation, open
//! connections keep theirs (nothing is dropped). A generation that fails to build is refused as
//! a whole and the previous one stays in force. Because open connections can outlive a change,
//! each request re-checks its connection's client certificate: against the deny list and its
//! validity window every time, and — once per connection after each reload — against the
//! current CAs and CRLs. So a certificate revoked by a new CRL is refused on its very next
//! request, even on a keep-alive connection opened before the CRL changed.

mod serve;
mod verifier;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use warden_config::{KeyExchange, TlsConfig, TlsVersion};

use crate::identity::cert::{CertProblem, PeerCert};

pub(crate) use serve::{
    FailureSink, HandshakeFailure, Served, accept_loop, classify, handshake, serve,
    serve_connection,
};
use verifier::RecordingVerifier;

/// Why a TLS handshake was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// The client certificate has expired.
    Expired,
    /// The client certificate is not valid yet.
    NotYetValid,
    /// A CRL lists the client certificate.
    Revoked,
    /// The client certificate does not chain to a trusted device CA.
    UnknownIssuer,
    /// The client certificate's fingerprint is on the deny list.
    Denied,
    /// No client certificate where one is required.
    MissingCertificate,
    /// Any other problem with the client certificate.
    BadCertificate,
    /// Not about certificates (protocol versions, ciphers, garbage): counted, not evented.
    Protocol,
}

impl Rejection {
    pub const ALL: [Rejection; 8] = [
        Rejection::Expired,
        Rejection::NotYetValid,
        Rejection::Revoked,
        Rejection::UnknownIssuer,
        Rejection::Denied,
        Rejection::MissingCertificate,
        Rejection::BadCertificate,
        Rejection::Protocol,
    ];

    /// Whether this is about the client's certificate (those are emitted as events).
    pub fn is_certificate(self) -> bool {
        self != Rejection::Protocol
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Expired => "expired",
            Rejection::NotYetValid => "not_yet_valid",
            Rejection::Revoked => "revoked",
            Rejection::UnknownIssuer => "unknown_issuer",
            Rejection::Denied => "denied",
            Rejection::MissingCertificate => "missing_certificate",
            Rejection::BadCertificate => "bad_certificate",
            Rejection::Protocol => "protocol",
        }
    }
}

/// Counters of the TLS listener.
#[derive(Debug, Default)]
pub struct TlsStats {
    handshakes: AtomicU64,
    timeouts: AtomicU64,
    rejected: [AtomicU64; 8],
}

impl TlsStats {
    /// Completed handshakes.
    pub fn handshakes(&self) -> u64 {
        self.handshakes.load(Ordering::Relaxed)
    }

    /// Handshakes not completed within the timeout.
    pub fn timeouts(&self) -> u64 {
        self.timeouts.load(Ordering::Relaxed)
    }

    /// Handshakes refused for `reason`.
    pub fn rejected(&self, reason: Rejection) -> u64 {
        let i = Rejection::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.rejected[i].load(Ordering::Relaxed)
    }

    pub(crate) fn count(&self, reason: Rejection) {
        if let Some(i) = Rejection::ALL.iter().position(|r| *r == reason) {
            self.rejected[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn count_handshake(&self) {
        self.handshakes.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_timeout(&self) {
        self.timeouts.fetch_add(1, Ordering::Relaxed);
    }

    /// Append these counters to `out` in the Prometheus text format, labelled
    /// `gateway="<gateway>"` and `listener="gateway"` (the gateway's TLS listener). To export
    /// several listeners (e.g. the admin listener too), use [`TlsStats::render_listeners`]:
    /// each metric's `# HELP`/`# TYPE` lines may appear only once per scrape.
    pub fn render_prometheus(&self, gateway: &str, out: &mut String) {
        Self::render_listeners(gateway, &[("gateway", self)], out);
    }

    /// Append the counters of several TLS listeners (`(listener label, stats)`) to `out` in
    /// the Prometheus text format: completed handshakes, handshake timeouts, and refused
    /// handshakes by `reason` (every reason, zeros included, so rates work from the start).
    pub fn render_listeners(gateway: &str, listeners: &[(&str, &TlsStats)], out: &mut String) {
        use std::fmt::Write;
        let gateway = escape_label(gateway);
        let families: [(&str, &str, &str); 3] = [
            (
                "warden_gateway_tls_handshakes_total",
                "counter",
                "Completed TLS handshakes.",
            ),
            (
                "warden_gateway_tls_handshake_timeouts_total",
                "counter",
                "TLS handshakes not completed within handshake_timeout_ms.",
            ),
            (
                "warden_gateway_tls_handshakes_refused_total",
                "counter",
                "Refused TLS handshakes, by reason (client certificate expired, not yet valid, \
                 revoked, from an unknown CA, denied by fingerprint, missing, otherwise bad; \
                 or a protocol error).",
            ),
        ];
        for (i, (name, kind, help)) in families.iter().enumerate() {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (listener, stats) in listeners {
                let listener = escape_label(listener);
                let base = format!("gateway=\"{gateway}\",listener=\"{listener}\"");
                match i {
                    0 => {
                        let _ = writeln!(out, "{name}{{{base}}} {}", stats.handshakes());
                    }
                    1 => {
                        let _ = writeln!(out, "{name}{{{base}}} {}", stats.timeouts());
                    }
                    _ => {
                        for reason in Rejection::ALL {
                            let _ = writeln!(
                                out,
                                "{name}{{{base},reason=\"{}\"}} {}",
                                reason.as_str(),
                                stats.rejected(reason)
                            );
                        }
                    }
                }
            }
        }
    }
}

/// A Prometheus label value: `\`, `"` and newlines escaped.
fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Fingerprints refused: the config's list plus the deny file's, swapped on reload.
pub(crate) struct DenyList {
    inline: HashSet<[u8; 32]>,
    file: Option<PathBuf>,
    current: RwLock<Arc<HashSet<[u8; 32]>>>,
}

impl DenyList {
    fn load(inline: &[String], file: Option<PathBuf>) -> Result<Self, Vec<String>> {
        let inline: HashSet<[u8; 32]> = inline
            .iter()
            .filter_map(|f| warden_config::parse_fingerprint(f))
            .collect();
        let me = Self {
            current: RwLock::new(Arc::new(inline.clone())),
            inline,
            file,
        };
        me.reload()?;
        Ok(me)
    }

    pub fn reload(&self) -> Result<String, Vec<String>> {
        let mut set = self.inline.clone();
        if let Some(f) = &self.file {
            let text = std::fs::read_to_string(f)
                .map_err(|e| vec![format!("cannot read `{}`: {e}", f.display())])?;
            let list = warden_config::parse_fingerprint_list(&text)
                .map_err(|e| vec![format!("`{}`: {e}", f.display())])?;
            set.extend(list);
        }
        let n = set.len();
        *self.current.write() = Arc::new(set);
        Ok(format!("{n} denied fingerprint(s)"))
    }

    pub fn contains(&self, fp: &[u8; 32]) -> bool {
        self.current.read().contains(fp)
    }
}

/// One built configuration of the listener.
pub(crate) struct Generation {
    pub id: u64,
    pub server: Arc<ServerConfig>,
    /// The CA/CRL verifier, for re-checking open connections after a reload.
    pub client_verifier: Option<Arc<dyn ClientCertVerifier>>,
}

/// The TLS listener's live state.
pub struct TlsRuntime {
    config: TlsConfig,
    current: RwLock<Arc<Generation>>,
    next_id: AtomicU64,
    deny: Arc<DenyList>,
    stats: Arc<TlsStats>,
}

impl TlsRuntime {
    /// Build the first generation; every problem is returned.
    pub fn new(config: &TlsConfig) -> Result<Self, Vec<String>> {
        let deny = match &config.client_auth {
            Some(c) => DenyList::load(&c.deny_fingerprints, c.deny_fingerprints_file.clone())?,
            None => DenyList::load(&[], None)?,
        };
        let deny = Arc::new(deny);
        let first = build(config, &deny, 0)?;
        Ok(Self {
            config: config.clone(),
            current: RwLock::new(Arc::new(first)),
            next_id: AtomicU64::new(1),
            deny,
            stats: Arc::new(TlsStats::default()),
        })
    }

    pub fn stats(&self) -> &Arc<TlsStats> {
        &self.stats
    }

    pub(crate) fn deny_file(&self) -> Option<PathBuf> {
        self.config
            .client_auth
            .as_ref()
            .and_then(|c| c.deny_fingerprints_file.clone())
    }

    pub(crate) fn deny_list(&self) -> &Arc<DenyList> {
        &self.deny
    }

    /// Build a new generation from the files; on failure the current one stays.
    pub fn reload(&self) -> Result<String, Vec<String>> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let generation = build(&self.config, &self.deny, id)?;
        *self.current.write() = Arc::new(generation);
        Ok(format!("generation {id}"))
    }

    pub(crate) fn current(&self) -> Arc<Generation> {
        self.current.read().clone()
    }

    fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.config.handshake_timeout_ms)
    }

    /// The gateway's certificate chain and key (the listener's files, read again).
    pub(crate) fn cert_and_key(
        &self,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Vec<String>> {
        let mut problems = Vec::new();
        match read_cert_and_key(&self.config.cert_file, &self.config.key_file, &mut problems) {
            (Some(c), Some(k)) if problems.is_empty() => Ok((c, k)),
            _ => Err(problems),
        }
    }

    /// Whether a client certificate is required (`client_auth.required`).
    pub(crate) fn client_cert_required(&self) -> bool {
        self.config.client_auth.as_ref().is_some_and(|c| c.required)
    }

    /// The connection details of a DTLS peer that presented `chain` (leaf first): verified
    /// against the current generation on its first use, like a TLS connection's after a
    /// reload.
    pub(crate) fn dtls_conn(&self, chain: Vec<CertificateDer<'static>>) -> TlsConn {
        let (field, prefix) = match &self.config.client_auth {
            Some(c) => (c.identity_field, c.identity_prefix.as_str()),
            None => (warden_config::CertField::SubjectCn, ""),
        };
        TlsConn(Arc::new(ConnInfo {
            version: "DTLSv1.2",
            peer: PeerCert::read(chain, field, prefix),
            verified: Mutex::new((u64::MAX, false)),
        }))
    }

    /// Re-check the client certificate of a connection for a request at `now` (Unix seconds)
    /// and return the identity it names.
    pub(crate) fn check_peer(&self, conn: &ConnInfo, now: i64) -> Result<String, CertProblem> {
        let Some(peer) = &conn.peer else {
            return Err(CertProblem::NoIdentity);
        };
        if self.deny.contains(&peer.fingerprint) {
            return Err(CertProblem::Denied);
        }
        peer.check_time(now)?;
        let generation = self.current();
        {
            let mut verified = conn.verified.lock();
            if verified.0 != generation.id {
                let ok = match (&generation.client_verifier, peer.chain.split_first()) {
                    (Some(v), Some((leaf, intermediates))) => {
                        let at = UnixTime::since_unix_epoch(Duration::from_secs(now.max(0) as u64));
                        v.verify_client_cert(leaf, intermediates, at).is_ok()
                    }
                    _ => false,
                };
                *verified = (generation.id, ok);
            }
            if !verified.1 {
                return Err(CertProblem::NoLongerValid);
            }
        }
        peer.identity.clone()
    }
}

/// What one TLS connection established, available to every request on it (as the request
/// extension [`TlsConn`]).
pub(crate) struct ConnInfo {
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: &'static str,
    /// The client certificate, verified at the handshake.
    pub peer: Option<PeerCert>,
    /// (generation, result) of the latest verification of `peer`.
    verified: Mutex<(u64, bool)>,
}

/// Request extension present on requests that came over the TLS listener.
#[derive(Clone)]
pub(crate) struct TlsConn(pub Arc<ConnInfo>);

impl TlsConn {
    /// TLS details for the event.
    pub fn info(&self) -> warden_event::TlsInfo {
        warden_event::TlsInfo {
            version: self.0.version.to_string(),
            client_cert_fingerprint: self.0.peer.as_ref().map(|p| p.fingerprint_hex.clone()),
        }
    }
}

/// The bytes of `path`, or `None` with the reason noted in `problems`.
pub(crate) fn read_file(path: &Path, problems: &mut Vec<String>) -> Option<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| problems.push(format!("cannot read `{}`: {e}", path.display())))
        .ok()
}

/// A listener's certificate chain and private key (PEM files); what is wrong with either is
/// noted in `problems` (both are read, so every problem is reported).
pub(crate) fn read_cert_and_key(
    cert_file: &Path,
    key_file: &Path,
    problems: &mut Vec<String>,
) -> (
    Option<Vec<CertificateDer<'static>>>,
    Option<PrivateKeyDer<'static>>,
) {
    let certs = read_file(cert_file, problems).and_then(|b| {
        warden_config::parse_certs(&b)
            .map_err(|e| problems.push(format!("`{}`: {e}", cert_file.display())))
            .ok()
    });
    let key = read_file(key_file, problems).and_then(|b| {
        PrivateKeyDer::from_pem_slice(&b)
            .map_err(|e| problems.push(format!("`{}`: no private key: {e}", key_file.display())))
            .ok()
    });
    (certs, key)
}

/// The CA certificates of `files` as trust roots; unreadable files and unusable certificates
/// are noted in `problems`.
pub(crate) fn read_roots(files: &[PathBuf], problems: &mut Vec<String>) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for f in files {
        let Some(bytes) = read_file(f, problems) else {
            continue;
        };
        match warden_config::parse_certs(&bytes) {
            Ok(certs) => {
                for c in certs {
                    if let Err(e) = roots.add(c) {
                        problems.push(format!(
                            "`{}`: not a usable CA certificate: {e}",
                            f.display()
                        ));
                    }
                }
            }
            Err(e) => problems.push(format!("`{}`: {e}", f.display())),
        }
    }
    roots
}

/// The crypto provider of every TLS listener: aws-lc-rs, the rustls provider with ML-KEM, so
/// `hybrid` can offer X25519MLKEM768 (ring has no ML-KEM); `classical` keeps only the
/// elliptic-curve groups. Certificates and signatures are the same either way.
pub(crate) fn provider(kx: KeyExchange) -> rustls::crypto::CryptoProvider {
    use rustls::crypto::aws_lc_rs::kx_group;
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = match kx {
        KeyExchange::Hybrid => vec![
            kx_group::X25519MLKEM768,
            kx_group::X25519,
            kx_group::SECP256R1,
            kx_group::SECP384R1,
        ],
        KeyExchange::Classical => vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1],
    };
    provider
}

fn build(config: &TlsConfig, deny: &Arc<DenyList>, id: u64) -> Result<Generation, Vec<String>> {
    let mut problems = Vec::new();
    let (certs, key) = read_cert_and_key(&config.cert_file, &config.key_file, &mut problems);
    let provider = Arc::new(provider(config.key_exchange));
    let mut client_verifier = None;
    if let Some(ca) = &config.client_auth {
        let roots = read_roots(&ca.ca_files, &mut problems);
        let mut crls = Vec::new();
        for f in &ca.crl_files {
            let Some(bytes) = read_file(f, &mut problems) else {
                continue;
            };
            match warden_config::parse_crls(&bytes) {
                Ok(c) => crls.extend(c),
                Err(e) => problems.push(format!("`{}`: {e}", f.display())),
            }
        }
        if problems.is_empty() {
            let mut b =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .with_crls(crls)
                    .only_check_end_entity_revocation();
            if !ca.require_crl {
                b = b.allow_unknown_revocation_status();
            }
            if !ca.required {
                b = b.allow_unauthenticated();
            }
            match b.build() {
                Ok(v) => client_verifier = Some(v),
                Err(e) => problems.push(format!("device CAs / CRLs: {e}")),
            }
        }
    }
    let (Some(certs), Some(key)) = (certs, key) else {
        return Err(problems);
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    let versions: &[&rustls::SupportedProtocolVersion] = match config.min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| vec![format!("TLS versions: {e}")])?;
    let builder = match &client_verifier {
        Some(v) => builder
            .with_client_cert_verifier(Arc::new(RecordingVerifier::new(v.clone(), deny.clone()))),
        None => builder.with_no_client_auth(),
    };
    let mut server = builder
        .with_single_cert(certs, key)
        .map_err(|e| vec![format!("server certificate and key: {e}")])?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    server.ignore_client_order = true;
    Ok(Generation {
        id,
        server: Arc::new(server),
        client_verifier,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_offers_ml_kem_first_and_classical_leaves_it_out() {
        let names = |kx| -> Vec<rustls::NamedGroup> {
            provider(kx).kx_groups.iter().map(|g| g.name()).collect()
        };
        let hybrid = names(KeyExchange::Hybrid);
        assert_eq!(hybrid[0], rustls::NamedGroup::X25519MLKEM768);
        assert!(hybrid.contains(&rustls::NamedGroup::X25519));
        let classical = names(KeyExchange::Classical);
        assert!(!classical.contains(&rustls::NamedGroup::X25519MLKEM768));
        assert_eq!(classical[0], rustls::NamedGroup::X25519);
    }

    /// `(name, labels) → value` of every sample line; panics on a malformed line.
    fn samples(text: &str) -> Vec<(String, String, u64)> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').expect("value");
                let (name, labels) = series.split_once('{').expect("labels");
                (
                    name.to_string(),
                    labels.trim_end_matches('}').to_string(),
                    value.parse().expect("number"),
                )
            })
            .collect()
    }

    #[test]
    fn renders_every_reason_as_prometheus_text() {
        let s = TlsStats::default();
        s.count_handshake();
        s.count_handshake();
        s.count_timeout();
        s.count(Rejection::Revoked);
        s.count(Rejection::Revoked);
        s.count(Rejection::UnknownIssuer);
        s.count(Rejection::Expired);
        let mut out = String::new();
        s.render_prometheus("gw-\"1\"", &mut out);

        let got = samples(&out);
        // 1 handshake line + 1 timeout line + one per reason.
        assert_eq!(got.len(), 2 + Rejection::ALL.len(), "{out}");
        let value = |name: &str, reason: Option<&str>| {
            let mut labels = r#"gateway="gw-\"1\"",listener="gateway""#.to_string();
            if let Some(r) = reason {
                labels.push_str(&format!(",reason=\"{r}\""));
            }
            got.iter()
                .find(|(n, l, _)| n == name && *l == labels)
                .map(|(_, _, v)| *v)
                .unwrap_or_else(|| panic!("{name} {labels} missing from\n{out}"))
        };
        assert_eq!(value("warden_gateway_tls_handshakes_total", None), 2);
        assert_eq!(
            value("warden_gateway_tls_handshake_timeouts_total", None),
            1
        );
        let refused = "warden_gateway_tls_handshakes_refused_total";
        assert_eq!(value(refused, Some("revoked")), 2);
        assert_eq!(value(refused, Some("unknown_issuer")), 1);
        assert_eq!(value(refused, Some("expired")), 1);
        for r in [
            "not_yet_valid",
            "denied",
            "missing_certificate",
            "bad_certificate",
            "protocol",
        ] {
            assert_eq!(value(refused, Some(r)), 0, "{r}");
        }
        // One HELP and one TYPE per family.
        for name in [
            "warden_gateway_tls_handshakes_total",
            "warden_gateway_tls_handshake_timeouts_total",
            refused,
        ] {
            assert_eq!(
                out.lines()
                    .filter(|l| l.starts_with(&format!("# TYPE {name} counter")))
                    .count(),
                1,
                "{out}"
            );
        }
    }

    #[test]
    fn several_listeners_share_one_header_per_family() {
        let (gw, admin) = (TlsStats::default(), TlsStats::default());
        admin.count(Rejection::MissingCertificate);
        let mut out = String::new();
        TlsStats::render_listeners("gw-1", &[("gateway", &gw), ("admin", &admin)], &mut out);
        assert_eq!(out.matches("# HELP ").count(), 3, "{out}");
        assert!(out.contains(
            "warden_gateway_tls_handshakes_refused_total{gateway=\"gw-1\",listener=\"admin\",reason=\"missing_certificate\"} 1"
        ), "{out}");
        assert!(out.contains(
            "warden_gateway_tls_handshakes_refused_total{gateway=\"gw-1\",listener=\"gateway\",reason=\"missing_certificate\"} 0"
        ), "{out}");
    }
}
