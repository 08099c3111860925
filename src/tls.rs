//! TLS for the mqtts listener (rustls): the certificate chain and key from PEM files,
//! optional client certificates checked against a CA, TLS 1.2 and 1.3 only.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;
use crate::locks::{read, write};

/// A TLS listener's certificates, read again from their files on reload; connections
/// already open keep theirs.
pub struct Certificates {
    config: TlsConfig,
    /// The application protocols offered by ALPN, most wanted first.
    alpn: Vec<Vec<u8>>,
    acceptor: RwLock<TlsAcceptor>,
}

impl Certificates {
    /// The certificates of `config`, offering the protocols `alpn` (none for MQTT).
    pub fn load(config: &TlsConfig, alpn: &[&[u8]]) -> Result<Certificates, TlsError> {
        let alpn: Vec<Vec<u8>> = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        Ok(Certificates {
            acceptor: RwLock::new(acceptor(config, &alpn)?),
            config: config.clone(),
            alpn,
        })
    }

    /// What new connections are accepted with.
    pub fn acceptor(&self) -> TlsAcceptor {
        read(&self.acceptor).clone()
    }

    /// Reads the files again; on an error the certificates in use stay.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = acceptor(&self.config, &self.alpn)?;
        *write(&self.acceptor) = fresh;
        Ok(())
    }

    /// A client is the user its certificate names.
    pub fn use_identity_as_username(&self) -> bool {
        self.config.use_identity_as_username
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate chain {}: {reason}", path.display())]
    Certificate { path: PathBuf, reason: String },
    #[error("cannot read the private key {}: {reason}", path.display())]
    Key { path: PathBuf, reason: String },
    #[error("cannot read the client CA file {}: {reason}", path.display())]
    ClientCa { path: PathBuf, reason: String },
    #[error("require_certificate needs a client_ca to check client certificates against")]
    NoClientCa,
    #[error("use_identity_as_username needs require_certificate")]
    IdentityWithoutCertificate,
    #[error("the key {} cannot serve the certificate {}: {reason}", key.display(), cert.display())]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

/// The TLS side of a listener, built from `tls`; every file problem is an error naming
/// the file.
fn acceptor(tls: &TlsConfig, alpn: &[Vec<u8>]) -> Result<TlsAcceptor, TlsError> {
    if tls.use_identity_as_username && !tls.require_certificate {
        return Err(TlsError::IdentityWithoutCertificate);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = certificates(&tls.cert).map_err(|reason| TlsError::Certificate {
        path: tls.cert.clone(),
        reason,
    })?;
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(|e| TlsError::Key {
        path: tls.key.clone(),
        reason: e.to_string(),
    })?;
    let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| TlsError::Mismatch {
            cert: tls.cert.clone(),
            key: tls.key.clone(),
            reason: e.to_string(),
        })?;
    let builder = match &tls.client_ca {
        None if tls.require_certificate => return Err(TlsError::NoClientCa),
        None => builder.with_no_client_auth(),
        Some(path) => {
            let ca_error = |reason: String| TlsError::ClientCa {
                path: path.clone(),
                reason,
            };
            let mut roots = RootCertStore::empty();
            for cert in certificates(path).map_err(ca_error)? {
                roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if tls.require_certificate {
                verifier.build()
            } else {
                verifier.allow_unauthenticated().build()
            };
            builder.with_client_cert_verifier(verifier.map_err(|e| ca_error(e.to_string()))?)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Mismatch {
            cert: tls.cert.clone(),
            key: tls.key.clone(),
            reason: e.to_string(),
        })?;
    config.alpn_protocols = alpn.to_vec();
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Every certificate in a PEM file; an error if it has none.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| e.to_string())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no certificate in it".into());
    }
    Ok(certs)
}

/// The common name of the certificate a client presented, if any.
pub fn peer_common_name(connection: &rustls::ServerConnection) -> Option<String> {
    let cert = connection.peer_certificates()?.first()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    let name = parsed.subject().iter_common_name().next()?.as_str().ok()?;
    Some(name.to_owned())
}
