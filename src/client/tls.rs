//! TLS for `https://` and `wss://` brokers (a broker behind a TLS proxy): rustls with the
//! webpki root certificates, plus the PEM certificates in `CLAUDEMESH_CA_FILE` when set (a
//! private CA, or a self-signed proxy). One client config per process.

use rustls::pki_types::{pem::PemObject, CertificateDer};
use std::sync::{Arc, OnceLock};

#[derive(Debug, Clone, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read CLAUDEMESH_CA_FILE {0}: {1}")]
    CaFile(String, String),
    #[error("CLAUDEMESH_CA_FILE {0} holds no usable certificate")]
    NoCert(String),
}

static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, TlsError>> = OnceLock::new();

/// The shared client config (built on first use).
pub fn client_config() -> Result<Arc<rustls::ClientConfig>, TlsError> {
    CONFIG.get_or_init(build).clone()
}

fn build() -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = std::env::var_os("CLAUDEMESH_CA_FILE").filter(|p| !p.is_empty()) {
        let shown = path.to_string_lossy().to_string();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&path)
            .map_err(|e| TlsError::CaFile(shown.clone(), e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| TlsError::CaFile(shown.clone(), e.to_string()))?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(TlsError::NoCert(shown));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::CaFile("(protocol versions)".into(), e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}
