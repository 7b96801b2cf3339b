//! Self-signed certificates for etcd's `--auto-tls` and `--peer-auto-tls`.
//!
//! As etcd does (its `transport.SelfCert`): the certificate and key go to `cert.pem` and
//! `key.pem` in `<data-dir>/fixtures/client` or `<data-dir>/fixtures/peer` (the directory made
//! with mode 0700, the key written with mode 0600); a pair already there is used as it is,
//! even when it has expired; a new certificate names organization `etcd`, has a random 128-bit
//! serial number, is valid from now for `--self-signed-cert-validity` years of 365 days, allows
//! digital signatures and key encipherment for TLS servers, and names every listen URL's host
//! as an IP address or DNS subject alternative name. etcd's key is ECDSA P-521; rustls' ring
//! provider cannot sign with P-521, so Keel's is ECDSA P-384 (and a P-521 pair left by etcd
//! in the directory is refused at startup).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Where a self-signed certificate lives and what it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelfSignedCert {
    /// `<data-dir>/fixtures/client` or `<data-dir>/fixtures/peer`.
    pub dir: PathBuf,
    /// The listen URLs' hosts (`127.0.0.1`, `localhost`, `[::1]`), ports left out.
    pub hosts: Vec<String>,
    /// `--self-signed-cert-validity`: years of 365 days.
    pub validity_years: u32,
}

/// Why a self-signed certificate could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SelfSignedError {
    /// `--self-signed-cert-validity` is 0 (etcd's message).
    #[error("selfSignedCertValidity is invalid,it should be greater than 0")]
    Validity,
    /// A file or the directory could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// rcgen could not make the certificate (a host that is no valid DNS name, for example).
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

impl SelfSignedCert {
    /// `<dir>/cert.pem`.
    pub fn cert(&self) -> PathBuf {
        absolute(&self.dir.join("cert.pem"))
    }

    /// `<dir>/key.pem`.
    pub fn key(&self) -> PathBuf {
        absolute(&self.dir.join("key.pem"))
    }

    /// Makes the certificate and key unless both files exist already.
    pub fn ensure(&self) -> Result<(), SelfSignedError> {
        if self.validity_years == 0 {
            return Err(SelfSignedError::Validity);
        }
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SelfSignedError::Io { path, source }
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(io(&self.dir))?;
        let (cert_path, key_path) = (self.cert(), self.key());
        if cert_path.exists() && key_path.exists() {
            return Ok(());
        }
        let mut params = rcgen::CertificateParams::new(self.hosts.clone())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "etcd");
        let mut serial: [u8; 16] = rand::random();
        // A positive number below 2^127, never starting with a zero byte.
        serial[0] = (serial[0] & 0x7f).max(1);
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now;
        params.not_after = now + time::Duration::days(365 * i64::from(self.validity_years));
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyEncipherment,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        tracing::warn!(
            certificate_validity_bound_not_after = %params.not_after,
            "automatically generate certificates"
        );
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)?;
        let certificate = params.self_signed(&key)?;
        std::fs::write(&cert_path, certificate.pem()).map_err(io(&cert_path))?;
        tracing::info!(path = %cert_path.display(), "created cert file");
        let mut key_file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&key_path)
            .map_err(io(&key_path))?;
        key_file
            .write_all(key.serialize_pem().as_bytes())
            .and_then(|()| key_file.sync_all())
            .map_err(io(&key_path))?;
        tracing::info!(path = %key_path.display(), "created key file");
        Ok(())
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_a_pair_once_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let spec = SelfSignedCert {
            dir: dir.path().join("fixtures").join("client"),
            hosts: vec!["127.0.0.1".into(), "localhost".into(), "::1".into()],
            validity_years: 2,
        };
        spec.ensure().unwrap();
        let pem = std::fs::read(spec.cert()).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode(&spec.key()), 0o600);
        assert_eq!(mode(&spec.dir), 0o700);
        let der = rustls::pki_types::CertificateDer::from_pem_slice(&pem).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(
            cert.subject().iter_organization().next().unwrap().as_str(),
            Ok("etcd")
        );
        assert!(cert.subject().iter_common_name().next().is_none());
        let days = (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp())
            / 86_400;
        assert_eq!(days, 730);
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(san.value.general_names.len(), 3);
        // The pair serves: rustls loads it.
        let files = crate::net::TlsFiles::new(spec.cert(), spec.key());
        crate::net::server_config_from_files(&files).unwrap();
        // A second start keeps the pair.
        spec.ensure().unwrap();
        assert_eq!(std::fs::read(spec.cert()).unwrap(), pem);

        let zero = SelfSignedCert {
            validity_years: 0,
            ..spec
        };
        assert_eq!(
            zero.ensure().unwrap_err().to_string(),
            "selfSignedCertValidity is invalid,it should be greater than 0"
        );
    }

    use rustls::pki_types::pem::PemObject;
}
