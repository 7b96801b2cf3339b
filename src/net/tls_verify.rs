//! Certificate checks beyond "signed by a trusted CA", as etcd makes them:
//!
//! - revocation lists (`--client-crl-file`, `--peer-crl-file`): a client certificate a CRL
//!   revokes is refused. etcd reads the file at every handshake; Keel reads it again whenever
//!   its modification time or size changes, and a file that cannot be read or parsed then
//!   refuses every client certificate until it is fixed (etcd fails closed the same way);
//! - allowed identities (`--peer-cert-allowed-cn`, `--peer-cert-allowed-hostname`): a verified
//!   certificate must carry one of the allowed common names, or be valid for one of the
//!   allowed host names or IP addresses. etcd checks this in both directions (on peers that
//!   connect here and on the peers this member connects to), so Keel does too;
//! - no verification at all for `--peer-auto-tls`, where every member's certificate is
//!   self-signed and etcd skips verification;
//! - the peer's address ([`check_client_address`]): after the handshake, etcd's peer listener
//!   refuses a peer whose certificate has subject alternative names none of which is (or
//!   resolves to) the address it connects from.
//!
//! Both verifiers delegate the chain check to rustls' WebPKI verifiers.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::tls::{stamp, FileStamp, TlsFilesError};

/// Whom a verified certificate must name. etcd's flags take comma-separated lists and refuse
/// both kinds at once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AllowedIdentities {
    /// Any certificate the CA signed.
    #[default]
    Any,
    /// The subject common name must be one of these (exact match).
    CommonNames(Vec<String>),
    /// The certificate must be valid for one of these host names or IP addresses (its
    /// subject alternative names, as Go's `VerifyHostname` checks them).
    Hostnames(Vec<String>),
}

impl AllowedIdentities {
    /// From the comma-separated `--peer-cert-allowed-cn` and `--peer-cert-allowed-hostname`
    /// values; both non-empty is refused with etcd's message.
    pub fn from_flags(
        common_names: Option<&str>,
        hostnames: Option<&str>,
    ) -> Result<AllowedIdentities, String> {
        let split = |text: Option<&str>| -> Vec<String> {
            text.unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        };
        let (common_names, hostnames) = (split(common_names), split(hostnames));
        match (common_names.is_empty(), hostnames.is_empty()) {
            (true, true) => Ok(AllowedIdentities::Any),
            (false, true) => Ok(AllowedIdentities::CommonNames(common_names)),
            (true, false) => Ok(AllowedIdentities::Hostnames(hostnames)),
            (false, false) => Err(format!(
                "AllowedCNs and AllowedHostnames are mutually exclusive (cns={}, hostnames={})",
                go_quoted(&common_names),
                go_quoted(&hostnames)
            )),
        }
    }

    /// Checks the verified end-entity certificate `der`; the error says what was wrong.
    pub fn check(&self, der: &[u8]) -> Result<(), String> {
        if *self == AllowedIdentities::Any {
            return Ok(());
        }
        let (_, certificate) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("client certificate authentication failed: {e}"))?;
        match self {
            AllowedIdentities::Any => Ok(()),
            AllowedIdentities::CommonNames(allowed) => {
                let common_name = certificate
                    .subject()
                    .iter_common_name()
                    .next()
                    .and_then(|cn| cn.as_str().ok())
                    .unwrap_or("");
                if allowed.iter().any(|a| a == common_name) {
                    Ok(())
                } else {
                    Err(format!(
                        "client certificate authentication failed: common name {common_name:?} \
                         is not one of the allowed CNs {}",
                        go_quoted(allowed)
                    ))
                }
            }
            AllowedIdentities::Hostnames(allowed) => {
                let names = SubjectNames::of(&certificate);
                if allowed.iter().any(|a| names.valid_for(a)) {
                    Ok(())
                } else {
                    Err(format!(
                        "client certificate authentication failed: the certificate is valid \
                         for none of the allowed hostnames {}",
                        go_quoted(allowed)
                    ))
                }
            }
        }
    }
}

/// Go's `%q` of a string slice: `["a" "b"]`.
fn go_quoted(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(" "))
}

/// A certificate's DNS names and IP addresses (subject alternative names).
struct SubjectNames {
    dns: Vec<String>,
    ips: Vec<std::net::IpAddr>,
}

impl SubjectNames {
    fn of(certificate: &x509_parser::certificate::X509Certificate<'_>) -> SubjectNames {
        use x509_parser::extensions::GeneralName;
        let mut names = SubjectNames {
            dns: Vec::new(),
            ips: Vec::new(),
        };
        if let Ok(Some(san)) = certificate.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => names.dns.push(dns.to_string()),
                    GeneralName::IPAddress(bytes) => {
                        if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                            names.ips.push(v4.into());
                        } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                            names.ips.push(v6.into());
                        }
                    }
                    _ => {}
                }
            }
        }
        names
    }

    /// Go's `Certificate.VerifyHostname`: an IP address (bare or in brackets) must be one of
    /// the IP names; a host name must match a DNS name, ignoring case and a trailing dot, where
    /// a leading `*` label matches any one label. The common name is never consulted.
    fn valid_for(&self, host: &str) -> bool {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
            return self
                .ips
                .iter()
                .any(|candidate| candidate.to_canonical() == ip.to_canonical());
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if host.is_empty() {
            return false;
        }
        let host_labels: Vec<&str> = host.split('.').collect();
        self.dns.iter().any(|pattern| {
            let pattern = pattern.to_ascii_lowercase();
            let labels: Vec<&str> = pattern.split('.').collect();
            labels.len() == host_labels.len()
                && labels
                    .iter()
                    .zip(&host_labels)
                    .enumerate()
                    .all(|(i, (p, h))| (i == 0 && *p == "*") || p == h)
        })
    }
}

/// How [`check_client_address`] resolves names: the system resolver in the server, a table
/// in tests.
pub(super) trait Resolver {
    /// The names of `ip` (a reverse lookup).
    fn names_of(&self, ip: std::net::IpAddr) -> Result<Vec<String>, String>;
    /// The addresses of `name` (a forward lookup).
    fn addresses_of(&self, name: &str) -> Result<Vec<std::net::IpAddr>, String>;
}

/// The system's resolver (`getnameinfo`, `getaddrinfo`: /etc/hosts, then DNS). Its calls
/// block; run them off the executor.
pub(super) struct SystemResolver;

impl Resolver for SystemResolver {
    fn names_of(&self, ip: std::net::IpAddr) -> Result<Vec<String>, String> {
        // SAFETY: both sockaddr types are plain C structs for which all zeroes is valid; the
        // length passed is the size of the one filled in, and `host` is as long as we say.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let length = match ip {
            std::net::IpAddr::V4(v4) => {
                let sin = &mut storage as *mut _ as *mut libc::sockaddr_in;
                unsafe {
                    (*sin).sin_family = libc::AF_INET as libc::sa_family_t;
                    (*sin).sin_addr.s_addr = u32::from_ne_bytes(v4.octets());
                }
                std::mem::size_of::<libc::sockaddr_in>()
            }
            std::net::IpAddr::V6(v6) => {
                let sin6 = &mut storage as *mut _ as *mut libc::sockaddr_in6;
                unsafe {
                    (*sin6).sin6_family = libc::AF_INET6 as libc::sa_family_t;
                    (*sin6).sin6_addr.s6_addr = v6.octets();
                }
                std::mem::size_of::<libc::sockaddr_in6>()
            }
        };
        let mut host = [0 as libc::c_char; 1025];
        let rc = unsafe {
            libc::getnameinfo(
                &storage as *const _ as *const libc::sockaddr,
                length as libc::socklen_t,
                host.as_mut_ptr(),
                host.len() as libc::socklen_t,
                std::ptr::null_mut(),
                0,
                libc::NI_NAMEREQD,
            )
        };
        if rc != 0 {
            let reason = unsafe { std::ffi::CStr::from_ptr(libc::gai_strerror(rc)) };
            return Err(format!("lookup {ip}: {}", reason.to_string_lossy()));
        }
        let name = unsafe { std::ffi::CStr::from_ptr(host.as_ptr()) };
        Ok(vec![name.to_string_lossy().into_owned()])
    }

    fn addresses_of(&self, name: &str) -> Result<Vec<std::net::IpAddr>, String> {
        use std::net::ToSocketAddrs;
        (name, 0)
            .to_socket_addrs()
            .map(|addrs| addrs.map(|a| a.ip()).collect())
            .map_err(|e| format!("lookup {name}: {e}"))
    }
}

/// etcd's check that a peer names the address it connects from (its peer listener's
/// `checkCertSAN`, off with `--experimental-peer-skip-client-san-verification`), on the
/// verified certificate `der` of a peer connecting from `remote`:
///
/// - a certificate with neither IP nor DNS subject alternative names passes;
/// - with IP names, `remote` must be one of them; failing that, with no DNS names the
///   connection is refused with Go's `x509: certificate is valid for ..., not ...`;
/// - with DNS names, a reverse lookup of `remote` must give one of them (a `*.` name matches
///   any name ending in the rest), or a forward lookup of one (wildcards aside) must give
///   `remote`; otherwise etcd's `tls: "<ip>" does not match any of DNSNames [...]`, with the
///   last lookup error in parentheses.
pub(super) fn check_client_address(
    der: &[u8],
    remote: std::net::IpAddr,
    resolver: &dyn Resolver,
) -> Result<(), String> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("cannot parse the peer certificate: {e}"))?;
    let names = SubjectNames::of(&certificate);
    if names.ips.is_empty() && names.dns.is_empty() {
        return Ok(());
    }
    let remote = remote.to_canonical();
    if !names.ips.is_empty() {
        if names.ips.iter().any(|ip| ip.to_canonical() == remote) {
            return Ok(());
        }
        if names.dns.is_empty() {
            let valid: Vec<String> = names
                .ips
                .iter()
                .map(|ip| ip.to_canonical().to_string())
                .collect();
            return Err(format!(
                "x509: certificate is valid for {}, not {remote}",
                valid.join(", ")
            ));
        }
    }
    let (wildcards, exact): (Vec<&String>, Vec<&String>) =
        names.dns.iter().partition(|name| name.starts_with("*."));
    let mut last_error = None;
    match resolver.names_of(remote) {
        Ok(found) => {
            for name in found {
                let name = name.strip_suffix('.').unwrap_or(&name);
                if wildcards.iter().any(|w| name.ends_with(&w[1..]))
                    || exact.iter().any(|n| n.as_str() == name)
                {
                    return Ok(());
                }
            }
        }
        Err(error) => last_error = Some(error),
    }
    for name in exact {
        match resolver.addresses_of(name) {
            Ok(addresses) => {
                if addresses.iter().any(|a| a.to_canonical() == remote) {
                    return Ok(());
                }
            }
            Err(error) => last_error = Some(error),
        }
    }
    let lookup = last_error.map(|e| format!(" ({e})")).unwrap_or_default();
    Err(format!(
        "tls: \"{remote}\" does not match any of DNSNames {}{lookup}",
        go_quoted(&names.dns)
    ))
}

/// The revocation lists in `path`: PEM (`X509 CRL` blocks) or one DER list, as Go's
/// `x509.ParseCRL` takes either.
fn read_crls(
    path: &std::path::Path,
) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsFilesError> {
    let bad = |reason: String| TlsFilesError::Crl {
        path: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|source| TlsFilesError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let pem: Vec<_> = CertificateRevocationListDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| bad(format!("cannot read the CRL PEM: {e}")))?;
    let crls = if pem.is_empty() {
        vec![CertificateRevocationListDer::from(bytes)]
    } else {
        pem
    };
    Ok(crls)
}

/// A verifier built from the CRL file, or why none could be built.
type CrlVerifier = Result<Arc<dyn ClientCertVerifier>, String>;

/// The client-certificate verifier of a listener: rustls' WebPKI verifier over the client CA
/// (with the CRL when one is configured, rebuilt when the CRL file changes), then the allowed
/// identities.
#[derive(Debug)]
pub(super) struct CheckedClientVerifier {
    roots: Arc<rustls::RootCertStore>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    crl: Option<std::path::PathBuf>,
    allowed: AllowedIdentities,
    /// The CA subjects hinted to clients (they do not change with the CRL).
    hints: Vec<DistinguishedName>,
    /// The CRL file's stamp when last read, and the verifier built from it (or why none
    /// could be built: every client is refused until the file is fixed).
    current: Mutex<(Option<FileStamp>, CrlVerifier)>,
}

impl CheckedClientVerifier {
    /// Builds the verifier, reading the CRL now: a CRL that cannot be used stops the start
    /// (etcd would start and refuse every client certificate). `ca_path` names the client CA
    /// file in errors.
    pub(super) fn new(
        roots: Arc<rustls::RootCertStore>,
        ca_path: &std::path::Path,
        provider: Arc<rustls::crypto::CryptoProvider>,
        crl: Option<std::path::PathBuf>,
        allowed: AllowedIdentities,
    ) -> Result<CheckedClientVerifier, TlsFilesError> {
        let crl_stamp = crl.as_deref().and_then(stamp);
        let crls = match &crl {
            Some(path) => read_crls(path)?,
            None => Vec::new(),
        };
        let inner = build_client_verifier(&roots, &provider, crls).map_err(|e| match &crl {
            // With valid roots, only the CRLs can be at fault.
            Some(path) if !roots.is_empty() => TlsFilesError::Crl {
                path: path.display().to_string(),
                reason: e.to_string(),
            },
            _ => TlsFilesError::Config {
                path: ca_path.display().to_string(),
                source: super::TlsConfigError::ClientVerifier(e),
            },
        })?;
        Ok(CheckedClientVerifier {
            hints: inner.root_hint_subjects().to_vec(),
            roots,
            provider,
            crl,
            allowed,
            current: Mutex::new((crl_stamp, Ok(inner))),
        })
    }

    /// The verifier for the CRL file as it is now.
    fn verifier(&self) -> Result<Arc<dyn ClientCertVerifier>, rustls::Error> {
        let mut current = self
            .current
            .lock()
            .map_err(|_| rustls::Error::General("client verifier lock poisoned".into()))?;
        if let Some(path) = &self.crl {
            let now = stamp(path);
            if now != current.0 || now.is_none() {
                let rebuilt = read_crls(path).map_err(|e| e.to_string()).and_then(|crls| {
                    build_client_verifier(&self.roots, &self.provider, crls)
                        .map_err(|e| format!("{}: {e}", path.display()))
                });
                match &rebuilt {
                    Ok(_) => {
                        tracing::info!(crl = %path.display(), "certificate revocation list reloaded")
                    }
                    Err(error) => tracing::warn!(
                        %error,
                        "certificate revocation list unusable; refusing client certificates \
                         until it is fixed"
                    ),
                }
                *current = (now, rebuilt);
            }
        }
        current
            .1
            .clone()
            .map_err(|e| rustls::Error::General(format!("certificate revocation list: {e}")))
    }
}

fn build_client_verifier(
    roots: &Arc<rustls::RootCertStore>,
    provider: &Arc<rustls::crypto::CryptoProvider>,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<Arc<dyn ClientCertVerifier>, rustls::server::VerifierBuilderError> {
    let has_crls = !crls.is_empty();
    let builder = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .with_crls(crls);
    // etcd refuses only certificates a CRL lists: one whose issuer has no CRL in the file
    // passes (rustls would refuse it by default).
    let builder = if has_crls {
        builder.allow_unknown_revocation_status()
    } else {
        builder
    };
    builder.build()
}

/// A refusal with a message of Keel's own (rustls shows it in the handshake error).
fn refusal(message: String) -> rustls::Error {
    #[derive(Debug)]
    struct Refused(String);
    impl std::fmt::Display for Refused {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
    impl std::error::Error for Refused {}
    rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
        Arc::new(Refused(message)),
    )))
}

impl ClientCertVerifier for CheckedClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .verifier()?
            .verify_client_cert(end_entity, intermediates, now)?;
        self.allowed.check(end_entity).map_err(refusal)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The server-certificate verifier of outgoing peer connections: rustls' WebPKI verifier over
/// the peer CA, then the allowed identities; or no verification (auto TLS).
#[derive(Debug)]
pub(super) struct CheckedServerVerifier {
    /// `None`: certificates are not verified (`--peer-auto-tls`).
    inner: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    allowed: AllowedIdentities,
}

impl CheckedServerVerifier {
    /// Verifies against `roots`, then checks `allowed`.
    pub(super) fn new(
        roots: Arc<rustls::RootCertStore>,
        provider: Arc<rustls::crypto::CryptoProvider>,
        allowed: AllowedIdentities,
    ) -> Result<CheckedServerVerifier, rustls::server::VerifierBuilderError> {
        let inner =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()?;
        Ok(CheckedServerVerifier {
            inner: Some(inner),
            provider,
            allowed,
        })
    }

    /// Accepts any certificate (the handshake signatures are still checked, so the peer
    /// holds the key of the certificate it shows).
    pub(super) fn unverified(provider: Arc<rustls::crypto::CryptoProvider>) -> Self {
        CheckedServerVerifier {
            inner: None,
            provider,
            allowed: AllowedIdentities::Any,
        }
    }
}

impl ServerCertVerifier for CheckedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(inner) = &self.inner else {
            return Ok(ServerCertVerified::assertion());
        };
        let verified =
            inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        self.allowed.check(end_entity).map_err(refusal)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The message a refused handshake is logged with: the text of Keel's own refusals (an
/// identity not allowed) rather than rustls' debug form of them, and an expired certificate
/// without the clock's reading (so that a client retrying is logged once).
pub(super) fn rejection_reason(error: &std::io::Error) -> String {
    use rustls::CertificateError as E;
    let own = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .and_then(|tls| match tls {
            rustls::Error::InvalidCertificate(E::Other(other)) => Some(other.to_string()),
            rustls::Error::InvalidCertificate(E::Expired | E::ExpiredContext { .. }) => {
                Some("invalid peer certificate: certificate expired".to_string())
            }
            rustls::Error::InvalidCertificate(E::NotValidYet | E::NotValidYetContext { .. }) => {
                Some("invalid peer certificate: certificate not valid yet".to_string())
            }
            _ => None,
        });
    own.unwrap_or_else(|| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(common_name: &str, names: &[&str]) -> Vec<u8> {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn allowed_lists_parse_as_etcd_and_both_kinds_are_refused() {
        assert_eq!(
            AllowedIdentities::from_flags(None, Some("")),
            Ok(AllowedIdentities::Any)
        );
        assert_eq!(
            AllowedIdentities::from_flags(Some("a,b"), None),
            Ok(AllowedIdentities::CommonNames(vec!["a".into(), "b".into()]))
        );
        assert_eq!(
            AllowedIdentities::from_flags(None, Some("h.example.com")),
            Ok(AllowedIdentities::Hostnames(vec!["h.example.com".into()]))
        );
        assert_eq!(
            AllowedIdentities::from_flags(Some("a,b"), Some("h")).unwrap_err(),
            "AllowedCNs and AllowedHostnames are mutually exclusive (cns=[\"a\" \"b\"], \
             hostnames=[\"h\"])"
        );
    }

    #[test]
    fn common_names_match_exactly() {
        let der = certificate("member-1", &["127.0.0.1"]);
        let allowed = |names: &[&str]| {
            AllowedIdentities::CommonNames(names.iter().map(|n| n.to_string()).collect())
        };
        assert_eq!(allowed(&["member-1", "member-2"]).check(&der), Ok(()));
        let refused = allowed(&["Member-1"]).check(&der).unwrap_err();
        assert!(refused.contains("common name \"member-1\""), "{refused}");
        assert_eq!(AllowedIdentities::Any.check(b"not even DER"), Ok(()));
    }

    #[test]
    fn hostnames_match_as_go_verify_hostname() {
        let der = certificate(
            "ignored.example.com",
            &["127.0.0.1", "*.peers.example.com", "::1"],
        );
        let valid = |host: &str| {
            AllowedIdentities::Hostnames(vec![host.to_string()])
                .check(&der)
                .is_ok()
        };
        assert!(valid("127.0.0.1"));
        assert!(valid("::1"));
        assert!(valid("[::1]"));
        assert!(valid("m1.peers.example.com"));
        assert!(valid("M1.Peers.Example.com."));
        assert!(!valid("a.m1.peers.example.com"));
        assert!(!valid("peers.example.com"));
        assert!(!valid("127.0.0.2"));
        // The common name is not a host name.
        assert!(!valid("ignored.example.com"));
    }

    #[test]
    fn peers_this_member_connects_to_must_carry_an_allowed_name_too() {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issue = |common_name: &str| {
            let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, common_name);
            let key = rcgen::KeyPair::generate().unwrap();
            params.signed_by(&key, &ca, &ca_key).unwrap().der().clone()
        };
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = CheckedServerVerifier::new(
            Arc::new(roots),
            provider.clone(),
            AllowedIdentities::CommonNames(vec!["member".into()]),
        )
        .unwrap();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let verify = |der: &CertificateDer<'_>| {
            verifier.verify_server_cert(der, &[], &name, &[], UnixTime::now())
        };
        assert!(verify(&issue("member")).is_ok());
        let refused = verify(&issue("stranger")).unwrap_err();
        let reason = rejection_reason(&std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            refused,
        ));
        assert!(
            reason
                .starts_with("client certificate authentication failed: common name \"stranger\""),
            "{reason}"
        );
        // Auto TLS: anything goes.
        let unverified = CheckedServerVerifier::unverified(provider);
        let self_signed = rcgen::CertificateParams::new(vec!["x".to_string()])
            .unwrap()
            .self_signed(&rcgen::KeyPair::generate().unwrap())
            .unwrap();
        assert!(unverified
            .verify_server_cert(self_signed.der(), &[], &name, &[], UnixTime::now())
            .is_ok());
    }
    /// A resolver with a fixed table: `localhost` is 127.0.0.1 both ways, every other name
    /// and address is unknown.
    struct Table;

    impl Resolver for Table {
        fn names_of(&self, ip: std::net::IpAddr) -> Result<Vec<String>, String> {
            if ip == std::net::IpAddr::from([127, 0, 0, 1]) {
                Ok(vec!["localhost.".to_string()])
            } else {
                Err(format!("lookup {ip}: no such host"))
            }
        }

        fn addresses_of(&self, name: &str) -> Result<Vec<std::net::IpAddr>, String> {
            match name {
                "localhost" => Ok(vec![[127, 0, 0, 1].into()]),
                "elsewhere.example" => Ok(vec![[10, 1, 1, 1].into()]),
                _ => Err(format!("lookup {name}: no such host")),
            }
        }
    }

    #[test]
    fn a_peer_certificate_must_name_the_address_it_connects_from() {
        let loopback: std::net::IpAddr = [127, 0, 0, 1].into();
        let check = |names: &[&str], remote: std::net::IpAddr| {
            check_client_address(&certificate("peer", names), remote, &Table)
        };
        // No subject alternative names: nothing to check, as in etcd.
        assert_eq!(check(&[], loopback), Ok(()));
        assert_eq!(check(&["127.0.0.1"], loopback), Ok(()));
        assert_eq!(check(&["10.9.9.9", "127.0.0.1"], loopback), Ok(()));
        // An IPv4 peer on a dual-stack listener shows as an IPv4-mapped IPv6 address.
        let mapped: std::net::IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(check(&["127.0.0.1"], mapped), Ok(()));
        assert_eq!(
            check(&["10.9.9.9", "10.9.9.8"], loopback),
            Err("x509: certificate is valid for 10.9.9.9, 10.9.9.8, not 127.0.0.1".into())
        );
        // DNS names: the reverse lookup, then the forward lookups.
        assert_eq!(check(&["localhost"], loopback), Ok(()));
        assert_eq!(check(&["10.9.9.9", "localhost"], loopback), Ok(()));
        assert_eq!(check(&["*.localdomain", "localhost"], loopback), Ok(()));
        assert_eq!(
            check(&["peer.invalid"], loopback),
            Err(
                "tls: \"127.0.0.1\" does not match any of DNSNames [\"peer.invalid\"] \
                 (lookup peer.invalid: no such host)"
                    .into()
            )
        );
        // A name that resolves, but elsewhere: the reverse lookup's error is what is left.
        assert_eq!(
            check(&["10.9.9.9", "elsewhere.example"], [10, 2, 2, 2].into()),
            Err(
                "tls: \"10.2.2.2\" does not match any of DNSNames [\"elsewhere.example\"] \
                 (lookup 10.2.2.2: no such host)"
                    .into()
            )
        );
        assert_eq!(check(&["elsewhere.example"], [10, 1, 1, 1].into()), Ok(()));
    }

    #[test]
    fn the_system_resolver_knows_localhost() {
        let loopback: std::net::IpAddr = [127, 0, 0, 1].into();
        let addresses = SystemResolver.addresses_of("localhost").unwrap();
        assert!(addresses.contains(&loopback), "{addresses:?}");
        assert_eq!(
            check_client_address(
                &certificate("peer", &["localhost"]),
                loopback,
                &SystemResolver
            ),
            Ok(())
        );
    }
}
