//! Device certificates: the parts of a verified client certificate the request path needs
//! (fingerprint, validity, the identity field), read once per connection.

use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use warden_config::CertField;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// Why a certificate gives no usable identity, or is refused on a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CertProblem {
    #[error("certificate cannot be parsed")]
    Unparsable,
    #[error("certificate has no identity in the configured field")]
    NoIdentity,
    #[error("certificate expired")]
    Expired,
    #[error("certificate not valid yet")]
    NotYetValid,
    #[error("certificate fingerprint is denied")]
    Denied,
    #[error("certificate no longer verifies (revoked, or its CA is no longer trusted)")]
    NoLongerValid,
}

/// A client certificate chain as presented on a connection, with what was read from its leaf.
#[derive(Debug, Clone)]
pub struct PeerCert {
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// SHA-256 of the leaf's DER.
    pub fingerprint: [u8; 32],
    /// The same, lowercase hex (as events carry it).
    pub fingerprint_hex: String,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// The identity named by the configured field, or why there is none.
    pub identity: Result<String, CertProblem>,
}

/// SHA-256 of a DER certificate.
pub fn fingerprint(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

impl PeerCert {
    /// Read the leaf of `chain`; `None` for an empty chain.
    pub fn read(
        chain: Vec<CertificateDer<'static>>,
        field: CertField,
        prefix: &str,
    ) -> Option<Self> {
        let leaf = chain.first()?;
        let fp = fingerprint(leaf);
        let (not_before, not_after, identity) = match X509Certificate::from_der(leaf) {
            Ok((_, cert)) => (
                cert.validity().not_before.timestamp(),
                cert.validity().not_after.timestamp(),
                identity_of(&cert, field, prefix),
            ),
            Err(_) => (i64::MAX, i64::MIN, Err(CertProblem::Unparsable)),
        };
        Some(Self {
            chain,
            fingerprint: fp,
            fingerprint_hex: hex::encode(fp),
            not_before,
            not_after,
            identity,
        })
    }

    /// Validity at `now` (Unix seconds).
    pub fn check_time(&self, now: i64) -> Result<(), CertProblem> {
        if now < self.not_before {
            Err(CertProblem::NotYetValid)
        } else if now > self.not_after {
            Err(CertProblem::Expired)
        } else {
            Ok(())
        }
    }
}

/// The first value of `field` that starts with `prefix`, without the prefix.
fn identity_of(
    cert: &X509Certificate<'_>,
    field: CertField,
    prefix: &str,
) -> Result<String, CertProblem> {
    let strip = |v: &str| {
        v.strip_prefix(prefix)
            .filter(|id| !id.is_empty() && id.len() <= 256 && !id.chars().any(char::is_control))
            .map(str::to_owned)
    };
    let found = match field {
        CertField::SubjectCn => cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .find_map(strip),
        CertField::SanUri | CertField::SanDns => {
            let san = cert
                .subject_alternative_name()
                .map_err(|_| CertProblem::Unparsable)?;
            san.and_then(|ext| {
                ext.value
                    .general_names
                    .iter()
                    .find_map(|n| match (field, n) {
                        (CertField::SanUri, GeneralName::URI(v)) => strip(v),
                        (CertField::SanDns, GeneralName::DNSName(v)) => strip(v),
                        _ => None,
                    })
            })
        }
    };
    match found {
        Some(id) if id != warden_event::ANONYMOUS => Ok(id),
        _ => Err(CertProblem::NoIdentity),
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    use super::*;

    fn cert(cn: &str, sans: Vec<SanType>) -> CertificateDer<'static> {
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.subject_alt_names = sans;
        p.not_before = rcgen::date_time_ymd(2026, 1, 1);
        p.not_after = rcgen::date_time_ymd(2027, 1, 1);
        let key = KeyPair::generate().expect("key");
        p.self_signed(&key).expect("cert").der().clone()
    }

    #[test]
    fn identity_comes_from_the_configured_field_and_prefix() {
        let der = cert(
            "cn-dev",
            vec![
                SanType::DnsName("dns-dev.example".try_into().expect("dns")),
                SanType::URI("urn:other:x".try_into().expect("uri")),
                SanType::URI("urn:dev:uri-dev".try_into().expect("uri")),
            ],
        );
        let read = |f, p: &str| {
            PeerCert::read(vec![der.clone()], f, p)
                .expect("leaf")
                .identity
        };
        assert_eq!(read(CertField::SubjectCn, ""), Ok("cn-dev".into()));
        assert_eq!(read(CertField::SanDns, ""), Ok("dns-dev.example".into()));
        assert_eq!(read(CertField::SanUri, "urn:dev:"), Ok("uri-dev".into()));
        assert_eq!(read(CertField::SanUri, ""), Ok("urn:other:x".into()));
        assert_eq!(
            read(CertField::SanUri, "urn:none:"),
            Err(CertProblem::NoIdentity)
        );
        assert_eq!(
            read(CertField::SubjectCn, "cn-dev"),
            Err(CertProblem::NoIdentity),
            "empty after prefix"
        );
    }

    #[test]
    fn fingerprint_and_validity_window() {
        let der = cert("d", vec![]);
        let p = PeerCert::read(vec![der.clone()], CertField::SubjectCn, "").expect("leaf");
        assert_eq!(p.fingerprint_hex, hex::encode(Sha256::digest(der.as_ref())));
        let jan_2026 = 1_767_225_600;
        assert_eq!(p.check_time(jan_2026 - 1), Err(CertProblem::NotYetValid));
        assert_eq!(p.check_time(jan_2026 + 86_400), Ok(()));
        assert_eq!(
            p.check_time(jan_2026 + 400 * 86_400),
            Err(CertProblem::Expired)
        );
        assert!(PeerCert::read(vec![], CertField::SubjectCn, "").is_none());
        let junk = PeerCert::read(
            vec![CertificateDer::from(vec![1, 2, 3])],
            CertField::SubjectCn,
            "",
        )
        .expect("leaf");
        assert_eq!(junk.identity, Err(CertProblem::Unparsable));
    }
}
