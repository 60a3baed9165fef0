//! HTTPS servers for the tests (identity providers, JWKS endpoints, TLS upstreams).

use std::sync::Arc;

use crate::pki::Ca;

/// Serve `app` over TLS on `listener` in a spawned task, with a certificate from `ca` (for
/// `127.0.0.1` and `localhost`); with `client_ca`, clients must present a certificate it
/// signed (mTLS).
pub fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    ca: &Ca,
    client_ca: Option<&Ca>,
) -> anyhow::Result<()> {
    let leaf = ca.server()?;
    let certs = warden_config::parse_certs(leaf.cert_pem.as_bytes()).map_err(anyhow::Error::msg)?;
    let key =
        <rustls_pki_types::PrivateKeyDer as rustls_pki_types::pem::PemObject>::from_pem_slice(
            leaf.key_pem.as_bytes(),
        )?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let config = match client_ca {
        Some(client_ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in warden_config::parse_certs(client_ca.cert_pem.as_bytes())
                .map_err(anyhow::Error::msg)?
            {
                roots.add(c)?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()?;
            builder
                .with_client_cert_verifier(verifier)
                .with_single_cert(certs, key)?
        }
        None => builder.with_no_client_auth().with_single_cert(certs, key)?,
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(
                    hyper_util::rt::TokioIo::new(tls),
                    hyper_util::service::TowerToHyperService::new(app),
                )
                .await;
            });
        }
    });
    Ok(())
}
