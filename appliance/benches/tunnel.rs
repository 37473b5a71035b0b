#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]
//! Tunnel authentication cost over loopback, against a plain TLS 1.3 handshake in the same run.
//!
//! - `plain_tls`: TCP connect, TLS 1.3 handshake (same certificate, same pinned client config),
//!   one byte each way so both sides have finished. The baseline.
//! - `tls_and_auth`: the same plus the otgate handshake (hello, challenge, ed25519 proof,
//!   verdict) with the IT store on disk and outcomes recorded in memory.
//! - `tls_and_auth_journaled`: the same with outcomes in the real journal (durable append).
//!
//! Report the medians and the ratios to `plain_tls`. Nothing here asserts a time.
//! `cargo bench -p otgate --bench tunnel -- --warm-up-time 1 --measurement-time 3`

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use ed25519_dalek::SigningKey;
use otgate::clock::SystemClock;
use otgate::datadir::DataDir;
use otgate::journal::Journal;
use otgate::stores::it::ItStore;
use otgate::stores::record::{AuthRecorder, MemoryRecorder};
use otgate::tunnel::client::{connect, ClientIdentity};
use otgate::tunnel::server::{Authenticator, ItIdentityKey, StaticDirectory, TunnelServer};
use otgate::tunnel::tls::{self, Pin};
use otgate::tunnel::Purpose;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

fn bench_tunnel(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path());
    let fp = tls::create_appliance_cert(&data, &tls::subject_alt_names(&[]), false).unwrap();
    let appliance_tls = tls::load_server(&data).unwrap();
    let pin = Pin::from_fingerprint(fp);
    let it = ItStore::create(&data.it_store_dir()).unwrap();
    let alice = SigningKey::from_bytes(&[7; 32]);
    let identity = ClientIdentity {
        id: "alice".into(),
        key: alice.clone(),
        totp: None,
    };
    let shutdown = CancellationToken::new();

    // Baseline: a plain TLS server that echoes one byte.
    let plain_addr = rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(appliance_tls.config.clone());
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut s) = acceptor.accept(tcp).await {
                        let mut b = [0u8; 1];
                        if s.read_exact(&mut b).await.is_ok() {
                            let _ = s.write_all(&b).await;
                        }
                    }
                });
            }
        });
        addr.to_string()
    });

    let start_server = |recorder: Arc<dyn AuthRecorder>| {
        let mut identities = HashMap::new();
        identities.insert(
            "alice".to_owned(),
            ItIdentityKey {
                public_key: alice.verifying_key(),
                expires_at: None,
            },
        );
        let directory = Arc::new(StaticDirectory {
            identities,
            mfa_always: false,
        });
        let auth = Authenticator::new(
            directory,
            it.clone(),
            recorder,
            Arc::new(SystemClock),
            appliance_tls.fingerprint,
        );
        let server = Arc::new(TunnelServer::new(&appliance_tls, Arc::new(auth)));
        let shutdown = shutdown.clone();
        rt.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(
                server.serve(listener, 64, shutdown, |mut tunnel| async move {
                    let mut b = [0u8; 1];
                    if tunnel.stream.read_exact(&mut b).await.is_ok() {
                        let _ = tunnel.stream.write_all(&b).await;
                    }
                }),
            );
            addr.to_string()
        })
    };
    let memory_addr = start_server(Arc::new(MemoryRecorder::default()));
    let journal = rt.block_on(async { Journal::open_for_tests(dir.path()).unwrap() });
    let journal_addr = start_server(Arc::new(journal));

    let client_config = tls::client_config(&pin).unwrap();
    let purpose = Purpose::Session {
        grant_id: "G-0001".into(),
        asset: "line3-plc".into(),
    };

    let mut group = c.benchmark_group("tunnel_handshake");
    group.sample_size(50);
    group.bench_function("plain_tls", |b| {
        b.iter(|| {
            rt.block_on(async {
                let tcp = TcpStream::connect(&plain_addr).await.unwrap();
                tcp.set_nodelay(true).unwrap();
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                let mut s = tokio_rustls::TlsConnector::from(client_config.clone())
                    .connect(name, tcp)
                    .await
                    .unwrap();
                s.write_all(&[1]).await.unwrap();
                let mut b = [0u8; 1];
                s.read_exact(&mut b).await.unwrap();
            })
        })
    });
    for (name, addr) in [
        ("tls_and_auth", &memory_addr),
        ("tls_and_auth_journaled", &journal_addr),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut s = connect(addr, &pin, &identity, purpose.clone())
                        .await
                        .unwrap();
                    s.write_all(&[1]).await.unwrap();
                    let mut b = [0u8; 1];
                    s.read_exact(&mut b).await.unwrap();
                })
            })
        });
    }
    group.finish();
    shutdown.cancel();
    rt.shutdown_timeout(Duration::from_secs(1));
}

criterion_group!(benches, bench_tunnel);
criterion_main!(benches);
