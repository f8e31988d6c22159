//! TLS for the API and the gateway: the server's certificate and key from the config, and
//! `noid-server tls-init`, which makes a CA and a server certificate for a single host.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use serde::Deserialize;
use thiserror::Error;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// `[tls]` in the config: when present, both the gRPC API and the gateway speak TLS only.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The server's certificate chain (PEM), its own certificate first.
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

#[derive(Debug, Error)]
pub enum TlsSetupError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{0} holds no certificate")]
    NoCertificate(String),
    #[error("the certificate {cert} and key {key} do not go together: {reason}")]
    Mismatch {
        cert: String,
        key: String,
        reason: String,
    },
    #[error("{0} exists already: remove the old files first, or point [tls] at them")]
    Exists(String),
    #[error("cannot make the certificates: {0}")]
    Generate(String),
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
}

/// The protocols each listener offers: gRPC is HTTP/2 only; the gateway also serves
/// HTTP/1.1 (browsers, curl, and WebSockets).
pub enum Alpn {
    Grpc,
    Gateway,
}

/// The acceptor for `files`, checked now so that a bad pair stops the server at its start.
pub fn acceptor(files: &TlsFiles, alpn: Alpn) -> Result<TlsAcceptor, TlsSetupError> {
    let read_err = |path: &Path, reason: String| TlsSetupError::Read {
        path: path.display().to_string(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| read_err(&files.cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| read_err(&files.cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsSetupError::NoCertificate(
            files.cert.display().to_string(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| read_err(&files.key, e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsSetupError::Mismatch {
            cert: files.cert.display().to_string(),
            key: files.key.display().to_string(),
            reason: e.to_string(),
        })?;
    config.alpn_protocols = match alpn {
        Alpn::Grpc => vec![b"h2".to_vec()],
        Alpn::Gateway => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    };
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// What `tls-init` made.
pub struct Made {
    pub ca: PathBuf,
    pub files: TlsFiles,
    /// SHA-256 of the server certificate, for clients that pin it.
    pub fingerprint: String,
}

/// Makes a CA and a server certificate it signs, for the host `names` (DNS names or IP
/// addresses), in `dir`: `ca.pem`, `server.pem`, `server-key.pem` (the key readable by its
/// owner alone; the CA's key is not kept, so nothing else can be signed with it). Refuses to
/// replace existing files.
pub fn init(dir: &Path, names: &[String]) -> Result<Made, TlsSetupError> {
    let ca_path = dir.join("ca.pem");
    let cert_path = dir.join("server.pem");
    let key_path = dir.join("server-key.pem");
    for p in [&ca_path, &cert_path, &key_path] {
        if p.exists() {
            return Err(TlsSetupError::Exists(p.display().to_string()));
        }
    }
    let generate = |e: rcgen::Error| TlsSetupError::Generate(e.to_string());
    let ca_key = KeyPair::generate().map_err(generate)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(generate)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "noid CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key).map_err(generate)?;

    let server_key = KeyPair::generate().map_err(generate)?;
    let mut params = CertificateParams::new(names.to_vec()).map_err(generate)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "noid-server");
    let server = params
        .signed_by(&server_key, &ca, &ca_key)
        .map_err(generate)?;

    let key_pem = server_key.serialize_pem();
    write_all_or_none(&[
        (&ca_path, ca.pem().as_bytes(), 0o644),
        (&cert_path, server.pem().as_bytes(), 0o644),
        (&key_path, key_pem.as_bytes(), 0o600),
    ])?;
    Ok(Made {
        ca: ca_path,
        files: TlsFiles {
            cert: cert_path,
            key: key_path,
        },
        fingerprint: noid::tls::fingerprint(server.der()),
    })
}

/// Writes every file, or (when one fails) removes those it wrote and says why: a second run
/// then finds none of them in its way.
fn write_all_or_none(files: &[(&Path, &[u8], u32)]) -> Result<(), TlsSetupError> {
    for (i, (path, bytes, mode)) in files.iter().enumerate() {
        if let Err(e) = write_new(path, bytes, *mode) {
            for (written, _, _) in &files[..i] {
                let _ = std::fs::remove_file(written);
            }
            return Err(e);
        }
    }
    Ok(())
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsSetupError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |e: std::io::Error| TlsSetupError::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_makes_a_pair_the_acceptor_takes_and_keeps_the_key_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let made = init(dir.path(), &["localhost".into(), "127.0.0.1".into()]).unwrap();
        assert!(acceptor(&made.files, Alpn::Grpc).is_ok());
        let mode = std::fs::metadata(&made.files.key)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(made.fingerprint.len(), 32 * 3 - 1);
        // A second run does not replace the first's files.
        assert!(matches!(
            init(dir.path(), &["localhost".into()]),
            Err(TlsSetupError::Exists(_))
        ));
    }

    #[test]
    fn a_failed_write_leaves_none_of_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.pem"), dir.path().join("b.pem"));
        std::fs::write(dir.path().join("file"), b"").unwrap();
        // The last one cannot be made: its directory is a file.
        let bad = dir.path().join("file/c.pem");
        let got = write_all_or_none(&[(&a, b"a", 0o644), (&b, b"b", 0o600), (&bad, b"c", 0o600)]);
        assert!(matches!(got, Err(TlsSetupError::Write { .. })), "{got:?}");
        assert!(!a.exists() && !b.exists());
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let first = init(a.path(), &["localhost".into()]).unwrap();
        let second = init(b.path(), &["localhost".into()]).unwrap();
        let mixed = TlsFiles {
            cert: first.files.cert,
            key: second.files.key,
        };
        assert!(matches!(
            acceptor(&mixed, Alpn::Gateway),
            Err(TlsSetupError::Mismatch { .. })
        ));
        let missing = TlsFiles {
            cert: a.path().join("nope.pem"),
            key: a.path().join("nope-key.pem"),
        };
        assert!(matches!(
            acceptor(&missing, Alpn::Grpc),
            Err(TlsSetupError::Read { .. })
        ));
    }
}
