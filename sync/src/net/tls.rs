//! TLS material for bundle transport: HQ's self-signed certificate (rcgen), the server config,
//! and the client config that trusts exactly one pinned certificate (SHA-256 of its DER).
//!
//! Pinning replaces the web PKI on purpose: a plant trusts HQ's one certificate, installed out of
//! band, not any CA. The pinned verifier still checks the handshake signature with the pinned
//! certificate's key, so a server must hold the key, not just present the certificate. The
//! only crypto provider is ring.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};
use sha2::{Digest, Sha256};

/// The largest PEM file read.
pub const MAX_PEM_BYTES: u64 = 64 * 1024;

/// Problems with certificates, keys and TLS configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// Reading a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A PEM file holds no certificate or no private key.
    #[error("{path}: no {what} found in PEM")]
    MissingPem {
        /// The file.
        path: String,
        /// "certificate" or "private key".
        what: &'static str,
    },
    /// A pin is not `sha256:` followed by 64 hex digits.
    #[error("pin {text:?} is not sha256:<64 hex digits>")]
    BadPin {
        /// The text given.
        text: String,
    },
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// SHA-256 of a certificate's DER encoding: the one certificate the puller trusts.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CertPin(pub [u8; 32]);

impl CertPin {
    /// The pin of a DER certificate.
    pub fn of_der(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }

    /// The pin of the first certificate in a PEM file.
    pub fn of_pem_file(path: &Path) -> Result<Self, TlsError> {
        let certs = load_certs(path)?;
        let first = certs.first().ok_or_else(|| TlsError::MissingPem {
            path: path.display().to_string(),
            what: "certificate",
        })?;
        Ok(Self::of_der(first.as_ref()))
    }
}

impl fmt::Display for CertPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for CertPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertPin({self})")
    }
}

impl FromStr for CertPin {
    type Err = TlsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.strip_prefix("sha256:").unwrap_or(s);
        let mut pin = [0u8; 32];
        hex::decode_to_slice(digits, &mut pin).map_err(|_| TlsError::BadPin {
            text: s.chars().take(80).collect(),
        })?;
        Ok(Self(pin))
    }
}

/// A freshly generated self-signed certificate and its key, both PEM.
#[derive(Clone)]
pub struct GeneratedCert {
    /// The certificate (public).
    pub cert_pem: String,
    /// The private key (secret; write it with mode 0600).
    pub key_pem: String,
    /// The certificate's pin.
    pub pin: CertPin,
}

impl fmt::Debug for GeneratedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedCert")
            .field("pin", &self.pin)
            .finish_non_exhaustive()
    }
}

/// Generate a self-signed certificate for HQ's bundle server, valid for `names` (DNS names or
/// IP addresses).
pub fn generate_cert(names: &[String]) -> Result<GeneratedCert, TlsError> {
    let certified = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    Ok(GeneratedCert {
        cert_pem: certified.cert.pem(),
        key_pem: certified.signing_key.serialize_pem(),
        pin: CertPin::of_der(certified.cert.der().as_ref()),
    })
}

fn read_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    let shown = path.display().to_string();
    let io = |source| TlsError::Io {
        path: shown.clone(),
        source,
    };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > MAX_PEM_BYTES {
        return Err(TlsError::Io {
            path: shown.clone(),
            source: std::io::Error::other(format!(
                "{size} bytes is over the PEM limit of {MAX_PEM_BYTES}"
            )),
        });
    }
    std::fs::read(path).map_err(io)
}

/// Every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_pem(path)?;
    let certs = rustls_pemfile::certs(&mut bytes.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Io {
            path: path.display().to_string(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::MissingPem {
            path: path.display().to_string(),
            what: "certificate",
        });
    }
    Ok(certs)
}

/// The private key in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read_pem(path)?;
    rustls_pemfile::private_key(&mut bytes.as_slice())
        .map_err(|source| TlsError::Io {
            path: path.display().to_string(),
            source,
        })?
        .ok_or_else(|| TlsError::MissingPem {
            path: path.display().to_string(),
            what: "private key",
        })
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server side: HQ's certificate chain and key.
pub fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}

/// The client side: trusts only the certificate whose SHA-256 is `pin`. The returned handle
/// tells, after a failed handshake, which certificate the server presented instead.
pub fn pinned_client_config(pin: CertPin) -> Result<(Arc<ClientConfig>, PinnedVerifier), TlsError> {
    let verifier = PinnedVerifier {
        pin,
        provider: provider(),
        offered: Arc::new(Mutex::new(None)),
    };
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier.clone()))
        .with_no_client_auth();
    Ok((Arc::new(config), verifier))
}

/// A certificate verifier that accepts exactly one certificate, by SHA-256 of its DER. The
/// server name is not checked: the pin names the server.
#[derive(Clone)]
pub struct PinnedVerifier {
    pin: CertPin,
    provider: Arc<CryptoProvider>,
    /// The pin of the certificate the server presented, kept for the error message.
    offered: Arc<Mutex<Option<CertPin>>>,
}

impl fmt::Debug for PinnedVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinnedVerifier")
            .field("pin", &self.pin)
            .finish_non_exhaustive()
    }
}

impl PinnedVerifier {
    /// The pin of the certificate the server presented, once a handshake got that far.
    pub fn offered(&self) -> Option<CertPin> {
        self.offered.lock().ok().and_then(|guard| *guard)
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let offered = CertPin::of_der(end_entity.as_ref());
        if let Ok(mut guard) = self.offered.lock() {
            *guard = Some(offered);
        }
        if offered == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
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
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_parse_with_or_without_prefix() {
        let pin = CertPin([0xab; 32]);
        assert_eq!(pin.to_string().parse::<CertPin>().unwrap(), pin);
        assert_eq!(hex::encode([0xab; 32]).parse::<CertPin>().unwrap(), pin);
        assert!("sha256:abcd".parse::<CertPin>().is_err());
    }

    #[test]
    fn generated_cert_pin_matches_its_pem() {
        let dir = tempfile::tempdir().unwrap();
        let made = generate_cert(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        let path = dir.path().join("hq.crt");
        std::fs::write(&path, &made.cert_pem).unwrap();
        assert_eq!(CertPin::of_pem_file(&path).unwrap(), made.pin);
        let key_path = dir.path().join("hq.key");
        std::fs::write(&key_path, &made.key_pem).unwrap();
        server_config(load_certs(&path).unwrap(), load_key(&key_path).unwrap()).unwrap();
    }
}
