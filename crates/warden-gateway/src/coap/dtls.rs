//! CoAP over DTLS 1.2 (`coaps://`, RFC 7252 §9): the same requests as the plain listener,
//! over a DTLS session per device, with `webrtc-dtls` (a maintained, pure-Rust DTLS 1.2 on
//! rustls' and ring's primitives; no OpenSSL).
//!
//! The gateway presents its TLS listener's certificate (`gateway.tls`). A device may present
//! a client certificate — required when `gateway.tls.client_auth.required` — whose possession
//! the handshake proves (CertificateVerify); the chain is then verified against the gateway's
//! client CAs, CRLs and deny list on the session's first request and after every reload,
//! exactly as a TLS connection's, and names the identity. Without one, the credential option
//! does, as on the plain listener. Every datagram then goes through [`Listener::datagram`]:
//! deduplication, block-wise transfers, the chain, events.
//!
//! Handshakes run in tasks of their own (a client that stalls one holds up no other), each
//! within [`HANDSHAKE_TIMEOUT`]; at most [`MAX_SESSIONS`] sessions at once, each closed after
//! [`IDLE_TIMEOUT`] without a datagram.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tracing::{debug, info};
use webrtc_dtls::config::{ClientAuthType, Config, ExtendedMasterSecretType};
use webrtc_dtls::conn::DTLSConn;
use webrtc_dtls::crypto::{Certificate, CryptoPrivateKey, CryptoPrivateKeyKind};
use webrtc_util::conn::Listener as _;
use webrtc_util::conn::conn_udp_listener::ListenConfig;

use super::{Listener, Reply};
use crate::error::GatewayError;
use crate::tls::TlsRuntime;

/// Longest a DTLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A session with no datagram for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// DTLS sessions at once, at most (more handshakes are dropped).
pub const MAX_SESSIONS: usize = 10_000;

/// A bound CoAP-over-DTLS listener.
pub struct DtlsListener {
    inner: Listener,
    parent: Arc<dyn webrtc_util::conn::Listener + Send + Sync>,
    config: Config,
    tls: Arc<TlsRuntime>,
    addr: SocketAddr,
}

impl DtlsListener {
    /// Bind `addr` with the gateway's TLS certificate.
    pub(crate) async fn bind(inner: Listener, addr: SocketAddr) -> Result<Self, GatewayError> {
        let tls = inner.chain.tls().ok_or_else(|| {
            GatewayError::Identity(vec![
                "gateway.coap.dtls_listen needs gateway.tls (its certificate)".into(),
            ])
        })?;
        // The DTLS library builds rustls verifiers with the process's default provider; the
        // gateway passes its providers explicitly everywhere else, so this only sets one
        // where none is (ring, as for the gateway's signatures).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (certs, key) = tls.cert_and_key().map_err(GatewayError::Identity)?;
        let private_key = private_key(&key).map_err(|e| GatewayError::Identity(vec![e]))?;
        let config = Config {
            certificates: vec![Certificate {
                certificate: certs,
                private_key,
            }],
            extended_master_secret: ExtendedMasterSecretType::Require,
            client_auth: if tls.client_cert_required() {
                ClientAuthType::RequireAnyClientCert
            } else {
                ClientAuthType::RequestClientCert
            },
            ..Config::default()
        };
        let mut listen = ListenConfig {
            // Only a handshake record (content type 22) opens a session.
            accept_filter: Some(Box::new(|packet: &[u8]| {
                let handshake = packet.first() == Some(&22);
                Box::pin(async move { handshake })
            })),
            ..ListenConfig::default()
        };
        let parent = listen
            .listen(addr)
            .await
            .map_err(|e| GatewayError::Io(std::io::Error::other(e)))?;
        let addr = parent
            .addr()
            .await
            .map_err(|e| GatewayError::Io(std::io::Error::other(e)))?;
        Ok(Self {
            inner,
            parent: Arc::new(parent),
            config,
            tls,
            addr,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serve until `shutdown`; open sessions end with their idle timeout.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>) {
        info!(addr = %self.addr, "CoAP DTLS listener started.");
        let sessions = Arc::new(tokio::sync::Semaphore::new(MAX_SESSIONS));
        tokio::pin!(shutdown);
        loop {
            let (conn, peer) = tokio::select! {
                r = self.parent.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        debug!(error = %e, "DTLS accept failed.");
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let Ok(permit) = sessions.clone().try_acquire_owned() else {
                debug!(%peer, "DTLS session refused: too many sessions.");
                let _ = conn.close().await;
                continue;
            };
            let (config, inner, tls) = (self.config.clone(), self.inner.clone(), self.tls.clone());
            tokio::spawn(async move {
                session(conn, peer, config, inner, tls).await;
                drop(permit);
            });
        }
        let _ = self.parent.close().await;
    }
}

/// One device's DTLS session: the handshake, then its datagrams.
async fn session(
    conn: Arc<dyn webrtc_util::Conn + Send + Sync>,
    peer: SocketAddr,
    config: Config,
    inner: Listener,
    tls: Arc<TlsRuntime>,
) {
    let dtls = match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        DTLSConn::new(conn.clone(), config, false, None),
    )
    .await
    {
        Ok(Ok(c)) => Arc::new(c),
        Ok(Err(e)) => {
            debug!(%peer, error = %e, "DTLS handshake failed.");
            let _ = conn.close().await;
            return;
        }
        Err(_) => {
            debug!(%peer, "DTLS handshake timed out.");
            let _ = conn.close().await;
            return;
        }
    };
    let chain: Vec<CertificateDer<'static>> = dtls
        .connection_state()
        .await
        .peer_certificates
        .into_iter()
        .map(CertificateDer::from)
        .collect();
    let tls_conn = (!chain.is_empty()).then(|| tls.dtls_conn(chain));
    let reply = Reply::Dtls(dtls.clone());
    let mut buf = vec![0u8; 1500];
    loop {
        match tokio::time::timeout(IDLE_TIMEOUT, webrtc_util::Conn::recv(&*dtls, &mut buf)).await {
            Ok(Ok(n)) => {
                inner
                    .datagram(&buf[..n], peer, reply.clone(), tls_conn.clone())
                    .await;
            }
            Ok(Err(e)) => {
                debug!(%peer, error = %e, "DTLS session ended.");
                break;
            }
            Err(_) => {
                debug!(%peer, "DTLS session idle: closed.");
                break;
            }
        }
    }
    let _ = dtls.close().await;
}

/// The listener's private key as the DTLS library wants it: PKCS#8 ECDSA P-256, Ed25519 or
/// RSA.
fn private_key(key: &PrivateKeyDer<'_>) -> Result<CryptoPrivateKey, String> {
    use ring::signature::{
        ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair,
    };
    let PrivateKeyDer::Pkcs8(pkcs8) = key else {
        return Err("the DTLS listener needs the key file in PKCS#8 (`BEGIN PRIVATE KEY`)".into());
    };
    let der = pkcs8.secret_pkcs8_der();
    let rng = ring::rand::SystemRandom::new();
    let kind = if let Ok(k) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der, &rng) {
        CryptoPrivateKeyKind::Ecdsa256(k)
    } else if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
        CryptoPrivateKeyKind::Ed25519(k)
    } else if let Ok(k) = RsaKeyPair::from_pkcs8(der) {
        CryptoPrivateKeyKind::Rsa256(k)
    } else {
        return Err("the DTLS listener's key is not ECDSA P-256, Ed25519 or RSA".into());
    };
    Ok(CryptoPrivateKey {
        kind,
        serialized_der: der.to_vec(),
    })
}
