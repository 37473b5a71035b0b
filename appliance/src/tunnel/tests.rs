//! The tunnel over real rustls TLS 1.3 on loopback sockets: every bad input of the issue.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use ed25519_dalek::{Signer, SigningKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::client::{connect, ClientError, ClientIdentity};
use super::handshake::{
    read_message, transcript, write_message, ClientHello, ClientProof, Purpose, ServerChallenge,
    ServerVerdict,
};
use super::server::{
    Authenticated, Authenticator, ItIdentityKey, MemoryRecorder, StaticDirectory, TunnelServer,
};
use super::tls::{self, ApplianceTls, Pin};
use crate::clock::SystemClock;
use crate::datadir::DataDir;
use crate::journal::event::AuthEvent;
use crate::stores::it::ItStore;
use crate::stores::totp::TotpEnrolment;
use crate::stores::{AuthError, Secret};

const SEED: &str = "alice's totp seed 20b";

struct Fixture {
    _dir: tempfile::TempDir,
    tls: ApplianceTls,
    pin: Pin,
    it: ItStore,
    recorder: Arc<MemoryRecorder>,
    alice: SigningKey,
    vendor: SigningKey,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        let fp = tls::create_appliance_cert(&data, &tls::subject_alt_names(&[]), false).unwrap();
        let tls = tls::load_server(&data).unwrap();
        let it = ItStore::create(&data.it_store_dir()).unwrap();
        it.enroll_totp_with_seed("alice", Secret::from(SEED), Utc::now())
            .unwrap();
        Self {
            _dir: dir,
            tls,
            pin: Pin::from_fingerprint(fp),
            it,
            recorder: Arc::new(MemoryRecorder::default()),
            alice: SigningKey::from_bytes(&[7; 32]),
            vendor: SigningKey::from_bytes(&[9; 32]),
        }
    }

    fn server(&self, mfa_always: bool, message_timeout: Duration) -> TunnelServer {
        let mut identities = HashMap::new();
        identities.insert(
            "alice".to_owned(),
            ItIdentityKey {
                public_key: self.alice.verifying_key(),
                expires_at: None,
            },
        );
        identities.insert(
            "vendor-acme".to_owned(),
            ItIdentityKey {
                public_key: self.vendor.verifying_key(),
                expires_at: Some(Utc::now() - chrono::Duration::days(1)),
            },
        );
        let directory = Arc::new(StaticDirectory {
            identities,
            mfa_always,
        });
        let auth = Authenticator::new(
            directory,
            self.it.clone(),
            self.recorder.clone(),
            Arc::new(SystemClock),
            self.tls.fingerprint,
        )
        .with_timeouts(message_timeout, Duration::from_secs(30));
        TunnelServer::new(&self.tls, Arc::new(auth)).with_tls_timeout(message_timeout)
    }

    fn alice(&self, totp: Option<String>) -> ClientIdentity {
        ClientIdentity {
            id: "alice".into(),
            key: self.alice.clone(),
            totp,
        }
    }

    fn code(&self) -> String {
        TotpEnrolment::from_seed(Secret::from(SEED), Utc::now()).code_at(Utc::now())
    }
}

/// Accept exactly one connection and return the server's outcome.
async fn accept_one(
    server: TunnelServer,
) -> (String, JoinHandle<Result<Authenticated, AuthError>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let handle = tokio::spawn(async move {
        let (tcp, source) = listener.accept().await.unwrap();
        server.accept(tcp, source).await
    });
    (address, handle)
}

fn request() -> Purpose {
    Purpose::Request(
        serde_json::json!({"target": "line3-plc", "ops": ["read"], "ticket": "CHG-1234"}),
    )
}

#[tokio::test]
async fn a_session_tunnel_authenticates_and_then_carries_raw_bytes() {
    let f = Fixture::new();
    let (address, server) = accept_one(f.server(false, Duration::from_secs(10))).await;
    let purpose = Purpose::Session {
        grant_id: "G-0001".into(),
        asset: "line3-plc".into(),
    };
    let mut client = connect(&address, &f.pin, &f.alice(None), purpose.clone())
        .await
        .unwrap();
    let mut accepted = server.await.unwrap().unwrap();
    assert_eq!(accepted.peer.identity(), "alice");
    assert!(!accepted.peer.totp_verified());
    assert_eq!(accepted.purpose, purpose);
    assert_eq!(
        accepted.stream.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );

    // After the handshake the stream is a plain byte pipe (Modbus TCP in real use).
    client
        .write_all(&[0, 1, 0, 0, 0, 6, 1, 3, 0, 100, 0, 2])
        .await
        .unwrap();
    let mut buf = [0u8; 12];
    accepted.stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(buf[7], 3);

    let events = f.recorder.snapshot();
    assert!(
        matches!(&events[..], [AuthEvent::LoginSucceeded { identity, method, purpose, .. }]
        if identity == "alice" && method == "ed25519" && purpose == "session:G-0001:line3-plc")
    );
}

#[tokio::test]
async fn mfa_requires_a_totp_code_that_works_once() {
    let f = Fixture::new();
    let code = f.code();

    let (address, server) = accept_one(f.server(true, Duration::from_secs(10))).await;
    let err = connect(&address, &f.pin, &f.alice(None), request())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::TotpRequired), "{err}");
    assert!(server.await.unwrap().is_err());

    let (address, server) = accept_one(f.server(true, Duration::from_secs(10))).await;
    connect(&address, &f.pin, &f.alice(Some(code.clone())), request())
        .await
        .unwrap();
    let accepted = server.await.unwrap().unwrap();
    assert!(accepted.peer.totp_verified());

    let (address, server) = accept_one(f.server(true, Duration::from_secs(10))).await;
    let err = connect(&address, &f.pin, &f.alice(Some(code)), request())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Refused { reason, .. } if reason == "totp_reused"),
        "{err}"
    );
    assert_eq!(
        server.await.unwrap().unwrap_err().reason_code(),
        "totp_reused"
    );
    assert_eq!(
        f.it.list().unwrap()[0].failures,
        1,
        "a reused code counts once"
    );

    let (address, server) = accept_one(f.server(true, Duration::from_secs(10))).await;
    let err = connect(&address, &f.pin, &f.alice(Some("12345x".into())), request())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Refused { reason, .. } if reason == "totp_malformed"),
        "{err}"
    );
    drop(server);

    let reasons: Vec<String> = f
        .recorder
        .snapshot()
        .into_iter()
        .map(|e| match e {
            AuthEvent::LoginSucceeded { method, .. } => method,
            AuthEvent::LoginFailed { reason, .. } => reason,
        })
        .collect();
    assert_eq!(
        reasons,
        [
            "totp_required",
            "ed25519+totp",
            "totp_reused",
            "totp_malformed"
        ]
    );
}

#[tokio::test]
async fn a_wrong_key_is_refused_and_journaled() {
    let f = Fixture::new();
    let (address, server) = accept_one(f.server(false, Duration::from_secs(10))).await;
    let mallory = ClientIdentity {
        id: "alice".into(),
        key: SigningKey::from_bytes(&[1; 32]),
        totp: None,
    };
    let err = connect(&address, &f.pin, &mallory, request())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Refused { reason, .. } if reason == "bad_signature"),
        "{err}"
    );
    assert!(matches!(
        server.await.unwrap(),
        Err(AuthError::BadSignature { .. })
    ));
    assert!(
        matches!(&f.recorder.snapshot()[..], [AuthEvent::LoginFailed { identity, reason, .. }]
        if identity == "alice" && reason == "bad_signature")
    );
    assert_eq!(
        f.it.list().unwrap()[0].failures,
        1,
        "the failure counts against the identity"
    );
}

#[tokio::test]
async fn unknown_and_expired_identities_are_refused_before_any_challenge() {
    let f = Fixture::new();
    let (address, server) = accept_one(f.server(false, Duration::from_secs(10))).await;
    let vendor = ClientIdentity {
        id: "vendor-acme".into(),
        key: f.vendor.clone(),
        totp: None,
    };
    let err = connect(&address, &f.pin, &vendor, request())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Refused { reason, .. } if reason == "identity_expired"),
        "{err}"
    );
    assert!(matches!(
        server.await.unwrap(),
        Err(AuthError::IdentityExpired { .. })
    ));

    let (address, server) = accept_one(f.server(false, Duration::from_secs(10))).await;
    let stranger = ClientIdentity {
        id: "mallory".into(),
        key: f.alice.clone(),
        totp: None,
    };
    let err = connect(&address, &f.pin, &stranger, request())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Refused { reason, .. } if reason == "unknown_identity"),
        "{err}"
    );
    assert!(server.await.unwrap().is_err());
}

/// A raw client that runs TLS and the handshake by hand, to replay or misbehave.
async fn raw_tls(address: &str, pin: &Pin) -> tokio_rustls::client::TlsStream<TcpStream> {
    let config = tls::client_config(pin).unwrap();
    let tcp = TcpStream::connect(address).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_replayed_challenge_response_is_refused() {
    let f = Fixture::new();
    // First connection: answer honestly and keep the proof.
    let (address, server) = accept_one(f.server(false, Duration::from_secs(10))).await;
    let mut first = raw_tls(&address, &f.pin).await;
    let hello = ClientHello {
        version: 1,
        identity: "alice".into(),
        purpose: request(),
    };
    write_message(&mut first, &hello).await.unwrap();
    let challenge: ServerChallenge = read_message(&mut first).await.unwrap();
    let nonce = super::handshake::hex32(&challenge.nonce, "nonce").unwrap();
    let signature = f
        .alice
        .sign(&transcript("alice", &nonce, &request(), &f.tls.fingerprint));
    let proof = ClientProof {
        nonce: challenge.nonce.clone(),
        signature: hex::encode(signature.to_bytes()),
        totp: None,
    };
    write_message(&mut first, &proof).await.unwrap();
    let verdict: ServerVerdict = read_message(&mut first).await.unwrap();
    assert!(matches!(verdict, ServerVerdict::Accepted { .. }));
    server.await.unwrap().unwrap();

    // Second connection: an eavesdropper replays the same proof against a fresh challenge.
    let (address, server) = accept_one(f.server(false, Duration::from_secs(10))).await;
    let mut second = raw_tls(&address, &f.pin).await;
    write_message(&mut second, &hello).await.unwrap();
    let _fresh: ServerChallenge = read_message(&mut second).await.unwrap();
    write_message(&mut second, &proof).await.unwrap();
    let verdict: ServerVerdict = read_message(&mut second).await.unwrap();
    assert!(
        matches!(&verdict, ServerVerdict::Refused { reason, .. } if reason == "challenge_mismatch"),
        "{verdict:?}"
    );
    assert!(matches!(
        server.await.unwrap(),
        Err(AuthError::ChallengeMismatch { .. })
    ));

    // A proof signed for another purpose does not verify either.
    let (address, server) = accept_one(f.server(false, Duration::from_secs(10))).await;
    let mut third = raw_tls(&address, &f.pin).await;
    write_message(&mut third, &hello).await.unwrap();
    let challenge: ServerChallenge = read_message(&mut third).await.unwrap();
    let nonce = super::handshake::hex32(&challenge.nonce, "nonce").unwrap();
    let other = Purpose::Session {
        grant_id: "G-9".into(),
        asset: "safety-plc".into(),
    };
    let signature = f
        .alice
        .sign(&transcript("alice", &nonce, &other, &f.tls.fingerprint));
    let proof = ClientProof {
        nonce: challenge.nonce,
        signature: hex::encode(signature.to_bytes()),
        totp: None,
    };
    write_message(&mut third, &proof).await.unwrap();
    let verdict: ServerVerdict = read_message(&mut third).await.unwrap();
    assert!(
        matches!(&verdict, ServerVerdict::Refused { reason, .. } if reason == "bad_signature"),
        "{verdict:?}"
    );
    assert!(server.await.unwrap().is_err());
}

#[tokio::test]
async fn an_oversized_handshake_message_is_refused_unread() {
    let f = Fixture::new();
    let (address, server) = accept_one(f.server(false, Duration::from_secs(10))).await;
    let mut raw = raw_tls(&address, &f.pin).await;
    raw.write_all(&(1u32 << 20).to_be_bytes()).await.unwrap();
    raw.flush().await.unwrap();
    let verdict: ServerVerdict = read_message(&mut raw).await.unwrap();
    assert!(
        matches!(&verdict, ServerVerdict::Refused { reason, .. } if reason == "message_too_large")
    );
    assert!(matches!(
        server.await.unwrap(),
        Err(AuthError::MessageTooLarge { len: 1_048_576, .. })
    ));
}

#[tokio::test]
async fn a_slow_client_times_out() {
    let f = Fixture::new();
    let (address, server) = accept_one(f.server(false, Duration::from_millis(300))).await;
    let _raw = raw_tls(&address, &f.pin).await;
    // Say nothing: the server gives up on the hello.
    assert!(matches!(
        server.await.unwrap(),
        Err(AuthError::Timeout {
            stage: "client hello"
        })
    ));

    // A client that never even starts TLS times out in the TLS stage.
    let (address, server) = accept_one(f.server(false, Duration::from_millis(300))).await;
    let _tcp = TcpStream::connect(&address).await.unwrap();
    assert!(matches!(
        server.await.unwrap(),
        Err(AuthError::Timeout {
            stage: "TLS handshake"
        })
    ));
}

#[tokio::test]
async fn a_wrong_pin_is_refused_by_the_client() {
    let f = Fixture::new();
    let (address, server) = accept_one(f.server(false, Duration::from_secs(10))).await;
    let wrong = Pin::from_fingerprint([0xab; 32]);
    let err = connect(&address, &wrong, &f.alice(None), request())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::PinMismatch { .. }), "{err}");
    assert!(server.await.unwrap().is_err());
    assert!(
        f.recorder.snapshot().is_empty(),
        "nothing reached authentication"
    );
}

#[tokio::test]
async fn garbage_instead_of_tls_does_not_disturb_the_listener() {
    let f = Fixture::new();
    let server = Arc::new(f.server(false, Duration::from_secs(2)));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address: SocketAddr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(4);
    let serving = tokio::spawn(server.clone().serve(
        listener,
        8,
        shutdown.clone(),
        move |tunnel| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(tunnel.peer.identity().to_owned()).await;
            }
        },
    ));

    for garbage in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0x16, 0x03, 0x01, 0xff, 0xff, 0, 0][..],
        &[0u8; 4096][..],
    ] {
        let mut tcp = TcpStream::connect(address).await.unwrap();
        let _ = tcp.write_all(garbage).await;
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut sink)).await;
    }
    // Half a TLS hello, then a hang-up.
    let mut tcp = TcpStream::connect(address).await.unwrap();
    tcp.write_all(&[0x16, 0x03, 0x01, 0x00, 0x40, 0x01])
        .await
        .unwrap();
    drop(tcp);

    connect(&address.to_string(), &f.pin, &f.alice(None), request())
        .await
        .unwrap();
    assert_eq!(rx.recv().await.unwrap(), "alice");
    shutdown.cancel();
    serving.await.unwrap();
}

#[tokio::test]
async fn repeated_failures_from_one_source_back_off() {
    let f = Fixture::new();
    let server = Arc::new(f.server(false, Duration::from_secs(10)));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let shutdown = CancellationToken::new();
    let serving = tokio::spawn(server.serve(listener, 8, shutdown.clone(), |_tunnel| async {}));
    let mallory = ClientIdentity {
        id: "mallory".into(),
        key: SigningKey::from_bytes(&[1; 32]),
        totp: None,
    };
    for _ in 0..3 {
        let err = connect(&address, &f.pin, &mallory, request())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ClientError::Refused { reason, .. } if reason == "unknown_identity"),
            "{err}"
        );
    }
    // Now even the right key from the same source waits.
    let err = connect(&address, &f.pin, &f.alice(None), request())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Refused { reason, .. } if reason == "rate_limited"),
        "{err}"
    );
    shutdown.cancel();
    serving.await.unwrap();
}
