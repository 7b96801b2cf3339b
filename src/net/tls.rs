//! TLS for listeners: rustls server configurations built from PEM files.
//!
//! The configuration names the ring provider itself rather than relying on a process-wide
//! default, so that it works whichever rustls providers feature unification switched on.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// Why a TLS server configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// A PEM input held no certificate.
    #[error("no certificate found in the {what} PEM")]
    NoCertificate {
        /// Which input: "certificate chain" or "client CA".
        what: &'static str,
    },
    /// A PEM input could not be parsed.
    #[error("cannot read the {what} PEM: {source}")]
    Pem {
        /// Which input: "certificate chain", "private key" or "client CA".
        what: &'static str,
        /// The parser's complaint.
        source: rustls::pki_types::pem::Error,
    },
    /// rustls refused the certificates or key (for example a key that does not match the
    /// certificate, or an unsupported key type).
    #[error("invalid TLS certificate or key: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client CA certificates cannot verify clients.
    #[error("invalid client CA: {0}")]
    ClientVerifier(#[from] rustls::server::VerifierBuilderError),
}

/// Builds a TLS server configuration for [`ServeOptions::tls`](super::ServeOptions::tls).
///
/// `cert_chain_pem` holds the server certificate followed by any intermediates (etcd's
/// `--cert-file`), `key_pem` its private key in PKCS#8, PKCS#1 or SEC1 form (`--key-file`).
/// With `client_ca_pem` (`--trusted-ca-file` together with `--client-cert-auth`), every client
/// must present a certificate signed by one of those CAs. ALPN offers `h2` and `http/1.1`.
pub fn server_config(
    cert_chain_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: Option<&[u8]>,
) -> Result<Arc<rustls::ServerConfig>, TlsConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates(cert_chain_pem, "certificate chain")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|source| TlsConfigError::Pem {
        what: "private key",
        source,
    })?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in certificates(pem, "client CA")? {
                roots.add(certificate)?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Every certificate in `pem`; at least one.
fn certificates(
    pem: &[u8],
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsConfigError::Pem { what, source })?;
    if certificates.is_empty() {
        return Err(TlsConfigError::NoCertificate { what });
    }
    Ok(certificates)
}
