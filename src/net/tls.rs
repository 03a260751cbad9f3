//! TLS configuration shared by every protocol edge: the process-wide crypto provider,
//! client configs (public roots plus a queue's own CA), server configs from PEM files, and
//! the self-signed certificate generated on first start (see the README, `tls.cert`).
//!
//! There is deliberately no "skip verification" option: a self-signed upstream is trusted by
//! adding its certificate as an extra CA.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read PEM from {path}: {source}")]
    Pem {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("invalid extra CA certificate PEM: {0}")]
    CaPem(rustls_pki_types::pem::Error),
    #[error("the extra CA PEM contains no certificate")]
    NoCaCertificate,
    #[error("extra CA certificate rejected: {0}")]
    CaRejected(rustls::Error),
    #[error("{0} contains no certificate")]
    NoCertificate(PathBuf),
    #[error("certificate and key do not form a usable server identity: {0}")]
    Identity(rustls::Error),
    #[error(
        "only one of certificate {cert} and key {key} exists; provide both or remove the other \
         to have a new self-signed pair generated"
    )]
    HalfPair { cert: PathBuf, key: PathBuf },
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Installs ring as the process-wide rustls provider. Safe to call any number of times:
/// a second install fails harmlessly because one is already in place.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client config trusting the public web roots plus `extra_ca_pem` (PEM text with one or
/// more certificates, e.g. a queue's self-signed upstream).
pub fn client_config(extra_ca_pem: Option<&str>) -> Result<Arc<ClientConfig>, TlsError> {
    install_crypto_provider();
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(pem) = extra_ca_pem {
        let mut added = 0usize;
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots
                .add(cert.map_err(TlsError::CaPem)?)
                .map_err(TlsError::CaRejected)?;
            added += 1;
        }
        // An empty or mistyped file would otherwise silently fall back to public roots only.
        if added == 0 {
            return Err(TlsError::NoCaCertificate);
        }
    }
    let config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A server config from a PEM certificate chain and a PEM private key.
pub fn server_config(cert_path: &Path, key_path: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    install_crypto_provider();
    let pem_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Pem { path, source }
    };
    let chain = CertificateDer::pem_file_iter(cert_path)
        .map_err(pem_err(cert_path))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err(cert_path))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert_path.to_path_buf()));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(pem_err(key_path))?;
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(TlsError::Identity)?;
    Ok(Arc::new(config))
}

/// Makes sure a certificate/key pair exists. When both files are missing, writes a new
/// self-signed certificate for `localhost`, `hostname` and 127.0.0.1 and returns `true`
/// (the caller logs that it generated one). Returns `false` when both already exist.
pub fn ensure_certificate(
    cert_path: &Path,
    key_path: &Path,
    hostname: &str,
) -> Result<bool, TlsError> {
    match (cert_path.exists(), key_path.exists()) {
        (true, true) => return Ok(false),
        (false, false) => {}
        _ => {
            return Err(TlsError::HalfPair {
                cert: cert_path.to_path_buf(),
                key: key_path.to_path_buf(),
            });
        }
    }
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let hostname = hostname.trim();
    if !hostname.is_empty() && !names.iter().any(|n| n.eq_ignore_ascii_case(hostname)) {
        names.push(hostname.to_string());
    }
    let certified = rcgen::generate_simple_self_signed(names)?;
    // Key first: if writing the certificate fails afterwards, the half pair is reported on
    // the next start instead of being silently replaced.
    write_file(
        key_path,
        certified.signing_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_file(cert_path, certified.cert.pem().as_bytes(), 0o644)?;
    Ok(true)
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let err = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(err)?;
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        // Set at creation so the private key is never readable by others, not even briefly.
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(err)?;
    file.write_all(contents).map_err(err)?;
    file.sync_all().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(dir: &tempfile::TempDir) -> (PathBuf, PathBuf) {
        (
            dir.path().join("certs/cert.pem"),
            dir.path().join("certs/key.pem"),
        )
    }

    #[test]
    fn provider_install_is_idempotent() {
        install_crypto_provider();
        install_crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }

    #[test]
    fn generates_once_then_reuses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = paths(&dir);
        assert!(ensure_certificate(&cert, &key, "mail.example.org").expect("generate"));
        let first = fs::read(&cert).expect("cert");
        assert!(!ensure_certificate(&cert, &key, "mail.example.org").expect("reuse"));
        assert_eq!(fs::read(&cert).expect("cert"), first);
        server_config(&cert, &key).expect("generated pair loads as server config");
    }

    #[cfg(unix)]
    #[test]
    fn generated_key_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = paths(&dir);
        ensure_certificate(&cert, &key, "localhost").expect("generate");
        let mode = fs::metadata(&key).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn half_pair_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = paths(&dir);
        ensure_certificate(&cert, &key, "localhost").expect("generate");
        fs::remove_file(&key).expect("remove key");
        let err = ensure_certificate(&cert, &key, "localhost").expect_err("half pair");
        assert!(matches!(err, TlsError::HalfPair { .. }), "{err}");
        assert!(!key.exists(), "must not regenerate over a half pair");
    }

    /// A full in-memory handshake: the generated certificate, given as extra CA, verifies
    /// under each of its names, and a name it does not carry fails.
    #[tokio::test]
    async fn generated_cert_verifies_by_name_and_ip() {
        use rustls_pki_types::ServerName;
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = paths(&dir);
        ensure_certificate(&cert, &key, "gw.example.org").expect("generate");
        let pem = fs::read_to_string(&cert).expect("cert");
        let client = client_config(Some(&pem)).expect("client config");
        let server = server_config(&cert, &key).expect("server config");
        for (name, ok) in [
            ("localhost", true),
            ("gw.example.org", true),
            ("127.0.0.1", true),
            ("other.example.org", false),
        ] {
            let (a, b) = tokio::io::duplex(64 * 1024);
            let acceptor = tokio_rustls::TlsAcceptor::from(server.clone());
            let connector = tokio_rustls::TlsConnector::from(client.clone());
            let server_name = ServerName::try_from(name.to_string()).expect("name");
            let (c, _s) = tokio::join!(connector.connect(server_name, a), acceptor.accept(b));
            assert_eq!(c.is_ok(), ok, "{name}: {:?}", c.err());
        }
    }

    #[test]
    fn client_config_rejects_empty_or_broken_ca() {
        assert!(matches!(
            client_config(Some("not a certificate")),
            Err(TlsError::NoCaCertificate)
        ));
        let broken = "-----BEGIN CERTIFICATE-----\nAAAA\n";
        assert!(client_config(Some(broken)).is_err());
        client_config(None).expect("public roots only");
    }

    #[test]
    fn server_config_reports_missing_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = paths(&dir);
        let err = server_config(&cert, &key).expect_err("missing");
        assert!(err.to_string().contains("cert.pem"), "{err}");
    }
}
