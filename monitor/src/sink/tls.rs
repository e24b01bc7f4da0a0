//! The rustls client configuration for `syslog+tls://` outputs (RFC 5425):
//! which CAs to trust and, for receivers that demand it, our certificate.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use super::TlsConfig;
use crate::config::ConfigError;

/// Trusted when `[tls] ca` is not set: Debian's bundle of public CAs.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

pub fn client_config(tls: &TlsConfig) -> Result<Arc<ClientConfig>, ConfigError> {
    let ca = tls
        .ca
        .as_deref()
        .unwrap_or_else(|| Path::new(SYSTEM_CA_BUNDLE));
    let mut roots = RootCertStore::empty();
    for cert in read_certs(ca, "[tls] ca")? {
        roots.add(cert).map_err(|e| {
            ConfigError::new(format!(
                "[tls] ca {}: unusable certificate: {e}",
                ca.display()
            ))
        })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new(format!("TLS setup failed: {e}")))?
        .with_root_certificates(roots);
    let config =
        match (&tls.cert, &tls.key) {
            (Some(cert), Some(key)) => {
                let chain = read_certs(cert, "[tls] cert")?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    ConfigError::new(format!(
                        "[tls] key {}: no usable PEM private key: {e}",
                        key.display()
                    ))
                })?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    ConfigError::new(format!(
                        "[tls] cert and key do not make a client identity: {e}"
                    ))
                })?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => return Err(ConfigError::new(
                "[tls] cert and key go together: set both for client authentication, or neither",
            )),
        };
    Ok(Arc::new(config))
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            ConfigError::new(format!(
                "{what} {}: cannot read PEM certificates: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(ConfigError::new(format!(
            "{what} {}: no PEM certificate in the file",
            path.display()
        )));
    }
    Ok(certs)
}
