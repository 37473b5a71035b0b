//! TLS on the IT side: the appliance certificate (made at `otgate init` with rcgen), the server
//! configuration, and the client configuration that pins the appliance certificate.
//!
//! TLS 1.3 only, rustls with the ring provider, ALPN `otgate/1`. Clients trust exactly one
//! certificate: the appliance's, pinned by its SHA-256 fingerprint (given directly as
//! `sha256:HEX`, or computed from the certificate file). There is no CA and no name check; the
//! pin is the trust. The handshake signatures are still verified against the pinned
//! certificate's key, so a peer holding only the certificate cannot impersonate the appliance.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring as ring_provider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::datadir::DataDir;

/// The ALPN protocol id of the tunnel.
pub const ALPN: &[u8] = b"otgate/1";

/// A fault in TLS material or configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file exists and would be overwritten.
    #[error("{path}: exists already")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// A PEM file holds no usable certificate or key.
    #[error("{path}: {reason}")]
    BadPem {
        /// The file.
        path: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },
    /// A pin is neither `sha256:` plus 64 hex digits nor a readable certificate file.
    #[error("not a certificate pin: `{given}` (expected sha256:HEX or a PEM certificate file)")]
    BadPin {
        /// The text given.
        given: String,
    },
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The SHA-256 fingerprint of a DER certificate.
pub fn fingerprint(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// A fingerprint as `sha256:HEX`.
pub fn format_fingerprint(fp: &[u8; 32]) -> String {
    format!("sha256:{}", hex::encode(fp))
}

/// What a client trusts: the SHA-256 fingerprint of the appliance certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pin {
    /// SHA-256 of the certificate's DER bytes.
    sha256: [u8; 32],
}

impl Pin {
    /// A pin on a known fingerprint.
    pub fn from_fingerprint(sha256: [u8; 32]) -> Self {
        Self { sha256 }
    }

    /// A pin on the (first) certificate in a PEM file.
    pub fn from_cert_file(path: &Path) -> Result<Self, TlsError> {
        let cert = read_certs(path)?
            .into_iter()
            .next()
            .ok_or_else(|| TlsError::BadPem {
                path: path.to_owned(),
                reason: "no certificate in the file".into(),
            })?;
        Ok(Self {
            sha256: fingerprint(&cert),
        })
    }

    /// `sha256:HEX` (colons between bytes allowed), or else a PEM certificate file's path.
    pub fn parse(given: &str) -> Result<Self, TlsError> {
        let bad = || TlsError::BadPin {
            given: given.chars().take(200).collect(),
        };
        if let Some(hex_part) = given.strip_prefix("sha256:") {
            let digits: String = hex_part.chars().filter(|c| *c != ':').collect();
            let mut sha256 = [0u8; 32];
            hex::decode_to_slice(digits, &mut sha256).map_err(|_| bad())?;
            return Ok(Self { sha256 });
        }
        let path = Path::new(given);
        if path.is_file() {
            return Self::from_cert_file(path);
        }
        Err(bad())
    }

    /// The pinned fingerprint.
    pub fn sha256(&self) -> [u8; 32] {
        self.sha256
    }
}

impl std::fmt::Display for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&format_fingerprint(&self.sha256))
    }
}

/// Where the appliance certificate lives in a data dir.
pub fn cert_path(data_dir: &DataDir) -> PathBuf {
    data_dir.tls_dir().join("appliance.crt")
}

/// Where the appliance's TLS private key lives in a data dir (mode 0600).
pub fn key_path(data_dir: &DataDir) -> PathBuf {
    data_dir.tls_dir().join("appliance.key")
}

/// The subject alternative names of a new certificate: `localhost`, `127.0.0.1`, then `extra`.
pub fn subject_alt_names(extra: &[String]) -> Vec<String> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    for name in extra {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}

/// Make a new self-signed appliance certificate (ECDSA P-256, valid 10 years) for `names`, and
/// write it and its key to the data dir. Refuses to overwrite unless `force`. Returns the
/// certificate's fingerprint.
pub fn create_appliance_cert(
    data_dir: &DataDir,
    names: &[String],
    force: bool,
) -> Result<[u8; 32], TlsError> {
    let (cert_file, key_file) = (cert_path(data_dir), key_path(data_dir));
    if !force {
        for path in [&cert_file, &key_file] {
            if path.exists() {
                return Err(TlsError::Exists { path: path.clone() });
            }
        }
    }
    let key_pair = rcgen::KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "otgate appliance");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "otgate");
    // rcgen takes `time` instants; build "now" from the epoch so this crate needs no `time` dep.
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let yesterday = since_epoch.saturating_sub(std::time::Duration::from_secs(24 * 3600));
    params.not_before = rcgen::date_time_ymd(1970, 1, 1) + yesterday;
    params.not_after = params.not_before + std::time::Duration::from_secs(10 * 366 * 24 * 3600);
    let cert = params
        .self_signed(&key_pair)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    let dir = data_dir.tls_dir();
    fs::create_dir_all(&dir).map_err(|source| TlsError::Io {
        path: dir.clone(),
        source,
    })?;
    write_file(&key_file, key_pair.serialize_pem().as_bytes(), 0o600)?;
    write_file(&cert_file, cert.pem().as_bytes(), 0o644)?;
    Ok(fingerprint(cert.der()))
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    let io = |source| TlsError::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = fs::read(path).map_err(|source| TlsError::Io {
        path: path.to_owned(),
        source,
    })?;
    rustls_pemfile::certs(&mut bytes.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            path: path.to_owned(),
            reason: e.to_string(),
        })
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = fs::read(path).map_err(|source| TlsError::Io {
        path: path.to_owned(),
        source,
    })?;
    rustls_pemfile::private_key(&mut bytes.as_slice())
        .map_err(|e| TlsError::BadPem {
            path: path.to_owned(),
            reason: e.to_string(),
        })?
        .ok_or_else(|| TlsError::BadPem {
            path: path.to_owned(),
            reason: "no private key in the file".into(),
        })
}

/// The appliance's TLS identity as loaded from a data dir.
#[derive(Debug, Clone)]
pub struct ApplianceTls {
    /// The server configuration (TLS 1.3, ring, ALPN `otgate/1`).
    pub config: Arc<ServerConfig>,
    /// SHA-256 of the certificate, bound into every tunnel authentication.
    pub fingerprint: [u8; 32],
}

/// Load the appliance certificate and key from `data_dir` into a server configuration.
pub fn load_server(data_dir: &DataDir) -> Result<ApplianceTls, TlsError> {
    server_from_files(&cert_path(data_dir), &key_path(data_dir))
}

/// A server configuration from a PEM certificate file and a PEM key file.
pub fn server_from_files(cert_file: &Path, key_file: &Path) -> Result<ApplianceTls, TlsError> {
    let certs = read_certs(cert_file)?;
    let first = certs.first().ok_or_else(|| TlsError::BadPem {
        path: cert_file.to_owned(),
        reason: "no certificate in the file".into(),
    })?;
    let fingerprint = fingerprint(first);
    let key = read_key(key_file)?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(ring_provider::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(ApplianceTls {
        config: Arc::new(config),
        fingerprint,
    })
}

/// A client configuration that trusts only the certificate with `pin`'s fingerprint.
pub fn client_config(pin: &Pin) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = Arc::new(ring_provider::default_provider());
    let verifier = PinnedServer {
        pin: *pin,
        algorithms: provider.signature_verification_algorithms,
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// Accepts exactly the pinned certificate and checks the handshake signature with its key.
#[derive(Debug)]
struct PinnedServer {
    /// The certificate fingerprint trusted.
    pin: Pin,
    /// ring's signature algorithms, for the handshake signature.
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if fingerprint(end_entity) == self.pin.sha256 {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Only TLS 1.3 is offered; a TLS 1.2 signature is never acceptable here.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_is_made_once_and_pins_parse() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        let names = subject_alt_names(&["gw.plant-a.example".into(), "localhost".into()]);
        assert_eq!(names, ["localhost", "127.0.0.1", "gw.plant-a.example"]);
        let fp = create_appliance_cert(&data, &names, false).unwrap();
        assert!(matches!(
            create_appliance_cert(&data, &names, false),
            Err(TlsError::Exists { .. })
        ));
        let from_file = Pin::from_cert_file(&cert_path(&data)).unwrap();
        assert_eq!(from_file.sha256(), fp);
        let text = format_fingerprint(&fp);
        assert_eq!(Pin::parse(&text).unwrap(), from_file);
        assert_eq!(
            Pin::parse(cert_path(&data).to_str().unwrap()).unwrap(),
            from_file
        );
        assert!(Pin::parse("sha256:abcd").is_err());
        assert!(Pin::parse("/no/such/file").is_err());
        let tls = load_server(&data).unwrap();
        assert_eq!(tls.fingerprint, fp);
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(key_path(&data)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
