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
            let roots = root_store(pem, "client CA")?;
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A root store of every certificate in `pem` (at least one).
fn root_store(pem: &[u8], what: &'static str) -> Result<rustls::RootCertStore, TlsConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in certificates(pem, what)? {
        roots.add(certificate)?;
    }
    Ok(roots)
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

/// The TLS versions a listener accepts (etcd's `--tls-min-version` / `--tls-max-version`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

impl TlsVersion {
    /// Parses etcd's spelling: `TLS1.2`, `TLS1.3` (`TLS1.0` and `TLS1.1` are refused: rustls
    /// does not speak them).
    pub fn parse(text: &str) -> Result<TlsVersion, String> {
        match text {
            "TLS1.2" => Ok(TlsVersion::Tls12),
            "TLS1.3" => Ok(TlsVersion::Tls13),
            "TLS1.0" | "TLS1.1" => Err(format!(
                "{text} is not supported: Keel speaks TLS1.2 and TLS1.3 only"
            )),
            other => Err(format!("unknown TLS version {other:?}")),
        }
    }
}

/// Where a listener's certificate, key and client CA come from: files, read again whenever
/// they change on disk, so a rotated certificate is served from the next handshake on without
/// a restart (etcd reads them per handshake too).
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// `--cert-file`: the certificate chain (PEM).
    pub cert: std::path::PathBuf,
    /// `--key-file`: its private key (PEM).
    pub key: std::path::PathBuf,
    /// `--trusted-ca-file` with `--client-cert-auth`: every client must present a certificate
    /// signed by one of these CAs.
    pub client_ca: Option<std::path::PathBuf>,
    /// The lowest TLS version accepted.
    pub min_version: TlsVersion,
    /// The highest TLS version accepted.
    pub max_version: TlsVersion,
}

/// Why a listener's TLS files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsFilesError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The files do not make a configuration.
    #[error("{path}: {source}")]
    Config {
        /// The certificate file (or the CA file).
        path: String,
        /// Why.
        source: TlsConfigError,
    },
    /// The versions are the wrong way round.
    #[error("--tls-min-version is above --tls-max-version")]
    Versions,
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, TlsFilesError> {
    std::fs::read(path).map_err(|source| TlsFilesError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// The certificate and key, reloaded when either file's modification time or size changes.
#[derive(Debug)]
struct ReloadingCert {
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    provider: Arc<rustls::crypto::CryptoProvider>,
    current: std::sync::Mutex<(FileStamps, Arc<rustls::sign::CertifiedKey>)>,
}

/// (modification time, length) of the certificate and the key files.
type FileStamps = [Option<(std::time::SystemTime, u64)>; 2];

fn stamp(path: &std::path::Path) -> Option<(std::time::SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl ReloadingCert {
    /// The pair in `files`, loaded now (an error names the file at fault).
    fn new(
        files: &TlsFiles,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<ReloadingCert, TlsFilesError> {
        let stamps = [stamp(&files.cert), stamp(&files.key)];
        let certified = ReloadingCert::load(&files.cert, &files.key, &provider)?;
        Ok(ReloadingCert {
            cert: files.cert.clone(),
            key: files.key.clone(),
            provider,
            current: std::sync::Mutex::new((stamps, certified)),
        })
    }

    fn load(
        cert: &std::path::Path,
        key: &std::path::Path,
        provider: &rustls::crypto::CryptoProvider,
    ) -> Result<Arc<rustls::sign::CertifiedKey>, TlsFilesError> {
        let config_error = |source| TlsFilesError::Config {
            path: cert.display().to_string(),
            source,
        };
        let chain = certificates(&read(cert)?, "certificate chain").map_err(config_error)?;
        let key_pem = read(key)?;
        let key_der =
            PrivateKeyDer::from_pem_slice(&key_pem).map_err(|source| TlsFilesError::Config {
                path: key.display().to_string(),
                source: TlsConfigError::Pem {
                    what: "private key",
                    source,
                },
            })?;
        let signing = provider
            .key_provider
            .load_private_key(key_der)
            .map_err(|e| config_error(TlsConfigError::Rustls(e)))?;
        let certified = rustls::sign::CertifiedKey::new(chain, signing);
        certified
            .keys_match()
            .map_err(|e| config_error(TlsConfigError::Rustls(e)))?;
        Ok(Arc::new(certified))
    }
}

impl rustls::server::ResolvesServerCert for ReloadingCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.current()
    }
}

impl ReloadingCert {
    /// The pair as the files hold it now (loaded again if they changed since last time).
    fn current(&self) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let stamps = [stamp(&self.cert), stamp(&self.key)];
        let mut current = self.current.lock().ok()?;
        if stamps != current.0 {
            match ReloadingCert::load(&self.cert, &self.key, &self.provider) {
                Ok(certified) => {
                    tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                    *current = (stamps, certified);
                }
                // A half-written pair (the key replaced, the certificate not yet) is tried
                // again at the next handshake; the old pair serves meanwhile.
                Err(error) => {
                    tracing::warn!(%error, "TLS certificate not reloaded; serving the previous one")
                }
            }
        }
        Some(current.1.clone())
    }
}

/// A server configuration from `files`: the certificate is reloaded when its files change.
/// Errors name the file at fault.
pub fn server_config_from_files(
    files: &TlsFiles,
) -> Result<Arc<rustls::ServerConfig>, TlsFilesError> {
    if files.min_version == TlsVersion::Tls13 && files.max_version == TlsVersion::Tls12 {
        return Err(TlsFilesError::Versions);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let resolver = ReloadingCert::new(files, provider.clone())?;
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
        (TlsVersion::Tls12, &rustls::version::TLS12),
        (TlsVersion::Tls13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| {
        (files.min_version, *v) != (TlsVersion::Tls13, TlsVersion::Tls12)
            && (files.max_version, *v) != (TlsVersion::Tls12, TlsVersion::Tls13)
    })
    .map(|(_, version)| version)
    .collect();
    let config_error = |path: &std::path::Path, source| TlsFilesError::Config {
        path: path.display().to_string(),
        source,
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| config_error(&files.cert, TlsConfigError::Rustls(e)))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let roots = root_store(&read(path)?, "client CA").map_err(|e| config_error(path, e))?;
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| config_error(path, TlsConfigError::ClientVerifier(e)))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

impl rustls::client::ResolvesClientCert for ReloadingCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.current()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A client configuration for connecting to peers: their certificates must be signed by the
/// CA in `trusted_ca`, and this member presents the certificate in `files` (re-read when its
/// files change) to peers that ask for one.
pub fn client_config_from_files(
    files: &TlsFiles,
    trusted_ca: &std::path::Path,
) -> Result<Arc<rustls::ClientConfig>, TlsFilesError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config_error = |path: &std::path::Path, source| TlsFilesError::Config {
        path: path.display().to_string(),
        source,
    };
    let roots =
        root_store(&read(trusted_ca)?, "trusted CA").map_err(|e| config_error(trusted_ca, e))?;
    let resolver = ReloadingCert::new(files, provider.clone())?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error(&files.cert, TlsConfigError::Rustls(e)))?
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}
