//! HTTPS on the ingress: the operator's certificate and key (PEM), served with rustls.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::load::{read_key_file, LoadError, NodeConfig};

/// Why the ingress's TLS files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("{path}: {reason}")]
    Pem { path: String, reason: String },
    #[error("ingress TLS: {0}")]
    Config(#[from] rustls::Error),
}

/// The acceptor for `config`'s ingress, or `None` when it serves plain HTTP. The key file must
/// be readable by its owner only, like the PSK.
pub fn acceptor(config: &NodeConfig) -> Result<Option<TlsAcceptor>, TlsError> {
    let ingress = &config.settings.ingress;
    let (Some(cert_file), Some(key_file)) = (&ingress.tls_cert_file, &ingress.tls_key_file) else {
        return Ok(None);
    };
    let cert_path = config.dir.join(cert_file);
    let key_path = config.dir.join(key_file);
    let chain = certificates(&cert_path)?;
    let key_text = read_key_file(&key_path)?;
    let key = PrivateKeyDer::from_pem_slice(key_text.as_bytes()).map_err(|e| TlsError::Pem {
        path: key_path.display().to_string(),
        reason: format!("no private key in PEM form: {e}"),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(server))))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |reason: String| TlsError::Pem {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read(path).map_err(|e| pem(format!("cannot read: {e}")))?;
    let chain = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(pem("holds no certificate".into()));
    }
    Ok(chain)
}
