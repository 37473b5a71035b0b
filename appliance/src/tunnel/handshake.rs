//! The tunnel's authentication handshake, spoken inside TLS right after the TLS handshake:
//!
//! ```text
//! client                                   appliance
//!   ClientHello { version, identity, purpose }  ->
//!                                          <-  ServerChallenge { nonce, totp_required, cert_sha256 }
//!   ClientProof { nonce, signature, totp }      ->
//!                                          <-  ServerVerdict (accepted | refused { reason })
//! ```
//!
//! The signature is ed25519 over [`transcript`]: a domain tag, the identity, the 32-byte nonce,
//! SHA-256 of the canonical purpose and SHA-256 of the appliance certificate the client saw. So a
//! proof is bound to one challenge (nonces are single use and expire), one purpose and one
//! appliance: it cannot be replayed on another connection or relayed through a different TLS
//! endpoint. Messages are a 4-byte big-endian length then JSON, at most [`MAX_MESSAGE`] bytes;
//! a larger declared length is refused before anything is read. After an accepted `Session`
//! handshake the stream carries raw Modbus TCP bytes; after a `Request` handshake the grants
//! service continues with the same framing ([`write_message`], [`read_message`]), and after a
//! `Status` handshake the appliance writes status frames in that framing until the grant ends.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::stores::AuthError;

/// The handshake protocol version.
pub const PROTOCOL_VERSION: u32 = 1;
/// The largest handshake message, in bytes (the length prefix excluded).
pub const MAX_MESSAGE: usize = 64 * 1024;
/// How long the appliance waits for each client message.
pub const MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a challenge stays answerable.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(30);
/// The domain tag at the start of every signed transcript.
const DOMAIN: &[u8] = b"otgate tunnel auth v1\0";

/// What the client wants the authenticated stream for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Purpose {
    /// An exchange with the grants service (a new request, its status, ...); the body is the
    /// grants service's own JSON, signed as part of the transcript.
    Request(serde_json::Value),
    /// A broker session for a grant on one asset; afterwards the stream carries Modbus TCP.
    Session {
        /// The grant (e.g. `G-0001`).
        grant_id: String,
        /// The asset (e.g. `line3-plc`).
        asset: String,
    },
    /// The status of one of the client's own grants; afterwards the appliance writes
    /// length-prefixed JSON status frames (now, at each warning, at the end) until the grant is
    /// final. `otgate connect` keeps one open beside its raw Modbus sessions.
    Status {
        /// The grant (e.g. `G-0001`).
        grant_id: String,
    },
}

impl Purpose {
    /// A short description for the journal: `request` or `session:G-0001:line3-plc`.
    pub fn describe(&self) -> String {
        match self {
            Purpose::Request(_) => "request".to_owned(),
            Purpose::Session { grant_id, asset } => format!("session:{grant_id}:{asset}"),
            Purpose::Status { grant_id } => format!("status:{grant_id}"),
        }
    }

    /// SHA-256 of the purpose's canonical JSON (object keys sorted at every level).
    pub fn digest(&self) -> [u8; 32] {
        let value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        let mut canonical = Vec::new();
        write_canonical(&value, &mut canonical);
        Sha256::digest(&canonical).into()
    }
}

fn write_canonical(value: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(serde_json::to_string(key).unwrap_or_default().as_bytes());
                out.push(b':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out);
                }
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

/// First message, client to appliance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientHello {
    /// [`PROTOCOL_VERSION`].
    pub version: u32,
    /// The IT identity claimed (its id in the policy).
    pub identity: String,
    /// What the stream is for.
    pub purpose: Purpose,
}

/// The appliance's challenge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerChallenge {
    /// 32 random bytes, hex; single use.
    pub nonce: String,
    /// Whether the proof must carry a TOTP code.
    pub totp_required: bool,
    /// The appliance certificate's SHA-256 (hex), as the appliance sees it.
    pub cert_sha256: String,
}

/// The client's proof.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientProof {
    /// The nonce being answered (hex).
    pub nonce: String,
    /// ed25519 signature over [`transcript`] (hex, 64 bytes).
    pub signature: String,
    /// The TOTP code, when the challenge asked for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp: Option<String>,
}

/// The appliance's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerVerdict {
    /// Authenticated; the stream now serves the purpose.
    Accepted {
        /// The identity, as the appliance recorded it.
        identity: String,
    },
    /// Refused; the connection closes.
    Refused {
        /// The snake_case reason (as journaled).
        reason: String,
        /// A sentence for the user.
        message: String,
    },
}

/// The bytes an IT client signs.
pub fn transcript(
    identity: &str,
    nonce: &[u8; 32],
    purpose: &Purpose,
    cert_sha256: &[u8; 32],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(DOMAIN.len() + 4 + identity.len() + 96);
    out.extend_from_slice(DOMAIN);
    out.extend_from_slice(
        &u32::try_from(identity.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(identity.as_bytes());
    out.extend_from_slice(nonce);
    out.extend_from_slice(&purpose.digest());
    out.extend_from_slice(cert_sha256);
    out
}

/// Write one length-prefixed JSON message and flush.
pub async fn write_message<W, T>(writer: &mut W, message: &T) -> Result<(), AuthError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let body = serde_json::to_vec(message).map_err(|e| AuthError::Malformed {
        reason: e.to_string(),
    })?;
    if body.len() > MAX_MESSAGE {
        return Err(AuthError::MessageTooLarge {
            len: body.len(),
            max: MAX_MESSAGE,
        });
    }
    let len = u32::try_from(body.len()).map_err(|_| AuthError::MessageTooLarge {
        len: body.len(),
        max: MAX_MESSAGE,
    })?;
    writer
        .write_all(&len.to_be_bytes())
        .await
        .map_err(AuthError::Io)?;
    writer.write_all(&body).await.map_err(AuthError::Io)?;
    writer.flush().await.map_err(AuthError::Io)
}

/// Read one length-prefixed JSON message; the declared length is checked against
/// [`MAX_MESSAGE`] before the body is read. No timeout here (see [`read_message_within`]).
pub async fn read_message<R, T>(reader: &mut R) -> Result<T, AuthError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut prefix = [0u8; 4];
    reader
        .read_exact(&mut prefix)
        .await
        .map_err(AuthError::Io)?;
    let len = usize::try_from(u32::from_be_bytes(prefix)).unwrap_or(usize::MAX);
    if len > MAX_MESSAGE {
        return Err(AuthError::MessageTooLarge {
            len,
            max: MAX_MESSAGE,
        });
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).await.map_err(AuthError::Io)?;
    parse_body(&body)
}

/// Parse a message body (the JSON after the length prefix).
fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, AuthError> {
    serde_json::from_slice(body).map_err(|e| AuthError::Malformed {
        reason: e.to_string(),
    })
}

/// Decode one whole frame from the start of `bytes`: the message and the bytes it used.
/// `Ok(None)` when more bytes are needed. Same rules as [`read_message`]; never panics.
pub fn decode_frame<T: DeserializeOwned>(bytes: &[u8]) -> Result<Option<(T, usize)>, AuthError> {
    let Some((prefix, rest)) = bytes.split_first_chunk::<4>() else {
        return Ok(None);
    };
    let len = usize::try_from(u32::from_be_bytes(*prefix)).unwrap_or(usize::MAX);
    if len > MAX_MESSAGE {
        return Err(AuthError::MessageTooLarge {
            len,
            max: MAX_MESSAGE,
        });
    }
    let Some(body) = rest.get(..len) else {
        return Ok(None);
    };
    Ok(Some((parse_body(body)?, 4 + len)))
}

/// Entry points for `cargo fuzz` (`appliance/fuzz/fuzz_targets/tunnel_handshake.rs`).
#[doc(hidden)]
pub mod fuzzing {
    use super::{
        decode_frame, transcript, ClientHello, ClientProof, ServerChallenge, ServerVerdict,
    };

    /// Decode `data` as every handshake message; whatever decodes is also hashed into a transcript.
    pub fn handshake_message(data: &[u8]) {
        if let Ok(Some((hello, used))) = decode_frame::<ClientHello>(data) {
            let _ = transcript(&hello.identity, &[0; 32], &hello.purpose, &[0; 32]);
            assert!(used <= data.len());
        }
        let _ = decode_frame::<ClientProof>(data);
        let _ = decode_frame::<ServerChallenge>(data);
        let _ = decode_frame::<ServerVerdict>(data);
    }
}

/// [`read_message`] bounded by `timeout`; `stage` names the awaited message in the error.
pub async fn read_message_within<R, T>(
    reader: &mut R,
    timeout: Duration,
    stage: &'static str,
) -> Result<T, AuthError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    tokio::time::timeout(timeout, read_message(reader))
        .await
        .map_err(|_| AuthError::Timeout { stage })?
}

/// Decode a 32-byte hex field.
pub(crate) fn hex32(text: &str, field: &str) -> Result<[u8; 32], AuthError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).map_err(|_| AuthError::Malformed {
        reason: format!("`{field}` is not 64 hex digits"),
    })?;
    Ok(out)
}

/// Decode a 64-byte hex field.
pub(crate) fn hex64(text: &str, field: &str) -> Result<[u8; 64], AuthError> {
    let mut out = [0u8; 64];
    hex::decode_to_slice(text, &mut out).map_err(|_| AuthError::Malformed {
        reason: format!("`{field}` is not 128 hex digits"),
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn purpose_digest_ignores_key_order() {
        let a = Purpose::Request(
            serde_json::json!({"target": "line3-plc", "ops": ["read"], "n": {"b": 1, "a": 2}}),
        );
        let b: Purpose = serde_json::from_str(
            r#"{"kind":"request","detail":{"n":{"a":2,"b":1},"ops":["read"],"target":"line3-plc"}}"#,
        )
        .unwrap();
        assert_eq!(a.digest(), b.digest());
        let c = Purpose::Request(serde_json::json!({"target": "line1-plc", "ops": ["read"]}));
        assert_ne!(a.digest(), c.digest());
        let s = Purpose::Session {
            grant_id: "G-0001".into(),
            asset: "line3-plc".into(),
        };
        assert_eq!(s.describe(), "session:G-0001:line3-plc");
    }

    #[tokio::test]
    async fn frames_round_trip_and_oversize_is_refused_unread() {
        let hello = ClientHello {
            version: 1,
            identity: "alice".into(),
            purpose: Purpose::Request(serde_json::json!({})),
        };
        let mut buf = Vec::new();
        write_message(&mut buf, &hello).await.unwrap();
        let back: ClientHello = read_message(&mut buf.as_slice()).await.unwrap();
        assert_eq!(back, hello);

        let mut huge = ((MAX_MESSAGE as u32) + 1).to_be_bytes().to_vec();
        huge.extend_from_slice(b"{}");
        let err = read_message::<_, ClientHello>(&mut huge.as_slice())
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::MessageTooLarge { len, .. } if len == MAX_MESSAGE + 1));

        let big = ClientHello {
            version: 1,
            identity: "x".repeat(MAX_MESSAGE),
            purpose: Purpose::Request(serde_json::Value::Null),
        };
        assert!(matches!(
            write_message(&mut Vec::new(), &big).await,
            Err(AuthError::MessageTooLarge { .. })
        ));
    }

    #[tokio::test]
    async fn unknown_fields_and_truncation_are_malformed() {
        let body =
            br#"{"version":1,"identity":"a","purpose":{"kind":"request","detail":null},"extra":1}"#;
        let mut framed = (body.len() as u32).to_be_bytes().to_vec();
        framed.extend_from_slice(body);
        assert!(matches!(
            read_message::<_, ClientHello>(&mut framed.as_slice()).await,
            Err(AuthError::Malformed { .. })
        ));
        let truncated = &framed[..framed.len() - 3];
        assert!(matches!(
            read_message::<_, ClientHello>(&mut &truncated[..]).await,
            Err(AuthError::Io(_))
        ));
    }

    #[test]
    fn decode_frame_needs_whole_frames() {
        let hello = ClientHello {
            version: 1,
            identity: "alice".into(),
            purpose: Purpose::Request(serde_json::json!({})),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut buf = Vec::new();
        rt.block_on(write_message(&mut buf, &hello)).unwrap();
        for cut in 0..buf.len() {
            assert!(
                matches!(decode_frame::<ClientHello>(&buf[..cut]), Ok(None)),
                "cut {cut}"
            );
        }
        buf.extend_from_slice(b"trailing");
        let (back, used) = decode_frame::<ClientHello>(&buf).unwrap().unwrap();
        assert_eq!((back, used), (hello, buf.len() - 8));
    }

    proptest! {
        #[test]
        fn no_bytes_make_decode_frame_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            fuzzing::handshake_message(&bytes);
        }

        #[test]
        fn no_bytes_make_the_reader_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                let _ = read_message::<_, ClientHello>(&mut bytes.as_slice()).await;
                let _ = read_message::<_, ClientProof>(&mut bytes.as_slice()).await;
                let _ = read_message::<_, ServerVerdict>(&mut bytes.as_slice()).await;
            });
        }

        #[test]
        fn framed_json_of_any_length_prefix_never_panics(len in any::<u32>(), body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let mut framed = len.to_be_bytes().to_vec();
            framed.extend_from_slice(&body);
            rt.block_on(async {
                let _ = read_message::<_, ServerChallenge>(&mut framed.as_slice()).await;
            });
        }
    }
}
