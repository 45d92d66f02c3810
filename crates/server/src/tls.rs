//! TLS: the configured certificate, or a self-signed one generated into the data directory on
//! first start (its certificate is what clients pass with `--server-ca`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::ServerConfig;
use crate::error::ServerError;

/// The certificate and key files in use, and whether they were generated just now.
#[derive(Debug)]
pub struct TlsFiles {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// True when this start generated them.
    pub generated: bool,
}

/// Finds or generates the certificate.
pub fn ensure_files(config: &ServerConfig) -> Result<TlsFiles, ServerError> {
    if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
        return Ok(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            generated: false,
        });
    }
    if config.tls_cert.is_some() != config.tls_key.is_some() {
        return Err(ServerError::Config(
            "tls_cert and tls_key go together".into(),
        ));
    }
    let dir = config.data_dir.join("tls");
    let cert = dir.join("server.crt");
    let key = dir.join("server.key");
    if cert.exists() && key.exists() {
        return Ok(TlsFiles {
            cert,
            key,
            generated: false,
        });
    }
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    names.extend(config.tls_names.iter().cloned());
    let ip = config.listen.ip();
    if !ip.is_unspecified() && !names.contains(&ip.to_string()) {
        names.push(ip.to_string());
    }
    let generated = rcgen::generate_simple_self_signed(names)
        .map_err(|e| ServerError::Tls(format!("generating a certificate: {e}")))?;
    create_dir(&dir)?;
    write_new(
        &key,
        generated.signing_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_new(&cert, generated.cert.pem().as_bytes(), 0o644)?;
    Ok(TlsFiles {
        cert,
        key,
        generated: true,
    })
}

/// The rustls configuration of `files`.
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ServerError::Tls(format!("{}: {e}", files.cert.display())))?;
    if certs.is_empty() {
        return Err(ServerError::Tls(format!(
            "{}: no certificate",
            files.cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| ServerError::Tls(format!("{}: {e}", files.key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn create_dir(dir: &Path) -> Result<(), ServerError> {
    std::fs::create_dir_all(dir).map_err(|source| ServerError::Io {
        context: format!("creating {}", dir.display()),
        source,
    })
}

/// Writes a file crash-safely: a temporary name, fsync, rename, directory fsync.
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), ServerError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| ServerError::Io {
        context: format!("writing {}", path.display()),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    Ok(())
}
