//! `warden certs`: a demo PKI for a deployment — a device CA with a gateway server certificate
//! and a few device client certificates (plus the registry naming those devices), and a
//! separate operator CA with an operator client certificate for the admin API. Written once:
//! an existing PKI in the folder is kept (so a container's first start makes it and every
//! later start reuses it), unless `--force`.
//!
//! ECDSA P-256 keys throughout (what every TLS client, curl and mosquitto included, accepts).
//! Private keys are written with mode 0600. Nothing here is meant for production devices:
//! there, certificates come from the operator's own PKI and only the CA files are configured.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// SAN URI prefix naming a device (the gateway's `identity_prefix`).
pub const DEVICE_URI_PREFIX: &str = "urn:warden:device:";

#[derive(Args, Debug)]
pub struct CertsArgs {
    /// Folder to write the PKI into (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Host names and IP addresses the gateway's server certificate names (repeatable).
    #[arg(long = "server-name", default_values_t = ["localhost".to_string(), "gateway".to_string(), "127.0.0.1".to_string()])]
    pub server_names: Vec<String>,
    /// Device identities to issue client certificates for (repeatable).
    #[arg(long = "device", default_values_t = ["camera-0001".to_string(), "camera-0002".to_string(), "camera-0003".to_string()])]
    pub devices: Vec<String>,
    /// Tenant of the devices in the registry.
    #[arg(long, default_value = "demo")]
    pub tenant: String,
    /// Device type of the devices in the registry.
    #[arg(long, default_value = "camera")]
    pub device_type: String,
    /// Operators to issue admin-API client certificates for (repeatable).
    #[arg(long = "operator", default_values_t = ["ops".to_string()])]
    pub operators: Vec<String>,
    /// Days the certificates are valid.
    #[arg(long, default_value_t = 825)]
    pub days: i64,
    /// Replace an existing PKI in the folder.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: &CertsArgs) -> anyhow::Result<()> {
    if !(1..=36_500).contains(&args.days) {
        bail!("--days must be between 1 and 36500");
    }
    for name in args.devices.iter().chain(&args.operators) {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            || name.starts_with('.')
        {
            bail!("`{name}` is not a valid name (letters, digits, `-`, `_`, `.`)");
        }
    }
    for name in &args.server_names {
        let dns = !name.is_empty()
            && name.len() <= 253
            && name
                .split('.')
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        if name.parse::<std::net::IpAddr>().is_err() && !dns {
            bail!("server name `{name}` is neither a DNS name nor an IP address");
        }
    }
    let marker = args.out.join("ca.pem");
    if marker.exists() && !args.force {
        println!(
            "{}: a PKI is already there, kept (--force replaces it)",
            args.out.display()
        );
        return Ok(());
    }
    let now = OffsetDateTime::now_utc();
    let validity = (now - Duration::hours(1), now + Duration::days(args.days));

    let device_ca = Ca::new("Warden demo device CA", validity)?;
    let operator_ca = Ca::new("Warden demo operator CA", validity)?;
    let out = &args.out;
    std::fs::create_dir_all(out.join("devices"))
        .and_then(|()| std::fs::create_dir_all(out.join("operators")))
        .with_context(|| format!("creating {}", out.display()))?;

    write(&out.join("ca.key"), &device_ca.key_pem, true)?;
    write(&out.join("operators-ca.pem"), &operator_ca.cert_pem, false)?;
    write(&out.join("operators-ca.key"), &operator_ca.key_pem, true)?;

    let server = device_ca.server(&args.server_names, validity)?;
    write(&out.join("gateway.pem"), &server.0, false)?;
    write(&out.join("gateway.key"), &server.1, true)?;

    let mut registry = String::from(
        "# Written by `warden certs`: the devices holding the demo client certificates.\n",
    );
    for id in &args.devices {
        let (cert, key) =
            device_ca.client(id, Some(&format!("{DEVICE_URI_PREFIX}{id}")), validity)?;
        write(&out.join("devices").join(format!("{id}.pem")), &cert, false)?;
        write(&out.join("devices").join(format!("{id}.key")), &key, true)?;
        registry.push_str(&format!(
            "\n[[identity]]\nid = \"{id}\"\ntenant = \"{}\"\ndevice_type = \"{}\"\nroles = [\"device\"]\nauth_methods = [\"client_cert\"]\n",
            args.tenant, args.device_type
        ));
    }
    write(&out.join("registry.toml"), &registry, false)?;
    for name in &args.operators {
        let (cert, key) = operator_ca.client(name, None, validity)?;
        write(
            &out.join("operators").join(format!("{name}.pem")),
            &cert,
            false,
        )?;
        write(
            &out.join("operators").join(format!("{name}.key")),
            &key,
            true,
        )?;
    }
    // The CA certificate last: its presence says the PKI is complete.
    write(&marker, &device_ca.cert_pem, false)?;
    println!(
        "{}: device CA (ca.pem), gateway certificate for {} (gateway.pem/.key), {} device certificate(s) in devices/ with registry.toml, operator CA (operators-ca.pem) and {} operator certificate(s) in operators/; valid {} days",
        out.display(),
        args.server_names.join(", "),
        args.devices.len(),
        args.operators.len(),
        args.days
    );
    Ok(())
}

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
}

impl Ca {
    fn new(name: &str, validity: (OffsetDateTime, OffsetDateTime)) -> anyhow::Result<Self> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        (p.not_before, p.not_after) = validity;
        let cert_pem = p.self_signed(&key)?.pem();
        let key_pem = key.serialize_pem();
        Ok(Self {
            issuer: Issuer::new(p, key),
            cert_pem,
            key_pem,
        })
    }

    /// A server certificate for host names and IP addresses; returns (cert, key) PEM.
    fn server(
        &self,
        names: &[String],
        validity: (OffsetDateTime, OffsetDateTime),
    ) -> anyhow::Result<(String, String)> {
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        for n in names {
            p.subject_alt_names
                .push(match n.parse::<std::net::IpAddr>() {
                    Ok(ip) => SanType::IpAddress(ip),
                    Err(_) => SanType::DnsName(
                        n.as_str()
                            .try_into()
                            .with_context(|| format!("server name `{n}`"))?,
                    ),
                });
        }
        let cn = names.first().map(String::as_str).unwrap_or("warden");
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        (p.not_before, p.not_after) = validity;
        self.issue(p)
    }

    /// A client certificate with subject CN `name` and, if given, a SAN URI.
    fn client(
        &self,
        name: &str,
        uri: Option<&str>,
        validity: (OffsetDateTime, OffsetDateTime),
    ) -> anyhow::Result<(String, String)> {
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        if let Some(uri) = uri {
            p.subject_alt_names.push(SanType::URI(uri.try_into()?));
        }
        p.distinguished_name.push(DnType::CommonName, name);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        (p.not_before, p.not_after) = validity;
        self.issue(p)
    }

    fn issue(&self, p: CertificateParams) -> anyhow::Result<(String, String)> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = p.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// Write a file, private ones with mode 0600 from creation on (never readable by others, even
/// briefly).
fn write(path: &Path, body: &str, private: bool) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    let mut f = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    // An existing file (`--force`) keeps its old mode through `open`: set it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(if private {
            0o600
        } else {
            0o644
        }))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    }
    f.write_all(body.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
