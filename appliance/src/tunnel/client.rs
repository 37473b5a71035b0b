//! The IT side of the tunnel, used by `otgate request` and `otgate connect`: connect over TCP,
//! run TLS 1.3 trusting only the pinned appliance certificate, answer the appliance's challenge
//! with the identity's ed25519 key (and a TOTP code when asked), and return the stream.
//!
//! The client signs the certificate fingerprint it actually saw, so a proof made for one
//! appliance is worthless to any other endpoint. Every step has a timeout. This module keeps no
//! state and writes no files; key and profile files are [`super::profile`].

use std::net::IpAddr;
use std::time::Duration;

use ed25519_dalek::{Signer, SigningKey};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::handshake::{
    self, read_message_within, transcript, write_message, ClientHello, ClientProof, Purpose,
    ServerChallenge, ServerVerdict, PROTOCOL_VERSION,
};
use super::tls::{self, Pin, TlsError};
use crate::stores::AuthError;

/// How long each network step (connect, TLS, each handshake message) may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// The authenticated client stream.
pub type TunnelStream = TlsStream<TcpStream>;

/// Who the client is: its policy id, its ed25519 key, and a TOTP code if it has one at hand.
pub struct ClientIdentity {
    /// The IT identity id, as in the policy.
    pub id: String,
    /// The identity's private key.
    pub key: SigningKey,
    /// A TOTP code for when the appliance asks for one.
    pub totp: Option<String>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("id", &self.id)
            .field(
                "public_key",
                &hex::encode(self.key.verifying_key().as_bytes()),
            )
            .field("totp", &self.totp.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// Why the client could not open an authenticated tunnel.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The TCP connection failed.
    #[error("could not connect to the appliance at {address}: {source}")]
    Connect {
        /// The address dialled.
        address: String,
        /// The error.
        source: std::io::Error,
    },
    /// The appliance's certificate is not the pinned one.
    #[error(
        "the appliance at {address} presented a certificate that does not match the pin {pin}"
    )]
    PinMismatch {
        /// The address dialled.
        address: String,
        /// The pin expected.
        pin: String,
    },
    /// The TLS handshake failed for another reason.
    #[error("TLS with the appliance at {address} failed: {source}")]
    Tls {
        /// The address dialled.
        address: String,
        /// The error.
        source: std::io::Error,
    },
    /// The TLS configuration could not be built.
    #[error(transparent)]
    Config(#[from] TlsError),
    /// The appliance asks for a TOTP code and none was given.
    #[error("the appliance asks for a TOTP code for this (give --totp CODE)")]
    TotpRequired,
    /// The appliance refused the authentication.
    #[error("the appliance refused: {message} ({reason})")]
    Refused {
        /// The snake_case reason, as journaled.
        reason: String,
        /// The appliance's sentence.
        message: String,
    },
    /// The appliance's challenge was bound to a different certificate than the one seen.
    #[error(
        "the appliance's challenge names certificate {claimed}, not the one this connection saw"
    )]
    CertificateMismatch {
        /// The fingerprint the challenge named.
        claimed: String,
    },
    /// The exchange broke down (malformed message, timeout, closed connection).
    #[error("tunnel handshake: {0}")]
    Handshake(#[from] AuthError),
    /// A step did not complete in time.
    #[error("timed out during {stage}")]
    Timeout {
        /// The step.
        stage: &'static str,
    },
}

fn server_name(address: &str) -> ServerName<'static> {
    let host = address.rsplit_once(':').map(|(h, _)| h).unwrap_or(address);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return ServerName::IpAddress(ip.into());
    }
    ServerName::try_from(host.to_owned())
        .unwrap_or_else(|_| ServerName::IpAddress(IpAddr::from([127, 0, 0, 1]).into()))
}

/// Open an authenticated tunnel to the appliance at `address` (`host:port`) for `purpose`.
pub async fn connect(
    address: &str,
    pin: &Pin,
    identity: &ClientIdentity,
    purpose: Purpose,
) -> Result<TunnelStream, ClientError> {
    let config = tls::client_config(pin)?;
    let tcp = tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(address))
        .await
        .map_err(|_| ClientError::Timeout { stage: "connect" })?
        .map_err(|source| ClientError::Connect {
            address: address.to_owned(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let connector = TlsConnector::from(config);
    let mut stream =
        tokio::time::timeout(STEP_TIMEOUT, connector.connect(server_name(address), tcp))
            .await
            .map_err(|_| ClientError::Timeout {
                stage: "TLS handshake",
            })?
            .map_err(|source| classify_tls_error(address, pin, source))?;

    // The certificate this connection saw; the pin verifier already checked it equals the pin.
    let seen = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(|c| tls::fingerprint(c))
        .ok_or_else(|| ClientError::PinMismatch {
            address: address.to_owned(),
            pin: pin.to_string(),
        })?;

    let hello = ClientHello {
        version: PROTOCOL_VERSION,
        identity: identity.id.clone(),
        purpose: purpose.clone(),
    };
    write_message(&mut stream, &hello).await?;
    // The appliance answers the hello with a challenge, or refuses straight away.
    let challenge = match read_message_within(&mut stream, STEP_TIMEOUT, "challenge").await? {
        AfterHello::Challenge(c) => c,
        AfterHello::Verdict(ServerVerdict::Refused { reason, message }) => {
            return Err(ClientError::Refused { reason, message })
        }
        AfterHello::Verdict(ServerVerdict::Accepted { .. }) => {
            return Err(ClientError::Handshake(AuthError::Malformed {
                reason: "the appliance accepted before challenging".into(),
            }))
        }
    };
    if handshake::hex32(&challenge.cert_sha256, "cert_sha256")? != seen {
        return Err(ClientError::CertificateMismatch {
            claimed: challenge.cert_sha256,
        });
    }
    let nonce = handshake::hex32(&challenge.nonce, "nonce")?;
    let signature = identity
        .key
        .sign(&transcript(&identity.id, &nonce, &purpose, &seen));
    let proof = ClientProof {
        nonce: challenge.nonce,
        signature: hex::encode(signature.to_bytes()),
        totp: if challenge.totp_required {
            identity.totp.clone()
        } else {
            None
        },
    };
    write_message(&mut stream, &proof).await?;
    let verdict: ServerVerdict = read_message_within(&mut stream, STEP_TIMEOUT, "verdict").await?;
    match verdict {
        ServerVerdict::Accepted { .. } => Ok(stream),
        ServerVerdict::Refused { reason, .. }
            if reason == "totp_required" && identity.totp.is_none() =>
        {
            Err(ClientError::TotpRequired)
        }
        ServerVerdict::Refused { reason, message } => Err(ClientError::Refused { reason, message }),
    }
}

/// What may follow the hello.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum AfterHello {
    /// The challenge.
    Challenge(ServerChallenge),
    /// An immediate refusal (unknown identity, expired, rate limited, ...).
    Verdict(ServerVerdict),
}

fn classify_tls_error(address: &str, pin: &Pin, source: std::io::Error) -> ClientError {
    let is_pin = source
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|e| matches!(e, rustls::Error::InvalidCertificate(_)));
    if is_pin {
        ClientError::PinMismatch {
            address: address.to_owned(),
            pin: pin.to_string(),
        }
    } else {
        ClientError::Tls {
            address: address.to_owned(),
            source,
        }
    }
}
