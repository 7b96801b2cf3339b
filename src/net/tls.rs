//! TLS for listeners and peer connections: rustls server and client configurations built from
//! PEM files (re-read when they change), with etcd's TLS flags: the versions, the TLS 1.2
//! cipher suites (`--cipher-suites`, Go's names), and through [`super::tls_verify`] the
//! revocation lists and allowed peer identities.
//!
//! The configuration names the ring provider itself rather than relying on a process-wide
//! default, so that it works whichever rustls providers feature unification switched on.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use super::tls_verify::AllowedIdentities;

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
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

impl TlsVersion {
    /// Parses etcd's spelling, `TLS1.2` or `TLS1.3`, refusing anything else with etcd's
    /// message (etcd 3.5 refuses `TLS1.0` and `TLS1.1` too).
    pub fn parse(text: &str) -> Result<TlsVersion, String> {
        match text {
            "TLS1.2" => Ok(TlsVersion::Tls12),
            "TLS1.3" => Ok(TlsVersion::Tls13),
            other => Err(format!(
                "unexpected TLS version {other:?} (must be one of: TLS1.2, TLS1.3)"
            )),
        }
    }

    /// etcd's spelling.
    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "TLS1.2",
            TlsVersion::Tls13 => "TLS1.3",
        }
    }
}

/// Every cipher suite name etcd's `--cipher-suites` accepts (Go's `tls.CipherSuites()` and
/// `tls.InsecureCipherSuites()`, and the two short ChaCha20 aliases etcd adds), with the suite
/// when rustls' ring provider implements it. Go ignores the TLS 1.3 names for TLS 1.2 and
/// cannot restrict TLS 1.3 suites at all, so etcd accepts them without effect; so does Keel.
const GO_CIPHER_SUITES: &[(&str, Option<rustls::CipherSuite>)] = {
    use rustls::CipherSuite as S;
    &[
        ("TLS_AES_128_GCM_SHA256", Some(S::TLS13_AES_128_GCM_SHA256)),
        ("TLS_AES_256_GCM_SHA384", Some(S::TLS13_AES_256_GCM_SHA384)),
        (
            "TLS_CHACHA20_POLY1305_SHA256",
            Some(S::TLS13_CHACHA20_POLY1305_SHA256),
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            Some(S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            Some(S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
        ),
        (
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            Some(S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
        ),
        (
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            Some(S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384),
        ),
        (
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
            Some(S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256),
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
            Some(S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
        ),
        (
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
            Some(S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256),
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
            Some(S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
        ),
        // CBC, RC4, 3DES and RSA key exchange: Go knows them, rustls does not speak them.
        ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", None),
        ("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", None),
        ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", None),
        ("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", None),
        ("TLS_RSA_WITH_RC4_128_SHA", None),
        ("TLS_RSA_WITH_3DES_EDE_CBC_SHA", None),
        ("TLS_RSA_WITH_AES_128_CBC_SHA", None),
        ("TLS_RSA_WITH_AES_256_CBC_SHA", None),
        ("TLS_RSA_WITH_AES_128_CBC_SHA256", None),
        ("TLS_RSA_WITH_AES_128_GCM_SHA256", None),
        ("TLS_RSA_WITH_AES_256_GCM_SHA384", None),
        ("TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", None),
        ("TLS_ECDHE_RSA_WITH_RC4_128_SHA", None),
        ("TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", None),
        ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", None),
        ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", None),
    ]
};

/// Why a `--cipher-suites` list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CipherSuiteError {
    /// A name neither Go nor rustls knows (etcd's message).
    #[error("unexpected TLS cipher suite {0:?}")]
    Unknown(String),
    /// A name etcd accepts (Go implements it) that rustls does not implement.
    #[error(
        "TLS cipher suite {0:?} is not supported by keel (its TLS library, rustls, implements \
         only the ECDHE suites with AES-GCM or ChaCha20-Poly1305: {supported})",
        supported = supported_tls12_names().join(", ")
    )]
    Unsupported(String),
}

/// The TLS 1.2 names Keel can restrict the list to.
fn supported_tls12_names() -> Vec<&'static str> {
    GO_CIPHER_SUITES
        .iter()
        .filter(|(name, suite)| suite.is_some_and(|s| format!("{s:?}") == *name))
        .map(|(name, _)| *name)
        .collect()
}

/// Parses etcd's `--cipher-suites`: comma-separated Go/IANA names, in order of preference. An
/// empty list keeps the defaults.
pub fn parse_cipher_suites(text: &str) -> Result<Vec<rustls::CipherSuite>, CipherSuiteError> {
    let mut suites = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match GO_CIPHER_SUITES.iter().find(|(known, _)| *known == name) {
            None => return Err(CipherSuiteError::Unknown(name.to_string())),
            Some((_, None)) => return Err(CipherSuiteError::Unsupported(name.to_string())),
            Some((_, Some(suite))) => {
                if !suites.contains(suite) {
                    suites.push(*suite);
                }
            }
        }
    }
    Ok(suites)
}

/// The ring provider, its TLS 1.2 suites restricted to `cipher_suites` (in that order) when
/// the list is not empty. TLS 1.3 keeps every suite, as in etcd (Go cannot restrict them).
fn provider_with(cipher_suites: &[rustls::CipherSuite]) -> Arc<rustls::crypto::CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    if !cipher_suites.is_empty() {
        let all = std::mem::take(&mut provider.cipher_suites);
        let tls13 = all
            .iter()
            .filter(|s| matches!(s, rustls::SupportedCipherSuite::Tls13(_)));
        let tls12 = cipher_suites.iter().filter_map(|wanted| {
            all.iter().find(|s| {
                matches!(s, rustls::SupportedCipherSuite::Tls12(_)) && s.suite() == *wanted
            })
        });
        provider.cipher_suites = tls13.chain(tls12).copied().collect();
    }
    Arc::new(provider)
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
    /// `--trusted-ca-file`: every client must present a certificate signed by one of these
    /// CAs (etcd asks for client certificates whenever this is set).
    pub client_ca: Option<std::path::PathBuf>,
    /// `--client-crl-file`: client certificates it revokes are refused. Read again when the
    /// file changes. Only used with [`TlsFiles::client_ca`].
    pub crl: Option<std::path::PathBuf>,
    /// Whom a verified certificate must name (`--peer-cert-allowed-cn`,
    /// `--peer-cert-allowed-hostname`): checked on certificates clients present here and, for
    /// [`client_config_from_files`], on the certificates of the servers this side connects to.
    pub allowed: AllowedIdentities,
    /// `--cipher-suites`: the TLS 1.2 suites offered, in order; empty keeps rustls' defaults.
    pub cipher_suites: Vec<rustls::CipherSuite>,
    /// The lowest TLS version accepted.
    pub min_version: TlsVersion,
    /// The highest TLS version accepted.
    pub max_version: TlsVersion,
}

impl TlsFiles {
    /// Only a certificate and its key: no client certificates asked for, rustls' default
    /// suites, TLS 1.2 and 1.3.
    pub fn new(cert: std::path::PathBuf, key: std::path::PathBuf) -> TlsFiles {
        TlsFiles {
            cert,
            key,
            client_ca: None,
            crl: None,
            allowed: AllowedIdentities::Any,
            cipher_suites: Vec::new(),
            min_version: TlsVersion::Tls12,
            max_version: TlsVersion::Tls13,
        }
    }

    /// The protocol versions between the minimum and the maximum.
    fn versions(&self) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, TlsFilesError> {
        if self.min_version > self.max_version {
            return Err(TlsFilesError::Versions {
                min: self.min_version,
                max: self.max_version,
            });
        }
        Ok([
            (TlsVersion::Tls12, &rustls::version::TLS12),
            (TlsVersion::Tls13, &rustls::version::TLS13),
        ]
        .into_iter()
        .filter(|(v, _)| (self.min_version..=self.max_version).contains(v))
        .map(|(_, version)| version)
        .collect())
    }
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
    /// The CRL file holds no usable revocation list.
    #[error("{path}: {reason}")]
    Crl {
        /// The CRL file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The versions are the wrong way round (etcd's message).
    #[error("min version ({}) is greater than max version ({})", min.name(), max.name())]
    Versions {
        /// `--tls-min-version`.
        min: TlsVersion,
        /// `--tls-max-version`.
        max: TlsVersion,
    },
    /// No cipher suite is left for the versions allowed (for example only TLS 1.3 names in
    /// `--cipher-suites` with `--tls-max-version=TLS1.2`).
    #[error("no cipher suite of --cipher-suites can be used with the TLS versions allowed")]
    NoCipherSuite,
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
type FileStamps = [Option<FileStamp>; 2];

/// A file's modification time and length: when either changes, the file is read again.
pub(super) type FileStamp = (std::time::SystemTime, u64);

/// The stamp of the file at `path` now (`None` when it cannot be read).
pub(super) fn stamp(path: &std::path::Path) -> Option<FileStamp> {
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

/// A server configuration from `files`: the certificate is reloaded when its files change,
/// and so is the CRL. Errors name the file at fault.
pub fn server_config_from_files(
    files: &TlsFiles,
) -> Result<Arc<rustls::ServerConfig>, TlsFilesError> {
    let versions = files.versions()?;
    let provider = provider_with(&files.cipher_suites);
    let resolver = ReloadingCert::new(files, provider.clone())?;
    let config_error = |path: &std::path::Path, source| TlsFilesError::Config {
        path: path.display().to_string(),
        source,
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|_| TlsFilesError::NoCipherSuite)?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let roots = root_store(&read(path)?, "client CA").map_err(|e| config_error(path, e))?;
            let verifier = super::tls_verify::CheckedClientVerifier::new(
                Arc::new(roots),
                path,
                provider.clone(),
                files.crl.clone(),
                files.allowed.clone(),
            )?;
            builder.with_client_cert_verifier(Arc::new(verifier))
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

/// A client configuration for connecting to peers, with the versions and cipher suites of
/// `files`: their certificates must be signed by the CA in `trusted_ca` and name whom
/// [`TlsFiles::allowed`] allows, and this member presents the certificate in `files` (re-read
/// when its files change) to peers that ask for one. Without `trusted_ca` (etcd's
/// `--peer-auto-tls`: every member has a self-signed certificate) the peers' certificates are
/// not verified at all, as etcd does not verify them.
pub fn client_config_from_files(
    files: &TlsFiles,
    trusted_ca: Option<&std::path::Path>,
) -> Result<Arc<rustls::ClientConfig>, TlsFilesError> {
    let versions = files.versions()?;
    let provider = provider_with(&files.cipher_suites);
    let config_error = |path: &std::path::Path, source| TlsFilesError::Config {
        path: path.display().to_string(),
        source,
    };
    let verifier = match trusted_ca {
        Some(trusted_ca) => {
            let roots = root_store(&read(trusted_ca)?, "trusted CA")
                .map_err(|e| config_error(trusted_ca, e))?;
            super::tls_verify::CheckedServerVerifier::new(
                Arc::new(roots),
                provider.clone(),
                files.allowed.clone(),
            )
            .map_err(|e| config_error(trusted_ca, TlsConfigError::ClientVerifier(e)))?
        }
        None => super::tls_verify::CheckedServerVerifier::unverified(provider.clone()),
    };
    let resolver = ReloadingCert::new(files, provider.clone())?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|_| TlsFilesError::NoCipherSuite)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_as_etcd_spells_them() {
        assert_eq!(TlsVersion::parse("TLS1.2"), Ok(TlsVersion::Tls12));
        assert_eq!(TlsVersion::parse("TLS1.3"), Ok(TlsVersion::Tls13));
        assert_eq!(
            TlsVersion::parse("TLS1.1").unwrap_err(),
            "unexpected TLS version \"TLS1.1\" (must be one of: TLS1.2, TLS1.3)"
        );
        let mut files = TlsFiles::new("c".into(), "k".into());
        files.min_version = TlsVersion::Tls13;
        files.max_version = TlsVersion::Tls12;
        assert_eq!(
            files.versions().unwrap_err().to_string(),
            "min version (TLS1.3) is greater than max version (TLS1.2)"
        );
        files.max_version = TlsVersion::Tls13;
        assert_eq!(files.versions().unwrap(), [&rustls::version::TLS13]);
    }

    #[test]
    fn cipher_suites_parse_go_names() {
        use rustls::CipherSuite as S;
        assert_eq!(parse_cipher_suites(""), Ok(vec![]));
        assert_eq!(
            parse_cipher_suites(
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305,\
                 TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
            ),
            Ok(vec![
                S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            ])
        );
        assert_eq!(
            parse_cipher_suites("TLS_AES_128_GCM_SHA256"),
            Ok(vec![S::TLS13_AES_128_GCM_SHA256])
        );
        assert_eq!(
            parse_cipher_suites("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,NOPE")
                .unwrap_err()
                .to_string(),
            "unexpected TLS cipher suite \"NOPE\""
        );
        let unsupported = parse_cipher_suites("TLS_RSA_WITH_AES_128_CBC_SHA").unwrap_err();
        assert_eq!(
            unsupported,
            CipherSuiteError::Unsupported("TLS_RSA_WITH_AES_128_CBC_SHA".into())
        );
        let text = unsupported.to_string();
        assert!(
            text.contains("\"TLS_RSA_WITH_AES_128_CBC_SHA\" is not supported by keel"),
            "{text}"
        );
        assert!(
            text.contains("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
            "{text}"
        );
        // Every suite rustls' ring provider has is reachable by a Go name.
        for suite in rustls::crypto::ring::default_provider().cipher_suites {
            assert!(
                GO_CIPHER_SUITES
                    .iter()
                    .any(|(_, known)| *known == Some(suite.suite())),
                "{:?}",
                suite.suite()
            );
        }
    }

    #[test]
    fn cipher_suites_restrict_tls12_only() {
        use rustls::CipherSuite as S;
        let provider = provider_with(&[
            S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        ]);
        let suites: Vec<_> = provider.cipher_suites.iter().map(|s| s.suite()).collect();
        assert_eq!(
            suites,
            [
                S::TLS13_AES_256_GCM_SHA384,
                S::TLS13_AES_128_GCM_SHA256,
                S::TLS13_CHACHA20_POLY1305_SHA256,
                S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
                S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            ]
        );
        let default = provider_with(&[]);
        assert_eq!(
            default.cipher_suites.len(),
            rustls::crypto::ring::default_provider().cipher_suites.len()
        );
    }
}
