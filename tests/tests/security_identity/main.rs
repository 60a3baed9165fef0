//! Identity attacks against a real gateway over real sockets: TLS and mTLS (client
//! certificates from CAs generated here, CRLs, a fingerprint deny list), bearer JWTs signed
//! with keys generated here (JWKS served over HTTPS by a local server), API keys with validity
//! windows, the device registry, and the admin API's operator certificates. Every attack
//! asserts its exact outcome (a status, or a refused TLS handshake) and that the protected
//! upstream was not reached; reload tests change files under a running gateway and check the
//! effect without a restart and without failing requests in flight.
//!
//! - [`common`]: the upstream, the IdP, signers, certificates, files, config, the scenario and
//!   the attack log;
//! - [`attacks`]: the attack suite (legitimate controls, then [`tls`], [`jwt`] and [`keys`]
//!   attacks against one gateway, then the events they left);
//! - [`reloads`]: CRL, deny list, registry, server certificate and JWKS changes at run time;
//! - [`admin`]: the admin API over mTLS (operator certificates instead of, or next to, the
//!   token).

mod admin;
mod attacks;
mod common;
mod jwt;
mod keys;
mod reloads;
mod tls;
