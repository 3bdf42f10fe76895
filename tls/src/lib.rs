//! TLS material shared by `cdc` (its `security` module) and `cdc-standin`, which take the same
//! flags (`--ca --cert --key`) and must say the same things about the same files:
//!
//! - [`CaFile`] and [`OwnIdentity`]: PEM files read once and checked (readable, PEM, the key
//!   is the certificate's, both within their validity), every problem a [`TlsError`] naming
//!   the file and its flag ([`PemFile`]);
//! - [`CaFile::server_config`] (client certificates signed by the CA required) and
//!   [`CaFile::client_config`]: rustls configurations with the ring provider;
//! - [`TlsFailure`]: why a handshake failed, dug out of an error chain ([`tls_failure`]) or
//!   found by a handshake of our own ([`handshake_verdict`]), in the operator's terms.
//!
//! Only the ring provider is used: aws-lc would need cmake to build.

mod failure;
mod pem;

use std::sync::Arc;

pub use failure::{handshake_verdict, tls_failure, TlsFailure};
pub use pem::{common_names, CaFile, OwnIdentity, PemFile, TlsError};

/// The crypto provider of every rustls configuration built here.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process's default rustls provider, for TLS configurations built by libraries
/// (tonic falls back to it). Call once at start; later calls change nothing.
pub fn install_crypto_provider() {
    // An error only says a default is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests;
