//! TLS to a noid server: which certificates a client trusts (the system's CAs, a CA file, or
//! one pinned certificate), and the connector that speaks HTTP/2 over rustls for tonic.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{self, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{self, ClientConfig, DigitallySignedStruct, RootCertStore};

/// Whom a client believes about the server's identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Trust {
    /// The host's CA certificates (a server with a certificate from a public CA).
    #[default]
    System,
    /// The CA certificates in this PEM file (`noid-server tls-init` writes one).
    CaFile(PathBuf),
    /// Exactly the server certificate with this SHA-256 fingerprint, whoever signed it.
    Fingerprint(String),
}

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read the CA file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("the CA file {0} holds no certificate")]
    EmptyCaFile(String),
    #[error("the host has no CA certificates to verify the server with: give a CA file or a fingerprint")]
    NoSystemCas,
    #[error("{0:?} is not a SHA-256 fingerprint (64 hex digits, colons allowed)")]
    BadFingerprint(String),
}

/// The SHA-256 fingerprint of a DER certificate, as `noid-server tls-init` prints it.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A fingerprint as written by people (any case, with or without colons) as 32 bytes.
fn parse_fingerprint(text: &str) -> Result<Vec<u8>, TlsError> {
    let hex_digits: String = text
        .trim()
        .trim_start_matches("sha256:")
        .chars()
        .filter(|c| *c != ':')
        .collect();
    match hex::decode(&hex_digits) {
        Ok(bytes) if bytes.len() == 32 => Ok(bytes),
        _ => Err(TlsError::BadFingerprint(text.to_string())),
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(crypto::ring::default_provider())
}

/// The rustls client configuration for `trust`, offering HTTP/2 only (gRPC's protocol).
pub fn client_config(trust: &Trust) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions");
    let mut config = match trust {
        Trust::System => {
            let mut roots = RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(TlsError::NoSystemCas);
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::CaFile(path) => builder
            .with_root_certificates(ca_roots(path)?)
            .with_no_client_auth(),
        Trust::Fingerprint(text) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                sha256: parse_fingerprint(text)?,
                provider: provider(),
            }))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

fn ca_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let shown = path.display().to_string();
    let bad = |reason: String| TlsError::CaFile {
        path: shown.clone(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::EmptyCaFile(shown));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    Ok(roots)
}

/// Accepts exactly one server certificate, by fingerprint; the handshake's signatures are
/// still checked against it, so only the holder of its key can pass.
#[derive(Debug)]
struct Pinned {
    sha256: Vec<u8>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if Sha256::digest(end_entity.as_ref()).as_slice() == self.sha256.as_slice() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the server's certificate has fingerprint {}, not the pinned one",
                fingerprint(end_entity.as_ref())
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(
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
        crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The host part of a URL's authority as TLS names it (IPv6 without its brackets).
pub(crate) fn server_name(host: &str) -> Option<ServerName<'static>> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_string()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_read_as_people_write_them() {
        let fp = fingerprint(b"certificate");
        assert_eq!(parse_fingerprint(&fp).unwrap().len(), 32);
        let plain = fp.replace(':', "").to_lowercase();
        assert_eq!(
            parse_fingerprint(&plain).unwrap(),
            parse_fingerprint(&fp).unwrap()
        );
        assert_eq!(
            parse_fingerprint(&format!("sha256:{plain}")).unwrap(),
            parse_fingerprint(&fp).unwrap()
        );
        for bad in ["", "abc", "zz", &plain[..40]] {
            assert!(parse_fingerprint(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = std::env::temp_dir().join(format!("noid-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert!(matches!(
            client_config(&Trust::CaFile(empty)),
            Err(TlsError::EmptyCaFile(_))
        ));
        assert!(matches!(
            client_config(&Trust::CaFile(dir.join("missing.pem"))),
            Err(TlsError::CaFile { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ipv6_hosts_lose_their_brackets() {
        assert!(server_name("[::1]").is_some());
        assert!(server_name("localhost").is_some());
        assert!(server_name("127.0.0.1").is_some());
    }
}
