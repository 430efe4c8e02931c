//! rustls server configuration from PEM files, advertising h2 and http/1.1 over ALPN.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sluice_config::TlsConfig;
use tokio_rustls::TlsAcceptor;

use crate::ServerError;

pub fn acceptor(config: &TlsConfig) -> Result<TlsAcceptor, ServerError> {
    let certs = load_certs(&config.cert)?;
    let key = PrivateKeyDer::from_pem_file(&config.key)
        .map_err(|e| ServerError::Tls(format!("reading private key {}: {e}", config.key.display())))?;
    from_der(certs, key)
}

/// Builds an acceptor from certificates already in memory (tests, generated demo certs).
pub fn from_der(certs: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<TlsAcceptor, ServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServerError::Tls(format!("certificate and key do not form a valid pair: {e}")))?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ServerError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| ServerError::Tls(format!("reading certificate {}: {e}", path.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServerError::Tls(format!("parsing certificate {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ServerError::Tls(format!("{} holds no certificate", path.display())));
    }
    Ok(certs)
}
