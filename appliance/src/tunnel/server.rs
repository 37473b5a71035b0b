//! The appliance side of the tunnel: accept TLS on the IT listener, then authenticate the client
//! with the challenge handshake of [`super::handshake`], journal the outcome, and hand the
//! authenticated stream and its [`Purpose`] to the caller (the daemon routes `Request` to grants
//! and `Session` to a broker).
//!
//! Who may connect comes from an [`IdentityDirectory`] (the active policy: public keys, expiry,
//! and whether a purpose needs MFA); TOTP codes are checked against the IT store, once each. Only
//! [`handshake`] makes an [`AuthenticatedPeer`]. Every outcome is recorded through an
//! [`AuthRecorder`] (the journal) before it takes effect; failures count toward per-source and
//! per-identity backoff. Every read has a timeout and every message a size bound; nothing a
//! client sends can panic the listener. This module does not decide grants or forward bytes.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, VerifyingKey};
use rand::RngCore;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::handshake::{
    self, read_message_within, transcript, write_message, ClientHello, ClientProof, Purpose,
    ServerChallenge, ServerVerdict, CHALLENGE_TTL, MESSAGE_TIMEOUT, PROTOCOL_VERSION,
};
use super::tls::ApplianceTls;
use crate::clock::SharedClock;
use crate::journal::event::AuthEvent;
use crate::stores::it::ItStore;
use crate::stores::limit::RateLimiter;
pub use crate::stores::record::{AuthRecorder, MemoryRecorder};
use crate::stores::{AuthError, Zone};

/// How long the TLS handshake may take.
pub const TLS_TIMEOUT: Duration = Duration::from_secs(10);
/// Outstanding challenges kept at most (older ones are dropped first).
pub const MAX_OUTSTANDING_CHALLENGES: usize = 65_536;

/// An IT identity as the policy lists it: the key it must prove, and when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItIdentityKey {
    /// The ed25519 public key.
    pub public_key: VerifyingKey,
    /// When the account expires (vendors), if ever.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Who may connect, as the active policy says. The daemon implements it over the active policy
/// (so a newly activated bundle applies to the next handshake).
pub trait IdentityDirectory: Send + Sync {
    /// The IT identity `id`, if the policy names it.
    fn it_identity(&self, id: &str) -> Option<ItIdentityKey>;
    /// Whether `identity` must give a TOTP code for `purpose`.
    fn mfa_required(&self, identity: &str, purpose: &Purpose) -> bool;
}

/// A fixed directory: for tests and tools.
#[derive(Debug, Clone, Default)]
pub struct StaticDirectory {
    /// Identities by id.
    pub identities: HashMap<String, ItIdentityKey>,
    /// Whether every purpose requires TOTP.
    pub mfa_always: bool,
}

impl IdentityDirectory for StaticDirectory {
    fn it_identity(&self, id: &str) -> Option<ItIdentityKey> {
        self.identities.get(id).cloned()
    }
    fn mfa_required(&self, _identity: &str, _purpose: &Purpose) -> bool {
        self.mfa_always
    }
}

/// A client that has proved its identity. Only [`handshake`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedPeer {
    /// The IT identity.
    identity: String,
    /// The peer address.
    source: SocketAddr,
    /// Whether a TOTP code was verified.
    totp_verified: bool,
    /// When.
    at: DateTime<Utc>,
}

impl AuthenticatedPeer {
    /// The IT identity (its policy id).
    pub fn identity(&self) -> &str {
        &self.identity
    }
    /// The peer address.
    pub fn source(&self) -> SocketAddr {
        self.source
    }
    /// Whether a single-use TOTP code was verified in this handshake (MFA).
    pub fn totp_verified(&self) -> bool {
        self.totp_verified
    }
    /// When the handshake completed.
    pub fn authenticated_at(&self) -> DateTime<Utc> {
        self.at
    }
}

/// Challenges issued and not yet answered: single use, short-lived, bounded.
#[derive(Debug, Default)]
struct NonceBook {
    /// nonce -> monotonic instant it was issued.
    issued: Mutex<HashMap<[u8; 32], std::time::Instant>>,
}

impl NonceBook {
    fn issue(&self, now: std::time::Instant, ttl: Duration) -> [u8; 32] {
        let mut nonce = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        if let Ok(mut issued) = self.issued.lock() {
            if issued.len() >= MAX_OUTSTANDING_CHALLENGES {
                issued.retain(|_, at| now.saturating_duration_since(*at) < ttl);
            }
            if issued.len() >= MAX_OUTSTANDING_CHALLENGES {
                if let Some(oldest) = issued.iter().min_by_key(|(_, at)| **at).map(|(n, _)| *n) {
                    issued.remove(&oldest);
                }
            }
            issued.insert(nonce, now);
        }
        nonce
    }

    /// Take `nonce` out of the book: `Some(true)` if it was live, `Some(false)` if it expired,
    /// `None` if it was never issued or already used.
    fn consume(&self, nonce: &[u8; 32], now: std::time::Instant, ttl: Duration) -> Option<bool> {
        let issued_at = self.issued.lock().ok()?.remove(nonce)?;
        Some(now.saturating_duration_since(issued_at) <= ttl)
    }
}

/// Everything the appliance needs to authenticate IT clients.
pub struct Authenticator {
    /// Public keys, expiry and MFA requirements (the active policy).
    directory: Arc<dyn IdentityDirectory>,
    /// TOTP enrolments and per-identity failure counters.
    it_store: ItStore,
    /// The journal.
    recorder: Arc<dyn AuthRecorder>,
    /// Wall clock for expiry and TOTP; monotonic for challenges and backoff.
    clock: SharedClock,
    /// SHA-256 of the appliance certificate, bound into every proof.
    cert_sha256: [u8; 32],
    /// Outstanding challenges.
    nonces: NonceBook,
    /// Per-source failure backoff (in memory).
    sources: Mutex<RateLimiter>,
    /// Wait for each client message at most this long.
    message_timeout: Duration,
    /// A challenge is answerable this long.
    challenge_ttl: Duration,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("cert_sha256", &hex::encode(self.cert_sha256))
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// An authenticator with the default timeouts ([`MESSAGE_TIMEOUT`], [`CHALLENGE_TTL`]).
    pub fn new(
        directory: Arc<dyn IdentityDirectory>,
        it_store: ItStore,
        recorder: Arc<dyn AuthRecorder>,
        clock: SharedClock,
        cert_sha256: [u8; 32],
    ) -> Self {
        Self {
            directory,
            it_store,
            recorder,
            clock,
            cert_sha256,
            nonces: NonceBook::default(),
            sources: Mutex::new(RateLimiter::new()),
            message_timeout: MESSAGE_TIMEOUT,
            challenge_ttl: CHALLENGE_TTL,
        }
    }

    /// Change how long each client message is awaited and how long a challenge lives.
    pub fn with_timeouts(mut self, message_timeout: Duration, challenge_ttl: Duration) -> Self {
        self.message_timeout = message_timeout;
        self.challenge_ttl = challenge_ttl;
        self
    }

    fn mono(&self) -> std::time::Instant {
        self.clock.now_mono().into_std()
    }
}

/// Authenticate the client on `stream` (already inside TLS) coming from `source`: read its hello,
/// challenge it, verify its proof (and TOTP when the directory asks for MFA), journal the
/// outcome, then send the verdict. On success the stream is ready for the purpose.
pub async fn handshake<S>(
    stream: &mut S,
    source: SocketAddr,
    auth: &Authenticator,
) -> Result<(AuthenticatedPeer, Purpose), AuthError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut claimed = None;
    match authenticate(stream, source, auth, &mut claimed).await {
        Ok((peer, purpose, method)) => {
            let event = AuthEvent::LoginSucceeded {
                identity: peer.identity.clone(),
                zone: Zone::It,
                method: method.to_owned(),
                source: source.to_string(),
                purpose: purpose.describe(),
            };
            if let Err(e) = auth.recorder.record(event).await {
                let error = AuthError::Journal(e);
                refuse(stream, &error).await;
                return Err(error);
            }
            write_message(
                stream,
                &ServerVerdict::Accepted {
                    identity: peer.identity.clone(),
                },
            )
            .await?;
            tracing::info!(identity = %peer.identity, %source, purpose = %purpose.describe(), "tunnel authenticated");
            Ok((peer, purpose))
        }
        Err(error) => {
            let identity = claimed.unwrap_or_else(|| "-".to_owned());
            if error.counts_as_failure() {
                if let Ok(mut sources) = auth.sources.lock() {
                    sources.fail(&source.ip().to_string(), auth.mono());
                }
                // A rejected TOTP code was already counted by the IT store itself.
                let counted = matches!(error, AuthError::TotpRejected { .. });
                if !counted && auth.directory.it_identity(&identity).is_some() {
                    if let Err(e) = auth
                        .it_store
                        .record_failure(&identity, auth.clock.now_utc())
                    {
                        tracing::warn!(%identity, error = %e, "could not count a failed attempt");
                    }
                }
            }
            let event = AuthEvent::LoginFailed {
                identity: identity.clone(),
                zone: Zone::It,
                reason: error.reason_code().to_owned(),
                source: source.to_string(),
            };
            if let Err(e) = auth.recorder.record(event).await {
                tracing::error!(error = %e, "could not journal a failed login");
            }
            tracing::warn!(%identity, %source, reason = error.reason_code(), "tunnel authentication refused");
            if !matches!(error, AuthError::Io(_)) {
                refuse(stream, &error).await;
            }
            Err(error)
        }
    }
}

/// Tell the peer why, best effort, without waiting long.
async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, error: &AuthError) {
    let verdict = ServerVerdict::Refused {
        reason: error.reason_code().to_owned(),
        message: peer_message(error),
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), write_message(stream, &verdict)).await;
}

/// What the client is told: enough to act on, nothing about other identities or secrets.
fn peer_message(error: &AuthError) -> String {
    match error {
        AuthError::UnknownIdentity { .. } | AuthError::BadSignature { .. } => {
            "authentication failed: the identity is unknown or the key does not match the policy"
                .to_owned()
        }
        AuthError::Store(_) | AuthError::Journal(_) => {
            "the appliance could not record the login; try again later".to_owned()
        }
        other => other.to_string(),
    }
}

async fn authenticate<S>(
    stream: &mut S,
    source: SocketAddr,
    auth: &Authenticator,
    claimed: &mut Option<String>,
) -> Result<(AuthenticatedPeer, Purpose, &'static str), AuthError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let hello: ClientHello =
        read_message_within(stream, auth.message_timeout, "client hello").await?;
    if hello.identity.len() > 128 {
        return Err(AuthError::Malformed {
            reason: "identity longer than 128 bytes".into(),
        });
    }
    *claimed = Some(hello.identity.clone());
    if hello.version != PROTOCOL_VERSION {
        return Err(AuthError::Malformed {
            reason: format!(
                "protocol version {} (this appliance speaks {PROTOCOL_VERSION})",
                hello.version
            ),
        });
    }
    let source_key = source.ip().to_string();
    if let Ok(sources) = auth.sources.lock() {
        if let Err(retry_after) = sources.check(&source_key, auth.mono()) {
            return Err(AuthError::RateLimited {
                subject: format!("source:{source_key}"),
                retry_after,
            });
        }
    }
    let identity = hello.identity.clone();
    let Some(known) = auth.directory.it_identity(&identity) else {
        return Err(AuthError::UnknownIdentity {
            identity,
            zone: Zone::It,
        });
    };
    let now = auth.clock.now_utc();
    auth.it_store.check_rate(&identity, now)?;
    if let Some(expired_at) = known.expires_at.filter(|at| *at <= now) {
        return Err(AuthError::IdentityExpired {
            identity,
            expired_at,
        });
    }
    let totp_required = auth.directory.mfa_required(&identity, &hello.purpose);
    if totp_required && !auth.it_store.has_totp(&identity)? {
        return Err(AuthError::TotpNotEnrolled {
            identity,
            zone: Zone::It,
        });
    }

    let nonce = auth.nonces.issue(auth.mono(), auth.challenge_ttl);
    let challenge = ServerChallenge {
        nonce: hex::encode(nonce),
        totp_required,
        cert_sha256: hex::encode(auth.cert_sha256),
    };
    write_message(stream, &challenge).await?;

    let proof: ClientProof =
        read_message_within(stream, auth.message_timeout, "client proof").await?;
    let answered = handshake::hex32(&proof.nonce, "nonce")?;
    if answered != nonce {
        // Not this connection's challenge: a replayed or relayed proof. Retire ours as well.
        auth.nonces.consume(&nonce, auth.mono(), auth.challenge_ttl);
        return Err(AuthError::ChallengeMismatch { identity });
    }
    match auth.nonces.consume(&nonce, auth.mono(), auth.challenge_ttl) {
        Some(true) => {}
        Some(false) => return Err(AuthError::ChallengeExpired { identity }),
        None => return Err(AuthError::ChallengeMismatch { identity }),
    }
    let signature = Signature::from_bytes(&handshake::hex64(&proof.signature, "signature")?);
    let message = transcript(&identity, &nonce, &hello.purpose, &auth.cert_sha256);
    known
        .public_key
        .verify_strict(&message, &signature)
        .map_err(|_| AuthError::BadSignature {
            identity: identity.clone(),
        })?;

    let now = auth.clock.now_utc();
    let method = if totp_required {
        let Some(code) = proof.totp.as_deref() else {
            return Err(AuthError::TotpRequired { identity });
        };
        auth.it_store.verify_totp(&identity, code, now)?;
        "ed25519+totp"
    } else {
        "ed25519"
    };
    auth.it_store.record_success(&identity)?;
    if let Ok(mut sources) = auth.sources.lock() {
        sources.reset(&source_key);
    }
    let peer = AuthenticatedPeer {
        identity,
        source,
        totp_verified: totp_required,
        at: now,
    };
    Ok((peer, hello.purpose, method))
}

/// An authenticated tunnel, ready for its purpose.
#[derive(Debug)]
pub struct Authenticated {
    /// The TLS stream; after a `Session` handshake it carries raw Modbus TCP.
    pub stream: TlsStream<TcpStream>,
    /// Who is on the other end.
    pub peer: AuthenticatedPeer,
    /// What for.
    pub purpose: Purpose,
}

/// The IT-side listener: TLS, then the authentication handshake.
#[derive(Clone)]
pub struct TunnelServer {
    /// rustls acceptor with the appliance certificate.
    acceptor: TlsAcceptor,
    /// The authenticator shared by all connections.
    auth: Arc<Authenticator>,
    /// Bound on the TLS handshake.
    tls_timeout: Duration,
}

impl std::fmt::Debug for TunnelServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelServer")
            .field("auth", &self.auth)
            .field("tls_timeout", &self.tls_timeout)
            .finish()
    }
}

impl TunnelServer {
    /// A server presenting `tls` and authenticating with `auth`.
    pub fn new(tls: &ApplianceTls, auth: Arc<Authenticator>) -> Self {
        Self {
            acceptor: TlsAcceptor::from(tls.config.clone()),
            auth,
            tls_timeout: TLS_TIMEOUT,
        }
    }

    /// Change the TLS handshake timeout.
    pub fn with_tls_timeout(mut self, timeout: Duration) -> Self {
        self.tls_timeout = timeout;
        self
    }

    /// Run TLS and the handshake on one accepted TCP connection.
    pub async fn accept(
        &self,
        tcp: TcpStream,
        source: SocketAddr,
    ) -> Result<Authenticated, AuthError> {
        let _ = tcp.set_nodelay(true);
        let mut stream = tokio::time::timeout(self.tls_timeout, self.acceptor.accept(tcp))
            .await
            .map_err(|_| AuthError::Timeout {
                stage: "TLS handshake",
            })?
            .map_err(AuthError::Io)?;
        let (peer, purpose) = handshake(&mut stream, source, &self.auth).await?;
        Ok(Authenticated {
            stream,
            peer,
            purpose,
        })
    }

    /// Accept connections on `listener` until `shutdown`, at most `max_connections` handshakes
    /// and handlers at once; each authenticated tunnel goes to `handler`. A connection that
    /// fails TLS or authentication is closed and does not disturb the others.
    pub async fn serve<H, F>(
        self: Arc<Self>,
        listener: TcpListener,
        max_connections: usize,
        shutdown: CancellationToken,
        handler: H,
    ) where
        H: Fn(Authenticated) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let permits = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
        loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let (tcp, source) = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let server = self.clone();
            let handler = handler.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let accepted = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    accepted = server.accept(tcp, source) => accepted,
                };
                match accepted {
                    Ok(tunnel) => handler(tunnel).await,
                    Err(e) => tracing::debug!(%source, error = %e, "tunnel connection refused"),
                }
            });
        }
    }
}
