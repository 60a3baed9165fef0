//! The client-certificate verifier of the TLS listener: rustls-webpki's (CAs, CRLs, validity)
//! plus the fingerprint deny list, remembering the fingerprint of a refused certificate for the
//! handshake-failure event.

use std::cell::Cell;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};

use super::DenyList;
use crate::identity::cert::fingerprint;

tokio::task_local! {
    /// Set around one handshake: the fingerprint of the client certificate it refused.
    pub(super) static REFUSED_CERT: Cell<Option<[u8; 32]>>;
}

#[derive(Debug)]
pub(super) struct RecordingVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    deny: Arc<DenyList>,
}

impl std::fmt::Debug for DenyList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DenyList").finish_non_exhaustive()
    }
}

impl RecordingVerifier {
    pub(super) fn new(inner: Arc<dyn ClientCertVerifier>, deny: Arc<DenyList>) -> Self {
        Self { inner, deny }
    }
}

impl ClientCertVerifier for RecordingVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let fp = fingerprint(end_entity);
        let result = if self.deny.contains(&fp) {
            Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        } else {
            self.inner
                .verify_client_cert(end_entity, intermediates, now)
        };
        if result.is_err() {
            // Outside a handshake scope (never, in the gateway) there is nothing to record.
            let _ = REFUSED_CERT.try_with(|c| c.set(Some(fp)));
        }
        result
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
