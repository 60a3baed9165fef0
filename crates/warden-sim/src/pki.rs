//! The simulated fleet's PKI: cameras authenticate with client certificates (mTLS), as
//! X.509-provisioned devices do on AWS IoT Core or EMQX.
//!
//! The CA key is derived from the fleet's seed alone, so a gateway configured by `warden up
//! --scenario S --seed N` (which trusts the CA certificate it writes) accepts the device
//! certificates `warden simulate --scenario S --seed N` issues in another process, and the
//! simulator trusts the gateway's server certificate (issued by the same CA). Leaf keys are
//! fresh per run.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::PrivatePkcs8KeyDer;
use sha2::{Digest, Sha256};

/// Prefix of the SAN URI that names a simulated device (`identity_prefix` at the gateway).
pub const DEVICE_URI_PREFIX: &str = "urn:warden-sim:device:";

/// A PKI failure (certificate generation or files).
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// A certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl IssuedCert {
    /// Certificate then key, as a TLS client identity is read.
    pub fn identity_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.key_pem)
    }
}

/// Files a gateway needs for the simulated PKI (see [`SimPki::write_gateway_files`]).
#[derive(Debug, Clone)]
pub struct GatewayFiles {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// The certificate authority of a fleet seeded with `seed`.
pub struct SimPki {
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
    seed: u64,
}

impl SimPki {
    pub fn new(seed: u64) -> Result<Self, PkiError> {
        let secret = Sha256::digest(format!("warden-sim-ca|{seed}").as_bytes());
        let der = crate::issuer::ed25519_pkcs8(&secret);
        let key = KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(der),
            &rcgen::PKCS_ED25519,
        )?;
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.distinguished_name.push(
            DnType::CommonName,
            format!("Warden simulated device CA {seed}"),
        );
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_pem = p.self_signed(&key)?.pem();
        Ok(Self {
            issuer: Issuer::new(p, key),
            ca_pem,
            seed,
        })
    }

    /// The CA certificate, PEM (the gateway's device CA; the simulator's server root).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A client certificate naming `identity` (SAN URI [`DEVICE_URI_PREFIX`]`identity`, and
    /// the subject CN), with a fresh key.
    pub fn device(&self, identity: &str) -> Result<IssuedCert, PkiError> {
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.subject_alt_names.push(SanType::URI(
            format!("{DEVICE_URI_PREFIX}{identity}").try_into()?,
        ));
        p.distinguished_name.push(DnType::CommonName, identity);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.issue(p, key)
    }

    /// A server certificate for `localhost`, `127.0.0.1` and `ip`.
    pub fn server(&self, ip: IpAddr) -> Result<IssuedCert, PkiError> {
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(vec!["localhost".to_string()])?;
        p.subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        if !ip.is_loopback() && !ip.is_unspecified() {
            p.subject_alt_names.push(SanType::IpAddress(ip));
        }
        // The machine's host name too, so devices reaching the gateway by that name (a
        // container's `hostname:` in compose) verify it.
        if let Some(host) = host_name()
            && let Ok(name) = host.as_str().try_into()
        {
            p.subject_alt_names.push(SanType::DnsName(name));
        }
        p.distinguished_name
            .push(DnType::CommonName, "warden simulated gateway");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(p, key)
    }

    /// Write the CA certificate and a server certificate and key for `ip` into `dir`.
    pub fn write_gateway_files(&self, dir: &Path, ip: IpAddr) -> Result<GatewayFiles, PkiError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| PkiError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        // The CA is the same for every process with this seed; the server key is fresh, so
        // the server files are this process's own: two processes configuring the same seed
        // in one directory never pair one's certificate with the other's key.
        let pid = std::process::id();
        let files = GatewayFiles {
            ca_file: dir.join(format!("warden-sim-{}.ca.pem", self.seed)),
            cert_file: dir.join(format!("warden-sim-{}-{pid}.server.pem", self.seed)),
            key_file: dir.join(format!("warden-sim-{}-{pid}.server.key", self.seed)),
        };
        let server = self.server(ip)?;
        for (path, body) in [
            (&files.ca_file, &self.ca_pem),
            (&files.cert_file, &server.cert_pem),
            (&files.key_file, &server.key_pem),
        ] {
            crate::write_atomic(path, body.as_bytes()).map_err(io(path))?;
        }
        Ok(files)
    }

    fn issue(&self, p: CertificateParams, key: KeyPair) -> Result<IssuedCert, PkiError> {
        let cert = p.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// This machine's host name, if it is a plain DNS name other than `localhost`.
fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())?;
    let name = name.trim().to_ascii_lowercase();
    let plain = !name.is_empty()
        && name != "localhost"
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    plain.then_some(name)
}
