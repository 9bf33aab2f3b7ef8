//! TLS for the HTTP API: rustls with a certificate chain and private key from PEM files named in the config.
//!
//! Handshakes run in the task of their connection (see [`super::listener`]), bounded by the header timeout, so a
//! client that connects and stalls (or speaks plain HTTP to the TLS port) delays nobody else; such connections are
//! logged and dropped. Only TLS 1.2 and 1.3 with rustls's default cipher suites are offered.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why the TLS configuration cannot be used.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A PEM file cannot be read or does not parse.
    #[error("{what} {path}")]
    Pem {
        /// `certificate` or `private key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the PEM reader said.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("certificate {path}: no CERTIFICATE block in the file")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// rustls refused the pair (e.g. the key does not match the certificate).
    #[error("TLS configuration from {cert} and {key}")]
    Config {
        /// Certificate file.
        cert: PathBuf,
        /// Key file.
        key: PathBuf,
        /// rustls's reason.
        #[source]
        source: rustls::Error,
    },
}

/// Reads a certificate chain and its private key (PKCS#8, PKCS#1 or SEC1) from PEM files.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let pem = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Pem { what, path, source }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(pem("certificate", cert))?
        .collect::<Result<_, _>>()
        .map_err(pem("certificate", cert))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: cert.into() });
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(pem("private key", key))?;
    // Several crypto providers are compiled in (through dependencies); name one instead of relying on a default.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, private))
        .map_err(|source| TlsError::Config { cert: cert.into(), key: key.into(), source })?;
    let mut config = config;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
